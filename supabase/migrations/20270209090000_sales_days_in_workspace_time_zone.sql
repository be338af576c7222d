-- Sales days in the workspace's time zone (issue 14 §4): a shop in India (UTC+5:30) saw every
-- day's sales cut at 05:30 local time. A workspace now has a time zone (`time_zone`, an IANA
-- name from private.time_zones, default UTC), set by its owners and admins the way they rename
-- it (an update of the row through the Data API, under workspaces_update_admins), and its sales
-- days, weeks and months are that zone's:
--   - private.sales_daily and its log are keyed by the local day of each order's placed_at, so a
--     read stays a few hundred day rows whatever the number of orders;
--   - new customers are read from customer_facts by the local day of first_order_at;
--   - a change of zone recounts the workspace's day rows from its orders in the same statement
--     (one grouped pass over the workspace's orders: 0.4–0.9 s for 1M orders, inside the
--     signed-in user's 8 s; see the README), so no figure is ever stale;
--   - writers of orders hold a shared advisory lock on their workspace's sales zone from the
--     moment they read the zone until they commit; a change of zone takes it exclusively before
--     recounting, so an order is counted either in the recount or by its writer under the new
--     zone, never under the old zone after the recount. Writers never wait for each other (shared
--     locks, taken in workspace id order), only for a change of zone in progress; a change that
--     cannot have the lock (5 s, or a deadlock with a writer waiting for the workspace row) is a
--     409 time_zone_busy. A repeatable-read writer also locks its workspace's private.sales_zones
--     row for share, a row only a change of zone updates: a change after its snapshot fails it
--     (retry), a rename or a credit debit does not.

-- the zone --------------------------------------------------------------------------------------

alter table public.workspaces add column time_zone text not null default 'UTC'
  check (char_length(time_zone) between 1 and 64);

comment on column public.workspaces.time_zone is
  'IANA time zone name (e.g. Asia/Kolkata) in which the workspace''s sales days, weeks and months '
  'are cut; owners and admins may change it (422 invalid_time_zone for a name Postgres does not know).';

-- The zone must be one Postgres knows (private.time_zones); a change recounts the sales days.
create function private.validate_workspace_time_zone()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not exists (select 1 from private.time_zones z where z.name = new.time_zone) then
    perform private.fail(422, 'invalid_time_zone',
      'time_zone must be an IANA time zone name, such as Asia/Kolkata or UTC');
  end if;
  return new;
end
$$;

revoke all on function private.validate_workspace_time_zone() from public, anon, authenticated;

create trigger workspaces_validate_time_zone
  before insert or update of time_zone on public.workspaces
  for each row execute function private.validate_workspace_time_zone();

-- One row per workspace, updated by each change of its zone (and by nothing else): what a
-- repeatable-read writer locks for share to learn that the zone changed after its snapshot.
create table private.sales_zones (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  changed_at timestamptz not null default pg_catalog.now()
);

alter table private.sales_zones enable row level security;

revoke all on private.sales_zones from public, anon, authenticated;

insert into private.sales_zones (workspace_id) select w.id from public.workspaces w;

-- A new workspace gets its zone row.
create function private.sales_zone_added()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into private.sales_zones (workspace_id) values (new.id);
  return null;
end
$$;

revoke all on function private.sales_zone_added() from public, anon, authenticated;

create trigger workspaces_sales_zone_added
  after insert on public.workspaces
  for each row execute function private.sales_zone_added();

-- Holds, until commit, the right to count sales of these workspaces in their current zone: shared
-- for writers of orders (they never wait for each other), exclusive for a change of zone. Locks
-- are taken in workspace id order, so two statements spanning the same workspaces never
-- deadlock on them. Under repeatable read or serializable a writer's snapshot may predate a
-- change of zone it waited for, so there it first locks the workspaces' private.sales_zones rows
-- for share: a zone changed since its snapshot (which updated that row) is a serialization
-- failure (retry), never a day counted in the old zone; any other update of the workspace (a
-- rename, a credit debit) neither fails nor waits for it (rows first, so a change of zone, which
-- updates the row before it waits for writers, never waits on a writer that waits on the row).
create function private.lock_sales_zone(p_workspace_ids uuid[], p_exclusive boolean default false)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  if not p_exclusive
     and pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
    perform 1 from private.sales_zones z
    where z.workspace_id = any (p_workspace_ids)
    order by z.workspace_id
    for share;
  end if;
  for v_id in
    select distinct u.id from pg_catalog.unnest(p_workspace_ids) as u(id) order by 1
  loop
    if p_exclusive then
      perform pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtext('growthbase.sales_zone'), pg_catalog.hashtext(v_id::text)
      );
    else
      perform pg_catalog.pg_advisory_xact_lock_shared(
        pg_catalog.hashtext('growthbase.sales_zone'), pg_catalog.hashtext(v_id::text)
      );
    end if;
  end loop;
end
$$;

revoke all on function private.lock_sales_zone(uuid[], boolean) from public, anon, authenticated;

-- A workspace's day rows as its orders say they should be in `p_time_zone` (its zone).
create function private.counted_sales_daily_of(p_workspace_id uuid, p_time_zone text)
returns table (
  workspace_id uuid, day date, project_id uuid, source text, orders bigint,
  revenue numeric(20, 2), customer_orders bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  select o.workspace_id, (o.placed_at at time zone p_time_zone)::date, o.project_id, o.source,
         count(*), coalesce(sum(o.base_total), 0)::numeric(20, 2), count(o.contact_id)
  from public.orders o
  where o.workspace_id = p_workspace_id and o.status in ('paid', 'fulfilled')
  group by 1, 2, 3, 4
$$;

revoke all on function private.counted_sales_daily_of(uuid, text) from public, anon, authenticated;

-- A changed zone: its private.sales_zones row is updated (failing repeatable-read writers whose
-- snapshot predates it), every writer of the workspace's orders waited for (exclusive zone lock,
-- at most 5 s or the caller's shorter lock_timeout: 409 time_zone_busy, try again; also when the
-- wait deadlocks with a writer that, holding the shared lock, waits for the workspace row this
-- change holds) and every folder too (its folding lock), the day rows and the log are replaced
-- by a recount in the new zone, in the changing transaction. Read committed only: each statement
-- here sees what the writers it waited for committed (under a snapshot it would not, and the
-- recount would miss their orders).
create function private.sales_daily_rezoned()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_lock_timeout text := pg_catalog.current_setting('lock_timeout');
begin
  if pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
    perform private.fail(409, 'time_zone_needs_read_committed',
      'Change a workspace''s time zone in a read committed transaction');
  end if;
  if v_lock_timeout::interval = interval '0' or v_lock_timeout::interval > interval '5 seconds' then
    perform pg_catalog.set_config('lock_timeout', '5s', true);
  end if;
  begin
    update private.sales_zones z set changed_at = pg_catalog.now() where z.workspace_id = new.id;
    perform private.lock_sales_zone(array[new.id], true);
  exception when lock_not_available or deadlock_detected then
    perform private.fail(409, 'time_zone_busy',
      'Orders of this workspace are being written; try again in a moment');
  end;
  perform pg_catalog.set_config('lock_timeout', v_lock_timeout, true);
  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtext('growthbase.sales_daily'), pg_catalog.hashtext(new.id::text)
  );
  delete from private.sales_daily_changes c where c.workspace_id = new.id;
  delete from private.sales_daily d where d.workspace_id = new.id;
  insert into private.sales_daily
    (workspace_id, day, project_id, source, orders, revenue, customer_orders)
  select c.workspace_id, c.day, c.project_id, c.source, c.orders, c.revenue, c.customer_orders
  from private.counted_sales_daily_of(new.id, new.time_zone) c;
  return null;
end
$$;

revoke all on function private.sales_daily_rezoned() from public, anon, authenticated;

create trigger workspaces_sales_daily_rezoned
  after update of time_zone on public.workspaces
  for each row when (old.time_zone is distinct from new.time_zone)
  execute function private.sales_daily_rezoned();

-- Orders inserted, updated or deleted (transition tables new_orders, old_orders): +1 for each
-- new version that counts, −1 for each old one, summed per local day of the workspace's zone and
-- appended to the log (a day that sums to nothing is not). The zone is read after taking the
-- shared zone lock of the statement's workspaces, in a statement of its own (a fresh snapshot
-- under read committed). No join of the two transition tables: a trigger's plan is cached
-- whatever their size (see …_customer_facts.sql). Updates and deletes skip workspaces being
-- deleted in this transaction (their orders go with them, and a log row would point at a
-- workspace that no longer exists).
create or replace function private.sales_daily_orders()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_first bigint;
  v_fold boolean;
  v_workspaces uuid[];
begin
  if tg_op = 'INSERT' then
    perform private.lock_sales_zone(array(select distinct n.workspace_id from new_orders n));
    with appended as (
      insert into private.sales_daily_changes
        (workspace_id, day, project_id, source, orders, revenue, customer_orders)
      select n.workspace_id, (n.placed_at at time zone w.time_zone)::date, n.project_id, n.source,
             count(*), coalesce(sum(n.base_total), 0), count(n.contact_id)
      from new_orders n
      join public.workspaces w on w.id = n.workspace_id
      where n.status in ('paid', 'fulfilled')
      group by 1, 2, 3, 4
      returning id, workspace_id
    )
    select min(a.id), bool_or(a.id % 256 = 0), array_agg(distinct a.workspace_id)
    into v_first, v_fold, v_workspaces
    from appended a;
  elsif tg_op = 'DELETE' then
    perform private.lock_sales_zone(array(select distinct o.workspace_id from old_orders o));
    with appended as (
      insert into private.sales_daily_changes
        (workspace_id, day, project_id, source, orders, revenue, customer_orders)
      select o.workspace_id, (o.placed_at at time zone w.time_zone)::date, o.project_id, o.source,
             -count(*), -coalesce(sum(o.base_total), 0), -count(o.contact_id)
      from old_orders o
      join public.workspaces w on w.id = o.workspace_id
      where o.status in ('paid', 'fulfilled')
      group by 1, 2, 3, 4
      returning id, workspace_id
    )
    select min(a.id), bool_or(a.id % 256 = 0), array_agg(distinct a.workspace_id)
    into v_first, v_fold, v_workspaces
    from appended a;
  else
    -- An insert ... on conflict fires this even when no row conflicted, with empty tables.
    perform 1 from new_orders limit 1;
    if not found then
      return null;
    end if;
    perform private.lock_sales_zone(array(
      select n.workspace_id from new_orders n union select o.workspace_id from old_orders o
    ));
    with appended as (
      insert into private.sales_daily_changes
        (workspace_id, day, project_id, source, orders, revenue, customer_orders)
      select v.workspace_id, (v.placed_at at time zone w.time_zone)::date, v.project_id,
             v.source, sum(v.sign), coalesce(sum(v.sign * v.base_total), 0),
             coalesce(sum(v.sign) filter (where v.has_contact), 0)
      from (
        select -1 as sign, o.workspace_id, o.placed_at, o.project_id, o.source, o.base_total,
               o.contact_id is not null as has_contact
        from old_orders o where o.status in ('paid', 'fulfilled')
        union all
        select 1, n.workspace_id, n.placed_at, n.project_id, n.source, n.base_total,
               n.contact_id is not null
        from new_orders n where n.status in ('paid', 'fulfilled')
      ) as v
      join public.workspaces w on w.id = v.workspace_id
      group by 1, 2, 3, 4
      having sum(v.sign) <> 0 or coalesce(sum(v.sign * v.base_total), 0) <> 0
          or coalesce(sum(v.sign) filter (where v.has_contact), 0) <> 0
      returning id, workspace_id
    )
    select min(a.id), bool_or(a.id % 256 = 0), array_agg(distinct a.workspace_id)
    into v_first, v_fold, v_workspaces
    from appended a;
  end if;
  -- About every 256 log rows, the earlier rows of these workspaces are folded.
  if v_fold then
    perform private.compact_sales_daily(v_workspaces, v_first);
  end if;
  return null;
end
$$;

revoke all on function private.sales_daily_orders() from public, anon, authenticated;

-- The day rows as the orders say they should be, each workspace in its zone.
create or replace function private.counted_sales_daily()
returns table (
  workspace_id uuid, day date, project_id uuid, source text, orders bigint,
  revenue numeric(20, 2), customer_orders bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  select o.workspace_id, (o.placed_at at time zone w.time_zone)::date, o.project_id, o.source,
         count(*), coalesce(sum(o.base_total), 0)::numeric(20, 2), count(o.contact_id)
  from public.orders o
  join public.workspaces w on w.id = o.workspace_id
  where o.status in ('paid', 'fulfilled')
  group by 1, 2, 3, 4
$$;

revoke all on function private.counted_sales_daily() from public, anon, authenticated;

-- Revenue, orders, average order value, new customers and returning orders per period (day,
-- ISO week from Monday, or calendar month; each workspace's own time zone) from p_from to p_to
-- (inclusive local dates, at most 3,660 days; a period at either end holds only its days in the
-- range), for the workspaces the caller may see, optionally one workspace, project or source,
-- split by project, source, both or neither (p_by: total, project, source, project_source). With
-- a workspace and p_by total every period has a row, zero when nothing sold. New customers: the
-- local day of first_order_at, read through customer_facts' (workspace_id, first_order_at) index
-- over the range widened by a day at each end (a zone's midnight may be skipped or repeated).
create or replace function analytics.sales_trend(
  p_from date, p_to date, p_grain text default 'day', p_workspace_id uuid default null,
  p_project_id uuid default null, p_source text default null, p_by text default 'total'
)
returns table (
  workspace_id uuid, period date, project_id uuid, source text, orders bigint,
  revenue numeric(20, 2), average_order_value numeric(20, 2), new_customers bigint,
  returning_orders bigint, guest_orders bigint, currency text
)
language plpgsql
stable
security definer
set search_path = ''
set jit = off
as $$
declare
  v_visible uuid[];
begin
  if p_from is null or p_to is null
     or p_from not between date '1900-01-01' and date '9999-12-31'
     or p_to not between date '1900-01-01' and date '9999-12-31'
     or p_to < p_from or p_to - p_from > 3660 then
    perform private.fail(422, 'invalid_date_range',
      'p_from and p_to are dates from 1900-01-01 to 9999-12-31, p_from <= p_to, at most 3660 days apart');
  end if;
  if p_grain is null or p_grain not in ('day', 'week', 'month') then
    perform private.fail(422, 'invalid_grain', 'p_grain is day, week or month');
  end if;
  if p_by is null or p_by not in ('total', 'project', 'source', 'project_source') then
    perform private.fail(422, 'invalid_split', 'p_by is total, project, source or project_source');
  end if;
  v_visible := case when private.analytics_sees_all() then null
                    else array(select private.user_workspace_ids()) end;
  return query
    with days as (
      select d.workspace_id, d.day, d.project_id, d.source, d.orders, d.revenue,
             d.customer_orders, 0::bigint as new_customers
      from private.sales_daily d
      where d.day between p_from and p_to
        and (v_visible is null or d.workspace_id = any (v_visible))
        and (p_workspace_id is null or d.workspace_id = p_workspace_id)
        and (p_project_id is null or d.project_id = p_project_id)
        and (p_source is null or d.source = p_source)
      union all
      select c.workspace_id, c.day, c.project_id, c.source, c.orders, c.revenue,
             c.customer_orders, 0
      from private.sales_daily_changes c
      where c.day between p_from and p_to
        and (v_visible is null or c.workspace_id = any (v_visible))
        and (p_workspace_id is null or c.workspace_id = p_workspace_id)
        and (p_project_id is null or c.project_id = p_project_id)
        and (p_source is null or c.source = p_source)
      union all
      select n.workspace_id, n.day, n.project_id, n.source, 0, 0, 0, 1
      from (
        select f.workspace_id, (f.first_order_at at time zone w.time_zone)::date as day,
               f.first_order_project_id as project_id, f.first_order_source as source
        from public.workspaces w
        join public.customer_facts f
          on f.workspace_id = w.id
         and f.first_order_at >= ((p_from - 1)::timestamp at time zone w.time_zone)
         and f.first_order_at < ((p_to + 2)::timestamp at time zone w.time_zone)
        where (v_visible is null or w.id = any (v_visible))
          and (p_workspace_id is null or w.id = p_workspace_id)
          and (p_project_id is null or f.first_order_project_id = p_project_id)
          and (p_source is null or f.first_order_source = p_source)
      ) as n
      where n.day between p_from and p_to
    ),
    periods as (
      select x.workspace_id, date_trunc(p_grain, x.day::timestamp)::date as period,
             case when p_by in ('project', 'project_source') then x.project_id end as project_id,
             case when p_by in ('source', 'project_source') then x.source end as source,
             sum(x.orders)::bigint as orders, sum(x.revenue)::numeric(20, 2) as revenue,
             sum(x.customer_orders)::bigint as customer_orders,
             sum(x.new_customers)::bigint as new_customers
      from days x
      group by 1, 2, 3, 4
    ),
    every_period as (
      select w.id as workspace_id, g.period::date as period
      from public.workspaces w
      cross join generate_series(date_trunc(p_grain, p_from::timestamp), p_to::timestamp,
                                 ('1 ' || p_grain)::interval) as g(period)
      where p_by = 'total' and w.id = p_workspace_id
        and (v_visible is null or w.id = any (v_visible))
    ),
    filled as (
      select coalesce(p.workspace_id, e.workspace_id) as workspace_id,
             coalesce(p.period, e.period) as period, p.project_id, p.source,
             coalesce(p.orders, 0) as orders, coalesce(p.revenue, 0) as revenue,
             coalesce(p.customer_orders, 0) as customer_orders,
             coalesce(p.new_customers, 0) as new_customers
      from periods p
      full join every_period e on e.workspace_id = p.workspace_id and e.period = p.period
    )
    select f.workspace_id, f.period, f.project_id, f.source, f.orders, f.revenue::numeric(20, 2),
           round(f.revenue / nullif(f.orders, 0), 2)::numeric(20, 2), f.new_customers,
           f.customer_orders - f.new_customers, f.orders - f.customer_orders, w.base_currency
    from filled f
    join public.workspaces w on w.id = f.workspace_id
    where f.orders <> 0 or f.new_customers <> 0 or p_by = 'total' and f.workspace_id = p_workspace_id
    order by f.workspace_id, f.period, f.project_id, f.source;
end
$$;

revoke all on function analytics.sales_trend(date, date, text, uuid, uuid, text, text) from public, anon, authenticated;

grant execute on function analytics.sales_trend(date, date, text, uuid, uuid, text, text)
  to authenticated, growthbase_analyst;

comment on function analytics.sales_trend(date, date, text, uuid, uuid, text, text) is
  'Revenue (base currency), orders, average order value, new customers, returning and guest '
  'orders per day, week or month between two dates (each workspace''s time_zone, at most 3660 '
  'days), for the workspaces you may see; optional workspace, project and source filters; p_by '
  'splits by project, source, both or neither (total). 422 invalid_date_range, invalid_grain, '
  'invalid_split.';

comment on table private.sales_daily is
  'Paid or fulfilled orders, revenue and orders with a customer per workspace, day (in the '
  'workspace''s time_zone), project and source, as folded from private.sales_daily_changes; read both.';

-- grants --------------------------------------------------------------------------------------

grant update (time_zone) on public.workspaces to authenticated;

-- policies ------------------------------------------------------------------------------------

drop policy workspaces_update_admins on public.workspaces;

-- Owners and admins may rename a workspace, change its slug, base currency or time zone.
create policy workspaces_update_admins on public.workspaces
  for update to authenticated
  using (id in (select private.user_workspace_ids_at_least('admin')))
  with check (id in (select private.user_workspace_ids_at_least('admin')));

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'workspaces', 'time_zone', 'none', 'not_personal', null);
