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
-- The ranks are computed per distinct value rather than per customer: R and F have few
-- distinct values (days since the last order, order counts), so the customers are grouped by
-- value (hashed), each value's rank is 1 + the number of customers with a strictly worse
-- value (a running sum over the few groups), and every customer takes its value's rank back
-- through a hash join; only M, whose values are mostly distinct, is sorted. Same numbers as
-- rank() over the customers, without sorting 200k rows three times.

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
  customers as (
    select c.workspace_id, count(*) as n from per_contact c group by c.workspace_id
  ),
  recency_ranks as (
    select g.workspace_id, g.recency_days,
           1 + coalesce(sum(g.customers) over (partition by g.workspace_id order by g.recency_days desc
                                              rows between unbounded preceding and 1 preceding), 0)::bigint
             as rank
    from (select c.workspace_id, c.recency_days, count(*) as customers
          from per_contact c group by c.workspace_id, c.recency_days) as g
  ),
  frequency_ranks as (
    select g.workspace_id, g.frequency,
           1 + coalesce(sum(g.customers) over (partition by g.workspace_id order by g.frequency
                                              rows between unbounded preceding and 1 preceding), 0)::bigint
             as rank
    from (select c.workspace_id, c.frequency, count(*) as customers
          from per_contact c group by c.workspace_id, c.frequency) as g
  )
  select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at, c.recency_days,
         c.frequency, c.monetary,
         (1 + 5 * (r.rank - 1) / n.n)::integer,
         (1 + 5 * (f.rank - 1) / n.n)::integer,
         (1 + 5 * (rank() over (partition by c.workspace_id order by c.monetary) - 1) / n.n)::integer
  from per_contact c
  join customers n on n.workspace_id = c.workspace_id
  join recency_ranks r on r.workspace_id = c.workspace_id and r.recency_days = c.recency_days
  join frequency_ranks f on f.workspace_id = c.workspace_id and f.frequency = c.frequency
$$;

revoke all on function private.rfm_scores(date, uuid[]) from public, anon, authenticated;
