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
--
-- The committed count lives in private.workspace_contact_counts. A transaction's own inserts
-- and deletes are added up per workspace in a transaction-local setting (which a rolled-back
-- savepoint rolls back with its rows) and written to the counter once, at commit, by a
-- deferred trigger. Updating the counter row in every statement instead makes an import that
-- inserts row by row under savepoints quadratic (every update walks the row's growing chain of
-- versions, each from another subtransaction).
--
-- A transaction's first change in a workspace locks its counter row (with an update that
-- marks the row as touched by the transaction and queues the commit-time trigger), so writers
-- of one workspace are serialised until commit, and each limit check sees the committed count
-- plus the transaction's own pending change: concurrent inserts can never pass the limit
-- together.
--
-- Any session may set a setting, so each pending entry is signed with the workspace's
-- signing_key (which only these functions read) and the transaction id, and an entry missing
-- for a row the transaction touched, or present for one it did not, is refused: a session
-- that edits the setting cannot lower its count, only abort its own transaction.

create table private.workspace_contact_counts (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  contacts integer not null default 0,
  signing_key uuid not null default gen_random_uuid(),
  touched_by xid8
);

comment on table private.workspace_contact_counts is
  'Committed contacts per workspace, kept by triggers on public.contacts; private.verify_contact_counts() lists drift.';

-- Adds per-workspace changes to the transaction's pending ones (setting
-- growthbase.pending_contacts, {"<workspace id>": {"n": change, "s": signature}, ...}) and
-- refuses a workspace that grew past its plan's contact limit. Workspaces are taken in id
-- order, so statements that touch several workspaces lock their counters in one order. Called
-- only from the security definer triggers below, so it is not security definer itself, and it
-- reads the limit and signs inline rather than through helper functions: each of those costs
-- a function context per statement, which an import inserting row by row under savepoints
-- pays thousands of times.
create function private.add_contact_changes(p_workspace_ids uuid[], p_changes integer[])
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_pending jsonb := coalesce(nullif(pg_catalog.current_setting('growthbase.pending_contacts', true), '')::jsonb, '{}'::jsonb);
  v_transaction text := pg_catalog.pg_current_xact_id()::text;
  v_workspace_id uuid;
  v_change integer;
  v_entry jsonb;
  v_total integer;
  v_counter private.workspace_contact_counts;
  v_max integer;
begin
  for v_workspace_id, v_change in
    select d.workspace_id, d.change from unnest(p_workspace_ids, p_changes) as d(workspace_id, change)
    where d.change <> 0
    order by d.workspace_id
  loop
    v_entry := v_pending -> v_workspace_id::text;
    if v_change > 0 then
      insert into private.workspace_contact_counts (workspace_id) values (v_workspace_id)
      on conflict (workspace_id) do nothing;
    end if;
    select * into v_counter from private.workspace_contact_counts c where c.workspace_id = v_workspace_id;
    if not found then
      continue;  -- a workspace being deleted has lost its counter already
    end if;
    if (v_counter.touched_by is not distinct from pg_catalog.pg_current_xact_id()) <> (v_entry is not null)
       or (v_entry is not null and v_entry ->> 's' is distinct from encode(sha256(convert_to(
             v_counter.signing_key::text || ':' || v_transaction || ':' || v_workspace_id::text
             || ':' || (v_entry ->> 'n'), 'UTF8')), 'hex')) then
      raise exception 'growthbase.pending_contacts was changed outside its triggers';
    end if;
    v_total := coalesce((v_entry ->> 'n')::integer, 0) + v_change;
    v_pending := v_pending || jsonb_build_object(v_workspace_id::text, jsonb_build_object(
      'n', v_total,
      's', encode(sha256(convert_to(
        v_counter.signing_key::text || ':' || v_transaction || ':' || v_workspace_id::text
        || ':' || v_total::text, 'UTF8')), 'hex')
    ));
    perform pg_catalog.set_config('growthbase.pending_contacts', v_pending::text, true);
    if v_entry is null then
      -- The transaction's first change here: lock the counter and queue the apply (which runs
      -- at once under `set constraints all immediate`, so the setting is read back).
      update private.workspace_contact_counts c set touched_by = pg_catalog.pg_current_xact_id()
      where c.workspace_id = v_workspace_id;
      v_pending := coalesce(nullif(pg_catalog.current_setting('growthbase.pending_contacts', true), '')::jsonb, '{}'::jsonb);
    end if;
    if v_change > 0 then
      select * into v_counter
      from private.workspace_contact_counts c where c.workspace_id = v_workspace_id
      for update;
      select p.contact_limit into v_max
      from public.workspaces w join public.plans p on p.tier = w.plan_tier
      where w.id = v_workspace_id;
      if v_counter.contacts + coalesce((v_pending -> v_workspace_id::text ->> 'n')::integer, 0) > v_max then
        perform private.over_limit('contacts', v_max);
      end if;
    end if;
  end loop;
end
$$;

revoke all on function private.add_contact_changes(uuid[], integer[]) from public, anon, authenticated;

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
    perform private.add_contact_changes(v_workspace_ids, v_changes);
  end if;
  return null;
end
$$;

revoke all on function private.count_inserted_contacts() from public, anon, authenticated;

-- Once per delete statement, from the rows it deleted (erasures and cascades included).
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
    perform private.add_contact_changes(v_workspace_ids, v_changes);
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
  perform private.add_contact_changes(array[old.workspace_id, new.workspace_id], array[-1, 1]);
  return null;
end
$$;

revoke all on function private.count_moved_contact() from public, anon, authenticated;

-- A truncate leaves every workspace without contacts, pending changes included.
create function private.reset_contact_counts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform pg_catalog.set_config('growthbase.pending_contacts', '{}', true);
  update private.workspace_contact_counts c set contacts = 0, touched_by = null
  where c.contacts <> 0 or c.touched_by = pg_catalog.pg_current_xact_id();
  return null;
end
$$;

revoke all on function private.reset_contact_counts() from public, anon, authenticated;

-- At commit (deferred, or at set constraints immediate): writes the transaction's change for
-- one workspace to its counter and clears the row's touched mark, so later events (this
-- update's own, an earlier touch's) find nothing left to apply, and a later change in the
-- same transaction touches the row again.
create function private.apply_contact_changes()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pending jsonb := coalesce(nullif(pg_catalog.current_setting('growthbase.pending_contacts', true), '')::jsonb, '{}'::jsonb);
  v_entry jsonb := v_pending -> new.workspace_id::text;
begin
  if v_entry is null then
    -- Applied already (or reset by a truncate), unless the row is still marked as touched.
    if exists (
      select from private.workspace_contact_counts c
      where c.workspace_id = new.workspace_id and c.touched_by = pg_catalog.pg_current_xact_id()
    ) then
      raise exception 'growthbase.pending_contacts was changed outside its triggers';
    end if;
    return null;
  end if;
  if v_entry ->> 's' is distinct from encode(sha256(convert_to(
       new.signing_key::text || ':' || pg_catalog.pg_current_xact_id()::text || ':'
       || new.workspace_id::text || ':' || (v_entry ->> 'n'), 'UTF8')), 'hex') then
    raise exception 'growthbase.pending_contacts was changed outside its triggers';
  end if;
  perform pg_catalog.set_config(
    'growthbase.pending_contacts', (v_pending - new.workspace_id::text)::text, true
  );
  update private.workspace_contact_counts c
  set contacts = c.contacts + (v_entry ->> 'n')::integer, touched_by = null
  where c.workspace_id = new.workspace_id;
  return null;
end
$$;

revoke all on function private.apply_contact_changes() from public, anon, authenticated;

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

create constraint trigger workspace_contact_counts_apply
  after update on private.workspace_contact_counts
  deferrable initially deferred
  for each row execute function private.apply_contact_changes();

-- Every workspace starts with a counter row.
create function private.create_contact_count()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into private.workspace_contact_counts (workspace_id) values (new.id)
  on conflict (workspace_id) do nothing;
  return null;
end
$$;

revoke all on function private.create_contact_count() from public, anon, authenticated;

create trigger workspaces_create_contact_count
  after insert on public.workspaces
  for each row execute function private.create_contact_count();

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
