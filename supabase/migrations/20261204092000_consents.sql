-- Consent records: per contact and purpose, an append-only history of what the person said,
-- where, when, to which wording, from which IP and user agent; the current state is the
-- latest record (public.contact_consents). For email marketing the current state is also
-- kept on contacts.consent_state, which the campaign audience reads, and every writer of that
-- column (shop syncs, imports, the unsubscribe link) leaves a record here too.
--
-- Double opt-in: a `pending` record, then the signed confirmation link the edge verifies turns
-- it into `granted` (private.confirm_consent).
--
-- Marketing needs a current grant where the workspace requires it
-- (public.workspace_privacy_settings.marketing_consent): `always`, `never`, or `eu_only`
-- (the default): required for contacts whose country (attributes country / country_code) is in
-- the EEA, the UK or Switzerland, whose timezone is in Europe, or of whom neither is known.
-- Withdrawn and denied consent is never mailed, whatever the setting. The campaign audience
-- and the send-time check are replaced here (fix forward) to read it.

-- tables -------------------------------------------------------------------------------------

create table public.consents (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null,
  contact_id uuid not null,
  purpose text not null check (purpose in ('email_marketing', 'sms_marketing', 'whatsapp', 'profiling')),
  status text not null check (status in ('pending', 'granted', 'withdrawn', 'denied')),
  source text not null check (source in (
    'form', 'import', 'shop_checkout', 'api', 'inbox_keyword', 'confirmation_link',
    'preference_page', 'unsubscribe', 'admin'
  )),
  source_detail text check (char_length(source_detail) <= 100),
  wording text check (char_length(wording) <= 2000),
  wording_version text check (char_length(wording_version) <= 100),
  ip inet,
  user_agent text check (char_length(user_agent) <= 500),
  recorded_by uuid references auth.users (id) on delete set null,
  -- The clock, not the transaction's start: two records in one transaction keep their order.
  created_at timestamptz not null default clock_timestamp(),
  foreign key (contact_id, workspace_id) references public.contacts (id, workspace_id) on delete cascade
);

comment on table public.consents is
  'Append-only consent history per contact and purpose (status, source, wording, IP, user agent); the latest record is the current state.';

create table public.workspace_privacy_settings (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  marketing_consent text not null default 'eu_only' check (marketing_consent in ('always', 'eu_only', 'never')),
  double_opt_in boolean not null default true,
  updated_at timestamptz not null default now()
);

comment on table public.workspace_privacy_settings is
  'A workspace''s privacy rules: when marketing needs a recorded grant (always, eu_only, never) and whether sign-ups confirm by email. A workspace without a row has the defaults.';

create index consents_contact_purpose_idx on public.consents (contact_id, workspace_id, purpose, created_at desc);

create index consents_workspace_id_idx on public.consents (workspace_id, created_at desc);

create index consents_recorded_by_idx on public.consents (recorded_by);

create trigger workspace_privacy_settings_touch_updated_at
  before update on public.workspace_privacy_settings
  for each row execute function private.touch_updated_at();

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'consents', 'purpose', 'none', 'not_personal', null),
  ('public', 'consents', 'status', 'none', 'not_personal', null),
  ('public', 'consents', 'source', 'none', 'not_personal', null),
  ('public', 'consents', 'source_detail', 'none', 'not_personal', 'the shop or file the consent came from'),
  ('public', 'consents', 'wording', 'none', 'not_personal', 'the text shown to everyone'),
  ('public', 'consents', 'wording_version', 'none', 'not_personal', null),
  ('public', 'consents', 'user_agent', 'contact', 'row_deleted', 'the history goes with an erasure'),
  ('public', 'workspace_privacy_settings', 'marketing_consent', 'none', 'not_personal', null);

-- the current state --------------------------------------------------------------------------

create view public.contact_consents
with (security_invoker = true)
as
  select distinct on (c.contact_id, c.purpose)
         c.workspace_id, c.contact_id, c.purpose, c.status, c.source, c.created_at as since
  from public.consents c
  order by c.contact_id, c.purpose, c.created_at desc, c.id;

comment on view public.contact_consents is
  'The current consent of each contact per purpose: its latest record.';

-- Whether marketing to a contact needs a recorded grant, by the workspace's rule.
create function private.consent_required(p_rule text, p_attributes jsonb)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select case coalesce(p_rule, 'eu_only')
    when 'always' then true
    when 'never' then false
    else (
      with facts as (
        select upper(max(e.value) filter (where lower(e.key) in ('country', 'country_code'))) as country,
               max(e.value) filter (where lower(e.key) in ('timezone', 'time_zone')) as timezone
        from jsonb_each_text(case when jsonb_typeof(p_attributes) = 'object' then p_attributes else '{}'::jsonb end) as e
      )
      select (f.country is null and f.timezone is null)
          or f.country in ('AT', 'BE', 'BG', 'HR', 'CY', 'CZ', 'DK', 'EE', 'FI', 'FR', 'DE', 'GR',
                           'HU', 'IE', 'IT', 'LV', 'LT', 'LU', 'MT', 'NL', 'PL', 'PT', 'RO', 'SK',
                           'SI', 'ES', 'SE', 'IS', 'LI', 'NO', 'GB', 'UK', 'CH')
          or (f.country is null and f.timezone like 'Europe/%')
      from facts f
    )
  end
$$;

revoke all on function private.consent_required(text, jsonb) from public, anon, authenticated;

-- Whether a contact's email marketing consent lets a campaign mail them under the rule.
create function private.may_market(p_rule text, p_consent_state text, p_attributes jsonb)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_consent_state = 'granted'
      or (p_consent_state = 'unknown' and not private.consent_required(p_rule, p_attributes))
$$;

revoke all on function private.may_market(text, text, jsonb) from public, anon, authenticated;

-- append-only and kept in step -----------------------------------------------------------------

-- No one edits or deletes the history; it goes only with its contact or workspace (a cascade)
-- or with the person's erasure.
create function private.keep_consents_append_only()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' and (pg_catalog.pg_trigger_depth() > 1
                           or pg_catalog.current_setting('growthbase.erasing', true) = 'on') then
    return old;
  end if;
  perform private.fail(409, 'consent_history_is_append_only',
    'Consent records are never changed; record a new one instead');
  return null;
end
$$;

revoke all on function private.keep_consents_append_only() from public, anon, authenticated;

create trigger consents_append_only
  before update or delete on public.consents
  for each row execute function private.keep_consents_append_only();

-- A new email marketing record moves the contact's current state (pending leaves it); a
-- record made from a change of the contact (one trigger level down) has nothing to move.
create function private.apply_consent_record()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.purpose = 'email_marketing' and new.status <> 'pending' and pg_catalog.pg_trigger_depth() = 1 then
    update public.contacts c
    set consent_state = new.status, consent_source = new.source, consent_at = new.created_at
    where c.id = new.contact_id and c.erased_at is null
      and (c.consent_state is distinct from new.status or c.consent_source is distinct from new.source);
  end if;
  return null;
end
$$;

revoke all on function private.apply_consent_record() from public, anon, authenticated;

create trigger consents_apply
  after insert on public.consents
  for each row execute function private.apply_consent_record();

-- Writers of contacts.consent_state and unsubscribed_at (shop syncs, imports, the unsubscribe
-- link, members editing a contact) leave a record. Skipped when the change came from a record.
create function private.record_contact_consent()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_status text;
  v_source text;
begin
  if pg_catalog.pg_trigger_depth() > 1 or new.erased_at is not null then
    return null;
  end if;
  if tg_op = 'UPDATE' and new.unsubscribed_at is not null and old.unsubscribed_at is null then
    v_status := 'withdrawn';
    v_source := 'unsubscribe';
  elsif new.consent_state <> 'unknown'
        and (tg_op = 'INSERT' or new.consent_state is distinct from old.consent_state) then
    v_status := case new.consent_state when 'granted' then 'granted' when 'denied' then 'denied' else 'withdrawn' end;
    v_source := case
      when new.consent_source in ('shoptet', 'shopify', 'woocommerce') then 'shop_checkout'
      when new.consent_source in ('csv', 'import') or new.consent_source like 'import%' then 'import'
      when (select auth.uid()) is not null then 'admin'
      else 'api'
    end;
  else
    return null;
  end if;
  insert into public.consents (workspace_id, contact_id, purpose, status, source, source_detail, recorded_by, created_at)
  values (new.workspace_id, new.id, 'email_marketing', v_status, v_source, left(new.consent_source, 100),
          (select auth.uid()), coalesce(case when v_source = 'unsubscribe' then new.unsubscribed_at else new.consent_at end, clock_timestamp()));
  return null;
end
$$;

revoke all on function private.record_contact_consent() from public, anon, authenticated;

create trigger contacts_record_consent
  after insert or update of consent_state, unsubscribed_at on public.contacts
  for each row execute function private.record_contact_consent();

-- An erased contact's consent history goes with the rest of their data.
create function private.erase_contact_consents()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform pg_catalog.set_config('growthbase.erasing', 'on', true);
  delete from public.consents c where c.contact_id = new.id;
  perform pg_catalog.set_config('growthbase.erasing', '', true);
  return null;
end
$$;

revoke all on function private.erase_contact_consents() from public, anon, authenticated;

create trigger contacts_erase_consents
  after update of erased_at on public.contacts
  for each row when (old.erased_at is null and new.erased_at is not null)
  execute function private.erase_contact_consents();

-- recording consent ----------------------------------------------------------------------------

-- A member records what a contact said (a form, a call, a paper sign-up). Viewers 403; another
-- workspace's contact 404; an erased contact 409. With double opt-in on, an email marketing
-- grant from a form is recorded as pending until the person confirms by the link.
create function public.record_consent(
  p_contact_id uuid, p_purpose text, p_status text, p_source text,
  p_wording text default null, p_wording_version text default null
)
returns public.consents
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_contact public.contacts;
  v_status text := p_status;
  v_record public.consents;
begin
  select * into v_contact from public.contacts c
  where c.id = p_contact_id and c.workspace_id in (select private.user_workspace_ids());
  if v_contact.id is null then
    perform private.fail(404, 'contact_not_found', 'Contact not found');
  end if;
  perform private.workspace_role_as(v_contact.workspace_id, 'member');
  if v_contact.erased_at is not null then
    perform private.fail(409, 'contact_erased', 'This contact was erased');
  end if;
  if p_purpose is null or p_purpose not in ('email_marketing', 'sms_marketing', 'whatsapp', 'profiling') then
    perform private.fail(422, 'invalid_purpose', 'Purpose must be email_marketing, sms_marketing, whatsapp or profiling');
  end if;
  if p_status is null or p_status not in ('pending', 'granted', 'withdrawn', 'denied') then
    perform private.fail(422, 'invalid_status', 'Status must be pending, granted, withdrawn or denied');
  end if;
  if p_source is null or p_source not in ('form', 'import', 'shop_checkout', 'api', 'inbox_keyword', 'admin') then
    perform private.fail(422, 'invalid_source', 'Source must be form, import, shop_checkout, api, inbox_keyword or admin');
  end if;
  if char_length(p_wording) > 2000 or char_length(p_wording_version) > 100 then
    perform private.fail(422, 'invalid_wording', 'Wording is at most 2000 characters, its version 100');
  end if;
  if v_status = 'granted' and p_purpose = 'email_marketing' and p_source = 'form'
     and coalesce((select s.double_opt_in from public.workspace_privacy_settings s
                   where s.workspace_id = v_contact.workspace_id), true) then
    v_status := 'pending';
  end if;
  insert into public.consents (workspace_id, contact_id, purpose, status, source, wording, wording_version, recorded_by)
  values (v_contact.workspace_id, p_contact_id, p_purpose, v_status, p_source, p_wording, p_wording_version, v_user)
  returning * into v_record;
  return v_record;
end
$$;

revoke all on function public.record_consent(uuid, text, text, text, text, text) from public, anon;

grant execute on function public.record_consent(uuid, text, text, text, text, text) to authenticated;

comment on function public.record_consent(uuid, text, text, text, text, text) is
  'Records a contact''s consent for a purpose (members and above). A form''s email marketing grant waits as pending for the confirmation link when the workspace asks for double opt-in. 404 contact_not_found, 403 insufficient_role, 409 contact_erased, 422 invalid_purpose, invalid_status, invalid_source or invalid_wording.';

-- The person's own answer through a signed link the edge verified (confirmation link,
-- preference page): recorded with the IP and user agent the edge saw.
create function private.answer_consent(
  p_workspace_id uuid, p_contact_id uuid, p_purpose text, p_status text, p_source text,
  p_ip inet, p_user_agent text
)
returns public.consents
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact public.contacts;
  v_record public.consents;
begin
  select * into v_contact from public.contacts c
  where c.id = p_contact_id and c.workspace_id = p_workspace_id
  for update;
  if v_contact.id is null or v_contact.erased_at is not null then
    perform private.fail(404, 'contact_not_found', 'This link is no longer valid');
  end if;
  if p_source = 'confirmation_link' and not exists (
    select from public.contact_consents cc
    where cc.contact_id = p_contact_id and cc.purpose = p_purpose and cc.status in ('pending', 'granted')
  ) then
    perform private.fail(409, 'nothing_to_confirm', 'There is no sign-up waiting for confirmation');
  end if;
  insert into public.consents (workspace_id, contact_id, purpose, status, source, ip, user_agent)
  values (p_workspace_id, p_contact_id, p_purpose, p_status, p_source, p_ip, left(p_user_agent, 500))
  returning * into v_record;
  return v_record;
end
$$;

revoke all on function private.answer_consent(uuid, uuid, text, text, text, inet, text) from public, anon, authenticated;

grant execute on function private.answer_consent(uuid, uuid, text, text, text, inet, text) to service_role;

-- What the preference page shows the person: their workspace's lists (and whether they are
-- on each) and their current answer per purpose.
create function private.preference_state(p_workspace_id uuid, p_contact_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_contact public.contacts;
begin
  select * into v_contact from public.contacts c
  where c.id = p_contact_id and c.workspace_id = p_workspace_id;
  if v_contact.id is null or v_contact.erased_at is not null then
    perform private.fail(404, 'contact_not_found', 'This link is no longer valid');
  end if;
  return jsonb_build_object(
    'workspace', (select w.name from public.workspaces w where w.id = p_workspace_id),
    'unsubscribed', v_contact.unsubscribed_at is not null,
    'purposes', (
      select jsonb_agg(jsonb_build_object('purpose', p.purpose, 'status', coalesce(cc.status, 'none')) order by p.n)
      from unnest(array['email_marketing', 'sms_marketing', 'whatsapp', 'profiling']) with ordinality as p(purpose, n)
      left join public.contact_consents cc on cc.contact_id = p_contact_id and cc.purpose = p.purpose
    ),
    'lists', coalesce((
      select jsonb_agg(jsonb_build_object(
               'id', l.id, 'name', l.name,
               'member', exists (select from public.email_list_members m where m.list_id = l.id and m.contact_id = p_contact_id))
             order by l.name)
      from public.email_lists l where l.workspace_id = p_workspace_id
    ), '[]'::jsonb)
  );
end
$$;

revoke all on function private.preference_state(uuid, uuid) from public, anon, authenticated;

grant execute on function private.preference_state(uuid, uuid) to service_role;

-- The person's answers from the preference page: per purpose `granted` or `withdrawn` (an
-- answer equal to the current one records nothing), and per list of the workspace whether
-- they stay on it (lists of other workspaces are refused). Answers the new state.
create function private.save_preferences(
  p_workspace_id uuid, p_contact_id uuid, p_purposes jsonb, p_lists jsonb, p_ip inet, p_user_agent text
)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_purpose text;
  v_status text;
  v_list text;
  v_member boolean;
begin
  perform private.preference_state(p_workspace_id, p_contact_id);
  perform 1 from public.contacts c where c.id = p_contact_id for update;
  for v_purpose, v_status in select e.key, e.value from jsonb_each_text(coalesce(p_purposes, '{}'::jsonb)) as e loop
    if v_purpose not in ('email_marketing', 'sms_marketing', 'whatsapp', 'profiling')
       or v_status not in ('granted', 'withdrawn') then
      perform private.fail(422, 'invalid_preferences', 'Each purpose takes granted or withdrawn');
    end if;
    if v_status is distinct from (select cc.status from public.contact_consents cc
                                  where cc.contact_id = p_contact_id and cc.purpose = v_purpose) then
      insert into public.consents (workspace_id, contact_id, purpose, status, source, ip, user_agent)
      values (p_workspace_id, p_contact_id, v_purpose, v_status, 'preference_page', p_ip, left(p_user_agent, 500));
    end if;
  end loop;
  for v_list, v_member in select e.key, (e.value)::boolean from jsonb_each_text(coalesce(p_lists, '{}'::jsonb)) as e loop
    if v_list !~ '^[0-9a-fA-F-]{36}$' or not exists (
      select from public.email_lists l where l.id = v_list::uuid and l.workspace_id = p_workspace_id
    ) then
      perform private.fail(422, 'invalid_preferences', 'That list is not one of this sender''s lists');
    end if;
    if v_member then
      insert into public.email_list_members (list_id, workspace_id, contact_id)
      values (v_list::uuid, p_workspace_id, p_contact_id) on conflict do nothing;
    else
      delete from public.email_list_members m where m.list_id = v_list::uuid and m.contact_id = p_contact_id;
    end if;
  end loop;
  return private.preference_state(p_workspace_id, p_contact_id);
end
$$;

revoke all on function private.save_preferences(uuid, uuid, jsonb, jsonb, inet, text) from public, anon, authenticated;

grant execute on function private.save_preferences(uuid, uuid, jsonb, jsonb, inet, text) to service_role;

-- the audience, fix forward --------------------------------------------------------------------

-- As before, with consent read through the workspace's rule (private.may_market).
create or replace function private.launch_campaign(p_campaign_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_rule jsonb;
  v_consent_rule text;
  v_count integer;
begin
  select * into v_campaign from public.campaigns c where c.id = p_campaign_id for update;
  if v_campaign.status not in ('draft', 'scheduled') then
    perform private.fail(409, 'invalid_transition', format('A %s campaign cannot be started', v_campaign.status));
  end if;
  perform private.assert_campaign_ready(v_campaign);
  select s.rule into v_rule from public.segments s where s.id = v_campaign.segment_id;
  select s.marketing_consent into v_consent_rule
  from public.workspace_privacy_settings s where s.workspace_id = v_campaign.workspace_id;

  insert into public.campaign_recipients (campaign_id, workspace_id, variant_id, contact_id, email)
  with audience as (
    select c.id, c.email
    from public.contacts c
    where c.workspace_id = v_campaign.workspace_id
      and (cardinality(v_campaign.list_ids) = 0 or exists (
        select 1 from public.email_list_members m
        where m.contact_id = c.id and m.list_id = any (v_campaign.list_ids)))
      and (v_rule is null or c.id in (select private.segment_contact_ids(v_campaign.workspace_id, v_rule)))
      and c.email is not null
      and private.may_market(v_consent_rule, c.consent_state, c.attributes)
      and c.unsubscribed_at is null
      and c.erased_at is null
      and not exists (select 1 from public.email_suppressions s
                      where s.workspace_id = c.workspace_id and s.email = c.email)
      and not exists (select 1 from private.platform_suppressions p
                      where p.email_hash = sha256(convert_to(lower(c.email), 'UTF8')))
  ),
  numbered as (
    select a.*, row_number() over (order by md5(a.id::text || p_campaign_id::text)) - 1 as n
    from audience a
  ),
  variants as (
    select v.id,
           sum(v.weight) over (order by v.name) - v.weight as low,
           sum(v.weight) over (order by v.name) as high,
           sum(v.weight) over () as total
    from public.campaign_variants v where v.campaign_id = p_campaign_id
  )
  select p_campaign_id, v_campaign.workspace_id, v.id, a.id, a.email
  from numbered a
  join variants v on a.n % v.total >= v.low and a.n % v.total < v.high;
  get diagnostics v_count = row_count;

  if v_count = 0 then
    perform private.fail(409, 'empty_audience', 'No contact in the audience may be mailed');
  end if;
  perform private.reserve_monthly_emails(v_campaign.workspace_id, v_count);
  update public.campaigns
  set status = 'sending', started_at = now(), recipients = v_count, error = null
  where id = p_campaign_id;
  -- Fresh statistics for the rows just added: without them the first claims plan a walk over
  -- the whole new audience (about 40 ms per claim at 10,000) instead of the due index.
  analyze public.campaign_recipients;
  return v_count;
end
$$;

revoke all on function private.launch_campaign(uuid) from public, anon, authenticated;

-- As before, with the consent check at claim time read through the workspace's rule.
create or replace function private.claim_email_batch(p_limit integer, p_lease_seconds integer, p_per_second double precision)
returns table (
  recipient_id uuid, campaign_id uuid, workspace_id uuid, contact_id uuid, email text,
  attempts integer, subject text, html text, text_body text, from_name text, from_email text,
  reply_to text, contact jsonb
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tokens double precision;
  v_take integer;
  v_claimed integer;
begin
  insert into private.email_send_rate (id, tokens, refilled_at)
  values (true, greatest(1, p_per_second), clock_timestamp())
  on conflict (id) do nothing;
  update private.email_send_rate
  set tokens = least(greatest(1, p_per_second),
                     tokens + p_per_second * extract(epoch from clock_timestamp() - refilled_at)),
      refilled_at = clock_timestamp()
  where id
  returning tokens into v_tokens;
  v_take := least(p_limit, floor(v_tokens)::integer);
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
    from public.campaign_recipients r
    join public.campaigns c on c.id = r.campaign_id and c.status = 'sending'
    join public.sender_identities si on si.id = c.sender_identity_id and si.verified
    join public.contacts ct on ct.id = r.contact_id
    left join public.workspace_privacy_settings ps on ps.workspace_id = r.workspace_id
    where r.status in ('queued', 'sending')
      and r.next_attempt_at <= now()
      and (r.locked_until is null or r.locked_until < now())
    order by r.next_attempt_at
    limit v_take
    for update of r skip locked
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
        locked_until = now() + make_interval(secs => p_lease_seconds)
    from picked k
    where k.id = r.id and k.verdict = 'send'
    returning r.*
  )
  select cl.id, cl.campaign_id, cl.workspace_id, cl.contact_id, cl.email, cl.attempts,
         v.subject, v.html, v.text, c.from_name, c.from_email, c.reply_to,
         jsonb_build_object('email', ct.email, 'first_name', ct.first_name,
                            'last_name', ct.last_name, 'phone', ct.phone,
                            'attributes', ct.attributes)
  from claimed cl
  join public.campaign_variants v on v.id = cl.variant_id
  join public.campaigns c on c.id = cl.campaign_id
  join public.contacts ct on ct.id = cl.contact_id;
  get diagnostics v_claimed = row_count;
  update private.email_send_rate set tokens = tokens - v_claimed where id;
end
$$;

revoke all on function private.claim_email_batch(integer, integer, double precision) from public, anon, authenticated;

grant execute on function private.claim_email_batch(integer, integer, double precision) to service_role;

-- grants -------------------------------------------------------------------------------------

revoke all on public.consents from public, anon, authenticated;

revoke all on public.contact_consents from public, anon, authenticated;

revoke all on public.workspace_privacy_settings from public, anon, authenticated;

grant select on public.consents, public.contact_consents to authenticated;

grant select, insert, update (marketing_consent, double_opt_in) on public.workspace_privacy_settings to authenticated;

grant select, insert on public.consents to service_role;

grant delete on public.consents to service_role;

grant select on public.contact_consents to service_role;

grant all on public.workspace_privacy_settings to service_role;

-- row level security -------------------------------------------------------------------------

alter table public.consents enable row level security;

alter table public.workspace_privacy_settings enable row level security;

-- Members of every role read their workspaces' consent records.
create policy consents_select_members on public.consents
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of every role read their workspaces' privacy settings.
create policy workspace_privacy_settings_select_members on public.workspace_privacy_settings
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Admins and owners set their workspaces' privacy settings.
create policy workspace_privacy_settings_insert_admins on public.workspace_privacy_settings
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners change their workspaces' privacy settings.
create policy workspace_privacy_settings_update_admins on public.workspace_privacy_settings
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));
