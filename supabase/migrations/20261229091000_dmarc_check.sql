-- DMARC and SPF alignment as pre-campaign checks (issue 18). SES does not report DMARC, so the edge looks up the
-- sender identity's domain in DNS (`_dmarc.<domain>`, walking up to the nearest parent with a
-- record) when the identity is registered or refreshed, and stores what it found on the
-- identity. campaign_checks shows the policy that applies to the campaign's From domain
-- (none, quarantine, reject; the parent's sp= for a subdomain), or that there is none, and
-- whether DKIM is aligned with the From domain as the record asks (adkim=s: the same domain;
-- relaxed: the same organisation). Missing DMARC warns (Gmail and Yahoo require at least
-- p=none from bulk senders); a record whose alignment neither DKIM nor SPF can meet fails the
-- check and the campaign may not start from the checks' point of view. SPF aligns only through
-- a custom MAIL FROM domain (GetEmailIdentity's MailFromAttributes, stored on the identity with
-- the DKIM status): SES's own MAIL FROM (amazonses.com) passes SPF for itself, not the From
-- domain, so an `spf` check warns without one.

alter table public.sender_identities
  add column dmarc jsonb check (dmarc is null or jsonb_typeof(dmarc) = 'object'),
  add column dmarc_checked_at timestamptz,
  add column mail_from_domain text check (char_length(mail_from_domain) <= 253),
  add column mail_from_status text check (char_length(mail_from_status) <= 50);

comment on column public.sender_identities.mail_from_domain is
  'The custom MAIL FROM domain SES reports for the identity (null: SES''s own, not aligned with the From domain); mail_from_status is SES''s status of it.';

comment on column public.sender_identities.dmarc is
  'What DNS said of the identity''s DMARC when last looked up: {status: found|missing|unknown, domain, policy, subdomain_policy, adkim, aspf, record, error}.';

-- What the edge found for the identity's alignment: DNS's DMARC answer and SES's MAIL FROM
-- (service role: members may not write them).
create function private.save_sender_alignment(
  p_identity_id uuid, p_dmarc jsonb, p_mail_from_domain text, p_mail_from_status text
)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.sender_identities s
  set dmarc = p_dmarc, dmarc_checked_at = now(),
      mail_from_domain = lower(p_mail_from_domain), mail_from_status = p_mail_from_status
  where s.id = p_identity_id
$$;

revoke all on function private.save_sender_alignment(uuid, jsonb, text, text) from public, anon, authenticated;

grant execute on function private.save_sender_alignment(uuid, jsonb, text, text) to service_role;

-- Whether two domains are aligned: the same (strict), or (relaxed) one under the other or both
-- under p_base, the sender identity's domain (their organisation, without a public suffix list).
create function private.domains_aligned(p_a text, p_b text, p_base text, p_strict boolean)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_a = p_b
      or (not p_strict
          and (p_a like '%.' || p_b or p_b like '%.' || p_a
               or ((p_a = p_base or p_a like '%.' || p_base)
                   and (p_b = p_base or p_b like '%.' || p_base))))
$$;

revoke all on function private.domains_aligned(text, text, text, boolean) from public, anon, authenticated;

-- The From domain of an address (or the domain itself), lower case.
create function private.from_domain(p_from_email text)
returns text
language sql
immutable
set search_path = ''
as $$
  select lower(case when p_from_email like '%@%' then split_part(p_from_email, '@', 2) else p_from_email end)
$$;

revoke all on function private.from_domain(text) from public, anon, authenticated;

-- The spf check: SPF aligned with the From domain through the identity's custom MAIL FROM
-- domain (SES reports SUCCESS), else a warning (DMARC then rests on DKIM alone).
create function private.spf_check(p_identity public.sender_identities, p_from_email text, p_strict boolean)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'check', 'spf',
    'status', case when s.aligned then 'pass' else 'warn' end,
    'detail', case
      when s.aligned then format('SPF aligned with %s through the custom MAIL FROM %s', s.from_domain, p_identity.mail_from_domain)
      when p_identity.mail_from_domain is null then format('SPF passes for SES''s own MAIL FROM (amazonses.com), not aligned with %s: DMARC rests on DKIM alone (set a custom MAIL FROM domain in SES)', s.from_domain)
      when p_identity.mail_from_status is distinct from 'SUCCESS' then format('The custom MAIL FROM %s is %s in SES: SPF is not aligned with %s yet', p_identity.mail_from_domain, coalesce(p_identity.mail_from_status, 'unknown'), s.from_domain)
      else format('The custom MAIL FROM %s is not aligned with %s%s', p_identity.mail_from_domain, s.from_domain, case when p_strict then ' (aspf=s asks for the same domain)' else '' end)
    end,
    'aligned', s.aligned)
  from (
    select private.from_domain(p_from_email) as from_domain,
           coalesce(p_identity.mail_from_status = 'SUCCESS'
                    and private.domains_aligned(p_identity.mail_from_domain, private.from_domain(p_from_email),
                                                private.from_domain(p_identity.identity), p_strict), false) as aligned
  ) s
$$;

revoke all on function private.spf_check(public.sender_identities, text, boolean) from public, anon, authenticated;

-- The dmarc check of a campaign sending as p_from_email from p_identity (DKIM status p_dkim):
-- {check, status: pass|warn|fail, detail, domain, policy, alignment: aligned|unaligned|unknown}.
create function private.dmarc_check(p_identity public.sender_identities, p_from_email text, p_dkim text)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  with sender as (
    select private.from_domain(p_from_email) as from_domain, p_identity.dmarc as d
  ),
  judged as (
    select s.from_domain, s.d,
           case when s.from_domain = s.d ->> 'domain' then s.d ->> 'policy'
                else coalesce(s.d ->> 'subdomain_policy', s.d ->> 'policy') end as policy,
           -- Easy DKIM signs as the domain identity, or as the From domain's own.
           case when p_identity.kind = 'domain' then p_identity.identity else s.from_domain end as dkim_domain
    from sender s
  ),
  aligned as (
    select j.*,
           case
             when j.d ->> 'status' is distinct from 'found' then 'unknown'
             when (p_dkim = 'SUCCESS'
                   and private.domains_aligned(j.dkim_domain, j.from_domain,
                                               private.from_domain(p_identity.identity), j.d ->> 'adkim' = 's'))
               or (private.spf_check(p_identity, p_from_email, j.d ->> 'aspf' = 's') ->> 'aligned')::boolean
               then 'aligned'
             else 'unaligned'
           end as alignment
    from judged j
  )
  select jsonb_build_object(
    'check', 'dmarc',
    'status', case
      when a.d is null or a.d ->> 'status' <> 'found' then 'warn'
      when a.alignment = 'unaligned' then 'fail'
      else 'pass' end,
    'detail', case
      when a.d is null then format('DMARC of %s not looked up yet: refresh the sender identity', a.from_domain)
      when a.d ->> 'status' = 'unknown' then format('DMARC of %s could not be looked up (%s): refresh the sender identity', a.from_domain, a.d ->> 'error')
      when a.d ->> 'status' = 'missing' then format('No DMARC record for %s: publish at least p=none (Gmail and Yahoo require it)', a.from_domain)
      when a.alignment = 'unaligned' then format('DMARC p=%s (_dmarc.%s) but neither DKIM (d=%s, %s) nor SPF is aligned with the From domain %s%s',
        a.policy, a.d ->> 'domain', a.dkim_domain, coalesce(p_dkim, 'unknown'), a.from_domain,
        case when a.d ->> 'adkim' = 's' then ' (adkim=s asks for the same domain)' else '' end)
      else format('DMARC p=%s (_dmarc.%s), aligned with %s', a.policy, a.d ->> 'domain', a.from_domain)
    end,
    'domain', a.from_domain,
    'policy', case when a.d ->> 'status' = 'missing' then 'missing' else a.policy end,
    'alignment', a.alignment)
  from aligned a
$$;

revoke all on function private.dmarc_check(public.sender_identities, text, text) from public, anon, authenticated;

-- As in 20261219100000_import_address_flags.sql, and the dmarc check from DNS
-- (private.dmarc_check) instead of a standing warning, an spf check (private.spf_check); the
-- answer carries "dmarc": {domain,
-- policy: none|quarantine|reject|missing, alignment}, and a failed dmarc check (DKIM not
-- aligned as the record asks) makes "may_start" false.
create or replace function public.campaign_checks(p_campaign_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_identity public.sender_identities;
  v_rule jsonb;
  v_consent_rule text;
  v_sampled integer;
  v_never numeric;
  v_role numeric;
  v_soft numeric;
  v_sunset integer;
  v_flagged integer;
  v_dkim text;
  v_checks jsonb := '[]'::jsonb;
  v_dmarc jsonb;
begin
  select * into v_campaign from public.campaigns c where c.id = p_campaign_id;
  if v_campaign.id is null or v_campaign.workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'campaign_not_found', 'Campaign not found');
  end if;
  select s.rule into v_rule from public.segments s where s.id = v_campaign.segment_id;
  select s.marketing_consent into v_consent_rule
  from public.workspace_privacy_settings s where s.workspace_id = v_campaign.workspace_id;
  v_campaign.started_at := null;

  select count(*),
         avg(case when not exists (select 1 from public.campaign_recipients r
                                   where r.contact_id = a.id
                                     and (r.opened_at is not null or r.clicked_at is not null))
                   and not exists (select 1 from public.customer_facts f where f.contact_id = a.id)
              then 1 else 0 end),
         avg(case when private.is_role_address(a.email) then 1 else 0 end),
         avg(case when exists (select 1 from public.campaign_recipients r
                               where r.contact_id = a.id and r.bounce_type = 'Transient'
                                 and r.bounced_at > now() - interval '90 days')
              then 1 else 0 end)
  into v_sampled, v_never, v_role, v_soft
  from private.campaign_audience(v_campaign, v_rule, v_consent_rule, null, 10000) a;

  -- Contacts of the audience the sunset leaves out, in the same sample's reach.
  select count(*) into v_sunset
  from (
    select c.id from public.contacts c
    where c.workspace_id = v_campaign.workspace_id and c.email is not null
      and c.unsubscribed_at is null and c.erased_at is null
      and (cardinality(v_campaign.list_ids) = 0 or exists (
        select 1 from public.email_list_members m
        where m.contact_id = c.id and m.list_id = any (v_campaign.list_ids)))
      and not private.engaged_within(c.id, c.created_at,
            (select t.sunset_days from private.deliverability_thresholds(v_campaign.workspace_id) t))
    limit 10000
  ) s;

  -- Contacts of the lists left out as disposable or hopeless addresses.
  select count(*) into v_flagged
  from (
    select c.id from public.contacts c
    where c.workspace_id = v_campaign.workspace_id and c.email is not null
      and c.unsubscribed_at is null and c.erased_at is null
      and c.address_flag in ('disposable', 'invalid')
      and (cardinality(v_campaign.list_ids) = 0 or exists (
        select 1 from public.email_list_members m
        where m.contact_id = c.id and m.list_id = any (v_campaign.list_ids)))
    limit 10000
  ) f;

  select * into v_identity from public.sender_identities s where s.id = v_campaign.sender_identity_id;
  v_dkim := case when v_identity.id is null then null
                 else private.sender_dkim_status(v_identity, coalesce(v_campaign.from_email, v_identity.identity)) end;

  v_dmarc := private.dmarc_check(v_identity, coalesce(v_campaign.from_email, v_identity.identity), v_dkim);

  v_checks := jsonb_build_array(
    jsonb_build_object('check', 'sender_verified',
      'status', case when v_identity.verified then 'pass' else 'fail' end,
      'detail', case when v_identity.id is null then 'No sender identity'
                     when v_identity.verified then format('%s is verified in SES', v_identity.identity)
                     else format('%s is not verified in SES yet', v_identity.identity) end),
    jsonb_build_object('check', 'dkim_aligned',
      'status', case when v_dkim = 'SUCCESS' then 'pass' else 'fail' end,
      'detail', format('DKIM status %s for the From domain', coalesce(v_dkim, 'unknown'))),
    v_dmarc,
    private.spf_check(v_identity, coalesce(v_campaign.from_email, v_identity.identity), v_identity.dmarc ->> 'aspf' = 's') - 'aligned',
    jsonb_build_object('check', 'never_engaged',
      'status', case when coalesce(v_never, 0) > 0.5 then 'warn' else 'pass' end,
      'detail', format('%s%% of the audience never opened, clicked or ordered', round(100 * coalesce(v_never, 0), 1))),
    jsonb_build_object('check', 'role_addresses',
      'status', case when coalesce(v_role, 0) > 0.05 then 'warn' else 'pass' end,
      'detail', format('%s%% are role addresses (info@, noreply@, …)', round(100 * coalesce(v_role, 0), 1))),
    jsonb_build_object('check', 'soft_bounced',
      'status', case when coalesce(v_soft, 0) > 0.02 then 'warn' else 'pass' end,
      'detail', format('%s%% soft-bounced in the last 90 days', round(100 * coalesce(v_soft, 0), 1))),
    jsonb_build_object('check', 'sunset',
      'status', case when v_sunset > 0 then 'warn' else 'pass' end,
      'detail', format('%s contacts left out: no click or order within the sunset window', v_sunset)),
    jsonb_build_object('check', 'flagged_addresses',
      'status', case when v_flagged > 0 then 'warn' else 'pass' end,
      'detail', format('%s contacts left out: disposable or syntactically hopeless addresses', v_flagged))
  );
  return jsonb_build_object(
    'audience_sampled', v_sampled,
    'sunset_excluded', v_sunset,
    'flagged_excluded', v_flagged,
    'shares', jsonb_build_object('never_engaged', round(coalesce(v_never, 0), 4),
                                 'role_addresses', round(coalesce(v_role, 0), 4),
                                 'soft_bounced', round(coalesce(v_soft, 0), 4)),
    'checks', v_checks,
    'dmarc', v_dmarc - 'check' - 'status' - 'detail',
    'may_start', v_sampled > 0 and coalesce(v_identity.verified, false) and v_dkim = 'SUCCESS'
                 and v_dmarc ->> 'status' <> 'fail');
end
$$;

comment on function public.campaign_checks(uuid) is
  'Members: pre-send checks for a campaign: never-engaged, role and soft-bounced shares of its audience (a sample of up to 10,000), contacts left out by the sunset or as disposable or hopeless addresses, the sender''s verification and DKIM alignment, SPF alignment (custom MAIL FROM), and its DMARC policy and alignment from DNS.';
