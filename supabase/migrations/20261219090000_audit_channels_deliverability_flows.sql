-- The audit log also records inbox channel changes (connected, reconnected, disconnected,
-- revoked, removed), deliverability threshold changes, sending-pause acknowledgements and flow
-- status changes. Written by triggers on the tables that hold the change, as the other entries
-- (20261204093000_audit_log.sql), so no writer (edge, RPC, Data API) can skip them. Details hold
-- kinds, statuses and thresholds, never an address, a token or a name.

create function private.audit_channel_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.audit(new.workspace_id, 'channel.connected', 'channel', new.id::text,
                          jsonb_build_object('kind', new.kind));
  elsif tg_op = 'DELETE' then
    perform private.audit(old.workspace_id, 'channel.removed', 'channel', old.id::text,
                          jsonb_build_object('kind', old.kind, 'status', old.status));
  elsif new.status is distinct from old.status then
    perform private.audit(
      new.workspace_id,
      case new.status when 'active' then 'channel.reconnected'
                      when 'revoked' then 'channel.revoked'
                      else 'channel.disconnected' end,
      'channel', new.id::text,
      jsonb_build_object('kind', new.kind, 'from', old.status, 'to', new.status));
  end if;
  return null;
end
$$;

revoke all on function private.audit_channel_change() from public, anon, authenticated;

create trigger channels_audit
  after insert or delete or update of status on public.channels
  for each row execute function private.audit_channel_change();

-- The settings that changed, before and after (every column but the key and the time, so
-- settings added later are covered; an insert has no "from": the defaults stood before).
create function private.audit_deliverability_settings_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_new jsonb := to_jsonb(new) - 'workspace_id' - 'updated_at';
  v_old jsonb := case when tg_op = 'UPDATE' then to_jsonb(old) - 'workspace_id' - 'updated_at' end;
  v_from jsonb;
  v_to jsonb;
begin
  select coalesce(jsonb_object_agg(n.key, o.value) filter (where o.key is not null), '{}'::jsonb),
         coalesce(jsonb_object_agg(n.key, n.value), '{}'::jsonb)
    into v_from, v_to
  from jsonb_each(v_new) n
  left join jsonb_each(coalesce(v_old, '{}'::jsonb)) o on o.key = n.key
  where v_old is null or o.value is distinct from n.value;
  if v_to <> '{}'::jsonb then
    perform private.audit(new.workspace_id, 'deliverability.settings_changed',
                          'deliverability_settings', new.workspace_id::text,
                          jsonb_build_object('from', v_from, 'to', v_to));
  end if;
  return null;
end
$$;

revoke all on function private.audit_deliverability_settings_change() from public, anon, authenticated;

create trigger deliverability_settings_audit
  after insert or update on public.deliverability_settings
  for each row execute function private.audit_deliverability_settings_change();

create function private.audit_sending_pause_acknowledged()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.audit(new.workspace_id, 'sending_pause.acknowledged', 'sending_pause', new.id::text,
                        jsonb_build_object('reason', new.reason,
                                           'sender_identity_id', new.sender_identity_id,
                                           'acknowledged_by', new.acknowledged_by));
  return null;
end
$$;

revoke all on function private.audit_sending_pause_acknowledged() from public, anon, authenticated;

create trigger sending_pauses_audit_acknowledged
  after update of acknowledged_at on public.sending_pauses
  for each row when (old.acknowledged_at is null and new.acknowledged_at is not null)
  execute function private.audit_sending_pause_acknowledged();

create function private.audit_flow_status_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.audit(new.workspace_id, 'flow.status_changed', 'flow', new.id::text,
                        jsonb_build_object('from', old.status, 'to', new.status,
                                           'trigger_type', new.trigger_type));
  return null;
end
$$;

revoke all on function private.audit_flow_status_change() from public, anon, authenticated;

create trigger flows_audit_status
  after update of status on public.flows
  for each row when (old.status is distinct from new.status)
  execute function private.audit_flow_status_change();
