-- RFM segments summed where the scores are (issue 14, performance): analytics.rfm_segments
-- grouped every customer's row of analytics.rfm, so a read returned 200k rows from the function
-- to group them into a dozen. analytics.rfm_segment_totals sums them instead: kept scores
-- (…_rfm_kept_scores.sql) grouped as they are read, the other workspaces from their counted
-- scores, in one statement. The view's columns, rules and visibility are unchanged.

-- Customers, revenue and orders per workspace and segment as of a date, for the workspaces the
-- caller may see (as analytics.rfm).
create function analytics.rfm_segment_totals(p_as_of date)
returns table (workspace_id uuid, segment text, customers bigint, revenue numeric, orders bigint)
language plpgsql
stable
security definer
set search_path = ''
set work_mem = '64MB'
set jit = off
as $$
declare
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
    -- The workspaces to count: all (null) for an analyst when none is kept, else those listed.
    counted as materialized (
      select case
               when v_workspace_ids is null and not exists (select 1 from kept) then null
               else array(
                 select w.id from public.workspaces w
                 where (v_workspace_ids is null or w.id = any (v_workspace_ids))
                   and not exists (select 1 from kept k where k.workspace_id = w.id)
                   and exists (select 1 from public.customer_facts f where f.workspace_id = w.id)
               )
             end as ids
    )
    select s.workspace_id, s.segment, count(*), sum(s.monetary), sum(s.frequency)
    from private.rfm_kept_scores s
    where s.workspace_id = any (array(select k.workspace_id from kept k))
    group by s.workspace_id, s.segment
    union all
    select r.workspace_id, m.segment, count(*), sum(r.monetary), sum(r.frequency)
    from counted c
    cross join private.rfm_scores(p_as_of, c.ids) as r
    join analytics.rfm_segment_map m on m.r_score = r.r_score and m.f_score = r.f_score
    where c.ids is null or cardinality(c.ids) > 0
    group by r.workspace_id, m.segment;
end
$$;

revoke all on function analytics.rfm_segment_totals(date) from public, anon, authenticated;

grant execute on function analytics.rfm_segment_totals(date) to authenticated, growthbase_analyst;

comment on function analytics.rfm_segment_totals(date) is
  'Customers, revenue (base currency) and orders per RFM segment as of a date, for the '
  'workspaces you may see; 422 invalid_as_of. analytics.rfm_segments shows them for today.';

create or replace view analytics.rfm_segments with (security_invoker = true) as
  select t.workspace_id, t.segment, t.customers, t.revenue,
         round(t.revenue / nullif(t.orders, 0), 2) as average_order_value,
         round(t.customers::numeric / sum(t.customers) over (partition by t.workspace_id), 4)
           as share_of_customers,
         round(t.revenue / nullif(sum(t.revenue) over (partition by t.workspace_id), 0), 4)
           as share_of_revenue
  from analytics.rfm_segment_totals(current_date) t;
