-- WhatsApp's 24-hour customer service window is the contact's on the number, not a
-- conversation's.
--
-- Meta opens (or refreshes) the window for a user and a business number whenever the user
-- writes. A reply checked only its own conversation's last inbound message, so a member
-- answering in the contact's earlier (resolved) conversation got 409 whatsapp_window_closed an
-- hour after the contact wrote in their new one, though Meta would have delivered it. The window
-- is now open when the contact wrote to that number in any of their conversations on the
-- channel within 24 hours; otherwise only an approved template goes, as before.

-- Members and above answer a conversation: the message is queued with its outbox row in one
-- transaction, and the edge (or the cron) sends it. Either text or a WhatsApp template (an
-- approved one of the channel: {"name", "language", "parameters": [text…]}). Free text on
-- WhatsApp only within 24 hours of the contact's last message to that number, in any of their
-- conversations on the channel (409 whatsapp_window_closed).
create or replace function public.reply_to_conversation(p_conversation_id uuid, p_text text, p_template jsonb default null)
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
        and not exists (select from public.conversations c
                        where c.channel_id = v_conversation.channel_id and c.identity_id = v_conversation.identity_id
                          and c.last_inbound_at >= now() - interval '24 hours') then
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
