-- In-app notifications: one row per user it is for, written only by the database's own
-- features (a flow's notify_team step, a conversation assigned or answered, a sending pause),
-- read by that user through the Data API and pushed live on the user's own channel
-- `workspace:<workspace id>:user:<user id>`, which no other member may join.
--
-- A notification about a customer names them (contact_id), so erasing the customer deletes it;
-- deleting the user's account deletes theirs (foreign key).

create table public.notifications (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  kind text not null check (kind ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$' and char_length(kind) <= 64),
  title text not null check (char_length(title) between 1 and 200),
  body text check (char_length(body) <= 2000),
  link jsonb not null default '{}'::jsonb
    check (jsonb_typeof(link) = 'object' and pg_column_size(link) <= 4096),
  contact_id uuid references public.contacts (id) on delete cascade,
  created_at timestamptz not null default now(),
  read_at timestamptz
);

comment on table public.notifications is
  'In-app notifications, one row per user they are for; written by the database''s features, read and marked read by that user.';

comment on column public.notifications.kind is
  'What happened, dotted lower case (flow.notify_team, conversation.assigned, sending.paused).';

comment on column public.notifications.link is
  'Where the dashboard takes the user: ids of the flow, conversation or campaign concerned.';

comment on column public.notifications.contact_id is
  'The customer the notification is about, if any: erasing them deletes it.';

create index notifications_user_unread_idx on public.notifications (user_id, created_at desc)
  where read_at is null;

create index notifications_user_created_idx on public.notifications (user_id, created_at desc);

create index notifications_workspace_id_idx on public.notifications (workspace_id);

create index notifications_contact_id_idx on public.notifications (contact_id)
  where contact_id is not null;

-- Live delivery on the user's own channel of that workspace.
create function private.broadcast_notification()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  perform realtime.send(
    jsonb_build_object(
      'id', new.id, 'kind', new.kind, 'title', new.title, 'body', new.body,
      'link', new.link, 'created_at', new.created_at
    ),
    'notification',
    format('workspace:%s:user:%s', new.workspace_id, new.user_id),
    true
  );
  return null;
end
$$;

revoke all on function private.broadcast_notification() from public, anon, authenticated;

create trigger notifications_broadcast
  after insert on public.notifications
  for each row execute function private.broadcast_notification();

-- An erased customer's notifications go with the rest of their data.
create function private.erase_contact_notifications()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.notifications n where n.contact_id = new.id;
  return null;
end
$$;

revoke all on function private.erase_contact_notifications() from public, anon, authenticated;

create trigger contacts_erase_notifications
  after update of erased_at on public.contacts
  for each row when (old.erased_at is null and new.erased_at is not null)
  execute function private.erase_contact_notifications();

-- writing (service and features only) --------------------------------------------------------

-- Notifies the listed users who are members of the workspace (anyone else is left out, so a
-- stale assignee or a removed member gets nothing); answers how many were notified.
create function private.notify_users(
  p_workspace_id uuid, p_user_ids uuid[], p_kind text, p_title text,
  p_body text default null, p_link jsonb default '{}'::jsonb, p_contact_id uuid default null
)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  insert into public.notifications (workspace_id, user_id, kind, title, body, link, contact_id)
  select p_workspace_id, m.user_id, p_kind, left(p_title, 200), left(p_body, 2000),
         coalesce(p_link, '{}'::jsonb), p_contact_id
  from public.workspace_members m
  where m.workspace_id = p_workspace_id
    and m.user_id = any (p_user_ids);
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

revoke all on function private.notify_users(uuid, uuid[], text, text, text, jsonb, uuid)
  from public, anon, authenticated;

grant execute on function private.notify_users(uuid, uuid[], text, text, text, jsonb, uuid)
  to service_role;

comment on function private.notify_users(uuid, uuid[], text, text, text, jsonb, uuid) is
  'Notifies the listed users who are members of the workspace; answers how many were notified.';

-- Notifies every member of the workspace at or above a role (owner > admin > member > viewer).
create function private.notify_members_at_least(
  p_workspace_id uuid, p_min_role text, p_kind text, p_title text,
  p_body text default null, p_link jsonb default '{}'::jsonb, p_contact_id uuid default null
)
returns integer
language sql
security definer
set search_path = ''
as $$
  select private.notify_users(
    p_workspace_id,
    array(
      select m.user_id from public.workspace_members m
      where m.workspace_id = p_workspace_id
        and private.role_rank(m.role) >= private.role_rank(p_min_role)
    ),
    p_kind, p_title, p_body, p_link, p_contact_id
  )
$$;

revoke all on function private.notify_members_at_least(uuid, text, text, text, text, jsonb, uuid)
  from public, anon, authenticated;

grant execute on function private.notify_members_at_least(uuid, text, text, text, text, jsonb, uuid)
  to service_role;

comment on function private.notify_members_at_least(uuid, text, text, text, text, jsonb, uuid) is
  'Notifies every member of the workspace at or above a role; answers how many were notified.';

-- reading and marking read (the user) --------------------------------------------------------

-- Marks the caller's notifications read: the listed ones (at most 1,000), or all of them when
-- the list is null; optionally only one workspace's. Answers how many changed.
create function public.mark_notifications_read(
  p_ids uuid[] default null, p_workspace_id uuid default null
)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  if auth.uid() is null then
    perform private.fail(401, 'not_authenticated', 'sign in to read notifications');
  end if;
  if cardinality(p_ids) > 1000 then
    perform private.fail(422, 'too_many_ids', 'mark at most 1,000 notifications at once');
  end if;
  update public.notifications n
  set read_at = now()
  where n.user_id = auth.uid()
    and n.read_at is null
    and (p_ids is null or n.id = any (p_ids))
    and (p_workspace_id is null or n.workspace_id = p_workspace_id);
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

revoke all on function public.mark_notifications_read(uuid[], uuid) from public, anon;

grant execute on function public.mark_notifications_read(uuid[], uuid) to authenticated, service_role;

comment on function public.mark_notifications_read(uuid[], uuid) is
  'Marks the caller''s own notifications read (the listed ones, or all; optionally of one workspace); answers how many changed.';

-- grants -------------------------------------------------------------------------------------

revoke all on public.notifications from public, anon, authenticated;

grant select, delete on public.notifications to authenticated;

grant select, insert, update, delete on public.notifications to service_role;

-- row level security -------------------------------------------------------------------------

alter table public.notifications enable row level security;

-- A user reads their own notifications, of workspaces they are still a member of.
create policy notifications_select_own on public.notifications
  for select to authenticated
  using (
    user_id = (select auth.uid())
    and workspace_id in (select private.user_workspace_ids())
  );

-- A user dismisses (deletes) their own notifications.
create policy notifications_delete_own on public.notifications
  for delete to authenticated
  using (user_id = (select auth.uid()));

-- A user's own channel `workspace:<id>:user:<user id>` is theirs alone (this narrows the
-- members' policy on workspace channels).
create policy realtime_messages_user_channel_own on realtime.messages
  as restrictive
  for select to authenticated
  using (
    (select realtime.topic()) not like 'workspace:%:user:%'
    or split_part((select realtime.topic()), ':', 4) = (select auth.uid())::text
  );

-- the register of personal data --------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values
  ('public', 'notifications', 'kind', 'none', 'not_personal', null),
  ('public', 'notifications', 'title', 'contact', 'row_deleted', 'may name the customer; deleted when they are erased, and with the user''s account'),
  ('public', 'notifications', 'body', 'contact', 'row_deleted', 'may quote the customer; deleted when they are erased, and with the user''s account'),
  ('public', 'notifications', 'link', 'none', 'not_personal', 'ids only');
