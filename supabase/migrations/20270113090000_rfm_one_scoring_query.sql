-- RFM scored by one query (issue 14, performance: analytics.rfm_segments right after a write,
-- counted, took 0.305 s against 0.3 s asked; private.rfm_scores and analytics.rfm wrote the same
-- scoring query out twice, …_rfm_counted_cheaper.sql). The scoring query's text is kept once, in
-- private.rfm_scores_query, and each reader runs it in its own statement, so no reader collects a
-- called function's 200k rows to read them again:
--   * private.rfm_scores and analytics.rfm run it as it is (analytics.rfm with each row's
--     rfm_code and segment: kept where kept, from the segment map where counted, as before);
--   * analytics.rfm_segment_totals groups its rows by segment in the same statement (kept scores
--     grouped as they are read, as before; counted ones without first being returned by
--     private.rfm_scores and collected).
-- The rules, numbers, visibility and errors are unchanged; every row is the same.

-- The scoring query (…_rfm_counted_cheaper.sql, unchanged but for its parameters): $1 the as-of
-- date, $2 the workspaces (null: all); with p_segments, also each row's rfm_code and segment ($3:
-- the segment names of analytics.rfm_segment_map ordered by r_score, f_score).
create function private.rfm_scores_query(p_segments boolean)
returns text
language sql
immutable
set search_path = ''
as $query$
  select pg_catalog.format(
    $scores$
  with kept as materialized (
    select k.workspace_id from private.rfm_kept k
    where ($2 is null or k.workspace_id = any ($2))
      and k.last_order_at < (($1 + 1)::timestamp at time zone 'UTC')
      and not exists (select 1 from private.rfm_stale s where s.workspace_id = k.workspace_id)
  ),
  settled as (
    select f.workspace_id, f.contact_id, f.first_order_at, f.last_order_at,
           f.orders_count as frequency, f.revenue as monetary
    from public.customer_facts f
    where f.last_order_at < (($1 + 1)::timestamp at time zone 'UTC')
      and ($2 is null or f.workspace_id = any ($2))
      and not exists (select 1 from kept k where k.workspace_id = f.workspace_id)
  ),
  recounted as (
    select o.workspace_id, o.contact_id, min(o.placed_at) as first_order_at,
           max(o.placed_at) as last_order_at, count(*)::integer as frequency,
           coalesce(sum(o.base_total), 0) as monetary
    from public.customer_facts f
    join public.orders o on o.contact_id = f.contact_id and o.workspace_id = f.workspace_id
    where f.first_order_at < (($1 + 1)::timestamp at time zone 'UTC')
      and f.last_order_at >= (($1 + 1)::timestamp at time zone 'UTC')
      and ($2 is null or f.workspace_id = any ($2))
      and not exists (select 1 from kept k where k.workspace_id = f.workspace_id)
      and o.status in ('paid', 'fulfilled')
      and o.placed_at < (($1 + 1)::timestamp at time zone 'UTC')
    group by o.workspace_id, o.contact_id
  ),
  per_contact as (
    select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at,
           $1 - (c.last_order_at at time zone 'UTC')::date as recency_days,
           c.frequency, c.monetary, (c.monetary * 100)::bigint as cents
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
           c.frequency, c.monetary::numeric(14, 2) as monetary,
           case when c.recency_days >= t.r4 then 1 when c.recency_days >= t.r3 then 2
                when c.recency_days >= t.r2 then 3 when c.recency_days >= t.r1 then 4 else 5 end as r_score,
           case when c.frequency <= t.f1 then 1 when c.frequency <= t.f2 then 2
                when c.frequency <= t.f3 then 3 when c.frequency <= t.f4 then 4 else 5 end as f_score,
           case when c.cents <= t.m1 then 1 when c.cents <= t.m2 then 2
                when c.cents <= t.m3 then 3 when c.cents <= t.m4 then 4 else 5 end as m_score
    from per_contact c
    join cuts t on t.workspace_id = c.workspace_id
    -- Only when some workspace asked for has customers and no kept scores that hold.
    where exists (
      select 1 from public.workspaces w
      where ($2 is null or w.id = any ($2))
        and not exists (select 1 from kept k where k.workspace_id = w.id)
        and exists (select 1 from public.customer_facts x where x.workspace_id = w.id)
    )
    -- The scores are computed once per customer, not again for each use below.
    offset 0
  )
  select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at,
         $1 - s.last_order_day, s.frequency, s.monetary, s.r_score::integer,
         s.f_score::integer, s.m_score::integer%1$s
  from private.rfm_kept_scores s
  where s.workspace_id = any (array(select k.workspace_id from kept k))
  union all
  select c.*%2$s from counted c
$scores$,
    case when p_segments then ', s.rfm_code, s.segment' else '' end,
    case when p_segments
         then ', (100 * c.r_score + 10 * c.f_score + c.m_score)::text,'
              ' $3[5 * (c.r_score - 1) + c.f_score]'
         else '' end
  )
$query$;

revoke all on function private.rfm_scores_query(boolean) from public, anon, authenticated;

-- The scoring query's rows grouped per workspace and segment: customers, revenue, orders.
create function private.rfm_segment_totals_query()
returns text
language sql
immutable
set search_path = ''
as $$
  select 'select r.workspace_id, r.segment, count(*), sum(r.monetary), sum(r.frequency)'
         ' from (' || private.rfm_scores_query(true) || ') as r (workspace_id, contact_id,'
         ' first_order_at, last_order_at, recency_days, frequency, monetary, r_score, f_score,'
         ' m_score, rfm_code, segment)'
         ' group by r.workspace_id, r.segment'
$$;

revoke all on function private.rfm_segment_totals_query() from public, anon, authenticated;

-- Per-contact scores as of a date for the given workspaces (null: all): the scoring query.
create or replace function private.rfm_scores(p_as_of date, p_workspace_ids uuid[])
returns table (
  workspace_id uuid, contact_id uuid, first_order_at timestamptz, last_order_at timestamptz,
  recency_days integer, frequency integer, monetary numeric(14, 2),
  r_score integer, f_score integer, m_score integer
)
language plpgsql
stable
security definer
set search_path = ''
set work_mem = '64MB'
set jit = off
as $$
begin
  return query execute private.rfm_scores_query(false) using p_as_of, p_workspace_ids;
end
$$;

revoke all on function private.rfm_scores(date, uuid[]) from public, anon, authenticated;

-- Per-contact RFM as of a date, for the workspaces the caller may see: the scoring query with
-- each row's rfm_code and segment.
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
  return query execute private.rfm_scores_query(true) using p_as_of, v_workspace_ids, v_segments;
end
$$;

revoke all on function analytics.rfm(date) from public, anon, authenticated;

grant execute on function analytics.rfm(date) to authenticated, growthbase_analyst;

-- Customers, revenue and orders per workspace and segment as of a date, for the workspaces the
-- caller may see: the scoring query's rows grouped by segment in the same statement.
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
  return query execute private.rfm_segment_totals_query() using p_as_of, v_workspace_ids, v_segments;
end
$$;

revoke all on function analytics.rfm_segment_totals(date) from public, anon, authenticated;

grant execute on function analytics.rfm_segment_totals(date) to authenticated, growthbase_analyst;
