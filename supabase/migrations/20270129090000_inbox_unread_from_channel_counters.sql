-- A member's unread inbound messages per workspace (their inbox badge, `public.inbox_unread`)
-- are now the sum of their unread per channel: the channels' inbound totals
-- (`inbox_channel_counters`) minus what the member has read of each
-- (`inbox_channel_member_reads`), both kept on write since
-- 20270121090000_inbox_unread_per_channel.sql. The workspace's own counters
-- (`inbox_counters`, `inbox_member_reads`) held exactly that sum, so every inbound set and every
-- read wrote two counter rows where one does; they go, with the triggers and the parts of
-- functions that kept them:
--
--   private.inbox_messages_inserted      no longer adds to inbox_counters
--   private.inbox_conversations_deleted  dropped with its trigger (it only lowered inbox_counters)
--   private.inbox_reads_deleted          dropped with its trigger (it only lowered inbox_member_reads)
--   public.mark_conversation_read        no longer adds to inbox_member_reads
--   private.verify_inbox_counters        no longer checks the two dropped counters
--   public.inbox_unread                  sums the channel counters (same columns, same numbers)
--
-- The view answers a row for each workspace with a channel counter, as it answered one for each
-- workspace with a workspace counter; a workspace counted before the channel counters were kept
-- gets a zero counter for each of its channels, so its row stays.

-- data ----------------------------------------------------------------------------------------

insert into public.inbox_channel_counters (channel_id, workspace_id, inbound_count)
select ch.id, ch.workspace_id, 0
from public.channels ch
where ch.workspace_id in (select k.workspace_id from public.inbox_counters k)
  and not exists (select from public.inbox_channel_counters c where c.workspace_id = ch.workspace_id)
on conflict (channel_id) do nothing;

-- triggers ------------------------------------------------------------------------------------

drop trigger conversations_deleted on public.conversations;

drop function private.inbox_conversations_deleted();

drop trigger conversation_reads_deleted on public.conversation_reads;

drop function private.inbox_reads_deleted();

-- New messages move their conversations' counts and times and are broadcast; the channels'
-- inbound totals are private.inbox_channel_messages_inserted's (the workspace's is their sum).
create or replace function private.inbox_messages_inserted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.conversations c
  set message_count = c.message_count + d.messages,
      inbound_count = c.inbound_count + d.inbound,
      -- a conversation's first message sets its time (the conversation row took the moment it
      -- was made); later ones only move it forward
      last_message_at = case when c.message_count = 0 then coalesce(d.last_at, c.last_message_at)
                             else greatest(c.last_message_at, coalesce(d.last_at, c.last_message_at)) end,
      last_inbound_at = greatest(c.last_inbound_at, d.last_inbound_at),
      last_outbound_at = greatest(c.last_outbound_at, d.last_outbound_at),
      first_response_at = coalesce(c.first_response_at, d.first_outbound_at),
      status = case when d.customer > 0 and c.status in ('snoozed', 'pending') then 'open' else c.status end,
      snoozed_until = case when d.customer > 0 and c.status in ('snoozed', 'pending') then null else c.snoozed_until end,
      updated_at = now()
  from (
    select n.conversation_id,
           count(*) filter (where n.direction <> 'note')::integer as messages,
           count(*) filter (where n.direction = 'inbound')::integer as inbound,
           count(*) filter (where n.direction = 'inbound' and not n.auto_reply)::integer as customer,
           max(n.provider_timestamp) filter (where n.direction <> 'note') as last_at,
           max(n.provider_timestamp) filter (where n.direction = 'inbound') as last_inbound_at,
           max(n.provider_timestamp) filter (where n.direction = 'outbound') as last_outbound_at,
           min(n.created_at) filter (where n.direction = 'outbound' and n.author_id is not null) as first_outbound_at
    from new_rows n
    group by n.conversation_id
  ) as d
  where c.id = d.conversation_id;

  -- The assignee hears of a customer's reply (in the app; the text stays in the conversation),
  -- not of the message that opened the conversation (they were told of the assignment), nor
  -- of an auto-reply.
  perform private.notify_users(c.workspace_id, array[c.assignee_id], 'conversation.replied',
                               'A customer replied', null,
                               jsonb_build_object('conversation_id', c.id), c.contact_id)
  from public.conversations c
  where c.assignee_id is not null and c.created_at < now()
    and c.id in (select n.conversation_id from new_rows n where n.direction = 'inbound' and not n.auto_reply);

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

-- functions -----------------------------------------------------------------------------------

-- The caller has read a conversation up to now: its unread count becomes 0, and the
-- conversation's channel's unread total (and so their inbox's, the sum of their channels') drops
-- by what they had not read. Any member (viewers too). Answers the conversation's inbound count
-- they have now read. The read position is made first and locked, so concurrent reads by one
-- member count each message once.
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

-- The inbox's unread counts are kept on write (statement triggers on messages, conversations and
-- conversation_reads; public.mark_conversation_read), so no read counts messages; a workspace's
-- are the sums of its channels'. This proves they have not drifted: each counter kept,
-- recounted from the messages and read positions it stands for, for one workspace or all of
-- them. It reads every message of the workspaces it checks: an operator's check, never on a
-- write path.
--
--   conversations.inbound_count, .message_count   its inbound, and its non-note, messages
--   conversation_reads.read_inbound_count         never more than its conversation's inbound
--                                                 messages (else the member's unread there is
--                                                 negative); listed only when it is more
--   inbox_channel_counters.inbound_count          the channel's inbound messages
--   inbox_channel_member_reads.read_inbound_count the member's read positions in conversations
--                                                 of the channel (the conversation's channel,
--                                                 whatever the position's own channel_id says)
--
-- Each counter (table.column and its row's keys) whose kept value differs from its recount (none:
-- no drift); every workspace when p_workspace_id is null.
create or replace function private.verify_inbox_counters(p_workspace_id uuid default null)
returns table (
  counter text, workspace_id uuid, channel_id uuid, conversation_id uuid, user_id uuid,
  kept bigint, counted bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  with per_conversation as (
    select c.id, c.workspace_id, c.channel_id, c.inbound_count::bigint as kept_inbound,
           c.message_count::bigint as kept_messages,
           coalesce(m.inbound, 0) as inbound, coalesce(m.messages, 0) as messages
    from public.conversations c
    left join (
      select m.conversation_id,
             count(*) filter (where m.direction = 'inbound') as inbound,
             count(*) filter (where m.direction <> 'note') as messages
      from public.messages m
      where p_workspace_id is null or m.workspace_id = p_workspace_id
      group by m.conversation_id
    ) as m on m.conversation_id = c.id
    where p_workspace_id is null or c.workspace_id = p_workspace_id
  ),
  per_read as (
    select c.workspace_id, c.channel_id, r.conversation_id, r.user_id,
           r.read_inbound_count::bigint as read, c.inbound
    from public.conversation_reads r
    join per_conversation c on c.id = r.conversation_id
  ),
  channel_inbound as (
    select c.workspace_id, c.channel_id, sum(c.inbound)::bigint as inbound
    from per_conversation c group by c.workspace_id, c.channel_id
  ),
  channel_reads as (
    select r.workspace_id, r.channel_id, r.user_id, sum(r.read)::bigint as read
    from per_read r group by r.workspace_id, r.channel_id, r.user_id
  )
  select 'conversations.inbound_count', c.workspace_id, c.channel_id, c.id, null::uuid,
         c.kept_inbound, c.inbound
  from per_conversation c
  where c.kept_inbound <> c.inbound
  union all
  select 'conversations.message_count', c.workspace_id, c.channel_id, c.id, null::uuid,
         c.kept_messages, c.messages
  from per_conversation c
  where c.kept_messages <> c.messages
  union all
  select 'conversation_reads.read_inbound_count', r.workspace_id, r.channel_id, r.conversation_id,
         r.user_id, r.read, r.inbound
  from per_read r
  where r.read > r.inbound
  union all
  select 'inbox_channel_counters.inbound_count', coalesce(k.workspace_id, w.workspace_id),
         coalesce(k.channel_id, w.channel_id), null::uuid, null::uuid,
         coalesce(k.inbound_count, 0), coalesce(w.inbound, 0)
  from (select k.workspace_id, k.channel_id, k.inbound_count from public.inbox_channel_counters k
        where p_workspace_id is null or k.workspace_id = p_workspace_id) as k
  full join channel_inbound w on w.channel_id = k.channel_id
  where coalesce(k.inbound_count, 0) <> coalesce(w.inbound, 0)
  union all
  select 'inbox_channel_member_reads.read_inbound_count', coalesce(k.workspace_id, w.workspace_id),
         coalesce(k.channel_id, w.channel_id), null::uuid, coalesce(k.user_id, w.user_id),
         coalesce(k.read_inbound_count, 0), coalesce(w.read, 0)
  from (select k.workspace_id, k.channel_id, k.user_id, k.read_inbound_count
        from public.inbox_channel_member_reads k
        where p_workspace_id is null or k.workspace_id = p_workspace_id) as k
  full join channel_reads w on w.channel_id = k.channel_id and w.user_id = k.user_id
  where coalesce(k.read_inbound_count, 0) <> coalesce(w.read, 0)
$$;

revoke all on function private.verify_inbox_counters(uuid) from public, anon, authenticated;

grant execute on function private.verify_inbox_counters(uuid) to service_role;

-- views ---------------------------------------------------------------------------------------

-- The caller's unread inbound messages per workspace (their inbox badge): the sum of their unread
-- per channel, from the channel counters (a lookup per channel, no message read).
create or replace view public.inbox_unread with (security_invoker = true) as
  select k.workspace_id,
         sum(k.inbound_count - coalesce(r.read_inbound_count, 0))::bigint as unread_messages
  from public.inbox_channel_counters k
  left join public.inbox_channel_member_reads r
    on r.channel_id = k.channel_id and r.user_id = (select auth.uid())
  group by k.workspace_id;

comment on view public.inbox_unread is
  'The caller''s unread inbound messages per workspace: the sum of their unread per channel, from counters kept on write.';

-- tables --------------------------------------------------------------------------------------

drop table public.inbox_member_reads;

drop table public.inbox_counters;
