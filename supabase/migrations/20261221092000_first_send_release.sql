-- A capped first send to a fresh import (20261219101000_first_send_cap.sql) held the contacts
-- beyond its probe for a fixed 24 hours. Now the hold ends as soon as the probe has answered:
-- once every probe row is final (not queued or sending) and every sent one has an outcome from
-- SES (delivered, bounced or complained), and the probe's permanent bounces (suppression-list
-- hits apart, as SES counts them) are below the workspace's warning bounce rate, the held rows
-- are due at once. A probe that bounces at or over that rate keeps the rest held to the end of
-- their 24 hours (the guardrails pause the workspace if the bounces reach the pause level), and
-- the owner and admins are told once, with the figures. The send cron judges the campaigns
-- with held rows on each run (private.release_first_sends).

alter table public.campaign_recipients add column first_send text check (first_send in ('probe', 'held'));

comment on column public.campaign_recipients.first_send is
  'For a freshly imported, never-mailed contact: probe (sent first, up to 1,000 per campaign) or held (waits for the probe''s outcomes); null otherwise.';

alter table public.campaigns add column first_send_verdict text check (first_send_verdict in ('released', 'held'));

alter table public.campaigns add column first_send_verdict_at timestamptz;

comment on column public.campaigns.first_send_verdict is
  'What the probe of its first send to a fresh import decided: released (bounces below the warning rate: the held contacts went at once) or held (they wait out their 24 hours); null while undecided or without a probe.';

comment on column public.campaigns.first_send_verdict_at is
  'When first_send_verdict was reached.';

-- The held rows of each campaign, found without walking its ledger.
create index campaign_recipients_first_send_held_idx on public.campaign_recipients (campaign_id, next_attempt_at)
  where first_send = 'held' and status = 'queued';

-- The probe's rows of a campaign, counted without walking its ledger.
create index campaign_recipients_first_send_probe_idx on public.campaign_recipients (campaign_id)
  where first_send = 'probe';

-- As in 20261219101000_first_send_cap.sql (unproven contacts beyond the campaign's 1,000 wait
-- 24 hours), and: each unproven row is marked as the probe's or as held.
create or replace function private.cap_first_send()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  with unproven as (
    select n.id, n.campaign_id,
           row_number() over (partition by n.campaign_id order by n.contact_id) as rank
    from frozen n
    join public.contacts k on k.id = n.contact_id
    where n.flow_run_step_id is null
      and k.imported_at > now() - interval '30 days'
      and not exists (select 1 from public.campaign_recipients r
                      where r.contact_id = n.contact_id and r.sent_at is not null)
  ),
  probes as (
    select c.id, c.unproven_probed as before, u.total
    from public.campaigns c
    join (select campaign_id, count(*) as total from unproven group by campaign_id) u
      on u.campaign_id = c.id
  ),
  counted as (
    update public.campaigns c
    set unproven_probed = least(1000, p.before + p.total)
    from probes p
    where c.id = p.id
  )
  update public.campaign_recipients r
  set first_send = case when p.before + u.rank > 1000 then 'held' else 'probe' end,
      next_attempt_at = case when p.before + u.rank > 1000 then now() + interval '24 hours'
                             else r.next_attempt_at end
  from unproven u
  join probes p on p.id = u.campaign_id
  where r.id = u.id;
  return null;
end
$$;

revoke all on function private.cap_first_send() from public, anon, authenticated;

-- For the send cron: judges every sending campaign whose held rows still wait. A campaign
-- already released has later-frozen held rows released too. Answers how many rows it released.
create function private.release_first_sends()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign record;
  v_limits public.deliverability_settings;
  v_released integer := 0;
  v_rows integer;
begin
  for v_campaign in
    select c.id, c.workspace_id, c.name, c.first_send_verdict, p.probes, p.unanswered, p.sends, p.bounces
    from public.campaigns c
    cross join lateral (
      select count(*) as probes,
             count(*) filter (where r.status in ('queued', 'sending')
                                 or (r.status = 'sent' and r.delivered_at is null
                                     and r.bounced_at is null and r.complained_at is null)) as unanswered,
             count(*) filter (where r.status = 'sent') as sends,
             count(*) filter (where r.bounce_type = 'Permanent'
                                and r.bounce_subtype is distinct from 'Suppressed'
                                and r.bounce_subtype is distinct from 'OnAccountSuppressionList') as bounces
      from public.campaign_recipients r
      where r.campaign_id = c.id and r.first_send = 'probe'
    ) p
    where c.status = 'sending' and c.unproven_probed > 0
      and c.first_send_verdict is distinct from 'held'
      and exists (select 1 from public.campaign_recipients h
                  where h.campaign_id = c.id and h.first_send = 'held' and h.status = 'queued'
                    and h.next_attempt_at > now())
    order by c.id
    for update of c
  loop
    if v_campaign.first_send_verdict is null and (v_campaign.unanswered > 0 or v_campaign.sends = 0) then
      continue;
    end if;
    v_limits := private.deliverability_thresholds(v_campaign.workspace_id);
    if v_campaign.first_send_verdict is null
       and v_campaign.bounces::numeric / v_campaign.sends >= v_limits.warn_bounce_rate then
      update public.campaigns
      set first_send_verdict = 'held', first_send_verdict_at = now()
      where id = v_campaign.id;
      perform private.notify_members_at_least(
        v_campaign.workspace_id, 'admin', 'sending.first_send_held',
        format('Campaign "%s": fresh import held', v_campaign.name),
        format('%s of the %s freshly imported contacts sent first bounced (%s%%; the limit is %s%%). The rest of them stay held for 24 hours from the start, then go out unless the guardrails pause sending; cancel the campaign or remove the bad contacts to stop them.',
               v_campaign.bounces, v_campaign.sends,
               round(100 * v_campaign.bounces::numeric / v_campaign.sends, 2),
               round(100 * v_limits.warn_bounce_rate, 2)),
        jsonb_build_object('campaign_id', v_campaign.id, 'sends', v_campaign.sends,
                           'bounces', v_campaign.bounces));
      continue;
    end if;
    update public.campaign_recipients r
    set next_attempt_at = now()
    where r.campaign_id = v_campaign.id and r.first_send = 'held' and r.status = 'queued'
      and r.next_attempt_at > now();
    get diagnostics v_rows = row_count;
    v_released := v_released + v_rows;
    update public.campaigns
    set first_send_verdict = 'released', first_send_verdict_at = coalesce(first_send_verdict_at, now())
    where id = v_campaign.id;
  end loop;
  return v_released;
end
$$;

revoke all on function private.release_first_sends() from public, anon, authenticated;

grant execute on function private.release_first_sends() to service_role;

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values
  ('public', 'campaign_recipients', 'first_send', 'none', 'not_personal', 'probe or held'),
  ('public', 'campaigns', 'first_send_verdict', 'none', 'not_personal', 'released or held');
