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
