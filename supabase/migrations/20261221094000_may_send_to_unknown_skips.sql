-- The claim's rules sent a row when one of its tests could not be answered (NULL): a contact
-- whose address was removed after the audience was frozen (contacts.email null) was still
-- sent to the frozen address, as were rows whose test compared a missing value. A test that
-- cannot be answered now skips the row like one that fails.

-- As in 20261221093000_sender_warmup.sql (the claim's rules: address unchanged, consent, not
-- unsubscribed or erased, suppressed nowhere; a warming identity's day cap and provider shares,
-- most engaged first), and: a row is mailable only when every test holds (unknown is not).
create or replace function private.may_send_to(p_recipients uuid[])
returns table (recipient_id uuid, verdict text, reason text, hold_until timestamptz)
language sql
stable
security definer
set search_path = ''
as $$
  with judged as (
    select r.id, r.next_attempt_at, r.contact_id, c.sender_identity_id,
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
  tiered as (
    select j.id, j.sender_identity_id, j.provider, private.engagement_tier(j.contact_id) as tier,
           j.next_attempt_at
    from judged j
    where j.mailable and j.warming
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
           w.id is not null and not w.within_share as provider_only
    from judged j
    left join placed w on w.id = j.id
  )
  select v.id,
         case when not v.mailable then 'skip' when v.over_cap then 'hold' else 'send' end,
         case
           when not v.mailable then 'no longer mailable (unsubscribed, suppressed or without consent)'
           when v.over_cap and v.provider_only then
             format('warm-up: today''s share for %s (half of the daily cap of %s) is used; waiting for tomorrow',
                    initcap(v.provider), v.cap)
           when v.over_cap then format('warm-up: today''s cap of %s is used; waiting for tomorrow', v.cap)
         end,
         case when v.mailable and v.over_cap then
           ((now() at time zone 'UTC')::date + 1)::timestamp at time zone 'UTC' + v.tier * interval '1 second'
         end
  from verdicts v
$$;

revoke all on function private.may_send_to(uuid[]) from public, anon, authenticated;

grant execute on function private.may_send_to(uuid[]) to service_role;
