-- Per-member unread counts per channel (Chatwoot's "inbox"), kept on write like the
-- workspace's: a channel's inbound total (`inbox_channel_counters`) and what each member has
-- read of it (`inbox_channel_member_reads`); the member's unread in a channel is the one minus
-- the other, read by `public.inbox_channel_unread` without touching a message. Messages add to
-- the channel's total, deleted conversations (erasure, a deleted channel) take theirs off, and a
-- member's read positions carry their channel (`conversation_reads.channel_id`), so a position
-- that goes takes its count off that channel too. A conversation never changes channel (a merge
-- moves it to another contact only), so nothing else moves these counts.
--
-- mark_conversation_read now makes the member's read position first and then locks it: two
-- first reads of one conversation at once (two tabs) used to both count the whole
-- conversation as newly read; now the second waits and counts only what the first left.

-- tables --------------------------------------------------------------------------------------

-- Per channel: every inbound message it has kept.
create table public.inbox_channel_counters (
  channel_id uuid primary key references public.channels (id) on delete cascade,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  inbound_count bigint not null default 0 check (inbound_count >= 0)
);

comment on table public.inbox_channel_counters is
  'Inbound messages of a channel, kept on write (the per-channel twin of inbox_counters).';

-- Per member and channel: how many of the channel's inbound messages they have read.
create table public.inbox_channel_member_reads (
  channel_id uuid not null references public.channels (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  read_inbound_count bigint not null default 0 check (read_inbound_count >= 0),
  primary key (channel_id, user_id)
);

comment on table public.inbox_channel_member_reads is
  'Inbound messages a member has read in a channel, kept on write: their unread there = inbox_channel_counters.inbound_count - read_inbound_count.';

-- A read position names its conversation's channel, so its count leaves that channel with it.
alter table public.conversation_reads
  add column channel_id uuid references public.channels (id) on delete cascade;

update public.conversation_reads r set channel_id = c.channel_id
from public.conversations c
where c.id = r.conversation_id;

alter table public.conversation_reads alter column channel_id set not null;

comment on column public.conversation_reads.channel_id is
  'The conversation''s channel (set on insert): the per-channel read total this position is part of.';

insert into public.inbox_channel_counters (channel_id, workspace_id, inbound_count)
select c.channel_id, c.workspace_id, sum(c.inbound_count)
from public.conversations c
group by c.channel_id, c.workspace_id;

insert into public.inbox_channel_member_reads (channel_id, user_id, workspace_id, read_inbound_count)
select r.channel_id, r.user_id, r.workspace_id, sum(r.read_inbound_count)
from public.conversation_reads r
group by r.channel_id, r.user_id, r.workspace_id;

-- indexes and triggers ------------------------------------------------------------------------

create index inbox_channel_counters_workspace_id_idx on public.inbox_channel_counters (workspace_id);

create index inbox_channel_member_reads_user_id_idx
  on public.inbox_channel_member_reads (user_id, workspace_id);

create index inbox_channel_member_reads_workspace_id_idx
  on public.inbox_channel_member_reads (workspace_id);

create index conversation_reads_channel_id_idx on public.conversation_reads (channel_id);

-- A read position written without its channel (a bulk load) takes its conversation's.
create function private.conversation_read_channel()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.channel_id is null then
    select c.channel_id into new.channel_id from public.conversations c where c.id = new.conversation_id;
  end if;
  return new;
end
$$;

revoke all on function private.conversation_read_channel() from public, anon, authenticated;

create trigger conversation_reads_channel
  before insert on public.conversation_reads
  for each row execute function private.conversation_read_channel();

-- New inbound messages add to their channels' totals (after messages_inserted: name order),
-- channels in id order so two sets never wait on each other crosswise.
create function private.inbox_channel_messages_inserted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.inbox_channel_counters as k (channel_id, workspace_id, inbound_count)
  select n.channel_id, n.workspace_id, count(*)
  from new_rows n
  where n.direction = 'inbound'
  group by n.channel_id, n.workspace_id
  order by n.channel_id
  on conflict (channel_id) do update set inbound_count = k.inbound_count + excluded.inbound_count;
  return null;
end
$$;

revoke all on function private.inbox_channel_messages_inserted() from public, anon, authenticated;

create trigger messages_inserted_channel_counts
  after insert on public.messages
  referencing new table as new_rows
  for each statement execute function private.inbox_channel_messages_inserted();

-- Messages of deleted conversations leave their channel's total (erasure).
create function private.inbox_channel_conversations_deleted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.inbox_channel_counters k
  set inbound_count = greatest(k.inbound_count - d.inbound, 0)
  from (select o.channel_id, sum(o.inbound_count) as inbound from old_rows o group by o.channel_id) as d
  where k.channel_id = d.channel_id;
  return null;
end
$$;

revoke all on function private.inbox_channel_conversations_deleted() from public, anon, authenticated;

create trigger conversations_deleted_channel_counts
  after delete on public.conversations
  referencing old table as old_rows
  for each statement execute function private.inbox_channel_conversations_deleted();

-- A member's read positions that go leave their channel's read total.
create function private.inbox_channel_reads_deleted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.inbox_channel_member_reads r
  set read_inbound_count = greatest(r.read_inbound_count - d.read, 0)
  from (
    select o.channel_id, o.user_id, sum(o.read_inbound_count) as read
    from old_rows o group by o.channel_id, o.user_id
  ) as d
  where r.channel_id = d.channel_id and r.user_id = d.user_id;
  return null;
end
$$;

revoke all on function private.inbox_channel_reads_deleted() from public, anon, authenticated;

create trigger conversation_reads_deleted_channel_counts
  after delete on public.conversation_reads
  referencing old table as old_rows
  for each statement execute function private.inbox_channel_reads_deleted();

-- The caller has read a conversation up to now: its unread count becomes 0, and their inbox's
-- and the conversation's channel's unread totals drop by what they had not read. Any member
-- (viewers too). Answers the conversation's inbound count they have now read. The read
-- position is made first and locked, so concurrent reads by one member count each message once.
create or replace function public.mark_conversation_read(p_conversation_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_conversation public.conversations;
  v_before integer;
  v_delta integer;
begin
  select * into v_conversation from public.conversations c
  where c.id = p_conversation_id and c.workspace_id in (select private.user_workspace_ids());
  if v_conversation.id is null then
    perform private.fail(404, 'conversation_not_found', 'Conversation not found');
  end if;
  insert into public.conversation_reads (conversation_id, user_id, workspace_id, channel_id, read_inbound_count, last_read_at)
  values (p_conversation_id, v_user, v_conversation.workspace_id, v_conversation.channel_id, 0, now())
  on conflict (conversation_id, user_id) do nothing;
  select r.read_inbound_count into v_before from public.conversation_reads r
  where r.conversation_id = p_conversation_id and r.user_id = v_user for update;
  v_delta := greatest(v_conversation.inbound_count - v_before, 0);
  update public.conversation_reads r
  set read_inbound_count = r.read_inbound_count + v_delta, last_read_at = now()
  where r.conversation_id = p_conversation_id and r.user_id = v_user;
  if v_delta > 0 then
    insert into public.inbox_member_reads as m (workspace_id, user_id, read_inbound_count)
    values (v_conversation.workspace_id, v_user, v_delta)
    on conflict (workspace_id, user_id) do update
    set read_inbound_count = m.read_inbound_count + excluded.read_inbound_count;
    insert into public.inbox_channel_member_reads as m (channel_id, user_id, workspace_id, read_inbound_count)
    values (v_conversation.channel_id, v_user, v_conversation.workspace_id, v_delta)
    on conflict (channel_id, user_id) do update
    set read_inbound_count = m.read_inbound_count + excluded.read_inbound_count;
  end if;
  return v_before + v_delta;
end
$$;

revoke all on function public.mark_conversation_read(uuid) from public, anon;

grant execute on function public.mark_conversation_read(uuid) to authenticated;

comment on function public.mark_conversation_read(uuid) is
  'Any member: marks a conversation read up to now for the caller (their unread counts, per conversation, channel and workspace, drop). 404 conversation_not_found.';

-- The caller's unread inbound messages per channel of their workspaces (every channel, 0 when
-- nothing came), from the counters: two primary-key lookups per channel, no message read.
create view public.inbox_channel_unread with (security_invoker = true) as
  select ch.workspace_id, ch.id as channel_id,
         coalesce(k.inbound_count, 0) - coalesce(r.read_inbound_count, 0) as unread_messages
  from public.channels ch
  left join public.inbox_channel_counters k on k.channel_id = ch.id
  left join public.inbox_channel_member_reads r on r.channel_id = ch.id and r.user_id = (select auth.uid());

comment on view public.inbox_channel_unread is
  'The caller''s unread inbound messages per channel (Chatwoot''s inbox), from counters kept on write.';

-- grants --------------------------------------------------------------------------------------

revoke all on public.inbox_channel_counters, public.inbox_channel_member_reads
  from anon, authenticated, public;

revoke all on public.inbox_channel_unread from anon, authenticated, public;

grant select on public.inbox_channel_counters, public.inbox_channel_member_reads to authenticated;

grant select on public.inbox_channel_unread to authenticated;

grant select on public.inbox_channel_counters, public.inbox_channel_member_reads to service_role;

grant select on public.inbox_channel_unread to service_role;

-- rls -----------------------------------------------------------------------------------------

alter table public.inbox_channel_counters enable row level security;

alter table public.inbox_channel_member_reads enable row level security;

-- policies ------------------------------------------------------------------------------------

-- Members of any role may read their workspaces' channel totals; triggers keep them.
create policy inbox_channel_counters_select_members on public.inbox_channel_counters
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Each member reads only their own channel read totals; public.mark_conversation_read keeps them.
create policy inbox_channel_member_reads_select_own on public.inbox_channel_member_reads
  for select to authenticated
  using (user_id = (select auth.uid()) and workspace_id in (select private.user_workspace_ids()));
