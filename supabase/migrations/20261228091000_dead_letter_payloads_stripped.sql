-- Dead-lettered webhook payloads (the replay gave up after eight attempts) were kept whole for
-- the platform's 30 days, whether or not any workspace owned them. What failed is worth reading
-- for a while, not for a month: the retention job now strips a dead letter to its non-personal
-- fields (private.webhook_payload_skeleton: provider ids, event type, times) 7 days after it
-- failed; the row itself goes with the other payloads at the 30 days (or its workspace's own
-- days). Until then an erasure finds it through the identity index, owned or not
-- (20261228090000).

create index webhook_events_dead_letters_idx on private.webhook_events (processed_at)
  where status = 'failed';

create or replace function private.prune_retention(p_batch integer default 10000)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_batch integer := least(greatest(coalesce(p_batch, 10000), 1), 10000);
  v_webhooks integer;
  v_recipients integer;
  v_audit integer;
  v_invitations integer;
  v_dead_letters integer;
begin
  -- Applied payloads past the platform's 30 days, and those of workspaces that keep them for
  -- fewer days (payloads attributed to them, private.attribute_webhook_event).
  delete from private.webhook_events e
  where e.id in (
    select x.id from private.webhook_events x
    left join public.workspace_privacy_settings s on s.workspace_id = x.workspace_id
    where x.status <> 'received'
      and x.received_at < now() - make_interval(days => least(coalesce(s.webhook_payload_days, 30), 30))
    order by x.received_at
    limit v_batch
    for update of x skip locked
  );
  get diagnostics v_webhooks = row_count;

  -- Dead letters (the replay gave up on them) keep their whole body for an operator to read
  -- and replay for 7 days after they failed, then only their non-personal fields until the
  -- deletion above takes them.
  update private.webhook_events e
  set body = private.webhook_payload_skeleton(e.provider, e.body)
  where e.id in (
    select x.id from private.webhook_events x
    where x.status = 'failed' and x.processed_at < now() - interval '7 days'
      and strpos(x.body, '"stripped": true') = 0
    order by x.processed_at
    limit v_batch
    for update of x skip locked
  );
  get diagnostics v_dead_letters = row_count;

  update public.campaign_recipients r set email = null, error = null
  where r.id in (
    select x.id from public.campaign_recipients x
    left join public.workspace_privacy_settings s on s.workspace_id = x.workspace_id
    where x.email is not null
      and x.sent_at < now() - interval '30 days'
      and x.sent_at < now() - make_interval(days => coalesce(s.email_event_days, 395))
      and x.status not in ('queued', 'sending')
    order by x.sent_at
    limit v_batch
    for update of x skip locked
  );
  get diagnostics v_recipients = row_count;

  perform pg_catalog.set_config('growthbase.pruning', 'on', true);
  delete from public.audit_log a
  where a.id in (
    select x.id from public.audit_log x
    left join public.workspace_privacy_settings s on s.workspace_id = x.workspace_id
    where x.created_at < now() - interval '90 days'
      and x.created_at < now() - make_interval(days => coalesce(s.audit_log_days, 730))
    order by x.created_at
    limit v_batch
    for update of x skip locked
  );
  get diagnostics v_audit = row_count;
  perform pg_catalog.set_config('growthbase.pruning', '', true);

  delete from public.workspace_invitations i
  where i.id in (
    select x.id from public.workspace_invitations x
    where x.expires_at < now() - interval '30 days'
      or (x.accepted_at is not null and x.accepted_at < now() - interval '30 days')
      or (x.revoked_at is not null and x.revoked_at < now() - interval '30 days')
    limit v_batch
    for update skip locked
  );
  get diagnostics v_invitations = row_count;

  return jsonb_build_object(
    'webhook_events', v_webhooks,
    'campaign_recipients', v_recipients,
    'audit_log', v_audit,
    'invitations', v_invitations,
    'dead_letters', v_dead_letters,
    'more', greatest(v_webhooks, v_recipients, v_audit, v_invitations, v_dead_letters) >= v_batch
  );
end
$$;

revoke all on function private.prune_retention(integer) from public, anon, authenticated;

grant execute on function private.prune_retention(integer) to service_role;
