-- Auto-replies (RFC 3834 `Auto-Submitted`, `X-Autoreply`, `Precedence: auto_reply`, out-of-office
-- subjects: api/inbox/email/mime.py flags them) are kept as messages but never act as the
-- customer. They already counted as no reply, no opt-out, no `replied` event and no SLA clock;
-- they still reopened a resolved email thread, started a new conversation after the join
-- window, reopened a snoozed or pending conversation and notified its assignee that "a customer
-- replied". Now none of that: an auto-reply joins the conversation it answers (or the sender's
-- latest) as it stands.

-- Files one parsed inbound mail into one channel's conversation; answers the outcome (the
-- caller finishes the stored webhook). As before, except that an auto-reply changes no
-- conversation: it joins the thread it answers as that thread stands (a resolved one stays
-- resolved), else the sender's latest conversation on the channel whatever its age or status,
-- and only a sender with none gets a new one.
create or replace function private.file_inbound_email(
  p_channel_id uuid, p_token_kind text, p_token uuid, p_mail jsonb, p_received_at timestamptz
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_channel public.channels;
  v_from text := lower(p_mail ->> 'from');
  v_refs text[];
  v_locals text[];
  v_conversation public.conversations;
  v_conversation_id uuid;
  v_recipient public.campaign_recipients;
  v_window interval;
  v_outcome text := 'applied';
  v_auto boolean := coalesce(p_mail -> 'auto_reply' = 'true'::jsonb, false);
begin
  select * into v_channel from public.channels c where c.id = p_channel_id;
  select coalesce(array_agg(left(r, 900)), '{}') into v_refs
  from jsonb_array_elements_text(private.jsonb_array_or_empty(p_mail -> 'references')) as r;
  v_locals := array(select split_part(r, '@', 1) from unnest(v_refs) as r);
  if v_channel.id is null then
    v_outcome := 'ignored:no_channel';
  elsif p_mail -> 'bounce' = 'true'::jsonb then
    v_outcome := 'ignored:bounce';
  elsif v_from is null or v_from !~ '^[^@\s]+@[^@\s]+$' or char_length(v_from) > 320 then
    v_outcome := 'ignored:no_sender';
  else
    -- 1. a reply to one of our inbox replies, from the address it went to
    select c.* into v_conversation
    from public.messages m
    join public.conversations c on c.id = m.conversation_id
    join public.contact_identities i on i.id = c.identity_id
    where m.channel_id = v_channel.id and m.direction = 'outbound'
      and (m.context ->> 'email_message_id' = any (v_refs) or m.provider_message_id = any (v_locals))
      and i.address = v_from
    order by m.created_at desc
    limit 1;
    -- 2. the reply+c token of our replies' Reply-To
    if v_conversation.id is null and p_token_kind = 'c' then
      select c.* into v_conversation from public.conversations c
      where c.id = p_token and c.channel_id = v_channel.id;
    end if;
    -- 3. a reply to a campaign message, from its recipient (or to its reply+r token)
    if v_conversation.id is null then
      select r.* into v_recipient from public.campaign_recipients r
      where r.workspace_id = v_channel.workspace_id
        and ((r.ses_message_id = any (v_locals) and r.email = v_from)
             or (p_token_kind = 'r' and r.id = p_token))
      order by r.sent_at desc nulls last
      limit 1;
    end if;
    -- 4. an auto-reply: the sender's latest conversation on this channel, as it stands
    if v_conversation.id is null and v_auto then
      select c.* into v_conversation
      from public.conversations c
      join public.contact_identities i on i.id = c.identity_id
      where c.channel_id = v_channel.id and i.workspace_id = v_channel.workspace_id
        and i.kind = 'email' and i.address = v_from
      order by c.status <> 'resolved' desc, c.last_message_at desc nulls last
      limit 1;
    end if;
    -- 5. the sender's conversation on this channel, within the join window
    if v_conversation.id is null then
      v_window := make_interval(hours => case when v_channel.settings ->> 'join_window_hours' ~ '^[0-9]{1,5}$'
                                              then (v_channel.settings ->> 'join_window_hours')::integer else 72 end);
      update public.conversations c set status = 'resolved', snoozed_until = null, resolved_at = now()
      from public.contact_identities i
      where i.id = c.identity_id and i.workspace_id = v_channel.workspace_id and i.kind = 'email'
        and i.address = v_from and c.channel_id = v_channel.id and c.status <> 'resolved'
        and c.last_message_at < now() - v_window;
      -- Two statements: a query does not see the rows a function it calls inserted.
      select f.conversation_id into v_conversation_id
      from private.inbox_conversations_for(
        v_channel.id,
        jsonb_build_array(jsonb_build_object('address', v_from, 'display_name', p_mail ->> 'from_name',
                                             'subject', p_mail ->> 'subject'))
      ) as f;
      select * into v_conversation from public.conversations c where c.id = v_conversation_id;
    elsif v_conversation.status = 'resolved' and not v_auto then
      -- A resolved thread comes back, unless the sender has another open conversation here.
      if exists (select from public.conversations c
                 where c.channel_id = v_conversation.channel_id and c.identity_id = v_conversation.identity_id
                   and c.status <> 'resolved') then
        select * into v_conversation from public.conversations c
        where c.channel_id = v_conversation.channel_id and c.identity_id = v_conversation.identity_id
          and c.status <> 'resolved';
      else
        update public.conversations c set status = 'open', resolved_at = null
        where c.id = v_conversation.id
        returning * into v_conversation;
      end if;
    end if;
    if v_recipient.id is not null and v_conversation.campaign_recipient_id is null then
      update public.conversations c set campaign_recipient_id = v_recipient.id where c.id = v_conversation.id;
    end if;
    insert into public.messages (workspace_id, conversation_id, channel_id, direction, text, html,
                                 quoted_text, attachments, provider_message_id, status,
                                 provider_timestamp, context, campaign_recipient_id, auto_reply)
    values (v_channel.workspace_id, v_conversation.id, v_channel.id, 'inbound',
            left(p_mail ->> 'text', 200000), left(p_mail ->> 'html', 2000000),
            left(p_mail ->> 'quoted_text', 2000000),
            private.jsonb_array_or_empty(p_mail -> 'attachments'),
            left(coalesce(p_mail ->> 'message_id', 'ses:' || (p_mail ->> 'ses_message_id')), 998),
            'received', coalesce(p_received_at, now()),
            jsonb_strip_nulls(jsonb_build_object(
              'email_message_id', left(p_mail ->> 'message_id', 998),
              'references', to_jsonb(v_refs),
              'subject', left(p_mail ->> 'subject', 998),
              'from_name', left(p_mail ->> 'from_name', 200))),
            v_recipient.id,
            coalesce(p_mail -> 'auto_reply' = 'true'::jsonb, false))
    on conflict (channel_id, provider_message_id) do nothing;
  end if;
  return v_outcome;
end
$$;

revoke all on function private.file_inbound_email(uuid, text, uuid, jsonb, timestamptz) from public, anon, authenticated;

-- New messages, as before (counts and times, inbound total, broadcasts); a snoozed or pending
-- conversation reopens, and its assignee is told, only for a customer's own message, never for
-- an auto-reply.
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
      last_message_at = greatest(c.last_message_at, coalesce(d.last_at, c.last_message_at)),
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
