-- Shopify backfill through bulk operations (issue 14 §4): a shop's customers, then its orders,
-- then its products, each read by one bulk query (bulkOperationRunQuery) whose JSONL result the
-- edge streams a page at a time into the same page upserts the webhooks use
-- (private.upsert_shop_customers, private.upsert_orders, private.upsert_products).
--
-- One row per project and stream keeps the stream's bulk operation (its gid), what Shopify last
-- said of it (status, error code, objects) and how far its result has been written: the byte
-- offset after the last page written, with the records written and skipped so far. A page's
-- upsert and its offset commit together, so a call that dies resumes at its page (the result
-- is read again from that byte with an HTTP Range) and nothing is written twice. The signed
-- result URL is never stored: it is asked of Shopify on every call (it is a bearer link to the
-- shop's customers for seven days).
--
-- `bulk_operations/finish` (Shopify's webhook, signed with the app's secret like the other
-- topics) records the finished operation's status at once, so the next call reads the result
-- without waiting; every change is broadcast as shop_backfill_progress on the workspace's
-- private imports channel (members only), with source shopify.

create table private.shop_bulk_operations (
  project_id uuid not null,
  source text not null check (source = 'shopify'),
  stream text not null check (stream in ('customers', 'orders', 'products')),
  operation_id text not null check (operation_id ~ '^gid://shopify/BulkOperation/[0-9]{1,20}$'),
  status text not null default 'created'
    check (status in ('created', 'running', 'completed', 'canceling', 'canceled', 'failed', 'expired')),
  error_code text check (char_length(error_code) <= 100),
  object_count bigint,
  bytes_read bigint not null default 0 check (bytes_read >= 0),
  records integer not null default 0,
  skipped integer not null default 0,
  started_at timestamptz not null default now(),
  read_at timestamptz,
  updated_at timestamptz not null default now(),
  primary key (project_id, source, stream),
  foreign key (project_id, source) references private.integrations (project_id, source) on delete cascade
);

create index shop_bulk_operations_operation_idx on private.shop_bulk_operations (operation_id);

comment on table private.shop_bulk_operations is
  'A Shopify backfill''s bulk operation per project and stream, and how far its JSONL result has been written.';

-- A bulk backfill's rows hold a shop's operation ids and counts, nobody's data.
insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'shop_bulk_operations', 'source', 'none', 'not_personal', 'a shop backfill''s progress'),
  ('private', 'shop_bulk_operations', 'stream', 'none', 'not_personal', null),
  ('private', 'shop_bulk_operations', 'operation_id', 'none', 'not_personal', null),
  ('private', 'shop_bulk_operations', 'status', 'none', 'not_personal', null),
  ('private', 'shop_bulk_operations', 'error_code', 'none', 'not_personal', null);

-- functions -----------------------------------------------------------------------------------

-- Broadcasts a stream's state on the workspace's imports channel.
create function private.broadcast_shop_bulk_operation(p_project_id uuid, p_stream text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_operation private.shop_bulk_operations;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  select * into v_operation from private.shop_bulk_operations b
  where b.project_id = p_project_id and b.source = 'shopify' and b.stream = p_stream;
  if v_workspace_id is null or v_operation.project_id is null then
    return;
  end if;
  perform realtime.send(
    jsonb_build_object(
      'project_id', p_project_id, 'source', 'shopify', 'stream', p_stream,
      'status', v_operation.status, 'error_code', v_operation.error_code,
      'objects', v_operation.object_count, 'records', v_operation.records,
      'skipped', v_operation.skipped, 'bytes_read', v_operation.bytes_read,
      'read', v_operation.read_at is not null
    ),
    'shop_backfill_progress',
    format('workspace:%s:imports', v_workspace_id),
    true
  );
end
$$;

revoke all on function private.broadcast_shop_bulk_operation(uuid, text) from public, anon, authenticated;

grant execute on function private.broadcast_shop_bulk_operation(uuid, text) to service_role;

-- A new bulk operation for a stream: the stream starts again from its first byte.
create function private.start_shop_bulk_operation(p_project_id uuid, p_stream text, p_operation_id text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into private.shop_bulk_operations as b (project_id, source, stream, operation_id)
  values (p_project_id, 'shopify', p_stream, p_operation_id)
  on conflict (project_id, source, stream) do update
  set operation_id = excluded.operation_id, status = 'created', error_code = null,
      object_count = null, bytes_read = 0, records = 0, skipped = 0, started_at = now(),
      read_at = null, updated_at = now();
  perform private.broadcast_shop_bulk_operation(p_project_id, p_stream);
end
$$;

revoke all on function private.start_shop_bulk_operation(uuid, text, text) from public, anon, authenticated;

grant execute on function private.start_shop_bulk_operation(uuid, text, text) to service_role;

-- What Shopify said of an operation (polled, or its bulk_operations/finish webhook): its status
-- (Shopify's enum, any case), error code and objects. Only the project's current operation of
-- that id is touched, and a finished status is never taken back by a late poll. Answers
-- whether the operation was the project's.
create function private.note_shop_bulk_operation(
  p_project_id uuid, p_operation_id text, p_status text, p_error_code text, p_object_count bigint
)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stream text;
  v_status text := lower(p_status);
begin
  if v_status not in ('created', 'running', 'completed', 'canceling', 'canceled', 'failed', 'expired') then
    return false;
  end if;
  update private.shop_bulk_operations b
  set status = v_status, error_code = left(p_error_code, 100),
      object_count = coalesce(p_object_count, b.object_count), updated_at = now()
  where b.project_id = p_project_id and b.source = 'shopify' and b.operation_id = p_operation_id
    and (b.status in ('created', 'running', 'canceling') or v_status = 'expired')
    and (b.status, b.error_code, b.object_count) is distinct from
        (v_status, left(p_error_code, 100), coalesce(p_object_count, b.object_count))
  returning b.stream into v_stream;
  if v_stream is not null then
    perform private.broadcast_shop_bulk_operation(p_project_id, v_stream);
  end if;
  return v_stream is not null or exists (
    select 1 from private.shop_bulk_operations b
    where b.project_id = p_project_id and b.source = 'shopify' and b.operation_id = p_operation_id
  );
end
$$;

revoke all on function private.note_shop_bulk_operation(uuid, text, text, text, bigint) from public, anon, authenticated;

grant execute on function private.note_shop_bulk_operation(uuid, text, text, text, bigint) to service_role;

-- A page of the operation's result written (in the caller's transaction, with the page's
-- upsert): the byte after it, its records and skipped lines; p_read: the result is read to its
-- end. Refused (false) when the stream's operation is no longer p_operation_id (a newer call
-- started another), so the caller rolls its page back.
create function private.save_shop_bulk_page(
  p_project_id uuid, p_stream text, p_operation_id text, p_bytes_read bigint, p_records integer,
  p_skipped integer, p_read boolean
)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  update private.shop_bulk_operations b
  set bytes_read = p_bytes_read, records = b.records + p_records, skipped = b.skipped + p_skipped,
      read_at = case when p_read then now() end, updated_at = now()
  where b.project_id = p_project_id and b.source = 'shopify' and b.stream = p_stream
    and b.operation_id = p_operation_id and b.read_at is null and b.bytes_read <= p_bytes_read;
  if not found then
    return false;
  end if;
  perform private.broadcast_shop_bulk_operation(p_project_id, p_stream);
  return true;
end
$$;

revoke all on function private.save_shop_bulk_page(uuid, text, text, bigint, integer, integer, boolean) from public, anon, authenticated;

grant execute on function private.save_shop_bulk_page(uuid, text, text, bigint, integer, integer, boolean) to service_role;

-- grants --------------------------------------------------------------------------------------

revoke all on private.shop_bulk_operations from public, anon, authenticated;

grant select, insert, update, delete on private.shop_bulk_operations to service_role;

alter table private.shop_bulk_operations enable row level security;
