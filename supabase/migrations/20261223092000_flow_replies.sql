-- Flow metrics count replies. A flow's send_email step mails as its own campaign
-- (campaigns.flow_step_id), so a reply the inbox links to one of its recipients (matched by the
-- thread and sender, or by the recipient's reply+ address) marks that recipient `replied_at`, as
-- for any campaign; auto-replies never count and bounces never become messages. These views
-- read those marks per step and per flow, beside the step's sent count, with reply_rate =
-- replies / sent as in analytics.campaign_performance. The flow engine and the existing flow
-- views are unchanged.

-- Replies per send step of every flow version the caller may see (all for an analyst).
create function analytics.flow_step_replies()
returns table (workspace_id uuid, flow_id uuid, step_id uuid, campaign_id uuid, replies bigint)
language sql
stable
security definer
set search_path = ''
as $$
  select s.workspace_id, s.flow_id, s.id, s.campaign_id, count(r.id)
  from public.flow_steps s
  left join public.campaign_recipients r
    on r.campaign_id = s.campaign_id and r.replied_at is not null
  where s.kind = 'send_email' and s.campaign_id is not null
    and (private.analytics_sees_all() or s.workspace_id in (select private.user_workspace_ids()))
  group by s.workspace_id, s.flow_id, s.id, s.campaign_id
$$;

revoke all on function analytics.flow_step_replies() from public, anon;

grant execute on function analytics.flow_step_replies() to authenticated, growthbase_analyst, service_role;

comment on function analytics.flow_step_replies() is
  'Recipients who replied, per send step of every flow version the caller may see (auto-replies never count).';

create view analytics.flow_step_reply_rates with (security_invoker = true) as
  select p.workspace_id, p.flow_id, p.flow_name, p.flow_status, p.version, p.step_id, p.step_key,
         p.sent, p.delivered, coalesce(x.replies, 0) as replies,
         round(coalesce(x.replies, 0)::numeric / nullif(p.sent, 0), 4) as reply_rate
  from analytics.flow_step_performance p
  left join analytics.flow_step_replies() x on x.step_id = p.step_id
  where p.kind = 'send_email';

comment on view analytics.flow_step_reply_rates is
  'Per send step of a flow version: emails sent and delivered, recipients who replied, reply_rate = replies / sent.';

create view analytics.flow_reply_rates with (security_invoker = true) as
  select s.workspace_id, s.flow_id, s.flow_name, s.flow_status,
         sum(s.sent)::bigint as sent, sum(s.replies)::bigint as replies,
         round(sum(s.replies)::numeric / nullif(sum(s.sent), 0), 4) as reply_rate
  from analytics.flow_step_reply_rates s
  group by s.workspace_id, s.flow_id, s.flow_name, s.flow_status;

comment on view analytics.flow_reply_rates is
  'Per flow, all versions and send steps together: emails sent, recipients who replied, reply_rate = replies / sent.';

-- grants -----------------------------------------------------------------------------------------

revoke all on analytics.flow_step_reply_rates, analytics.flow_reply_rates from public, anon;

grant select on analytics.flow_step_reply_rates, analytics.flow_reply_rates to authenticated, growthbase_analyst, service_role;
