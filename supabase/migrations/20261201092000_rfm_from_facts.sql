-- RFM reads customer facts instead of every order (issue 14 §2). The rules, signatures and
-- visibility of analytics.rfm, analytics.customer_rfm, analytics.rfm_segments and the snapshots
-- are unchanged (see …_rfm_analytics.sql); only where the per-customer figures come from.
--
-- As of a date D, a customer's qualifying orders are those placed before the end of D:
--   - a customer whose last qualifying order is before that (everyone, for D = today, unless an
--     order is dated ahead) has all of them there: first and last order, frequency and
--     monetary are their kept facts, read in one pass over customer_facts;
--   - a customer whose first qualifying order is before it and whose last is not (an as-of date
--     in the past: a snapshot of last month, analytics.rfm('2026-06-30')) is counted from their
--     orders up to D, through orders_contact_id_idx;
--   - a customer whose first qualifying order is after it is not yet a customer as of D.
-- So any D gives what counting every order would give, and reads orders only for customers who
-- bought after D.
--
-- The scores need no ranking of the customers. With n customers in a workspace, sorted from
-- worst to best (value s_1 ... s_n), 1 + floor(5 × (rank − 1) / n) is 1 plus the number of the
-- four cut points s_j, j = ceil(k × n / 5) for k = 1..4, that the customer's value is strictly
-- better than (rank − 1 is the number of customers strictly worse, and it reaches j exactly
-- when s_j is strictly worse). percentile_disc picks the cut points, s_ceil(p × n), with one
-- sort of the values alone per score; p is k/5 nudged by 1e-10 towards the wanted position
-- (the exact fraction is not exact in floating point, and for fewer than 2 × 10^9 customers the
-- nudge never reaches the next position). width_bucket then counts, by binary search, the cut
-- points at or below a value: for F (whole orders) the ones strictly below are those at or
-- below frequency − 1, for M (whole cents) those at or below monetary − 0.01, and for R (more
-- days is worse; cut points ascending) the ones strictly above are 4 minus those at or below.
-- Same numbers as rank() over the customers, ties included, without sorting the customers'
-- rows three times.
--
-- jit is off: the plan's cost estimate is high enough for Postgres to compile it, which costs
-- more than the query.

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
           c.frequency, c.monetary::numeric(14, 2) as monetary
    from (select * from settled union all select * from recounted) as c
  ),
  cuts as (
    select c.workspace_id,
           percentile_disc(array[0.2 + 1e-10, 0.4 + 1e-10, 0.6 + 1e-10, 0.8 + 1e-10])
             within group (order by c.recency_days) as r,
           percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
             within group (order by c.frequency) as f,
           percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
             within group (order by c.monetary) as m
    from per_contact c
    group by c.workspace_id
  )
  select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at, c.recency_days,
         c.frequency, c.monetary,
         5 - width_bucket(c.recency_days, t.r),
         1 + width_bucket(c.frequency - 1, t.f),
         1 + width_bucket(c.monetary - 0.01, t.m)
  from per_contact c
  join cuts t on t.workspace_id = c.workspace_id
$$;

revoke all on function private.rfm_scores(date, uuid[]) from public, anon, authenticated;

-- Per-contact RFM as of a date, for the workspaces the caller may see, as before; the segment is
-- looked up in the 25 cells of the map (read once per call) and the code built from numbers,
-- rather than joined and concatenated per customer.
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
as $$
declare
  v_segments text[] := array(
    select m.segment from analytics.rfm_segment_map m order by m.r_score, m.f_score
  );
begin
  if p_as_of is null or p_as_of not between date '1900-01-01' and date '9999-12-31' then
    perform private.fail(422, 'invalid_as_of', 'The as-of date must be between 1900-01-01 and 9999-12-31');
  end if;
  return query
    select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at, s.recency_days,
           s.frequency, s.monetary, s.r_score, s.f_score, s.m_score,
           (100 * s.r_score + 10 * s.f_score + s.m_score)::text,
           v_segments[5 * (s.r_score - 1) + s.f_score]
    from private.rfm_scores(
      p_as_of,
      case when private.analytics_sees_all() then null else array(select private.user_workspace_ids()) end
    ) s;
end
$$;

revoke all on function analytics.rfm(date) from public, anon, authenticated;

grant execute on function analytics.rfm(date) to authenticated, growthbase_analyst;
