-- Users and workspaces leaving.
--
-- A user deletes their own account: the edge asks the database, as the user, what stands in
-- the way (private.account_deletion_blockers: shared workspaces of which they are the only
-- owner, answered as a clear 409), then deletes the user through Supabase Auth's admin API.
-- Auth deletes the auth.users row; with it go their profile and memberships (foreign keys),
-- their solo workspaces (private.handle_deleted_user), and created_by links become null. The
-- audit log keeps what they did under a pseudonymous id (a keyed hash of their id, the same in
-- every entry, so the log still reads as one person's actions).
--
-- An owner deletes a workspace: it is hidden from every member at once (deleted_at; every
-- membership helper leaves it out, so RLS shows none of its rows), restorable by an owner for
-- 30 days, then purged by the retention job a workspace at a time.

alter table public.workspaces
  add column deleted_at timestamptz,
  add column purge_after timestamptz,
  add column deleted_by uuid references auth.users (id) on delete set null,
  add constraint workspaces_deletion_check check ((deleted_at is null) = (purge_after is null));

create index workspaces_purge_after_idx on public.workspaces (purge_after) where purge_after is not null;

create index workspaces_deleted_by_idx on public.workspaces (deleted_by);

create index audit_log_actor_id_idx on public.audit_log (actor_id);

-- the membership helpers leave deleted workspaces out (fix forward) -----------------------------

create or replace function private.user_workspace_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.workspace_id
  from public.workspace_members m
  join public.workspaces w on w.id = m.workspace_id and w.deleted_at is null
  where m.user_id = auth.uid()
$$;

create or replace function private.user_workspace_ids_at_least(p_min_role text)
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.workspace_id
  from public.workspace_members m
  join public.workspaces w on w.id = m.workspace_id and w.deleted_at is null
  where m.user_id = auth.uid()
    and private.role_rank(m.role) >= private.role_rank(p_min_role)
$$;

-- account deletion ---------------------------------------------------------------------------

-- The caller's workspaces that would be left without an owner: they are the only owner and
-- others are members. Empty when the account may go.
create function private.account_deletion_blockers()
returns table (workspace_id uuid, name text, other_members integer)
language sql
stable
security definer
set search_path = ''
as $$
  select w.id, w.name, (select count(*)::integer from public.workspace_members o
                        where o.workspace_id = w.id and o.user_id <> m.user_id)
  from public.workspace_members m
  join public.workspaces w on w.id = m.workspace_id
  where m.user_id = auth.uid() and m.role = 'owner'
    and not exists (select from public.workspace_members o
                    where o.workspace_id = w.id and o.user_id <> m.user_id and o.role = 'owner')
    and exists (select from public.workspace_members o
                where o.workspace_id = w.id and o.user_id <> m.user_id)
  order by w.name
$$;

revoke all on function private.account_deletion_blockers() from public, anon, authenticated;

grant execute on function private.account_deletion_blockers() to authenticated, service_role;

-- Whether Supabase Auth still has the user (the edge checks after asking Auth to delete them).
create function private.user_exists(p_user_id uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (select from auth.users u where u.id = p_user_id)
$$;

revoke all on function private.user_exists(uuid) from public, anon, authenticated;

grant execute on function private.user_exists(uuid) to service_role;

-- Whether an address already has an account (then no invite email is sent).
create function private.email_has_account(p_email text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (select from auth.users u where lower(u.email) = lower(btrim(p_email)))
$$;

revoke all on function private.email_has_account(text) from public, anon, authenticated;

grant execute on function private.email_has_account(text) to service_role;

-- A user's pseudonym in the audit log: a UUID made from a keyed hash of their id.
create function private.user_pseudonym(p_user_id uuid)
returns uuid
language sql
stable
set search_path = ''
as $$
  select encode(substr(private.identity_key('00000000-0000-0000-0000-000000000000', 'user', p_user_id::text), 1, 16), 'hex')::uuid
$$;

revoke all on function private.user_pseudonym(uuid) from public, anon, authenticated;

create function private.pseudonymise_deleted_user()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pseudonym uuid := private.user_pseudonym(old.id);
begin
  perform pg_catalog.set_config('growthbase.pseudonymising', 'on', true);
  update public.audit_log a set actor_id = v_pseudonym where a.actor_id = old.id;
  update public.audit_log a set target_id = v_pseudonym::text
  where a.target_type = 'user' and a.target_id = old.id::text;
  perform pg_catalog.set_config('growthbase.pseudonymising', '', true);
  return null;
end
$$;

revoke all on function private.pseudonymise_deleted_user() from public, anon, authenticated;

-- After the delete and its cascades, so the entries those write (member.removed) are covered.
create trigger on_auth_user_deleted_pseudonymise
  after delete on auth.users
  for each row execute function private.pseudonymise_deleted_user();

-- A membership removed because its account is being deleted (a cascade from auth.users) is
-- recorded under the pseudonym too.
create or replace function private.audit_member_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.audit(new.workspace_id, 'member.added', 'user', new.user_id::text,
                          jsonb_build_object('role', new.role));
  elsif tg_op = 'UPDATE' then
    perform private.audit(new.workspace_id, 'member.role_changed', 'user', new.user_id::text,
                          jsonb_build_object('from', old.role, 'to', new.role));
  elsif exists (select from auth.users u where u.id = old.user_id) then
    perform private.audit(old.workspace_id, 'member.removed', 'user', old.user_id::text,
                          jsonb_build_object('role', old.role));
  else
    perform private.audit(old.workspace_id, 'member.removed', 'user', private.user_pseudonym(old.user_id)::text,
                          jsonb_build_object('role', old.role, 'account_deleted', true));
  end if;
  return null;
end
$$;

revoke all on function private.audit_member_change() from public, anon, authenticated;

-- workspace deletion ---------------------------------------------------------------------------

-- An owner deletes a workspace: hidden now, purged after 30 days. A personal workspace goes
-- with its account instead (409).
create function public.delete_workspace(p_workspace_id uuid)
returns timestamptz
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_workspace public.workspaces;
begin
  perform private.lock_workspace_as(p_workspace_id, 'owner');
  select * into v_workspace from public.workspaces w where w.id = p_workspace_id;
  if v_workspace.deleted_at is not null then
    perform private.fail(409, 'workspace_deleted', 'This workspace is already deleted');
  end if;
  if v_workspace.personal then
    perform private.fail(409, 'personal_workspace', 'A personal workspace goes with its account');
  end if;
  update public.workspaces w
  set deleted_at = now(), purge_after = now() + interval '30 days', deleted_by = v_user
  where w.id = p_workspace_id;
  perform private.audit(p_workspace_id, 'workspace.deleted', 'workspace', p_workspace_id::text,
                        jsonb_build_object('purge_after', now() + interval '30 days'));
  perform realtime.send(jsonb_build_object('workspace_id', p_workspace_id, 'purge_after', now() + interval '30 days'),
                        'workspace_deleted', 'workspace:' || p_workspace_id::text || ':members', true);
  return now() + interval '30 days';
end
$$;

revoke all on function public.delete_workspace(uuid) from public, anon;

grant execute on function public.delete_workspace(uuid) to authenticated;

comment on function public.delete_workspace(uuid) is
  'Deletes a workspace (owners): hidden from every member at once, restorable for 30 days, then purged. 403 insufficient_role, 404 workspace_not_found, 409 workspace_deleted or personal_workspace.';

create function public.restore_workspace(p_workspace_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.lock_workspace_as(p_workspace_id, 'owner');
  if not exists (select from public.workspaces w where w.id = p_workspace_id and w.deleted_at is not null) then
    perform private.fail(409, 'workspace_not_deleted', 'This workspace is not deleted');
  end if;
  update public.workspaces w set deleted_at = null, purge_after = null, deleted_by = null
  where w.id = p_workspace_id;
  perform private.audit(p_workspace_id, 'workspace.restored', 'workspace', p_workspace_id::text, '{}'::jsonb);
end
$$;

revoke all on function public.restore_workspace(uuid) from public, anon;

grant execute on function public.restore_workspace(uuid) to authenticated;

comment on function public.restore_workspace(uuid) is
  'Restores a deleted workspace within its 30 days (owners). 403 insufficient_role, 404 workspace_not_found, 409 workspace_not_deleted.';

-- Purges workspaces whose 30 days are over, at most p_limit (their rows go by cascade).
create function private.purge_deleted_workspaces(p_limit integer default 1)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  delete from public.workspaces w
  where w.id in (
    select x.id from public.workspaces x
    where x.purge_after < now()
    order by x.purge_after
    limit greatest(coalesce(p_limit, 1), 1)
    for update skip locked
  );
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

revoke all on function private.purge_deleted_workspaces(integer) from public, anon, authenticated;

grant execute on function private.purge_deleted_workspaces(integer) to service_role;

-- The owners' list of their deleted workspaces (hidden from everything else until restored).
create function private.deleted_workspaces_of_caller()
returns table (workspace_id uuid, name text, deleted_at timestamptz, purge_after timestamptz)
language sql
stable
security definer
set search_path = ''
as $$
  select w.id, w.name, w.deleted_at, w.purge_after
  from public.workspaces w
  join public.workspace_members m on m.workspace_id = w.id and m.user_id = auth.uid() and m.role = 'owner'
  where w.deleted_at is not null
  order by w.deleted_at desc
$$;

revoke all on function private.deleted_workspaces_of_caller() from public, anon, authenticated;

grant execute on function private.deleted_workspaces_of_caller() to authenticated;
