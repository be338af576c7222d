-- Writing contacts in bulk (imports, shop pages) without per-row work that finds nothing (issue
-- 14, performance). The rules are unchanged; only when their work is done:
--
--   - an erased person's address or phone is never stored again: the keyed hashes of a new or
--     changed contact are computed and looked up only when its workspace has erased anyone (one
--     index probe otherwise; the two HMACs per row were three quarters of a contact insert);
--   - the consent history and the unsubscribe suppression are written by row triggers that now
--     fire only for rows that can need them (a WHEN clause, evaluated before the trigger is even
--     queued): a consent other than unknown or an unsubscribe, and an unsubscribed address.

create or replace function private.keep_erased_contacts_erased()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' and old.erased_at is not null then
    if new.email is not null or new.phone is not null or new.first_name is not null
       or new.last_name is not null or new.attributes <> '{}'::jsonb or new.tags <> '{}'
       or new.erased_at is null then
      perform private.fail(409, 'contact_erased', 'This contact was erased and cannot be changed');
    end if;
    return new;
  end if;
  if new.email is null and new.phone is null then
    return new;
  end if;
  if tg_op = 'UPDATE' and new.email is not distinct from old.email
     and new.phone is not distinct from old.phone then
    return new;
  end if;
  if not exists (select from private.erased_identities e where e.workspace_id = new.workspace_id) then
    return new;
  end if;
  if exists (
    select from private.erased_identities e
    where e.workspace_id = new.workspace_id
      and e.identity_key in (
        private.identity_key(new.workspace_id, 'email', new.email),
        private.identity_key(new.workspace_id, 'phone', new.phone)
      )
  ) then
    if tg_op = 'INSERT' then
      return null;
    end if;
    perform private.fail(409, 'contact_erased',
      'This person asked to be erased; they can come back only by opting in again');
  end if;
  return new;
end
$$;

revoke all on function private.keep_erased_contacts_erased() from public, anon, authenticated;

drop trigger contacts_record_consent on public.contacts;

create trigger contacts_record_consent
  after insert or update of consent_state, unsubscribed_at on public.contacts
  for each row when (new.consent_state <> 'unknown' or new.unsubscribed_at is not null)
  execute function private.record_contact_consent();

drop trigger contacts_suppress_unsubscribed on public.contacts;

create trigger contacts_suppress_unsubscribed
  after insert or update of email, unsubscribed_at on public.contacts
  for each row when (new.unsubscribed_at is not null and new.email is not null)
  execute function private.suppress_unsubscribed_contact();
