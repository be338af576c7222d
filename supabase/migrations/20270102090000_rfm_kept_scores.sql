-- RFM reads from scores kept per workspace (issue 14, performance). The rules and numbers are
-- those of …_rfm_analytics.sql; only where a read finds them changes.
--
-- private.refresh_rfm_kept scores a workspace's customers from their facts, as counting does
-- (…_rfm_scores_cheaper.sql), and keeps the result: a narrow row per customer
-- (private.rfm_kept_scores, its rfm_code and segment included) and one row per workspace
-- (private.rfm_kept) with the newest last order it saw. Every write that changes a workspace's
-- facts also appends the workspace to private.rfm_stale, in the same statement (the triggers on
-- orders, through customer_facts_add_orders and recount_customer_facts; a deleted contact's and
-- truncated orders' facts go with their kept rows): an insert-only log keyed by workspace and
-- transaction, so writers never wait for each other or for a refresh. A refresh deletes the log
-- rows it sees in the statement that reads the facts, so kept scores hold exactly when their
-- workspace has no log row: a write committed after the refresh read the facts left its row.
-- Readers (analytics.rfm, private.rfm_scores) check that, and that the as-of date is on or after
-- the workspace's newest last order (recency scores rank last-order days, whatever the date;
-- recency_days is counted at read), in the statement that reads the scores; any other workspace
-- is counted as before, in the same statement. Results are identical either way.
--
-- The refresh runs where pg_cron exists every minute, for stale workspaces; the service may call
-- it too (bench_rfm does, as pg_cron would have). Until then a workspace is counted: a read
-- costs then what it cost before.

create table private.rfm_kept (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  last_order_at timestamptz not null,
  refreshed_at timestamptz not null default now()
);

create table private.rfm_kept_scores (
  workspace_id uuid not null,
  contact_id uuid not null,
  first_order_at timestamptz not null,
  last_order_at timestamptz not null,
  last_order_day date not null,
  frequency integer not null,
  monetary numeric(14, 2) not null,
  r_score smallint not null,
  f_score smallint not null,
  m_score smallint not null,
  rfm_code text not null,
  segment text not null,
  primary key (workspace_id, contact_id)
);

create table private.rfm_stale (
  workspace_id uuid not null,
  xact xid8 not null default pg_catalog.pg_current_xact_id(),
  primary key (workspace_id, xact)
);

comment on table private.rfm_kept is
  'Workspaces whose RFM scores are kept in private.rfm_kept_scores, with the newest last order '
  'they were scored from; the scores hold while private.rfm_stale has no row of the workspace.';

comment on table private.rfm_kept_scores is
  'Per customer, RFM scores as private.refresh_rfm_kept last counted them (last_order_day in '
  'UTC; recency_days is counted at read from the as-of date).';

comment on table private.rfm_stale is
  'Workspaces whose facts changed since their RFM scores were kept (insert-only; one row per '
  'writing transaction, removed by the next refresh).';

-- scoring -------------------------------------------------------------------------------------

-- Per-contact scores as of a date for the given workspaces (null: all), as before: kept scores
-- where they hold (see the header; read through a filter on the kept workspaces, cheaper per row
-- than a join), counted as before for the other workspaces (only when there are some), in one
-- statement (one snapshot). analytics.rfm writes the same query out; both must change together.
create or replace function private.rfm_scores(p_as_of date, p_workspace_ids uuid[])
returns table (
  workspace_id uuid, contact_id uuid, first_order_at timestamptz, last_order_at timestamptz,
  recency_days integer, frequency integer, monetary numeric(14, 2),
  r_score integer, f_score integer, m_score integer
)
language sql
stable
security definer
set search_path = ''
set work_mem = '64MB'
set jit = off
as $$
  with kept as materialized (
    select k.workspace_id from private.rfm_kept k
    where (p_workspace_ids is null or k.workspace_id = any (p_workspace_ids))
      and k.last_order_at < ((p_as_of + 1)::timestamp at time zone 'UTC')
      and not exists (select 1 from private.rfm_stale s where s.workspace_id = k.workspace_id)
  ),
  settled as (
    select f.workspace_id, f.contact_id, f.first_order_at, f.last_order_at,
           f.orders_count as frequency, f.revenue as monetary
    from public.customer_facts f
    where f.last_order_at < ((p_as_of + 1)::timestamp at time zone 'UTC')
      and (p_workspace_ids is null or f.workspace_id = any (p_workspace_ids))
      and not exists (select 1 from kept k where k.workspace_id = f.workspace_id)
  ),
  recounted as (
    select o.workspace_id, o.contact_id, min(o.placed_at) as first_order_at,
           max(o.placed_at) as last_order_at, count(*)::integer as frequency,
           coalesce(sum(o.base_total), 0) as monetary
    from public.customer_facts f
    join public.orders o on o.contact_id = f.contact_id and o.workspace_id = f.workspace_id
    where f.first_order_at < ((p_as_of + 1)::timestamp at time zone 'UTC')
      and f.last_order_at >= ((p_as_of + 1)::timestamp at time zone 'UTC')
      and (p_workspace_ids is null or f.workspace_id = any (p_workspace_ids))
      and not exists (select 1 from kept k where k.workspace_id = f.workspace_id)
      and o.status in ('paid', 'fulfilled')
      and o.placed_at < ((p_as_of + 1)::timestamp at time zone 'UTC')
    group by o.workspace_id, o.contact_id
  ),
  per_contact as (
    select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at,
           p_as_of - (c.last_order_at at time zone 'UTC')::date as recency_days,
           c.frequency, c.monetary::numeric(14, 2) as monetary, (c.monetary * 100)::bigint as cents
    from (select * from settled union all select * from recounted) as c
  ),
  cuts as materialized (
    select q.workspace_id, q.r[1] as r1, q.r[2] as r2, q.r[3] as r3, q.r[4] as r4,
           q.f[1] as f1, q.f[2] as f2, q.f[3] as f3, q.f[4] as f4,
           q.m[1] as m1, q.m[2] as m2, q.m[3] as m3, q.m[4] as m4
    from (
      select c.workspace_id,
             percentile_disc(array[0.2 + 1e-10, 0.4 + 1e-10, 0.6 + 1e-10, 0.8 + 1e-10])
               within group (order by c.recency_days) as r,
             percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
               within group (order by c.frequency) as f,
             percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
               within group (order by c.cents) as m
      from per_contact c
      group by c.workspace_id
    ) as q
  ),
  counted as (
    select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at, c.recency_days,
           c.frequency, c.monetary,
           5 - (c.recency_days >= t.r1)::integer - (c.recency_days >= t.r2)::integer
             - (c.recency_days >= t.r3)::integer - (c.recency_days >= t.r4)::integer as r_score,
           1 + (c.frequency > t.f1)::integer + (c.frequency > t.f2)::integer
             + (c.frequency > t.f3)::integer + (c.frequency > t.f4)::integer as f_score,
           1 + (c.cents > t.m1)::integer + (c.cents > t.m2)::integer
             + (c.cents > t.m3)::integer + (c.cents > t.m4)::integer as m_score
    from per_contact c
    join cuts t on t.workspace_id = c.workspace_id
    -- Only when some workspace asked for has customers and no kept scores that hold.
    where exists (
      select 1 from public.workspaces w
      where (p_workspace_ids is null or w.id = any (p_workspace_ids))
        and not exists (select 1 from kept k where k.workspace_id = w.id)
        and exists (select 1 from public.customer_facts x where x.workspace_id = w.id)
    )
    -- The scores are computed once per customer, not again for each use below.
    offset 0
  )
  select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at,
         p_as_of - s.last_order_day, s.frequency, s.monetary, s.r_score::integer,
         s.f_score::integer, s.m_score::integer
  from private.rfm_kept_scores s
  where s.workspace_id = any (array(select k.workspace_id from kept k))
  union all
  select * from counted
$$;

revoke all on function private.rfm_scores(date, uuid[]) from public, anon, authenticated;

-- Per-contact RFM as of a date, for the workspaces the caller may see, as before: the query of
-- private.rfm_scores written out (a called function's rows are collected before they are
-- returned again).
create or replace function analytics.rfm(p_as_of date)
returns table (
  workspace_id uuid, contact_id uuid, first_order_at timestamptz, last_order_at timestamptz,
  recency_days integer, frequency integer, monetary numeric(14, 2),
  r_score integer, f_score integer, m_score integer, rfm_code text, segment text
)
language plpgsql
stable
security definer
set search_path = ''
set work_mem = '64MB'
set jit = off
as $$
declare
  v_segments text[] := array(
    select m.segment from analytics.rfm_segment_map m order by m.r_score, m.f_score
  );
  v_workspace_ids uuid[];
begin
  if p_as_of is null or p_as_of not between date '1900-01-01' and date '9999-12-31' then
    perform private.fail(422, 'invalid_as_of', 'The as-of date must be between 1900-01-01 and 9999-12-31');
  end if;
  if not private.analytics_sees_all() then
    v_workspace_ids := array(select private.user_workspace_ids());
  end if;
  return query
    with kept as materialized (
      select k.workspace_id from private.rfm_kept k
      where (v_workspace_ids is null or k.workspace_id = any (v_workspace_ids))
        and k.last_order_at < ((p_as_of + 1)::timestamp at time zone 'UTC')
        and not exists (select 1 from private.rfm_stale s where s.workspace_id = k.workspace_id)
    ),
    settled as (
      select f.workspace_id, f.contact_id, f.first_order_at, f.last_order_at,
             f.orders_count as frequency, f.revenue as monetary
      from public.customer_facts f
      where f.last_order_at < ((p_as_of + 1)::timestamp at time zone 'UTC')
        and (v_workspace_ids is null or f.workspace_id = any (v_workspace_ids))
        and not exists (select 1 from kept k where k.workspace_id = f.workspace_id)
    ),
    recounted as (
      select o.workspace_id, o.contact_id, min(o.placed_at) as first_order_at,
             max(o.placed_at) as last_order_at, count(*)::integer as frequency,
             coalesce(sum(o.base_total), 0) as monetary
      from public.customer_facts f
      join public.orders o on o.contact_id = f.contact_id and o.workspace_id = f.workspace_id
      where f.first_order_at < ((p_as_of + 1)::timestamp at time zone 'UTC')
        and f.last_order_at >= ((p_as_of + 1)::timestamp at time zone 'UTC')
        and (v_workspace_ids is null or f.workspace_id = any (v_workspace_ids))
        and not exists (select 1 from kept k where k.workspace_id = f.workspace_id)
        and o.status in ('paid', 'fulfilled')
        and o.placed_at < ((p_as_of + 1)::timestamp at time zone 'UTC')
      group by o.workspace_id, o.contact_id
    ),
    per_contact as (
      select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at,
             p_as_of - (c.last_order_at at time zone 'UTC')::date as recency_days,
             c.frequency, c.monetary::numeric(14, 2) as monetary, (c.monetary * 100)::bigint as cents
      from (select * from settled union all select * from recounted) as c
    ),
    cuts as materialized (
      select q.workspace_id, q.r[1] as r1, q.r[2] as r2, q.r[3] as r3, q.r[4] as r4,
             q.f[1] as f1, q.f[2] as f2, q.f[3] as f3, q.f[4] as f4,
             q.m[1] as m1, q.m[2] as m2, q.m[3] as m3, q.m[4] as m4
      from (
        select c.workspace_id,
               percentile_disc(array[0.2 + 1e-10, 0.4 + 1e-10, 0.6 + 1e-10, 0.8 + 1e-10])
                 within group (order by c.recency_days) as r,
               percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
                 within group (order by c.frequency) as f,
               percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
                 within group (order by c.cents) as m
        from per_contact c
        group by c.workspace_id
      ) as q
    ),
    counted as (
      select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at, c.recency_days,
             c.frequency, c.monetary,
             5 - (c.recency_days >= t.r1)::integer - (c.recency_days >= t.r2)::integer
               - (c.recency_days >= t.r3)::integer - (c.recency_days >= t.r4)::integer as r_score,
             1 + (c.frequency > t.f1)::integer + (c.frequency > t.f2)::integer
               + (c.frequency > t.f3)::integer + (c.frequency > t.f4)::integer as f_score,
             1 + (c.cents > t.m1)::integer + (c.cents > t.m2)::integer
               + (c.cents > t.m3)::integer + (c.cents > t.m4)::integer as m_score
      from per_contact c
      join cuts t on t.workspace_id = c.workspace_id
      -- Only when some workspace asked for has customers and no kept scores that hold.
      where exists (
        select 1 from public.workspaces w
        where (v_workspace_ids is null or w.id = any (v_workspace_ids))
          and not exists (select 1 from kept k where k.workspace_id = w.id)
          and exists (select 1 from public.customer_facts x where x.workspace_id = w.id)
      )
      -- The scores are computed once per customer, not again for each use below.
      offset 0
    )
    select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at,
           p_as_of - s.last_order_day, s.frequency, s.monetary, s.r_score::integer,
           s.f_score::integer, s.m_score::integer, s.rfm_code, s.segment
    from private.rfm_kept_scores s
    where s.workspace_id = any (array(select k.workspace_id from kept k))
    union all
    select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at, c.recency_days,
           c.frequency, c.monetary, c.r_score, c.f_score, c.m_score,
           (100 * c.r_score + 10 * c.f_score + c.m_score)::text,
           v_segments[5 * (c.r_score - 1) + c.f_score]
    from counted c;
end
$$;

revoke all on function analytics.rfm(date) from public, anon, authenticated;

grant execute on function analytics.rfm(date) to authenticated, growthbase_analyst;

-- refresh -------------------------------------------------------------------------------------

-- Scores again and keeps the given workspaces (null: every workspace with customers whose kept
-- scores are missing or stale), each only if no other refresh holds it (a transaction-level
-- advisory lock taken with try), in one statement: the log rows it removes and the facts it
-- scores are those one snapshot sees. Only changed score rows are written. Workspaces left
-- without customers lose their kept rows. Returns the number of workspaces refreshed.
create function private.refresh_rfm_kept(p_workspace_ids uuid[] default null)
returns integer
language plpgsql
security definer
set search_path = ''
set work_mem = '64MB'
set jit = off
as $$
declare
  v_workspaces uuid[];
  v_refreshed integer;
begin
  delete from private.rfm_kept k
  where (p_workspace_ids is null or k.workspace_id = any (p_workspace_ids))
    and not exists (select 1 from public.customer_facts f where f.workspace_id = k.workspace_id);
  delete from private.rfm_kept_scores s
  where (p_workspace_ids is null or s.workspace_id = any (p_workspace_ids))
    and not exists (select 1 from private.rfm_kept k where k.workspace_id = s.workspace_id)
    and not exists (select 1 from public.customer_facts f where f.workspace_id = s.workspace_id);
  select array_agg(w.id order by w.id) into v_workspaces
  from (
    select w.id from public.workspaces w
    where (p_workspace_ids is null or w.id = any (p_workspace_ids))
      and (exists (select 1 from private.rfm_stale s where s.workspace_id = w.id)
           or not exists (select 1 from private.rfm_kept k where k.workspace_id = w.id))
      and exists (select 1 from public.customer_facts f where f.workspace_id = w.id)
    -- Locks are tried only for these workspaces.
    offset 0
  ) as w
  where pg_catalog.pg_try_advisory_xact_lock(
    pg_catalog.hashtext('growthbase.rfm_kept'), pg_catalog.hashtext(w.id::text)
  );
  if v_workspaces is null then
    return 0;
  end if;
  with cleared as (
    delete from private.rfm_stale s where s.workspace_id = any (v_workspaces)
  ),
  per_contact as materialized (
    select f.workspace_id, f.contact_id, f.first_order_at, f.last_order_at,
           (f.last_order_at at time zone 'UTC')::date as last_order_day,
           f.orders_count as frequency, f.revenue as monetary
    from public.customer_facts f
    where f.workspace_id = any (v_workspaces)
  ),
  cuts as materialized (
    select q.workspace_id, q.last_order_at, q.r[1] as r1, q.r[2] as r2, q.r[3] as r3, q.r[4] as r4,
           q.f[1] as f1, q.f[2] as f2, q.f[3] as f3, q.f[4] as f4,
           q.m[1] as m1, q.m[2] as m2, q.m[3] as m3, q.m[4] as m4
    from (
      -- Worst first for every score (oldest last-order day, fewest orders, least money); a
      -- score is 1 plus the number of cut points strictly worse than the value.
      select c.workspace_id, max(c.last_order_at) as last_order_at,
             percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
               within group (order by c.last_order_day) as r,
             percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
               within group (order by c.frequency) as f,
             percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
               within group (order by c.monetary) as m
      from per_contact c
      group by c.workspace_id
    ) as q
  ),
  scored as (
    select c.*, m.segment
    from (
      select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at, c.last_order_day,
             c.frequency, c.monetary::numeric(14, 2) as monetary,
             1 + (c.last_order_day > t.r1)::integer + (c.last_order_day > t.r2)::integer
               + (c.last_order_day > t.r3)::integer + (c.last_order_day > t.r4)::integer as r_score,
             1 + (c.frequency > t.f1)::integer + (c.frequency > t.f2)::integer
               + (c.frequency > t.f3)::integer + (c.frequency > t.f4)::integer as f_score,
             1 + (c.monetary > t.m1)::integer + (c.monetary > t.m2)::integer
               + (c.monetary > t.m3)::integer + (c.monetary > t.m4)::integer as m_score
      from per_contact c
      join cuts t on t.workspace_id = c.workspace_id
      offset 0
    ) as c
    join analytics.rfm_segment_map m on m.r_score = c.r_score and m.f_score = c.f_score
  ),
  removed as (
    delete from private.rfm_kept_scores k
    where k.workspace_id = any (v_workspaces)
      and not exists (select 1 from per_contact c
                      where c.workspace_id = k.workspace_id and c.contact_id = k.contact_id)
  ),
  written as (
    insert into private.rfm_kept_scores as k (
      workspace_id, contact_id, first_order_at, last_order_at, last_order_day, frequency,
      monetary, r_score, f_score, m_score, rfm_code, segment
    )
    select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at, s.last_order_day,
           s.frequency, s.monetary, s.r_score, s.f_score, s.m_score,
           (100 * s.r_score + 10 * s.f_score + s.m_score)::text, s.segment
    from scored s
    order by s.workspace_id, s.contact_id
    on conflict (workspace_id, contact_id) do update
    set first_order_at = excluded.first_order_at, last_order_at = excluded.last_order_at,
        last_order_day = excluded.last_order_day, frequency = excluded.frequency,
        monetary = excluded.monetary, r_score = excluded.r_score, f_score = excluded.f_score,
        m_score = excluded.m_score, rfm_code = excluded.rfm_code, segment = excluded.segment
    where (k.first_order_at, k.last_order_at, k.frequency, k.monetary, k.r_score, k.f_score,
           k.m_score, k.segment)
          is distinct from
          (excluded.first_order_at, excluded.last_order_at, excluded.frequency,
           excluded.monetary, excluded.r_score, excluded.f_score, excluded.m_score,
           excluded.segment)
  )
  insert into private.rfm_kept as k (workspace_id, last_order_at)
  select t.workspace_id, t.last_order_at from cuts t
  on conflict (workspace_id) do update
  set last_order_at = excluded.last_order_at, refreshed_at = now();
  get diagnostics v_refreshed = row_count;
  return v_refreshed;
end
$$;

revoke all on function private.refresh_rfm_kept(uuid[]) from public, anon, authenticated;

grant execute on function private.refresh_rfm_kept(uuid[]) to service_role;

-- writers -------------------------------------------------------------------------------------

-- As in …_customer_facts.sql; the workspaces of the customers it writes are logged stale.
create or replace function private.recount_customer_facts(p_contacts uuid[])
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  with counted as (
    select distinct on (o.contact_id)
           o.contact_id, o.workspace_id, o.id as first_order_id, o.placed_at as first_order_at,
           o.project_id as first_order_project_id, o.source as first_order_source,
           last_value(o.id) over w as last_order_id, last_value(o.placed_at) over w as last_order_at,
           (count(*) over w)::integer as orders_count, coalesce(sum(o.base_total) over w, 0) as revenue
    from public.orders o
    where o.contact_id = any (p_contacts) and o.status in ('paid', 'fulfilled')
    window w as (partition by o.contact_id order by o.placed_at, o.id
                 rows between unbounded preceding and unbounded following)
    order by o.contact_id, o.placed_at, o.id
  ),
  written as (
    insert into public.customer_facts as f (
      contact_id, workspace_id, first_order_id, first_order_at, first_order_project_id,
      first_order_source, last_order_id, last_order_at, orders_count, revenue
    )
    select c.contact_id, c.workspace_id, c.first_order_id, c.first_order_at,
           c.first_order_project_id, c.first_order_source, c.last_order_id, c.last_order_at,
           c.orders_count, c.revenue
    from counted c
    order by c.contact_id
    on conflict (contact_id, workspace_id) do update
    set workspace_id = excluded.workspace_id, first_order_id = excluded.first_order_id,
        first_order_at = excluded.first_order_at,
        first_order_project_id = excluded.first_order_project_id,
        first_order_source = excluded.first_order_source, last_order_id = excluded.last_order_id,
        last_order_at = excluded.last_order_at, orders_count = excluded.orders_count,
        revenue = excluded.revenue, updated_at = now()
    where (f.workspace_id, f.first_order_id, f.first_order_at, f.first_order_project_id,
           f.first_order_source, f.last_order_id, f.last_order_at, f.orders_count, f.revenue)
          is distinct from
          (excluded.workspace_id, excluded.first_order_id, excluded.first_order_at,
           excluded.first_order_project_id, excluded.first_order_source, excluded.last_order_id,
           excluded.last_order_at, excluded.orders_count, excluded.revenue)
    returning f.workspace_id
  ),
  removed as (
    delete from public.customer_facts f
    where f.contact_id = any (p_contacts)
      and not exists (select 1 from counted c where c.contact_id = f.contact_id)
    returning f.workspace_id
  )
  insert into private.rfm_stale (workspace_id)
  select distinct x.workspace_id
  from (select w.workspace_id from written w union all select r.workspace_id from removed r) as x
  on conflict do nothing;
end
$$;

revoke all on function private.recount_customer_facts(uuid[]) from public, anon, authenticated;

-- As in …_customer_facts.sql; the workspaces of the customers the new orders add to are logged
-- stale, in the same statement.
create or replace function private.customer_facts_add_orders()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  with written as (
    insert into public.customer_facts as f (
      contact_id, workspace_id, first_order_id, first_order_at, first_order_project_id,
      first_order_source, last_order_id, last_order_at, orders_count, revenue
    )
    select a.contact_id, a.workspace_id, a.first_order_id, a.first_order_at,
           a.first_order_project_id, a.first_order_source, a.last_order_id, a.last_order_at,
           a.orders_count, a.revenue
    from (
      select distinct on (n.contact_id)
             n.contact_id, n.workspace_id, n.id as first_order_id, n.placed_at as first_order_at,
             n.project_id as first_order_project_id, n.source as first_order_source,
             last_value(n.id) over w as last_order_id, last_value(n.placed_at) over w as last_order_at,
             (count(*) over w)::integer as orders_count, coalesce(sum(n.base_total) over w, 0) as revenue
      from new_orders n
      where n.contact_id is not null and n.status in ('paid', 'fulfilled')
      window w as (partition by n.contact_id order by n.placed_at, n.id
                   rows between unbounded preceding and unbounded following)
      order by n.contact_id, n.placed_at, n.id
    ) as a
    order by a.contact_id
    on conflict (contact_id, workspace_id) do update
    set first_order_id = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                              then excluded.first_order_id else f.first_order_id end,
        first_order_project_id = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                                      then excluded.first_order_project_id else f.first_order_project_id end,
        first_order_source = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                                  then excluded.first_order_source else f.first_order_source end,
        first_order_at = least(f.first_order_at, excluded.first_order_at),
        last_order_id = case when (excluded.last_order_at, excluded.last_order_id) > (f.last_order_at, f.last_order_id)
                             then excluded.last_order_id else f.last_order_id end,
        last_order_at = greatest(f.last_order_at, excluded.last_order_at),
        orders_count = f.orders_count + excluded.orders_count,
        revenue = f.revenue + excluded.revenue,
        updated_at = now()
    returning f.workspace_id
  )
  insert into private.rfm_stale (workspace_id)
  select distinct w.workspace_id from written w
  on conflict do nothing;
  return null;
end
$$;

revoke all on function private.customer_facts_add_orders() from public, anon, authenticated;

-- As in …_customer_facts.sql; truncated orders leave no kept scores.
create or replace function private.customer_facts_truncated()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_table_name = 'orders' then
    delete from public.customer_facts;
    delete from private.rfm_kept;
  else
    update public.customer_facts
    set last_product_order_id = null, last_product_id = null, last_product_title = null,
        last_category = null, updated_at = now()
    where last_product_order_id is not null;
  end if;
  return null;
end
$$;

revoke all on function private.customer_facts_truncated() from public, anon, authenticated;

-- As in …_rfm_snapshot_cascades.sql; deleted contacts' kept scores go and their workspaces'
-- are stale, deleted workspaces' kept scores and log rows go.
create or replace function private.delete_rfm_snapshots()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
begin
  select array_agg(g.id) into v_ids from gone g;
  if v_ids is null then
    return null;
  end if;
  lock table analytics.rfm_snapshots in row exclusive mode;
  if tg_table_name = 'contacts' then
    delete from analytics.rfm_snapshots s where s.contact_id = any (v_ids);
    -- Their kept scores go, and the rest of their workspaces' are stale (one customer fewer).
    delete from private.rfm_kept_scores k
    where (k.workspace_id, k.contact_id) in (select g.workspace_id, g.id from gone g);
    insert into private.rfm_stale (workspace_id)
    select distinct g.workspace_id from gone g
    where exists (select 1 from private.rfm_kept k where k.workspace_id = g.workspace_id)
    on conflict do nothing;
  else
    delete from analytics.rfm_snapshots s where s.workspace_id = any (v_ids);
    delete from private.rfm_kept_scores k where k.workspace_id = any (v_ids);
    delete from private.rfm_stale s where s.workspace_id = any (v_ids);
  end if;
  return null;
end
$$;

revoke all on function private.delete_rfm_snapshots() from public, anon, authenticated;

-- Where pg_cron exists (Supabase), refresh stale kept scores every minute; elsewhere the service
-- does (and until then readers count, as before).
do $$
begin
  if exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
    perform cron.schedule('growthbase-rfm-kept', '* * * * *', 'select private.refresh_rfm_kept()');
  end if;
end
$$;

-- The kept scores' text columns in the personal-data register: neither is personal.
insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'rfm_kept_scores', 'rfm_code', 'none', 'not_personal', 'the R, F and M scores as three digits'),
  ('private', 'rfm_kept_scores', 'segment', 'none', 'not_personal', 'a segment name of analytics.rfm_segment_map');

-- grants --------------------------------------------------------------------------------------

revoke all on private.rfm_kept, private.rfm_kept_scores, private.rfm_stale
  from public, anon, authenticated;

grant select on private.rfm_kept, private.rfm_kept_scores, private.rfm_stale to service_role;
