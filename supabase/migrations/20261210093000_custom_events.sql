-- Custom events from outside (a Make.com scenario, a shop's own code): POST /api/v1/events with
-- a workspace API key. Keys are made by admins and shown once; only their SHA-256 is stored.
-- A batch (up to 1,000 events) is recorded in one statement, idempotent by the sender's event
-- id, and only when every event names a contact of the workspace (else nothing is recorded and
-- the edge answers which ones did not).

-- API keys ---------------------------------------------------------------------------------------

create table public.workspace_api_keys (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 100),
  -- The key's first characters, so people can tell their keys apart; never enough to use it.
  prefix text not null check (char_length(prefix) = 12),
  key_hash bytea not null unique check (octet_length(key_hash) = 32),
  created_by uuid references auth.users (id) on delete set null default auth.uid(),
  created_at timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at timestamptz
);

comment on table public.workspace_api_keys is
  'Workspace API keys for server-to-server calls (custom events); only the SHA-256 of a key is stored, the key is shown once.';

create index workspace_api_keys_workspace_id_idx on public.workspace_api_keys (workspace_id);

create index workspace_api_keys_created_by_idx on public.workspace_api_keys (created_by);

-- Admins make a key; answers it once (gbk_ and 40 hex digits).
create function public.create_api_key(p_workspace_id uuid, p_name text)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text := 'gbk_' || encode(sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || clock_timestamp()::text, 'UTF8')), 'hex');
begin
  v_key := left(v_key, 44);
  if p_workspace_id is null or p_workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  if p_workspace_id not in (select private.user_workspace_ids_at_least('admin')) then
    perform private.fail(403, 'insufficient_role', 'Only admins and owners manage API keys');
  end if;
  if p_name is null or char_length(btrim(p_name)) not between 1 and 100 then
    perform private.fail(422, 'invalid_name', 'A key''s name is 1 to 100 characters');
  end if;
  if (select count(*) from public.workspace_api_keys k where k.workspace_id = p_workspace_id and k.revoked_at is null) >= 20 then
    perform private.fail(409, 'too_many_api_keys', 'A workspace has at most 20 live API keys');
  end if;
  insert into public.workspace_api_keys (workspace_id, name, prefix, key_hash)
  values (p_workspace_id, btrim(p_name), left(v_key, 12), sha256(convert_to(v_key, 'UTF8')));
  return v_key;
end
$$;

comment on function public.create_api_key(uuid, text) is
  'Makes a workspace API key (admins and owners) and answers it once; only its hash is kept.';

-- Admins revoke a key: it stops working at once.
create function public.revoke_api_key(p_key_id uuid)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
begin
  select k.workspace_id into v_workspace_id from public.workspace_api_keys k where k.id = p_key_id;
  if v_workspace_id is null or v_workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'api_key_not_found', 'API key not found');
  end if;
  if v_workspace_id not in (select private.user_workspace_ids_at_least('admin')) then
    perform private.fail(403, 'insufficient_role', 'Only admins and owners manage API keys');
  end if;
  update public.workspace_api_keys set revoked_at = coalesce(revoked_at, now()) where id = p_key_id;
  return true;
end
$$;

comment on function public.revoke_api_key(uuid) is 'Revokes a workspace API key (admins and owners).';

-- The workspace a live key belongs to (null for anything else); notes its use once a minute.
create function private.api_key_workspace(p_key text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key public.workspace_api_keys;
begin
  if p_key is null or p_key !~ '^gbk_[0-9a-f]{40}$' then
    return null;
  end if;
  select * into v_key from public.workspace_api_keys k
  where k.key_hash = sha256(convert_to(p_key, 'UTF8')) and k.revoked_at is null;
  if v_key.id is not null and (v_key.last_used_at is null or v_key.last_used_at < now() - interval '1 minute') then
    update public.workspace_api_keys set last_used_at = now() where id = v_key.id;
  end if;
  return v_key.workspace_id;
end
$$;

-- Records a batch of custom events: [{"id", "name", "contact": {"id"|"email"}, "properties"?,
-- "occurred_at"?}]. Answers {"recorded", "duplicates"}, or {"unknown_contacts": [indexes]}
-- (0-based) and records nothing when any event names no contact of the workspace.
create function private.record_custom_events(p_workspace_id uuid, p_events jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_unknown jsonb;
  v_recorded integer;
begin
  if jsonb_typeof(p_events) is distinct from 'array' or jsonb_array_length(p_events) not between 1 and 1000 then
    perform private.fail(422, 'invalid_input', 'events is a list of 1 to 1,000 events');
  end if;
  with given as (
    select e.n - 1 as position, e.event,
           case when e.event -> 'contact' ->> 'id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
                then (e.event -> 'contact' ->> 'id')::uuid end as contact_id,
           lower(btrim(e.event -> 'contact' ->> 'email')) as email
    from jsonb_array_elements(p_events) with ordinality as e(event, n)
  )
  select jsonb_agg(g.position order by g.position) into v_unknown
  from given g
  where not exists (
    select 1 from public.contacts c
    where c.workspace_id = p_workspace_id and c.erased_at is null
      and ((g.contact_id is not null and c.id = g.contact_id) or (g.contact_id is null and c.email = g.email)));
  if v_unknown is not null then
    return jsonb_build_object('unknown_contacts', v_unknown);
  end if;
  insert into public.contact_events (workspace_id, contact_id, type, name, event_key, properties, occurred_at)
  select p_workspace_id, c.id, 'custom', e.event ->> 'name', e.event ->> 'id',
         coalesce(e.event -> 'properties', '{}'::jsonb),
         coalesce((e.event ->> 'occurred_at')::timestamptz, now())
  from jsonb_array_elements(p_events) as e(event)
  join public.contacts c on c.workspace_id = p_workspace_id and c.erased_at is null
   and case when e.event -> 'contact' ->> 'id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
            then c.id = (e.event -> 'contact' ->> 'id')::uuid
            else c.email = lower(btrim(e.event -> 'contact' ->> 'email')) end
  on conflict (workspace_id, event_key) where event_key is not null do nothing;
  get diagnostics v_recorded = row_count;
  return jsonb_build_object('recorded', v_recorded, 'duplicates', jsonb_array_length(p_events) - v_recorded);
end
$$;

-- grants -----------------------------------------------------------------------------------------

revoke all on public.workspace_api_keys from public, anon, authenticated;

grant select (id, workspace_id, name, prefix, created_by, created_at, last_used_at, revoked_at)
  on public.workspace_api_keys to authenticated;

grant all on public.workspace_api_keys to service_role;

revoke all on function public.create_api_key(uuid, text) from public, anon;

grant execute on function public.create_api_key(uuid, text) to authenticated, service_role;

revoke all on function public.revoke_api_key(uuid) from public, anon;

grant execute on function public.revoke_api_key(uuid) to authenticated, service_role;

revoke all on function private.api_key_workspace(text) from public, anon, authenticated;

grant execute on function private.api_key_workspace(text) to service_role;

revoke all on function private.record_custom_events(uuid, jsonb) from public, anon, authenticated;

grant execute on function private.record_custom_events(uuid, jsonb) to service_role;

-- RLS --------------------------------------------------------------------------------------------

alter table public.workspace_api_keys enable row level security;

-- Admins and owners may see their workspaces' keys (never the key: only its prefix).
create policy workspace_api_keys_select_admins on public.workspace_api_keys
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- the register of personal data -------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values
  ('public', 'workspace_api_keys', 'name', 'none', 'not_personal', null),
  ('public', 'workspace_api_keys', 'prefix', 'none', 'not_personal', null),
  ('public', 'workspace_api_keys', 'key_hash', 'none', 'not_personal', 'SHA-256 of the key');
