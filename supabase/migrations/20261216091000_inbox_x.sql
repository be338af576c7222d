-- X (Account Activity API) direct messages in the inbox: the applier of a connected account's
-- stored webhooks. A delivery is stored under `<channel id>:<body sha256>`; each direct message
-- event is a message unique per (channel, event id), so redeliveries (X retries up to three
-- times) change nothing. X also delivers the DMs the account itself sends: those are skipped.

create function private.apply_x_event(p_event_id uuid)
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
                                   attachments, provider_message_id, status, provider_timestamp, context)
      select v_channel.workspace_id, c.conversation_id, v_channel.id, 'inbound',
             left(e.event -> 'message_create' -> 'message_data' ->> 'text', 200000),
             case when jsonb_typeof(e.event -> 'message_create' -> 'message_data' -> 'attachment' -> 'media') = 'object'
                  then jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
                         'kind', left(e.event -> 'message_create' -> 'message_data' -> 'attachment' -> 'media' ->> 'type', 40),
                         'provider_media_id', left(e.event -> 'message_create' -> 'message_data' -> 'attachment' -> 'media' ->> 'id_str', 200),
                         'url', left(e.event -> 'message_create' -> 'message_data' -> 'attachment' -> 'media' ->> 'media_url_https', 2000))))
                  else '[]'::jsonb end,
             e.event ->> 'id', 'received',
             case when e.event ->> 'created_timestamp' ~ '^[0-9]{1,15}$'
                  then to_timestamp((e.event ->> 'created_timestamp')::bigint / 1000.0) else now() end,
             jsonb_build_object('type', 'message_create')
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
