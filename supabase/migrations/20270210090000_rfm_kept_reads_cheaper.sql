-- RFM kept reads cheaper (issue 14, performance: from kept scores analytics.customer_rfm and
-- analytics.rfm_segments took 0.05–0.16 s, 2.9–4.5 × faster than pandas against ≥ 4 × asked).
-- Profiled on 200k customers of one kept workspace: rfm_segments grouped the 200k kept rows by
-- segment at every read (about 45 of its 52 ms), and analytics.rfm planned and ran the whole
-- scoring query (its CTEs, an anti join of every kept row against the changed customers, three
-- appended branches) for rows read straight from private.rfm_kept_scores. So:
--   * the refresh keeps, with a workspace's cut points, its segment totals (customers, revenue,
--     orders per segment, in private.rfm_kept), summed from the rows it keeps, in the same
--     statement;
--   * analytics.rfm_segment_totals returns them for each workspace asked for whose kept scores
--     hold untouched (no stale log row, as-of date on or after its newest last order: the
--     scoring query's "fresh"), and analytics.rfm those workspaces' kept rows, each by a plain
--     query; any other workspace (stale, never refreshed, as-of date before its newest order)
--     goes through the scoring query as before, asked for those workspaces alone. Both are
--     stable functions, so their statements share one snapshot: each workspace is read once,
--     from one state;
--   * where kept scores serve a stale workspace whose cut points hold (…_rfm_kept_after_small_
--     writes.sql), the segment totals are its kept totals less the changed customers' kept rows
--     plus their rows now, instead of every row grouped.
-- The rules, numbers, visibility and errors are unchanged; every row and total is the same.
--
-- Redefined, each copied from its newest definition and changed only as said:
--   private.refresh_rfm_kept (20270127091000_rfm_kept_after_small_writes.sql),
--   analytics.rfm, analytics.rfm_segment_totals, private.rfm_segment_totals_query
--   (20270113090000_rfm_one_scoring_query.sql).

alter table private.rfm_kept add column segments text[];

alter table private.rfm_kept add column segment_customers bigint[];

alter table private.rfm_kept add column segment_revenue numeric[];

alter table private.rfm_kept add column segment_orders bigint[];

comment on column private.rfm_kept.segments is
  'The segments of the kept scores (those with customers), and per segment (same positions) '
  'the customers (segment_customers), their revenue (segment_revenue) and orders '
  '(segment_orders), as of the refresh.';

-- Kept workspaces as they are: their totals from their kept rows (a stale workspace's are not
-- read until its next refresh rewrites them; one without kept rows left is stale, and gets none).
update private.rfm_kept k
set segments = t.segments, segment_customers = t.customers, segment_revenue = t.revenue,
    segment_orders = t.orders
from (
  select g.workspace_id, array_agg(g.segment order by g.segment) as segments,
         array_agg(g.customers order by g.segment) as customers,
         array_agg(g.revenue order by g.segment) as revenue,
         array_agg(g.orders order by g.segment) as orders
  from (
    select s.workspace_id, s.segment, count(*) as customers, sum(s.monetary) as revenue,
           sum(s.frequency) as orders
    from private.rfm_kept_scores s
    group by s.workspace_id, s.segment
  ) as g
  group by g.workspace_id
) as t
where t.workspace_id = k.workspace_id;

update private.rfm_kept k
set segments = '{}', segment_customers = '{}', segment_revenue = '{}', segment_orders = '{}'
where k.segments is null;

alter table private.rfm_kept alter column segments set not null;

alter table private.rfm_kept alter column segment_customers set not null;

alter table private.rfm_kept alter column segment_revenue set not null;

alter table private.rfm_kept alter column segment_orders set not null;

-- The kept segments' names in the personal-data register: not personal.
insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'rfm_kept', 'segments', 'none', 'not_personal', 'segment names of analytics.rfm_segment_map');

-- As in 20270127091000_rfm_kept_after_small_writes.sql; it also keeps each workspace's segment
-- totals, summed from the scored rows it keeps.
create or replace function private.refresh_rfm_kept(p_workspace_ids uuid[] default null)
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
    select q.workspace_id, q.last_order_at, q.customers, q.r[1] as r1, q.r[2] as r2, q.r[3] as r3, q.r[4] as r4,
           q.f[1] as f1, q.f[2] as f2, q.f[3] as f3, q.f[4] as f4,
           q.m[1] as m1, q.m[2] as m2, q.m[3] as m3, q.m[4] as m4
    from (
      -- Worst first for every score (oldest last-order day, fewest orders, least money); a
      -- score is 1 plus the number of cut points strictly worse than the value.
      select c.workspace_id, max(c.last_order_at) as last_order_at, count(*)::integer as customers,
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
  -- Per cut point, the customers worse than it and those worse or as good: a read checks with
  -- them whether the cut points still hold after a few customers changed.
  bounds as (
    select t.workspace_id, t.last_order_at, t.customers,
           array[t.r1, t.r2, t.r3, t.r4] as r_cuts,
           array[count(*) filter (where c.last_order_day < t.r1), count(*) filter (where c.last_order_day < t.r2),
                 count(*) filter (where c.last_order_day < t.r3), count(*) filter (where c.last_order_day < t.r4)]::integer[] as r_below,
           array[count(*) filter (where c.last_order_day <= t.r1), count(*) filter (where c.last_order_day <= t.r2),
                 count(*) filter (where c.last_order_day <= t.r3), count(*) filter (where c.last_order_day <= t.r4)]::integer[] as r_through,
           array[t.f1, t.f2, t.f3, t.f4] as f_cuts,
           array[count(*) filter (where c.frequency < t.f1), count(*) filter (where c.frequency < t.f2),
                 count(*) filter (where c.frequency < t.f3), count(*) filter (where c.frequency < t.f4)]::integer[] as f_below,
           array[count(*) filter (where c.frequency <= t.f1), count(*) filter (where c.frequency <= t.f2),
                 count(*) filter (where c.frequency <= t.f3), count(*) filter (where c.frequency <= t.f4)]::integer[] as f_through,
           array[t.m1, t.m2, t.m3, t.m4]::numeric[] as m_cuts,
           array[count(*) filter (where c.monetary < t.m1), count(*) filter (where c.monetary < t.m2),
                 count(*) filter (where c.monetary < t.m3), count(*) filter (where c.monetary < t.m4)]::integer[] as m_below,
           array[count(*) filter (where c.monetary <= t.m1), count(*) filter (where c.monetary <= t.m2),
                 count(*) filter (where c.monetary <= t.m3), count(*) filter (where c.monetary <= t.m4)]::integer[] as m_through
    from cuts t
    join per_contact c on c.workspace_id = t.workspace_id
    group by t.workspace_id, t.last_order_at, t.customers, t.r1, t.r2, t.r3, t.r4, t.f1, t.f2,
             t.f3, t.f4, t.m1, t.m2, t.m3, t.m4
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
  -- Per workspace, its segments (those with customers) and their customers, revenue and orders.
  totals as (
    select g.workspace_id, array_agg(g.segment order by g.segment) as segments,
           array_agg(g.customers order by g.segment) as customers,
           array_agg(g.revenue order by g.segment) as revenue,
           array_agg(g.orders order by g.segment) as orders
    from (
      select s.workspace_id, s.segment, count(*) as customers, sum(s.monetary) as revenue,
             sum(s.frequency) as orders
      from scored s
      group by s.workspace_id, s.segment
    ) as g
    group by g.workspace_id
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
  insert into private.rfm_kept as k (
    workspace_id, last_order_at, customers, r_cuts, r_below, r_through, f_cuts, f_below,
    f_through, m_cuts, m_below, m_through, segments, segment_customers, segment_revenue,
    segment_orders
  )
  select t.workspace_id, t.last_order_at, t.customers, t.r_cuts, t.r_below, t.r_through,
         t.f_cuts, t.f_below, t.f_through, t.m_cuts, t.m_below, t.m_through, g.segments,
         g.customers, g.revenue, g.orders
  from bounds t
  join totals g on g.workspace_id = t.workspace_id
  on conflict (workspace_id) do update
  set last_order_at = excluded.last_order_at, customers = excluded.customers,
      r_cuts = excluded.r_cuts, r_below = excluded.r_below, r_through = excluded.r_through,
      f_cuts = excluded.f_cuts, f_below = excluded.f_below, f_through = excluded.f_through,
      m_cuts = excluded.m_cuts, m_below = excluded.m_below, m_through = excluded.m_through,
      segments = excluded.segments, segment_customers = excluded.segment_customers,
      segment_revenue = excluded.segment_revenue, segment_orders = excluded.segment_orders,
      refreshed_at = now();
  get diagnostics v_refreshed = row_count;
  return v_refreshed;
end
$$;

revoke all on function private.refresh_rfm_kept(uuid[]) from public, anon, authenticated;

-- As in 20270113090000_rfm_one_scoring_query.sql ($1 the as-of date, $2 the workspaces, null:
-- all, $3 the segment names): the scoring query's workspaces and changed customers (its text up
-- to its last select), then per workspace and segment the customers, revenue and orders: kept
-- totals where kept scores serve (untouched, or stale with their cut points holding: the kept
-- totals less the changed customers' kept rows plus their rows now, each scored as the scoring
-- query scores them), the counted rows grouped elsewhere. The same totals as grouping the rows.
create or replace function private.rfm_segment_totals_query()
returns text
language plpgsql
immutable
set search_path = ''
as $function$
declare
  v_scores text := private.rfm_scores_query(true);
  v_last integer := pg_catalog.strpos(v_scores, E'\n  select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at,\n         $1 - s.last_order_day');
begin
  if v_last = 0 then
    raise exception 'the scoring query''s last select is not where rfm_segment_totals_query looks';
  end if;
  return pg_catalog.left(v_scores, v_last) || $totals$
  select g.workspace_id, g.segment, sum(g.customers)::bigint, sum(g.revenue),
         sum(g.orders)::bigint
  from (
    select k.workspace_id, t.segment, t.customers, t.revenue, t.orders
    from private.rfm_kept k
    cross join unnest(k.segments, k.segment_customers, k.segment_revenue, k.segment_orders)
      as t (segment, customers, revenue, orders)
    where k.workspace_id = any (array(select w.workspace_id from kept w))
    union all
    -- The changed customers' kept rows out...
    select x.workspace_id, o.segment, -1, -o.monetary, -o.frequency
    from changes x
    join private.rfm_kept_scores o on o.workspace_id = x.workspace_id and o.contact_id = x.contact_id
    where exists (select 1 from adjusted j where j.workspace_id = x.workspace_id)
    union all
    -- ...and their rows now in, scored by the kept cut points.
    select c.workspace_id, $3[5 * (c.r_score - 1) + c.f_score], 1, c.monetary, c.frequency
    from (
      select x.workspace_id, x.new_f as frequency, x.new_m::numeric(14, 2) as monetary,
             1 + (x.new_day > a.r_cuts[1])::integer + (x.new_day > a.r_cuts[2])::integer
               + (x.new_day > a.r_cuts[3])::integer + (x.new_day > a.r_cuts[4])::integer as r_score,
             1 + (x.new_f > a.f_cuts[1])::integer + (x.new_f > a.f_cuts[2])::integer
               + (x.new_f > a.f_cuts[3])::integer + (x.new_f > a.f_cuts[4])::integer as f_score
      from changes x
      join candidates a on a.workspace_id = x.workspace_id
      where x.new_f is not null
        and exists (select 1 from adjusted j where j.workspace_id = x.workspace_id)
    ) as c
    union all
    select c.workspace_id, $3[5 * (c.r_score - 1) + c.f_score], 1, c.monetary, c.frequency
    from counted c
  ) as g
  group by g.workspace_id, g.segment
  having sum(g.customers) > 0
$totals$;
end
$function$;

revoke all on function private.rfm_segment_totals_query() from public, anon, authenticated;

-- The workspaces asked for ($2; null: all) whose kept scores hold untouched as of a date: kept,
-- no stale log row, the as-of date on or after the newest last order they were scored from
-- (the scoring query's "fresh").
create function private.rfm_fresh_workspaces(p_as_of date, p_workspace_ids uuid[])
returns uuid[]
language sql
stable
set search_path = ''
as $$
  select coalesce(array_agg(k.workspace_id), '{}')
  from private.rfm_kept k
  where (p_workspace_ids is null or k.workspace_id = any (p_workspace_ids))
    and k.last_order_at < ((p_as_of + 1)::timestamp at time zone 'UTC')
    and not exists (select 1 from private.rfm_stale s where s.workspace_id = k.workspace_id)
$$;

revoke all on function private.rfm_fresh_workspaces(date, uuid[]) from public, anon, authenticated;

-- The workspaces asked for ($2; null: all) that have customers, but for those listed apart:
-- null (all, as asked) when none is.
create function private.rfm_other_workspaces(p_workspace_ids uuid[], p_apart uuid[])
returns uuid[]
language sql
stable
set search_path = ''
as $$
  select case
           when p_workspace_ids is null and cardinality(p_apart) = 0 then null
           when p_workspace_ids is null then array(
             select w.id from public.workspaces w
             where not (w.id = any (p_apart))
               and exists (select 1 from public.customer_facts f where f.workspace_id = w.id)
           )
           else array(
             select w.id from unnest(p_workspace_ids) as w(id)
             where not (w.id = any (p_apart))
               and exists (select 1 from public.customer_facts f where f.workspace_id = w.id)
           )
         end
$$;

revoke all on function private.rfm_other_workspaces(uuid[], uuid[]) from public, anon, authenticated;

-- As in 20270113090000_rfm_one_scoring_query.sql; workspaces whose kept scores hold untouched
-- return their kept rows by a plain query, the others go through the scoring query.
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
  v_segments text[];
  v_workspace_ids uuid[];
  v_fresh uuid[];
  v_others uuid[];
begin
  if p_as_of is null or p_as_of not between date '1900-01-01' and date '9999-12-31' then
    perform private.fail(422, 'invalid_as_of', 'The as-of date must be between 1900-01-01 and 9999-12-31');
  end if;
  if not private.analytics_sees_all() then
    v_workspace_ids := array(select private.user_workspace_ids());
  end if;
  v_fresh := private.rfm_fresh_workspaces(p_as_of, v_workspace_ids);
  if cardinality(v_fresh) > 0 then
    return query
      select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at,
             p_as_of - s.last_order_day, s.frequency, s.monetary, s.r_score::integer,
             s.f_score::integer, s.m_score::integer, s.rfm_code, s.segment
      from private.rfm_kept_scores s
      where s.workspace_id = any (v_fresh);
  end if;
  v_others := private.rfm_other_workspaces(v_workspace_ids, v_fresh);
  if v_others is null or cardinality(v_others) > 0 then
    v_segments := array(
      select m.segment from analytics.rfm_segment_map m order by m.r_score, m.f_score
    );
    return query execute private.rfm_scores_query(true) using p_as_of, v_others, v_segments;
  end if;
end
$$;

revoke all on function analytics.rfm(date) from public, anon, authenticated;

grant execute on function analytics.rfm(date) to authenticated, growthbase_analyst;

-- As in 20270113090000_rfm_one_scoring_query.sql; workspaces whose kept scores hold untouched
-- return their kept segment totals, the others go through the scoring query grouped.
create or replace function analytics.rfm_segment_totals(p_as_of date)
returns table (workspace_id uuid, segment text, customers bigint, revenue numeric, orders bigint)
language plpgsql
stable
security definer
set search_path = ''
set work_mem = '64MB'
set jit = off
as $$
declare
  v_segments text[];
  v_workspace_ids uuid[];
  v_fresh uuid[];
  v_others uuid[];
begin
  if p_as_of is null or p_as_of not between date '1900-01-01' and date '9999-12-31' then
    perform private.fail(422, 'invalid_as_of', 'The as-of date must be between 1900-01-01 and 9999-12-31');
  end if;
  if not private.analytics_sees_all() then
    v_workspace_ids := array(select private.user_workspace_ids());
  end if;
  v_fresh := private.rfm_fresh_workspaces(p_as_of, v_workspace_ids);
  if cardinality(v_fresh) > 0 then
    return query
      select k.workspace_id, t.segment, t.customers, t.revenue, t.orders
      from private.rfm_kept k
      cross join unnest(k.segments, k.segment_customers, k.segment_revenue, k.segment_orders)
        as t (segment, customers, revenue, orders)
      where k.workspace_id = any (v_fresh);
  end if;
  v_others := private.rfm_other_workspaces(v_workspace_ids, v_fresh);
  if v_others is null or cardinality(v_others) > 0 then
    v_segments := array(
      select m.segment from analytics.rfm_segment_map m order by m.r_score, m.f_score
    );
    return query execute private.rfm_segment_totals_query() using p_as_of, v_others, v_segments;
  end if;
end
$$;

revoke all on function analytics.rfm_segment_totals(date) from public, anon, authenticated;

grant execute on function analytics.rfm_segment_totals(date) to authenticated, growthbase_analyst;
