-- An inbound message edited into an opt-out word ("STOP") opts its sender out, as a new one does.
--
-- The opt-out (private.inbox_inbound_effects, 20261227091000_inbox_apply_cheaper.sql) runs for
-- inserted messages only. Telegram delivers edits (`edited_message`), which change a kept
-- message's text in place (the old text kept as a revision), so a customer who edited "Hello"
-- into "STOP" stayed subscribed. Now an inbound message whose text is changed to an opt-out word
-- suppresses its sender on that channel kind, recorded with that message and the word, like a
-- new message (the consent record follows from the suppression as before).

-- An inbound message's text changed to an opt-out word: its sender is suppressed on the
-- channel kind (once), with the message as the source.
create function private.inbox_edited_opt_out()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if private.opt_out_keyword(new.text) is null then
    return null;
  end if;
  insert into public.channel_suppressions (workspace_id, kind, address, contact_id, source_message_id, keyword)
  select new.workspace_id, ch.kind, i.address, i.contact_id, new.id, private.opt_out_keyword(new.text)
  from public.channels ch
  join public.conversations c on c.id = new.conversation_id
  join public.contact_identities i on i.id = c.identity_id
  where ch.id = new.channel_id
  on conflict (workspace_id, kind, address) do nothing;
  return null;
end
$$;

revoke all on function private.inbox_edited_opt_out() from public, anon, authenticated;

create trigger messages_edited_opt_out
  after update of text on public.messages
  for each row
  when (new.direction = 'inbound' and not new.auto_reply and new.text is distinct from old.text)
  execute function private.inbox_edited_opt_out();
