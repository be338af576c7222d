-- Exports expire. An access-request export is a zip of everything about a person: it is kept
-- only for the workspace's `export_days` (7 by default, 1 to 30), and then its Storage object
-- is removed and no link is signed for it any more. The database is the authority: a link is
-- issued only through public.issue_export_link, which refuses an expired export (410) at once,
-- before any job has run, signs for no longer than the export has left, and records who took a
-- link in the audit log. Expired exports keep their row (the proof that the request was
-- answered) without the file's path.
--
-- Files to remove are queued in private.storage_removals by a trigger whenever an export
-- loses its file: it expired, its contact was erased (their export is personal data like any
-- other: it goes with the erasure), or its row went with its workspace or contact. The cron
-- removes them from Storage in batches (api/privacy/exports.py), retrying on failure; an
-- export whose contact was erased while it ran has its freshly uploaded file queued too.

alter table public.workspace_privacy_settings
  add column export_days integer not null default 7 check (export_days between 1 and 30);

comment on column public.workspace_privacy_settings.export_days is
  'Days an access-request export''s file is kept (then removed from Storage; links are refused).';

create table private.storage_removals (
  bucket_id text not null check (char_length(bucket_id) <= 63),
  object_name text not null check (char_length(object_name) <= 1024),
  reason text not null check (reason in ('expired', 'contact_erased', 'row_deleted', 'orphaned')),
  attempts integer not null default 0 check (attempts >= 0),
  next_attempt_at timestamptz not null default now(),
  last_error text check (char_length(last_error) <= 500),
  requested_at timestamptz not null default now(),
  primary key (bucket_id, object_name)
);

comment on table private.storage_removals is
  'Storage objects (export files) to remove: expired, erased or orphaned; the cron removes them and retries failures.';

create index storage_removals_due_idx on private.storage_removals (bucket_id, next_attempt_at);

create index contact_exports_expiry_idx on public.contact_exports (expires_at) where status = 'done';

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'storage_removals', 'bucket_id', 'none', 'not_personal', null),
  ('private', 'storage_removals', 'object_name', 'none', 'not_personal', 'workspace and export ids'),
  ('private', 'storage_removals', 'reason', 'none', 'not_personal', null),
  ('private', 'storage_removals', 'last_error', 'none', 'not_personal', 'Storage''s error text');

-- queueing files -------------------------------------------------------------------------------

create function private.queue_storage_removal(p_bucket_id text, p_object_name text, p_reason text)
returns void
language sql
security definer
set search_path = ''
as $$
  insert into private.storage_removals (bucket_id, object_name, reason)
  values (p_bucket_id, p_object_name, p_reason)
  on conflict (bucket_id, object_name) do update set next_attempt_at = least(private.storage_removals.next_attempt_at, now())
$$;

revoke all on function private.queue_storage_removal(text, text, text) from public, anon, authenticated;

-- An export that loses its file (expired, erased, or its row deleted) queues the file.
create function private.queue_export_file_removal()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    perform private.queue_storage_removal('exports', old.storage_path, 'row_deleted');
    return old;
  end if;
  perform private.queue_storage_removal('exports', old.storage_path,
                                        case when new.error_code = 'contact_erased' then 'contact_erased' else 'expired' end);
  return null;
end
$$;

revoke all on function private.queue_export_file_removal() from public, anon, authenticated;

create trigger contact_exports_queue_file_removal
  after update of storage_path on public.contact_exports
  for each row
  when (old.storage_path is not null and new.storage_path is null)
  execute function private.queue_export_file_removal();

create trigger contact_exports_queue_file_removal_on_delete
  before delete on public.contact_exports
  for each row
  when (old.storage_path is not null)
  execute function private.queue_export_file_removal();

-- An erased contact's exports go with the erasure: a finished one loses its file now, one
-- still running fails (its upload, if it lands, is removed: private.finish_contact_export).
create function private.expire_exports_of_erased_contact()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.contact_exports e
  set status = 'expired', storage_path = null, error_code = 'contact_erased',
      error_message = 'The contact was erased', expires_at = least(coalesce(e.expires_at, now()), now())
  where e.contact_id = new.id and e.workspace_id = new.workspace_id and e.status = 'done';
  update public.contact_exports e
  set status = 'failed', progress = 100, error_code = 'contact_erased',
      error_message = 'The contact was erased while the export ran', finished_at = now()
  where e.contact_id = new.id and e.workspace_id = new.workspace_id and e.status in ('queued', 'running');
  return null;
end
$$;

revoke all on function private.expire_exports_of_erased_contact() from public, anon, authenticated;

create trigger contacts_expire_exports_on_erasure
  after update of erased_at on public.contacts
  for each row
  when (old.erased_at is null and new.erased_at is not null)
  execute function private.expire_exports_of_erased_contact();

-- finishing (redefined: the workspace's retention, and an upload that is no longer wanted) -----

create or replace function private.finish_contact_export(
  p_export_id uuid, p_storage_path text, p_tables jsonb, p_error_code text, p_error_message text
)
returns public.contact_exports
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_export public.contact_exports;
begin
  update public.contact_exports e
  set status = case when p_error_code is null then 'done' else 'failed' end,
      progress = 100,
      storage_path = p_storage_path,
      tables = coalesce(p_tables, '{}'::jsonb),
      error_code = p_error_code,
      error_message = left(p_error_message, 500),
      finished_at = now(),
      expires_at = case when p_error_code is null then now() + make_interval(days => coalesce(
        (select s.export_days from public.workspace_privacy_settings s where s.workspace_id = e.workspace_id), 7)) end
  where e.id = p_export_id and e.status = 'running'
  returning * into v_export;
  if v_export.id is null and p_storage_path is not null then
    -- Erased (or finished by another worker) meanwhile: the file just uploaded is not kept.
    if not exists (select from public.contact_exports e where e.id = p_export_id and e.storage_path = p_storage_path) then
      perform private.queue_storage_removal('exports', p_storage_path, 'orphaned');
    end if;
  end if;
  return v_export;
end
$$;

revoke all on function private.finish_contact_export(uuid, text, jsonb, text, text) from public, anon, authenticated;

grant execute on function private.finish_contact_export(uuid, text, jsonb, text, text) to service_role;

-- expiring -------------------------------------------------------------------------------------

-- Expires at most p_limit finished exports past their time (their files are queued by the
-- trigger above); answers how many.
create function private.expire_contact_exports(p_limit integer default 1000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  update public.contact_exports e set status = 'expired', storage_path = null
  where e.id in (
    select x.id from public.contact_exports x
    where x.status = 'done' and x.expires_at <= now()
    order by x.expires_at
    limit least(greatest(coalesce(p_limit, 1000), 1), 10000)
    for update skip locked
  );
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

revoke all on function private.expire_contact_exports(integer) from public, anon, authenticated;

grant execute on function private.expire_contact_exports(integer) to service_role;

-- Claims at most p_limit due removals of a bucket, leased for 5 minutes.
create function private.claim_storage_removals(p_bucket_id text, p_limit integer)
returns setof text
language plpgsql
security definer
set search_path = ''
as $$
begin
  return query
  update private.storage_removals r
  set attempts = r.attempts + 1, next_attempt_at = now() + interval '5 minutes'
  where (r.bucket_id, r.object_name) in (
    select x.bucket_id, x.object_name from private.storage_removals x
    where x.bucket_id = p_bucket_id and x.next_attempt_at <= now()
    order by x.next_attempt_at
    limit least(greatest(coalesce(p_limit, 100), 1), 1000)
    for update skip locked
  )
  returning r.object_name;
end
$$;

revoke all on function private.claim_storage_removals(text, integer) from public, anon, authenticated;

grant execute on function private.claim_storage_removals(text, integer) to service_role;

-- Storage removed them (p_error null: they leave the queue) or failed (again after 2^attempts
-- minutes, at most 6 hours apart; they stay queued until removed).
create function private.finish_storage_removals(p_bucket_id text, p_object_names text[], p_error text)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  if p_error is null then
    delete from private.storage_removals r
    where r.bucket_id = p_bucket_id and r.object_name = any (p_object_names);
  else
    update private.storage_removals r
    set last_error = left(p_error, 500),
        next_attempt_at = now() + least(interval '1 minute' * power(2, least(r.attempts, 20)), interval '6 hours')
    where r.bucket_id = p_bucket_id and r.object_name = any (p_object_names);
  end if;
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

revoke all on function private.finish_storage_removals(text, text[], text) from public, anon, authenticated;

grant execute on function private.finish_storage_removals(text, text[], text) to service_role;

-- links ----------------------------------------------------------------------------------------

-- An admin takes a download link: the file's path and how long a link may live (the export's
-- time left, at most 24 hours); null for an export that has no file yet (queued, running,
-- failed). An expired export is 410, another workspace's (or a member's ask) 404. Each link
-- taken is in the audit log.
create function public.issue_export_link(p_export_id uuid)
returns table (storage_path text, valid_seconds integer)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_export public.contact_exports;
begin
  perform private.require_user();
  select * into v_export from public.contact_exports e
  where e.id = p_export_id and e.workspace_id in (select private.user_workspace_ids_at_least('admin'));
  if v_export.id is null then
    perform private.fail(404, 'export_not_found', 'Export not found');
  end if;
  if v_export.status = 'expired' or (v_export.status = 'done' and v_export.expires_at <= now()) then
    perform private.fail(410, 'export_expired', 'This export has expired and its file was removed');
  end if;
  if v_export.status <> 'done' or v_export.storage_path is null then
    return;
  end if;
  perform private.audit(v_export.workspace_id, 'export.link_issued', 'contact', v_export.contact_id::text,
                        jsonb_build_object('export_id', v_export.id));
  storage_path := v_export.storage_path;
  valid_seconds := greatest(1, least(86400, floor(extract(epoch from v_export.expires_at - now()))::integer));
  return next;
end
$$;

revoke all on function public.issue_export_link(uuid) from public, anon;

grant execute on function public.issue_export_link(uuid) to authenticated;

comment on function public.issue_export_link(uuid) is
  'A download link''s file path and lifetime (at most 24 h, never past the export''s expiry) for admins; recorded in the audit log. 404 export_not_found, 410 export_expired.';

-- grants -------------------------------------------------------------------------------------

revoke all on private.storage_removals from public, anon, authenticated;

grant select, insert, update, delete on private.storage_removals to service_role;

grant update (export_days) on public.workspace_privacy_settings to authenticated;
