-- A failed Shopify bulk query's partial results are kept (issue 14 §4): Shopify gives a failed
-- operation that read some objects a `partialDataUrl` (its JSONL up to the failure). The edge
-- reads it like a completed result, from the stream's committed byte offset, a page at a time,
-- and then starts the stream's query again only for what is missing: every query sorts its
-- root objects by id, so the restart asks for ids after the last root written
-- (`query: "id:>N"`). The last root of partial data is never written from it (its children may
-- have been cut off): the restart reads it whole.
--
-- resume_after: the largest root id (Shopify's numeric id) this backfill has written for the
-- stream, kept across the stream's operations; a canceled or expired operation restarts after
-- it too. A backfill that starts over (called again after it finished) starts from null.

alter table private.shop_bulk_operations add column resume_after bigint check (resume_after > 0);

comment on column private.shop_bulk_operations.resume_after is
  'The largest root id written for the stream by this backfill: a restarted query asks only for ids after it.';

-- A new bulk operation for a stream, from its first byte; p_resume_after: the ids it starts
-- after (null: a backfill from the start).
drop function private.start_shop_bulk_operation(uuid, text, text);

create function private.start_shop_bulk_operation(
  p_project_id uuid, p_stream text, p_operation_id text, p_resume_after bigint
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into private.shop_bulk_operations as b (project_id, source, stream, operation_id, resume_after)
  values (p_project_id, 'shopify', p_stream, p_operation_id, p_resume_after)
  on conflict (project_id, source, stream) do update
  set operation_id = excluded.operation_id, status = 'created', error_code = null,
      object_count = null, bytes_read = 0, records = 0, skipped = 0, started_at = now(),
      read_at = null, updated_at = now(), resume_after = excluded.resume_after;
  perform private.broadcast_shop_bulk_operation(p_project_id, p_stream);
end
$$;

revoke all on function private.start_shop_bulk_operation(uuid, text, text, bigint) from public, anon, authenticated;

grant execute on function private.start_shop_bulk_operation(uuid, text, text, bigint) to service_role;

-- A page of the operation's result (completed, or a failed one's partial data) written, as
-- 20261224091000_shopify_bulk_backfill.sql, with the largest root id it wrote (null: none).
drop function private.save_shop_bulk_page(uuid, text, text, bigint, integer, integer, boolean);

create function private.save_shop_bulk_page(
  p_project_id uuid, p_stream text, p_operation_id text, p_bytes_read bigint, p_records integer,
  p_skipped integer, p_read boolean, p_last_id bigint
)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  update private.shop_bulk_operations b
  set bytes_read = p_bytes_read, records = b.records + p_records, skipped = b.skipped + p_skipped,
      read_at = case when p_read then now() end, updated_at = now(),
      resume_after = greatest(b.resume_after, p_last_id)
  where b.project_id = p_project_id and b.source = 'shopify' and b.stream = p_stream
    and b.operation_id = p_operation_id and b.read_at is null and b.bytes_read <= p_bytes_read;
  if not found then
    return false;
  end if;
  perform private.broadcast_shop_bulk_operation(p_project_id, p_stream);
  return true;
end
$$;

revoke all on function private.save_shop_bulk_page(uuid, text, text, bigint, integer, integer, boolean, bigint) from public, anon, authenticated;

grant execute on function private.save_shop_bulk_page(uuid, text, text, bigint, integer, integer, boolean, bigint) to service_role;
