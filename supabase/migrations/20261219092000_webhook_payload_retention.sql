-- Per-workspace retention of raw webhook payloads. A workspace may keep the payloads of its own
-- webhooks for fewer days than the platform's 30 after they were applied
-- (workspace_privacy_settings.webhook_payload_days, 1-30; a payload still waiting to be applied
-- is kept whatever the setting, so replay still works). For that a payload needs a workspace:
-- private.webhook_events.workspace_id is set on insert from the event id where the edge puts
-- the owner there: `<project id>:…` (Shopify, WooCommerce, Shoptet) and `<channel id>:…`
-- (WhatsApp, Telegram, X). Payloads that name no owner at intake stay unattributed and follow
-- the platform's 30 days: SES events (the SNS topic is the platform's; the workspace is only
-- known once the message id is matched to a recipient when applied, and an event for an unknown
-- message has none), inbound email (the workspace follows from the recipient address while
-- applying; one mail may reach several workspaces), Razorpay (the platform's account) and Make
-- callbacks (matched to an automation while applying). No foreign key: a deleted workspace's
-- payloads simply age out by the platform's days.

alter table private.webhook_events add column workspace_id uuid;

comment on column private.webhook_events.workspace_id is
  'The workspace the payload belongs to, when its event id names a project or channel (set on insert); null: the platform''s retention applies.';

create index webhook_events_workspace_retention_idx on private.webhook_events (workspace_id, received_at)
  where workspace_id is not null and status <> 'received';

alter table public.workspace_privacy_settings
  add column webhook_payload_days integer not null default 30 check (webhook_payload_days between 1 and 30);

comment on column public.workspace_privacy_settings.webhook_payload_days is
  'Days after receipt that the workspace''s applied raw webhook payloads are kept (at most the platform''s 30).';

grant update (webhook_payload_days) on public.workspace_privacy_settings to authenticated;

-- The owner named by the event id's first part (a project or a channel id), if any.
create function private.webhook_event_workspace(p_event_id text)
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_owner text := split_part(p_event_id, ':', 1);
  v_workspace_id uuid;
begin
  if v_owner !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$' then
    return null;
  end if;
  select p.workspace_id into v_workspace_id from public.projects p where p.id = v_owner::uuid;
  if v_workspace_id is null then
    select c.workspace_id into v_workspace_id from public.channels c where c.id = v_owner::uuid;
  end if;
  return v_workspace_id;
end
$$;

revoke all on function private.webhook_event_workspace(text) from public, anon, authenticated;

grant execute on function private.webhook_event_workspace(text) to service_role;

create function private.attribute_webhook_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.workspace_id is null then
    new.workspace_id := private.webhook_event_workspace(new.event_id);
  end if;
  return new;
end
$$;

revoke all on function private.attribute_webhook_event() from public, anon, authenticated;

create trigger webhook_events_attribute_workspace
  before insert on private.webhook_events
  for each row execute function private.attribute_webhook_event();

update private.webhook_events e
set workspace_id = private.webhook_event_workspace(e.event_id)
where e.workspace_id is null
  and split_part(e.event_id, ':', 1) ~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';

-- Removes what is past its retention, at most p_batch rows of each kind (as before, with the
-- workspace's own days for its attributed webhook payloads); answers the counts and whether
-- any kind had more.
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
