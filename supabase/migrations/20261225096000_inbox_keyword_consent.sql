-- An opt-out word in the inbox (STOP, unsubscribe, odhlásit, …) suppressed the sender on that
-- channel (public.channel_suppressions, 20261209102000_inbox_replies.sql) but left no consent
-- record, so the consent history a shop must be able to show had no trace of it, and an email
-- contact's consent_state still said granted. Now each new channel suppression of a contact is
-- also a `withdrawn` record with source `inbox_keyword` (the word as its detail): purpose
-- `whatsapp` for a WhatsApp opt-out, `email_marketing` for an email one (which moves the
-- contact's consent_state too, as every email marketing record does). Telegram and X opt-outs
-- have no marketing purpose of their own: the suppression alone stands for them.

create function private.record_inbox_keyword_consent()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_purpose text := case new.kind when 'whatsapp' then 'whatsapp' when 'email' then 'email_marketing' end;
  v_at timestamptz := clock_timestamp();
begin
  if v_purpose is null or new.contact_id is null
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

create trigger channel_suppressions_record_consent
  after insert on public.channel_suppressions
  for each row execute function private.record_inbox_keyword_consent();
