-- A dashboard user's delete of a contact is an erasure (issue 17). Deleting the row alone left
-- the person's address in stored webhook payloads, automations, segment rules and AI records,
-- and kept no keyed hash, so the next import or shop sync brought them back. Through the Data
-- API (role `authenticated`), `delete` on contacts now erases each row it matches, for admins and
-- owners as rpc/erase_contact does (a member gets 403 insufficient_role), and keeps the
-- erasure's tombstone, so the statement reports no row deleted. The service and SQL jobs
-- (contact merges, workspace purges) still delete rows outright.

create function private.erase_instead_of_delete()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- The role the Data API set for the request; a security definer function keeps it.
  if current_setting('role', true) is distinct from 'authenticated' then
    return old;
  end if;
  perform private.workspace_role_as(old.workspace_id, 'admin');
  if old.erased_at is null then
    perform private.erase_contacts(old.workspace_id, array[old.id], auth.uid());
  end if;
  return null;
end
$$;

revoke all on function private.erase_instead_of_delete() from public, anon, authenticated;

create trigger contacts_erase_instead_of_delete
  before delete on public.contacts
  for each row execute function private.erase_instead_of_delete();

comment on policy contacts_delete_members on public.contacts is
  'Rows a member may target with delete; the contacts_erase_instead_of_delete trigger turns a dashboard delete into an erasure (admins and owners).';
