-- Bounces by SES subtype (issue 18). As before (20261130091500_email_hardening_fixes.sql), and:
-- the row keeps SES's bounceSubType beside its bounce type (the deliverability counts leave
-- suppression-list hits, Suppressed and OnAccountSuppressionList, out of the bounce rate, as SES
-- does); a permanent bounce suppresses the address at once and a complaint too, as before; a
-- transient bounce (SES has already retried it) suppresses the address for the workspace at the
-- third in 30 days (ContentRejected, AttachmentRejected and MessageTooLarge apart); those three
-- flag the campaign's content instead (campaigns.content_rejections), not the recipient.

alter table public.campaigns add column content_rejections integer not null default 0;

comment on column public.campaigns.content_rejections is
  'Soft bounces in which a mailbox provider refused the content (ContentRejected, AttachmentRejected, MessageTooLarge): the content is at fault, not the recipients.';

create index campaign_recipients_contact_soft_bounces_idx on public.campaign_recipients (contact_id, bounced_at)
  where bounce_type = 'Transient';

create or replace function private.apply_ses_event(p_event_id uuid)
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
                               else coalesce(left(v_details ->> 'bounceType', 50), r.bounce_type) end,
            bounce_subtype = case when r.bounce_type = 'Permanent' then r.bounce_subtype
                                  else coalesce(left(v_details ->> 'bounceSubType', 50), r.bounce_subtype) end
        where r.id = v_recipient.id;
        if v_details ->> 'bounceType' = 'Transient'
           and v_details ->> 'bounceSubType' in ('ContentRejected', 'AttachmentRejected', 'MessageTooLarge') then
          -- The content was refused, not the recipient: flag the campaign.
          update public.campaigns c
          set content_rejections = c.content_rejections + 1
          where c.id = v_recipient.campaign_id;
        elsif v_details ->> 'bounceType' = 'Transient' and (
          select count(*) from public.campaign_recipients o
          where o.contact_id = v_recipient.contact_id and o.bounce_type = 'Transient'
            and o.bounced_at > v_at - interval '30 days'
            and o.bounce_subtype is distinct from 'ContentRejected'
            and o.bounce_subtype is distinct from 'AttachmentRejected'
            and o.bounce_subtype is distinct from 'MessageTooLarge'
        ) >= 3 then
          -- SES retried each soft bounce already; the third in 30 days suppresses the address.
          insert into public.email_suppressions (workspace_id, email, reason, detail)
          values (v_recipient.workspace_id, v_recipient.email, 'bounce',
                  left(format('Three soft bounces in 30 days (last: %s)',
                              coalesce(v_details ->> 'bounceSubType', 'General')), 1000))
          on conflict (workspace_id, email) do nothing;
        end if;
        if v_details ->> 'bounceType' = 'Permanent' then
          insert into public.email_suppressions (workspace_id, email, reason, detail)
          select v_recipient.workspace_id, a.email, 'bounce',
                 left(concat_ws(': ', format('Permanent bounce (%s)',
                                             coalesce(v_details ->> 'bounceSubType', 'General')),
                                a.diagnostic), 1000)
          from private.ses_affected_addresses(v_details -> 'bouncedRecipients', v_recipient.email) a
          on conflict (workspace_id, email) do nothing;
          insert into private.platform_suppressions (email_hash, reason)
          select sha256(convert_to(lower(a.email), 'UTF8')), 'bounce'
          from private.ses_affected_addresses(v_details -> 'bouncedRecipients', v_recipient.email) a
          on conflict (email_hash) do nothing;
        end if;
      when 'Complaint' then
        update public.campaign_recipients r
        set complained_at = least(r.complained_at, v_at)
        where r.id = v_recipient.id;
        insert into public.email_suppressions as s (workspace_id, email, reason, detail)
        select v_recipient.workspace_id, a.email, 'complaint',
               left(format('Complaint (%s)',
                           coalesce(v_details ->> 'complaintFeedbackType', 'no feedback type')), 1000)
        from private.ses_affected_addresses(v_details -> 'complainedRecipients', v_recipient.email) a
        on conflict (workspace_id, email) do update
          set reason = excluded.reason, detail = excluded.detail
          where s.reason in ('manual', 'bounce');
        insert into private.platform_suppressions as p (email_hash, reason)
        select sha256(convert_to(lower(a.email), 'UTF8')), 'complaint'
        from private.ses_affected_addresses(v_details -> 'complainedRecipients', v_recipient.email) a
        on conflict (email_hash) do update set reason = excluded.reason where p.reason = 'bounce';
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

revoke all on function private.apply_ses_event(uuid) from public, anon, authenticated;

-- The edge applies stored SES events (at once, and again from the cron replay) as service_role.
grant execute on function private.apply_ses_event(uuid) to service_role;
