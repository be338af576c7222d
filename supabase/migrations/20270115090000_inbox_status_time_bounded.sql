-- A WhatsApp status callback's time is Meta's timestamp, bounded by when its delivery arrived,
-- like a message's time (20270112090000_inbox_provider_time_bounded.sql).
--
-- Both WhatsApp appliers timed statuses with private.unix_time_or_now: a callback without a
-- (usable) timestamp took the apply time (the drain's now(), which can be long after the
-- delivery arrived when it waited for the replay), and one from a broken clock (year 5138) was
-- kept as-is. A status's time is now private.provider_unix_time(timestamp, arrival): the
-- arrival time when there is none or it is more than five minutes ahead of arrival.
-- private.unix_time_or_now, the second parser of the same timestamps, is then used by nothing
-- and goes.

-- Applies one stored WhatsApp webhook (stored under `<channel id>:<body sha256>`): the
-- `messages` changes of the channel's number only. Inbound messages join their sender's
-- conversation (created with the identity and contact as needed); statuses move outbound
-- messages forward, carrying Meta's error code and reason when one failed. Message and status
-- times are Meta's, bounded by the delivery's arrival (private.provider_unix_time).
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
             'status_at', private.provider_unix_time(st.s ->> 'timestamp', v_stored.received_at),
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
             'status_at', private.provider_unix_time(st.s ->> 'timestamp', (v.val ->> 'received_at')::timestamptz),
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

drop function private.unix_time_or_now(text);
