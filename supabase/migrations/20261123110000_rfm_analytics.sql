-- RFM analytics in schema `analytics`, for dashboards (through the Data API) and analysts.
--
-- Scoring, as of a date D (UTC dates; never now() inside the scoring, so results reproduce):
--   qualifying orders: status paid or fulfilled, placed before the end of D, with a contact;
--   recency_days = D - date of the last qualifying order;
--   frequency    = number of qualifying orders;
--   monetary     = sum of their base_total (totals in the workspace's base currency).
--   Each score is 1 + floor(5 × share of the workspace's customers with a strictly worse
--   value), i.e. 1 + floor(5 × (rank − 1) / n) with rank() (ties share the lowest rank):
--   worse means more days for recency (R is inverted), fewer orders for F, less money for M.
--   Identical customers therefore always get identical scores — with half the customers on
--   one order they all get F=1, and the next frequency starts at F=3 — and there is no
--   arbitrary tie-breaker. Contacts without qualifying orders are not customers and are not
--   scored.
--   Segment: from R and F only, by the 10-segment R×F map with "Lost" carved from its coldest
--   cell, so each of the 25 cells has exactly one segment (analytics.rfm_segment_map):
--     R1-2/F1-2 Hibernating (R1/F1 Lost), R1-2/F3-4 At Risk, R1-2/F5 Can't Lose Them,
--     R3/F1-2 About To Sleep, R3/F3 Need Attention, R3-4/F4-5 Loyal Customers, R4/F1 Promising,
--     R5/F1 New Customers, R4-5/F2-3 Potential Loyalist, R5/F4-5 Champions.
--
-- Visibility: the scoring functions are security definer and return only the workspaces the
-- caller may see: a dashboard user's own (auth.uid()), or every workspace for a session without
-- a user that logged in as a member of growthbase_analyst. The views on top are security
-- invoker.

create schema analytics;

revoke all on schema analytics from public;

do $$
begin
  if not exists (select from pg_catalog.pg_roles where rolname = 'growthbase_analyst') then
    create role growthbase_analyst nologin;
  end if;
end
$$;

grant usage on schema analytics to authenticated, service_role, growthbase_analyst;

create table analytics.rfm_segment_map (
  r_score integer not null check (r_score between 1 and 5),
  f_score integer not null check (f_score between 1 and 5),
  segment text not null,
  primary key (r_score, f_score)
);

insert into analytics.rfm_segment_map (r_score, f_score, segment)
select r, f,
  case
    when r = 1 and f = 1 then 'Lost'
    when r <= 2 and f <= 2 then 'Hibernating'
    when r <= 2 and f <= 4 then 'At Risk'
    when r <= 2 then 'Can''t Lose Them'
    when r = 3 and f <= 2 then 'About To Sleep'
    when r = 3 and f = 3 then 'Need Attention'
    when r <= 4 and f >= 4 then 'Loyal Customers'
    when r = 4 and f = 1 then 'Promising'
    when r = 5 and f = 1 then 'New Customers'
    when f <= 3 then 'Potential Loyalist'
    else 'Champions'
  end
from generate_series(1, 5) as r, generate_series(1, 5) as f;

-- Whether the caller sees every workspace in analytics: only a session without a signed-in
-- user (the Data API and the edge always set one) that logged in as a member of
-- growthbase_analyst (session_user cannot be changed by SET ROLE). Everyone else sees the
-- workspaces they belong to.
create function private.analytics_sees_all()
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select auth.uid() is null
     and pg_catalog.pg_has_role(session_user, 'growthbase_analyst', 'member')
$$;

-- The scoring itself, for the given workspaces (null: all). See the header for the rules.
-- work_mem: with the default 4 MB the three window sorts over 200k customers spill to disk
-- (2.4-2.9 s for 1M orders on 2 cores); with 64 MB they sort in memory (1.6-1.7 s).
create function private.rfm_scores(p_as_of date, p_workspace_ids uuid[])
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
  with per_contact as (
    select o.workspace_id, o.contact_id,
           min(o.placed_at) as first_order_at, max(o.placed_at) as last_order_at,
           p_as_of - (max(o.placed_at) at time zone 'UTC')::date as recency_days,
           count(*)::integer as frequency,
           coalesce(sum(o.base_total), 0)::numeric(14, 2) as monetary
    from public.orders o
    where o.status in ('paid', 'fulfilled')
      and o.contact_id is not null
      and o.placed_at < ((p_as_of + 1)::timestamp at time zone 'UTC')
      and (p_workspace_ids is null or o.workspace_id = any (p_workspace_ids))
    group by o.workspace_id, o.contact_id
  ),
  ranked as (
    select c.*,
           rank() over (partition by c.workspace_id order by c.recency_days desc) as r_rank,
           rank() over (partition by c.workspace_id order by c.frequency) as f_rank,
           rank() over (partition by c.workspace_id order by c.monetary) as m_rank,
           count(*) over (partition by c.workspace_id) as customers
    from per_contact c
  )
  select r.workspace_id, r.contact_id, r.first_order_at, r.last_order_at, r.recency_days,
         r.frequency, r.monetary,
         (1 + 5 * (r.r_rank - 1) / r.customers)::integer,
         (1 + 5 * (r.f_rank - 1) / r.customers)::integer,
         (1 + 5 * (r.m_rank - 1) / r.customers)::integer
  from ranked r
$$;

-- Per-contact RFM as of a date, for the workspaces the caller may see.
create function analytics.rfm(p_as_of date)
returns table (
  workspace_id uuid, contact_id uuid, first_order_at timestamptz, last_order_at timestamptz,
  recency_days integer, frequency integer, monetary numeric(14, 2),
  r_score integer, f_score integer, m_score integer, rfm_code text, segment text
)
language sql
stable
security definer
set search_path = ''
as $$
  select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at, s.recency_days,
         s.frequency, s.monetary, s.r_score, s.f_score, s.m_score,
         s.r_score::text || s.f_score::text || s.m_score::text, m.segment
  from private.rfm_scores(
    p_as_of,
    case when private.analytics_sees_all() then null else array(select private.user_workspace_ids()) end
  ) s
  join analytics.rfm_segment_map m on m.r_score = s.r_score and m.f_score = s.f_score
$$;

create view analytics.customer_rfm with (security_invoker = true) as
  select * from analytics.rfm(current_date);

create view analytics.rfm_segments with (security_invoker = true) as
  select r.workspace_id, r.segment,
         count(*) as customers,
         sum(r.monetary) as revenue,
         round(sum(r.monetary) / nullif(sum(r.frequency), 0), 2) as average_order_value,
         round(count(*)::numeric / sum(count(*)) over (partition by r.workspace_id), 4)
           as share_of_customers,
         round(sum(r.monetary) / nullif(sum(sum(r.monetary)) over (partition by r.workspace_id), 0), 4)
           as share_of_revenue
  from analytics.rfm(current_date) r
  group by r.workspace_id, r.segment;

-- monthly snapshots ---------------------------------------------------------------------------

create table analytics.rfm_snapshots (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  snapshot_month date not null check (snapshot_month = date_trunc('month', snapshot_month)::date),
  contact_id uuid not null references public.contacts (id) on delete cascade,
  recency_days integer not null,
  frequency integer not null,
  monetary numeric(14, 2) not null,
  r_score integer not null,
  f_score integer not null,
  m_score integer not null,
  segment text not null,
  taken_at timestamptz not null default now(),
  primary key (workspace_id, snapshot_month, contact_id)
);

create index rfm_snapshots_month_idx on analytics.rfm_snapshots (snapshot_month);

-- Scores every workspace as of the month's last day and replaces that month's snapshot, so
-- running it again (or late) gives the same rows.
create function analytics.take_rfm_snapshot(p_month date)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_month date := date_trunc('month', p_month)::date;
  v_rows integer;
begin
  delete from analytics.rfm_snapshots s where s.snapshot_month = v_month;
  insert into analytics.rfm_snapshots
    (workspace_id, snapshot_month, contact_id, recency_days, frequency, monetary,
     r_score, f_score, m_score, segment)
  select s.workspace_id, v_month, s.contact_id, s.recency_days, s.frequency, s.monetary,
         s.r_score, s.f_score, s.m_score, m.segment
  from private.rfm_scores((v_month + interval '1 month' - interval '1 day')::date, null) s
  join analytics.rfm_segment_map m on m.r_score = s.r_score and m.f_score = s.f_score;
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

-- Customers per segment per snapshot month and the change from the month before (a segment
-- absent in a month counts as zero).
create view analytics.rfm_segment_trend with (security_invoker = true) as
  with months as (
    select distinct s.workspace_id, s.snapshot_month from analytics.rfm_snapshots s
  ),
  counts as (
    select m.workspace_id, m.snapshot_month, g.segment,
           (select count(*) from analytics.rfm_snapshots s
             where s.workspace_id = m.workspace_id and s.snapshot_month = m.snapshot_month
               and s.segment = g.segment) as customers
    from months m
    cross join (select distinct segment from analytics.rfm_segment_map) g
  )
  select c.workspace_id, c.snapshot_month, c.segment, c.customers,
         c.customers - lag(c.customers) over w as change,
         lag(c.snapshot_month) over w as previous_month
  from counts c
  window w as (partition by c.workspace_id, c.segment order by c.snapshot_month);

-- How many customers moved from one segment to another between consecutive months
-- (from_segment is null for customers who were not customers the month before).
create view analytics.rfm_segment_movement with (security_invoker = true) as
  select cur.workspace_id, cur.snapshot_month, prev.segment as from_segment,
         cur.segment as to_segment, count(*) as customers
  from analytics.rfm_snapshots cur
  left join analytics.rfm_snapshots prev
    on prev.workspace_id = cur.workspace_id and prev.contact_id = cur.contact_id
   and prev.snapshot_month = (cur.snapshot_month - interval '1 month')::date
  group by cur.workspace_id, cur.snapshot_month, prev.segment, cur.segment;

-- Where pg_cron exists (Supabase), take last month's snapshot early on the 1st; elsewhere the
-- edge's cron endpoint does it.
do $$
begin
  if exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
    perform cron.schedule(
      'growthbase-rfm-snapshot', '15 0 1 * *',
      'select analytics.take_rfm_snapshot((current_date - 1))'
    );
  end if;
end
$$;

-- grants --------------------------------------------------------------------------------------

revoke all on analytics.rfm_segment_map from public;

revoke all on analytics.rfm_snapshots from public;

revoke all on function private.analytics_sees_all() from public, anon, authenticated;

revoke all on function private.rfm_scores(date, uuid[]) from public, anon, authenticated;

revoke all on function analytics.rfm(date) from public;

revoke all on function analytics.take_rfm_snapshot(date) from public;

grant select on analytics.rfm_segment_map to authenticated, growthbase_analyst;

grant select on analytics.rfm_snapshots to authenticated, growthbase_analyst;

grant select on analytics.customer_rfm to authenticated, growthbase_analyst;

grant select on analytics.rfm_segments to authenticated, growthbase_analyst;

grant select on analytics.rfm_segment_trend to authenticated, growthbase_analyst;

grant select on analytics.rfm_segment_movement to authenticated, growthbase_analyst;

grant execute on function analytics.rfm(date) to authenticated, growthbase_analyst;

grant execute on function analytics.take_rfm_snapshot(date) to service_role;

alter table analytics.rfm_segment_map enable row level security;

alter table analytics.rfm_snapshots enable row level security;

-- Anyone who may read analytics may read the segment map.
create policy rfm_segment_map_select_all on analytics.rfm_segment_map
  for select to authenticated, growthbase_analyst
  using (true);

-- Members of any role may read their workspaces' snapshots.
create policy rfm_snapshots_select_members on analytics.rfm_snapshots
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Analysts may read every workspace's snapshots.
create policy rfm_snapshots_select_analysts on analytics.rfm_snapshots
  for select to growthbase_analyst
  using (true);
