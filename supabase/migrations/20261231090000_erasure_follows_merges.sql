-- A merge (public.merge_contacts) moves a contact's inbox identities and conversations onto the
-- contact it is merged into and keeps the merged contact, pointing at it, with the rest of its
-- data: its name, events, consents, orders. Erasing the person must take that contact too, so
-- erasing a contact erases, in the same transaction, every contact merged into it (and, through
-- this same trigger, the contacts merged into those).

create function private.erase_merged_contacts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_merged uuid[];
begin
  select array_agg(m.merged_contact_id order by m.merged_contact_id) into v_merged
  from public.contact_merges m
  where m.kept_contact_id = new.id and m.merged_contact_id is not null;
  if v_merged is not null then
    perform private.erase_contacts(new.workspace_id, v_merged, auth.uid());
  end if;
  return null;
end
$$;

revoke all on function private.erase_merged_contacts() from public, anon, authenticated;

comment on function private.erase_merged_contacts() is
  'After a contact is erased: erases the contacts merged into it (contact_merges), recorded as requested by the same signed-in user (none for the batch queue).';

create trigger contacts_erase_merged
  after update of erased_at on public.contacts
  for each row when (old.erased_at is null and new.erased_at is not null)
  execute function private.erase_merged_contacts();
