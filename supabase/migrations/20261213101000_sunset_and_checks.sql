-- Sunset, DKIM alignment and pre-send checks (issue 18).
--
-- Sunset by default: a contact who has neither clicked a campaign nor ordered within the
-- workspace's sunset window (180 days unless its admins change it, 30 to 730) gets no more
-- marketing mail; opens do not count (Apple Mail Privacy Protection opens every message). A
-- contact created within the window is not sunset yet. Applied when a campaign's audience is
-- counted and frozen.
--
-- Alignment: a campaign goes out only from an identity whose domain signs with DKIM in SES
-- (dkim_status SUCCESS, as GetEmailIdentity reports it on registering or refreshing): for a
-- domain identity its own, for an address identity its own or a verified domain identity of
-- the workspace for its domain. Otherwise start, schedule and resume answer 409
-- sender_not_aligned (Gmail, Yahoo and Outlook require DKIM aligned with the From domain).
--
-- Pre-send checks: public.campaign_checks(campaign) answers, for a sample of up to 10,000 of
-- the audience the campaign would freeze now, the shares of never-engaged contacts (no click,
-- open or order ever), role addresses (info@, noreply@, …) and recently soft-bounced ones, how
-- many the sunset leaves out, and the sender's state, each as pass, warn or fail.

alter table public.deliverability_settings add column sunset_days integer not null default 180
  check (sunset_days between 30 and 730);

comment on column public.deliverability_settings.sunset_days is
  'Contacts with no click and no order in this many days get no marketing mail (opens do not count).';

grant insert (sunset_days), update (sunset_days) on public.deliverability_settings to authenticated;

-- The workspace's thresholds, its defaults filled in (now with the sunset window).
create or replace function private.deliverability_thresholds(p_workspace_id uuid)
returns public.deliverability_settings
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    (select s from public.deliverability_settings s where s.workspace_id = p_workspace_id),
    row(p_workspace_id, 0.02, 0.05, 0.0008, 0.001, 500, now(), 180)::public.deliverability_settings
  )
$$;

revoke all on function private.deliverability_thresholds(uuid) from public, anon, authenticated;

-- Whether a contact is inside the sunset window: created, clicked or ordered within it.
create function private.engaged_within(p_contact_id uuid, p_created_at timestamptz, p_days integer)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select p_created_at > now() - make_interval(days => p_days)
      or exists (select 1 from public.campaign_recipients r
                 where r.contact_id = p_contact_id
                   and r.last_clicked_at > now() - make_interval(days => p_days))
      or exists (select 1 from public.customer_facts f
                 where f.contact_id = p_contact_id
                   and f.last_order_at > now() - make_interval(days => p_days))
$$;

revoke all on function private.engaged_within(uuid, timestamptz, integer) from public, anon, authenticated;

-- As in 20261213100000_chunked_freeze.sql, and contacts past the workspace's sunset window are
-- left out (the window's start computed once per call, not per contact).
create or replace function private.campaign_audience(
  p_campaign public.campaigns, p_rule jsonb, p_consent_rule text, p_after uuid, p_limit integer
)
returns table (id uuid, email text)
language sql
stable
security definer
set search_path = ''
as $$
  select c.id, c.email
  from public.contacts c
  where c.workspace_id = p_campaign.workspace_id
    and c.id > coalesce(p_after, '00000000-0000-0000-0000-000000000000'::uuid)
    and c.created_at <= coalesce(p_campaign.started_at, now())
    and (cardinality(p_campaign.list_ids) = 0 or exists (
      select 1 from public.email_list_members m
      where m.contact_id = c.id and m.list_id = any (p_campaign.list_ids)
        and m.added_at <= coalesce(p_campaign.started_at, now())))
    and (p_rule is null or c.id in (select private.segment_contact_ids(p_campaign.workspace_id, p_rule)))
    and c.email is not null
    and private.may_market(p_consent_rule, c.consent_state, c.attributes)
    and c.unsubscribed_at is null
    and c.erased_at is null
    and not exists (select 1 from public.email_suppressions s
                    where s.workspace_id = c.workspace_id and s.email = c.email)
    and not exists (select 1 from private.platform_suppressions p
                    where p.email_hash = sha256(convert_to(lower(c.email), 'UTF8')))
    and (c.created_at > (select now() - make_interval(days => t.sunset_days)
                         from private.deliverability_thresholds(p_campaign.workspace_id) t)
         or exists (select 1 from public.campaign_recipients r
                    where r.contact_id = c.id
                      and r.last_clicked_at > (select now() - make_interval(days => t.sunset_days)
                                               from private.deliverability_thresholds(p_campaign.workspace_id) t))
         or exists (select 1 from public.customer_facts f
                    where f.contact_id = c.id
                      and f.last_order_at > (select now() - make_interval(days => t.sunset_days)
                                             from private.deliverability_thresholds(p_campaign.workspace_id) t)))
  order by c.id
  limit p_limit
$$;

revoke all on function private.campaign_audience(public.campaigns, jsonb, text, uuid, integer) from public, anon, authenticated;

-- The identity's DKIM state for the campaign's From domain: its own when SUCCESS, else a
-- verified domain identity of the workspace for that domain.
create function private.sender_dkim_status(p_identity public.sender_identities, p_from_email text)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select case
    when p_identity.dkim_status = 'SUCCESS' then 'SUCCESS'
    else coalesce((
      select d.dkim_status from public.sender_identities d
      where d.workspace_id = p_identity.workspace_id and d.kind = 'domain' and d.verified
        and d.identity = split_part(p_from_email, '@', 2)
      order by d.dkim_status = 'SUCCESS' desc
      limit 1
    ), p_identity.dkim_status, 'NOT_STARTED')
  end
$$;

revoke all on function private.sender_dkim_status(public.sender_identities, text) from public, anon, authenticated;

-- The campaign's sender identity exists, is verified with SES, covers its from address and
-- signs it with DKIM (aligned with the From domain).
create or replace function private.assert_campaign_sender(p_campaign public.campaigns)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_identity public.sender_identities;
  v_dkim text;
begin
  select * into v_identity from public.sender_identities s where s.id = p_campaign.sender_identity_id;
  if v_identity.id is null or p_campaign.from_email is null then
    perform private.fail(422, 'campaign_incomplete', 'The campaign has no sender identity and from address');
  end if;
  if not v_identity.verified then
    perform private.fail(409, 'sender_not_verified', 'The sender identity is not verified with SES yet');
  end if;
  if p_campaign.from_email <> v_identity.identity
     and (v_identity.kind <> 'domain' or split_part(p_campaign.from_email, '@', 2) <> v_identity.identity) then
    perform private.fail(422, 'sender_mismatch', 'The from address is not covered by the sender identity');
  end if;
  v_dkim := private.sender_dkim_status(v_identity, p_campaign.from_email);
  if v_dkim <> 'SUCCESS' then
    perform private.fail(409, 'sender_not_aligned', format(
      'DKIM for %s is not verified in SES (status %s): publish the identity''s DKIM records and refresh it',
      split_part(p_campaign.from_email, '@', 2), v_dkim));
  end if;
end
$$;

revoke all on function private.assert_campaign_sender(public.campaigns) from public, anon, authenticated;

-- Whether an address is a role address (a team's or a system's, not a person's).
create function private.is_role_address(p_email text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select split_part(lower(p_email), '@', 1) = any (array[
    'abuse', 'admin', 'administrator', 'billing', 'contact', 'help', 'hello', 'hostmaster',
    'info', 'marketing', 'no-reply', 'noreply', 'do-not-reply', 'donotreply', 'office',
    'postmaster', 'sales', 'security', 'support', 'team', 'webmaster', 'jobs', 'careers',
    'newsletter', 'mail', 'enquiries', 'inquiries', 'accounts', 'hr', 'it'
  ])
$$;

revoke all on function private.is_role_address(text) from public, anon, authenticated;

-- Members: the checks a campaign should pass before it starts. Answers {"audience_sampled",
-- "sunset_excluded", "shares": {"never_engaged", "role_addresses", "soft_bounced"},
-- "checks": [{"check", "status": pass|warn|fail, "detail"}], "may_start"}. Shares are over a
-- sample of at most 10,000 of the audience it would freeze now (so the call stays cheap).
create function public.campaign_checks(p_campaign_id uuid)
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
  v_dkim text;
  v_checks jsonb := '[]'::jsonb;
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

  select * into v_identity from public.sender_identities s where s.id = v_campaign.sender_identity_id;
  v_dkim := case when v_identity.id is null then null
                 else private.sender_dkim_status(v_identity, coalesce(v_campaign.from_email, v_identity.identity)) end;

  v_checks := jsonb_build_array(
    jsonb_build_object('check', 'sender_verified',
      'status', case when v_identity.verified then 'pass' else 'fail' end,
      'detail', case when v_identity.id is null then 'No sender identity'
                     when v_identity.verified then format('%s is verified in SES', v_identity.identity)
                     else format('%s is not verified in SES yet', v_identity.identity) end),
    jsonb_build_object('check', 'dkim_aligned',
      'status', case when v_dkim = 'SUCCESS' then 'pass' else 'fail' end,
      'detail', format('DKIM status %s for the From domain', coalesce(v_dkim, 'unknown'))),
    jsonb_build_object('check', 'dmarc',
      'status', 'warn',
      'detail', 'SES does not report DMARC: publish at least p=none for the From domain (Gmail and Yahoo require it)'),
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
      'detail', format('%s contacts left out: no click or order within the sunset window', v_sunset))
  );
  return jsonb_build_object(
    'audience_sampled', v_sampled,
    'sunset_excluded', v_sunset,
    'shares', jsonb_build_object('never_engaged', round(coalesce(v_never, 0), 4),
                                 'role_addresses', round(coalesce(v_role, 0), 4),
                                 'soft_bounced', round(coalesce(v_soft, 0), 4)),
    'checks', v_checks,
    'may_start', v_sampled > 0 and coalesce(v_identity.verified, false) and v_dkim = 'SUCCESS');
end
$$;

revoke all on function public.campaign_checks(uuid) from public, anon, authenticated;

grant execute on function public.campaign_checks(uuid) to authenticated;

comment on function public.campaign_checks(uuid) is
  'Members: pre-send checks for a campaign: never-engaged, role and soft-bounced shares of its audience (a sample of up to 10,000), contacts left out by the sunset, and the sender''s verification and DKIM alignment.';
