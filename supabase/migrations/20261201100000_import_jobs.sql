-- Import jobs (issue 14 §1): a file of any size is uploaded in parts (or named in Storage),
-- read into an unlogged staging table with COPY, checked and merged set-based in bounded
-- chunks, each chunk one transaction that also moves the job's cursor, so a worker that dies
-- mid-chunk leaves nothing half-done and the next commit call or cron tick goes on from the
-- last committed chunk.
--
--   uploading  → parts arrive (each ≤ 4 MiB, a retried part replaces itself)
--   validating → the file is read into staging (resumable at a record boundary), duplicates
--                across the whole file are found
--   importing  → chunks are merged; row errors go to import_errors
--   done | failed | cancelled
--
-- Members read their workspaces' jobs and errors (the SPA lists them and follows progress on
-- the private channel workspace:<id>:imports); the edge creates, uploads, commits and cancels
-- through the functions below, as the user where a role decides, as the service for the
-- staging writes. Staging is unlogged: fast to write, and a database crash empties it, which
-- the job notices (its staged records are missing) and reports instead of importing half.

create table public.import_jobs (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  project_id uuid,
  kind text not null check (kind in ('orders', 'contacts', 'products')),
  status text not null default 'uploading'
    check (status in ('uploading', 'validating', 'importing', 'done', 'failed', 'cancelled')),
  source text not null check (source in ('upload', 'storage')),
  storage_path text check (char_length(storage_path) between 1 and 1024),
  file_name text check (char_length(file_name) between 1 and 255),
  size_bytes bigint not null check (size_bytes between 1 and 1073741824),
  encoding text not null default 'utf-8'
    check (encoding in ('utf-8', 'windows-1250', 'windows-1252', 'iso-8859-1', 'iso-8859-2')),
  column_map jsonb not null default '{}'::jsonb check (jsonb_typeof(column_map) = 'object'),
  columns text[],
  delimiter text check (delimiter in (',', ';', e'\t', '|')),
  parts_received integer not null default 0,
  bytes_received bigint not null default 0,
  rows_total bigint,
  rows_processed bigint not null default 0,
  rows_failed bigint not null default 0,
  errors_stored integer not null default 0,
  created integer not null default 0,
  updated integer not null default 0,
  unchanged integer not null default 0,
  load_offset bigint not null default 0,
  load_line bigint not null default 1,
  load_record bigint not null default 0,
  merge_record bigint not null default 0,
  error_code text,
  error_message text,
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  unique (id, workspace_id),
  foreign key (project_id, workspace_id) references public.projects (id, workspace_id) on delete cascade,
  check ((source = 'storage') = (storage_path is not null)),
  check (kind = 'contacts' or project_id is not null)
);

comment on table public.import_jobs is
  'A CSV import of orders, contacts or products: uploading → validating → importing → done, failed or cancelled, with its counts. Members read; the edge writes. Progress is broadcast on workspace:<id>:imports.';

create table public.import_errors (
  job_id uuid not null,
  workspace_id uuid not null,
  line bigint not null,
  column_name text,
  reason text not null,
  primary key (job_id, workspace_id, line),
  foreign key (job_id, workspace_id) references public.import_jobs (id, workspace_id) on delete cascade
);

comment on table public.import_errors is
  'Why a row of an import was not imported: its line in the file (the header is line 1), the column and the reason. At most 1000 per job; import_jobs.rows_failed counts them all.';

-- A part of an uploaded file, as received: the file is read in part order when committed.
create unlogged table private.import_parts (
  job_id uuid not null references public.import_jobs (id) on delete cascade,
  part_number integer not null check (part_number between 1 and 10000),
  body bytea not null,
  primary key (job_id, part_number)
);

-- Parts are CSV: compressing them on the way in costs more than it saves for a few minutes.
alter table private.import_parts alter column body set storage external;

-- indexes and triggers ------------------------------------------------------------------------

create index import_jobs_workspace_created_idx on public.import_jobs (workspace_id, created_at desc);

create index import_jobs_project_id_workspace_id_idx on public.import_jobs (project_id, workspace_id);

create index import_jobs_created_by_idx on public.import_jobs (created_by);

create index import_jobs_running_idx on public.import_jobs (updated_at)
  where status in ('uploading', 'validating', 'importing');

create index import_errors_workspace_id_idx on public.import_errors (workspace_id);

create trigger import_jobs_touch_updated_at
  before update on public.import_jobs
  for each row execute function private.touch_updated_at();

-- Progress on the workspace's private channel: every change of status or counts, which is once
-- per uploaded part and once per merged chunk (a chunk takes about a second).
create function private.broadcast_import_progress()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform realtime.send(
    jsonb_build_object(
      'id', new.id, 'kind', new.kind, 'project_id', new.project_id, 'status', new.status,
      'parts_received', new.parts_received, 'bytes_received', new.bytes_received,
      'size_bytes', new.size_bytes, 'rows_total', new.rows_total,
      'rows_processed', new.rows_processed, 'rows_failed', new.rows_failed,
      'created', new.created, 'updated', new.updated, 'unchanged', new.unchanged,
      'error_code', new.error_code, 'updated_at', new.updated_at
    ),
    'import_progress',
    format('workspace:%s:imports', new.workspace_id),
    true
  );
  return null;
end
$$;

revoke all on function private.broadcast_import_progress() from public, anon, authenticated;

create trigger import_jobs_broadcast_progress
  after insert or update on public.import_jobs
  for each row execute function private.broadcast_import_progress();

-- A job that ended keeps its counts and errors, not its staged file.
create function private.drop_finished_import_parts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.import_parts p where p.job_id = new.id;
  return null;
end
$$;

revoke all on function private.drop_finished_import_parts() from public, anon, authenticated;

create trigger import_jobs_drop_finished_parts
  after update of status on public.import_jobs
  for each row when (new.status in ('done', 'failed', 'cancelled') and old.status <> new.status)
  execute function private.drop_finished_import_parts();

-- functions: as the user ----------------------------------------------------------------------

-- The job when the caller has at least `p_min_role` in its workspace: 404 import_job_not_found
-- for anyone else (another workspace's job is not revealed), 403 for a role too low.
create function private.import_job_as(p_job_id uuid, p_min_role text)
returns public.import_jobs
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_job public.import_jobs;
  v_role text;
begin
  perform private.require_valid_role(p_min_role);
  select j.* into v_job from public.import_jobs j where j.id = p_job_id;
  select m.role into v_role from public.workspace_members m
  where m.workspace_id = v_job.workspace_id and m.user_id = v_user;
  if v_role is null then
    perform private.fail(404, 'import_job_not_found', 'Import job not found');
  end if;
  if private.role_rank(v_role) < private.role_rank(p_min_role) then
    perform private.fail(403, 'insufficient_role', format('This needs the %s role or higher', p_min_role));
  end if;
  return v_job;
end
$$;

revoke all on function private.import_job_as(uuid, text) from public, anon, authenticated;

grant execute on function private.import_job_as(uuid, text) to authenticated;

-- Creates a job for a member (or above): orders and products into a project of the workspace,
-- contacts into the workspace. A file over 1 GiB is refused (413 file_too_large) before any
-- byte is sent, a workspace runs at most 3 jobs at once (409 too_many_import_jobs), and a
-- Storage object must lie in the workspace's own folder of the imports bucket and be visible to
-- the caller (403 storage_path_not_allowed, 404 storage_object_not_found). Spends one request of
-- the plan's import limit.
create function private.create_import_job(
  p_workspace_id uuid, p_project_id uuid, p_kind text, p_size_bytes bigint, p_file_name text,
  p_encoding text, p_column_map jsonb, p_storage_path text
)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_size bigint := p_size_bytes;
  v_job public.import_jobs;
begin
  perform private.workspace_role_as(p_workspace_id, 'member');
  if p_kind not in ('orders', 'contacts', 'products') or p_kind is null then
    perform private.fail(422, 'invalid_kind', 'kind is orders, contacts or products');
  end if;
  if p_kind <> 'contacts' and not exists (
    select 1 from public.projects p where p.id = p_project_id and p.workspace_id = p_workspace_id
  ) then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if p_storage_path is not null then
    if split_part(p_storage_path, '/', 1) <> p_workspace_id::text
       or p_storage_path like '%..%' or p_storage_path !~ '^[^/]+/.+' then
      perform private.fail(403, 'storage_path_not_allowed',
        'A file to import must be in the imports bucket under the workspace''s own folder: <workspace id>/<name>');
    end if;
    -- The caller is a member of the folder's workspace, which is what the bucket's policies ask.
    select (o.metadata ->> 'size')::bigint into v_size
    from storage.objects o where o.bucket_id = 'imports' and o.name = p_storage_path;
    if v_size is null then
      perform private.fail(404, 'storage_object_not_found', 'No such file in the imports bucket');
    end if;
  end if;
  if v_size is null or v_size < 1 then
    perform private.fail(422, 'invalid_size', 'size_bytes is the file''s size in bytes, at least 1');
  end if;
  if v_size > 1073741824 then
    perform private.fail(413, 'file_too_large', 'A file to import may have at most 1 GiB; split it into several files');
  end if;
  if coalesce(p_encoding, 'utf-8') not in ('utf-8', 'windows-1250', 'windows-1252', 'iso-8859-1', 'iso-8859-2') then
    perform private.fail(422, 'invalid_encoding', 'encoding is utf-8, windows-1250, windows-1252, iso-8859-1 or iso-8859-2');
  end if;
  if jsonb_typeof(coalesce(p_column_map, '{}'::jsonb)) <> 'object' then
    perform private.fail(422, 'invalid_column_map', 'column_map maps a file''s column names to ours (or null to skip)');
  end if;
  -- Serialises job creation per workspace so the running-jobs bound holds.
  perform 1 from public.workspaces w where w.id = p_workspace_id for update;
  if exists (
    select 1 from public.import_jobs j
    where j.workspace_id = p_workspace_id and j.status in ('uploading', 'validating', 'importing')
    offset 2
  ) then
    perform private.fail(409, 'too_many_import_jobs',
      'A workspace runs at most 3 imports at once; finish or cancel one first');
  end if;
  perform private.enforce_plan_rate_limits(p_workspace_id, v_user, 'import');
  insert into public.import_jobs (
    workspace_id, project_id, kind, source, storage_path, file_name, size_bytes, encoding,
    column_map, created_by
  )
  values (
    p_workspace_id, case when p_kind <> 'contacts' then p_project_id end, p_kind,
    case when p_storage_path is null then 'upload' else 'storage' end, p_storage_path,
    left(coalesce(p_file_name, storage.filename(p_storage_path)), 255), v_size,
    coalesce(p_encoding, 'utf-8'), coalesce(p_column_map, '{}'::jsonb), v_user
  )
  returning * into v_job;
  return v_job;
end
$$;

revoke all on function private.create_import_job(uuid, uuid, text, bigint, text, text, jsonb, text) from public, anon, authenticated;

grant execute on function private.create_import_job(uuid, uuid, text, bigint, text, text, jsonb, text) to authenticated;

-- Ends the upload: every part from 1 to the last must be there (409 import_part_missing, with
-- the first missing numbers) and add up to the declared size (409 import_size_mismatch). A job
-- already past uploading is returned as it is, so a repeated commit is harmless.
create function private.commit_import_job(p_job_id uuid)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs := private.import_job_as(p_job_id, 'member');
  v_missing integer[];
begin
  select * into v_job from public.import_jobs j where j.id = p_job_id for update;
  if v_job.status = 'cancelled' then
    perform private.fail(409, 'import_job_cancelled', 'This import was cancelled');
  end if;
  if v_job.status <> 'uploading' then
    return v_job;
  end if;
  if v_job.source = 'upload' then
    select coalesce(array_agg(n order by n), '{}') into v_missing
    from (
      select n from generate_series(1, greatest(
        (select max(p.part_number) from private.import_parts p where p.job_id = p_job_id), 1)) as n
      where not exists (select 1 from private.import_parts p where p.job_id = p_job_id and p.part_number = n)
      limit 20
    ) as gaps;
    if cardinality(v_missing) > 0 then
      raise exception using errcode = 'PT409', hint = 'import_part_missing',
        message = format('Part %s has not been uploaded', v_missing[1]),
        detail = jsonb_build_object('missing_parts', v_missing)::text;
    end if;
    if v_job.bytes_received <> v_job.size_bytes then
      raise exception using errcode = 'PT409', hint = 'import_size_mismatch',
        message = format('The parts hold %s bytes; the file was declared with %s', v_job.bytes_received, v_job.size_bytes),
        detail = jsonb_build_object('bytes_received', v_job.bytes_received, 'size_bytes', v_job.size_bytes)::text;
    end if;
  end if;
  update public.import_jobs j set status = 'validating', started_at = now()
  where j.id = p_job_id returning * into v_job;
  return v_job;
end
$$;

revoke all on function private.commit_import_job(uuid) from public, anon, authenticated;

grant execute on function private.commit_import_job(uuid) to authenticated;

-- Stops a job that has not ended (409 import_job_finished otherwise). What earlier chunks
-- imported stays: each chunk was whole.
create function private.cancel_import_job(p_job_id uuid)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs := private.import_job_as(p_job_id, 'member');
begin
  select * into v_job from public.import_jobs j where j.id = p_job_id for update;
  if v_job.status in ('done', 'failed', 'cancelled') then
    perform private.fail(409, 'import_job_finished', format('This import has already ended (%s)', v_job.status));
  end if;
  update public.import_jobs j set status = 'cancelled', finished_at = now()
  where j.id = p_job_id returning * into v_job;
  return v_job;
end
$$;

revoke all on function private.cancel_import_job(uuid) from public, anon, authenticated;

grant execute on function private.cancel_import_job(uuid) to authenticated;

-- functions: as the service (the edge's staging writes and the workers) ------------------------

-- Before a part's bytes are copied in: the job must still be uploading (409
-- import_not_uploading), and an earlier copy of the same part is removed (and taken off the
-- job's counts), so a retry replaces it.
create function private.begin_import_part(p_job_id uuid, p_part_number integer)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs;
begin
  select * into v_job from public.import_jobs j where j.id = p_job_id for update;
  if v_job.id is null then
    perform private.fail(404, 'import_job_not_found', 'Import job not found');
  end if;
  if v_job.status <> 'uploading' or v_job.source <> 'upload' then
    perform private.fail(409, 'import_not_uploading',
      format('Parts are accepted only while a job is uploading (this one is %s)', v_job.status));
  end if;
  if p_part_number is null or p_part_number not between 1 and 10000 then
    perform private.fail(422, 'invalid_part_number', 'Parts are numbered from 1 to 10000');
  end if;
  with replaced as (
    delete from private.import_parts p where p.job_id = p_job_id and p.part_number = p_part_number
    returning octet_length(p.body) as size
  )
  update public.import_jobs j
  set parts_received = j.parts_received - 1, bytes_received = j.bytes_received - r.size
  from replaced r
  where j.id = p_job_id
  returning j.* into v_job;
  if v_job.id is null then
    select * into v_job from public.import_jobs j where j.id = p_job_id;
  end if;
  return v_job;
end
$$;

revoke all on function private.begin_import_part(uuid, integer) from public, anon, authenticated;

grant execute on function private.begin_import_part(uuid, integer) to service_role;

-- After a part's bytes are in: the job counts it, and the parts may not add up to more than the
-- declared size (413 import_size_exceeded).
create function private.finish_import_part(p_job_id uuid, p_part_number integer)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs;
begin
  update public.import_jobs j
  set parts_received = j.parts_received + 1,
      bytes_received = j.bytes_received + (
        select octet_length(p.body) from private.import_parts p
        where p.job_id = p_job_id and p.part_number = p_part_number
      )
  where j.id = p_job_id returning * into v_job;
  if v_job.bytes_received > v_job.size_bytes then
    raise exception using errcode = 'PT413', hint = 'import_size_exceeded',
      message = format('The parts hold more than the %s bytes the file was declared with', v_job.size_bytes),
      detail = jsonb_build_object('size_bytes', v_job.size_bytes)::text;
  end if;
  return v_job;
end
$$;

revoke all on function private.finish_import_part(uuid, integer) from public, anon, authenticated;

grant execute on function private.finish_import_part(uuid, integer) to service_role;

-- The job, locked for this transaction, or nothing when another worker holds it or it is not
-- running: workers take it in turns, one step (a read of the file, a chunk) at a time.
create function private.lock_import_job(p_job_id uuid)
returns setof public.import_jobs
language sql
security definer
set search_path = ''
as $$
  select j.* from public.import_jobs j
  where j.id = p_job_id and j.status in ('validating', 'importing')
  for update skip locked
$$;

revoke all on function private.lock_import_job(uuid) from public, anon, authenticated;

grant execute on function private.lock_import_job(uuid) to service_role;

-- The file's columns as the header maps them (our column names in the file's order; '' for a
-- skipped column, 'attribute:<name>' for a contact attribute) and its delimiter, read once.
create function private.set_import_columns(p_job_id uuid, p_columns text[], p_delimiter text)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.import_jobs j set columns = p_columns, delimiter = p_delimiter where j.id = p_job_id
$$;

revoke all on function private.set_import_columns(uuid, text[], text) from public, anon, authenticated;

grant execute on function private.set_import_columns(uuid, text[], text) to service_role;

-- Where reading the file stands after a read step: the bytes and lines consumed and the
-- records staged. The next step starts there.
create function private.save_import_load(
  p_job_id uuid, p_offset bigint, p_line bigint, p_records bigint
)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.import_jobs j
  set load_offset = p_offset, load_line = p_line, load_record = p_records, rows_total = p_records
  where j.id = p_job_id
$$;

revoke all on function private.save_import_load(uuid, bigint, bigint, bigint) from public, anon, authenticated;

grant execute on function private.save_import_load(uuid, bigint, bigint, bigint) to service_role;

-- The job failed as a whole (a file that cannot be read, a header without the columns needed,
-- staging lost in a database restart): the reason is the job's, not a row's.
create function private.fail_import_job(p_job_id uuid, p_code text, p_message text)
returns public.import_jobs
language sql
security definer
set search_path = ''
as $$
  update public.import_jobs j
  set status = 'failed', error_code = p_code, error_message = left(p_message, 1000), finished_at = now()
  where j.id = p_job_id and j.status not in ('done', 'failed', 'cancelled')
  returning j.*
$$;

revoke all on function private.fail_import_job(uuid, text, text) from public, anon, authenticated;

grant execute on function private.fail_import_job(uuid, text, text) to service_role;

-- Stores a chunk's row errors up to the job's cap of 1000 and counts every failed row. The
-- rows are (line, column, reason); called by the kinds' chunk functions.
create function private.record_import_errors(p_job public.import_jobs, p_errors jsonb)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stored integer;
begin
  insert into public.import_errors (job_id, workspace_id, line, column_name, reason)
  select p_job.id, p_job.workspace_id, e.line, e.column_name, e.reason
  from jsonb_to_recordset(p_errors) as e(line bigint, column_name text, reason text)
  order by e.line
  limit greatest(1000 - p_job.errors_stored, 0)
  on conflict (job_id, workspace_id, line) do nothing;
  get diagnostics v_stored = row_count;
  update public.import_jobs j
  set errors_stored = j.errors_stored + v_stored, rows_failed = j.rows_failed + jsonb_array_length(p_errors)
  where j.id = p_job.id;
end
$$;

revoke all on function private.record_import_errors(public.import_jobs, jsonb) from public, anon, authenticated;

-- Running jobs for the cron to continue, oldest first; a job a worker holds is skipped.
create function private.running_import_jobs(p_limit integer)
returns table (id uuid, kind text)
language sql
stable
security definer
set search_path = ''
as $$
  select j.id, j.kind from public.import_jobs j
  where j.status in ('validating', 'importing')
  order by j.updated_at
  limit p_limit
$$;

revoke all on function private.running_import_jobs(integer) from public, anon, authenticated;

grant execute on function private.running_import_jobs(integer) to service_role;

-- Uploads not committed a day after they were created fail (and free their parts); finished jobs older than 90 days
-- go, with their errors.
create function private.prune_import_jobs()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_expired integer;
begin
  update public.import_jobs j
  set status = 'failed', error_code = 'upload_expired', finished_at = now(),
      error_message = 'The upload was not committed within 24 hours; upload the file again'
  where j.status = 'uploading' and j.created_at < now() - interval '24 hours';
  get diagnostics v_expired = row_count;
  delete from public.import_jobs j
  where j.status in ('done', 'failed', 'cancelled') and j.finished_at < now() - interval '90 days';
  return v_expired;
end
$$;

revoke all on function private.prune_import_jobs() from public, anon, authenticated;

grant execute on function private.prune_import_jobs() to service_role;

-- grants --------------------------------------------------------------------------------------

revoke all on public.import_jobs from anon, authenticated, public;

revoke all on public.import_errors from anon, authenticated, public;

revoke all on private.import_parts from public, anon, authenticated;

grant select on public.import_jobs, public.import_errors to authenticated;

grant select on public.import_jobs, public.import_errors to service_role;

-- The edge copies a part's bytes in, as the service.
grant select, insert on private.import_parts to service_role;

-- row level security --------------------------------------------------------------------------

alter table public.import_jobs enable row level security;

alter table public.import_errors enable row level security;

-- Members of any role may read their workspaces' import jobs; the edge writes them.
create policy import_jobs_select_members on public.import_jobs
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' import errors; imports write them.
create policy import_errors_select_members on public.import_errors
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));
