-- A customer's message in the inbox is a `replied` contact event, so flows can exit on it (a
-- cold-email sequence stops for a contact who answers) and segments can ask for it. It is
-- recorded as a custom event named `replied` ({"type": "custom", "name": "replied"} in a flow's
-- exit goals), once per message (its event key), with the channel, conversation and, when the
-- reply answers one, the campaign and recipient. Auto-replies are not replies; a sender without
-- a contact (over the plan's limit) or an erased one records nothing.

create function private.record_inbox_replies()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.contact_events (workspace_id, contact_id, type, name, event_key, properties, occurred_at)
  select n.workspace_id, c.contact_id, 'custom', 'replied', 'inbox-reply:' || n.id::text,
         jsonb_strip_nulls(jsonb_build_object(
           'channel', ch.kind, 'channel_id', n.channel_id, 'conversation_id', n.conversation_id,
           'message_id', n.id, 'campaign_recipient_id', n.campaign_recipient_id,
           'campaign_id', r.campaign_id)),
         n.provider_timestamp
  from new_rows n
  join public.conversations c on c.id = n.conversation_id
  join public.channels ch on ch.id = n.channel_id
  join public.contacts k on k.id = c.contact_id and k.erased_at is null
  left join public.campaign_recipients r on r.id = n.campaign_recipient_id
  where n.direction = 'inbound' and not n.auto_reply and c.contact_id is not null
  on conflict (workspace_id, event_key) where event_key is not null do nothing;
  return null;
end
$$;

revoke all on function private.record_inbox_replies() from public, anon, authenticated;

create trigger messages_record_replies
  after insert on public.messages
  referencing new table as new_rows
  for each statement execute function private.record_inbox_replies();
