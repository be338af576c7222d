-- Signed custom events: besides an API key, `POST /api/v1/events` accepts an HMAC-SHA256 of
-- `<timestamp>.<raw body>` keyed with the workspace's event signing secret (a Make.com
-- scenario or a shop's server can sign without holding a key). The secret is shown once, when
-- an admin creates or rotates it; the edge reads it as the service to verify.

create table private.event_signing_secrets (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  secret text not null check (char_length(secret) = 64),
  created_at timestamptz not null default now()
);

comment on table private.event_signing_secrets is
  'Each workspace''s secret for signed custom events (HMAC-SHA256); read by the edge as the service only.';

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'event_signing_secrets', 'secret', 'none', 'not_personal', 'a credential, not about a person');

-- Creates or replaces the workspace's event signing secret (admins and above) and answers it:
-- the only time it is shown. The previous secret stops verifying at once.
create function public.rotate_event_signing_secret(p_workspace_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_secret text := replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
begin
  perform private.require_user();
  if p_workspace_id is null or p_workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  perform private.lock_workspace_as(p_workspace_id, 'admin');
  insert into private.event_signing_secrets as s (workspace_id, secret)
  values (p_workspace_id, v_secret)
  on conflict (workspace_id) do update set secret = excluded.secret, created_at = now();
  return v_secret;
end
$$;

comment on function public.rotate_event_signing_secret(uuid) is
  'Admins: creates or replaces the workspace''s secret for signed custom events and answers it (shown only now).';

revoke all on function public.rotate_event_signing_secret(uuid) from public, anon;

grant execute on function public.rotate_event_signing_secret(uuid) to authenticated, service_role;

-- The secret the edge verifies a signed event batch with: null for a workspace without one or
-- being deleted.
create function private.event_signing_secret(p_workspace_id uuid)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select s.secret
  from private.event_signing_secrets s
  join public.workspaces w on w.id = s.workspace_id and w.deleted_at is null
  where s.workspace_id = p_workspace_id
$$;

revoke all on function private.event_signing_secret(uuid) from public, anon, authenticated;

grant execute on function private.event_signing_secret(uuid) to service_role;
