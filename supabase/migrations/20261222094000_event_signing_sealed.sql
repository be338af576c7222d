-- The event signing secret is sealed like inbox channel credentials: the edge creates it, seals
-- it (Fernet, INTEGRATIONS_ENCRYPTION_KEY, which only the edge holds) and stores the sealed
-- form as the service, after private.workspace_role_as(…, 'admin') answered for the user; it
-- answers the secret once and opens the sealed form to verify a signed batch. A database dump
-- alone no longer reveals any workspace's secret.
--
-- Secrets stored before this migration are plain text, and SQL cannot seal them (the key is not
-- in the database, by design): they keep verifying and are listed by
-- private.event_signing_secrets_to_seal, and the flows cron (`GET /api/v1/cron/flows`) seals
-- them through the edge, clearing the plain text (private.seal_event_signing_secret). The
-- database-side rotation that answered a plain secret is removed: rotating is
-- `POST /api/v1/events/signing-secret`.

alter table private.event_signing_secrets alter column secret drop not null;

alter table private.event_signing_secrets add column secret_sealed text
  check (char_length(secret_sealed) between 1 and 2000);

alter table private.event_signing_secrets add constraint event_signing_secrets_one_form
  check ((secret is null) <> (secret_sealed is null));

comment on table private.event_signing_secrets is
  'Each workspace''s secret for signed custom events (HMAC-SHA256), sealed by the edge; read by the edge as the service only.';

comment on column private.event_signing_secrets.secret is
  'A secret stored before sealing, in plain text, until the flows cron seals it (then null).';

comment on column private.event_signing_secrets.secret_sealed is
  'The secret sealed by the edge (Fernet, INTEGRATIONS_ENCRYPTION_KEY).';

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'event_signing_secrets', 'secret_sealed', 'none', 'not_personal', 'a credential, sealed');

drop function public.rotate_event_signing_secret(uuid);

drop function private.event_signing_secret(uuid);

-- Stores a secret the edge sealed, replacing the workspace's (the old one stops verifying at
-- once). The edge asked private.workspace_role_as(p_workspace_id, 'admin') as the user first.
create function private.store_event_signing_secret(p_workspace_id uuid, p_sealed text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not exists (select 1 from public.workspaces w where w.id = p_workspace_id and w.deleted_at is null) then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  insert into private.event_signing_secrets as s (workspace_id, secret, secret_sealed)
  values (p_workspace_id, null, p_sealed)
  on conflict (workspace_id) do update set secret = null, secret_sealed = excluded.secret_sealed, created_at = now();
end
$$;

revoke all on function private.store_event_signing_secret(uuid, text) from public, anon, authenticated;

grant execute on function private.store_event_signing_secret(uuid, text) to service_role;

-- What the edge verifies a signed batch with: the sealed secret (or, until the cron sealed it,
-- the plain one); no row for a workspace without one or being deleted.
create function private.event_signing_secret_stored(p_workspace_id uuid)
returns table (secret_sealed text, secret text)
language sql
stable
security definer
set search_path = ''
as $$
  select s.secret_sealed, s.secret
  from private.event_signing_secrets s
  join public.workspaces w on w.id = s.workspace_id and w.deleted_at is null
  where s.workspace_id = p_workspace_id
$$;

revoke all on function private.event_signing_secret_stored(uuid) from public, anon, authenticated;

grant execute on function private.event_signing_secret_stored(uuid) to service_role;

-- Secrets still in plain text, for the edge to seal (a few per cron call).
create function private.event_signing_secrets_to_seal(p_limit integer)
returns table (workspace_id uuid, secret text)
language sql
stable
security definer
set search_path = ''
as $$
  select s.workspace_id, s.secret
  from private.event_signing_secrets s
  where s.secret is not null
  order by s.workspace_id
  limit greatest(least(p_limit, 1000), 0)
$$;

revoke all on function private.event_signing_secrets_to_seal(integer) from public, anon, authenticated;

grant execute on function private.event_signing_secrets_to_seal(integer) to service_role;

-- Replaces a plain secret by its sealed form, only while it is still that secret (a rotation
-- in between wins). Answers whether it did.
create function private.seal_event_signing_secret(p_workspace_id uuid, p_secret text, p_sealed text)
returns boolean
language sql
security definer
set search_path = ''
as $$
  with sealed as (
    update private.event_signing_secrets s
    set secret = null, secret_sealed = p_sealed
    where s.workspace_id = p_workspace_id and s.secret = p_secret
    returning 1
  )
  select exists (select 1 from sealed)
$$;

revoke all on function private.seal_event_signing_secret(uuid, text, text) from public, anon, authenticated;

grant execute on function private.seal_event_signing_secret(uuid, text, text) to service_role;
