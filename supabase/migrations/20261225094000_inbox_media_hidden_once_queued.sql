-- An erased contact's stored inbox attachments wait in private.inbox_media_removals until the
-- inbox cron removes the files (every minute; a refused removal an hour later). Until then a
-- member who knew a path could still read the file through Storage. From the moment an erasure
-- (or any deletion of their messages) commits, a queued file is hidden from every member: a
-- restrictive policy leaves the queued paths out of the inbox bucket's reads. Only a signed URL
-- taken before the erasure still reaches the file, until the cron removes it.

-- The inbox bucket's paths queued for removal (the queue is drained every minute, so it is short).
create function private.inbox_paths_being_removed()
returns setof text
language sql
stable
security definer
set search_path = ''
as $$
  select r.path from private.inbox_media_removals r
$$;

revoke all on function private.inbox_paths_being_removed() from public, anon, authenticated;

grant execute on function private.inbox_paths_being_removed() to authenticated, service_role;

-- Nobody reads an inbox attachment whose message is gone (its file is queued for removal).
create policy inbox_select_not_being_removed on storage.objects
  as restrictive
  for select to authenticated
  using (
    bucket_id is distinct from 'inbox'
    or name not in (select p from private.inbox_paths_being_removed() as p)
  );
