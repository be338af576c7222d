-- Raw webhook payloads that name no owner on arrival (SES events on the platform's SNS topic,
-- inbound mail, Razorpay, Make callbacks) are attributed once they are applied: when the
-- applier marks the event applied or ignored (or the replay dead-letters it), the workspace its content was matched to is
-- recorded (a campaign recipient for SES, the email channel for inbound mail, the subscription
-- for Razorpay, the automation for Make), so the workspace's own webhook_payload_days applies.
-- A payload that matched no workspace, or that names a person its workspace erased, keeps only
-- its non-personal fields (event type, provider ids, times): nobody could erase or export a
-- person from it, and nothing needs more once it is applied.
--
-- Erasure finds a person in attributed payloads: when a contact is erased, the payloads
-- attributed to its workspace that name its address, phone or an inbox identity (through
-- identity_keys) are deleted, whatever their provider; and a payload applied after the erasure
-- is stripped on apply (above).

-- The workspace an applied payload's content was matched to (null: none).
create function private.applied_webhook_workspace(p_provider text, p_body text)
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_body jsonb;
  v_message jsonb;
  v_id text;
  v_workspace_id uuid;
  v_uuid text := '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$';
begin
  begin
    v_body := p_body::jsonb;
    if p_provider in ('ses', 'ses_inbound') then
      v_message := (v_body ->> 'Message')::jsonb;
    end if;
  exception when others then
    return null;  -- not JSON: nothing to match, nothing kept
  end;
  if jsonb_typeof(v_body) is distinct from 'object' then
    return null;
  end if;
  if p_provider = 'ses' and jsonb_typeof(v_message) = 'object' then
    v_id := v_message #>> '{mail,tags,recipient_id,0}';
    if v_id ~ v_uuid then
      select r.workspace_id into v_workspace_id from public.campaign_recipients r where r.id = v_id::uuid;
    end if;
    if v_workspace_id is null and v_message #>> '{mail,messageId}' is not null then
      select r.workspace_id into v_workspace_id from public.campaign_recipients r
      where r.ses_message_id = v_message #>> '{mail,messageId}';
    end if;
  elsif p_provider = 'ses_inbound' and jsonb_typeof(v_message) = 'object' then
    select ch.workspace_id into v_workspace_id
    from private.email_channel_for(array(
           select lower(r) from jsonb_array_elements_text(private.jsonb_array_or_empty(v_message #> '{receipt,recipients}')) as r
         )) as f
    join public.channels ch on ch.id = f.channel_id;
  elsif p_provider = 'razorpay' then
    v_id := coalesce(v_body #>> '{payload,subscription,entity,id}',
                     v_body #>> '{payload,payment,entity,subscription_id}');
    if v_id is not null then
      select s.workspace_id into v_workspace_id from public.subscriptions s
      where s.razorpay_subscription_id = v_id;
    end if;
  elsif p_provider = 'make' then
    v_id := v_body ->> 'automation_id';
    if v_id ~ v_uuid then
      select a.workspace_id into v_workspace_id from public.automations a where a.id = v_id::uuid;
    end if;
  end if;
  return v_workspace_id;
end
$$;

revoke all on function private.applied_webhook_workspace(text, text) from public, anon, authenticated;

grant execute on function private.applied_webhook_workspace(text, text) to service_role;

-- A payload's non-personal fields: what it was (type, provider ids, times), never an address,
-- a name, a phone or message content.
create function private.webhook_payload_skeleton(p_provider text, p_body text)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_body jsonb;
  v_message jsonb;
  v_kept jsonb := '{}'::jsonb;
begin
  begin
    v_body := p_body::jsonb;
    if p_provider in ('ses', 'ses_inbound') then
      v_message := (v_body ->> 'Message')::jsonb;
    end if;
  exception when others then
    v_body := null;
  end;
  if jsonb_typeof(v_body) = 'object' then
    if p_provider in ('ses', 'ses_inbound') then
      v_kept := jsonb_build_object(
        'Type', v_body -> 'Type', 'MessageId', v_body -> 'MessageId',
        'TopicArn', v_body -> 'TopicArn', 'Timestamp', v_body -> 'Timestamp');
      if jsonb_typeof(v_message) = 'object' then
        v_kept := v_kept || jsonb_build_object('Message', jsonb_strip_nulls(jsonb_build_object(
          'eventType', v_message -> 'eventType',
          'notificationType', v_message -> 'notificationType',
          'mail', jsonb_build_object('messageId', v_message #> '{mail,messageId}',
                                     'timestamp', v_message #> '{mail,timestamp}'),
          'bounceType', v_message #> '{bounce,bounceType}',
          'bounceSubType', v_message #> '{bounce,bounceSubType}')));
      end if;
    elsif p_provider = 'razorpay' then
      v_kept := jsonb_build_object(
        'event', v_body -> 'event', 'created_at', v_body -> 'created_at',
        'subscription_id', coalesce(v_body #> '{payload,subscription,entity,id}',
                                    v_body #> '{payload,payment,entity,subscription_id}'),
        'payment_id', v_body #> '{payload,payment,entity,id}');
    elsif p_provider = 'make' then
      v_kept := jsonb_build_object('automation_id', v_body -> 'automation_id', 'status', v_body -> 'status');
    end if;
  end if;
  return (jsonb_strip_nulls(v_kept) || jsonb_build_object('stripped', true))::text;
end
$$;

revoke all on function private.webhook_payload_skeleton(text, text) from public, anon, authenticated;

-- Whether a payload names (by address or phone) a person its workspace erased and has not
-- readmitted: the keyed hashes of private.erased_identities.
create function private.webhook_names_erased_person(p_workspace_id uuid, p_tokens text[])
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select from private.erased_identities e
    where e.workspace_id = p_workspace_id
      and e.identity_key in (
        select private.identity_key(p_workspace_id, 'email', t) from unnest(p_tokens) as t where t like '%@%'
        union all
        select private.identity_key(p_workspace_id, 'phone', p)
        from unnest(p_tokens) as t, lateral (values (t), ('+' || t)) as v (p)
        where t ~ '^[0-9]{7,15}$'
      )
  )
$$;

revoke all on function private.webhook_names_erased_person(uuid, text[]) from public, anon, authenticated;

grant execute on function private.webhook_names_erased_person(uuid, text[]) to service_role;

-- When an applier finishes an event (received -> applied or ignored): record the workspace it
-- was matched to, index what an inbound mail's Base64 content names (its sender, most of all),
-- and strip a payload nobody owns or that names an erased person. A dead-lettered event
-- (received -> failed) is attributed and indexed the same way, and kept whole.
create function private.attribute_applied_webhook_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_message jsonb;
  v_decoded text;
  v_tokens text[];
begin
  if new.workspace_id is null then
    new.workspace_id := private.applied_webhook_workspace(new.provider, new.body);
  end if;
  v_tokens := private.identifier_tokens(new.body);
  if new.provider = 'ses_inbound' then
    begin
      v_message := (new.body::jsonb ->> 'Message')::jsonb;
      if upper(v_message #>> '{receipt,action,encoding}') = 'BASE64' then
        v_decoded := convert_from(decode(left(v_message ->> 'content', 4000000), 'base64'), 'UTF8');
        v_tokens := v_tokens || private.identifier_tokens(v_decoded);
        new.identity_keys := new.identity_keys || private.identifier_keys(v_tokens);
      end if;
    exception when others then
      null;  -- content that is not Base64 UTF-8 text has nothing more to index
    end;
  end if;
  -- A dead-lettered payload keeps its body (what failed is worth reading) for its days.
  if new.status <> 'failed'
     and (new.workspace_id is null or private.webhook_names_erased_person(new.workspace_id, v_tokens)) then
    new.body := private.webhook_payload_skeleton(new.provider, new.body);
    new.identity_keys := private.identifier_keys(private.identifier_tokens(new.body));
  end if;
  return new;
end
$$;

revoke all on function private.attribute_applied_webhook_event() from public, anon, authenticated;

create trigger webhook_events_attribute_on_apply
  before update of status on private.webhook_events
  for each row
  when (old.status = 'received' and new.status in ('applied', 'ignored', 'failed'))
  execute function private.attribute_applied_webhook_event();

-- Erasure reaches every payload attributed to the contact's workspace that names them (their
-- address, phone and inbox identities; fires before contacts_erase_inbox deletes those), in
-- addition to what private.erase_contacts and private.erase_inbox_of_contact find by provider.
create function private.erase_attributed_webhook_payloads()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_keys text[];
begin
  select private.identifier_keys(coalesce(array_agg(distinct t), '{}')) into v_keys
  from (
    select lower(old.email) as t
    union all
    select private.phone_digits(old.phone)
    union all
    select case when i.kind = 'email' then i.address else ltrim(i.address, '-') end
    from public.contact_identities i where i.contact_id = new.id
  ) as tokens
  where t is not null and t <> '';
  if cardinality(v_keys) > 0 then
    delete from private.webhook_events e
    where e.workspace_id = new.workspace_id and e.identity_keys && v_keys;
  end if;
  return new;
end
$$;

revoke all on function private.erase_attributed_webhook_payloads() from public, anon, authenticated;

create trigger contacts_erase_attributed_payloads
  after update of erased_at on public.contacts
  for each row when (old.erased_at is null and new.erased_at is not null)
  execute function private.erase_attributed_webhook_payloads();

comment on column private.webhook_events.workspace_id is
  'The workspace the payload belongs to: set on insert when its event id names a project or channel, else when applied from what it was matched to (private.attribute_applied_webhook_event); null: matched nothing (the payload was stripped to non-personal fields) or not applied yet.';

-- Payloads applied before this migration: attributed the same way; those that matched nothing
-- are stripped.
update private.webhook_events e
set workspace_id = private.applied_webhook_workspace(e.provider, e.body)
where e.workspace_id is null and e.status in ('applied', 'ignored')
  and e.provider in ('ses', 'ses_inbound', 'razorpay', 'make');

update private.webhook_events e
set body = private.webhook_payload_skeleton(e.provider, e.body)
where e.workspace_id is null and e.status in ('applied', 'ignored');
