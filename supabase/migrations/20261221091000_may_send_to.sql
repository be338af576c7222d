-- Who may be sent a claimed mail is decided in one place (issue 18): private.may_send_to takes
-- the recipient rows a claim has locked, all at once, and answers a verdict for each, so later
-- rules (warm-up caps, frequency caps, quiet hours, holds) redefine this function alone and
-- never the claim. The verdicts:
--   send  the row is sent now;
--   skip  the row ends `skipped` with the reason (final);
--   hold  the row goes back to the queue, unclaimed and costing no attempt, due at hold_until.
-- Today's rules are the claim's, unchanged: the recipient's address is still the contact's, the
-- workspace's consent rule lets it be marketed to (private.may_market), the contact is neither
-- unsubscribed nor erased, and the address is on neither the workspace's suppression list nor
-- the platform's. Campaign-wide stops (the platform brake, guardrail pauses, an unverified
-- sender) stay in the claim: they leave rows unclaimed rather than judged.

-- One row per recipient given (the claim relies on it), set-based: one call per claim.
create function private.may_send_to(p_recipients uuid[])
returns table (recipient_id uuid, verdict text, reason text, hold_until timestamptz)
language sql
stable
security definer
set search_path = ''
as $$
  select r.id,
         case when m.mailable then 'send' else 'skip' end,
         case when not m.mailable then 'no longer mailable (unsubscribed, suppressed or without consent)' end,
         null::timestamptz
  from public.campaign_recipients r
  join public.contacts ct on ct.id = r.contact_id
  left join public.workspace_privacy_settings ps on ps.workspace_id = r.workspace_id
  cross join lateral (
    -- As the claim had it: only a test that is false skips (an unknown one sends).
    select (ct.email = r.email
            and private.may_market(ps.marketing_consent, ct.consent_state, ct.attributes)
            and ct.unsubscribed_at is null and ct.erased_at is null
            and not exists (select 1 from public.email_suppressions s
                            where s.workspace_id = r.workspace_id and s.email = r.email)
            and not exists (select 1 from private.platform_suppressions p
                            where p.email_hash = sha256(convert_to(lower(r.email), 'UTF8'))))
           is not false as mailable
  ) m
  where r.id = any (p_recipients)
$$;

revoke all on function private.may_send_to(uuid[]) from public, anon, authenticated;

grant execute on function private.may_send_to(uuid[]) to service_role;

-- As in 20261214091000_flow_send_priority.sql (the guardrails' claim, a flow email's event
-- handed to rendering, sends taken by priority then due time), and: the rows picked are judged
-- by private.may_send_to in one call; a `hold` verdict puts the row back in the queue until its
-- time, unclaimed, with the reason in `error`.
create or replace function private.claim_email_batch(
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

  return query
  with candidates as (
    select r.id, r.attempts
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
    left join public.flow_steps fs on fs.id = c.flow_step_id
    left join public.flows f on f.id = fs.flow_id
    where c.status = 'sending'
    order by private.send_priority(f.transactional, f.send_priority), r.next_attempt_at
    limit v_take
  ),
  picked as (
    select k.id,
           case
             when m.verdict = 'skip' then 'skip'
             when k.attempts >= 8 then 'give_up'
             when m.verdict = 'hold' then 'hold'
             else 'send'
           end as verdict,
           m.reason, m.hold_until
    from candidates k
    join private.may_send_to(array(select x.id from candidates x)) m on m.recipient_id = k.id
  ),
  skipped as (
    update public.campaign_recipients r
    set status = 'skipped', locked_until = null, error = k.reason
    from picked k
    where k.id = r.id and k.verdict = 'skip'
  ),
  held as (
    update public.campaign_recipients r
    set status = 'queued', locked_until = null, next_attempt_at = k.hold_until, error = k.reason
    from picked k
    where k.id = r.id and k.verdict = 'hold'
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
                            'attributes', ct.attributes)
           || case when cl.merge_data is not null then jsonb_build_object('event', cl.merge_data) else '{}'::jsonb end,
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
