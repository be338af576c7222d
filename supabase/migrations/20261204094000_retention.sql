-- Retention: personal data is kept only as long as it serves. Per workspace (with safe
-- defaults, in public.workspace_privacy_settings): campaign recipients' addresses and provider
-- messages 13 months after sending (the counts and times the campaign statistics read stay),
-- the audit log 2 years. Across the platform: raw webhook payloads 30 days after they were
-- applied (a payload still waiting to be applied is kept), ended invitations 30 days.
-- Consent records stay (they are the proof) until the contact is erased or deleted; erased
-- people's keyed hashes stay (they keep them from being mailed).
--
-- private.prune_retention removes at most p_batch rows per kind per call, each kind in its own
-- statement over rows it locks with skip locked, so it never waits on the send pipeline or a
-- sync; the cron calls it again while it reports more.

alter table public.workspace_privacy_settings
  add column email_event_days integer not null default 395 check (email_event_days between 30 and 3650),
  add column audit_log_days integer not null default 730 check (audit_log_days between 90 and 3650);

comment on column public.workspace_privacy_settings.email_event_days is
  'Days after sending that a campaign recipient keeps its address (the campaign''s counts stay).';

comment on column public.workspace_privacy_settings.audit_log_days is
  'Days the audit log keeps an entry.';

create index campaign_recipients_retention_idx on public.campaign_recipients (sent_at)
  where email is not null;

create index webhook_events_retention_idx on private.webhook_events (received_at)
  where status <> 'received';

create index workspace_invitations_ended_idx on public.workspace_invitations (expires_at);

-- Removes what is past its retention, at most p_batch rows of each kind; answers the counts
-- and whether any kind had more.
create function private.prune_retention(p_batch integer default 10000)
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
begin
  delete from private.webhook_events e
  where e.id in (
    select x.id from private.webhook_events x
    where x.status <> 'received' and x.received_at < now() - interval '30 days'
    order by x.received_at
    limit v_batch
    for update skip locked
  );
  get diagnostics v_webhooks = row_count;

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
    'more', greatest(v_webhooks, v_recipients, v_audit, v_invitations) >= v_batch
  );
end
$$;

revoke all on function private.prune_retention(integer) from public, anon, authenticated;

grant execute on function private.prune_retention(integer) to service_role;

grant update (email_event_days, audit_log_days) on public.workspace_privacy_settings to authenticated;
