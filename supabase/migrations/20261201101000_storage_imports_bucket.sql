-- The private Storage bucket `imports`: the SPA uploads a large file there itself (resumable
-- uploads, no edge in the way) under its workspace's folder, `<workspace id>/<name>`, and then
-- asks the edge to import it by path; the edge streams it from Storage. Storage enforces the
-- 1 GiB limit on upload; the policies below let members write only their own workspaces'
-- folders, and every member read them.

insert into storage.buckets (id, name, public, file_size_limit)
values ('imports', 'imports', false, 1073741824)
on conflict (id) do nothing;

-- Members of any role may read the files in their workspaces' folders of the imports bucket.
create policy imports_select_members on storage.objects
  for select to authenticated
  using (
    bucket_id = 'imports'
    and (storage.foldername(objects.name))[1] in (
      select id::text from private.user_workspace_ids() as id
    )
  );

-- Members and above may upload files into their workspaces' folders of the imports bucket.
create policy imports_insert_members on storage.objects
  for insert to authenticated
  with check (
    bucket_id = 'imports'
    and (storage.foldername(objects.name))[1] in (
      select id::text from private.user_workspace_ids_at_least('member') as id
    )
  );

-- Members and above may replace files in their workspaces' folders (an upsert needs it).
create policy imports_update_members on storage.objects
  for update to authenticated
  using (
    bucket_id = 'imports'
    and (storage.foldername(objects.name))[1] in (
      select id::text from private.user_workspace_ids_at_least('member') as id
    )
  )
  with check (
    bucket_id = 'imports'
    and (storage.foldername(objects.name))[1] in (
      select id::text from private.user_workspace_ids_at_least('member') as id
    )
  );

-- Members and above may delete files from their workspaces' folders of the imports bucket.
create policy imports_delete_members on storage.objects
  for delete to authenticated
  using (
    bucket_id = 'imports'
    and (storage.foldername(objects.name))[1] in (
      select id::text from private.user_workspace_ids_at_least('member') as id
    )
  );
