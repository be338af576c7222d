-- Campaign analytics in schema `analytics`: delivery, engagement and attributed revenue per
-- campaign variant (analytics.campaign_variant_performance) and per campaign
-- (analytics.campaign_performance, the sums over its variants). Campaigns that never started
-- have no rows.
--
-- Counts, over a variant's (or campaign's) rows in the send ledger, public.campaign_recipients:
--   recipients    = rows (the audience frozen at start, including skipped, failed, cancelled);
--   sent          = rows with sent_at (SES accepted the message);
--   bounced       = rows with bounced_at (any bounce type: the message did not arrive);
--   delivered     = sent - bounced (not the Delivery events: a message without a bounce counts
--                   as delivered even before its Delivery event arrives);
--   unique_opens  = rows with opened_at, unique_clicks = rows with clicked_at (each recipient
--                   once, however often they opened or clicked; a click does not imply an open);
--   complained    = rows with complained_at, unsubscribed = rows with unsubscribed_at.
-- Rates (numeric, rounded to 4 places; null when the denominator is zero):
--   open_rate = unique_opens / delivered           click_rate = unique_clicks / delivered
--   click_to_open_rate = unique_clicks / unique_opens   bounce_rate = bounced / sent
--   complaint_rate = complained / delivered        unsubscribe_rate = unsubscribed / delivered
-- Any SES event for a row proves SES accepted the message and marks the row sent
-- (private.apply_ses_event), so the event columns are only ever set on sent rows.
--
-- Attribution (last touch, click only): an order counts when its status is paid or fulfilled
-- and it has a contact. Its touch is that contact's click, in the order's workspace, that most
-- recently precedes it (at or before placed_at; ties go to the campaign started last). The
-- order is attributed to that click's campaign and variant if it was placed no more than the
-- campaign's attribution_days x 24 hours after the click; otherwise to nothing (an earlier
-- click of another campaign does not take over). So each order is attributed at most once.
-- attributed_revenue sums the orders' base_total (the workspace's base currency, `currency`);
-- an order without a known exchange rate counts as an order but adds no revenue.
-- The ledger keeps a recipient's first click (clicked_at) and latest click (last_clicked_at),
-- not the ones in between. A click after the order never counts for it: for a contact who
-- clicked again after ordering, the touch from that recipient row is its first click (so the
-- window runs from the first click, and a click in between that is not stored cannot extend
-- it).
--
-- Visibility: analytics.campaign_variant_stats() is security definer and returns only the
-- workspaces the caller may see (their own, or all for a growthbase_analyst session without a
-- user, private.analytics_sees_all()); the views on top are security invoker.
--
-- Work: one pass over the visible ledger rows for every count; the attribution reads only the
-- clicked rows (through a partial index) and, per clicking contact, their orders from the
-- clicked time on (orders_workspace_contact_idx).

create index campaign_recipients_clicks_idx on public.campaign_recipients (workspace_id, contact_id, clicked_at)
  where clicked_at is not null;

-- Per variant of every started campaign the caller may see: the counts and attributed orders.
create function analytics.campaign_variant_stats()
returns table (
  workspace_id uuid, campaign_id uuid, campaign_name text, campaign_status text,
  started_at timestamptz, finished_at timestamptz, attribution_days integer,
  variant_id uuid, variant_name text,
  recipients bigint, sent bigint, bounced bigint, delivered bigint, unique_opens bigint,
  unique_clicks bigint, complained bigint, unsubscribed bigint,
  attributed_orders bigint, attributed_revenue numeric(14, 2), currency text
)
language sql
stable
security definer
set search_path = ''
as $$
  with visible as (
    select w.id, w.base_currency
    from public.workspaces w
    where (select private.analytics_sees_all())
       or w.id in (select private.user_workspace_ids())
  ),
  counts as (
    select r.variant_id,
           count(*) as recipients,
           count(*) filter (where r.sent_at is not null) as sent,
           count(*) filter (where r.bounced_at is not null) as bounced,
           count(*) filter (where r.opened_at is not null) as unique_opens,
           count(*) filter (where r.clicked_at is not null) as unique_clicks,
           count(*) filter (where r.complained_at is not null) as complained,
           count(*) filter (where r.unsubscribed_at is not null) as unsubscribed
    from public.campaign_recipients r
    where r.workspace_id in (select v.id from visible v)
    group by r.variant_id
  ),
  touches as (
    select distinct on (o.id)
           o.id as order_id, o.placed_at, o.base_total, k.campaign_id, k.variant_id,
           c.attribution_days,
           case when k.last_clicked_at <= o.placed_at then k.last_clicked_at else k.clicked_at end
             as clicked_at
    from public.campaign_recipients k
    join public.campaigns c on c.id = k.campaign_id
    join public.orders o
      on o.workspace_id = k.workspace_id and o.contact_id = k.contact_id
     and o.placed_at >= k.clicked_at
    where k.clicked_at is not null
      and k.workspace_id in (select v.id from visible v)
      and o.status in ('paid', 'fulfilled')
    order by o.id,
             case when k.last_clicked_at <= o.placed_at then k.last_clicked_at else k.clicked_at end desc,
             c.started_at desc, c.id desc
  ),
  attributed as (
    select t.variant_id, count(*) as orders, coalesce(sum(t.base_total), 0) as revenue
    from touches t
    where t.placed_at <= t.clicked_at + make_interval(hours => 24 * t.attribution_days)
    group by t.variant_id
  )
  select c.workspace_id, c.id, c.name, c.status, c.started_at, c.finished_at, c.attribution_days,
         v.id, v.name,
         coalesce(n.recipients, 0), coalesce(n.sent, 0), coalesce(n.bounced, 0),
         coalesce(n.sent - n.bounced, 0), coalesce(n.unique_opens, 0),
         coalesce(n.unique_clicks, 0), coalesce(n.complained, 0), coalesce(n.unsubscribed, 0),
         coalesce(a.orders, 0), coalesce(a.revenue, 0)::numeric(14, 2), w.base_currency
  from visible w
  join public.campaigns c on c.workspace_id = w.id and c.started_at is not null
  join public.campaign_variants v on v.campaign_id = c.id
  left join counts n on n.variant_id = v.id
  left join attributed a on a.variant_id = v.id
$$;

create view analytics.campaign_variant_performance with (security_invoker = true) as
  select s.workspace_id, s.campaign_id, s.campaign_name, s.campaign_status, s.started_at,
         s.finished_at, s.attribution_days, s.variant_id, s.variant_name,
         s.recipients, s.sent, s.delivered, s.bounced, s.unique_opens, s.unique_clicks,
         s.complained, s.unsubscribed,
         round(s.unique_opens::numeric / nullif(s.delivered, 0), 4) as open_rate,
         round(s.unique_clicks::numeric / nullif(s.delivered, 0), 4) as click_rate,
         round(s.unique_clicks::numeric / nullif(s.unique_opens, 0), 4) as click_to_open_rate,
         round(s.bounced::numeric / nullif(s.sent, 0), 4) as bounce_rate,
         round(s.complained::numeric / nullif(s.delivered, 0), 4) as complaint_rate,
         round(s.unsubscribed::numeric / nullif(s.delivered, 0), 4) as unsubscribe_rate,
         s.attributed_orders, s.attributed_revenue, s.currency
  from analytics.campaign_variant_stats() s;

create view analytics.campaign_performance with (security_invoker = true) as
  with totals as (
    select s.workspace_id, s.campaign_id, s.campaign_name, s.campaign_status, s.started_at,
           s.finished_at, s.attribution_days, count(*) as variants,
           sum(s.recipients)::bigint as recipients, sum(s.sent)::bigint as sent,
           sum(s.delivered)::bigint as delivered, sum(s.bounced)::bigint as bounced,
           sum(s.unique_opens)::bigint as unique_opens, sum(s.unique_clicks)::bigint as unique_clicks,
           sum(s.complained)::bigint as complained, sum(s.unsubscribed)::bigint as unsubscribed,
           sum(s.attributed_orders)::bigint as attributed_orders,
           sum(s.attributed_revenue)::numeric(14, 2) as attributed_revenue, s.currency
    from analytics.campaign_variant_stats() s
    group by s.workspace_id, s.campaign_id, s.campaign_name, s.campaign_status, s.started_at,
             s.finished_at, s.attribution_days, s.currency
  )
  select t.workspace_id, t.campaign_id, t.campaign_name, t.campaign_status, t.started_at,
         t.finished_at, t.attribution_days, t.variants,
         t.recipients, t.sent, t.delivered, t.bounced, t.unique_opens, t.unique_clicks,
         t.complained, t.unsubscribed,
         round(t.unique_opens::numeric / nullif(t.delivered, 0), 4) as open_rate,
         round(t.unique_clicks::numeric / nullif(t.delivered, 0), 4) as click_rate,
         round(t.unique_clicks::numeric / nullif(t.unique_opens, 0), 4) as click_to_open_rate,
         round(t.bounced::numeric / nullif(t.sent, 0), 4) as bounce_rate,
         round(t.complained::numeric / nullif(t.delivered, 0), 4) as complaint_rate,
         round(t.unsubscribed::numeric / nullif(t.delivered, 0), 4) as unsubscribe_rate,
         t.attributed_orders, t.attributed_revenue, t.currency
  from totals t;

-- grants --------------------------------------------------------------------------------------

revoke all on function analytics.campaign_variant_stats() from public, anon;

revoke all on analytics.campaign_variant_performance from public, anon;

revoke all on analytics.campaign_performance from public, anon;

-- The views run as their reader; the stats function decides which workspaces they see.
grant execute on function analytics.campaign_variant_stats() to authenticated, growthbase_analyst;

grant select on analytics.campaign_variant_performance to authenticated, growthbase_analyst;

grant select on analytics.campaign_performance to authenticated, growthbase_analyst;
