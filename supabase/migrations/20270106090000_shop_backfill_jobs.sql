-- Shop backfills as import jobs (issue 14 §4: a backfill reports "progress as an import job"):
-- the Shopify bulk backfill, the WooCommerce REST backfill, the Shoptet sync and the Shoptet
-- catalog sync each run as a row of public.import_jobs, so members read them under RLS beside
-- their CSV imports, follow them on workspace:<id>:imports (import_progress, as every change of
-- a job), and cancel them with POST /api/v1/imports/{id}/cancel.
--
--   source  shopify | woocommerce | shoptet (a file's is upload | storage)
--   kind    backfill: customers, orders and products (Shopify, WooCommerce), orders then
--           customers (the Shoptet sync) | products: the Shoptet catalog
--   status  importing → done | failed | cancelled (nothing is uploaded or validated)
--   counts  rows_processed: records read; rows_failed: records skipped (without what they
--           need, as the backfill's answer counts them); stream_records: records written per
--           stream; stream: the stream the job is on. rows_total stays null (a shop tells a
--           stream's pages as it goes; size_bytes and encoding are a file's and stay null).
--
-- A project runs at most one backfill job per source and kind: a call carries on the running
-- one or starts one. Each page's upsert, its position and the job's counts commit together, and
-- a page is written only while its job is importing (the job's row is locked first), so a job
-- cancelled mid-call takes no page after the cancel and no page is counted twice. The last page
-- ends the job (done) in its own transaction. A cancelled or failed job's positions stay: the
-- next call starts a new job that carries on where the last one stopped (a Shopify bulk query
-- that was running at Shopify is read by it too). A failure the shop owner must act on (the
-- shop refusing the credentials, the plan's contacts full) fails the job with its code; one the
-- next call may not meet (the shop unavailable, another bulk query running) leaves it
-- importing. Disconnecting the shop fails its running jobs (integration_disconnected). The
-- workers of file imports (the commit call, the import cron) never take a backfill job, and
-- backfills do not count against a workspace's 3 running imports.

alter table public.import_jobs drop constraint import_jobs_kind_check;

alter table public.import_jobs
  add constraint import_jobs_kind_check check (kind in ('orders', 'contacts', 'products', 'backfill'));

alter table public.import_jobs drop constraint import_jobs_source_check;

alter table public.import_jobs
  add constraint import_jobs_source_check
  check (source in ('upload', 'storage', 'shopify', 'woocommerce', 'shoptet'));

alter table public.import_jobs alter column size_bytes drop not null;

alter table public.import_jobs alter column encoding drop not null;

alter table public.import_jobs
  add column stream text check (stream in ('customers', 'orders', 'products'));

alter table public.import_jobs
  add column stream_records jsonb not null default '{}'::jsonb
  check (jsonb_typeof(stream_records) = 'object');

-- A file's job has its size and encoding; a shop's has neither, belongs to a project and reads
-- a shop's streams.
alter table public.import_jobs
  add constraint import_jobs_file_or_shop check (
    case when source in ('upload', 'storage')
      then size_bytes is not null and encoding is not null and kind <> 'backfill' and stream is null
      else size_bytes is null and encoding is null and project_id is not null
           and kind in ('backfill', 'products')
    end
  );

comment on column public.import_jobs.stream is
  'A shop backfill''s stream it is on (customers, orders, products); null for a file.';

comment on column public.import_jobs.stream_records is
  'A shop backfill''s records written per stream, {"customers": 1200, "orders": 800}; {} for a file.';

comment on table public.import_jobs is
  'An import of orders, contacts or products from a CSV (source upload or storage) or a shop backfill (source shopify, woocommerce or shoptet): uploading → validating → importing → done, failed or cancelled, with its counts. Members read; the edge writes. Progress is broadcast on workspace:<id>:imports.';

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'import_jobs', 'stream', 'none', 'not_personal', 'a shop backfill''s stream'),
  ('public', 'import_jobs', 'stream_records', 'none', 'not_personal', 'counts per stream');

-- indexes and triggers ------------------------------------------------------------------------

create unique index import_jobs_running_backfill_idx on public.import_jobs (project_id, source, kind)
  where status = 'importing' and source in ('shopify', 'woocommerce', 'shoptet');

-- A shop disconnected: its running backfills cannot go on (their positions went with it).
create function private.fail_backfills_of_disconnected_shop()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.import_jobs j
  set status = 'failed', finished_at = now(), error_code = 'integration_disconnected',
      error_message = 'The shop was disconnected; connect it again and start the backfill again'
  from gone g
  where j.project_id = g.project_id and j.source = g.source and j.status = 'importing';
  return null;
end
$$;

revoke all on function private.fail_backfills_of_disconnected_shop() from public, anon, authenticated;

create trigger integrations_fail_backfills
  after delete on private.integrations
  referencing old table as gone
  for each statement execute function private.fail_backfills_of_disconnected_shop();

-- Every change of a job on the workspace's private channel, as 20261201100000_import_jobs.sql,
-- now with its source and, for a shop backfill, its stream and records per stream.
create or replace function private.broadcast_import_progress()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform realtime.send(
    jsonb_build_object(
      'id', new.id, 'kind', new.kind, 'source', new.source, 'project_id', new.project_id,
      'status', new.status, 'parts_received', new.parts_received,
      'bytes_received', new.bytes_received, 'size_bytes', new.size_bytes,
      'rows_total', new.rows_total, 'rows_processed', new.rows_processed,
      'rows_failed', new.rows_failed, 'created', new.created, 'updated', new.updated,
      'unchanged', new.unchanged, 'stream', new.stream, 'stream_records', new.stream_records,
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

-- functions: as the user ----------------------------------------------------------------------

-- The project's running backfill job of this source and kind, or a new one, for members and
-- above of its workspace (404 project_not_found, 403 insufficient_role for anyone else).
create function private.begin_shop_backfill(p_project_id uuid, p_source text, p_kind text)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid := private.project_workspace_as(p_project_id, 'member');
  v_job public.import_jobs;
begin
  if p_source is null or p_kind is null or p_source not in ('shopify', 'woocommerce', 'shoptet')
     or p_kind not in ('backfill', 'products') or (p_kind = 'products' and p_source <> 'shoptet') then
    perform private.fail(422, 'invalid_backfill',
      'A backfill reads shopify, woocommerce or shoptet (kind backfill), or Shoptet''s catalog (kind products)');
  end if;
  -- A job cancelled between the insert that found it and the read is started anew.
  for attempt in 1..3 loop
    insert into public.import_jobs as j (
      workspace_id, project_id, kind, status, source, size_bytes, encoding, created_by, started_at
    )
    values (v_workspace_id, p_project_id, p_kind, 'importing', p_source, null, null, auth.uid(), now())
    on conflict (project_id, source, kind)
      where status = 'importing' and source in ('shopify', 'woocommerce', 'shoptet')
      do nothing
    returning j.* into v_job;
    if v_job.id is null then
      select j.* into v_job from public.import_jobs j
      where j.project_id = p_project_id and j.source = p_source and j.kind = p_kind
        and j.status = 'importing';
    end if;
    exit when v_job.id is not null or attempt = 3;
  end loop;
  return v_job;
end
$$;

revoke all on function private.begin_shop_backfill(uuid, text, text) from public, anon, authenticated;

grant execute on function private.begin_shop_backfill(uuid, text, text) to authenticated;

-- functions: as the service (the edge's backfill pages, the cron) ----------------------------

-- A page of a backfill, in the page's own transaction and before its upsert: the job locked,
-- its counts moved and its stream noted. False when the job is no longer importing (cancelled,
-- failed, done): the caller rolls the page back and stops.
create function private.count_shop_backfill_page(
  p_job_id uuid, p_stream text, p_written integer, p_skipped integer
)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.import_jobs j
  set stream = p_stream,
      rows_processed = j.rows_processed + p_written + p_skipped,
      rows_failed = j.rows_failed + p_skipped,
      stream_records = j.stream_records || jsonb_build_object(
        p_stream, coalesce((j.stream_records ->> p_stream)::bigint, 0) + p_written)
  where j.id = p_job_id and j.status = 'importing'
    and j.source in ('shopify', 'woocommerce', 'shoptet');
  return found;
end
$$;

revoke all on function private.count_shop_backfill_page(uuid, text, integer, integer) from public, anon, authenticated;

grant execute on function private.count_shop_backfill_page(uuid, text, integer, integer) to service_role;

-- The backfill read its last page (in that page's transaction): done.
create function private.finish_shop_backfill(p_job_id uuid)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.import_jobs j set status = 'done', stream = null, finished_at = now()
  where j.id = p_job_id and j.status = 'importing'
    and j.source in ('shopify', 'woocommerce', 'shoptet')
$$;

revoke all on function private.finish_shop_backfill(uuid) from public, anon, authenticated;

grant execute on function private.finish_shop_backfill(uuid) to service_role;

-- Whether the job still runs (a call checks before it starts a stream's bulk query).
create function private.shop_backfill_running(p_job_id uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.import_jobs j where j.id = p_job_id and j.status = 'importing'
  )
$$;

revoke all on function private.shop_backfill_running(uuid) from public, anon, authenticated;

grant execute on function private.shop_backfill_running(uuid) to service_role;

-- Shopify backfills the cron carries on, as 20261224094000_shopify_backfill_cron.sql, now only
-- those whose job runs (a cancelled or failed one waits for its owner), with that job.
drop function private.shopify_backfills_due(integer);

create function private.shopify_backfills_due(p_limit integer)
returns table (project_id uuid, job_id uuid)
language sql
stable
security definer
set search_path = ''
as $$
  select b.project_id, j.id
  from private.shop_bulk_operations b
  join private.integrations i on i.project_id = b.project_id and i.source = b.source
  join public.import_jobs j
    on j.project_id = b.project_id and j.source = b.source and j.kind = 'backfill'
   and j.status = 'importing'
  where b.source = 'shopify' and b.read_at is null
    and b.status in ('created', 'running', 'canceling', 'completed')
    and i.api_token_encrypted is not null
  group by b.project_id, j.id
  order by min(b.updated_at)
  limit greatest(p_limit, 0)
$$;

revoke all on function private.shopify_backfills_due(integer) from public, anon, authenticated;

grant execute on function private.shopify_backfills_due(integer) to service_role;

-- A Shopify backfill that read every stream starts over (called again after it finished): its
-- streams' operations are forgotten, so every stream's query runs again from its first object.
-- Before, only the first stream's was replaced and the others' finished rows were taken as
-- read, so a second round re-read customers alone.
create function private.restart_shopify_backfill(p_project_id uuid)
returns void
language sql
security definer
set search_path = ''
as $$
  delete from private.shop_bulk_operations b
  where b.project_id = p_project_id and b.source = 'shopify'
$$;

revoke all on function private.restart_shopify_backfill(uuid) from public, anon, authenticated;

grant execute on function private.restart_shopify_backfill(uuid) to service_role;

-- A page of a stream's result is about to be written from byte p_from (after the page's job
-- was counted, in the page's transaction): the stream's row locked, and true only while its
-- operation is p_operation_id, not read to its end, and its committed offset is p_from. Two
-- readers of one result at once (the cron and the owner's call) so never write, nor count, a
-- page twice: the later finds the offset moved on and stops.
create function private.claim_shop_bulk_page(
  p_project_id uuid, p_stream text, p_operation_id text, p_from bigint
)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform 1 from private.shop_bulk_operations b
  where b.project_id = p_project_id and b.source = 'shopify' and b.stream = p_stream
    and b.operation_id = p_operation_id and b.read_at is null and b.bytes_read = p_from
  for update;
  return found;
end
$$;

revoke all on function private.claim_shop_bulk_page(uuid, text, text, bigint) from public, anon, authenticated;

grant execute on function private.claim_shop_bulk_page(uuid, text, text, bigint) to service_role;

-- The workers of file imports take only a file's jobs, as 20261201100000_import_jobs.sql.
create or replace function private.lock_import_job(p_job_id uuid)
returns setof public.import_jobs
language sql
security definer
set search_path = ''
as $$
  select j.* from public.import_jobs j
  where j.id = p_job_id and j.status in ('validating', 'importing')
    and j.source in ('upload', 'storage')
  for update skip locked
$$;

revoke all on function private.lock_import_job(uuid) from public, anon, authenticated;

grant execute on function private.lock_import_job(uuid) to service_role;

create or replace function private.running_import_jobs(p_limit integer)
returns table (id uuid, kind text)
language sql
stable
security definer
set search_path = ''
as $$
  select j.id, j.kind from public.import_jobs j
  where j.status in ('validating', 'importing') and j.source in ('upload', 'storage')
  order by j.updated_at
  limit p_limit
$$;

revoke all on function private.running_import_jobs(integer) from public, anon, authenticated;

grant execute on function private.running_import_jobs(integer) to service_role;

-- Creating a file's import job, as 20261201100000_import_jobs.sql; the bound of 3 running jobs
-- counts files only (a backfill is bounded per project, source and kind).
create or replace function private.create_import_job(
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
      and j.source in ('upload', 'storage')
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

-- data ----------------------------------------------------------------------------------------

-- Backfills under way when this lands (Shopify's cron carries them on) get their job, so they
-- go on as before and show.
insert into public.import_jobs (
  workspace_id, project_id, kind, status, source, size_bytes, encoding, started_at
)
select p.workspace_id, p.id, 'backfill', 'importing', 'shopify', null, null, min(b.started_at)
from private.shop_bulk_operations b
join public.projects p on p.id = b.project_id
where b.source = 'shopify' and b.read_at is null
  and b.status in ('created', 'running', 'canceling', 'completed')
group by p.workspace_id, p.id;
