-- Address flags (issue 18): a contact's address is flagged when it is inserted or its address
-- changes (CSV imports, the API, shop syncs: every insert), set-based in the statement's own
-- trigger, as
--   role        a team's or a system's mailbox (info@, noreply@, …: private.is_role_address),
--   disposable  its domain is on private.disposable_domains (a small list the platform keeps),
--   invalid     syntactically hopeless: no deliverable shape (dots at the ends or doubled in the
--               local part, a domain label that is not letters, digits and inner hyphens, a
--               top-level domain that is not letters, over 64 characters before the @ or over
--               254 in all).
-- Disposable and invalid addresses are left out of marketing audiences; role addresses stay in
-- (the pre-send checks warn about their share). The campaign checks count what the flags leave
-- out. The flag is a category, not personal data: erasing the address clears it.

create table private.disposable_domains (
  domain text primary key check (domain = lower(domain)),
  added_at timestamptz not null default now()
);

comment on table private.disposable_domains is
  'Domains of throwaway mailbox services: contacts at them are flagged disposable and never marketed to. Kept by the platform (service role).';

insert into private.disposable_domains (domain) values
  ('mailinator.com'), ('guerrillamail.com'), ('guerrillamail.net'), ('sharklasers.com'),
  ('10minutemail.com'), ('temp-mail.org'), ('tempmail.com'), ('yopmail.com'), ('yopmail.net'),
  ('trashmail.com'), ('getnada.com'), ('dispostable.com'), ('maildrop.cc'), ('throwawaymail.com'),
  ('fakeinbox.com'), ('mintemail.com'), ('mohmal.com'), ('emailondeck.com'), ('tempail.com'),
  ('spamgourmet.com'), ('mailnesia.com'), ('mytemp.email'), ('burnermail.io'), ('tempr.email'),
  ('discard.email'), ('33mail.com'), ('inboxkitten.com'), ('mail.tm'), ('tmpmail.org'),
  ('minuteinbox.com');

alter table public.contacts add column address_flag text
  check (address_flag in ('role', 'disposable', 'invalid'));

comment on column public.contacts.address_flag is
  'Why the address is risky, set on insert and on every change of it: role (info@, noreply@), disposable (a throwaway domain) or invalid (syntactically hopeless); null when none. Disposable and invalid addresses get no marketing mail.';

-- The flag an address earns: invalid before disposable before role (the role names of
-- private.is_role_address, inlined: this runs for every contact written); null for a plain one.
create function private.address_flag(p_email text)
returns text
language sql
stable
set search_path = ''
as $$
  select case
    when p_email is null then null
    when length(p_email) > 254
      or p_email !~ '^[^@\s]+@[^@\s]+$'
      or length(split_part(p_email, '@', 1)) > 64
      or split_part(p_email, '@', 1) ~ '(^\.|\.$|\.\.|["(),:;<>\[\]\\])'
      or lower(split_part(p_email, '@', 2)) !~ '^([[:alnum:]]([[:alnum:]-]*[[:alnum:]])?\.)+[[:alpha:]]{2,}$'
      then 'invalid'
    when exists (select 1 from private.disposable_domains d
                 where d.domain = lower(split_part(p_email, '@', 2)))
      then 'disposable'
    when split_part(lower(p_email), '@', 1) = any (array[
      'abuse', 'admin', 'administrator', 'billing', 'contact', 'help', 'hello', 'hostmaster',
      'info', 'marketing', 'no-reply', 'noreply', 'do-not-reply', 'donotreply', 'office',
      'postmaster', 'sales', 'security', 'support', 'team', 'webmaster', 'jobs', 'careers',
      'newsletter', 'mail', 'enquiries', 'inquiries', 'accounts', 'hr', 'it'
    ]) then 'role'
  end
$$;

revoke all on function private.address_flag(text) from public, anon, authenticated;

-- Before a contact row is written with a new address: its flag.
create function private.flag_contact_address()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  new.address_flag := private.address_flag(new.email);
  return new;
end
$$;

revoke all on function private.flag_contact_address() from public, anon, authenticated;

create trigger contacts_flag_address_on_insert
  before insert on public.contacts
  for each row execute function private.flag_contact_address();

create trigger contacts_flag_address_on_update
  before update of email on public.contacts
  for each row when (new.email is distinct from old.email)
  execute function private.flag_contact_address();

-- The contacts already there.
update public.contacts c set address_flag = private.address_flag(c.email)
where c.email is not null and private.address_flag(c.email) is not null;

-- As in 20261213101000_sunset_and_checks.sql, and disposable and syntactically hopeless
-- addresses are left out (role addresses stay: the pre-send checks warn about their share).
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
    and (c.address_flag is null or c.address_flag = 'role')
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

-- As in 20261213101000_sunset_and_checks.sql, and "flagged_excluded": how many of the lists'
-- contacts the audience leaves out as disposable or hopeless addresses (a check that warns).
-- Members: the checks a campaign should pass before it starts. Answers {"audience_sampled",
-- "sunset_excluded", "flagged_excluded", "shares": {"never_engaged", "role_addresses", "soft_bounced"},
-- "checks": [{"check", "status": pass|warn|fail, "detail"}], "may_start"}. Shares are over a
-- sample of at most 10,000 of the audience it would freeze now (so the call stays cheap).
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
    'may_start', v_sampled > 0 and coalesce(v_identity.verified, false) and v_dkim = 'SUCCESS');
end
$$;

comment on function public.campaign_checks(uuid) is
  'Members: pre-send checks for a campaign: never-engaged, role and soft-bounced shares of its audience (a sample of up to 10,000), contacts left out by the sunset or as disposable or hopeless addresses, and the sender''s verification and DKIM alignment.';

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'disposable_domains', 'domain', 'none', 'not_personal', 'throwaway mailbox services'),
  ('public', 'contacts', 'address_flag', 'none', 'not_personal', 'a category (role, disposable, invalid); erasing the address clears it');
