-- Telegram and X opt-outs get a consent purpose of their own. A STOP in a Telegram chat or an
-- X conversation suppressed the sender on that channel kind but recorded no consent (the
-- purposes had none for them), so the history a shop must be able to show had no trace of
-- it. Purposes `telegram` and `x` join `whatsapp` and `email_marketing`: an opt-out word there is
-- a `withdrawn` record with source `inbox_keyword` (the word as its detail), and members,
-- imports and the preference page can record them like any other purpose. The list lives in
-- one function, private.consent_purposes, which the checks below read.

alter table public.consents drop constraint consents_purpose_check;

alter table public.consents add constraint consents_purpose_check
  check (purpose in ('email_marketing', 'sms_marketing', 'whatsapp', 'telegram', 'x', 'profiling'));

-- The consent purposes in the order the preference page lists them.
create function private.consent_purposes()
returns text[]
language sql
immutable
set search_path = ''
as $$
  select array['email_marketing', 'sms_marketing', 'whatsapp', 'telegram', 'x', 'profiling']
$$;

revoke all on function private.consent_purposes() from public, anon, authenticated;

grant execute on function private.consent_purposes() to service_role;

create or replace function private.preference_state(p_workspace_id uuid, p_contact_id uuid)
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
      from unnest(private.consent_purposes()) with ordinality as p(purpose, n)
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

create or replace function private.save_preferences(p_workspace_id uuid, p_contact_id uuid, p_purposes jsonb, p_lists jsonb, p_ip inet, p_user_agent text)
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
    if not (v_purpose = any (private.consent_purposes()))
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

create or replace function public.record_consent(p_contact_id uuid, p_purpose text, p_status text, p_source text, p_wording text DEFAULT NULL::text, p_wording_version text DEFAULT NULL::text)
returns consents
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
  if p_purpose is null or not (p_purpose = any (private.consent_purposes())) then
    perform private.fail(422, 'invalid_purpose', 'Purpose must be email_marketing, sms_marketing, whatsapp, telegram, x or profiling');
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

-- An opt-out word in the inbox is a withdrawal of the channel kind's own purpose.
create or replace function private.record_inbox_keyword_consent()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_purpose text := case new.kind when 'email' then 'email_marketing' else new.kind end;
  v_at timestamptz := clock_timestamp();
begin
  if not (v_purpose = any (private.consent_purposes())) or new.contact_id is null
     or not exists (select from public.contacts c
                    where c.id = new.contact_id and c.workspace_id = new.workspace_id and c.erased_at is null) then
    return null;
  end if;
  if v_purpose = 'email_marketing' then
    -- The contact's current state moves first; its own consent trigger stays quiet one level down.
    update public.contacts c
    set consent_state = 'withdrawn', consent_source = 'inbox_keyword', consent_at = v_at
    where c.id = new.contact_id and c.consent_state is distinct from 'withdrawn';
  end if;
  insert into public.consents (workspace_id, contact_id, purpose, status, source, source_detail, created_at)
  values (new.workspace_id, new.contact_id, v_purpose, 'withdrawn', 'inbox_keyword',
          left(coalesce(new.keyword, 'opt-out'), 100), v_at);
  return null;
end
$$;

revoke all on function private.record_inbox_keyword_consent() from public, anon, authenticated;

comment on function public.record_consent(uuid, text, text, text, text, text) is
  'Records a contact''s consent for a purpose (email_marketing, sms_marketing, whatsapp, telegram, x, profiling; members and above). A form''s email marketing grant waits as pending for the confirmation link when the workspace asks for double opt-in. 404 contact_not_found, 403 insufficient_role, 409 contact_erased, 422 invalid_purpose, invalid_status, invalid_source or invalid_wording.';
