-- The audit log records who re-credentialed or changed an inbox channel. Two gaps closed:
-- 1. Connecting an account that is already an active channel of the workspace replaces its
--    credentials (private.connect_channel) without a status change, so nothing was recorded:
--    now `channel.credentials_changed` (kind and status; never the secret) whenever a channel's
--    sealed credentials are replaced, and `channel.updated` (kind and the names of the fields
--    that changed; never their values) when its name or settings change without a status change.
-- 2. The edge checks the admin as the user, then writes as the service (become_service), which
--    cleared the user from the claims: entries written then (channel connections, shop
--    credentials) had no actor. The edge now keeps the acting user's id in
--    `growthbase.actor_id` (transaction-local, set only by the edge's service switch; the Data
--    API cannot set it), and private.audit takes it as the actor when the caller is the service.

-- As before (20261204093000_audit_log.sql), with the acting user kept across the edge's switch
-- to the service as the actor.
create or replace function private.audit(
  p_workspace_id uuid, p_action text, p_target_type text, p_target_id text, p_details jsonb
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_headers jsonb := coalesce(nullif(pg_catalog.current_setting('request.headers', true), '')::jsonb, '{}'::jsonb);
  v_forwarded text := btrim(split_part(v_headers ->> 'x-forwarded-for', ',', 1));
  v_kept text := pg_catalog.current_setting('growthbase.actor_id', true);
  v_actor uuid := auth.uid();
  v_entry public.audit_log;
begin
  if p_workspace_id is null
     or not exists (select from public.workspaces w where w.id = p_workspace_id) then
    return;  -- the workspace itself is going: its log goes with it
  end if;
  if v_actor is null and auth.role() = 'service_role'
     and v_kept ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    v_actor := v_kept::uuid;
  end if;
  insert into public.audit_log (workspace_id, actor_id, action, target_type, target_id, details, request_id, ip)
  values (
    p_workspace_id, v_actor, p_action, p_target_type, left(p_target_id, 200),
    coalesce(p_details, '{}'::jsonb),
    left(coalesce(v_headers ->> 'x-request-id', nullif(pg_catalog.current_setting('request.id', true), '')), 128),
    case when v_forwarded ~ '^[0-9a-fA-F:.]{2,45}$' then v_forwarded::inet end
  )
  returning * into v_entry;
  perform realtime.send(
    jsonb_build_object('id', v_entry.id, 'action', v_entry.action, 'target_type', v_entry.target_type,
                       'target_id', v_entry.target_id, 'actor_id', v_entry.actor_id, 'created_at', v_entry.created_at),
    'audit_entry',
    'workspace:' || p_workspace_id::text || ':audit',
    true
  );
exception when invalid_text_representation then
  -- A malformed forwarded address is not worth failing the change it records.
  insert into public.audit_log (workspace_id, actor_id, action, target_type, target_id, details)
  values (p_workspace_id, v_actor, p_action, p_target_type, left(p_target_id, 200), coalesce(p_details, '{}'::jsonb));
end
$$;

revoke all on function private.audit(uuid, text, text, text, jsonb) from public, anon, authenticated;

grant execute on function private.audit(uuid, text, text, text, jsonb) to service_role;

-- As before (20261219090000_audit_channels_deliverability_flows.sql), and a name or settings
-- change without a status change is `channel.updated` with the changed fields' names.
create or replace function private.audit_channel_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_changed text[];
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
  else
    select array_agg(f order by f) into v_changed
    from (
      select 'name' as f where new.name is distinct from old.name
      union all
      select 'settings.' || k
      from (select jsonb_object_keys(old.settings) as k
            union select jsonb_object_keys(new.settings)) as keys
      where old.settings -> k is distinct from new.settings -> k
    ) as fields;
    if v_changed is not null then
      perform private.audit(new.workspace_id, 'channel.updated', 'channel', new.id::text,
                            jsonb_build_object('kind', new.kind, 'changed', to_jsonb(v_changed)));
    end if;
  end if;
  return null;
end
$$;

revoke all on function private.audit_channel_change() from public, anon, authenticated;

drop trigger channels_audit on public.channels;

create trigger channels_audit
  after insert or delete or update of status, name, settings on public.channels
  for each row execute function private.audit_channel_change();

-- Credentials replaced (a re-connection of the same account, or new tokens): who and when,
-- the channel's kind and status; never the secret or anything derived from it.
create function private.audit_channel_credentials()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_channel public.channels;
begin
  select * into v_channel from public.channels c where c.id = new.channel_id;
  if v_channel.id is not null then
    perform private.audit(v_channel.workspace_id, 'channel.credentials_changed', 'channel', v_channel.id::text,
                          jsonb_build_object('kind', v_channel.kind, 'status', v_channel.status));
  end if;
  return null;
end
$$;

revoke all on function private.audit_channel_credentials() from public, anon, authenticated;

create trigger channel_secrets_audit
  after update of secrets_encrypted on private.channel_secrets
  for each row when (old.secrets_encrypted is distinct from new.secrets_encrypted)
  execute function private.audit_channel_credentials();
