-- Records what became of a stored webhook that the edge applied itself (shop webhooks map and
-- upsert orders in the edge, then say how it went).

create function private.finish_webhook_event(p_event_id uuid, p_outcome text)
returns void
language sql
security definer
set search_path = ''
as $$
  update private.webhook_events
  set status = case when p_outcome = 'applied' then 'applied' else 'ignored' end,
      outcome = p_outcome, processed_at = now()
  where id = p_event_id
$$;

revoke all on function private.finish_webhook_event(uuid, text) from public, anon, authenticated;

grant execute on function private.finish_webhook_event(uuid, text) to service_role;

-- Stored webhooks never processed (their apply failed or the instance stopped): the cron
-- replays them.
create function private.unprocessed_webhook_events(p_provider text, p_limit integer)
returns setof private.webhook_events
language sql
stable
security definer
set search_path = ''
as $$
  select * from private.webhook_events
  where provider = p_provider and status = 'received' and received_at < now() - interval '1 minute'
  order by received_at
  limit p_limit
$$;

revoke all on function private.unprocessed_webhook_events(text, integer) from public, anon, authenticated;

grant execute on function private.unprocessed_webhook_events(text, integer) to service_role;
