-- Fix-forward of 20261130093000_catalog_hardening.sql, which had landed before these changes
-- were made to it: applied on top of the landed version (functions replaced, triggers
-- recreated).

-- The landed counter signed its pending changes per transaction; this one counts with one
-- statement trigger and a deferred apply. Its machinery goes first, then the counter is
-- rebuilt and refilled below.
drop trigger if exists contacts_count_inserted on public.contacts;

drop trigger if exists contacts_count_deleted on public.contacts;

drop trigger if exists contacts_count_moved on public.contacts;

drop trigger if exists contacts_count_truncated on public.contacts;

drop trigger if exists workspaces_create_contact_count on public.workspaces;

drop table if exists private.workspace_contact_counts cascade;

drop function if exists private.count_inserted_contacts();

drop function if exists private.count_deleted_contacts();

-- Contacts are counted on write, per workspace, and the plan's limit is checked against the
-- counter (issue 12): the old check counted the workspace's contacts after each insert, which
-- cost O(contacts) and which concurrent inserts all passed.
--
-- The committed count lives in private.workspace_contact_counts. A transaction's own inserts
-- and deletes are added up per workspace in the transaction-local setting
-- growthbase.pending_contacts ({"<workspace id>": change}; a rolled-back savepoint rolls it
-- back with its rows) and written to the counter once, at commit, by a deferred trigger.
-- Updating the counter row in every statement instead makes an import that inserts row by row
-- under savepoints quadratic (every update walks the row's growing chain of versions, each
-- from another subtransaction).
--
-- A transaction's first change in a workspace locks its counter row with a no-op update, which
-- also queues the commit-time apply, so writers of one workspace are serialised until commit
-- and each limit check sees the committed count plus the transaction's own pending change:
-- concurrent inserts can never pass the limit together.
--
-- The setting is not signed: only trusted SQL can set it. The Data API sets only request.*
-- settings and the role, and set_config is in no schema it exposes; SQL run outside the Data
-- API (migrations, the edge's own statements, the SQL editor) is trusted.

create table private.workspace_contact_counts (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  contacts integer not null default 0
);

comment on table private.workspace_contact_counts is
  'Committed contacts per workspace, kept by triggers on public.contacts; private.verify_contact_counts() lists drift.';

-- Adds per-workspace changes to the transaction's pending ones and refuses a workspace that
-- grew past its plan's contact limit. Workspaces are taken in id order, so statements that
-- touch several workspaces lock their counters in one order. Called only from the security
-- definer triggers below, so it is not security definer itself, and it reads the limit inline
-- rather than through a helper function: each costs a function context per statement, which
-- an import inserting row by row under savepoints pays thousands of times.
create or replace function private.add_contact_changes(p_workspace_ids uuid[], p_changes integer[])
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_pending jsonb := coalesce(nullif(pg_catalog.current_setting('growthbase.pending_contacts', true), '')::jsonb, '{}'::jsonb);
  v_workspace_id uuid;
  v_change integer;
  v_first boolean;
  v_committed integer;
  v_max integer;
begin
  for v_workspace_id, v_change in
    select d.workspace_id, d.change from unnest(p_workspace_ids, p_changes) as d(workspace_id, change)
    where d.change <> 0
    order by d.workspace_id
  loop
    v_first := not (v_pending ? v_workspace_id::text);
    v_pending := v_pending || jsonb_build_object(
      v_workspace_id::text, coalesce((v_pending ->> v_workspace_id::text)::integer, 0) + v_change
    );
    perform pg_catalog.set_config('growthbase.pending_contacts', v_pending::text, true);
    if v_first then
      if v_change > 0 then
        insert into private.workspace_contact_counts (workspace_id) values (v_workspace_id)
        on conflict (workspace_id) do nothing;
      end if;
      -- Locks the counter and queues the apply. Under `set constraints all immediate` the apply
      -- runs at the end of this statement, so the setting is written before it and read back.
      update private.workspace_contact_counts c set contacts = c.contacts
      where c.workspace_id = v_workspace_id;
      v_pending := coalesce(nullif(pg_catalog.current_setting('growthbase.pending_contacts', true), '')::jsonb, '{}'::jsonb);
    end if;
    if v_change > 0 then
      -- The row is locked by this transaction: no other writer can change it before commit.
      select c.contacts into v_committed
      from private.workspace_contact_counts c where c.workspace_id = v_workspace_id;
      select p.contact_limit into v_max
      from public.workspaces w join public.plans p on p.tier = w.plan_tier
      where w.id = v_workspace_id;
      if v_committed + coalesce((v_pending ->> v_workspace_id::text)::integer, 0) > v_max then
        perform private.over_limit('contacts', v_max);
      end if;
    end if;
  end loop;
end
$$;

revoke all on function private.add_contact_changes(uuid[], integer[]) from public, anon, authenticated;

-- Once per insert or delete statement, from the rows it touched (O(rows touched); deletes
-- include erasures and cascades). Both triggers name their transition table `changed`.
create or replace function private.count_changed_contacts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_sign integer := case tg_op when 'INSERT' then 1 else -1 end;
  v_workspace_ids uuid[];
  v_changes integer[];
begin
  select array_agg(c.workspace_id order by c.workspace_id), array_agg(v_sign * c.contacts order by c.workspace_id)
  into v_workspace_ids, v_changes
  from (select r.workspace_id, count(*)::integer as contacts from changed r group by r.workspace_id) as c;
  if v_workspace_ids is not null then
    perform private.add_contact_changes(v_workspace_ids, v_changes);
  end if;
  return null;
end
$$;

revoke all on function private.count_changed_contacts() from public, anon, authenticated;

-- A contact moved to another workspace (only the service can change workspace_id). Per row,
-- and only when workspace_id really changes, so ordinary updates pay nothing.
create or replace function private.count_moved_contact()
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
create or replace function private.reset_contact_counts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform pg_catalog.set_config('growthbase.pending_contacts', '{}', true);
  update private.workspace_contact_counts c set contacts = 0 where c.contacts <> 0;
  return null;
end
$$;

revoke all on function private.reset_contact_counts() from public, anon, authenticated;

-- At commit (deferred, or at set constraints immediate): writes the transaction's change for
-- one workspace to its counter and removes it from the setting first, so later events for the
-- row (this update's own, another change's) find nothing left to apply, and a later change in
-- the same transaction locks the row and queues the apply again.
create or replace function private.apply_contact_changes()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pending jsonb := coalesce(nullif(pg_catalog.current_setting('growthbase.pending_contacts', true), '')::jsonb, '{}'::jsonb);
  v_change integer := (v_pending ->> new.workspace_id::text)::integer;
begin
  if v_change is null then
    return null;  -- applied already, or reset by a truncate
  end if;
  perform pg_catalog.set_config(
    'growthbase.pending_contacts', (v_pending - new.workspace_id::text)::text, true
  );
  if v_change <> 0 then
    update private.workspace_contact_counts c set contacts = c.contacts + v_change
    where c.workspace_id = new.workspace_id;
  end if;
  return null;
end
$$;

revoke all on function private.apply_contact_changes() from public, anon, authenticated;

-- Workspaces whose counter differs from their contacts (expected: none).
create or replace function private.verify_contact_counts()
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

drop trigger if exists contacts_limit on public.contacts;

drop function if exists private.enforce_contact_limit();

drop trigger if exists workspace_contact_counts_apply on private.workspace_contact_counts;

create constraint trigger workspace_contact_counts_apply
  after update on private.workspace_contact_counts
  deferrable initially deferred
  for each row execute function private.apply_contact_changes();

-- Every workspace starts with a counter row.
create or replace function private.create_contact_count()
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

drop trigger if exists workspaces_create_contact_count on public.workspaces;

create trigger workspaces_create_contact_count
  after insert on public.workspaces
  for each row execute function private.create_contact_count();

-- Created before the backfill: the triggers lock public.contacts against writes until this
-- migration commits, so the backfilled counts and the counted writes do not overlap.
drop trigger if exists contacts_count_inserted on public.contacts;

create trigger contacts_count_inserted
  after insert on public.contacts
  referencing new table as changed
  for each statement execute function private.count_changed_contacts();

drop trigger if exists contacts_count_deleted on public.contacts;

create trigger contacts_count_deleted
  after delete on public.contacts
  referencing old table as changed
  for each statement execute function private.count_changed_contacts();

drop trigger if exists contacts_count_moved on public.contacts;

create trigger contacts_count_moved
  after update of workspace_id on public.contacts
  for each row when (old.workspace_id is distinct from new.workspace_id)
  execute function private.count_moved_contact();

drop trigger if exists contacts_count_truncated on public.contacts;

create trigger contacts_count_truncated
  after truncate on public.contacts
  for each statement execute function private.reset_contact_counts();

insert into private.workspace_contact_counts (workspace_id, contacts)
select w.id, (select count(*) from public.contacts c where c.workspace_id = w.id)
from public.workspaces w;

revoke all on private.workspace_contact_counts from public, anon, authenticated;

grant select on private.workspace_contact_counts to service_role;
