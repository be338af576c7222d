-- A contact written is checked against its workspace's erased people; a workspace nobody was
-- erased from skips the keyed hashes (20261209120000_contact_write_path.sql). That skip asked
-- "does any erased identity of this workspace exist", and the planner's generic plan for it
-- (the trigger's plan, cached per connection) is a sequential scan whenever its statistics say
-- a workspace has many erased identities on average: with ten workspaces of 20,000 erasures
-- each, analyzed, 200 new contacts of an eleventh read 31,215,600 erased identities (the whole
-- list, once per contact), and an import of 20,000 contacts ran for minutes. The skip now asks
-- for the workspace's first erased identity in the primary key's order: a sequential scan
-- would read and sort every row before answering, so the key's index is the plan whatever the
-- statistics.
--
-- Redefines private.keep_erased_contacts_erased() from 20261209120000_contact_write_path.sql
-- (only the skip's query changes).

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
  if (select e.identity_key from private.erased_identities e
      where e.workspace_id = new.workspace_id
      order by e.workspace_id, e.identity_key limit 1) is null then
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
