-- Catalog hardening from the review (issue 12):
-- 1. Contacts are counted on write, per workspace, and the plan's limit is checked against the
--    counter with its row locked, so concurrent inserts into one workspace are serialised and
--    can never pass the limit together (the old check counted the workspace's contacts after
--    each insert, which concurrent inserts all passed, and which cost O(contacts)).
-- 2. The Data API roles lose every privilege on sequences (setval to the maximum broke every
--    tenant's inserts), and default privileges keep new sequences, tables and functions
--    revoked from them (and functions from PUBLIC) until a migration grants what is needed.
-- 3. A realtime broadcast is visible only on the channel the user joined (the row's topic is
--    realtime.topic()) and only when that channel belongs to one of the user's workspaces.
-- 4. Analytics sees every workspace only for a request acting as a growthbase_analyst member,
--    decided from the role the request acts as, never from the login.

-- contact counter -----------------------------------------------------------------------------

create table private.workspace_contact_counts (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  contacts integer not null default 0
);

comment on table private.workspace_contact_counts is
  'Contacts per workspace, kept by triggers on public.contacts; private.verify_contact_counts() lists drift.';

-- Adds per-workspace changes to the counters and refuses a workspace that grew past its plan's
-- contact limit. Counter rows are locked in workspace order (no deadlock between statements
-- touching several workspaces); a concurrent writer of the same workspace waits for the lock
-- and then adds to the committed count, so the check is exact under concurrency.
create function private.add_contact_counts(p_workspace_ids uuid[], p_changes integer[])
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_over record;
begin
  perform 1
  from private.workspace_contact_counts c
  where c.workspace_id = any (p_workspace_ids)
  order by c.workspace_id
  for update;
  update private.workspace_contact_counts c set contacts = c.contacts + d.change
  from unnest(p_workspace_ids, p_changes) as d(workspace_id, change)
  where c.workspace_id = d.workspace_id and d.change < 0;
  with grown as (
    insert into private.workspace_contact_counts as c (workspace_id, contacts)
    select d.workspace_id, d.change
    from unnest(p_workspace_ids, p_changes) as d(workspace_id, change)
    where d.change > 0
    order by d.workspace_id
    on conflict (workspace_id) do update set contacts = c.contacts + excluded.contacts
    returning c.workspace_id, c.contacts
  )
  select g.workspace_id, l.max_contacts into v_over
  from grown g
  cross join lateral (select private.plan_limit(g.workspace_id, 'contacts') as max_contacts) as l
  where g.contacts > l.max_contacts
  limit 1;
  if v_over.workspace_id is not null then
    perform private.over_limit('contacts', v_over.max_contacts);
  end if;
end
$$;

revoke all on function private.add_contact_counts(uuid[], integer[]) from public, anon, authenticated;

-- Once per insert statement, from the rows it inserted (O(rows inserted)).
create function private.count_inserted_contacts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_ids uuid[];
  v_changes integer[];
begin
  select array_agg(n.workspace_id order by n.workspace_id), array_agg(n.contacts order by n.workspace_id)
  into v_workspace_ids, v_changes
  from (select i.workspace_id, count(*)::integer as contacts from inserted i group by i.workspace_id) as n;
  if v_workspace_ids is not null then
    perform private.add_contact_counts(v_workspace_ids, v_changes);
  end if;
  return null;
end
$$;

revoke all on function private.count_inserted_contacts() from public, anon, authenticated;

-- Once per delete statement, from the rows it deleted (erasures, cascades included).
create function private.count_deleted_contacts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_ids uuid[];
  v_changes integer[];
begin
  select array_agg(d.workspace_id order by d.workspace_id), array_agg(-d.contacts order by d.workspace_id)
  into v_workspace_ids, v_changes
  from (select r.workspace_id, count(*)::integer as contacts from deleted r group by r.workspace_id) as d;
  if v_workspace_ids is not null then
    perform private.add_contact_counts(v_workspace_ids, v_changes);
  end if;
  return null;
end
$$;

revoke all on function private.count_deleted_contacts() from public, anon, authenticated;

-- A contact moved to another workspace (only the service can change workspace_id). Per row,
-- and only when workspace_id really changes, so ordinary updates pay nothing.
create function private.count_moved_contact()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.add_contact_counts(
    array[old.workspace_id, new.workspace_id], array[-1, 1]
  );
  return null;
end
$$;

revoke all on function private.count_moved_contact() from public, anon, authenticated;

create function private.reset_contact_counts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update private.workspace_contact_counts c set contacts = 0 where c.contacts <> 0;
  return null;
end
$$;

revoke all on function private.reset_contact_counts() from public, anon, authenticated;

-- Workspaces whose counter differs from their contacts (expected: none).
create function private.verify_contact_counts()
returns table (workspace_id uuid, counted integer, kept integer)
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(c.workspace_id, k.workspace_id), coalesce(c.contacts, 0), coalesce(k.contacts, 0)
  from (
    select n.workspace_id, count(*)::integer as contacts from public.contacts n group by n.workspace_id
  ) as c
  full join private.workspace_contact_counts k on k.workspace_id = c.workspace_id
  where coalesce(c.contacts, 0) <> coalesce(k.contacts, 0)
$$;

revoke all on function private.verify_contact_counts() from public, anon, authenticated;

grant execute on function private.verify_contact_counts() to service_role;

drop trigger contacts_limit on public.contacts;

drop function private.enforce_contact_limit();

-- Created before the backfill: the triggers lock public.contacts against writes until this
-- migration commits, so the backfilled counts and the counted writes do not overlap.
create trigger contacts_count_inserted
  after insert on public.contacts
  referencing new table as inserted
  for each statement execute function private.count_inserted_contacts();

create trigger contacts_count_deleted
  after delete on public.contacts
  referencing old table as deleted
  for each statement execute function private.count_deleted_contacts();

create trigger contacts_count_moved
  after update of workspace_id on public.contacts
  for each row when (old.workspace_id is distinct from new.workspace_id)
  execute function private.count_moved_contact();

create trigger contacts_count_truncated
  after truncate on public.contacts
  for each statement execute function private.reset_contact_counts();

insert into private.workspace_contact_counts (workspace_id, contacts)
select w.id, (select count(*) from public.contacts c where c.workspace_id = w.id)
from public.workspaces w;

revoke all on private.workspace_contact_counts from public, anon, authenticated;

grant select on private.workspace_contact_counts to service_role;

-- sequences and default privileges ------------------------------------------------------------

-- Identity columns draw from their sequence without a privilege check, so no API role needs
-- one; serial-style defaults would, and none of ours are.
revoke all on all sequences in schema public from public, anon, authenticated;

revoke all on all sequences in schema private from public, anon, authenticated;

revoke all on all sequences in schema analytics from public, anon, authenticated;

-- New objects start revoked from the API roles: Supabase's (and sql/local's) defaults grant
-- every new object in public to anon and authenticated, and Postgres grants EXECUTE on every
-- new function to PUBLIC. Set for the migrating role and, where it exists and we may act for
-- it, for `postgres` (the role Supabase migrations and the SQL editor create objects as).
do $$
declare
  v_role name;
  v_schema name;
begin
  for v_role in
    select r.rolname from pg_catalog.pg_roles r
    where r.rolname in (current_user, 'postgres')
      and pg_catalog.pg_has_role(current_user, r.oid, 'usage')
  loop
    execute format('alter default privileges for role %I revoke execute on functions from public', v_role);
    foreach v_schema in array array['public', 'private', 'analytics'] loop
      execute format(
        'alter default privileges for role %I in schema %I revoke all on tables from anon, authenticated',
        v_role, v_schema
      );
      execute format(
        'alter default privileges for role %I in schema %I revoke all on sequences from anon, authenticated',
        v_role, v_schema
      );
      execute format(
        'alter default privileges for role %I in schema %I revoke all on functions from public, anon, authenticated',
        v_role, v_schema
      );
    end loop;
  end loop;
end
$$;

-- realtime ------------------------------------------------------------------------------------

drop policy realtime_messages_select_workspace_members on realtime.messages;

-- Members may receive the broadcasts of the channel they joined (realtime.topic()) when it is
-- one of their workspaces' private channels `workspace:<id>:<name>`.
create policy realtime_messages_select_workspace_members on realtime.messages
  for select to authenticated
  using (
    extension = 'broadcast'
    and topic = (select realtime.topic())
    and (select realtime.topic()) like 'workspace:%:%'
    and split_part((select realtime.topic()), ':', 2) in (
      select id::text from private.user_workspace_ids() as id
    )
  );

-- analytics -----------------------------------------------------------------------------------

-- Whether the request sees every workspace in analytics: only when the role it acts as (the
-- role set by SET ROLE or set_config('role'), else the login itself) is a growthbase_analyst
-- member. The Data API and the edge act as authenticated, anon or service_role, which never
-- see all, whatever the login and whether or not a user is signed in. (current_user would not
-- do: inside the security-definer callers it is their owner.)
create or replace function private.analytics_sees_all()
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select pg_catalog.pg_has_role(
    coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user)::name,
    'growthbase_analyst',
    'member'
  )
$$;

revoke all on function private.analytics_sees_all() from public, anon, authenticated;
