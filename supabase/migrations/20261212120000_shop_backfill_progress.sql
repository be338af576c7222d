-- A shop backfill's progress (issue 14 §4: WooCommerce customers and orders read through its
-- REST API a page at a time): after every page, on the workspace's private imports channel
-- (members only, as import jobs' progress), event shop_backfill_progress: project, source,
-- stream (customers, orders), the page just written, the pages there are and the records the
-- page upserted. The page's position is kept in private.sync_streams, so a backfill that stops
-- resumes at its page.

create function private.broadcast_shop_backfill(
  p_project_id uuid, p_source text, p_stream text, p_page integer, p_pages integer, p_records integer
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    return;
  end if;
  perform realtime.send(
    jsonb_build_object(
      'project_id', p_project_id, 'source', p_source, 'stream', p_stream, 'page', p_page,
      'pages', p_pages, 'records', p_records
    ),
    'shop_backfill_progress',
    format('workspace:%s:imports', v_workspace_id),
    true
  );
end
$$;

revoke all on function private.broadcast_shop_backfill(uuid, text, text, integer, integer, integer) from public, anon, authenticated;

grant execute on function private.broadcast_shop_backfill(uuid, text, text, integer, integer, integer) to service_role;
