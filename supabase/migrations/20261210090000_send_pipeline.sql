-- The send pipeline, as fast as SES lets it be (issue 18).
--
-- One pacing state per SES account (private.ses_accounts), shared by every worker and tick: the
-- account's limits as GetAccount reported them, the rate in force (additive increase while SES
-- accepts, halved when it throttles), and the next free send slot. A claim hands out rows with
-- the send slot each one may use (GCRA: slots spaced 1/rate apart, never more than a second
-- ahead), so workers claiming at once still never exceed the rate together, and one claim can
-- carry a whole second of sends. Outcomes come back a batch at a time
-- (private.record_email_outcomes: one statement for the rows), in the same transaction as the
-- next claim, so a worker uses one connection per batch instead of one per recipient.
--
-- Throttling never costs a recipient an attempt (its claim is given back, and the account slows
-- down); neither does a claim the worker gave back unsent. SES being unavailable (5xx,
-- connection failures) counts an attempt, until five in a row open the account's breaker: then
-- nothing is claimed until the pause ends (15 s, doubling to 5 minutes), after which one row at
-- a time probes SES until a send succeeds, and the failures that opened it are given back too.
--
-- Claims start from the sending campaigns (a paused campaign's million queued rows are never
-- walked past), through a per-campaign due index.

-- the SES account -------------------------------------------------------------------------------

create table private.ses_accounts (
  account text primary key check (char_length(account) between 1 and 200),
  -- SES_MAX_SEND_RATE, as the last claim passed it: a ceiling of our own below SES's.
  configured_rate double precision not null check (configured_rate > 0),
  -- GetAccount's SendQuota (Max24HourSend -1: unlimited), and SendingEnabled/EnforcementStatus.
  max_send_rate double precision check (max_send_rate > 0),
  max_24_hour_send double precision,
  sent_last_24_hours double precision,
  sending_enabled boolean,
  enforcement_status text check (char_length(enforcement_status) <= 50),
  production_access boolean,
  checked_at timestamptz,
  -- Sends claimed since GetAccount was last read: SES's own count lags behind ours.
  claimed_since_check integer not null default 0,
  -- The rate in force: between 1 and the ceiling, halved at most once a second on throttling.
  rate double precision not null check (rate > 0),
  next_slot_at timestamptz not null default now(),
  throttled_at timestamptz,
  raised_at timestamptz,
  throttles bigint not null default 0,
  -- Consecutive unavailable answers without a successful send, and the breaker's pause.
  error_streak integer not null default 0,
  paused_until timestamptz,
  updated_at timestamptz not null default now()
);

revoke all on private.ses_accounts from public, anon, authenticated;

grant select on private.ses_accounts to service_role;

comment on table private.ses_accounts is
  'One row per SES account: its quota from GetAccount, the send rate in force (AIMD), the next free send slot shared by every worker, and the unavailability breaker.';

-- The old single bucket is replaced by the account's slots.
drop table private.email_send_rate;

-- the ledger's indexes ----------------------------------------------------------------------------

-- Claims walk each sending campaign's due rows in order.
create index campaign_recipients_campaign_due_idx on public.campaign_recipients (campaign_id, next_attempt_at)
  where status in ('queued', 'sending');

drop index public.campaign_recipients_due_idx;

-- the account's limits --------------------------------------------------------------------------

-- What GetAccount answered (the edge reads it at most every few minutes): the quota, whether
-- sending is enabled, and SES's enforcement status. The rate in force never exceeds the new
-- ceiling.
create function private.save_ses_account(p_account text, p_configured_rate double precision, p_quota jsonb)
returns void
language sql
security definer
set search_path = ''
as $$
  insert into private.ses_accounts as a (
    account, configured_rate, rate, max_send_rate, max_24_hour_send, sent_last_24_hours,
    sending_enabled, enforcement_status, production_access, checked_at
  )
  values (
    p_account, p_configured_rate,
    least(p_configured_rate, coalesce(nullif((p_quota ->> 'MaxSendRate')::double precision, 0), p_configured_rate)),
    nullif((p_quota ->> 'MaxSendRate')::double precision, 0),
    (p_quota ->> 'Max24HourSend')::double precision,
    (p_quota ->> 'SentLast24Hours')::double precision,
    (p_quota ->> 'SendingEnabled')::boolean,
    left(p_quota ->> 'EnforcementStatus', 50),
    (p_quota ->> 'ProductionAccessEnabled')::boolean,
    now()
  )
  on conflict (account) do update
  set configured_rate = excluded.configured_rate,
      max_send_rate = excluded.max_send_rate,
      max_24_hour_send = excluded.max_24_hour_send,
      sent_last_24_hours = excluded.sent_last_24_hours,
      sending_enabled = excluded.sending_enabled,
      enforcement_status = excluded.enforcement_status,
      production_access = excluded.production_access,
      checked_at = excluded.checked_at,
      claimed_since_check = 0,
      rate = least(a.rate, excluded.configured_rate, coalesce(excluded.max_send_rate, excluded.configured_rate)),
      updated_at = now()
$$;

revoke all on function private.save_ses_account(text, double precision, jsonb) from public, anon, authenticated;

grant execute on function private.save_ses_account(text, double precision, jsonb) to service_role;

-- Whether GetAccount should be read again (never read, or over five minutes ago).
create function private.ses_account_stale(p_account text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((select a.checked_at < now() - interval '5 minutes' or a.checked_at is null
                   from private.ses_accounts a where a.account = p_account), true)
$$;

revoke all on function private.ses_account_stale(text) from public, anon, authenticated;

grant execute on function private.ses_account_stale(text) to service_role;

-- claiming --------------------------------------------------------------------------------------

drop function private.claim_email_batch(integer, integer, double precision);

-- Claims up to p_limit due recipients of sending campaigns, as many as the account's send slots
-- for the next second allow; `send_in` is the seconds from now at which each row's slot opens.
-- Nothing is claimed while SES has sending disabled, while the breaker's pause lasts, or past
-- the day's quota; after a pause one row at a time probes SES. A campaign whose sender identity
-- lost its verification (or was removed) waits instead of having every remaining recipient
-- refused by SES. Recipients who may no longer be mailed (unsubscribed, erased, consent
-- withdrawn through the workspace's rule, suppressed since the campaign started, for the
-- workspace or the platform) are marked skipped instead of being handed out.
create function private.claim_email_batch(
  p_limit integer, p_lease_seconds integer, p_per_second double precision, p_account text default 'default'
)
returns table (
  recipient_id uuid, campaign_id uuid, workspace_id uuid, contact_id uuid, email text,
  attempts integer, subject text, html text, text_body text, from_name text, from_email text,
  reply_to text, contact jsonb, send_in double precision
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_account private.ses_accounts;
  v_now timestamptz := clock_timestamp();
  v_rate double precision;
  v_start timestamptz;
  v_take integer;
  v_claimed integer;
begin
  insert into private.ses_accounts as a (account, configured_rate, rate)
  values (p_account, p_per_second, p_per_second)
  on conflict (account) do update
  set configured_rate = excluded.configured_rate,
      rate = least(a.rate, excluded.configured_rate)
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

  return query
  with picked as (
    select r.id,
           case
             when not (ct.email = r.email
                       and private.may_market(ps.marketing_consent, ct.consent_state, ct.attributes)
                       and ct.unsubscribed_at is null and ct.erased_at is null
                       and not exists (select 1 from public.email_suppressions s
                                       where s.workspace_id = r.workspace_id and s.email = r.email)
                       and not exists (select 1 from private.platform_suppressions p
                                       where p.email_hash = sha256(convert_to(lower(r.email), 'UTF8'))))
               then 'skip'
             when r.attempts >= 8 then 'give_up'
             else 'send'
           end as verdict
    from public.campaigns c
    join public.sender_identities si on si.id = c.sender_identity_id and si.verified
    cross join lateral (
      select d.* from public.campaign_recipients d
      where d.campaign_id = c.id
        and d.status in ('queued', 'sending')
        and d.next_attempt_at <= now()
        and (d.locked_until is null or d.locked_until < now())
      order by d.next_attempt_at
      limit v_take
      for update of d skip locked
    ) r
    join public.contacts ct on ct.id = r.contact_id
    left join public.workspace_privacy_settings ps on ps.workspace_id = r.workspace_id
    where c.status = 'sending'
    order by r.next_attempt_at
    limit v_take
  ),
  skipped as (
    update public.campaign_recipients r
    set status = 'skipped', locked_until = null,
        error = 'no longer mailable (unsubscribed, suppressed or without consent)'
    from picked k
    where k.id = r.id and k.verdict = 'skip'
  ),
  given_up as (
    -- Claimed eight times without an outcome: the worker died on it each time.
    update public.campaign_recipients r
    set status = 'failed', locked_until = null,
        error = 'gave up after 8 attempts that ended without an outcome'
    from picked k
    where k.id = r.id and k.verdict = 'give_up'
  ),
  claimed as (
    update public.campaign_recipients r
    set status = 'sending', attempts = r.attempts + 1,
        locked_until = now() + make_interval(secs => p_lease_seconds),
        -- Due again when the lease runs out, so the due index alone says when.
        next_attempt_at = now() + make_interval(secs => p_lease_seconds)
    from picked k
    where k.id = r.id and k.verdict = 'send'
    returning r.*
  )
  select cl.id, cl.campaign_id, cl.workspace_id, cl.contact_id, cl.email, cl.attempts,
         v.subject, v.html, v.text, c.from_name, c.from_email, c.reply_to,
         jsonb_build_object('email', ct.email, 'first_name', ct.first_name,
                            'last_name', ct.last_name, 'phone', ct.phone,
                            'attributes', ct.attributes),
         extract(epoch from v_start - v_now)::double precision
           + (row_number() over (order by cl.next_attempt_at, cl.id) - 1) / v_rate
  from claimed cl
  join public.campaign_variants v on v.id = cl.variant_id
  join public.campaigns c on c.id = cl.campaign_id
  join public.contacts ct on ct.id = cl.contact_id;
  get diagnostics v_claimed = row_count;
  update private.ses_accounts a
  set next_slot_at = v_start + make_interval(secs => v_claimed / v_rate),
      claimed_since_check = a.claimed_since_check + v_claimed,
      updated_at = now()
  where a.account = p_account;
end
$$;

revoke all on function private.claim_email_batch(integer, integer, double precision, text) from public, anon, authenticated;

grant execute on function private.claim_email_batch(integer, integer, double precision, text) to service_role;

drop function private.email_send_wait(double precision);

-- How long a worker should wait before claiming again: null when no sending campaign has a row
-- left to send, 0 when something is due now, else the seconds until the next row is due (a
-- retry's backoff, or a lease running out: a claim makes a row due again at its lease's end),
-- the account's next send slot or the end of the breaker's pause, whichever is last.
create function private.email_send_wait(p_per_second double precision, p_account text default 'default')
returns double precision
language sql
stable
security definer
set search_path = ''
as $$
  with next_due as (
    select min(n.at) as at
    from public.campaigns c
    join public.sender_identities si on si.id = c.sender_identity_id and si.verified
    cross join lateral (
      select r.next_attempt_at as at from public.campaign_recipients r
      where r.campaign_id = c.id and r.status in ('queued', 'sending')
      order by r.next_attempt_at
      limit 1
    ) n
    where c.status = 'sending'
  )
  select greatest(0,
                  extract(epoch from d.at - clock_timestamp()),
                  extract(epoch from a.paused_until - clock_timestamp()),
                  extract(epoch from a.next_slot_at - clock_timestamp()) - greatest(1, 1 / r.rate) + 1 / r.rate
                 )::double precision
  from next_due d
  left join private.ses_accounts a on a.account = p_account
  cross join lateral (
    select least(a.rate, p_per_second, coalesce(a.max_send_rate, p_per_second)) as rate
  ) r
  where d.at is not null
$$;

revoke all on function private.email_send_wait(double precision, text) from public, anon, authenticated;

grant execute on function private.email_send_wait(double precision, text) to service_role;

-- outcomes ----------------------------------------------------------------------------------------

-- Records a batch of outcomes, each `{"id", "attempt", "kind", "message_id"?, "error"?,
-- "min_delay"?}`, in one statement; an outcome counts only for the claim it answers (the
-- attempt number), so a worker whose lease ran out cannot overwrite a newer claim's outcome.
-- Kinds: `sent`; `failed` (permanent); `retry` (transient, or a timeout after SES may have
-- accepted: min_delay long enough for SES's event to mark it sent first); `throttled` (SES's
-- rate: back at once without an attempt, and the account slows down); `unavailable` (SES
-- failing: counts an attempt unless the breaker opens); `released` (the worker gave the claim
-- back unsent). A row whose campaign ended meanwhile is cancelled instead of requeued.
-- Answers the rows' new states counted: {"sent", "retrying", "failed", "cancelled"}.
create function private.record_email_outcomes(p_outcomes jsonb, p_account text default 'default')
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_sent integer;
  v_throttled integer;
  v_unavailable integer;
  v_account private.ses_accounts;
  v_now timestamptz := clock_timestamp();
  v_counts jsonb;
begin
  if jsonb_typeof(p_outcomes) is distinct from 'array' or jsonb_array_length(p_outcomes) = 0 then
    return jsonb_build_object('sent', 0, 'retrying', 0, 'failed', 0, 'cancelled', 0);
  end if;
  select count(*) filter (where o.kind = 'sent'),
         count(*) filter (where o.kind = 'throttled'),
         count(*) filter (where o.kind = 'unavailable')
  into v_sent, v_throttled, v_unavailable
  from jsonb_to_recordset(p_outcomes) as o(kind text);

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

  with outcome as (
    select o.* from jsonb_to_recordset(p_outcomes)
      as o(id uuid, attempt integer, kind text, message_id text, error text, min_delay integer)
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
    from outcome o, public.campaigns c
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

-- the register of personal data --------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values
  ('private', 'ses_accounts', 'account', 'none', 'not_personal', 'the SES account''s name in our settings'),
  ('private', 'ses_accounts', 'enforcement_status', 'none', 'not_personal', 'SES''s word for the account');
