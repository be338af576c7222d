-- Fix-forward of 20261130091000_email_hardening.sql, which had landed before these changes
-- were made to it: applied on top of the landed version (functions replaced, triggers
-- recreated).

drop trigger if exists email_suppressions_upgrade_to_permanent on public.email_suppressions;

drop function if exists private.upgrade_suppression_to_permanent();

-- Email hardening (issue 12, findings 3 and 8).
--
-- Unsubscribes and complaints are the recipient's decision, so they always win and no workspace
-- user can undo them. Every writer of one (the unsubscribe link, SES complaints, the trigger on
-- unsubscribed contacts) upserts: it takes over a manual or bounce suppression of the same
-- address (which admins may lift), also when that row was inserted concurrently and committed
-- while the writer waited. Such a suppression keeps its address and reason; only the service
-- (erasure) or deleting the workspace removes or anonymises it. Only the service marks a
-- contact unsubscribed (users hold no privilege on contacts.unsubscribed_at), the time stays,
-- and an unsubscribed contact's address cannot be changed (409 contact_unsubscribed), so no
-- user can create an unsubscribe for an address that never unsubscribed.
--
-- Complaints and permanent bounces also go on a platform-wide list (private.
-- platform_suppressions, the sha256 of the lower-case address), like SES's account-level
-- suppression list: the address is left out of every workspace's campaigns, at launch and when
-- a recipient is claimed, so importing it into another workspace does not mail it again.
--
-- Sender identities: only a verified identity, or an unverified one younger than SES's 72
-- hours, keeps other workspaces from registering the same name or one under its domain; a null
-- identity is a 422.
--
-- Campaign lifecycle calls act only from the state they are named for (409 invalid_transition
-- otherwise): resume only a paused campaign (a draft or scheduled one would skip the sender
-- check, the frozen audience and the email reservation), whose sender must still be verified;
-- pause only a sending one, unschedule only a scheduled one, schedule a draft (or reschedule)
-- for a finite time, cancel only a campaign that has not ended. A campaign leaves draft or
-- scheduled for sending only through its launch, whoever updates it. add_campaign_variant
-- checks role, state, name and weight itself and answers each with its own error.

-- suppressions ----------------------------------------------------------------------------------

-- An unsubscribe or complaint suppression keeps its address, workspace and permanence against
-- every workspace user, directly or through any function they call. The service may delete or
-- anonymise it (erasure of a person); deleting its workspace (a cascade, one trigger level
-- down) removes it too. Decided by the role the request acts as (set role), which a security
-- definer function called by a user does not change.
create or replace function private.keep_permanent_suppressions()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.reason not in ('complaint', 'unsubscribe')
     or current_user = 'service_role'
     or pg_catalog.current_setting('role', true) = 'service_role' then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  if tg_op = 'DELETE' and pg_catalog.pg_trigger_depth() = 1 then
    perform private.fail(409, 'suppression_is_permanent',
      'An unsubscribe or complaint suppression cannot be lifted');
  end if;
  if tg_op = 'UPDATE' and (
    new.workspace_id <> old.workspace_id or new.email <> old.email
    or new.reason not in ('complaint', 'unsubscribe')
  ) then
    perform private.fail(409, 'suppression_is_permanent',
      'An unsubscribe or complaint suppression keeps its address and reason');
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

revoke all on function private.keep_permanent_suppressions() from public, anon, authenticated;

drop trigger if exists email_suppressions_keep_permanent on public.email_suppressions;

create trigger email_suppressions_keep_permanent
  before update or delete on public.email_suppressions
  for each row execute function private.keep_permanent_suppressions();

-- Complaints and permanent bounces across the whole platform, by the sha256 of the lower-case
-- address (sha256(convert_to(lower(email), 'UTF8'))): no campaign of any workspace mails them.
-- Written only by private.apply_ses_event; the service may delete a hash (erasure).
create table private.platform_suppressions (
  email_hash bytea primary key check (octet_length(email_hash) = 32),
  reason text not null check (reason in ('complaint', 'bounce')),
  first_seen_at timestamptz not null default now()
);

revoke all on private.platform_suppressions from public, anon, authenticated;

grant select, delete on private.platform_suppressions to service_role;

comment on table private.platform_suppressions is
  'Complaints and permanent bounces from SES, platform-wide by address hash: never mailed by any workspace.';

-- Complaints and permanent bounces recorded before this migration.
insert into private.platform_suppressions (email_hash, reason, first_seen_at)
select sha256(convert_to(lower(s.email), 'UTF8')),
       case when bool_or(s.reason = 'complaint') then 'complaint' else 'bounce' end,
       min(s.created_at)
from public.email_suppressions s
where s.reason in ('complaint', 'bounce')
group by lower(s.email)
on conflict (email_hash) do nothing;

-- contacts ----------------------------------------------------------------------------------------

-- Only the service marks a contact unsubscribed (the unsubscribe link): a user who could set
-- the time would create an unsubscribe suppression no admin can lift. Members who want to stop
-- mail to someone ask an admin for a manual suppression.
revoke insert (unsubscribed_at) on public.contacts from authenticated;

revoke update (unsubscribed_at) on public.contacts from authenticated;

-- Once a contact has unsubscribed, the time stays (nobody re-subscribes a contact by editing
-- it) and so does its address: a new address would be suppressed as unsubscribed though its
-- owner never unsubscribed. Clearing the address (erasure) stays possible.
create or replace function private.keep_contact_unsubscribed()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.unsubscribed_at is null then
    return new;
  end if;
  if new.unsubscribed_at is distinct from old.unsubscribed_at then
    perform private.fail(409, 'unsubscribe_is_permanent', 'A contact who unsubscribed stays unsubscribed');
  end if;
  if nullif(lower(btrim(new.email)), '') is not null
     and nullif(lower(btrim(new.email)), '') is distinct from old.email then
    perform private.fail(409, 'contact_unsubscribed',
      'The address of a contact who unsubscribed cannot be changed; add a new contact instead');
  end if;
  return new;
end
$$;

revoke all on function private.keep_contact_unsubscribed() from public, anon, authenticated;

drop trigger if exists contacts_keep_unsubscribed on public.contacts;

create trigger contacts_keep_unsubscribed
  before update of email, unsubscribed_at on public.contacts
  for each row execute function private.keep_contact_unsubscribed();

-- The address of a contact who is unsubscribed (by the unsubscribe link, or imported so by the
-- service) is suppressed for its workspace, so deleting the contact does not lift the
-- unsubscribe. Takes over a manual or bounce suppression of the address.
create or replace function private.suppress_unsubscribed_contact()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.unsubscribed_at is not null and new.email is not null then
    insert into public.email_suppressions as s (workspace_id, email, reason)
    values (new.workspace_id, new.email, 'unsubscribe')
    on conflict (workspace_id, email) do update
      set reason = excluded.reason, detail = excluded.detail
      where s.reason in ('manual', 'bounce');
  end if;
  return null;
end
$$;

revoke all on function private.suppress_unsubscribed_contact() from public, anon, authenticated;

drop trigger if exists contacts_suppress_unsubscribed on public.contacts;

create trigger contacts_suppress_unsubscribed
  after insert or update of email, unsubscribed_at on public.contacts
  for each row execute function private.suppress_unsubscribed_contact();

-- Contacts that unsubscribed before this migration; their unsubscribe takes over a manual or
-- bounce suppression of the address.
insert into public.email_suppressions as s (workspace_id, email, reason)
select c.workspace_id, c.email, 'unsubscribe'
from public.contacts c
where c.unsubscribed_at is not null and c.email is not null
on conflict (workspace_id, email) do update
  set reason = excluded.reason, detail = excluded.detail
  where s.reason in ('manual', 'bounce');

-- One-click unsubscribe (the edge verified the signed token): the contact is never mailed by
-- any campaign again, and its address stays suppressed even if the contact is deleted and
-- imported again; the unsubscribe takes over a manual or bounce suppression of the address.
-- Repeating it changes nothing.
create or replace function private.unsubscribe_contact(p_workspace_id uuid, p_contact_id uuid, p_recipient_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact public.contacts;
begin
  select * into v_contact from public.contacts c
  where c.id = p_contact_id and c.workspace_id = p_workspace_id for update;
  if v_contact.id is null then
    return 'unknown_contact';
  end if;
  update public.contacts set unsubscribed_at = coalesce(unsubscribed_at, now()) where id = p_contact_id;
  update public.campaign_recipients r
  set unsubscribed_at = coalesce(r.unsubscribed_at, now())
  where r.id = p_recipient_id and r.contact_id = p_contact_id;
  if v_contact.email is not null then
    insert into public.email_suppressions as s (workspace_id, email, reason)
    values (p_workspace_id, v_contact.email, 'unsubscribe')
    on conflict (workspace_id, email) do update
      set reason = excluded.reason, detail = excluded.detail
      where s.reason in ('manual', 'bounce');
  end if;
  return case when v_contact.unsubscribed_at is null then 'unsubscribed' else 'already_unsubscribed' end;
end
$$;

revoke all on function private.unsubscribe_contact(uuid, uuid, uuid) from public, anon, authenticated;

grant execute on function private.unsubscribe_contact(uuid, uuid, uuid) to service_role;

-- SES events --------------------------------------------------------------------------------------

-- Applies one stored SES event (eventType, or the older notificationType shape) to its row in
-- the send ledger, found by our recipient_id tag or else by SES's message id, using the
-- event's own times. Any event proves SES accepted the message, so a row not yet recorded as
-- sent becomes sent: a worker that crashed after SES accepted left it queued or sending (or it
-- was failed, skipped or cancelled later), and it must not go out twice. So event columns are
-- only ever set on sent rows. Permanent bounces and complaints suppress the addresses for the
-- recipient's workspace (a complaint takes over a manual or bounce suppression) and for the
-- whole platform (private.platform_suppressions). What is not a campaign email's event ends as 'ignored:...', never as
-- an error, so it cannot block the replay of others.
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

-- sending -----------------------------------------------------------------------------------------

-- Freezes the audience into the ledger (leaving out addresses suppressed for the workspace or
-- the whole platform), splits it across the variants by weight, reserves the
-- month's emails and starts sending. No user check here: callers do that.
create or replace function private.launch_campaign(p_campaign_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_rule jsonb;
  v_count integer;
begin
  select * into v_campaign from public.campaigns c where c.id = p_campaign_id for update;
  if v_campaign.status not in ('draft', 'scheduled') then
    perform private.fail(409, 'invalid_transition', format('A %s campaign cannot be started', v_campaign.status));
  end if;
  perform private.assert_campaign_ready(v_campaign);
  select s.rule into v_rule from public.segments s where s.id = v_campaign.segment_id;

  insert into public.campaign_recipients (campaign_id, workspace_id, variant_id, contact_id, email)
  with audience as (
    select c.id, c.email
    from public.contacts c
    where c.workspace_id = v_campaign.workspace_id
      and (cardinality(v_campaign.list_ids) = 0 or exists (
        select 1 from public.email_list_members m
        where m.contact_id = c.id and m.list_id = any (v_campaign.list_ids)))
      and (v_rule is null or c.id in (select private.segment_contact_ids(v_campaign.workspace_id, v_rule)))
      and c.email is not null
      and c.consent_state = 'granted'
      and c.unsubscribed_at is null
      and c.erased_at is null
      and not exists (select 1 from public.email_suppressions s
                      where s.workspace_id = c.workspace_id and s.email = c.email)
      and not exists (select 1 from private.platform_suppressions p
                      where p.email_hash = sha256(convert_to(lower(c.email), 'UTF8')))
  ),
  numbered as (
    select a.*, row_number() over (order by md5(a.id::text || p_campaign_id::text)) - 1 as n
    from audience a
  ),
  variants as (
    select v.id,
           sum(v.weight) over (order by v.name) - v.weight as low,
           sum(v.weight) over (order by v.name) as high,
           sum(v.weight) over () as total
    from public.campaign_variants v where v.campaign_id = p_campaign_id
  )
  select p_campaign_id, v_campaign.workspace_id, v.id, a.id, a.email
  from numbered a
  join variants v on a.n % v.total >= v.low and a.n % v.total < v.high;
  get diagnostics v_count = row_count;

  if v_count = 0 then
    perform private.fail(409, 'empty_audience', 'No contact in the audience may be mailed');
  end if;
  perform private.reserve_monthly_emails(v_campaign.workspace_id, v_count);
  update public.campaigns
  set status = 'sending', started_at = now(), recipients = v_count, error = null
  where id = p_campaign_id;
  -- Fresh statistics for the rows just added: without them the first claims plan a walk over
  -- the whole new audience (about 40 ms per claim at 10,000) instead of the due index.
  analyze public.campaign_recipients;
  return v_count;
end
$$;

revoke all on function private.launch_campaign(uuid) from public, anon, authenticated;

-- Claims up to p_limit due recipients of sending campaigns, no more than the bucket allows.
-- A campaign whose sender identity lost its verification (or was removed) waits instead of
-- having every remaining recipient refused by SES.
-- Recipients who may no longer be mailed (unsubscribed, erased, consent withdrawn, suppressed
-- for the workspace or the whole platform since the campaign started) are marked skipped instead of being handed out.
create or replace function private.claim_email_batch(p_limit integer, p_lease_seconds integer, p_per_second double precision)
returns table (
  recipient_id uuid, campaign_id uuid, workspace_id uuid, contact_id uuid, email text,
  attempts integer, subject text, html text, text_body text, from_name text, from_email text,
  reply_to text, contact jsonb
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tokens double precision;
  v_take integer;
  v_claimed integer;
begin
  insert into private.email_send_rate (id, tokens, refilled_at)
  values (true, greatest(1, p_per_second), clock_timestamp())
  on conflict (id) do nothing;
  update private.email_send_rate
  set tokens = least(greatest(1, p_per_second),
                     tokens + p_per_second * extract(epoch from clock_timestamp() - refilled_at)),
      refilled_at = clock_timestamp()
  where id
  returning tokens into v_tokens;
  v_take := least(p_limit, floor(v_tokens)::integer);
  if v_take <= 0 then
    return;
  end if;

  return query
  with picked as (
    select r.id,
           case
             when not (ct.email = r.email and ct.consent_state = 'granted'
                       and ct.unsubscribed_at is null and ct.erased_at is null
                       and not exists (select 1 from public.email_suppressions s
                                       where s.workspace_id = r.workspace_id and s.email = r.email)
                       and not exists (select 1 from private.platform_suppressions p
                                       where p.email_hash = sha256(convert_to(lower(r.email), 'UTF8'))))
               then 'skip'
             when r.attempts >= 8 then 'give_up'
             else 'send'
           end as verdict
    from public.campaign_recipients r
    join public.campaigns c on c.id = r.campaign_id and c.status = 'sending'
    join public.sender_identities si on si.id = c.sender_identity_id and si.verified
    join public.contacts ct on ct.id = r.contact_id
    where r.status in ('queued', 'sending')
      and r.next_attempt_at <= now()
      and (r.locked_until is null or r.locked_until < now())
    order by r.next_attempt_at
    limit v_take
    for update of r skip locked
  ),
  skipped as (
    update public.campaign_recipients r
    set status = 'skipped', locked_until = null,
        error = 'no longer mailable (unsubscribed, suppressed or without consent)'
    from picked k
    where k.id = r.id and k.verdict = 'skip'
  ),
  given_up as (
    -- Claimed eight times without an outcome: the worker died on it each time.
    update public.campaign_recipients r
    set status = 'failed', locked_until = null,
        error = 'gave up after 8 attempts that ended without an outcome'
    from picked k
    where k.id = r.id and k.verdict = 'give_up'
  ),
  claimed as (
    update public.campaign_recipients r
    set status = 'sending', attempts = r.attempts + 1,
        locked_until = now() + make_interval(secs => p_lease_seconds)
    from picked k
    where k.id = r.id and k.verdict = 'send'
    returning r.*
  )
  select cl.id, cl.campaign_id, cl.workspace_id, cl.contact_id, cl.email, cl.attempts,
         v.subject, v.html, v.text, c.from_name, c.from_email, c.reply_to,
         jsonb_build_object('email', ct.email, 'first_name', ct.first_name,
                            'last_name', ct.last_name, 'phone', ct.phone,
                            'attributes', ct.attributes)
  from claimed cl
  join public.campaign_variants v on v.id = cl.variant_id
  join public.campaigns c on c.id = cl.campaign_id
  join public.contacts ct on ct.id = cl.contact_id;
  get diagnostics v_claimed = row_count;
  update private.email_send_rate set tokens = tokens - v_claimed where id;
end
$$;

revoke all on function private.claim_email_batch(integer, integer, double precision) from public, anon, authenticated;

grant execute on function private.claim_email_batch(integer, integer, double precision) to service_role;

-- sender identities ------------------------------------------------------------------------------

-- Admins register an identity for their workspace (the edge then creates it in SES). One SES
-- account serves every workspace, so a name is refused when another workspace holds it, or
-- holds a domain it falls under (a verified domain covers its subdomains' and addresses'
-- mail). Squatting is bounded: an identity left unverified for 72 hours (when SES gives up
-- verifying a domain) blocks nobody, neither its own name (which goes to whoever registers it
-- next) nor the names under its domain, and a workspace may hold at most five unverified
-- identities at once.
create or replace function public.register_sender_identity(p_workspace_id uuid, p_identity text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_identity text := lower(btrim(p_identity));
  v_domain text := case when v_identity like '%@%' then split_part(v_identity, '@', 2) else v_identity end;
  v_id uuid;
begin
  perform private.lock_workspace_as(p_workspace_id, 'admin');
  if v_identity is null then
    perform private.fail(422, 'invalid_input', 'Not a domain or email address');
  end if;
  select s.id into v_id from public.sender_identities s
  where s.identity = v_identity and s.workspace_id = p_workspace_id;
  if v_id is not null then
    return v_id;
  end if;
  delete from public.sender_identities s
  where s.identity = v_identity and s.workspace_id <> p_workspace_id
    and not s.verified and s.created_at < now() - interval '72 hours';
  if exists (
    select 1 from public.sender_identities s
    where s.workspace_id <> p_workspace_id
      and (s.verified or s.created_at >= now() - interval '72 hours')
      and (s.identity = v_identity
           or (s.kind = 'domain' and (v_domain = s.identity or v_domain like '%.' || s.identity)))
  ) then
    perform private.fail(409, 'identity_taken', 'Another workspace has registered this sender or its domain');
  end if;
  if (select count(*) from public.sender_identities s
      where s.workspace_id = p_workspace_id and not s.verified) >= 5 then
    perform private.fail(409, 'too_many_unverified_identities',
      'Verify or remove one of your five unverified senders first');
  end if;
  insert into public.sender_identities (workspace_id, identity) values (p_workspace_id, v_identity)
  returning id into v_id;
  return v_id;
exception when check_violation then
  perform private.fail(422, 'invalid_input', 'Not a domain or email address');
  return null;
end
$$;

revoke all on function public.register_sender_identity(uuid, text) from public, anon, authenticated;

grant execute on function public.register_sender_identity(uuid, text) to authenticated;

comment on function public.register_sender_identity(uuid, text) is
  'Admins register a domain or address as a sender; 409 identity_taken while another workspace holds it verified or for less than 72 hours.';

-- campaign lifecycle ------------------------------------------------------------------------------

-- The allowed moves; anything else is refused whoever tries it. A campaign leaves draft or
-- scheduled for sending only by its launch, which sets started_at in the same update.
create or replace function private.guard_campaign_status()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status = old.status then
    return new;
  end if;
  if (old.status, new.status) not in (
    ('draft', 'scheduled'), ('draft', 'sending'), ('draft', 'cancelled'),
    ('scheduled', 'draft'), ('scheduled', 'sending'), ('scheduled', 'cancelled'),
    ('sending', 'paused'), ('sending', 'sent'), ('sending', 'cancelled'),
    ('paused', 'sending'), ('paused', 'cancelled')
  ) or (
    new.status = 'sending' and old.status in ('draft', 'scheduled')
    and (old.started_at is not null or new.started_at is null)
  ) then
    perform private.fail(409, 'invalid_transition',
      format('A %s campaign cannot become %s', old.status, new.status));
  end if;
  return new;
end
$$;

revoke all on function private.guard_campaign_status() from public, anon, authenticated;

-- The campaign's sender identity exists, is verified with SES and covers its from address.
create or replace function private.assert_campaign_sender(p_campaign public.campaigns)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_identity public.sender_identities;
begin
  select * into v_identity from public.sender_identities s where s.id = p_campaign.sender_identity_id;
  if v_identity.id is null or p_campaign.from_email is null then
    perform private.fail(422, 'campaign_incomplete', 'The campaign has no sender identity and from address');
  end if;
  if not v_identity.verified then
    perform private.fail(409, 'sender_not_verified', 'The sender identity is not verified with SES yet');
  end if;
  if p_campaign.from_email <> v_identity.identity
     and (v_identity.kind <> 'domain' or split_part(p_campaign.from_email, '@', 2) <> v_identity.identity) then
    perform private.fail(422, 'sender_mismatch', 'The from address is not covered by the sender identity');
  end if;
end
$$;

revoke all on function private.assert_campaign_sender(public.campaigns) from public, anon, authenticated;

-- Everything a campaign needs before it may go out, as one clear error each.
create or replace function private.assert_campaign_ready(p_campaign public.campaigns)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if not exists (select 1 from public.campaign_variants v where v.campaign_id = p_campaign.id) then
    perform private.fail(422, 'campaign_incomplete', 'The campaign has no content variant');
  end if;
  if cardinality(p_campaign.list_ids) = 0 and p_campaign.segment_id is null then
    perform private.fail(422, 'campaign_incomplete', 'The campaign has no audience (lists or a segment)');
  end if;
  if exists (select 1 from unnest(p_campaign.list_ids) l(id)
             where not exists (select 1 from public.email_lists e
                               where e.id = l.id and e.workspace_id = p_campaign.workspace_id)) then
    perform private.fail(422, 'campaign_incomplete', 'The campaign names a list that does not exist');
  end if;
  perform private.assert_campaign_sender(p_campaign);
end
$$;

revoke all on function private.assert_campaign_ready(public.campaigns) from public, anon, authenticated;

-- Refuses a lifecycle call made from a state it does not act on.
create or replace function private.require_campaign_status(p_campaign public.campaigns, p_allowed text[], p_action text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  if not p_campaign.status = any (p_allowed) then
    perform private.fail(409, 'invalid_transition',
      format('A %s campaign cannot be %s (only a %s one)', p_campaign.status, p_action,
             array_to_string(p_allowed, ' or ')));
  end if;
end
$$;

revoke all on function private.require_campaign_status(public.campaigns, text[], text) from public, anon, authenticated;

-- Members schedule a ready draft (or move a scheduled campaign) to a time in the future; the
-- cron starts it.
create or replace function public.schedule_campaign(p_campaign_id uuid, p_at timestamptz)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
begin
  perform private.require_campaign_status(v_campaign, array['draft', 'scheduled'], 'scheduled');
  if p_at is null or not isfinite(p_at) or p_at <= now() then
    perform private.fail(422, 'invalid_input', 'The scheduled time must be in the future');
  end if;
  perform private.assert_campaign_ready(v_campaign);
  update public.campaigns set status = 'scheduled', scheduled_at = p_at where id = p_campaign_id;
end
$$;

revoke all on function public.schedule_campaign(uuid, timestamptz) from public, anon, authenticated;

grant execute on function public.schedule_campaign(uuid, timestamptz) to authenticated;

comment on function public.schedule_campaign(uuid, timestamptz) is
  'Members schedule a ready draft (or reschedule a scheduled campaign) for a finite time in the future.';

-- Members move a scheduled campaign back to draft.
create or replace function public.unschedule_campaign(p_campaign_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
begin
  perform private.require_campaign_status(v_campaign, array['scheduled'], 'unscheduled');
  update public.campaigns set status = 'draft', scheduled_at = null where id = p_campaign_id;
end
$$;

revoke all on function public.unschedule_campaign(uuid) from public, anon, authenticated;

grant execute on function public.unschedule_campaign(uuid) to authenticated;

comment on function public.unschedule_campaign(uuid) is
  'Members move a scheduled campaign back to draft.';

-- Members pause a sending campaign: workers stop claiming its recipients.
create or replace function public.pause_campaign(p_campaign_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
begin
  perform private.require_campaign_status(v_campaign, array['sending'], 'paused');
  update public.campaigns set status = 'paused' where id = p_campaign_id;
end
$$;

revoke all on function public.pause_campaign(uuid) from public, anon, authenticated;

grant execute on function public.pause_campaign(uuid) to authenticated;

comment on function public.pause_campaign(uuid) is
  'Members pause a sending campaign.';

-- Members resume a paused campaign, whose audience was frozen and emails reserved when it
-- started; its sender must still be verified and cover the from address.
create or replace function public.resume_campaign(p_campaign_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
begin
  perform private.require_campaign_status(v_campaign, array['paused'], 'resumed');
  perform private.assert_campaign_sender(v_campaign);
  update public.campaigns set status = 'sending' where id = p_campaign_id;
end
$$;

revoke all on function public.resume_campaign(uuid) from public, anon, authenticated;

grant execute on function public.resume_campaign(uuid) to authenticated;

comment on function public.resume_campaign(uuid) is
  'Members resume a paused campaign (only a paused one; start_campaign starts drafts).';

-- Members cancel a campaign that has not ended: what has not gone out never will, and the
-- month's unused reservation is given back.
create or replace function public.cancel_campaign(p_campaign_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
  v_unsent integer;
begin
  perform private.require_campaign_status(
    v_campaign, array['draft', 'scheduled', 'sending', 'paused'], 'cancelled');
  update public.campaigns set status = 'cancelled', finished_at = now() where id = p_campaign_id;
  update public.campaign_recipients r
  set status = 'cancelled', locked_until = null
  where r.campaign_id = p_campaign_id and r.status = 'queued';
  get diagnostics v_unsent = row_count;
  if v_unsent > 0 and date_trunc('month', v_campaign.started_at) = date_trunc('month', now()) then
    update private.monthly_email_usage u
    set emails = greatest(0, u.emails - v_unsent)
    where u.workspace_id = v_campaign.workspace_id and u.month = date_trunc('month', now())::date;
  end if;
  return v_unsent;
end
$$;

revoke all on function public.cancel_campaign(uuid) from public, anon, authenticated;

grant execute on function public.cancel_campaign(uuid) to authenticated;

comment on function public.cancel_campaign(uuid) is
  'Members cancel a campaign that has not ended; answers how many recipients will not be mailed.';

-- Members copy a template of the campaign's workspace into a draft campaign as a variant:
-- later edits to the template do not change a campaign that was already composed.
create or replace function public.add_campaign_variant(
  p_campaign_id uuid, p_template_id uuid, p_name text default 'A', p_weight integer default 1
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
  v_id uuid;
begin
  if v_campaign.status <> 'draft' then
    perform private.fail(409, 'campaign_not_draft', 'Variants can only be added to a draft campaign');
  end if;
  if p_name is null or char_length(p_name) not between 1 and 50 then
    perform private.fail(422, 'invalid_input', 'A variant name has 1 to 50 characters');
  end if;
  if p_weight is null or p_weight not between 1 and 100 then
    perform private.fail(422, 'invalid_input', 'A variant weight is a whole number from 1 to 100');
  end if;
  if exists (select 1 from public.campaign_variants v
             where v.campaign_id = v_campaign.id and v.name = p_name) then
    perform private.fail(409, 'variant_exists', format('The campaign already has a variant %s', p_name));
  end if;
  insert into public.campaign_variants (campaign_id, workspace_id, name, subject, html, text, weight)
  select v_campaign.id, v_campaign.workspace_id, p_name, t.subject, t.html, t.text, p_weight
  from public.email_templates t
  where t.id = p_template_id and t.workspace_id = v_campaign.workspace_id
  returning id into v_id;
  if v_id is null then
    perform private.fail(404, 'template_not_found', 'Template not found');
  end if;
  return v_id;
end
$$;

revoke all on function public.add_campaign_variant(uuid, uuid, text, integer) from public, anon, authenticated;

grant execute on function public.add_campaign_variant(uuid, uuid, text, integer) to authenticated;

comment on function public.add_campaign_variant(uuid, uuid, text, integer) is
  'Members copy a template of the workspace into a draft campaign as a named, weighted variant.';

comment on table public.email_suppressions is
  'Addresses a workspace never mails. Admins add and lift manual ones and lift bounces; an '
  'unsubscribe or complaint takes over a manual or bounce row for its address and only the service '
  '(erasure) removes it.';
