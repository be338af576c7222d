-- Tenancy: profiles, workspaces, members with roles (owner > admin > member > viewer) and
-- invitations. Membership changes go through the functions below, which lock the workspace row
-- so concurrent changes are serialised; a trigger keeps at least one owner whatever the writer.
--
-- Errors raised for clients use SQLSTATE 'PT' || <http status> (PostgREST answers with that
-- status) and put a stable snake_case code in HINT, which the edge returns as error.code.

create schema private;

revoke all on schema private from public;

grant usage on schema private to authenticated, service_role;

-- helpers ------------------------------------------------------------------------------------

create function private.fail(p_status integer, p_code text, p_message text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception using errcode = 'PT' || p_status::text, message = p_message, hint = p_code;
end
$$;

create function private.role_rank(p_role text)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case p_role when 'owner' then 4 when 'admin' then 3 when 'member' then 2 when 'viewer' then 1 end
$$;

create function private.touch_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;

-- The signed-in user, or a 401 for callers without one (anon, service calls without claims).
create function private.require_user()
returns uuid
language plpgsql
stable
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
begin
  if v_user is null then
    perform private.fail(401, 'not_authenticated', 'Sign in first');
  end if;
  return v_user;
end
$$;

create function private.slugify(p_text text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case when char_length(s) >= 3 then s else 'workspace' end
  from (
    select btrim(left(btrim(regexp_replace(regexp_replace(normalize(lower(p_text), nfkd), '[\u0300-\u036f''’]', '', 'g'), '[^a-z0-9]+', '-', 'g'), '-'), 40), '-') as s
  ) as slug
$$;

-- tables -------------------------------------------------------------------------------------

create table public.profiles (
  id uuid primary key references auth.users (id) on delete cascade,
  display_name text check (display_name is null or char_length(display_name) between 1 and 80),
  locale text not null default 'en' check (locale ~ '^[a-z]{2,3}(-[A-Z]{2})?$'),
  preferences jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table public.workspaces (
  id uuid primary key default gen_random_uuid(),
  name text not null check (char_length(name) between 1 and 80 and name = btrim(name)),
  slug text not null unique check (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$' and char_length(slug) between 3 and 48),
  plan_tier text not null default 'free' check (plan_tier in ('free', 'solo', 'team')),
  credits_remaining integer not null default 0 check (credits_remaining >= 0),
  base_currency text not null default 'EUR' check (base_currency ~ '^[A-Z]{3}$'),
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create table public.workspace_members (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role text not null check (role in ('owner', 'admin', 'member', 'viewer')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (workspace_id, user_id)
);

create index workspace_members_user_id_idx on public.workspace_members (user_id);

create table public.workspace_invitations (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  email text not null check (email = lower(btrim(email)) and email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  role text not null check (role in ('owner', 'admin', 'member', 'viewer')),
  token_hash bytea not null unique,
  invited_by uuid references auth.users (id) on delete set null,
  expires_at timestamptz not null,
  accepted_at timestamptz,
  accepted_by uuid references auth.users (id) on delete set null,
  revoked_at timestamptz,
  created_at timestamptz not null default now(),
  check (accepted_at is null or revoked_at is null)
);

create index workspace_invitations_workspace_id_idx on public.workspace_invitations (workspace_id);

create unique index workspace_invitations_one_pending_per_email_idx
  on public.workspace_invitations (workspace_id, email)
  where accepted_at is null and revoked_at is null;

create trigger profiles_touch_updated_at
  before update on public.profiles
  for each row execute function private.touch_updated_at();

create trigger workspaces_touch_updated_at
  before update on public.workspaces
  for each row execute function private.touch_updated_at();

create trigger workspace_members_touch_updated_at
  before update on public.workspace_members
  for each row execute function private.touch_updated_at();

-- membership helpers used by policies (security definer: they read workspace_members without
-- recursing into its own policy) --------------------------------------------------------------

create function private.user_workspace_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.workspace_id from public.workspace_members m where m.user_id = auth.uid()
$$;

create function private.user_workspace_ids_at_least(p_min_role text)
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.workspace_id
  from public.workspace_members m
  where m.user_id = auth.uid()
    and private.role_rank(m.role) >= private.role_rank(p_min_role)
$$;

create function private.co_member_user_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select distinct other.user_id
  from public.workspace_members mine
  join public.workspace_members other on other.workspace_id = mine.workspace_id
  where mine.user_id = auth.uid()
$$;

-- Locks the workspace row (serialising membership changes) and returns the caller's role in
-- it; non-members get 404 so a workspace's existence is not revealed.
create function private.lock_workspace_as(p_workspace_id uuid, p_min_role text)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_role text;
begin
  perform 1 from public.workspaces w where w.id = p_workspace_id for update;
  select m.role into v_role
  from public.workspace_members m
  where m.workspace_id = p_workspace_id and m.user_id = v_user;
  if v_role is null then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  if private.role_rank(v_role) < private.role_rank(p_min_role) then
    perform private.fail(403, 'insufficient_role', format('This needs the %s role or higher', p_min_role));
  end if;
  return v_role;
end
$$;

create function private.require_valid_role(p_role text)
returns void
language plpgsql
immutable
set search_path = ''
as $$
begin
  if private.role_rank(p_role) is null then
    perform private.fail(422, 'invalid_role', 'Role must be owner, admin, member or viewer');
  end if;
end
$$;

-- invariants ---------------------------------------------------------------------------------

-- Whatever the writer (functions, service role, cascades), a workspace keeps an owner. The
-- workspace row is locked first so two concurrent demotions cannot both pass the check.
create function private.keep_an_owner()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.role = 'owner' and (tg_op = 'DELETE' or new.role <> 'owner') then
    perform 1 from public.workspaces w where w.id = old.workspace_id for update;
    if exists (select from public.workspaces w where w.id = old.workspace_id)
       and not exists (
         select from public.workspace_members m
         where m.workspace_id = old.workspace_id and m.role = 'owner'
       ) then
      perform private.fail(409, 'last_owner', 'A workspace must keep at least one owner');
    end if;
  end if;
  return null;
end
$$;

create trigger workspace_members_keep_an_owner
  after update or delete on public.workspace_members
  for each row execute function private.keep_an_owner();

-- Preferences are a closed set of typed keys, checked here so the Data API and the edge
-- cannot store anything else.
create function private.validate_profile()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_prefs jsonb := new.preferences;
  v_unknown text;
begin
  if jsonb_typeof(v_prefs) <> 'object' then
    perform private.fail(422, 'invalid_preferences', 'Preferences must be a JSON object');
  end if;
  select string_agg(k, ', ' order by k) into v_unknown
  from jsonb_object_keys(v_prefs) as k
  where k not in ('theme', 'timezone', 'email_notifications', 'weekly_digest');
  if v_unknown is not null then
    perform private.fail(422, 'invalid_preferences', format('Unknown preferences: %s', v_unknown));
  end if;
  if v_prefs ? 'theme' and coalesce(v_prefs ->> 'theme', '') not in ('light', 'dark', 'system') then
    perform private.fail(422, 'invalid_preferences', 'theme must be light, dark or system');
  end if;
  if v_prefs ? 'timezone' and (
       jsonb_typeof(v_prefs -> 'timezone') <> 'string'
       or not exists (select from pg_catalog.pg_timezone_names z where z.name = v_prefs ->> 'timezone')
     ) then
    perform private.fail(422, 'invalid_preferences', 'timezone must be an IANA time zone name');
  end if;
  if (v_prefs ? 'email_notifications' and jsonb_typeof(v_prefs -> 'email_notifications') <> 'boolean')
     or (v_prefs ? 'weekly_digest' and jsonb_typeof(v_prefs -> 'weekly_digest') <> 'boolean') then
    perform private.fail(422, 'invalid_preferences', 'email_notifications and weekly_digest are booleans');
  end if;
  return new;
end
$$;

create trigger profiles_validate
  before insert or update on public.profiles
  for each row execute function private.validate_profile();

-- workspace creation -------------------------------------------------------------------------

create function private.create_workspace_for(
  p_user_id uuid, p_name text, p_base_currency text, p_slug text
)
returns public.workspaces
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_name text := btrim(coalesce(p_name, ''));
  v_currency text := upper(btrim(coalesce(p_base_currency, '')));
  v_slug text := coalesce(p_slug, private.slugify(v_name));
  v_workspace public.workspaces;
begin
  if char_length(v_name) not between 1 and 80 then
    perform private.fail(422, 'invalid_name', 'Workspace name must be 1 to 80 characters');
  end if;
  if v_currency !~ '^[A-Z]{3}$' then
    perform private.fail(422, 'invalid_currency', 'Base currency must be an ISO 4217 code such as EUR');
  end if;
  if p_slug is not null and (p_slug !~ '^[a-z0-9]+(-[a-z0-9]+)*$' or char_length(p_slug) not between 3 and 48) then
    perform private.fail(422, 'invalid_slug', 'Slug must be 3 to 48 lower-case letters, digits and single dashes');
  end if;
  loop
    begin
      insert into public.workspaces (name, slug, base_currency, created_by)
      values (v_name, v_slug, v_currency, p_user_id)
      returning * into v_workspace;
      exit;
    exception when unique_violation then
      if p_slug is not null then
        perform private.fail(409, 'slug_taken', 'That slug is already taken');
      end if;
      v_slug := left(private.slugify(v_name), 40) || '-' || substr(md5(gen_random_uuid()::text), 1, 6);
    end;
  end loop;
  insert into public.workspace_members (workspace_id, user_id, role)
  values (v_workspace.id, p_user_id, 'owner');
  return v_workspace;
end
$$;

create function public.create_workspace(
  p_name text, p_base_currency text default 'EUR', p_slug text default null
)
returns public.workspaces
language plpgsql
security definer
set search_path = ''
as $$
begin
  return private.create_workspace_for(private.require_user(), p_name, p_base_currency, p_slug);
end
$$;

-- signup and account deletion ----------------------------------------------------------------

create function private.handle_new_user()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_display text := nullif(btrim(coalesce(
    new.raw_user_meta_data ->> 'full_name', new.raw_user_meta_data ->> 'name', ''
  )), '');
begin
  insert into public.profiles (id, display_name) values (new.id, left(v_display, 80));
  perform private.create_workspace_for(
    new.id,
    left(coalesce(v_display, nullif(split_part(new.email, '@', 1), ''), 'My') || '''s workspace', 80),
    'EUR',
    null
  );
  return new;
end
$$;

create trigger on_auth_user_created
  after insert on auth.users
  for each row execute function private.handle_new_user();

-- A deleted account takes its solo workspaces with it; a workspace shared with others keeps
-- going, and the owner trigger refuses the deletion while the user is its last owner.
create function private.handle_deleted_user()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.workspaces w
  where w.id in (select m.workspace_id from public.workspace_members m where m.user_id = old.id)
    and not exists (
      select from public.workspace_members o where o.workspace_id = w.id and o.user_id <> old.id
    );
  return old;
end
$$;

create trigger on_auth_user_deleted
  before delete on auth.users
  for each row execute function private.handle_deleted_user();

-- invitations --------------------------------------------------------------------------------

create function public.invite_member(
  p_workspace_id uuid, p_email text, p_role text default 'member',
  p_valid_for interval default interval '7 days'
)
returns table (invitation_id uuid, token text, expires_at timestamptz)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_caller_role text := private.lock_workspace_as(p_workspace_id, 'admin');
  v_email text := lower(btrim(coalesce(p_email, '')));
  v_token text := translate(rtrim(encode(decode(
    replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'), 'base64'), '='), '+/', '-_');
begin
  perform private.require_valid_role(p_role);
  if p_role = 'owner' and v_caller_role <> 'owner' then
    perform private.fail(403, 'insufficient_role', 'Only owners may invite owners');
  end if;
  if v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
    perform private.fail(422, 'invalid_email', 'That is not an email address');
  end if;
  if p_valid_for is null or p_valid_for < interval '1 hour' or p_valid_for > interval '30 days' then
    perform private.fail(422, 'invalid_expiry', 'An invitation is valid for 1 hour to 30 days');
  end if;
  if exists (
    select from public.workspace_members m join auth.users u on u.id = m.user_id
    where m.workspace_id = p_workspace_id and lower(u.email) = v_email
  ) then
    perform private.fail(409, 'already_member', 'That person is already a member');
  end if;
  update public.workspace_invitations i set revoked_at = now()
  where i.workspace_id = p_workspace_id and i.email = v_email
    and i.accepted_at is null and i.revoked_at is null;
  return query
    insert into public.workspace_invitations as i
      (workspace_id, email, role, token_hash, invited_by, expires_at)
    values
      (p_workspace_id, v_email, p_role, sha256(convert_to(v_token, 'UTF8')), v_user, now() + p_valid_for)
    returning i.id, v_token, i.expires_at;
end
$$;

create function public.revoke_invitation(p_invitation_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_invitation public.workspace_invitations;
begin
  select * into v_invitation from public.workspace_invitations i where i.id = p_invitation_id;
  if v_invitation.id is null
     or v_invitation.workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'invitation_not_found', 'Invitation not found');
  end if;
  perform private.lock_workspace_as(v_invitation.workspace_id, 'admin');
  if v_invitation.accepted_at is not null then
    perform private.fail(410, 'invitation_used', 'This invitation has already been accepted');
  end if;
  update public.workspace_invitations i set revoked_at = coalesce(i.revoked_at, now())
  where i.id = p_invitation_id;
end
$$;

create function public.accept_invitation(p_token text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_email text;
  v_invitation public.workspace_invitations;
begin
  select * into v_invitation
  from public.workspace_invitations i
  where i.token_hash = sha256(convert_to(coalesce(p_token, ''), 'UTF8'))
  for update;
  if v_invitation.id is null then
    perform private.fail(404, 'invitation_not_found', 'This invitation link is not valid');
  end if;
  if v_invitation.accepted_at is not null then
    perform private.fail(410, 'invitation_used', 'This invitation has already been used');
  end if;
  if v_invitation.revoked_at is not null then
    perform private.fail(410, 'invitation_revoked', 'This invitation was withdrawn');
  end if;
  if v_invitation.expires_at <= now() then
    perform private.fail(410, 'invitation_expired', 'This invitation has expired; ask for a new one');
  end if;
  select lower(u.email) into v_email from auth.users u where u.id = v_user;
  if v_email is distinct from v_invitation.email then
    perform private.fail(403, 'invitation_email_mismatch', 'This invitation was sent to another email address');
  end if;
  if exists (
    select from public.workspace_members m
    where m.workspace_id = v_invitation.workspace_id and m.user_id = v_user
  ) then
    perform private.fail(409, 'already_member', 'You are already a member of this workspace');
  end if;
  insert into public.workspace_members (workspace_id, user_id, role)
  values (v_invitation.workspace_id, v_user, v_invitation.role);
  update public.workspace_invitations i set accepted_at = now(), accepted_by = v_user
  where i.id = v_invitation.id;
  return v_invitation.workspace_id;
end
$$;

-- member management ---------------------------------------------------------------------------

create function private.require_manageable_member(
  p_workspace_id uuid, p_user_id uuid, p_caller_role text
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_target_role text;
begin
  select m.role into v_target_role
  from public.workspace_members m
  where m.workspace_id = p_workspace_id and m.user_id = p_user_id;
  if v_target_role is null then
    perform private.fail(404, 'member_not_found', 'That person is not a member of this workspace');
  end if;
  if v_target_role = 'owner' and p_caller_role <> 'owner' then
    perform private.fail(403, 'cannot_manage_owner', 'Only owners may change or remove an owner');
  end if;
  return v_target_role;
end
$$;

create function public.change_member_role(p_workspace_id uuid, p_user_id uuid, p_role text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_caller_role text := private.lock_workspace_as(p_workspace_id, 'admin');
begin
  perform private.require_valid_role(p_role);
  perform private.require_manageable_member(p_workspace_id, p_user_id, v_caller_role);
  if p_role = 'owner' and v_caller_role <> 'owner' then
    perform private.fail(403, 'cannot_manage_owner', 'Only owners may make someone an owner');
  end if;
  update public.workspace_members m set role = p_role
  where m.workspace_id = p_workspace_id and m.user_id = p_user_id and m.role <> p_role;
end
$$;

create function public.remove_member(p_workspace_id uuid, p_user_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_caller_role text := private.lock_workspace_as(p_workspace_id, 'admin');
begin
  perform private.require_manageable_member(p_workspace_id, p_user_id, v_caller_role);
  delete from public.workspace_members m
  where m.workspace_id = p_workspace_id and m.user_id = p_user_id;
end
$$;

create function public.leave_workspace(p_workspace_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.lock_workspace_as(p_workspace_id, 'viewer');
  delete from public.workspace_members m
  where m.workspace_id = p_workspace_id and m.user_id = auth.uid();
end
$$;

-- grants -------------------------------------------------------------------------------------

revoke all on public.profiles from anon, authenticated, public;

revoke all on public.workspaces from anon, authenticated, public;

revoke all on public.workspace_members from anon, authenticated, public;

revoke all on public.workspace_invitations from anon, authenticated, public;

grant select on public.profiles to authenticated;

grant update (display_name, locale, preferences) on public.profiles to authenticated;

grant select on public.workspaces to authenticated;

grant update (name, slug, base_currency) on public.workspaces to authenticated;

grant delete on public.workspaces to authenticated;

grant select on public.workspace_members to authenticated;

grant select (id, workspace_id, email, role, invited_by, expires_at, accepted_at, accepted_by, revoked_at, created_at)
  on public.workspace_invitations to authenticated;

grant all on public.profiles, public.workspaces, public.workspace_members, public.workspace_invitations
  to service_role;

revoke all on all functions in schema private from public, anon, authenticated;

-- Triggers run as the writing user and raise client errors through private.fail.
grant execute on function private.fail(integer, text, text) to authenticated, service_role;

grant execute on function private.user_workspace_ids() to authenticated, service_role;

grant execute on function private.user_workspace_ids_at_least(text) to authenticated, service_role;

grant execute on function private.co_member_user_ids() to authenticated, service_role;

revoke all on function public.create_workspace(text, text, text) from public, anon;

revoke all on function public.invite_member(uuid, text, text, interval) from public, anon;

revoke all on function public.revoke_invitation(uuid) from public, anon;

revoke all on function public.accept_invitation(text) from public, anon;

revoke all on function public.change_member_role(uuid, uuid, text) from public, anon;

revoke all on function public.remove_member(uuid, uuid) from public, anon;

revoke all on function public.leave_workspace(uuid) from public, anon;

grant execute on function public.create_workspace(text, text, text) to authenticated;

grant execute on function public.invite_member(uuid, text, text, interval) to authenticated;

grant execute on function public.revoke_invitation(uuid) to authenticated;

grant execute on function public.accept_invitation(text) to authenticated;

grant execute on function public.change_member_role(uuid, uuid, text) to authenticated;

grant execute on function public.remove_member(uuid, uuid) to authenticated;

grant execute on function public.leave_workspace(uuid) to authenticated;

-- row level security -------------------------------------------------------------------------

alter table public.profiles enable row level security;

alter table public.workspaces enable row level security;

alter table public.workspace_members enable row level security;

alter table public.workspace_invitations enable row level security;

-- A signed-in user may read their own profile and those of people they share a workspace with.
create policy profiles_select_self_and_co_members on public.profiles
  for select to authenticated
  using (id = (select auth.uid()) or id in (select private.co_member_user_ids()));

-- A signed-in user may update only their own profile.
create policy profiles_update_self on public.profiles
  for update to authenticated
  using (id = (select auth.uid()))
  with check (id = (select auth.uid()));

-- Members of any role may read their workspaces.
create policy workspaces_select_members on public.workspaces
  for select to authenticated
  using (id in (select private.user_workspace_ids()));

-- Owners and admins may rename a workspace, change its slug or base currency.
create policy workspaces_update_admins on public.workspaces
  for update to authenticated
  using (id in (select private.user_workspace_ids_at_least('admin')))
  with check (id in (select private.user_workspace_ids_at_least('admin')));

-- Only owners may delete a workspace.
create policy workspaces_delete_owners on public.workspaces
  for delete to authenticated
  using (id in (select private.user_workspace_ids_at_least('owner')));

-- Members of any role may see who belongs to their workspaces; changes go through functions.
create policy workspace_members_select_members on public.workspace_members
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Owners and admins may see their workspaces' invitations; changes go through functions.
create policy workspace_invitations_select_admins on public.workspace_invitations
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Members may receive broadcasts on their workspaces' private channels `workspace:<id>:<name>`.
create policy realtime_messages_select_workspace_members on realtime.messages
  for select to authenticated
  using (
    extension = 'broadcast'
    and (select realtime.topic()) like 'workspace:%:%'
    and split_part((select realtime.topic()), ':', 2) in (
      select id::text from private.user_workspace_ids() as id
    )
  );
