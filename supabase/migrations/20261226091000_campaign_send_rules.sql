-- Campaigns obey the workspace's sending rules too (issue 15: "rules that hold across flows and
-- campaigns"). The flow tick holds a flow's send step before queuing it; a campaign's mail is
-- judged when the send worker claims it, in private.may_send_to (defined with these rules in
-- 20261229092000_warmup_counts_each_recipient_once.sql):
--   quiet hours: a row claimed in the window (the contact's `attributes.timezone`, else the
--     rules' `timezone`) goes back to the queue until the window ends;
--   frequency caps: a row whose contact already has `daily_cap` emails out today (their
--     calendar day) or `weekly_cap` in the last 7 days — campaign and flow mail, sent or being
--     sent, and the rows ahead of it in the same claim (flow mail first) — waits for the
--     contact's next day.
-- Either costs no attempt and says why in the row's `error`. Flow mail was judged by the tick.

comment on table public.flow_send_rules is
  'Per workspace: frequency caps (per contact per day and per 7 days) and quiet hours for flow and campaign email, in the contact''s time zone.';

-- The contact's emails out (being sent or sent) since a time: the caps' count.
create function private.contact_mail_since(p_contact_id uuid, p_since timestamptz)
returns bigint
language sql
stable
set search_path = ''
as $$
  select count(*) from public.campaign_recipients x
  where x.contact_id = p_contact_id and x.status in ('sending', 'sent')
    and coalesce(x.sent_at, x.next_attempt_at) >= p_since
$$;

revoke all on function private.contact_mail_since(uuid, timestamptz) from public, anon, authenticated;
