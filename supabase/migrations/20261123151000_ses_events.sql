-- SES events through SNS: what became of each campaign email after SES accepted it.
--
-- The edge verifies each SNS message, stores its envelope raw in private.webhook_events
-- (provider 'ses', the SNS MessageId as the event id, so SNS's retries are no-ops) and applies
-- it here. SNS neither orders SES events nor merges them, so every change is order-independent:
-- first times keep the earliest, last times the latest, a permanent bounce outranks a
-- transient one, and applying a stored event a second time changes nothing.

-- SES and SNS write times as ISO 8601 in UTC. Anything else counts as unknown instead of
-- raising, so one malformed field can never leave a stored event failing on every replay.
create function private.ses_timestamp(p_value text)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
begin
  if p_value !~ '^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}' then
    return null;
  end if;
  return p_value::timestamptz;
exception when data_exception then
  return null;
end
$$;

-- The addresses a bounce or complaint names (bouncedRecipients, complainedRecipients), as the
-- suppression list stores them: trimmed, lower case, without a display name, each with the
-- receiving server's diagnostic when there is one. When SES names none we can read, the
-- address we mailed is the one affected.
create function private.ses_affected_addresses(p_recipients jsonb, p_mailed_email text)
returns table (email text, diagnostic text)
language sql
immutable
set search_path = ''
as $$
  with listed as (
    select distinct on (a.email) a.email, a.diagnostic
    from (
      select lower(btrim(coalesce(substring(r.item ->> 'emailAddress' from '<([^<>]*)>'),
                                  r.item ->> 'emailAddress'))) as email,
             r.item ->> 'diagnosticCode' as diagnostic
      from jsonb_array_elements(
        case when jsonb_typeof(p_recipients) = 'array' then p_recipients else '[]'::jsonb end
      ) as r(item)
    ) a
    where a.email ~ '^[^@\s]+@[^@\s]+$' and char_length(a.email) <= 320
    order by a.email, a.diagnostic nulls last
  )
  select l.email, l.diagnostic from listed l
  union all
  select lower(btrim(p_mailed_email)), null
  where p_mailed_email is not null and not exists (select 1 from listed)
$$;

-- Applies one stored SES event (eventType, or the older notificationType shape) to its row in
-- the send ledger, found by our recipient_id tag or else by SES's message id, using the
-- event's own times. Any event proves SES accepted the message, so a row not yet recorded as
-- sent becomes sent: a worker that crashed after SES accepted left it queued or sending (or it
-- was failed, skipped or cancelled later), and it must not go out twice. So event columns are
-- only ever set on sent rows. Permanent bounces and complaints suppress the addresses for the
-- recipient's workspace. What is not a campaign email's event ends as 'ignored:...', never as
-- an error, so it cannot block the replay of others.
create function private.apply_ses_event(p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stored private.webhook_events;
  v_envelope jsonb;
  v_event jsonb;
  v_type text;
  v_details jsonb;
  v_mail jsonb;
  v_message_id text;
  v_tagged_id text;
  v_recipient public.campaign_recipients;
  v_sent_at timestamptz;
  v_at timestamptz;
  v_outcome text := 'applied';
begin
  select * into v_stored from private.webhook_events e
  where e.id = p_event_id and e.provider = 'ses'
  for update;
  if v_stored.id is null then
    return 'ignored:unknown_event';
  end if;
  if v_stored.status <> 'received' then
    return v_stored.outcome;
  end if;

  begin
    v_envelope := v_stored.body::jsonb;
    v_event := (v_envelope ->> 'Message')::jsonb;
  exception when invalid_text_representation then
    v_event := null;
  end;
  v_type := coalesce(
    v_event ->> 'eventType',
    case when v_event ->> 'notificationType' in ('Bounce', 'Complaint', 'Delivery')
      then v_event ->> 'notificationType' end
  );
  v_details := v_event -> case v_type
    when 'Send' then 'send'
    when 'Delivery' then 'delivery'
    when 'Bounce' then 'bounce'
    when 'Complaint' then 'complaint'
    when 'Reject' then 'reject'
    when 'Open' then 'open'
    when 'Click' then 'click'
    when 'DeliveryDelay' then 'deliveryDelay'
    when 'Rendering Failure' then 'failure'
  end;
  v_mail := v_event -> 'mail';
  v_message_id := v_mail ->> 'messageId';
  v_tagged_id := v_mail #>> '{tags,recipient_id,0}';
  if v_tagged_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    select * into v_recipient from public.campaign_recipients r
    where r.id = v_tagged_id::uuid
    for update;
  end if;
  if v_recipient.id is null and v_message_id is not null then
    select * into v_recipient from public.campaign_recipients r
    where r.ses_message_id = v_message_id
    for update;
  end if;

  if v_envelope ->> 'Type' is distinct from 'Notification' then
    v_outcome := 'ignored:not_a_notification';
  elsif v_event is null or jsonb_typeof(v_event) <> 'object' then
    v_outcome := 'ignored:not_an_ses_event';
  elsif v_type is null or v_type not in (
    'Send', 'Delivery', 'Bounce', 'Complaint', 'Reject', 'Open', 'Click', 'DeliveryDelay',
    'Rendering Failure'
  ) then
    v_outcome := 'ignored:event_type:' || left(coalesce(v_type, 'none'), 64);
  elsif v_recipient.id is null then
    v_outcome := 'ignored:unknown_recipient';
  else
    v_sent_at := private.ses_timestamp(v_mail ->> 'timestamp');
    v_at := coalesce(
      private.ses_timestamp(v_details ->> 'timestamp'),
      private.ses_timestamp(v_details ->> 'arrivalDate'),
      v_sent_at,
      private.ses_timestamp(v_envelope ->> 'Timestamp'),
      v_stored.received_at
    );

    if v_recipient.status <> 'sent' then
      update public.campaign_recipients r
      set status = 'sent', sent_at = coalesce(v_sent_at, v_at), locked_until = null, error = null,
          ses_message_id = coalesce(r.ses_message_id, (
            select v_message_id
            where not exists (select 1 from public.campaign_recipients o
                              where o.ses_message_id = v_message_id)
          ))
      where r.id = v_recipient.id;
    end if;

    case v_type
      when 'Delivery' then
        update public.campaign_recipients r
        set delivered_at = least(r.delivered_at, v_at)
        where r.id = v_recipient.id;
      when 'Open' then
        update public.campaign_recipients r
        set opens = r.opens + 1, opened_at = least(r.opened_at, v_at),
            last_opened_at = greatest(r.last_opened_at, v_at)
        where r.id = v_recipient.id;
      when 'Click' then
        update public.campaign_recipients r
        set clicks = r.clicks + 1, clicked_at = least(r.clicked_at, v_at),
            last_clicked_at = greatest(r.last_clicked_at, v_at)
        where r.id = v_recipient.id;
      when 'Bounce' then
        update public.campaign_recipients r
        set bounced_at = least(r.bounced_at, v_at),
            bounce_type = case when r.bounce_type = 'Permanent' then r.bounce_type
                               else coalesce(left(v_details ->> 'bounceType', 50), r.bounce_type) end
        where r.id = v_recipient.id;
        if v_details ->> 'bounceType' = 'Permanent' then
          insert into public.email_suppressions (workspace_id, email, reason, detail)
          select v_recipient.workspace_id, a.email, 'bounce',
                 left(concat_ws(': ', format('Permanent bounce (%s)',
                                             coalesce(v_details ->> 'bounceSubType', 'General')),
                                a.diagnostic), 1000)
          from private.ses_affected_addresses(v_details -> 'bouncedRecipients', v_recipient.email) a
          on conflict (workspace_id, email) do nothing;
        end if;
      when 'Complaint' then
        update public.campaign_recipients r
        set complained_at = least(r.complained_at, v_at)
        where r.id = v_recipient.id;
        insert into public.email_suppressions (workspace_id, email, reason, detail)
        select v_recipient.workspace_id, a.email, 'complaint',
               left(format('Complaint (%s)',
                           coalesce(v_details ->> 'complaintFeedbackType', 'no feedback type')), 1000)
        from private.ses_affected_addresses(v_details -> 'complainedRecipients', v_recipient.email) a
        on conflict (workspace_id, email) do nothing;
      when 'Reject' then
        update public.campaign_recipients r
        set rejected_at = least(r.rejected_at, v_at)
        where r.id = v_recipient.id;
      when 'DeliveryDelay' then
        update public.campaign_recipients r
        set delayed_at = least(r.delayed_at, v_at)
        where r.id = v_recipient.id;
      when 'Rendering Failure' then
        update public.campaign_recipients r
        set rendering_failed_at = least(r.rendering_failed_at, v_at)
        where r.id = v_recipient.id;
      else
        null;
    end case;
  end if;

  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

-- grants ------------------------------------------------------------------------------------------

revoke all on function private.ses_timestamp(text) from public, anon, authenticated;

revoke all on function private.ses_affected_addresses(jsonb, text) from public, anon, authenticated;

revoke all on function private.apply_ses_event(uuid) from public, anon, authenticated;

-- The edge applies stored SES events (at once, and again from the cron replay) as service_role.
grant execute on function private.apply_ses_event(uuid) to service_role;
