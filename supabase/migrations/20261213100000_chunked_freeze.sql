-- Freezing a campaign's audience in chunks (issue 18): a million recipients must not be one
-- statement that holds a transaction open for a minute. Starting a campaign reserves the
-- audience's bound (its lists' members, or the workspace's contacts: read from an index, not
-- by evaluating the audience) against the month's emails (402 plan_limit_reached, nothing
-- frozen, as before), marks it sending and freezes the first chunk (50,000 contacts, in contact
-- id order) in the same transaction (409 empty_audience when nobody in it may be mailed), so a
-- campaign of up to a chunk is frozen whole at its start, as before, and answers its exact
-- count; a larger one answers the bound until it is frozen. The send cron freezes the rest a chunk per transaction
-- (private.freeze_campaign_chunk), while the rows already frozen are being sent; other
-- workspaces' claims never wait on it. The audience stays the one of the start: contacts
-- created, or added to the campaign's lists, after it are left out, and no more rows are frozen
-- than were reserved; what the reservation held beyond the rows frozen goes back to the month's
-- allowance when freezing ends. A campaign is not sent while it is still freezing.
--
-- Variants split the audience by weight exactly as before (the n-th contact of the audience,
-- counted across chunks, takes variant n mod the weights' total); the order is the contacts'
-- random ids instead of a hash of them.
--
-- Also: the index on (campaign_id, status) goes; the per-campaign due index answers every
-- question it did (finishing, cancelling), and each claim and outcome updated it for every row.

drop index public.campaign_recipients_campaign_status_idx;

alter table public.campaigns add column freezing boolean not null default false;

alter table public.campaigns add column frozen integer not null default 0;

alter table public.campaigns add column freeze_after uuid;

comment on column public.campaigns.freezing is
  'True while the audience is still being frozen into campaign_recipients (a chunk at a time); such a campaign is not sent yet.';

comment on column public.campaigns.frozen is
  'Recipients frozen so far (recipients is the audience counted at the start).';

create index campaigns_freezing_idx on public.campaigns (started_at) where freezing;

create index contacts_workspace_id_id_idx on public.contacts (workspace_id, id);

-- The campaign's audience as of its start, in contact id order after the contact `p_after`, at
-- most p_limit of it (null: all): contacts with an email, consent as the workspace's rule reads
-- it, not unsubscribed, erased or suppressed for the workspace or the platform, in the
-- campaign's lists (when it has any) and segment, created and added to those lists no later
-- than the campaign started. Walks the workspace's contacts in id order (contacts_workspace_id_id_idx),
-- so each chunk reads only its own part.
create function private.campaign_audience(
  p_campaign public.campaigns, p_rule jsonb, p_consent_rule text, p_after uuid, p_limit integer
)
returns table (id uuid, email text)
language sql
stable
security definer
set search_path = ''
as $$
  select c.id, c.email
  from public.contacts c
  where c.workspace_id = p_campaign.workspace_id
    and c.id > coalesce(p_after, '00000000-0000-0000-0000-000000000000'::uuid)
    and c.created_at <= coalesce(p_campaign.started_at, now())
    and (cardinality(p_campaign.list_ids) = 0 or exists (
      select 1 from public.email_list_members m
      where m.contact_id = c.id and m.list_id = any (p_campaign.list_ids)
        and m.added_at <= coalesce(p_campaign.started_at, now())))
    and (p_rule is null or c.id in (select private.segment_contact_ids(p_campaign.workspace_id, p_rule)))
    and c.email is not null
    and private.may_market(p_consent_rule, c.consent_state, c.attributes)
    and c.unsubscribed_at is null
    and c.erased_at is null
    and not exists (select 1 from public.email_suppressions s
                    where s.workspace_id = c.workspace_id and s.email = c.email)
    and not exists (select 1 from private.platform_suppressions p
                    where p.email_hash = sha256(convert_to(lower(c.email), 'UTF8')))
  order by c.id
  limit p_limit
$$;

revoke all on function private.campaign_audience(public.campaigns, jsonb, text, uuid, integer) from public, anon, authenticated;

-- Freezes the next chunk of a freezing campaign's audience (at most p_limit contacts, never past
-- the count reserved); when the audience is exhausted, freezing ends, the reservation's
-- remainder goes back and the ledger's statistics are refreshed. A campaign cancelled while
-- freezing stops freezing too. Answers the rows frozen by this call.
create function private.freeze_campaign_chunk(p_campaign_id uuid, p_limit integer)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_rule jsonb;
  v_consent_rule text;
  v_take integer;
  v_read integer;
  v_frozen integer;
  v_last uuid;
  v_unused integer;
  v_freezing boolean;
begin
  select * into v_campaign from public.campaigns c where c.id = p_campaign_id for update;
  if v_campaign.id is null or not v_campaign.freezing then
    return 0;
  end if;
  v_take := least(p_limit, v_campaign.recipients - v_campaign.frozen);
  if v_campaign.status in ('sending', 'paused') and v_take > 0 then
    select s.rule into v_rule from public.segments s where s.id = v_campaign.segment_id;
    select s.marketing_consent into v_consent_rule
    from public.workspace_privacy_settings s where s.workspace_id = v_campaign.workspace_id;
    with chunk as (
      select a.id, a.email, v_campaign.frozen + row_number() over (order by a.id) - 1 as n
      from private.campaign_audience(v_campaign, v_rule, v_consent_rule, v_campaign.freeze_after, v_take) a
    ),
    variants as (
      select w.id,
             sum(w.weight) over (order by w.name) - w.weight as low,
             sum(w.weight) over (order by w.name) as high,
             sum(w.weight) over () as total
      from public.campaign_variants w where w.campaign_id = p_campaign_id
    ),
    inserted as (
      insert into public.campaign_recipients (campaign_id, workspace_id, variant_id, contact_id, email)
      select p_campaign_id, v_campaign.workspace_id, v.id, a.id, a.email
      from chunk a
      join variants v on a.n % v.total >= v.low and a.n % v.total < v.high
      on conflict (campaign_id, contact_id) where flow_run_step_id is null do nothing
      returning 1
    )
    select (select count(*) from chunk), (select count(*) from inserted),
           (select ch.id from chunk ch order by ch.id desc limit 1)
    into v_read, v_frozen, v_last;
  else
    v_read := 0;
    v_frozen := 0;
  end if;

  update public.campaigns
  set frozen = frozen + v_frozen, freeze_after = coalesce(v_last, freeze_after),
      freezing = v_read = v_take and v_take > 0 and v_campaign.status in ('sending', 'paused')
                 and frozen + v_frozen < recipients
  where id = p_campaign_id
  returning recipients - frozen, freezing into v_unused, v_freezing;
  if not v_freezing then
    -- Done (or cancelled): what was reserved and not frozen goes back to the month.
    if v_unused > 0 and date_trunc('month', v_campaign.started_at) = date_trunc('month', now()) then
      update private.monthly_email_usage u
      set emails = greatest(0, u.emails - v_unused)
      where u.workspace_id = v_campaign.workspace_id and u.month = date_trunc('month', now())::date;
    end if;
    update public.campaigns set recipients = frozen where id = p_campaign_id;
  end if;
  return v_frozen;
end
$$;

revoke all on function private.freeze_campaign_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.freeze_campaign_chunk(uuid, integer) to service_role;

-- The freezing campaigns, oldest first, for the send cron to continue.
create function private.freezing_campaigns()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select c.id from public.campaigns c where c.freezing order by c.started_at
$$;

revoke all on function private.freezing_campaigns() from public, anon, authenticated;

grant execute on function private.freezing_campaigns() to service_role;

-- As in 20261204092000_consents.sql (consent through the workspace's rule, suppressions for the
-- workspace and the platform, variants by weight), counted first and frozen in chunks: the
-- first chunk here, the rest by the send cron. No user check here: callers do that.
create or replace function private.launch_campaign(p_campaign_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_count integer;
  v_frozen integer;
  v_freezing boolean;
begin
  select * into v_campaign from public.campaigns c where c.id = p_campaign_id for update;
  if v_campaign.status not in ('draft', 'scheduled') then
    perform private.fail(409, 'invalid_transition', format('A %s campaign cannot be started', v_campaign.status));
  end if;
  perform private.assert_campaign_ready(v_campaign);
  v_campaign.started_at := now();
  -- The reservation is the audience's bound (its lists' members, or the workspace's contacts),
  -- known at once from an index; what the frozen audience does not use goes back when freezing
  -- ends, which for an audience of up to a chunk is before this returns.
  if cardinality(v_campaign.list_ids) > 0 then
    select count(distinct m.contact_id) into v_count
    from public.email_list_members m where m.list_id = any (v_campaign.list_ids);
  else
    select count(*) into v_count
    from public.contacts c where c.workspace_id = v_campaign.workspace_id;
  end if;
  if v_count = 0 then
    perform private.fail(409, 'empty_audience', 'No contact in the audience may be mailed');
  end if;
  perform private.reserve_monthly_emails(v_campaign.workspace_id, v_count);
  update public.campaigns
  set status = 'sending', started_at = v_campaign.started_at, recipients = v_count, error = null,
      freezing = true, frozen = 0, freeze_after = null
  where id = p_campaign_id;
  perform private.freeze_campaign_chunk(
    p_campaign_id, coalesce(nullif(current_setting('growthbase.freeze_chunk_rows', true), '')::integer, 50000));
  select c.recipients, c.frozen, c.freezing into v_count, v_frozen, v_freezing
  from public.campaigns c where c.id = p_campaign_id;
  if v_frozen = 0 and not v_freezing then
    perform private.fail(409, 'empty_audience', 'No contact in the audience may be mailed');
  end if;
  -- Fresh statistics for the rows just added: without them the first claims may plan a walk
  -- over the whole new audience instead of the due index.
  analyze public.campaign_recipients;
  return v_count;
end
$$;

revoke all on function private.launch_campaign(uuid) from public, anon, authenticated;

-- Marks sending campaigns with nothing left to send, and whose audience is frozen whole, as
-- sent.
create or replace function private.finish_sent_campaigns()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_finished integer;
begin
  update public.campaigns c
  set status = 'sent', finished_at = now()
  where c.status = 'sending' and not c.freezing
    and not exists (select 1 from public.campaign_recipients r
                    where r.campaign_id = c.id and r.status in ('queued', 'sending'));
  get diagnostics v_finished = row_count;
  return v_finished;
end
$$;

revoke all on function private.finish_sent_campaigns() from public, anon, authenticated;

grant execute on function private.finish_sent_campaigns() to service_role;
