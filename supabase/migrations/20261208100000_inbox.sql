-- The unified inbox: a workspace's channels (email, WhatsApp, Telegram, X), the people writing
-- to it (contact identities), conversations and their messages, per-member read state, and
-- the outbound queue the edge drains to each provider.
--
-- Who may do what: members of any role read their workspaces' channels, identities,
-- conversations and messages; members and above answer (public.reply_to_conversation), viewers
-- only read. Channels and their sealed credentials are written only by the edge, as the
-- service, after private.workspace_role_as(…, 'admin') answered for the user; credentials live
-- in private.channel_secrets, which no API role can read. Inbound messages are written by the
-- webhook appliers (private.apply_*_event), as the service.
--
-- Counters are kept on write by statement-level triggers: a conversation's message and inbound
-- counts and last-message times, the workspace's inbound total, and each member's read total,
-- so an inbox page and its unread counts never aggregate messages.
-- Delivery status only moves forward (queued → sent → delivered → read | failed); a trigger
-- refuses anything else. Every insert and status change is broadcast on the workspace's
-- private channel `workspace:<id>:inbox` (ids and states only, never text).

-- tables -------------------------------------------------------------------------------------

create table public.channels (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  kind text not null check (kind in ('email', 'whatsapp', 'telegram', 'x')),
  name text not null check (char_length(name) between 1 and 100),
  status text not null default 'active' check (status in ('active', 'revoked', 'disconnected')),
  status_reason text check (char_length(status_reason) <= 500),
  account_id text not null check (char_length(account_id) between 1 and 320),
  settings jsonb not null default '{}'::jsonb check (jsonb_typeof(settings) = 'object'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (kind, account_id),
  unique (id, workspace_id)
);

comment on table public.channels is
  'A workspace''s inbox channel: an inbound email address, a WhatsApp number, a Telegram bot or an X account. Written by the edge only.';

comment on column public.channels.account_id is
  'The provider''s id of the account: WhatsApp phone_number_id, Telegram bot id, X user id, or the inbound email address.';

create index channels_workspace_id_idx on public.channels (workspace_id);

create table private.channel_secrets (
  channel_id uuid primary key references public.channels (id) on delete cascade,
  secrets_encrypted text not null check (char_length(secrets_encrypted) <= 20000),
  updated_at timestamptz not null default now()
);

comment on table private.channel_secrets is
  'A channel''s credentials (tokens, app and webhook secrets) as one JSON document sealed by the edge (Fernet, INTEGRATIONS_ENCRYPTION_KEY).';

create table public.contact_identities (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  contact_id uuid references public.contacts (id) on delete cascade,
  kind text not null check (kind in ('email', 'whatsapp', 'telegram', 'x')),
  address text not null check (
    (kind = 'email' and address = lower(address) and address ~ '^[^@\s]+@[^@\s]+$' and char_length(address) <= 320)
    or (kind = 'whatsapp' and address ~ '^[1-9][0-9]{5,14}$')
    or (kind = 'telegram' and address ~ '^-?[1-9][0-9]{0,19}$')
    or (kind = 'x' and address ~ '^[1-9][0-9]{0,24}$')
  ),
  display_name text check (char_length(display_name) <= 200),
  created_at timestamptz not null default now(),
  unique (workspace_id, kind, address)
);

comment on table public.contact_identities is
  'Where a contact writes from: an email address, a WhatsApp id (E.164 digits), a Telegram chat id or an X user id. No contact when the plan''s contact limit was reached (the messages are kept).';

create index contact_identities_contact_id_idx on public.contact_identities (contact_id);

create table public.conversations (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  channel_id uuid not null references public.channels (id) on delete cascade,
  identity_id uuid not null references public.contact_identities (id) on delete cascade,
  contact_id uuid references public.contacts (id) on delete set null,
  status text not null default 'open' check (status in ('open', 'pending', 'snoozed', 'resolved')),
  snoozed_until timestamptz,
  assignee_id uuid references auth.users (id) on delete set null,
  priority text not null default 'none' check (priority in ('none', 'low', 'medium', 'high', 'urgent')),
  labels text[] not null default '{}' check (cardinality(labels) <= 20),
  subject text check (char_length(subject) <= 998),
  campaign_recipient_id uuid references public.campaign_recipients (id) on delete set null,
  last_message_at timestamptz not null default now(),
  last_inbound_at timestamptz,
  last_outbound_at timestamptz,
  inbound_count integer not null default 0 check (inbound_count >= 0),
  message_count integer not null default 0 check (message_count >= 0),
  first_response_at timestamptz,
  resolved_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check ((status = 'snoozed') = (snoozed_until is not null))
);

comment on table public.conversations is
  'A thread with one contact identity on one channel. At most one unresolved conversation per channel and identity.';

comment on column public.conversations.campaign_recipient_id is
  'The campaign message this conversation answers, when a reply was matched to one.';

create index conversations_inbox_idx on public.conversations (workspace_id, status, last_message_at desc, id desc);

create unique index conversations_one_unresolved_idx on public.conversations (channel_id, identity_id)
  where status <> 'resolved';

create index conversations_channel_id_idx on public.conversations (channel_id);

create index conversations_identity_id_idx on public.conversations (identity_id);

create index conversations_contact_id_idx on public.conversations (contact_id);

create index conversations_assignee_id_idx on public.conversations (assignee_id);

create index conversations_campaign_recipient_id_idx on public.conversations (campaign_recipient_id);

create table public.messages (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  conversation_id uuid not null references public.conversations (id) on delete cascade,
  channel_id uuid not null references public.channels (id) on delete cascade,
  direction text not null check (direction in ('inbound', 'outbound', 'note')),
  author_id uuid references auth.users (id) on delete set null,
  text text check (char_length(text) <= 200000),
  html text check (char_length(html) <= 2000000),
  quoted_text text check (char_length(quoted_text) <= 2000000),
  attachments jsonb not null default '[]'::jsonb check (jsonb_typeof(attachments) = 'array'),
  provider_message_id text check (char_length(provider_message_id) between 1 and 998),
  status text not null check (status in ('received', 'queued', 'sent', 'delivered', 'read', 'failed')),
  status_at timestamptz not null default now(),
  provider_timestamp timestamptz not null default now(),
  received_at timestamptz not null default now(),
  error_code text check (char_length(error_code) <= 100),
  error_text text check (char_length(error_text) <= 1000),
  template jsonb check (jsonb_typeof(template) = 'object'),
  context jsonb not null default '{}'::jsonb check (jsonb_typeof(context) = 'object'),
  campaign_recipient_id uuid references public.campaign_recipients (id) on delete set null,
  auto_reply boolean not null default false,
  mentions uuid[] not null default '{}',
  edited_at timestamptz,
  created_at timestamptz not null default now(),
  unique (channel_id, provider_message_id),
  check ((direction = 'outbound') = (status <> 'received'))
);

comment on table public.messages is
  'A message of a conversation: inbound (received), outbound (queued, sent, delivered, read or failed, with the provider''s error) or an internal note. Unique per channel and provider message id; ordered by provider_timestamp, arrival kept in received_at.';

comment on column public.messages.html is 'Sanitised HTML (email), safe to render.';

comment on column public.messages.context is
  'Provider details: the message replied to, the email Message-ID, In-Reply-To and References, the provider''s message type.';

create index messages_conversation_idx on public.messages (conversation_id, provider_timestamp, id);

create index messages_workspace_id_idx on public.messages (workspace_id);

create index messages_author_id_idx on public.messages (author_id);

create index messages_campaign_recipient_id_idx on public.messages (campaign_recipient_id);

-- Per member: how many of a conversation's inbound messages they have read.
create table public.conversation_reads (
  conversation_id uuid not null references public.conversations (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  read_inbound_count integer not null default 0 check (read_inbound_count >= 0),
  last_read_at timestamptz not null default now(),
  primary key (conversation_id, user_id)
);

comment on table public.conversation_reads is
  'A member''s read position in a conversation: unread = conversations.inbound_count - read_inbound_count.';

create index conversation_reads_user_id_idx on public.conversation_reads (user_id, workspace_id);

create index conversation_reads_workspace_id_idx on public.conversation_reads (workspace_id);

-- Per workspace: every inbound message ever kept; per member: how many of them they read.
create table public.inbox_counters (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  inbound_count bigint not null default 0 check (inbound_count >= 0)
);

comment on table public.inbox_counters is 'Inbound messages of a workspace''s inbox, kept on write.';

create table public.inbox_member_reads (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  read_inbound_count bigint not null default 0 check (read_inbound_count >= 0),
  primary key (workspace_id, user_id)
);

comment on table public.inbox_member_reads is
  'Inbound messages a member has read in a workspace, kept on write: their inbox''s unread = inbox_counters.inbound_count - read_inbound_count.';

create index inbox_member_reads_user_id_idx on public.inbox_member_reads (user_id);

-- The outbound queue: one row per outbound message until the provider accepted or refused it.
create table private.inbox_outbox (
  message_id uuid primary key references public.messages (id) on delete cascade,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  status text not null default 'pending' check (status in ('pending', 'sending', 'sent', 'dead')),
  attempts integer not null default 0,
  max_attempts integer not null default 8 check (max_attempts > 0),
  next_attempt_at timestamptz not null default now(),
  locked_until timestamptz,
  last_error text check (char_length(last_error) <= 1000),
  created_at timestamptz not null default now()
);

comment on table private.inbox_outbox is
  'Outbound inbox messages waiting for (or retrying) their provider: claimed with skip locked and a lease, retried with backoff and jitter.';

create index inbox_outbox_due_idx on private.inbox_outbox (next_attempt_at) where status in ('pending', 'sending');

create index inbox_outbox_workspace_id_idx on private.inbox_outbox (workspace_id);

-- Statuses that arrived before the send recorded its provider id (or for messages we never
-- sent): applied when the id is recorded, pruned after a week.
create table private.inbox_status_backlog (
  channel_id uuid not null references public.channels (id) on delete cascade,
  provider_message_id text not null check (char_length(provider_message_id) <= 998),
  status text not null check (status in ('sent', 'delivered', 'read', 'failed')),
  status_at timestamptz not null,
  error_code text check (char_length(error_code) <= 100),
  error_text text check (char_length(error_text) <= 1000),
  created_at timestamptz not null default now(),
  primary key (channel_id, provider_message_id)
);

comment on table private.inbox_status_backlog is
  'Delivery statuses of messages not (yet) known by their provider id.';

-- delivery status -----------------------------------------------------------------------------

-- The order of delivery states; read and failed are final.
create function private.message_status_rank(p_status text)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case p_status
    when 'received' then 0 when 'queued' then 1 when 'sent' then 2 when 'delivered' then 3
    when 'read' then 4 when 'failed' then 4 else -1 end
$$;

revoke all on function private.message_status_rank(text) from public, anon, authenticated;

grant execute on function private.message_status_rank(text) to service_role;

-- Whether a message may move from one delivery state to another.
create function private.message_status_moves(p_from text, p_to text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_from not in ('received', 'read', 'failed')
     and private.message_status_rank(p_to) > private.message_status_rank(p_from)
$$;

revoke all on function private.message_status_moves(text, text) from public, anon, authenticated;

grant execute on function private.message_status_moves(text, text) to service_role;

create function private.guard_message_status()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not private.message_status_moves(old.status, new.status) then
    perform private.fail(409, 'illegal_transition',
      format('A message cannot move from %s to %s', old.status, new.status));
  end if;
  return new;
end
$$;

revoke all on function private.guard_message_status() from public, anon, authenticated;

create trigger messages_guard_status
  before update of status on public.messages
  for each row when (old.status is distinct from new.status)
  execute function private.guard_message_status();

-- counters and broadcasts ---------------------------------------------------------------------

-- New messages: their conversations' counts and times, the workspace's inbound total, a
-- snoozed or pending conversation reopened by an inbound message, an in-app notification to
-- the assignee of a conversation the customer wrote to, and one broadcast each.
create function private.inbox_messages_inserted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.conversations c
  set message_count = c.message_count + d.messages,
      inbound_count = c.inbound_count + d.inbound,
      last_message_at = greatest(c.last_message_at, coalesce(d.last_at, c.last_message_at)),
      last_inbound_at = greatest(c.last_inbound_at, d.last_inbound_at),
      last_outbound_at = greatest(c.last_outbound_at, d.last_outbound_at),
      first_response_at = coalesce(c.first_response_at, d.first_outbound_at),
      status = case when d.inbound > 0 and c.status in ('snoozed', 'pending') then 'open' else c.status end,
      snoozed_until = case when d.inbound > 0 and c.status in ('snoozed', 'pending') then null else c.snoozed_until end,
      updated_at = now()
  from (
    select n.conversation_id,
           count(*) filter (where n.direction <> 'note')::integer as messages,
           count(*) filter (where n.direction = 'inbound')::integer as inbound,
           max(n.provider_timestamp) filter (where n.direction <> 'note') as last_at,
           max(n.provider_timestamp) filter (where n.direction = 'inbound') as last_inbound_at,
           max(n.provider_timestamp) filter (where n.direction = 'outbound') as last_outbound_at,
           min(n.created_at) filter (where n.direction = 'outbound' and n.author_id is not null) as first_outbound_at
    from new_rows n
    group by n.conversation_id
  ) as d
  where c.id = d.conversation_id;

  insert into public.inbox_counters as k (workspace_id, inbound_count)
  select n.workspace_id, count(*) from new_rows n where n.direction = 'inbound' group by n.workspace_id
  on conflict (workspace_id) do update set inbound_count = k.inbound_count + excluded.inbound_count;

  -- The assignee hears of a customer's reply (in the app; the text stays in the conversation).
  perform private.notify_users(c.workspace_id, array[c.assignee_id], 'conversation.replied',
                               'A customer replied', null,
                               jsonb_build_object('conversation_id', c.id), c.contact_id)
  from public.conversations c
  where c.assignee_id is not null
    and c.id in (select n.conversation_id from new_rows n where n.direction = 'inbound');

  perform realtime.send(
    jsonb_build_object('id', n.id, 'conversation_id', n.conversation_id, 'channel_id', n.channel_id,
                       'direction', n.direction, 'status', n.status,
                       'provider_timestamp', n.provider_timestamp),
    'message_created', 'workspace:' || n.workspace_id::text || ':inbox', true)
  from new_rows n;
  return null;
end
$$;

revoke all on function private.inbox_messages_inserted() from public, anon, authenticated;

create trigger messages_inserted
  after insert on public.messages
  referencing new table as new_rows
  for each statement execute function private.inbox_messages_inserted();

create function private.inbox_message_status_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform realtime.send(
    jsonb_build_object('id', n.id, 'conversation_id', n.conversation_id, 'status', n.status,
                       'previous_status', o.status, 'error_code', n.error_code, 'status_at', n.status_at),
    'message_status', 'workspace:' || n.workspace_id::text || ':inbox', true)
  from new_rows n join old_rows o on o.id = n.id
  where n.status is distinct from o.status;
  return null;
end
$$;

revoke all on function private.inbox_message_status_changed() from public, anon, authenticated;

create trigger messages_status_changed
  after update on public.messages
  referencing old table as old_rows new table as new_rows
  for each statement execute function private.inbox_message_status_changed();

-- Messages of deleted conversations leave the workspace's inbound total (erasure, merges).
create function private.inbox_conversations_deleted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.inbox_counters k
  set inbound_count = greatest(k.inbound_count - d.inbound, 0)
  from (select o.workspace_id, sum(o.inbound_count) as inbound from old_rows o group by o.workspace_id) as d
  where k.workspace_id = d.workspace_id;
  return null;
end
$$;

revoke all on function private.inbox_conversations_deleted() from public, anon, authenticated;

create trigger conversations_deleted
  after delete on public.conversations
  referencing old table as old_rows
  for each statement execute function private.inbox_conversations_deleted();

-- A member's read positions that go (a deleted conversation) leave their read total.
create function private.inbox_reads_deleted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.inbox_member_reads r
  set read_inbound_count = greatest(r.read_inbound_count - d.read, 0)
  from (
    select o.workspace_id, o.user_id, sum(o.read_inbound_count) as read
    from old_rows o group by o.workspace_id, o.user_id
  ) as d
  where r.workspace_id = d.workspace_id and r.user_id = d.user_id;
  return null;
end
$$;

revoke all on function private.inbox_reads_deleted() from public, anon, authenticated;

create trigger conversation_reads_deleted
  after delete on public.conversation_reads
  referencing old table as old_rows
  for each statement execute function private.inbox_reads_deleted();

create function private.broadcast_conversation_change()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform realtime.send(
    jsonb_build_object('id', new.id, 'status', new.status, 'previous_status', old.status,
                       'assignee_id', new.assignee_id, 'previous_assignee_id', old.assignee_id,
                       'priority', new.priority, 'snoozed_until', new.snoozed_until),
    'conversation_updated', 'workspace:' || new.workspace_id::text || ':inbox', true);
  return null;
end
$$;

revoke all on function private.broadcast_conversation_change() from public, anon, authenticated;

create trigger conversations_broadcast_change
  after update of status, assignee_id, priority, snoozed_until on public.conversations
  for each row
  when (old.status is distinct from new.status or old.assignee_id is distinct from new.assignee_id
        or old.priority is distinct from new.priority or old.snoozed_until is distinct from new.snoozed_until)
  execute function private.broadcast_conversation_change();

create trigger channels_touch_updated_at
  before update on public.channels
  for each row execute function private.touch_updated_at();

-- Erasure reaches the inbox: when a contact is erased, their identities go, and with them
-- their conversations and messages (cascade); so do the stored webhooks of the workspace's
-- channels that name one of their addresses.
create function private.erase_inbox_of_contact()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_addresses text[];
begin
  select coalesce(array_agg(i.address), '{}') into v_addresses
  from public.contact_identities i where i.contact_id = new.id;
  v_addresses := v_addresses || array_remove(array[old.email, old.phone, ltrim(old.phone, '+')], null);
  delete from private.webhook_events e
  where e.identity_keys && private.identifier_keys(private.identifier_tokens(array_to_string(v_addresses, ' | ')))
    and exists (select from public.channels ch
                where ch.workspace_id = new.workspace_id and e.event_id like ch.id::text || ':%')
    and exists (select from unnest(v_addresses) as a where strpos(e.body, a) > 0);
  delete from public.contact_identities i where i.contact_id = new.id;
  return new;
end
$$;

revoke all on function private.erase_inbox_of_contact() from public, anon, authenticated;

create trigger contacts_erase_inbox
  after update of erased_at on public.contacts
  for each row when (old.erased_at is null and new.erased_at is not null)
  execute function private.erase_inbox_of_contact();

-- functions -----------------------------------------------------------------------------------

-- The edge stores a channel it connected, as the service, after the admin check. Another
-- workspace's channel on the same account is 409 channel_taken; the same workspace's is
-- updated (reconnected) with the new secrets.
create function private.connect_channel(
  p_workspace_id uuid, p_kind text, p_name text, p_account_id text, p_settings jsonb,
  p_secrets_encrypted text
)
returns public.channels
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_channel public.channels;
begin
  select * into v_channel from public.channels c
  where c.kind = p_kind and c.account_id = p_account_id for update;
  if v_channel.id is not null and v_channel.workspace_id <> p_workspace_id then
    perform private.fail(409, 'channel_taken', 'This account is connected to another workspace');
  end if;
  if v_channel.id is null then
    insert into public.channels (workspace_id, kind, name, account_id, settings)
    values (p_workspace_id, p_kind, p_name, p_account_id, coalesce(p_settings, '{}'::jsonb))
    returning * into v_channel;
  else
    update public.channels c
    set name = p_name, settings = coalesce(p_settings, '{}'::jsonb), status = 'active', status_reason = null
    where c.id = v_channel.id
    returning * into v_channel;
  end if;
  insert into private.channel_secrets (channel_id, secrets_encrypted)
  values (v_channel.id, p_secrets_encrypted)
  on conflict (channel_id) do update set secrets_encrypted = excluded.secrets_encrypted, updated_at = now();
  return v_channel;
end
$$;

revoke all on function private.connect_channel(uuid, text, text, text, jsonb, text) from public, anon, authenticated;

grant execute on function private.connect_channel(uuid, text, text, text, jsonb, text) to service_role;

-- What a webhook or the sender needs of a channel: the row and its sealed secrets.
create function private.channel_with_secrets(p_channel_id uuid)
returns table (channel public.channels, secrets_encrypted text)
language sql
stable
security definer
set search_path = ''
as $$
  select c, s.secrets_encrypted
  from public.channels c left join private.channel_secrets s on s.channel_id = c.id
  where c.id = p_channel_id
$$;

revoke all on function private.channel_with_secrets(uuid) from public, anon, authenticated;

grant execute on function private.channel_with_secrets(uuid) to service_role;

-- A channel whose provider refused its credentials stops sending until it is reconnected.
create function private.revoke_channel(p_channel_id uuid, p_reason text)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.channels c set status = 'revoked', status_reason = left(p_reason, 500)
  where c.id = p_channel_id and c.status = 'active'
$$;

revoke all on function private.revoke_channel(uuid, text) from public, anon, authenticated;

grant execute on function private.revoke_channel(uuid, text) to service_role;

-- Admins disconnect a channel of their workspace: its credentials are deleted, its
-- conversations stay readable. Another workspace's channel (or none) is 404, lower roles 403.
create function public.disconnect_channel(p_channel_id uuid)
returns public.channels
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_channel public.channels;
begin
  select * into v_channel from public.channels c
  where c.id = p_channel_id and c.workspace_id in (select private.user_workspace_ids());
  if v_channel.id is null then
    perform private.fail(404, 'channel_not_found', 'Channel not found');
  end if;
  perform private.workspace_role_as(v_channel.workspace_id, 'admin');
  delete from private.channel_secrets s where s.channel_id = p_channel_id;
  update public.channels c set status = 'disconnected', status_reason = null
  where c.id = p_channel_id
  returning * into v_channel;
  return v_channel;
end
$$;

revoke all on function public.disconnect_channel(uuid) from public, anon;

grant execute on function public.disconnect_channel(uuid) to authenticated;

comment on function public.disconnect_channel(uuid) is
  'Admins: disconnects a channel (its credentials are deleted; its conversations stay). 404 channel_not_found, 403 insufficient_role.';

-- The caller has read a conversation up to now: its unread count becomes 0, and their inbox's
-- unread total drops by what they had not read. Any member (viewers too). Answers the
-- conversation's inbound count they have now read.
create function public.mark_conversation_read(p_conversation_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_conversation public.conversations;
  v_before integer;
begin
  select * into v_conversation from public.conversations c
  where c.id = p_conversation_id and c.workspace_id in (select private.user_workspace_ids());
  if v_conversation.id is null then
    perform private.fail(404, 'conversation_not_found', 'Conversation not found');
  end if;
  select r.read_inbound_count into v_before from public.conversation_reads r
  where r.conversation_id = p_conversation_id and r.user_id = v_user for update;
  insert into public.conversation_reads as r (conversation_id, user_id, workspace_id, read_inbound_count, last_read_at)
  values (p_conversation_id, v_user, v_conversation.workspace_id, v_conversation.inbound_count, now())
  on conflict (conversation_id, user_id) do update
  set read_inbound_count = greatest(r.read_inbound_count, excluded.read_inbound_count), last_read_at = now();
  if v_conversation.inbound_count > coalesce(v_before, 0) then
    insert into public.inbox_member_reads as m (workspace_id, user_id, read_inbound_count)
    values (v_conversation.workspace_id, v_user, v_conversation.inbound_count - coalesce(v_before, 0))
    on conflict (workspace_id, user_id) do update
    set read_inbound_count = m.read_inbound_count + excluded.read_inbound_count;
  end if;
  return greatest(v_conversation.inbound_count, coalesce(v_before, 0));
end
$$;

revoke all on function public.mark_conversation_read(uuid) from public, anon;

grant execute on function public.mark_conversation_read(uuid) to authenticated;

comment on function public.mark_conversation_read(uuid) is
  'Any member: marks a conversation read up to now for the caller (their unread counts drop). 404 conversation_not_found.';

-- Members and above answer a conversation: the message is queued with its outbox row in one
-- transaction, and the edge (or the cron) sends it. Either text or a WhatsApp template (an
-- approved one of the channel: {"name", "language", "parameters": [text…]}). Free text on
-- WhatsApp only within 24 hours of the contact's last message (409 whatsapp_window_closed).
create function public.reply_to_conversation(p_conversation_id uuid, p_text text, p_template jsonb default null)
returns public.messages
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_conversation public.conversations;
  v_channel public.channels;
  v_message public.messages;
  v_limit integer;
begin
  select * into v_conversation from public.conversations c
  where c.id = p_conversation_id and c.workspace_id in (select private.user_workspace_ids());
  if v_conversation.id is null then
    perform private.fail(404, 'conversation_not_found', 'Conversation not found');
  end if;
  perform private.workspace_role_as(v_conversation.workspace_id, 'member');
  select * into v_channel from public.channels ch where ch.id = v_conversation.channel_id;
  if v_channel.status <> 'active' then
    perform private.fail(409, 'channel_not_active',
      format('The channel is %s; reconnect it to send', v_channel.status));
  end if;
  if (p_text is null) = (p_template is null) then
    perform private.fail(422, 'invalid_message', 'Send either text or a template');
  end if;
  v_limit := case v_channel.kind when 'x' then 10000 when 'email' then 200000 else 4096 end;
  if p_text is not null and (btrim(p_text) = '' or char_length(p_text) > v_limit) then
    perform private.fail(422, 'invalid_message', format('The text must be 1 to %s characters', v_limit));
  end if;
  if p_template is not null then
    if v_channel.kind <> 'whatsapp' then
      perform private.fail(422, 'invalid_message', 'Templates are sent on WhatsApp only');
    end if;
    perform private.require_approved_template(v_channel.id, p_template);
  elsif v_channel.kind = 'whatsapp'
        and (v_conversation.last_inbound_at is null or v_conversation.last_inbound_at < now() - interval '24 hours') then
    perform private.fail(409, 'whatsapp_window_closed',
      'The contact has not written in the last 24 hours: only an approved template can be sent');
  end if;
  insert into public.messages (workspace_id, conversation_id, channel_id, direction, author_id, text, template, status)
  values (v_conversation.workspace_id, v_conversation.id, v_channel.id, 'outbound', v_user, p_text, p_template, 'queued')
  returning * into v_message;
  insert into private.inbox_outbox (message_id, workspace_id) values (v_message.id, v_message.workspace_id);
  return v_message;
end
$$;

-- claiming and recording sends ----------------------------------------------------------------

-- Claims due outbound messages for one worker (skip locked, leased): any due ones, or only
-- p_message_id (the edge sends a reply right after queueing it).
create function private.claim_inbox_outbox(p_limit integer, p_lease_seconds integer, p_message_id uuid default null)
returns setof private.inbox_outbox
language sql
security definer
set search_path = ''
as $$
  update private.inbox_outbox o
  set status = 'sending', attempts = o.attempts + 1,
      locked_until = now() + make_interval(secs => p_lease_seconds)
  where o.message_id in (
    select d.message_id from private.inbox_outbox d
    where d.status in ('pending', 'sending') and d.next_attempt_at <= now()
      and (d.locked_until is null or d.locked_until < now())
      and (p_message_id is null or d.message_id = p_message_id)
    order by d.next_attempt_at
    limit p_limit
    for update skip locked
  )
  returning o.*
$$;

revoke all on function private.claim_inbox_outbox(integer, integer, uuid) from public, anon, authenticated;

grant execute on function private.claim_inbox_outbox(integer, integer, uuid) to service_role;

-- What the sender needs for one outbound message: the message, its channel with the sealed
-- secrets, the address it goes to and the provider id of the conversation's last inbound
-- message (replies thread on it).
create function private.inbox_outbound(p_message_id uuid)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'message_id', m.id, 'workspace_id', m.workspace_id, 'conversation_id', m.conversation_id,
    'text', m.text, 'template', m.template,
    'channel_id', ch.id, 'kind', ch.kind, 'status', ch.status, 'account_id', ch.account_id,
    'settings', ch.settings, 'secrets_encrypted', s.secrets_encrypted,
    'to', i.address, 'subject', c.subject,
    'last_inbound', (
      select jsonb_build_object('provider_message_id', l.provider_message_id, 'context', l.context)
      from public.messages l
      where l.conversation_id = m.conversation_id and l.direction = 'inbound'
      order by l.provider_timestamp desc, l.id desc limit 1
    )
  )
  from public.messages m
  join public.conversations c on c.id = m.conversation_id
  join public.contact_identities i on i.id = c.identity_id
  join public.channels ch on ch.id = m.channel_id
  left join private.channel_secrets s on s.channel_id = ch.id
  where m.id = p_message_id
$$;

revoke all on function private.inbox_outbound(uuid) from public, anon, authenticated;

grant execute on function private.inbox_outbound(uuid) to service_role;

-- The provider accepted the message: its id is recorded (statuses that arrived first are
-- applied now) and the message is sent.
create function private.inbox_message_sent(p_message_id uuid, p_provider_message_id text, p_context jsonb default null)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_message public.messages;
  v_backlog private.inbox_status_backlog;
begin
  update private.inbox_outbox o set status = 'sent', locked_until = null, last_error = null
  where o.message_id = p_message_id;
  select * into v_message from public.messages m where m.id = p_message_id for update;
  if v_message.id is null then
    return;
  end if;
  update public.messages m
  set provider_message_id = p_provider_message_id,
      context = m.context || coalesce(p_context, '{}'::jsonb),
      status = case when private.message_status_moves(m.status, 'sent') then 'sent' else m.status end,
      status_at = case when private.message_status_moves(m.status, 'sent') then now() else m.status_at end
  where m.id = p_message_id;
  delete from private.inbox_status_backlog b
  where b.channel_id = v_message.channel_id and b.provider_message_id = p_provider_message_id
  returning * into v_backlog;
  if v_backlog.status is not null then
    update public.messages m
    set status = v_backlog.status, status_at = v_backlog.status_at,
        error_code = coalesce(v_backlog.error_code, m.error_code),
        error_text = coalesce(v_backlog.error_text, m.error_text)
    where m.id = p_message_id and private.message_status_moves(m.status, v_backlog.status);
  end if;
end
$$;

revoke all on function private.inbox_message_sent(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.inbox_message_sent(uuid, text, jsonb) to service_role;

-- A failed attempt: retried with exponential backoff and full jitter (never sooner than the
-- provider's Retry-After) while retryable and attempts remain; otherwise the message fails
-- visibly with the provider's code and reason. Answers 'retrying' or 'failed'.
create function private.inbox_message_failed(
  p_message_id uuid, p_error_code text, p_error_text text, p_retryable boolean,
  p_retry_after_seconds integer default null
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_outbox private.inbox_outbox;
  v_backoff double precision;
begin
  select * into v_outbox from private.inbox_outbox o where o.message_id = p_message_id for update;
  if v_outbox.message_id is null then
    return 'unknown';
  end if;
  if p_retryable and v_outbox.attempts < v_outbox.max_attempts then
    v_backoff := 1 + random() * least(3600, 10 * power(2, v_outbox.attempts - 1));
    update private.inbox_outbox o
    set status = 'pending', locked_until = null,
        last_error = left(coalesce(p_error_code, '') || ' ' || coalesce(p_error_text, ''), 1000),
        next_attempt_at = now() + make_interval(secs => greatest(v_backoff, coalesce(p_retry_after_seconds, 0)))
    where o.message_id = p_message_id;
    return 'retrying';
  end if;
  update private.inbox_outbox o
  set status = 'dead', locked_until = null,
      last_error = left(coalesce(p_error_code, '') || ' ' || coalesce(p_error_text, ''), 1000)
  where o.message_id = p_message_id;
  update public.messages m
  set status = 'failed', status_at = now(), error_code = left(p_error_code, 100), error_text = left(p_error_text, 1000)
  where m.id = p_message_id and private.message_status_moves(m.status, 'failed');
  return 'failed';
end
$$;

revoke all on function private.inbox_message_failed(uuid, text, text, boolean, integer) from public, anon, authenticated;

grant execute on function private.inbox_message_failed(uuid, text, text, boolean, integer) to service_role;

-- Delivery statuses from a provider's callbacks, for one channel: [{"id", "status",
-- "status_at", "error_code", "error_text"}]. The furthest state per message wins (a webhook
-- delivered three times, in any order, ends in the right state); statuses of messages not
-- known by that id wait in the backlog. Answers how many messages moved.
create function private.apply_message_statuses(p_channel_id uuid, p_statuses jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_moved integer;
begin
  with s as (
    select distinct on (x.id) x.id, x.status, x.status_at, x.error_code, x.error_text
    from jsonb_to_recordset(p_statuses) as x(id text, status text, status_at timestamptz, error_code text, error_text text)
    where x.status in ('sent', 'delivered', 'read', 'failed') and x.id is not null
      and char_length(x.id) between 1 and 998
    order by x.id, private.message_status_rank(x.status) desc, x.status_at desc
  ),
  moved as (
    update public.messages m
    set status = s.status, status_at = coalesce(s.status_at, now()),
        error_code = coalesce(left(s.error_code, 100), m.error_code),
        error_text = coalesce(left(s.error_text, 1000), m.error_text)
    from s
    where m.channel_id = p_channel_id and m.provider_message_id = s.id
      and private.message_status_moves(m.status, s.status)
    returning m.id
  ),
  waiting as (
    insert into private.inbox_status_backlog as b (channel_id, provider_message_id, status, status_at, error_code, error_text)
    select p_channel_id, s.id, s.status, coalesce(s.status_at, now()), left(s.error_code, 100), left(s.error_text, 1000)
    from s
    where not exists (select from public.messages m where m.channel_id = p_channel_id and m.provider_message_id = s.id)
    on conflict (channel_id, provider_message_id) do update
    set status = excluded.status, status_at = excluded.status_at,
        error_code = coalesce(excluded.error_code, b.error_code), error_text = coalesce(excluded.error_text, b.error_text)
    where private.message_status_rank(excluded.status) > private.message_status_rank(b.status)
    returning 1
  )
  select count(*) into v_moved from moved;
  return v_moved;
end
$$;

revoke all on function private.apply_message_statuses(uuid, jsonb) from public, anon, authenticated;

grant execute on function private.apply_message_statuses(uuid, jsonb) to service_role;

-- The identities of inbound senders on a channel, each with its conversation: identities are
-- created as needed, linked to the workspace's contact with that address (email or phone) or
-- to a new contact while the plan has room (over the limit the identity stays without one and
-- the messages are still kept; an erased person's address creates no contact), and each gets
-- its unresolved conversation on the channel (a new one when there is none).
-- p_senders: [{"address", "display_name", "subject"?}]. Answers address → conversation id.
create function private.inbox_conversations_for(p_channel_id uuid, p_senders jsonb)
returns table (address text, identity_id uuid, conversation_id uuid, contact_id uuid)
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_channel public.channels;
  v_room integer;
begin
  select * into v_channel from public.channels c where c.id = p_channel_id;
  insert into public.contact_identities (workspace_id, kind, address, display_name)
  select distinct on (x.address) v_channel.workspace_id, v_channel.kind, x.address, left(x.display_name, 200)
  from jsonb_to_recordset(p_senders) as x(address text, display_name text)
  order by x.address
  on conflict (workspace_id, kind, address) do nothing;

  -- Known people: the workspace's contact with that address or phone.
  update public.contact_identities i set contact_id = c.id
  from public.contacts c
  where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.contact_id is null
    and i.address in (select x.address from jsonb_to_recordset(p_senders) as x(address text))
    and c.workspace_id = v_channel.workspace_id and c.erased_at is null
    and ((i.kind = 'email' and c.email = i.address) or (i.kind = 'whatsapp' and c.phone = '+' || i.address));

  if exists (
    select from public.contact_identities i
    where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.contact_id is null
      and i.address in (select x.address from jsonb_to_recordset(p_senders) as x(address text))
  ) then
    v_room := private.contacts_room(v_channel.workspace_id);
    with fresh as (
      select i.id, i.kind, i.address, i.display_name, gen_random_uuid() as contact_id
      from public.contact_identities i
      where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.contact_id is null
        and i.address in (select x.address from jsonb_to_recordset(p_senders) as x(address text))
      order by i.address
      limit v_room
    ),
    created as (
      insert into public.contacts (id, workspace_id, email, phone, first_name)
      select f.contact_id, v_channel.workspace_id,
             case when f.kind = 'email' and f.address ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then f.address end,
             case when f.kind = 'whatsapp' and f.address ~ '^[1-9][0-9]{6,14}$' then '+' || f.address end,
             f.display_name
      from fresh f
      on conflict do nothing
      returning id
    )
    update public.contact_identities i set contact_id = f.contact_id
    from fresh f join created c on c.id = f.contact_id
    where i.id = f.id;
  end if;

  insert into public.conversations (workspace_id, channel_id, identity_id, contact_id, subject)
  select v_channel.workspace_id, v_channel.id, i.id, i.contact_id, left(x.subject, 998)
  from jsonb_to_recordset(p_senders) as x(address text, subject text)
  join public.contact_identities i
    on i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind and i.address = x.address
  on conflict (channel_id, identity_id) where status <> 'resolved' do nothing;

  return query
  select i.address, i.id, c.id, i.contact_id
  from public.contact_identities i
  join public.conversations c on c.identity_id = i.id and c.channel_id = v_channel.id and c.status <> 'resolved'
  where i.workspace_id = v_channel.workspace_id and i.kind = v_channel.kind
    and i.address in (select x.address from jsonb_to_recordset(p_senders) as x(address text));
end
$$;

revoke all on function private.inbox_conversations_for(uuid, jsonb) from public, anon, authenticated;

grant execute on function private.inbox_conversations_for(uuid, jsonb) to service_role;

-- Outbound messages waiting longer than a week for a status that never came, and statuses of
-- messages that never became known, are forgotten.
create function private.prune_inbox_backlog()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  delete from private.inbox_status_backlog b where b.created_at < now() - interval '7 days';
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

revoke all on function private.prune_inbox_backlog() from public, anon, authenticated;

grant execute on function private.prune_inbox_backlog() to service_role;

-- views ---------------------------------------------------------------------------------------

-- The caller's unread inbound messages per workspace (their inbox badge), from two counters.
create view public.inbox_unread with (security_invoker = true) as
  select k.workspace_id, k.inbound_count - coalesce(r.read_inbound_count, 0) as unread_messages
  from public.inbox_counters k
  left join public.inbox_member_reads r on r.workspace_id = k.workspace_id and r.user_id = (select auth.uid());

comment on view public.inbox_unread is 'The caller''s unread inbound messages per workspace, from counters kept on write.';

-- A page of the inbox: conversations with the caller's unread count (filter by workspace and
-- status, order by last_message_at desc, id desc; the index serves it).
create view public.inbox_conversations with (security_invoker = true) as
  select c.id, c.workspace_id, c.channel_id, c.identity_id, c.contact_id, c.status, c.snoozed_until,
         c.assignee_id, c.priority, c.labels, c.subject, c.campaign_recipient_id, c.last_message_at,
         c.last_inbound_at, c.last_outbound_at, c.message_count, c.inbound_count,
         c.inbound_count - coalesce(r.read_inbound_count, 0) as unread_count
  from public.conversations c
  left join public.conversation_reads r on r.conversation_id = c.id and r.user_id = (select auth.uid());

comment on view public.inbox_conversations is 'Conversations with the caller''s unread count.';

-- storage -------------------------------------------------------------------------------------

-- Attachments of inbox messages, in the private bucket `inbox` under `<workspace id>/…`.
-- 25 MB: the largest attachment any of the channels delivers to us (Storage refuses larger).
insert into storage.buckets (id, name, public, file_size_limit)
values ('inbox', 'inbox', false, 26214400)
on conflict (id) do nothing;

-- Members of any role may read the attachments in their workspaces' folders of the inbox bucket.
create policy inbox_select_members on storage.objects
  for select to authenticated
  using (
    bucket_id = 'inbox'
    and (storage.foldername(objects.name))[1] in (select id::text from private.user_workspace_ids() as id)
  );

-- Members and above may upload attachments (outbound files) into their workspaces' folders.
create policy inbox_insert_members on storage.objects
  for insert to authenticated
  with check (
    bucket_id = 'inbox'
    and (storage.foldername(objects.name))[1] in (
      select id::text from private.user_workspace_ids_at_least('member') as id
    )
  );

-- Members and above may delete attachments from their workspaces' folders of the inbox bucket.
create policy inbox_delete_members on storage.objects
  for delete to authenticated
  using (
    bucket_id = 'inbox'
    and (storage.foldername(objects.name))[1] in (
      select id::text from private.user_workspace_ids_at_least('member') as id
    )
  );

-- personal data ----------------------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'channels', 'kind', 'none', 'not_personal', null),
  ('public', 'channels', 'name', 'none', 'not_personal', 'the workspace''s own channel'),
  ('public', 'channels', 'status', 'none', 'not_personal', null),
  ('public', 'channels', 'status_reason', 'none', 'not_personal', 'the provider''s reason a credential was refused'),
  ('public', 'channels', 'account_id', 'none', 'not_personal', 'the workspace''s own number, bot, account or address'),
  ('public', 'channels', 'settings', 'none', 'not_personal', null),
  ('private', 'channel_secrets', 'secrets_encrypted', 'none', 'not_personal', 'the channel''s credentials, sealed'),
  ('public', 'contact_identities', 'kind', 'none', 'not_personal', null),
  ('public', 'contact_identities', 'address', 'contact', 'row_deleted', 'email, phone, chat or user id'),
  ('public', 'contact_identities', 'display_name', 'contact', 'row_deleted', 'the name the provider shows'),
  ('public', 'conversations', 'status', 'none', 'not_personal', null),
  ('public', 'conversations', 'priority', 'none', 'not_personal', null),
  ('public', 'conversations', 'labels', 'none', 'not_personal', 'the team''s labels'),
  ('public', 'conversations', 'subject', 'contact', 'row_deleted', 'an email subject'),
  ('public', 'messages', 'direction', 'none', 'not_personal', null),
  ('public', 'messages', 'text', 'contact', 'row_deleted', 'what the person wrote or was told'),
  ('public', 'messages', 'html', 'contact', 'row_deleted', null),
  ('public', 'messages', 'quoted_text', 'contact', 'row_deleted', null),
  ('public', 'messages', 'attachments', 'contact', 'row_deleted', 'file names and storage paths'),
  ('public', 'messages', 'provider_message_id', 'contact', 'row_deleted', 'email Message-IDs can name the sender'),
  ('public', 'messages', 'status', 'none', 'not_personal', null),
  ('public', 'messages', 'error_code', 'none', 'not_personal', null),
  ('public', 'messages', 'error_text', 'contact', 'row_deleted', 'a provider''s reason can quote the address'),
  ('public', 'messages', 'template', 'contact', 'row_deleted', 'template parameters'),
  ('public', 'messages', 'context', 'contact', 'row_deleted', 'email headers'),
  ('private', 'inbox_outbox', 'status', 'none', 'not_personal', null),
  ('private', 'inbox_outbox', 'last_error', 'contact', 'row_deleted', 'a provider''s reason; deleted with its message'),
  ('private', 'inbox_status_backlog', 'provider_message_id', 'contact', 'transient', 'pruned after a week'),
  ('private', 'inbox_status_backlog', 'status', 'none', 'not_personal', null),
  ('private', 'inbox_status_backlog', 'error_code', 'none', 'not_personal', null),
  ('private', 'inbox_status_backlog', 'error_text', 'contact', 'transient', 'pruned after a week');

-- grants --------------------------------------------------------------------------------------

revoke all on public.channels, public.contact_identities, public.conversations, public.messages,
  public.conversation_reads, public.inbox_counters, public.inbox_member_reads
  from anon, authenticated, public;

revoke all on public.inbox_unread, public.inbox_conversations from anon, authenticated, public;

revoke all on private.channel_secrets, private.inbox_outbox, private.inbox_status_backlog
  from anon, authenticated, public;

grant select on public.channels, public.contact_identities, public.conversations, public.messages,
  public.conversation_reads, public.inbox_counters, public.inbox_member_reads to authenticated;

grant select on public.inbox_unread, public.inbox_conversations to authenticated;

grant select on public.channels, public.contact_identities, public.conversations, public.messages,
  public.conversation_reads, public.inbox_counters, public.inbox_member_reads to service_role;

grant select on public.inbox_unread, public.inbox_conversations to service_role;

revoke all on function public.reply_to_conversation(uuid, text, jsonb) from public, anon;

grant execute on function public.reply_to_conversation(uuid, text, jsonb) to authenticated;

comment on function public.reply_to_conversation(uuid, text, jsonb) is
  'Members and above: queues a reply (text, or an approved WhatsApp template {name, language, parameters}) for the edge to send. 404 conversation_not_found, 403 insufficient_role, 409 channel_not_active, 409 whatsapp_window_closed, 409 template_not_approved, 422 invalid_message.';

-- row level security --------------------------------------------------------------------------

alter table public.channels enable row level security;

alter table public.contact_identities enable row level security;

alter table public.conversations enable row level security;

alter table public.messages enable row level security;

alter table public.conversation_reads enable row level security;

alter table public.inbox_counters enable row level security;

alter table public.inbox_member_reads enable row level security;

alter table private.channel_secrets enable row level security;

alter table private.inbox_outbox enable row level security;

alter table private.inbox_status_backlog enable row level security;

-- Members of any role may read their workspaces' channels (never their credentials); the edge writes them.
create policy channels_select_members on public.channels
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read who writes to their workspaces' inbox; the appliers write identities.
create policy contact_identities_select_members on public.contact_identities
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' conversations; changes go through functions.
create policy conversations_select_members on public.conversations
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' messages; replies and notes go through functions.
create policy messages_select_members on public.messages
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Each member reads only their own read positions; public.mark_conversation_read writes them.
create policy conversation_reads_select_own on public.conversation_reads
  for select to authenticated
  using (user_id = (select auth.uid()) and workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' inbox totals; triggers keep them.
create policy inbox_counters_select_members on public.inbox_counters
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Each member reads only their own read totals; public.mark_conversation_read keeps them.
create policy inbox_member_reads_select_own on public.inbox_member_reads
  for select to authenticated
  using (user_id = (select auth.uid()) and workspace_id in (select private.user_workspace_ids()));
