-- Media of every channel into the `inbox` bucket, through the queue and cron WhatsApp media
-- already use (20261216092000_inbox_media.sql): Telegram files (getFile, then the file), X
-- direct-message media (the attachment's ton.twitter.com URL) and email attachments (the part
-- of the stored mail; their provider id is `<stored webhook id>:<part>`, set by the edge's
-- parser, so the queue trigger picks them up like any other). The edge checks each file's
-- content type against the types the inbox keeps, and its first bytes against the type it
-- claims; a file refused is `refused` (kept on the message as name, type and the reason, never
-- stored).

alter table private.inbox_media_queue drop constraint inbox_media_queue_status_check;

alter table private.inbox_media_queue add constraint inbox_media_queue_status_check
  check (status in ('pending', 'stored', 'too_large', 'refused', 'failed'));

-- The raw body of a stored inbound mail (the SNS notification holding the MIME), for the media
-- cron to take an attachment from. Null when it is not one, or its payload is gone (retention).
create function private.inbound_email_body(p_event_id uuid)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select e.body from private.webhook_events e
  where e.id = p_event_id and e.provider = 'ses_inbound'
$$;

revoke all on function private.inbound_email_body(uuid) from public, anon, authenticated;

grant execute on function private.inbound_email_body(uuid) to service_role;
