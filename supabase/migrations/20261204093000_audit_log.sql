-- The audit log: who in a team did what, to what, when, from which request. Written only by
-- triggers on the tables that record the change (members and roles, invitations, shop
-- credentials, sender identities, erasures, imports, privacy settings, subscriptions), so no
-- writer can skip it; append-only (only the retention job and a workspace's deletion remove
-- entries); admins and owners read their workspace's log under RLS and receive new entries on
-- the private realtime channel `workspace:<id>:audit`, which other members cannot join.
-- Entries hold ids, roles and kinds, never an address, a name or a credential.

create table public.audit_log (
  id bigint generated always as identity primary key,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  actor_id uuid,
  action text not null check (action ~ '^[a-z_]+\.[a-z_]+$' and char_length(action) <= 64),
  target_type text not null check (char_length(target_type) <= 64),
  target_id text check (char_length(target_id) <= 200),
  details jsonb not null default '{}'::jsonb check (jsonb_typeof(details) = 'object'),
  request_id text check (char_length(request_id) <= 128),
  ip inet,
  created_at timestamptz not null default clock_timestamp()
);

comment on table public.audit_log is
  'Append-only record of team actions: actor (user id), action, target, details without personal data, request id, IP, time. Admins read it.';

create index audit_log_workspace_id_idx on public.audit_log (workspace_id, created_at desc);

create index audit_log_created_at_idx on public.audit_log (created_at);

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'audit_log', 'action', 'none', 'not_personal', null),
  ('public', 'audit_log', 'target_type', 'none', 'not_personal', null),
  ('public', 'audit_log', 'target_id', 'member', 'kept_pseudonymous', 'ids only; a deleted user''s id names nobody'),
  ('public', 'audit_log', 'details', 'none', 'not_personal', 'roles, kinds and counts only, by construction'),
  ('public', 'audit_log', 'request_id', 'none', 'not_personal', null);

-- writing ------------------------------------------------------------------------------------

-- Appends one entry, with the acting user, the request id and client IP the Data API or the
-- edge put in request.headers (when present), and broadcasts it to the workspace's admins.
create function private.audit(
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
  v_entry public.audit_log;
begin
  if p_workspace_id is null
     or not exists (select from public.workspaces w where w.id = p_workspace_id) then
    return;  -- the workspace itself is going: its log goes with it
  end if;
  insert into public.audit_log (workspace_id, actor_id, action, target_type, target_id, details, request_id, ip)
  values (
    p_workspace_id, auth.uid(), p_action, p_target_type, left(p_target_id, 200),
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
  values (p_workspace_id, auth.uid(), p_action, p_target_type, left(p_target_id, 200), coalesce(p_details, '{}'::jsonb));
end
$$;

revoke all on function private.audit(uuid, text, text, text, jsonb) from public, anon, authenticated;

grant execute on function private.audit(uuid, text, text, text, jsonb) to service_role;

-- No one changes or deletes entries, except the retention job (growthbase.pruning, which the
-- Data API cannot set), the deletion of their workspace (a cascade) and an account's deletion
-- (growthbase.pseudonymising).
create function private.keep_audit_log_append_only()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' and (pg_catalog.pg_trigger_depth() > 1
                           or pg_catalog.current_setting('growthbase.pruning', true) = 'on') then
    return old;
  end if;
  -- A deleted user's id becomes their pseudonym (private.pseudonymise_deleted_user); nothing
  -- else about the entry changes.
  if tg_op = 'UPDATE' and pg_catalog.current_setting('growthbase.pseudonymising', true) = 'on'
     and (new.workspace_id, new.action, new.target_type, new.details, new.request_id, new.ip, new.created_at)
         is not distinct from (old.workspace_id, old.action, old.target_type, old.details, old.request_id, old.ip, old.created_at) then
    return new;
  end if;
  perform private.fail(409, 'audit_log_is_append_only', 'Audit log entries are never changed');
  return null;
end
$$;

revoke all on function private.keep_audit_log_append_only() from public, anon, authenticated;

create trigger audit_log_append_only
  before update or delete on public.audit_log
  for each row execute function private.keep_audit_log_append_only();

-- what is recorded ---------------------------------------------------------------------------

create function private.audit_member_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.audit(new.workspace_id, 'member.added', 'user', new.user_id::text,
                          jsonb_build_object('role', new.role));
  elsif tg_op = 'UPDATE' then
    perform private.audit(new.workspace_id, 'member.role_changed', 'user', new.user_id::text,
                          jsonb_build_object('from', old.role, 'to', new.role));
  else
    perform private.audit(old.workspace_id, 'member.removed', 'user', old.user_id::text,
                          jsonb_build_object('role', old.role));
  end if;
  return null;
end
$$;

revoke all on function private.audit_member_change() from public, anon, authenticated;

create trigger workspace_members_audit
  after insert or delete or update of role on public.workspace_members
  for each row execute function private.audit_member_change();

create function private.audit_invitation_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.audit(new.workspace_id, 'invitation.created', 'invitation', new.id::text,
                          jsonb_build_object('role', new.role, 'expires_at', new.expires_at));
  elsif new.revoked_at is not null and old.revoked_at is null then
    perform private.audit(new.workspace_id, 'invitation.revoked', 'invitation', new.id::text,
                          jsonb_build_object('role', new.role));
  elsif new.accepted_at is not null and old.accepted_at is null then
    perform private.audit(new.workspace_id, 'invitation.accepted', 'invitation', new.id::text,
                          jsonb_build_object('role', new.role, 'user_id', new.accepted_by));
  end if;
  return null;
end
$$;

revoke all on function private.audit_invitation_change() from public, anon, authenticated;

create trigger workspace_invitations_audit
  after insert or update of revoked_at, accepted_at on public.workspace_invitations
  for each row execute function private.audit_invitation_change();

-- Shop credentials: that they changed and which, never their values.
create function private.audit_integration_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.audit(new.workspace_id, 'credential.connected', 'integration', new.project_id::text || ':' || new.source,
                          jsonb_build_object('source', new.source, 'project_id', new.project_id));
  elsif tg_op = 'UPDATE' then
    if new.api_token_encrypted is distinct from old.api_token_encrypted
       or new.webhook_secret_encrypted is distinct from old.webhook_secret_encrypted then
      perform private.audit(new.workspace_id, 'credential.changed', 'integration', new.project_id::text || ':' || new.source,
                            jsonb_build_object('source', new.source, 'project_id', new.project_id,
                                               'api_token', new.api_token_encrypted is distinct from old.api_token_encrypted,
                                               'webhook_secret', new.webhook_secret_encrypted is distinct from old.webhook_secret_encrypted));
    end if;
  else
    perform private.audit(old.workspace_id, 'credential.disconnected', 'integration', old.project_id::text || ':' || old.source,
                          jsonb_build_object('source', old.source, 'project_id', old.project_id));
  end if;
  return null;
end
$$;

revoke all on function private.audit_integration_change() from public, anon, authenticated;

create trigger integrations_audit
  after insert or update or delete on private.integrations
  for each row execute function private.audit_integration_change();

create function private.audit_sender_identity_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.audit(new.workspace_id, 'channel.sender_registered', 'sender_identity', new.id::text,
                          jsonb_build_object('kind', new.kind));
  else
    perform private.audit(old.workspace_id, 'channel.sender_removed', 'sender_identity', old.id::text,
                          jsonb_build_object('kind', old.kind));
  end if;
  return null;
end
$$;

revoke all on function private.audit_sender_identity_change() from public, anon, authenticated;

create trigger sender_identities_audit
  after insert or delete on public.sender_identities
  for each row execute function private.audit_sender_identity_change();

create function private.audit_erasure()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.audit(new.workspace_id, 'contact.erased', 'contact', new.contact_id::text, new.rows_changed);
  return null;
end
$$;

revoke all on function private.audit_erasure() from public, anon, authenticated;

create trigger contact_erasures_audit
  after insert on public.contact_erasures
  for each row execute function private.audit_erasure();

create function private.audit_import()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.audit(new.workspace_id, 'import.created', 'import_job', new.id::text,
                        jsonb_build_object('kind', new.kind));
  return null;
end
$$;

revoke all on function private.audit_import() from public, anon, authenticated;

create trigger import_jobs_audit
  after insert on public.import_jobs
  for each row execute function private.audit_import();

create function private.audit_privacy_settings()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.audit(new.workspace_id, 'privacy.settings_changed', 'workspace', new.workspace_id::text,
                        to_jsonb(new) - 'workspace_id' - 'updated_at');
  return null;
end
$$;

revoke all on function private.audit_privacy_settings() from public, anon, authenticated;

create trigger workspace_privacy_settings_audit
  after insert or update on public.workspace_privacy_settings
  for each row execute function private.audit_privacy_settings();

create function private.audit_subscription_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' or new.status is distinct from old.status or new.plan_tier is distinct from old.plan_tier
     or new.cancel_at_period_end is distinct from old.cancel_at_period_end then
    perform private.audit(new.workspace_id, 'billing.subscription_changed', 'subscription', new.id::text,
                          jsonb_build_object('status', new.status, 'plan_tier', new.plan_tier,
                                             'cancel_at_period_end', new.cancel_at_period_end));
  end if;
  return null;
end
$$;

revoke all on function private.audit_subscription_change() from public, anon, authenticated;

create trigger subscriptions_audit
  after insert or update on public.subscriptions
  for each row execute function private.audit_subscription_change();

-- grants -------------------------------------------------------------------------------------

revoke all on public.audit_log from public, anon, authenticated;

grant select on public.audit_log to authenticated;

grant select, insert, delete on public.audit_log to service_role;

grant update (actor_id, target_id) on public.audit_log to service_role;

-- row level security -------------------------------------------------------------------------

alter table public.audit_log enable row level security;

-- Admins and owners read their workspaces' audit log.
create policy audit_log_select_admins on public.audit_log
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Only admins and owners may receive the broadcasts of their workspaces' audit channel (this
-- narrows the members' policy on workspace channels).
create policy realtime_messages_audit_admins_only on realtime.messages
  as restrictive
  for select to authenticated
  using (
    split_part(topic, ':', 3) <> 'audit'
    or split_part(topic, ':', 2) in (select id::text from private.user_workspace_ids_at_least('admin') as id)
  );
