-- Email hardening (issue 12, findings 3 and 8).
--
-- Unsubscribes and complaints are the recipient's decision, so they always win and no workspace
-- user can undo them: a complaint or unsubscribe replaces a manual or bounce suppression of the
-- same address (which admins may lift) instead of being dropped by `on conflict do nothing`;
-- such a suppression keeps its address and reason and is deleted only with its workspace; a
-- contact's unsubscribed_at, once set, stays; and every address an unsubscribed contact has (a
-- new one too) is suppressed, so the unsubscribe outlives edits and deletions of the contact.
--
-- Campaign lifecycle calls act only from the state they are named for (409 invalid_transition
-- otherwise): resume only a paused campaign (a draft or scheduled one would skip the sender
-- check, the frozen audience and the email reservation), whose sender must still be verified;
-- pause only a sending one, unschedule only a scheduled one, schedule a draft (or reschedule)
-- for a finite time, cancel only a campaign that has not ended. A campaign leaves draft or
-- scheduled for sending only through its launch, whoever updates it. add_campaign_variant
-- checks role, state, name and weight itself and answers each with its own error.

-- suppressions ----------------------------------------------------------------------------------

-- A complaint or unsubscribe for an address already suppressed by hand or by a bounce takes over
-- that row, so the address can no longer be lifted. Runs as the inserting role: users may only
-- insert manual suppressions and cannot update any, so this never widens what they can do.
create function private.upgrade_suppression_to_permanent()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.reason in ('complaint', 'unsubscribe') then
    update public.email_suppressions s
    set reason = new.reason, detail = new.detail
    where s.workspace_id = new.workspace_id and s.email = new.email
      and s.reason in ('manual', 'bounce');
    if found then
      return null;
    end if;
  end if;
  return new;
end
$$;

create trigger email_suppressions_upgrade_to_permanent
  before insert on public.email_suppressions
  for each row execute function private.upgrade_suppression_to_permanent();

-- A complaint or unsubscribe suppression keeps its address, workspace and permanence, whoever
-- tries; only deleting its workspace (a cascade, one trigger level down) removes it.
create function private.keep_permanent_suppressions()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.reason not in ('complaint', 'unsubscribe') then
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

create trigger email_suppressions_keep_permanent
  before update or delete on public.email_suppressions
  for each row execute function private.keep_permanent_suppressions();

-- contacts ----------------------------------------------------------------------------------------

-- Once a contact has unsubscribed, the time stays: nobody re-subscribes a contact by editing it.
create function private.keep_contact_unsubscribed()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.unsubscribed_at is not null and new.unsubscribed_at is distinct from old.unsubscribed_at then
    perform private.fail(409, 'unsubscribe_is_permanent', 'A contact who unsubscribed stays unsubscribed');
  end if;
  return new;
end
$$;

create trigger contacts_keep_unsubscribed
  before update of unsubscribed_at on public.contacts
  for each row execute function private.keep_contact_unsubscribed();

-- Every address an unsubscribed contact has, or is given later, is suppressed for its
-- workspace, so deleting the contact or changing its address does not lift the unsubscribe.
-- Runs after RLS accepted the row, so the workspace is one the writer may write.
create function private.suppress_unsubscribed_contact()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.unsubscribed_at is not null and new.email is not null then
    insert into public.email_suppressions (workspace_id, email, reason)
    values (new.workspace_id, new.email, 'unsubscribe')
    on conflict (workspace_id, email) do nothing;
  end if;
  return null;
end
$$;

create trigger contacts_suppress_unsubscribed
  after insert or update of email, unsubscribed_at on public.contacts
  for each row execute function private.suppress_unsubscribed_contact();

-- Contacts that unsubscribed before this migration, and suppressions that an unsubscribe met as
-- manual or bounce (the trigger above upgrades those).
insert into public.email_suppressions (workspace_id, email, reason)
select c.workspace_id, c.email, 'unsubscribe'
from public.contacts c
where c.unsubscribed_at is not null and c.email is not null
on conflict (workspace_id, email) do nothing;

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
create function private.assert_campaign_sender(p_campaign public.campaigns)
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
create function private.require_campaign_status(p_campaign public.campaigns, p_allowed text[], p_action text)
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

-- trigger functions -------------------------------------------------------------------------------

revoke all on function private.upgrade_suppression_to_permanent() from public, anon, authenticated;

revoke all on function private.keep_permanent_suppressions() from public, anon, authenticated;

revoke all on function private.keep_contact_unsubscribed() from public, anon, authenticated;

revoke all on function private.suppress_unsubscribed_contact() from public, anon, authenticated;

comment on table public.email_suppressions is
  'Addresses a workspace never mails. Admins add and lift manual ones and lift bounces; an '
  'unsubscribe or complaint takes over any earlier row for its address and is never lifted.';
