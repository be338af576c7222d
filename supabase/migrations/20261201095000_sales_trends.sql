-- Sales trends for dashboards and analysts (issue 14 §4): revenue, orders, average order value,
-- new and returning customers per day, week or month, by project and source, read from daily
-- aggregates kept on write and from customer facts, so a year by day is a few hundred rows
-- plus the year's new customers, whatever the number of orders.
--
-- Per workspace, day (UTC, the order's placed_at), project and source:
--   orders          = paid or fulfilled orders placed that day;
--   revenue         = their base_total (the workspace's base currency; unknown rates add 0);
--   customer_orders = those of them that have a contact (the rest are guest orders);
--   new_customers   = customers whose first qualifying order (customer_facts) was placed that
--                     day in that project and source: each customer is new exactly once, and
--                     moves if an earlier order turns up or the first one is refunded. Read from
--                     customer_facts through its (workspace_id, first_order_at) index rather
--                     than kept per day, so keeping facts costs no second write per customer;
--   returning orders are customer_orders − new_customers: orders by customers who had bought
--   before (a second order on the day of the first is a returning one).
--
-- Kept on write without locking a day's row: the triggers on orders append each statement's
-- changes, summed per day, to private.sales_daily_changes, an insert-only log no writer waits
-- on. Readers add the log to private.sales_daily. The log is folded into sales_daily by
-- private.compact_sales_daily: by a writer every 256 log rows or so (the rows before its own,
-- for the workspaces it wrote, only if no one else is folding them: a transaction-level
-- advisory lock taken with try), by pg_cron every minute where it exists, and by the service.
-- Folding never waits and never blocks a writer; a concurrent writer's uncommitted rows are
-- left for the next fold. private.verify_sales_daily() recounts everything and lists any
-- difference.

create table private.sales_daily (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  day date not null,
  project_id uuid not null,
  source text not null,
  orders bigint not null,
  revenue numeric(20, 2) not null,
  customer_orders bigint not null,
  primary key (workspace_id, day, project_id, source)
);

create table private.sales_daily_changes (
  id bigint generated always as identity primary key,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  day date not null,
  project_id uuid not null,
  source text not null,
  orders bigint not null default 0,
  revenue numeric(20, 2) not null default 0,
  customer_orders bigint not null default 0
);

comment on table private.sales_daily is
  'Paid or fulfilled orders, revenue and orders with a customer per workspace, UTC day, project '
  'and source, as folded from private.sales_daily_changes; read both.';

comment on table private.sales_daily_changes is
  'Insert-only log of changes to private.sales_daily, appended by the triggers on orders and '
  'folded in by private.compact_sales_daily.';

-- indexes -------------------------------------------------------------------------------------

create index sales_daily_changes_workspace_day_idx on private.sales_daily_changes (workspace_id, day);

-- folding -------------------------------------------------------------------------------------

-- Folds the log rows of the given workspaces (null: every workspace with log rows) older than
-- p_before (null: all) into sales_daily, for each workspace only if this transaction can take
-- its folding lock without waiting. A fold of every workspace (the service's, pg_cron's) also
-- removes day rows that sum to nothing (a day whose orders were all refunded, a deleted
-- project's); readers skip them meanwhile. Read committed only
-- (under a snapshot another fold's deletes would be a serialization failure). Returns the
-- number of day rows written.
create function private.compact_sales_daily(p_workspace_ids uuid[] default null, p_before bigint default null)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspaces uuid[];
  v_folded integer;
begin
  if pg_catalog.current_setting('transaction_isolation') <> 'read committed' then
    return 0;
  end if;
  select array_agg(w.id order by w.id) into v_workspaces
  from (
    select distinct c.workspace_id as id from private.sales_daily_changes c
    where (p_workspace_ids is null or c.workspace_id = any (p_workspace_ids))
      and (p_before is null or c.id < p_before)
  ) as w
  where pg_catalog.pg_try_advisory_xact_lock(
    pg_catalog.hashtext('growthbase.sales_daily'), pg_catalog.hashtext(w.id::text)
  );
  if v_workspaces is null then
    return 0;
  end if;
  with moved as (
    delete from private.sales_daily_changes c
    where c.workspace_id = any (v_workspaces) and (p_before is null or c.id < p_before)
    returning c.workspace_id, c.day, c.project_id, c.source, c.orders, c.revenue,
              c.customer_orders
  )
  insert into private.sales_daily as d
    (workspace_id, day, project_id, source, orders, revenue, customer_orders)
  select m.workspace_id, m.day, m.project_id, m.source, sum(m.orders), sum(m.revenue),
         sum(m.customer_orders)
  from moved m
  where exists (select 1 from public.workspaces w where w.id = m.workspace_id)
  group by m.workspace_id, m.day, m.project_id, m.source
  order by m.workspace_id, m.day, m.project_id, m.source
  on conflict (workspace_id, day, project_id, source) do update
  set orders = d.orders + excluded.orders, revenue = d.revenue + excluded.revenue,
      customer_orders = d.customer_orders + excluded.customer_orders;
  get diagnostics v_folded = row_count;
  if p_workspace_ids is null then
    delete from private.sales_daily d
    where d.workspace_id = any (v_workspaces)
      and d.orders = 0 and d.revenue = 0 and d.customer_orders = 0;
  end if;
  return v_folded;
end
$$;

revoke all on function private.compact_sales_daily(uuid[], bigint) from public, anon, authenticated;

grant execute on function private.compact_sales_daily(uuid[], bigint) to service_role;

-- Orders inserted, updated or deleted (transition tables new_orders, old_orders): +1 for each
-- new version that counts, −1 for each old one, summed per day and appended to the log (a day
-- that sums to nothing is not). No join of the two tables: a trigger's plan is cached whatever
-- the size of its transition tables (see …_customer_facts.sql). Updates and deletes skip
-- workspaces being deleted in this transaction (their orders go with them, and a log row would
-- point at a workspace that no longer exists).
create function private.sales_daily_orders()
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
    with appended as (
      insert into private.sales_daily_changes
        (workspace_id, day, project_id, source, orders, revenue, customer_orders)
      select n.workspace_id, (n.placed_at at time zone 'UTC')::date, n.project_id, n.source,
             count(*), coalesce(sum(n.base_total), 0), count(n.contact_id)
      from new_orders n
      where n.status in ('paid', 'fulfilled')
      group by 1, 2, 3, 4
      returning id, workspace_id
    )
    select min(a.id), bool_or(a.id % 256 = 0), array_agg(distinct a.workspace_id)
    into v_first, v_fold, v_workspaces
    from appended a;
  elsif tg_op = 'DELETE' then
    with appended as (
      insert into private.sales_daily_changes
        (workspace_id, day, project_id, source, orders, revenue, customer_orders)
      select g.* from (
        select o.workspace_id, (o.placed_at at time zone 'UTC')::date, o.project_id, o.source,
               -count(*), -coalesce(sum(o.base_total), 0), -count(o.contact_id)
        from old_orders o
        where o.status in ('paid', 'fulfilled')
        group by 1, 2, 3, 4
      ) as g
      where exists (select 1 from public.workspaces w where w.id = g.workspace_id)
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
    with appended as (
      insert into private.sales_daily_changes
        (workspace_id, day, project_id, source, orders, revenue, customer_orders)
      select g.* from (
        select v.workspace_id, v.day, v.project_id, v.source, sum(v.sign),
               coalesce(sum(v.sign * v.base_total), 0),
               coalesce(sum(v.sign) filter (where v.has_contact), 0)
        from (
          select -1 as sign, o.workspace_id, (o.placed_at at time zone 'UTC')::date as day,
                 o.project_id, o.source, o.base_total, o.contact_id is not null as has_contact
          from old_orders o where o.status in ('paid', 'fulfilled')
          union all
          select 1, n.workspace_id, (n.placed_at at time zone 'UTC')::date, n.project_id,
                 n.source, n.base_total, n.contact_id is not null
          from new_orders n where n.status in ('paid', 'fulfilled')
        ) as v
        group by v.workspace_id, v.day, v.project_id, v.source
        having sum(v.sign) <> 0 or coalesce(sum(v.sign * v.base_total), 0) <> 0
            or coalesce(sum(v.sign) filter (where v.has_contact), 0) <> 0
      ) as g
      where exists (select 1 from public.workspaces w where w.id = g.workspace_id)
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

-- A truncate of orders (maintenance only) leaves no sales.
create function private.sales_daily_truncated()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.sales_daily_changes;
  delete from private.sales_daily;
  return null;
end
$$;

revoke all on function private.sales_daily_truncated() from public, anon, authenticated;

-- Created before the backfill, which they lock out until this migration commits.
create trigger orders_sales_daily_inserted
  after insert on public.orders
  referencing new table as new_orders
  for each statement execute function private.sales_daily_orders();

create trigger orders_sales_daily_updated
  after update on public.orders
  referencing old table as old_orders new table as new_orders
  for each statement execute function private.sales_daily_orders();

create trigger orders_sales_daily_deleted
  after delete on public.orders
  referencing old table as old_orders
  for each statement execute function private.sales_daily_orders();

create trigger orders_sales_daily_truncated
  after truncate on public.orders
  for each statement execute function private.sales_daily_truncated();

-- The day rows as the orders say they should be.
create function private.counted_sales_daily()
returns table (
  workspace_id uuid, day date, project_id uuid, source text, orders bigint,
  revenue numeric(20, 2), customer_orders bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  select o.workspace_id, (o.placed_at at time zone 'UTC')::date, o.project_id, o.source,
         count(*), coalesce(sum(o.base_total), 0)::numeric(20, 2), count(o.contact_id)
  from public.orders o
  where o.status in ('paid', 'fulfilled')
  group by 1, 2, 3, 4
$$;

revoke all on function private.counted_sales_daily() from public, anon, authenticated;

insert into private.sales_daily
  (workspace_id, day, project_id, source, orders, revenue, customer_orders)
select c.workspace_id, c.day, c.project_id, c.source, c.orders, c.revenue, c.customer_orders
from private.counted_sales_daily() c;

-- Day rows whose kept figures (folded plus logged) differ from a recount (expected: none).
create function private.verify_sales_daily()
returns table (workspace_id uuid, day date, project_id uuid, source text, kept jsonb, counted jsonb)
language sql
stable
security definer
set search_path = ''
as $$
  with kept as (
    select x.workspace_id, x.day, x.project_id, x.source, sum(x.orders) as orders,
           sum(x.revenue) as revenue, sum(x.customer_orders) as customer_orders
    from (
      select d.workspace_id, d.day, d.project_id, d.source, d.orders, d.revenue, d.customer_orders
      from private.sales_daily d
      union all
      select c.workspace_id, c.day, c.project_id, c.source, c.orders, c.revenue, c.customer_orders
      from private.sales_daily_changes c
    ) as x
    group by x.workspace_id, x.day, x.project_id, x.source
    having sum(x.orders) <> 0 or sum(x.revenue) <> 0 or sum(x.customer_orders) <> 0
  )
  select coalesce(k.workspace_id, c.workspace_id), coalesce(k.day, c.day),
         coalesce(k.project_id, c.project_id), coalesce(k.source, c.source),
         jsonb_build_object('orders', k.orders, 'revenue', k.revenue, 'customer_orders', k.customer_orders),
         jsonb_build_object('orders', c.orders, 'revenue', c.revenue, 'customer_orders', c.customer_orders)
  from kept k
  full join private.counted_sales_daily() c
    on c.workspace_id = k.workspace_id and c.day = k.day and c.project_id = k.project_id
   and c.source = k.source
  where (k.orders, k.revenue, k.customer_orders) is distinct from (c.orders, c.revenue, c.customer_orders)
$$;

revoke all on function private.verify_sales_daily() from public, anon, authenticated;

grant execute on function private.verify_sales_daily() to service_role;

-- Revenue, orders, average order value, new customers and returning orders per period (day,
-- ISO week from Monday, or calendar month; UTC) from p_from to p_to (inclusive, at most 3,660
-- days; a period at either end holds only its days in the range), for the workspaces the
-- caller may see, optionally one workspace, project or source, split by project, source, both
-- or neither (p_by: total, project, source, project_source). With a workspace and p_by total
-- every period has a row, zero when nothing sold.
create function analytics.sales_trend(
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
      select f.workspace_id, (f.first_order_at at time zone 'UTC')::date,
             f.first_order_project_id, f.first_order_source, 0, 0, 0, 1
      from public.customer_facts f
      where f.first_order_at >= (p_from::timestamp at time zone 'UTC')
        and f.first_order_at < ((p_to + 1)::timestamp at time zone 'UTC')
        and (v_visible is null or f.workspace_id = any (v_visible))
        and (p_workspace_id is null or f.workspace_id = p_workspace_id)
        and (p_project_id is null or f.first_order_project_id = p_project_id)
        and (p_source is null or f.first_order_source = p_source)
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
  'orders per day, week or month between two dates (UTC, at most 3660 days), for the '
  'workspaces you may see; optional workspace, project and source filters; p_by splits by '
  'project, source, both or neither (total). 422 invalid_date_range, invalid_grain, invalid_split.';

-- Where pg_cron exists (Supabase), fold the log every minute; elsewhere writers and the service
-- fold it.
do $$
begin
  if exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
    perform cron.schedule('growthbase-sales-daily', '* * * * *', 'select private.compact_sales_daily()');
  end if;
end
$$;

-- grants --------------------------------------------------------------------------------------

revoke all on private.sales_daily from public, anon, authenticated;

revoke all on private.sales_daily_changes from public, anon, authenticated;

grant select on private.sales_daily, private.sales_daily_changes to service_role;
