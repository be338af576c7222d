-- Inbox replies sent by email follow SES's events, as WhatsApp replies follow Meta's statuses.
-- An inbox reply goes out through SES with the configuration set and the tag `inbox_message`
-- (its message id), so SES publishes its events to the SES webhook like a campaign's; they were
-- stored and ignored (`ignored:unknown_recipient`), and the reply stayed `sent` even when it
-- bounced. Now an event tagged with an inbox message moves that message forward:
-- Delivery -> delivered, Open -> read, Bounce and Reject -> failed with SES's bounce type and
-- the recipient's diagnostic (or the reject reason) as the error the member sees; the other
-- events change nothing. Statuses only move forward (private.apply_message_statuses), so events
-- in any order, or delivered twice, end in the furthest state. Every other SES event is
-- applied exactly as before, by the function renamed private.apply_campaign_ses_event.

alter function private.apply_ses_event(uuid) rename to apply_campaign_ses_event;

-- Applies one stored SES event: an inbox reply's (tagged `inbox_message`) here, every other by
-- private.apply_campaign_ses_event. Answers the outcome.
create function private.apply_ses_event(p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_event jsonb;
  v_type text;
  v_details jsonb;
  v_tag text;
  v_message public.messages;
  v_status text;
  v_code text;
  v_text text;
  v_outcome text;
begin
  begin
    select (e.body::jsonb ->> 'Message')::jsonb into v_event
    from private.webhook_events e
    where e.id = p_event_id and e.provider = 'ses' and e.status = 'received';
  exception when others then
    v_event := null;  -- not an SES event: the campaign applier says what it is
  end;
  v_tag := v_event #>> '{mail,tags,inbox_message,0}';
  if jsonb_typeof(v_event) = 'object' and v_tag ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select m.* into v_message
    from public.messages m
    join public.channels ch on ch.id = m.channel_id and ch.kind = 'email'
    where m.id = v_tag::uuid and m.direction = 'outbound'
      and m.provider_message_id = v_event #>> '{mail,messageId}';
  end if;
  if v_message.id is null then
    return private.apply_campaign_ses_event(p_event_id);
  end if;

  v_type := coalesce(v_event ->> 'eventType', v_event ->> 'notificationType');
  v_details := v_event -> lower(v_type);
  case v_type
    when 'Delivery' then
      v_status := 'delivered';
    when 'Open' then
      v_status := 'read';
    when 'Bounce' then
      v_status := 'failed';
      v_code := left('bounce:' || coalesce(v_details ->> 'bounceType', 'Undetermined')
                     || ':' || coalesce(v_details ->> 'bounceSubType', 'General'), 100);
      v_text := coalesce(v_details #>> '{bouncedRecipients,0,diagnosticCode}',
                         'The recipient''s mail server refused the message');
    when 'Reject' then
      v_status := 'failed';
      v_code := 'reject';
      v_text := coalesce(v_details ->> 'reason', 'Amazon SES rejected the message');
    else
      v_status := null;
  end case;
  if v_status is not null then
    perform private.apply_message_statuses(v_message.channel_id, jsonb_build_array(jsonb_build_object(
      'id', v_message.provider_message_id, 'status', v_status,
      'status_at', coalesce(private.ses_timestamp(v_details ->> 'timestamp'), now()),
      'error_code', v_code, 'error_text', left(v_text, 1000))));
  end if;
  v_outcome := case when v_status is null then 'ignored:event_type:' || left(coalesce(v_type, 'none'), 64)
                    else 'applied' end;
  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

revoke all on function private.apply_ses_event(uuid) from public, anon, authenticated;

grant execute on function private.apply_ses_event(uuid) to service_role;

revoke all on function private.apply_campaign_ses_event(uuid) from public, anon, authenticated, service_role;
