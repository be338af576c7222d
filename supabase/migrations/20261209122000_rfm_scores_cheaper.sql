-- RFM reads in less time (issue 14, performance): the same rules and the same numbers as
-- …_rfm_from_facts.sql, computed with less work per customer:
--
--   - monetary cut points are picked from whole cents (bigint) instead of numeric values, whose
--     sort is several times slower; money has two decimals, so the order is the same;
--   - a score is 1 (or 5) plus or minus four comparisons with the workspace's cut points, taken
--     out of their arrays once per workspace (a materialized CTE, so they are not taken out again
--     per customer), instead of width_bucket over an array, which unpacks the array again for
--     every customer and every score. As before, with cut points c_1..c_4 (worst to best):
--     F = 1 + #(c_k < frequency), M = 1 + #(c_k < cents), R = 5 − #(c_k <= recency_days);
--   - analytics.rfm scores in its own query (the scoring written out, not called and collected)
--     and keeps its result in memory (work_mem as the scoring has; the default spilled a large
--     workspace's customers to a temporary file); jit is off (it costs more than it saves here).

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
  with bound as (
    select ((p_as_of + 1)::timestamp at time zone 'UTC') as before
  ),
  settled as (
    select f.workspace_id, f.contact_id, f.first_order_at, f.last_order_at,
           f.orders_count as frequency, f.revenue as monetary
    from public.customer_facts f, bound b
    where f.last_order_at < b.before
      and (p_workspace_ids is null or f.workspace_id = any (p_workspace_ids))
  ),
  recounted as (
    select o.workspace_id, o.contact_id, min(o.placed_at) as first_order_at,
           max(o.placed_at) as last_order_at, count(*)::integer as frequency,
           coalesce(sum(o.base_total), 0) as monetary
    from public.customer_facts f
    cross join bound b
    join public.orders o on o.contact_id = f.contact_id and o.workspace_id = f.workspace_id
    where f.first_order_at < b.before and f.last_order_at >= b.before
      and (p_workspace_ids is null or f.workspace_id = any (p_workspace_ids))
      and o.status in ('paid', 'fulfilled') and o.placed_at < b.before
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
  )
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
$$;

revoke all on function private.rfm_scores(date, uuid[]) from public, anon, authenticated;

-- Per-contact RFM as of a date, for the workspaces the caller may see, as before. The scoring is
-- private.rfm_scores's query, written out here rather than called: a called function's rows are
-- collected before they are returned again, which cost a fifth of a read. Both must change
-- together.
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
    select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at, s.recency_days,
           s.frequency, s.monetary, s.r_score, s.f_score, s.m_score,
           (100 * s.r_score + 10 * s.f_score + s.m_score)::text,
           v_segments[5 * (s.r_score - 1) + s.f_score]
    from (
    with bound as (
      select ((p_as_of + 1)::timestamp at time zone 'UTC') as before
    ),
    settled as (
      select f.workspace_id, f.contact_id, f.first_order_at, f.last_order_at,
             f.orders_count as frequency, f.revenue as monetary
      from public.customer_facts f, bound b
      where f.last_order_at < b.before
        and (v_workspace_ids is null or f.workspace_id = any (v_workspace_ids))
    ),
    recounted as (
      select o.workspace_id, o.contact_id, min(o.placed_at) as first_order_at,
             max(o.placed_at) as last_order_at, count(*)::integer as frequency,
             coalesce(sum(o.base_total), 0) as monetary
      from public.customer_facts f
      cross join bound b
      join public.orders o on o.contact_id = f.contact_id and o.workspace_id = f.workspace_id
      where f.first_order_at < b.before and f.last_order_at >= b.before
        and (v_workspace_ids is null or f.workspace_id = any (v_workspace_ids))
        and o.status in ('paid', 'fulfilled') and o.placed_at < b.before
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
    )
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
    ) as s;
end
$$;

revoke all on function analytics.rfm(date) from public, anon, authenticated;

grant execute on function analytics.rfm(date) to authenticated, growthbase_analyst;
