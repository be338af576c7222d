-- A message's time is its provider's timestamp, bounded by when its delivery arrived.
--
-- Three faults in how inbound messages were timed and sorted:
-- * A provider gave no (or no usable) timestamp: the message took the apply time (the drain's
--   now()), not when its delivery arrived. It now takes the stored delivery's `received_at`.
-- * A provider timestamp far ahead of arrival (a bad clock, year 5138) was kept as-is and pinned
--   the conversation to the top of the inbox for ever. A timestamp more than five minutes ahead
--   of arrival is now replaced by the arrival time; the message is kept, never dropped.
-- * A new conversation's `last_message_at` was the moment it was made, so a delayed delivery that
--   opened one sorted as new. It is now its first message's time (and never moves backwards).

-- A provider's timestamp bounded by arrival: the arrival time when there is none, or when it is
-- more than five minutes ahead of arrival (clocks differ a little; beyond that it is wrong).
create function private.provider_time(p_at timestamptz, p_arrival timestamptz)
returns timestamptz
language sql
immutable
set search_path = ''
as $$
  select case when p_at is null or p_at > p_arrival + interval '5 minutes' then p_arrival else p_at end
$$;

revoke all on function private.provider_time(timestamptz, timestamptz) from public, anon, authenticated;

grant execute on function private.provider_time(timestamptz, timestamptz) to service_role;

-- A provider's Unix time in seconds (as a string or number) bounded by arrival, as
-- private.provider_time.
create function private.provider_unix_time(p_value text, p_arrival timestamptz)
returns timestamptz
language sql
immutable
set search_path = ''
as $$
  select private.provider_time(case when p_value ~ '^[0-9]{1,11}$' then to_timestamp(p_value::bigint) end,
                               p_arrival)
$$;

revoke all on function private.provider_unix_time(text, timestamptz) from public, anon, authenticated;

grant execute on function private.provider_unix_time(text, timestamptz) to service_role;

-- Applies one stored WhatsApp webhook (stored under `<channel id>:<body sha256>`): the
-- `messages` changes of the channel's number only. Inbound messages join their sender's
-- conversation (created with the identity and contact as needed); statuses move outbound
-- messages forward, carrying Meta's error code and reason when one failed.
create or replace function private.apply_whatsapp_event(p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stored private.webhook_events;
  v_channel public.channels;
  v_values jsonb;
  v_senders jsonb;
  v_statuses jsonb;
  v_outcome text := 'applied';
begin
  select * into v_stored from private.webhook_events e
  where e.id = p_event_id and e.provider = 'whatsapp'
  for update;
  if v_stored.id is null then
    return 'ignored:unknown_event';
  end if;
  select * into v_channel from public.channels c
  where c.id::text = split_part(v_stored.event_id, ':', 1) and c.kind = 'whatsapp';
  if v_channel.id is null then
    v_outcome := 'ignored:channel_gone';
  else
    select coalesce(jsonb_agg(c.change -> 'value'), '[]'::jsonb) into v_values
    from jsonb_array_elements(private.jsonb_array_or_empty(v_stored.body::jsonb -> 'entry')) as e(entry),
         jsonb_array_elements(private.jsonb_array_or_empty(e.entry -> 'changes')) as c(change)
    where jsonb_typeof(c.change -> 'value') = 'object' and c.change ->> 'field' = 'messages'
      and c.change -> 'value' -> 'metadata' ->> 'phone_number_id' = v_channel.account_id;

    select coalesce(jsonb_agg(s), '[]'::jsonb) into v_senders
    from (
      select distinct on (m.msg ->> 'from') m.msg ->> 'from' as address,
             (select left(k -> 'profile' ->> 'name', 200)
              from jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'contacts')) as k
              where k ->> 'wa_id' = m.msg ->> 'from' limit 1) as display_name
      from jsonb_array_elements(v_values) as v(val),
           jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'messages')) as m(msg)
      where m.msg ->> 'from' ~ '^[1-9][0-9]{5,14}$'
      order by m.msg ->> 'from'
    ) as s;

    if jsonb_array_length(v_senders) > 0 then
      insert into public.messages (workspace_id, conversation_id, channel_id, direction, text,
                                   attachments, provider_message_id, status, provider_timestamp, context,
                                   received_at)
      select v_channel.workspace_id, c.conversation_id, v_channel.id, 'inbound',
             private.whatsapp_text(m.msg), private.whatsapp_attachments(m.msg), m.msg ->> 'id',
             'received', private.provider_unix_time(m.msg ->> 'timestamp', v_stored.received_at),
             jsonb_strip_nulls(jsonb_build_object('type', left(m.msg ->> 'type', 40),
                                                  'reply_to', left(m.msg -> 'context' ->> 'id', 998))),
             v_stored.received_at
      from jsonb_array_elements(v_values) as v(val)
      cross join jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'messages')) as m(msg)
      join private.inbox_conversations_for(v_channel.id, v_senders) as c on c.address = m.msg ->> 'from'
      where char_length(m.msg ->> 'id') between 1 and 998
      on conflict (channel_id, provider_message_id) do nothing;
    end if;

    select coalesce(jsonb_agg(jsonb_build_object(
             'id', st.s ->> 'id', 'status', st.s ->> 'status',
             'status_at', private.unix_time_or_now(st.s ->> 'timestamp'),
             'error_code', st.s -> 'errors' -> 0 ->> 'code',
             'error_text', coalesce(st.s -> 'errors' -> 0 -> 'error_data' ->> 'details',
                                    st.s -> 'errors' -> 0 ->> 'message',
                                    st.s -> 'errors' -> 0 ->> 'title'))), '[]'::jsonb)
    into v_statuses
    from jsonb_array_elements(v_values) as v(val),
         jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'statuses')) as st(s)
    where jsonb_typeof(st.s) = 'object';
    if jsonb_array_length(v_statuses) > 0 then
      perform private.apply_message_statuses(v_channel.id, v_statuses);
    end if;
  end if;
  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

revoke all on function private.apply_whatsapp_event(uuid) from public, anon, authenticated;

grant execute on function private.apply_whatsapp_event(uuid) to service_role;


-- Applies stored WhatsApp deliveries as one set: per channel, the messages of all of them are
-- inserted by one statement (conversations, identities and contacts made for all senders at
-- once) and their statuses moved by one; then every delivery is marked applied (or ignored when
-- its channel is gone). The same rules as private.apply_whatsapp_event, which applies one.
-- Answers how many deliveries it marked.
create or replace function private.apply_whatsapp_events(p_event_ids uuid[])
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_channel public.channels;
  v_values jsonb;
  v_senders jsonb;
  v_statuses jsonb;
  v_marked integer;
begin
  for v_channel in
    select c.* from public.channels c
    where c.kind = 'whatsapp'
      and c.id::text in (select split_part(e.event_id, ':', 1) from private.webhook_events e
                         where e.id = any(p_event_ids) and e.provider = 'whatsapp'
                           and e.status = 'received')
    order by c.id
  loop
    select coalesce(jsonb_agg((c.change -> 'value') || jsonb_build_object('received_at', b.received_at)
                            order by b.received_at, b.id), '[]'::jsonb)
    into v_values
    from private.webhook_events b,
         jsonb_array_elements(private.jsonb_array_or_empty(b.body::jsonb -> 'entry')) as e(entry),
         jsonb_array_elements(private.jsonb_array_or_empty(e.entry -> 'changes')) as c(change)
    where b.id = any(p_event_ids) and b.provider = 'whatsapp' and b.status = 'received'
      and split_part(b.event_id, ':', 1) = v_channel.id::text
      and jsonb_typeof(c.change -> 'value') = 'object' and c.change ->> 'field' = 'messages'
      and c.change -> 'value' -> 'metadata' ->> 'phone_number_id' = v_channel.account_id;

    select coalesce(jsonb_agg(s), '[]'::jsonb) into v_senders
    from (
      select distinct on (m.msg ->> 'from') m.msg ->> 'from' as address,
             (select left(k -> 'profile' ->> 'name', 200)
              from jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'contacts')) as k
              where k ->> 'wa_id' = m.msg ->> 'from' limit 1) as display_name
      from jsonb_array_elements(v_values) as v(val),
           jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'messages')) as m(msg)
      where m.msg ->> 'from' ~ '^[1-9][0-9]{5,14}$'
      order by m.msg ->> 'from'
    ) as s;

    if jsonb_array_length(v_senders) > 0 then
      insert into public.messages (workspace_id, conversation_id, channel_id, direction, text,
                                   attachments, provider_message_id, status, provider_timestamp, context,
                                   received_at)
      select v_channel.workspace_id, c.conversation_id, v_channel.id, 'inbound',
             private.whatsapp_text(m.msg), private.whatsapp_attachments(m.msg), m.msg ->> 'id',
             'received', private.provider_unix_time(m.msg ->> 'timestamp', (v.val ->> 'received_at')::timestamptz),
             jsonb_strip_nulls(jsonb_build_object('type', left(m.msg ->> 'type', 40),
                                                  'reply_to', left(m.msg -> 'context' ->> 'id', 998))),
             (v.val ->> 'received_at')::timestamptz
      from jsonb_array_elements(v_values) as v(val)
      cross join jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'messages')) as m(msg)
      join private.inbox_conversations_for(v_channel.id, v_senders) as c on c.address = m.msg ->> 'from'
      where char_length(m.msg ->> 'id') between 1 and 998
      on conflict (channel_id, provider_message_id) do nothing;
    end if;

    select coalesce(jsonb_agg(jsonb_build_object(
             'id', st.s ->> 'id', 'status', st.s ->> 'status',
             'status_at', private.unix_time_or_now(st.s ->> 'timestamp'),
             'error_code', st.s -> 'errors' -> 0 ->> 'code',
             'error_text', coalesce(st.s -> 'errors' -> 0 -> 'error_data' ->> 'details',
                                    st.s -> 'errors' -> 0 ->> 'message',
                                    st.s -> 'errors' -> 0 ->> 'title'))), '[]'::jsonb)
    into v_statuses
    from jsonb_array_elements(v_values) as v(val),
         jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'statuses')) as st(s)
    where jsonb_typeof(st.s) = 'object';
    if jsonb_array_length(v_statuses) > 0 then
      perform private.apply_message_statuses(v_channel.id, v_statuses);
    end if;
  end loop;

  update private.webhook_events e
  set status = case when c.id is null then 'ignored' else 'applied' end,
      outcome = case when c.id is null then 'ignored:channel_gone' else 'applied' end,
      processed_at = now()
  from private.webhook_events b
  left join public.channels c
    on c.id::text = split_part(b.event_id, ':', 1) and c.kind = 'whatsapp'
  where b.id = any(p_event_ids) and b.provider = 'whatsapp' and b.status = 'received'
    and e.id = b.id;
  get diagnostics v_marked = row_count;
  return v_marked;
end
$$;

revoke all on function private.apply_whatsapp_events(uuid[]) from public, anon, authenticated;

grant execute on function private.apply_whatsapp_events(uuid[]) to service_role;


-- Applies one stored Telegram update: a `message` (or `channel_post`) joins its chat's
-- conversation; an `edited_message` (or `edited_channel_post`) replaces the text of the message
-- it edits, keeping the old text as a revision (an edit of a message we never saw is kept as
-- a new message). Bots' own messages and service messages without content are skipped.
create or replace function private.apply_telegram_event(p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stored private.webhook_events;
  v_channel public.channels;
  v_update jsonb;
  v_message jsonb;
  v_edited boolean;
  v_chat text;
  v_id text;
  v_text text;
  v_attachments jsonb;
  v_sent_at timestamptz;
  v_conversation uuid;
  v_existing public.messages;
  v_outcome text := 'applied';
begin
  select * into v_stored from private.webhook_events e
  where e.id = p_event_id and e.provider = 'telegram'
  for update;
  if v_stored.id is null then
    return 'ignored:unknown_event';
  end if;
  select * into v_channel from public.channels c
  where c.id::text = split_part(v_stored.event_id, ':', 1) and c.kind = 'telegram';
  v_update := v_stored.body::jsonb;
  v_edited := jsonb_typeof(coalesce(v_update -> 'edited_message', v_update -> 'edited_channel_post')) = 'object';
  v_message := coalesce(v_update -> 'message', v_update -> 'channel_post',
                        v_update -> 'edited_message', v_update -> 'edited_channel_post');
  v_chat := v_message -> 'chat' ->> 'id';
  v_text := left(coalesce(v_message ->> 'text', v_message ->> 'caption'), 200000);
  v_attachments := case when jsonb_typeof(v_message) = 'object' then private.telegram_attachments(v_message) else '[]'::jsonb end;
  if v_channel.id is null then
    v_outcome := 'ignored:channel_gone';
  elsif jsonb_typeof(v_message) <> 'object' or v_chat is null or v_chat !~ '^-?[1-9][0-9]{0,19}$'
        or coalesce(v_message ->> 'message_id', '') !~ '^[0-9]{1,19}$' then
    v_outcome := 'ignored:not_a_message';
  elsif v_message -> 'from' -> 'is_bot' = 'true'::jsonb then
    v_outcome := 'ignored:bot';
  elsif v_text is null and jsonb_array_length(v_attachments) = 0 then
    v_outcome := 'ignored:no_content';
  else
    v_id := v_chat || ':' || (v_message ->> 'message_id');
    v_sent_at := private.provider_unix_time(coalesce(v_message ->> 'edit_date', v_message ->> 'date'), v_stored.received_at);
    select * into v_existing from public.messages m
    where m.channel_id = v_channel.id and m.provider_message_id = v_id
    for update;
    if v_edited and v_existing.id is not null then
      if v_existing.text is distinct from v_text then
        insert into public.message_revisions (workspace_id, message_id, text, replaced_at)
        values (v_existing.workspace_id, v_existing.id, v_existing.text, v_sent_at);
        update public.messages m
        set text = v_text, attachments = v_attachments, edited_at = v_sent_at
        where m.id = v_existing.id;
      end if;
    elsif v_existing.id is null then
      select c.conversation_id into v_conversation
      from private.inbox_conversations_for(
        v_channel.id,
        jsonb_build_array(jsonb_build_object(
          'address', v_chat,
          'display_name', left(coalesce(
            nullif(concat_ws(' ', v_message -> 'from' ->> 'first_name', v_message -> 'from' ->> 'last_name'), ''),
            v_message -> 'chat' ->> 'title',
            v_message -> 'from' ->> 'username'), 200)))
      ) as c;
      insert into public.messages (workspace_id, conversation_id, channel_id, direction, text,
                                   attachments, provider_message_id, status, provider_timestamp,
                                   context, edited_at, received_at)
      values (v_channel.workspace_id, v_conversation, v_channel.id, 'inbound', v_text, v_attachments,
              v_id, 'received', private.provider_unix_time(v_message ->> 'date', v_stored.received_at),
              jsonb_strip_nulls(jsonb_build_object(
                'update_id', v_update -> 'update_id',
                'reply_to', case when v_message -> 'reply_to_message' ->> 'message_id' ~ '^[0-9]{1,19}$'
                                 then v_chat || ':' || (v_message -> 'reply_to_message' ->> 'message_id') end)),
              case when v_edited then v_sent_at end, v_stored.received_at)
      on conflict (channel_id, provider_message_id) do nothing;
    end if;
  end if;
  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

revoke all on function private.apply_telegram_event(uuid) from public, anon, authenticated;

grant execute on function private.apply_telegram_event(uuid) to service_role;

-- Applies one stored X delivery: each direct message event from someone else joins its
-- sender's conversation, unique per (channel, event id); the account's own DMs are skipped.
create or replace function private.apply_x_event(p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stored private.webhook_events;
  v_channel public.channels;
  v_body jsonb;
  v_senders jsonb;
  v_outcome text := 'applied';
begin
  select * into v_stored from private.webhook_events e
  where e.id = p_event_id and e.provider = 'x'
  for update;
  if v_stored.id is null then
    return 'ignored:unknown_event';
  end if;
  select * into v_channel from public.channels c
  where c.id::text = split_part(v_stored.event_id, ':', 1) and c.kind = 'x';
  v_body := v_stored.body::jsonb;
  if v_channel.id is null then
    v_outcome := 'ignored:channel_gone';
  elsif v_body ->> 'for_user_id' is distinct from v_channel.account_id then
    v_outcome := 'ignored:other_account';
  else
    select coalesce(jsonb_agg(s), '[]'::jsonb) into v_senders
    from (
      select distinct on (e.event -> 'message_create' ->> 'sender_id')
             e.event -> 'message_create' ->> 'sender_id' as address,
             left(coalesce(v_body -> 'users' -> (e.event -> 'message_create' ->> 'sender_id') ->> 'name',
                           v_body -> 'users' -> (e.event -> 'message_create' ->> 'sender_id') ->> 'screen_name'), 200) as display_name
      from jsonb_array_elements(private.jsonb_array_or_empty(v_body -> 'direct_message_events')) as e(event)
      where e.event ->> 'type' = 'message_create'
        and e.event -> 'message_create' ->> 'sender_id' ~ '^[1-9][0-9]{0,24}$'
        and e.event -> 'message_create' ->> 'sender_id' <> v_channel.account_id
      order by e.event -> 'message_create' ->> 'sender_id'
    ) as s;
    if jsonb_array_length(v_senders) > 0 then
      insert into public.messages (workspace_id, conversation_id, channel_id, direction, text,
                                   attachments, provider_message_id, status, provider_timestamp, context,
                                   received_at)
      select v_channel.workspace_id, c.conversation_id, v_channel.id, 'inbound',
             left(e.event -> 'message_create' -> 'message_data' ->> 'text', 200000),
             case when jsonb_typeof(e.event -> 'message_create' -> 'message_data' -> 'attachment' -> 'media') = 'object'
                  then jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                         'kind', left(e.event -> 'message_create' -> 'message_data' -> 'attachment' -> 'media' ->> 'type', 40),
                         'provider_media_id', left(e.event -> 'message_create' -> 'message_data' -> 'attachment' -> 'media' ->> 'id_str', 200),
                         'url', left(e.event -> 'message_create' -> 'message_data' -> 'attachment' -> 'media' ->> 'media_url_https', 2000))))
                  else '[]'::jsonb end,
             e.event ->> 'id', 'received',
             private.provider_time(case when e.event ->> 'created_timestamp' ~ '^[0-9]{1,15}$'
                                        then to_timestamp((e.event ->> 'created_timestamp')::bigint / 1000.0) end,
                                   v_stored.received_at),
             jsonb_build_object('type', 'message_create'),
             v_stored.received_at
      from jsonb_array_elements(private.jsonb_array_or_empty(v_body -> 'direct_message_events')) as e(event)
      join private.inbox_conversations_for(v_channel.id, v_senders) as c
        on c.address = e.event -> 'message_create' ->> 'sender_id'
      where e.event ->> 'type' = 'message_create'
        and char_length(e.event ->> 'id') between 1 and 998
      on conflict (channel_id, provider_message_id) do nothing;
    end if;
  end if;
  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

revoke all on function private.apply_x_event(uuid) from public, anon, authenticated;

grant execute on function private.apply_x_event(uuid) to service_role;

-- New messages: counts and times, inbound total, broadcasts; a snoozed or pending conversation
-- reopens, and its assignee is told, only for a customer's own message, never for an
-- auto-reply. A new conversation's last message time is its first message's time, not the
-- moment the conversation was made; it never moves backwards.
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

  insert into public.inbox_counters as k (workspace_id, inbound_count)
  select n.workspace_id, count(*) from new_rows n where n.direction = 'inbound' group by n.workspace_id
  on conflict (workspace_id) do update set inbound_count = k.inbound_count + excluded.inbound_count;

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
