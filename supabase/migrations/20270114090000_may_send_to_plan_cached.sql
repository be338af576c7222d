-- private.may_send_to as plpgsql (issue 18: the send round's fixed cost). As a SQL function
-- that cannot be inlined (it returns a table and runs as its owner), its statement was planned
-- anew on every call: a dozen CTEs and joins, about 3 ms of each claim whatever its size, which
-- at the bench's ~200 rows a round was a fifth of the claim. In plpgsql the statement's plan is
-- kept in the session's plan cache like the claim's own statements. The statement, its rules,
-- verdicts, reasons and hold times are those of 20270105090000_send_round.sql, unchanged.

create or replace function private.may_send_to(p_recipients uuid[])
returns table (recipient_id uuid, verdict text, reason text, hold_until timestamptz)
language plpgsql
stable
security definer
set search_path = ''
set jit = off
as $$
#variable_conflict use_column
begin
  return query
    with asked as materialized (
      select r.id, r.next_attempt_at, r.contact_id, r.workspace_id, r.campaign_id, r.email
      from public.campaign_recipients r
      where r.id = any (p_recipients)
    ),
    campaign as materialized (
      select c.id, c.sender_identity_id, c.flow_step_id is not null as flow_mail,
             coalesce(si.warmup, false) and not coalesce(f.transactional, false) as warming
      from public.campaigns c
      left join public.sender_identities si on si.id = c.sender_identity_id
      left join public.flow_steps fs on fs.id = c.flow_step_id
      left join public.flows f on f.id = fs.flow_id
      where c.id in (select a.campaign_id from asked a)
    ),
    rules as materialized (
      select sr.workspace_id, sr.daily_cap, sr.weekly_cap, sr.quiet_from, sr.quiet_until, sr.timezone
      from public.flow_send_rules sr
      where sr.workspace_id in (select a.workspace_id from asked a)
    ),
    judged as materialized (
      select a.id, a.next_attempt_at, a.contact_id, a.workspace_id, a.email, k.sender_identity_id,
             k.flow_mail, k.warming,
             (ct.email = a.email
              and (ct.consent_state = 'granted'
                   or private.may_market(ps.marketing_consent, ct.consent_state, ct.attributes))
              and ct.unsubscribed_at is null and ct.erased_at is null
              and not exists (select 1 from public.email_suppressions s
                              where s.workspace_id = a.workspace_id and s.email = a.email)
              and not exists (select 1 from private.platform_suppressions p
                              where p.email_hash = sha256(convert_to(lower(a.email), 'UTF8'))))
             is true as mailable
      from asked a
      join public.contacts ct on ct.id = a.contact_id
      join campaign k on k.id = a.campaign_id
      left join public.workspace_privacy_settings ps on ps.workspace_id = a.workspace_id
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
          from judged j
          where j.mailable and j.workspace_id in (select rl.workspace_id from rules rl)
        ) as j
        join lateral (
          select rl.daily_cap, rl.weekly_cap, rl.quiet_from, rl.quiet_until,
                 coalesce((select z.name from private.time_zones z where z.name = ct.attributes ->> 'timezone'), rl.timezone) as tz
          from rules rl
          join public.contacts ct on ct.id = j.contact_id
          where rl.workspace_id = j.workspace_id
        ) as w on true
        where not j.flow_mail
      ) as q
      where q.quiet or q.capped
    ),
    -- A recipient counted today already has its place in the day: only the others need room.
    tiered as (
      select j.id, j.sender_identity_id, private.mailbox_provider(j.email) as provider,
             private.engagement_tier(j.contact_id) as tier, j.next_attempt_at
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
    from verdicts v;
end
$$;

revoke all on function private.may_send_to(uuid[]) from public, anon, authenticated;

grant execute on function private.may_send_to(uuid[]) to service_role;
