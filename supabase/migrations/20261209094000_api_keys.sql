-- Workspace API keys, with an audited lifecycle: an admin creates one (the secret is shown once
-- and only its sha256 is kept), every use is checked by the database (private.authenticate_api_key,
-- which the edge calls for a request bearing `X-Api-Key`) and recorded, and an admin revokes it.
-- The audit log gets `api_key.created`, `api_key.used` (at most one entry per key and hour, with
-- the request's id and IP; `last_used_at` is kept to the minute) and `api_key.revoked`, never
-- the secret. A key acts for its workspace with a role no higher than `member`, and stops
-- working when revoked, expired, or its workspace is deleted.

create table public.api_keys (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null check (char_length(btrim(name)) between 1 and 100),
  prefix text not null check (prefix ~ '^gbk_[0-9a-f]{8}$'),
  secret_hash bytea not null unique,
  role text not null default 'member' check (role in ('member', 'viewer')),
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  expires_at timestamptz,
  last_used_at timestamptz,
  last_audited_use_at timestamptz,
  revoked_at timestamptz,
  revoked_by uuid references auth.users (id) on delete set null
);

comment on table public.api_keys is
  'Workspace API keys: name, shown prefix, role (member or viewer), who created and revoked them, last use; the secret itself is never stored (only its sha256).';

comment on column public.api_keys.secret_hash is
  'sha256 of the secret; the secret is shown once, when the key is created.';

create index api_keys_workspace_id_idx on public.api_keys (workspace_id, created_at desc);

create index api_keys_created_by_idx on public.api_keys (created_by);

create index api_keys_revoked_by_idx on public.api_keys (revoked_by);

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'api_keys', 'name', 'none', 'not_personal', 'a label admins give the key'),
  ('public', 'api_keys', 'prefix', 'none', 'not_personal', 'the first characters of the secret'),
  ('public', 'api_keys', 'secret_hash', 'none', 'not_personal', 'sha256 of the secret'),
  ('public', 'api_keys', 'role', 'none', 'not_personal', null);

-- auditing -------------------------------------------------------------------------------------

create function private.audit_api_key_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.audit(new.workspace_id, 'api_key.created', 'api_key', new.id::text,
                          jsonb_build_object('prefix', new.prefix, 'role', new.role, 'expires_at', new.expires_at));
  else
    perform private.audit(new.workspace_id, 'api_key.revoked', 'api_key', new.id::text,
                          jsonb_build_object('prefix', new.prefix));
  end if;
  return null;
end
$$;

revoke all on function private.audit_api_key_change() from public, anon, authenticated;

create trigger api_keys_audit_created
  after insert on public.api_keys
  for each row execute function private.audit_api_key_change();

create trigger api_keys_audit_revoked
  after update of revoked_at on public.api_keys
  for each row
  when (old.revoked_at is null and new.revoked_at is not null)
  execute function private.audit_api_key_change();

-- the lifecycle --------------------------------------------------------------------------------

-- An admin creates a key: answers its id, prefix and the secret, which is never shown again.
-- 404 workspace_not_found, 403 insufficient_role, 422 invalid_api_key (name, role or expiry),
-- 409 too_many_api_keys (50 live keys per workspace).
create function public.create_api_key(
  p_workspace_id uuid, p_name text, p_role text default 'member', p_expires_at timestamptz default null
)
returns table (id uuid, prefix text, secret text, expires_at timestamptz)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_secret text;
  v_key public.api_keys;
begin
  if p_workspace_id is null or p_workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  perform private.lock_workspace_as(p_workspace_id, 'admin');
  if p_name is null or char_length(btrim(p_name)) not between 1 and 100 then
    perform private.fail(422, 'invalid_api_key', 'A key needs a name of 1 to 100 characters');
  end if;
  if p_role is null or p_role not in ('member', 'viewer') then
    perform private.fail(422, 'invalid_api_key', 'A key acts as a member or a viewer');
  end if;
  if p_expires_at is not null and (p_expires_at <= now() or p_expires_at > now() + interval '3 years') then
    perform private.fail(422, 'invalid_api_key', 'A key expires within 3 years from now');
  end if;
  if (select count(*) from public.api_keys k
      where k.workspace_id = p_workspace_id and k.revoked_at is null
        and (k.expires_at is null or k.expires_at > now())) >= 50 then
    perform private.fail(409, 'too_many_api_keys', 'A workspace has at most 50 live keys; revoke one first');
  end if;
  v_secret := 'gbk_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
  insert into public.api_keys (workspace_id, name, prefix, secret_hash, role, created_by, expires_at)
  values (p_workspace_id, btrim(p_name), left(v_secret, 12), sha256(convert_to(v_secret, 'UTF8')),
          p_role, v_user, p_expires_at)
  returning * into v_key;
  id := v_key.id;
  prefix := v_key.prefix;
  secret := v_secret;
  expires_at := v_key.expires_at;
  return next;
end
$$;

revoke all on function public.create_api_key(uuid, text, text, timestamptz) from public, anon;

grant execute on function public.create_api_key(uuid, text, text, timestamptz) to authenticated;

comment on function public.create_api_key(uuid, text, text, timestamptz) is
  'Creates a workspace API key (admins and owners) acting as a member or viewer; the secret is answered once. 404 workspace_not_found, 403 insufficient_role, 422 invalid_api_key, 409 too_many_api_keys.';

-- An admin revokes a key of their workspace. 404 api_key_not_found (also another
-- workspace's, or a member's ask), 409 api_key_revoked.
create function public.revoke_api_key(p_key_id uuid)
returns public.api_keys
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_key public.api_keys;
begin
  select * into v_key from public.api_keys k
  where k.id = p_key_id and k.workspace_id in (select private.user_workspace_ids_at_least('admin'))
  for update;
  if v_key.id is null then
    perform private.fail(404, 'api_key_not_found', 'API key not found');
  end if;
  if v_key.revoked_at is not null then
    perform private.fail(409, 'api_key_revoked', 'This key was revoked already');
  end if;
  update public.api_keys k set revoked_at = now(), revoked_by = v_user
  where k.id = p_key_id
  returning * into v_key;
  return v_key;
end
$$;

revoke all on function public.revoke_api_key(uuid) from public, anon;

grant execute on function public.revoke_api_key(uuid) to authenticated;

comment on function public.revoke_api_key(uuid) is
  'Revokes a workspace API key (admins and owners); it stops working at once. 404 api_key_not_found, 409 api_key_revoked.';

-- The edge, as the service, checks a key a request bears: its id, workspace and role when it
-- is live (not revoked, not expired, its workspace not deleted), else no row. Records the use
-- (last_used_at to the minute; an `api_key.used` audit entry at most once an hour per key).
create function private.authenticate_api_key(p_secret text)
returns table (key_id uuid, workspace_id uuid, role text, prefix text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key public.api_keys;
begin
  if p_secret is null or p_secret !~ '^gbk_[0-9a-f]{64}$' then
    return;
  end if;
  select k.* into v_key from public.api_keys k
  join public.workspaces w on w.id = k.workspace_id and w.deleted_at is null
  where k.secret_hash = sha256(convert_to(p_secret, 'UTF8'))
    and k.revoked_at is null and (k.expires_at is null or k.expires_at > now());
  if v_key.id is null then
    return;
  end if;
  if v_key.last_used_at is null or v_key.last_used_at < now() - interval '1 minute' then
    update public.api_keys k set last_used_at = now() where k.id = v_key.id;
  end if;
  if v_key.last_audited_use_at is null or v_key.last_audited_use_at < now() - interval '1 hour' then
    update public.api_keys k set last_audited_use_at = now()
    where k.id = v_key.id
      and (k.last_audited_use_at is null or k.last_audited_use_at < now() - interval '1 hour');
    if found then
      perform private.audit(v_key.workspace_id, 'api_key.used', 'api_key', v_key.id::text,
                            jsonb_build_object('prefix', v_key.prefix));
    end if;
  end if;
  key_id := v_key.id;
  workspace_id := v_key.workspace_id;
  role := v_key.role;
  prefix := v_key.prefix;
  return next;
end
$$;

revoke all on function private.authenticate_api_key(text) from public, anon, authenticated;

grant execute on function private.authenticate_api_key(text) to service_role;

-- grants -------------------------------------------------------------------------------------

revoke all on public.api_keys from public, anon, authenticated;

grant select (id, workspace_id, name, prefix, role, created_by, created_at, expires_at, last_used_at,
              revoked_at, revoked_by)
  on public.api_keys to authenticated;

grant select, insert, update on public.api_keys to service_role;

-- row level security -------------------------------------------------------------------------

alter table public.api_keys enable row level security;

-- Admins and owners see their workspaces' keys (never the secret's hash).
create policy api_keys_select_admins on public.api_keys
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));
