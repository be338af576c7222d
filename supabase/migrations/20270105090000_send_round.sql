-- The send worker's database work in one call per round (issue 18): private.send_round records
-- the outcomes of the last batch (set-based, one statement), claims the next batch and answers
-- everything the worker needs to send it in one jsonb value, so a worker holds a pooled
-- connection for one statement per batch and never while it talks to SES.
--
-- The answer is compact: each claimed row once (without its template), each variant's subject,
-- HTML and text once, and each campaign's sender, Reply-To, the inbox's reply domains of its
-- workspace (private.inbox_reply_domains, which the worker used to ask once per batch) and,
-- where the account has tenants, its SES tenant (private.send_tenants, likewise). When the
-- claim found fewer rows than asked for, it also says how long to wait before the next claim
-- (private.email_send_wait).
--
-- The claim itself is cheaper and keeps every rule: the rows to send are leased by one UPDATE
-- that looks nothing up, and the others (skipped, held, given up: usually none) by one more only
-- when there are any, instead of four UPDATEs a claim, so the ledger's statement triggers
-- (deliverability and warm-up counts) usually run once per claim, not four times; each
-- campaign's send priority is worked out once, not per row; private.may_send_to reads each
-- campaign's and workspace's settings once. Rows are found through the primary key (an id list)
-- and never joined to a batch: the ledger's statistics know no leased rows, and a join was
-- planned as a nested loop comparing every outcome with every leased row. The claim and the
-- outcomes never compile their plans (JIT).
--
-- private.claim_email_batch keeps its signature and rows (tests and tools call it): it is now
-- the new claim with each row's template joined back.

-- As in 20261229092000_warmup_counts_each_recipient_once.sql (the claim's rules: address
-- unchanged, consent, not unsubscribed or erased, suppressed nowhere, a test that cannot be
-- answered skips; campaign mail held by quiet hours and frequency caps; a warming identity's day
-- cap and provider shares, most engaged first, a recipient counted today needing no room), with
-- the same verdicts, reasons and times, at less cost per row: each campaign's sender, flow and
-- warm-up state and each workspace's sending rules are read once, not per row; the workspace's
-- consent rule is asked only for contacts whose consent is not plainly granted; the mailbox
-- provider is worked out only for warming rows; rows of workspaces without sending rules skip
-- the rules' ranking.
create or replace function private.may_send_to(p_recipients uuid[])
returns table (recipient_id uuid, verdict text, reason text, hold_until timestamptz)
language sql
stable
security definer
set search_path = ''
set jit = off
as $$
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
  from verdicts v
$$;

revoke all on function private.may_send_to(uuid[]) from public, anon, authenticated;

grant execute on function private.may_send_to(uuid[]) to service_role;

-- Claims up to p_limit due recipients, as private.claim_email_batch did in
-- 20261221091000_may_send_to.sql (the platform brake; guardrail pauses applied first; the
-- account's pacing state locked, its rate, quota, breaker and send slots; sending campaigns of
-- verified senders, by send priority then due time, skip locked; each row judged by
-- private.may_send_to; `skip` final with its reason, `hold` back in the queue unclaimed until its
-- time, eight claims without an outcome given up, `send` leased with one more attempt; a flow
-- email's event handed to rendering as `contact.event`), answering each sent row's variant
-- instead of its template.
create function private.claim_email_rows(
  p_limit integer, p_lease_seconds integer, p_per_second double precision, p_account text default 'default'
)
returns table (
  recipient_id uuid, campaign_id uuid, workspace_id uuid, variant_id uuid, contact_id uuid,
  email text, attempts integer, contact jsonb, send_in double precision
)
language plpgsql
security definer
set search_path = ''
set jit = off
as $$
declare
  v_account private.ses_accounts;
  v_now timestamptz := clock_timestamp();
  v_rate double precision;
  v_start timestamptz;
  v_take integer;
  v_claimed integer;
  v_ids uuid[];
  v_worn boolean;
  v_send uuid[];
  v_verdicts jsonb;
begin
  if (select b.engaged from private.platform_brake b) then
    return;
  end if;
  update public.campaigns c
  set status = 'paused', paused_by = p.id, error = p.detail
  from public.sending_pauses p
  where c.status = 'sending' and p.workspace_id = c.workspace_id and p.acknowledged_at is null
    and (p.sender_identity_id is null or p.sender_identity_id = c.sender_identity_id);

  insert into private.ses_accounts as a (account, configured_rate, rate)
  values (p_account, p_per_second, p_per_second)
  on conflict (account) do update
  set configured_rate = excluded.configured_rate,
      rate = least(excluded.configured_rate, coalesce(a.max_send_rate, excluded.configured_rate))
  where a.configured_rate is distinct from excluded.configured_rate;
  select * into v_account from private.ses_accounts a where a.account = p_account for update;
  if v_account.sending_enabled is false or v_account.paused_until > v_now then
    return;
  end if;
  v_rate := least(v_account.rate, p_per_second, coalesce(v_account.max_send_rate, p_per_second));
  v_start := greatest(v_account.next_slot_at, v_now);
  -- Slots up to a second ahead (or one slot, when the rate is below one a second).
  v_take := least(p_limit, floor((extract(epoch from v_now - v_start) + greatest(1, 1 / v_rate)) * v_rate)::integer);
  if v_account.max_24_hour_send >= 0 then
    v_take := least(v_take, floor(v_account.max_24_hour_send - coalesce(v_account.sent_last_24_hours, 0)
                                  - v_account.claimed_since_check)::integer);
  end if;
  if v_account.error_streak >= 5 then
    v_take := least(v_take, 1);
  end if;
  if v_take <= 0 then
    return;
  end if;

  -- The rows to judge, locked (skip locked) until the transaction ends.
  with ready as materialized (
    -- The sending campaigns of verified senders, each with its send priority (once, not per row).
    select c.id, private.send_priority(f.transactional, f.send_priority) as priority
    from public.campaigns c
    join public.sender_identities si on si.id = c.sender_identity_id and si.verified
    left join public.flow_steps fs on fs.id = c.flow_step_id
    left join public.flows f on f.id = fs.flow_id
    where c.status = 'sending'
  )
  select array_agg(k.id), bool_or(k.attempts >= 8) into v_ids, v_worn
  from (
    select r.id, r.attempts
    from ready c
    cross join lateral (
      select d.id, d.attempts, d.next_attempt_at from public.campaign_recipients d
      where d.campaign_id = c.id
        and d.status in ('queued', 'sending')
        and d.next_attempt_at <= now()
        and (d.locked_until is null or d.locked_until < now())
      order by d.next_attempt_at
      limit v_take
      for update of d skip locked
    ) r
    order by c.priority, r.next_attempt_at
    limit v_take
  ) k;
  if v_ids is null then
    return;
  end if;
  -- The verdicts: the rows to send as a list, the others (usually none) keyed by id.
  select array_agg(m.recipient_id) filter (where m.verdict = 'send'),
         jsonb_object_agg(m.recipient_id::text, jsonb_build_array(m.verdict, m.reason, m.hold_until))
           filter (where m.verdict <> 'send')
  into v_send, v_verdicts
  from private.may_send_to(v_ids) m;

  if v_verdicts is not null or v_worn then
    -- Skipped (final, with the reason), held (back in the queue unclaimed until its time, with
    -- the reason) and given up (claimed eight times without an outcome: the worker died on it
    -- each time). Rows are found through the primary key and their verdicts looked up by id,
    -- so no plan joins the verdicts to the ledger row by row.
    update public.campaign_recipients r
    set status = case when v_verdicts -> r.id::text ->> 0 = 'skip' then 'skipped'
                      when r.attempts >= 8 then 'failed'
                      else 'queued' end,
        locked_until = null,
        next_attempt_at = case when v_verdicts -> r.id::text ->> 0 = 'hold' and r.attempts < 8
                                 then (v_verdicts -> r.id::text ->> 2)::timestamptz
                               else r.next_attempt_at end,
        error = case when v_verdicts -> r.id::text ->> 0 = 'skip' then v_verdicts -> r.id::text ->> 1
                     when r.attempts >= 8 then 'gave up after 8 attempts that ended without an outcome'
                     else v_verdicts -> r.id::text ->> 1 end
    where r.id = any (v_ids)
      and (v_verdicts ? r.id::text or (r.attempts >= 8 and r.id = any (v_send)));
  end if;

  return query
  with claimed as (
    -- Leased, with one more attempt; due again when the lease runs out, so the due index alone
    -- says when.
    update public.campaign_recipients r
    set status = 'sending', attempts = r.attempts + 1,
        locked_until = now() + make_interval(secs => p_lease_seconds),
        next_attempt_at = now() + make_interval(secs => p_lease_seconds)
    where r.id = any (v_send) and r.attempts < 8
    returning r.id, r.campaign_id, r.workspace_id, r.variant_id, r.contact_id, r.email, r.attempts,
              r.merge_data, r.next_attempt_at
  )
  select cl.id, cl.campaign_id, cl.workspace_id, cl.variant_id, cl.contact_id, cl.email, cl.attempts,
         jsonb_build_object('email', ct.email, 'first_name', ct.first_name,
                            'last_name', ct.last_name, 'phone', ct.phone,
                            'attributes', ct.attributes)
           || case when cl.merge_data is not null then jsonb_build_object('event', cl.merge_data) else '{}'::jsonb end,
         extract(epoch from v_start - v_now)::double precision
           + (row_number() over (order by cl.next_attempt_at, cl.id) - 1) / v_rate
  from claimed cl
  join public.contacts ct on ct.id = cl.contact_id;
  get diagnostics v_claimed = row_count;
  update private.ses_accounts a
  set next_slot_at = v_start + make_interval(secs => v_claimed / v_rate),
      claimed_since_check = a.claimed_since_check + v_claimed,
      updated_at = now()
  where a.account = p_account;
end
$$;

revoke all on function private.claim_email_rows(integer, integer, double precision, text) from public, anon, authenticated;

grant execute on function private.claim_email_rows(integer, integer, double precision, text) to service_role;

-- As in 20261221091000_may_send_to.sql (its rows and rules, through private.claim_email_rows):
-- each claimed row with its variant's subject, HTML and text and its campaign's sender.
create or replace function private.claim_email_batch(
  p_limit integer, p_lease_seconds integer, p_per_second double precision, p_account text default 'default'
)
returns table (
  recipient_id uuid, campaign_id uuid, workspace_id uuid, contact_id uuid, email text,
  attempts integer, subject text, html text, text_body text, from_name text, from_email text,
  reply_to text, contact jsonb, send_in double precision
)
language sql
security definer
set search_path = ''
set jit = off
as $$
  select k.recipient_id, k.campaign_id, k.workspace_id, k.contact_id, k.email, k.attempts,
         v.subject, v.html, v.text, c.from_name, c.from_email, c.reply_to, k.contact, k.send_in
  from private.claim_email_rows(p_limit, p_lease_seconds, p_per_second, p_account) k
  join public.campaign_variants v on v.id = k.variant_id
  join public.campaigns c on c.id = k.campaign_id
$$;

revoke all on function private.claim_email_batch(integer, integer, double precision, text) from public, anon, authenticated;

grant execute on function private.claim_email_batch(integer, integer, double precision, text) to service_role;

-- As in 20261210090000_send_pipeline.sql (a batch of outcomes `{"id", "attempt", "kind",
-- "message_id"?, "error"?, "min_delay"?}` in one statement, each counting only for the claim it
-- answers; the account's AIMD and breaker first; the same kinds, states, backoff and counts),
-- and: the rows are found through the primary key and each one's outcome looked up by its id,
-- so no plan joins the batch to the ledger row by row (the ledger's statistics know no
-- `sending` rows, and the old statement was planned as a nested loop that compared every
-- outcome with every leased row: 0.1 ms a recipient at 512 a batch); no JIT.
create or replace function private.record_email_outcomes(p_outcomes jsonb, p_account text default 'default')
returns jsonb
language plpgsql
security definer
set search_path = ''
set jit = off
as $$
declare
  v_sent integer;
  v_throttled integer;
  v_unavailable integer;
  v_account private.ses_accounts;
  v_now timestamptz := clock_timestamp();
  v_counts jsonb;
  v_ids uuid[];
  v_by_id jsonb;
begin
  if jsonb_typeof(p_outcomes) is distinct from 'array' or jsonb_array_length(p_outcomes) = 0 then
    return jsonb_build_object('sent', 0, 'retrying', 0, 'failed', 0, 'cancelled', 0);
  end if;
  select count(*) filter (where o.kind = 'sent'),
         count(*) filter (where o.kind = 'throttled'),
         count(*) filter (where o.kind = 'unavailable'),
         array_agg(o.id) filter (where o.id is not null),
         jsonb_object_agg(o.id::text, jsonb_build_object('attempt', o.attempt, 'kind', o.kind,
                                                         'message_id', o.message_id, 'error', o.error,
                                                         'min_delay', o.min_delay))
           filter (where o.id is not null)
  into v_sent, v_throttled, v_unavailable, v_ids, v_by_id
  from jsonb_to_recordset(p_outcomes)
    as o(id uuid, attempt integer, kind text, message_id text, error text, min_delay integer);

  -- The account first (claims lock it first too): AIMD and the breaker.
  update private.ses_accounts a
  set rate = case
        when v_throttled > 0 and (a.throttled_at is null or a.throttled_at < v_now - interval '1 second')
          then greatest(1, a.rate / 2)
        when v_throttled = 0 and v_sent > 0 and (a.raised_at is null or a.raised_at < v_now - interval '1 second')
          then least(a.configured_rate, coalesce(a.max_send_rate, a.configured_rate),
                     a.rate + greatest(1, least(a.configured_rate, coalesce(a.max_send_rate, a.configured_rate)) / 10))
        else a.rate
      end,
      throttled_at = case when v_throttled > 0
                            and (a.throttled_at is null or a.throttled_at < v_now - interval '1 second')
                          then v_now else a.throttled_at end,
      raised_at = case when v_throttled = 0 and v_sent > 0
                         and (a.raised_at is null or a.raised_at < v_now - interval '1 second')
                       then v_now else a.raised_at end,
      -- SES drops throttled sends: leave it a second before the next slot.
      next_slot_at = case when v_throttled > 0 then greatest(a.next_slot_at, v_now + interval '1 second')
                          else a.next_slot_at end,
      throttles = a.throttles + v_throttled,
      error_streak = case when v_sent > 0 then 0 else a.error_streak + v_unavailable end,
      paused_until = case
        when v_sent = 0 and v_unavailable > 0 and a.error_streak + v_unavailable >= 5
          then v_now + make_interval(secs => least(300, 15 * power(2, least(5, (a.error_streak + v_unavailable) / 5 - 1))))
        else a.paused_until
      end,
      updated_at = now()
  where a.account = p_account
  returning a.* into v_account;

  if v_ids is null then
    return jsonb_build_object('sent', 0, 'retrying', 0, 'failed', 0, 'cancelled', 0);
  end if;
  with answered as materialized (
    -- The batch's rows, through the primary key, each with its own outcome looked up by its id
    -- (a one-row lookup, not a join over the batch).
    select r.id, o.attempt, o.kind, o.message_id, o.error, o.min_delay
    from public.campaign_recipients r
    cross join lateral jsonb_to_record(v_by_id -> r.id::text)
      as o(attempt integer, kind text, message_id text, error text, min_delay integer)
    where r.id = any (v_ids) and r.status = 'sending' and r.attempts = o.attempt
  ),
  recorded as (
    update public.campaign_recipients r
    set status = case
          when o.kind = 'sent' then 'sent'
          when c.status not in ('sending', 'paused') then 'cancelled'
          when o.kind in ('throttled', 'released') then 'queued'
          when o.kind = 'unavailable' and v_account.error_streak >= 5 then 'queued'
          when o.kind in ('retry', 'unavailable') and r.attempts < 8 then 'queued'
          else 'failed'
        end,
        attempts = case
          when o.kind = 'sent' or c.status not in ('sending', 'paused') then r.attempts
          when o.kind in ('throttled', 'released') then r.attempts - 1
          when o.kind = 'unavailable' and v_account.error_streak >= 5 then r.attempts - 1
          else r.attempts
        end,
        next_attempt_at = case
          when o.kind = 'sent' or c.status not in ('sending', 'paused') then r.next_attempt_at
          when o.kind = 'released' then now()
          when o.kind = 'throttled' then now() + make_interval(secs => 1 + random() * 2)
          when o.kind = 'unavailable' and v_account.error_streak >= 5
            then greatest(v_account.paused_until, now()) + make_interval(secs => random() * 5)
          else now() + make_interval(secs => greatest(
                 1 + random() * least(3600, 10 * power(2, r.attempts - 1)), coalesce(o.min_delay, 0)))
        end,
        sent_at = case when o.kind = 'sent' then now() else r.sent_at end,
        ses_message_id = case when o.kind = 'sent' then o.message_id else r.ses_message_id end,
        error = case when o.kind = 'sent' then null
                     when o.kind = 'released' then r.error
                     else left(o.error, 1000) end,
        locked_until = null
    from answered o, public.campaigns c
    -- Checked again as the row is updated: a row changed meanwhile (its lease ran out and
    -- another worker claimed it) is not this outcome's.
    where r.id = o.id and r.status = 'sending' and r.attempts = o.attempt and c.id = r.campaign_id
    returning r.status
  )
  select jsonb_build_object(
           'sent', count(*) filter (where status = 'sent'),
           'retrying', count(*) filter (where status = 'queued'),
           'failed', count(*) filter (where status = 'failed'),
           'cancelled', count(*) filter (where status = 'cancelled'))
  into v_counts
  from recorded;
  return v_counts;
end
$$;

revoke all on function private.record_email_outcomes(jsonb, text) from public, anon, authenticated;

grant execute on function private.record_email_outcomes(jsonb, text) to service_role;

-- One round of a send worker: forgets the tenants SES answered it no longer has (p_gone_tenants:
-- the next send makes them again), records the outcomes (private.record_email_outcomes), and
-- claims up to p_limit rows (private.claim_email_rows; none when p_limit is 0). Answers
--   {"counts": {"sent", "retrying", "failed", "cancelled"},
--    "rows": [[recipient_id, campaign_id, variant_id, contact_id, email, attempts, contact, send_in], ...],
--    "variants": {variant_id: [subject, html, text]},
--    "campaigns": {campaign_id: {"workspace_id", "from_name", "from_email", "reply_to",
--                                "reply_domains": [...], "tenant": {...} or null}},
--    "wait": seconds or null}
-- where "tenant" (only when p_tenants) is what private.send_tenants knows of the campaign's
-- tenant, and "wait", when fewer rows than asked were claimed, is private.email_send_wait's
-- answer (null: nothing is left to send; not asked otherwise).
create function private.send_round(
  p_outcomes jsonb, p_limit integer, p_lease_seconds integer, p_per_second double precision,
  p_account text, p_tenants boolean, p_gone_tenants text[]
)
returns json
language plpgsql
security definer
set search_path = ''
set jit = off
as $$
declare
  v_counts jsonb;
  v_rows json;
  v_variants json;
  v_campaigns json;
  v_claimed integer;
  v_wait double precision;
begin
  if cardinality(p_gone_tenants) > 0 then
    delete from private.ses_tenants t where t.account = p_account and t.tenant_name = any (p_gone_tenants);
  end if;
  v_counts := private.record_email_outcomes(coalesce(p_outcomes, '[]'::jsonb), p_account);
  if coalesce(p_limit, 0) <= 0 then
    return json_build_object('counts', v_counts, 'rows', '[]'::json, 'variants', '{}'::json,
                             'campaigns', '{}'::json, 'wait', null);
  end if;
  -- Built as json (text), not jsonb: the answer is only ever sent out.
  with claimed as materialized (
    select * from private.claim_email_rows(p_limit, p_lease_seconds, p_per_second, p_account)
  ),
  sending as (
    select distinct k.campaign_id, k.workspace_id from claimed k
  ),
  domains as (
    select d.workspace_id, json_agg(d.domain) as domains
    from private.inbox_reply_domains(array(select distinct s.workspace_id from sending s)) d
    group by d.workspace_id
  ),
  tenants as (
    select t.campaign_id, to_json(t) as tenant
    from private.send_tenants(p_account, array(select s.campaign_id from sending s)) t
    where p_tenants
  )
  select (select json_agg(json_build_array(k.recipient_id, k.campaign_id, k.variant_id, k.contact_id,
                                           k.email, k.attempts, k.contact, k.send_in))
          from claimed k),
         (select json_object_agg(v.id, json_build_array(v.subject, v.html, v.text))
          from public.campaign_variants v
          where v.id in (select k.variant_id from claimed k)),
         (select json_object_agg(c.id, json_build_object(
                   'workspace_id', c.workspace_id, 'from_name', c.from_name,
                   'from_email', c.from_email, 'reply_to', c.reply_to,
                   'reply_domains', coalesce(d.domains, '[]'::json), 'tenant', t.tenant))
          from public.campaigns c
          left join domains d on d.workspace_id = c.workspace_id
          left join tenants t on t.campaign_id = c.id
          where c.id in (select s.campaign_id from sending s)),
         (select count(*) from claimed)
  into v_rows, v_variants, v_campaigns, v_claimed;
  if v_claimed < p_limit then
    v_wait := private.email_send_wait(p_per_second, p_account);
  end if;
  return json_build_object('counts', v_counts, 'rows', coalesce(v_rows, '[]'::json),
                           'variants', coalesce(v_variants, '{}'::json),
                           'campaigns', coalesce(v_campaigns, '{}'::json), 'wait', v_wait);
end
$$;

revoke all on function private.send_round(jsonb, integer, integer, double precision, text, boolean, text[]) from public, anon, authenticated;

grant execute on function private.send_round(jsonb, integer, integer, double precision, text, boolean, text[]) to service_role;
