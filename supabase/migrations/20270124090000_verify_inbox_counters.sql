-- The inbox's unread counts are kept on write (statement triggers on messages, conversations and
-- conversation_reads; public.mark_conversation_read), so no read counts messages. This proves
-- they have not drifted: each counter kept, recounted from the messages and read positions it
-- stands for, for one workspace or all of them. It reads every message of the workspaces it
-- checks: an operator's check, never on a write path.
--
--   conversations.inbound_count, .message_count   its inbound, and its non-note, messages
--   conversation_reads.read_inbound_count         never more than its conversation's inbound
--                                                 messages (else the member's unread there is
--                                                 negative); listed only when it is more
--   inbox_counters.inbound_count                  the workspace's inbound messages
--   inbox_member_reads.read_inbound_count         the member's read positions in the workspace
--   inbox_channel_counters.inbound_count          the channel's inbound messages
--   inbox_channel_member_reads.read_inbound_count the member's read positions in conversations
--                                                 of the channel (the conversation's channel,
--                                                 whatever the position's own channel_id says)

-- Each counter (table.column and its row's keys) whose kept value differs from its recount (none:
-- no drift); every workspace when p_workspace_id is null.
create function private.verify_inbox_counters(p_workspace_id uuid default null)
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
  workspace_inbound as (
    select c.workspace_id, sum(c.inbound)::bigint as inbound
    from per_conversation c group by c.workspace_id
  ),
  channel_inbound as (
    select c.workspace_id, c.channel_id, sum(c.inbound)::bigint as inbound
    from per_conversation c group by c.workspace_id, c.channel_id
  ),
  workspace_reads as (
    select r.workspace_id, r.user_id, sum(r.read)::bigint as read
    from per_read r group by r.workspace_id, r.user_id
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
  select 'inbox_counters.inbound_count', coalesce(k.workspace_id, w.workspace_id), null::uuid,
         null::uuid, null::uuid, coalesce(k.inbound_count, 0), coalesce(w.inbound, 0)
  from (select k.workspace_id, k.inbound_count from public.inbox_counters k
        where p_workspace_id is null or k.workspace_id = p_workspace_id) as k
  full join workspace_inbound w on w.workspace_id = k.workspace_id
  where coalesce(k.inbound_count, 0) <> coalesce(w.inbound, 0)
  union all
  select 'inbox_member_reads.read_inbound_count', coalesce(k.workspace_id, w.workspace_id),
         null::uuid, null::uuid, coalesce(k.user_id, w.user_id), coalesce(k.read_inbound_count, 0),
         coalesce(w.read, 0)
  from (select k.workspace_id, k.user_id, k.read_inbound_count from public.inbox_member_reads k
        where p_workspace_id is null or k.workspace_id = p_workspace_id) as k
  full join workspace_reads w on w.workspace_id = k.workspace_id and w.user_id = k.user_id
  where coalesce(k.read_inbound_count, 0) <> coalesce(w.read, 0)
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
