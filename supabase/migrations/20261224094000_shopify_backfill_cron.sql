-- Shopify backfills carried on by the cron (issue 14 §4): a backfill whose bulk query is still
-- running, or finished and not read to its end, goes on without its caller calling again. The
-- cron asks for the projects that have one, the longest waiting first; a failed, canceled or
-- expired query is left to the shop owner's next call (it would fail again every minute).

create function private.shopify_backfills_due(p_limit integer)
returns table (project_id uuid)
language sql
stable
security definer
set search_path = ''
as $$
  select b.project_id
  from private.shop_bulk_operations b
  join private.integrations i on i.project_id = b.project_id and i.source = b.source
  where b.source = 'shopify' and b.read_at is null
    and b.status in ('created', 'running', 'canceling', 'completed')
    and i.api_token_encrypted is not null
  group by b.project_id
  order by min(b.updated_at)
  limit greatest(p_limit, 0)
$$;

revoke all on function private.shopify_backfills_due(integer) from public, anon, authenticated;

grant execute on function private.shopify_backfills_due(integer) to service_role;
