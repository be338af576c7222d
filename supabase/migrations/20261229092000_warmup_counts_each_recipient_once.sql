-- Warm-up counts each recipient once a day (issue 18). The count grew with every claim, so a
-- row claimed again (after throttling, a lease that ran out, a retry with backoff) used up the
-- day's cap once more for one message. Now the first claim of a recipient in a UTC day
-- reserves its place (private.sender_warmup_sends, one row per recipient with the day it
-- counted in) and later claims that day count nothing; a recipient held over to a later day
-- counts in that day when it is claimed then. Claims of one SES account are taken one at a
-- time (each locks its private.ses_accounts row before it judges, and sees what the claim
-- before it counted), so two workers claiming at once never pass the cap together.

create table private.sender_warmup_sends (
  recipient_id uuid primary key references public.campaign_recipients (id) on delete cascade,
  sender_identity_id uuid not null references public.sender_identities (id) on delete cascade,
  day date not null
);

create index sender_warmup_sends_sender_identity_id_idx on private.sender_warmup_sends (sender_identity_id);

create index sender_warmup_sends_day_idx on private.sender_warmup_sends (day);

revoke all on private.sender_warmup_sends from public, anon, authenticated;

grant select on private.sender_warmup_sends to service_role;

comment on table private.sender_warmup_sends is
  'Recipients of warming sender identities and the UTC day each counted in: a recipient counts towards the warm-up cap once a day, however often it is claimed.';

-- As in 20261221093000_sender_warmup.sql (after a statement on the send ledger, the sends it
-- claimed from warming identities count towards their day), and: a recipient already counted
-- today counts nothing; the reservations of days before yesterday are dropped.
create or replace function private.count_warmup_sends()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_day date := (now() at time zone 'UTC')::date;
begin
  with claimed as (
    select n.id, n.email, c.sender_identity_id, c.workspace_id
    from new_rows n
    join old_rows o on o.id = n.id
    join public.campaigns c on c.id = n.campaign_id
    join public.sender_identities si on si.id = c.sender_identity_id and si.warmup
    where n.status = 'sending' and n.attempts > o.attempts
  ),
  fresh as (
    insert into private.sender_warmup_sends as s (recipient_id, sender_identity_id, day)
    select k.id, k.sender_identity_id, v_day from claimed k
    order by k.id
    on conflict (recipient_id) do update
    set day = excluded.day, sender_identity_id = excluded.sender_identity_id
    where s.day < excluded.day
    returning s.recipient_id
  )
  insert into private.sender_warmup_days as w (sender_identity_id, workspace_id, day, cap, claimed, gmail, microsoft, yahoo)
  select g.sender_identity_id, g.workspace_id, v_day, private.warmup_cap(g.sender_identity_id, v_day),
         g.claimed, g.gmail, g.microsoft, g.yahoo
  from (
    select k.sender_identity_id, k.workspace_id, count(*) as claimed,
           count(*) filter (where private.mailbox_provider(k.email) = 'gmail') as gmail,
           count(*) filter (where private.mailbox_provider(k.email) = 'microsoft') as microsoft,
           count(*) filter (where private.mailbox_provider(k.email) = 'yahoo') as yahoo
    from claimed k
    join fresh f on f.recipient_id = k.id
    group by k.sender_identity_id, k.workspace_id
  ) g
  order by g.sender_identity_id
  on conflict (sender_identity_id, day) do update
  set claimed = w.claimed + excluded.claimed, gmail = w.gmail + excluded.gmail,
      microsoft = w.microsoft + excluded.microsoft, yahoo = w.yahoo + excluded.yahoo;
  delete from private.sender_warmup_sends s where s.day < v_day - 1;
  return null;
end
$$;

revoke all on function private.count_warmup_sends() from public, anon, authenticated;

-- As in 20261221094000_may_send_to_unknown_skips.sql (the claim's rules; a warming identity's
-- day cap and provider shares, most engaged first; a row is mailable only when every test
-- holds), and: campaign mail held by quiet hours and frequency caps (the rules of
-- 20261226091000_campaign_send_rules.sql, counted by private.contact_mail_since); a recipient
-- already counted today is claimed again without needing room.
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
  -- A recipient counted today already has its place in the day: only the others need room.
  tiered as (
    select j.id, j.sender_identity_id, j.provider, private.engagement_tier(j.contact_id) as tier,
           j.next_attempt_at
    from judged j
    where j.mailable and j.warming and j.id not in (select u.id from ruled u)
      and not exists (select 1 from private.sender_warmup_sends w
                      where w.recipient_id = j.id and w.day = (now() at time zone 'UTC')::date)
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
