-- Campaigns obey the workspace's sending rules too (issue 15: "rules that hold across flows and
-- campaigns"). The flow tick holds a flow's send step before queuing it; a campaign's mail is
-- judged when the send worker claims it, in private.may_send_to:
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

-- As in 20261221094000_may_send_to_unknown_skips.sql (mailable only when every test holds; a
-- warming identity's caps), and campaign mail held by quiet hours and the frequency caps (a row
-- held so does not use the warm-up's room).
create or replace function private.may_send_to(p_recipients uuid[])
returns table (recipient_id uuid, verdict text, reason text, hold_until timestamptz)
language sql
stable
security definer
set search_path = ''
as $$
  with judged as (
    select r.id, r.next_attempt_at, r.contact_id, r.workspace_id, c.sender_identity_id, c.flow_step_id is not null as flow_mail,
           coalesce(si.warmup, false) and not coalesce(f.transactional, false) as warming,
           private.mailbox_provider(r.email) as provider,
           (ct.email = r.email
            and private.may_market(ps.marketing_consent, ct.consent_state, ct.attributes)
            and ct.unsubscribed_at is null and ct.erased_at is null
            and not exists (select 1 from public.email_suppressions s
                            where s.workspace_id = r.workspace_id and s.email = r.email)
            and not exists (select 1 from private.platform_suppressions p
                            where p.email_hash = sha256(convert_to(lower(r.email), 'UTF8'))))
           is true as mailable
    from public.campaign_recipients r
    join public.contacts ct on ct.id = r.contact_id
    join public.campaigns c on c.id = r.campaign_id
    left join public.workspace_privacy_settings ps on ps.workspace_id = r.workspace_id
    left join public.sender_identities si on si.id = c.sender_identity_id
    left join public.flow_steps fs on fs.id = c.flow_step_id
    left join public.flows f on f.id = fs.flow_id
    where r.id = any (p_recipients)
  ),
  -- Campaign mail (no flow step) under the workspace's sending rules: quiet hours in the
  -- contact's time zone (else the rules'), then the caps over the contact's mail already out
  -- and the rows ahead of it in this claim (flow mail first, then due time).
  ruled as (
    select q.id,
           case when q.quiet then private.next_time_of_day(now(), to_char(q.quiet_until, 'HH24:MI'), null, q.tz)
                else (date_trunc('day', now() at time zone q.tz) + interval '1 day') at time zone q.tz
           end as rule_hold,
           case when q.quiet then format('quiet hours: waiting until %s (%s)', to_char(q.quiet_until, 'HH24:MI'), q.tz)
                else 'frequency cap: the contact has had the most emails the workspace allows; waiting for their next day'
           end as rule_reason
    from (
      select j.id, w.tz, w.quiet_until,
             w.quiet_from is not null
               and case when w.quiet_from < w.quiet_until
                        then (now() at time zone w.tz)::time >= w.quiet_from and (now() at time zone w.tz)::time < w.quiet_until
                        else (now() at time zone w.tz)::time >= w.quiet_from or (now() at time zone w.tz)::time < w.quiet_until
                   end as quiet,
             (w.daily_cap is not null
              and private.contact_mail_since(j.contact_id, date_trunc('day', now() at time zone w.tz) at time zone w.tz)
                  + j.ahead >= w.daily_cap)
             or (w.weekly_cap is not null
                 and private.contact_mail_since(j.contact_id, now() - interval '7 days') + j.ahead >= w.weekly_cap) as capped
      from (
        select j.*, row_number() over (partition by j.contact_id order by j.flow_mail desc, j.next_attempt_at, j.id) - 1 as ahead
        from judged j where j.mailable
      ) as j
      join lateral (
        select sr.daily_cap, sr.weekly_cap, sr.quiet_from, sr.quiet_until,
               coalesce((select z.name from private.time_zones z where z.name = ct.attributes ->> 'timezone'), sr.timezone) as tz
        from public.flow_send_rules sr
        join public.contacts ct on ct.id = j.contact_id
        where sr.workspace_id = j.workspace_id
      ) as w on true
      where not j.flow_mail
    ) as q
    where q.quiet or q.capped
  ),
  tiered as (
    select j.id, j.sender_identity_id, j.provider, private.engagement_tier(j.contact_id) as tier,
           j.next_attempt_at
    from judged j
    where j.mailable and j.warming and j.id not in (select u.id from ruled u)
  ),
  room as (
    select i.sender_identity_id, k.cap,
           k.cap - coalesce(d.claimed, 0) as left_all,
           jsonb_build_object(
             'gmail', ceil(k.cap * 0.5) - coalesce(d.gmail, 0),
             'microsoft', ceil(k.cap * 0.5) - coalesce(d.microsoft, 0),
             'yahoo', ceil(k.cap * 0.5) - coalesce(d.yahoo, 0)) as left_provider
    from (select distinct t.sender_identity_id from tiered t) i
    cross join lateral (select private.warmup_cap(i.sender_identity_id, (now() at time zone 'UTC')::date) as cap) k
    left join private.sender_warmup_days d
      on d.sender_identity_id = i.sender_identity_id and d.day = (now() at time zone 'UTC')::date
  ),
  -- First each provider's share, then the day's cap over the rows within their share.
  shared as (
    select t.*, rm.cap, rm.left_all,
           t.provider is null
             or row_number() over (partition by t.sender_identity_id, t.provider
                                   order by t.tier, t.next_attempt_at, t.id)
                <= (rm.left_provider ->> t.provider)::numeric as within_share
    from tiered t
    join room rm on rm.sender_identity_id = t.sender_identity_id
  ),
  placed as (
    select s.*,
           row_number() over (partition by s.sender_identity_id, s.within_share
                              order by s.tier, s.next_attempt_at, s.id) as n_all
    from shared s
  ),
  verdicts as (
    select j.id, j.mailable, w.tier, w.provider, w.cap,
           w.id is not null and (not w.within_share or w.n_all > w.left_all) as over_cap,
           w.id is not null and not w.within_share as provider_only,
           u.rule_hold, u.rule_reason
    from judged j
    left join placed w on w.id = j.id
    left join ruled u on u.id = j.id
  )
  select v.id,
         case when not v.mailable then 'skip' when v.over_cap or v.rule_hold is not null then 'hold' else 'send' end,
         case
           when not v.mailable then 'no longer mailable (unsubscribed, suppressed or without consent)'
           when v.rule_hold is not null then v.rule_reason
           when v.over_cap and v.provider_only then
             format('warm-up: today''s share for %s (half of the daily cap of %s) is used; waiting for tomorrow',
                    initcap(v.provider), v.cap)
           when v.over_cap then format('warm-up: today''s cap of %s is used; waiting for tomorrow', v.cap)
         end,
         case when v.mailable and v.rule_hold is not null then v.rule_hold
              when v.mailable and v.over_cap then
           ((now() at time zone 'UTC')::date + 1)::timestamp at time zone 'UTC' + v.tier * interval '1 second'
         end
  from verdicts v
$$;

revoke all on function private.may_send_to(uuid[]) from public, anon, authenticated;

grant execute on function private.may_send_to(uuid[]) to service_role;
