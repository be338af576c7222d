-- Rates over eligible sends. SES does not deliver a message to an address on a suppression list
-- (bounce subtype Suppressed or OnAccountSuppressionList): such a message is no eligible send.
-- Those hits were already left out of the permanent bounces (private.deliverability_counts keeps
-- them apart, in suppressed_bounces) but were still counted among the sends. Now they are left
-- out of both: every rate and every volume threshold reads eligible sends = sends -
-- suppressed_bounces. private.deliverability_window counts its rolling window ("the last 10,000
-- sends") in eligible sends; check_deliverability, acknowledge_sending_pause,
-- analytics.deliverability_stats (its `sends` column) and analytics.platform_deliverability_stats
-- read the window and so follow. private.check_platform_brake and private.warmup_cap read the
-- counts themselves and are redefined here, as is private.release_first_sends, whose probe's
-- bounce rate reads the ledger. The Gmail unsubscribe spike (gmail_sends, in
-- private.count_deliverability) is left as it was: the counts do not tell which suppression-list
-- hits were Gmail addresses.
-- A hit is counted in the hour its bounce arrives, its send in the hour it was sent: an hour's
-- eligible sends can be negative when the two fall apart; the windows sum hours, so only a hit
-- whose send fell just outside a window shifts that window by one.

-- As in 20261210092000_deliverability_guardrails.sql, over eligible sends: the counts of one
-- workspace (or one of its identities) in both windows, from `p_since` on: `rolling` is the
-- larger of the last 7 days or the last 10,000 eligible sends (at most 90 days back), `day` the
-- last 24 hours.
create or replace function private.deliverability_window(p_workspace_id uuid, p_sender_identity_id uuid, p_since timestamptz default null)
returns table (time_window text, sends bigint, bounces bigint, complaints bigint, transient_bounces bigint,
               unsubscribes bigint, gmail_unsubscribes bigint)
language sql
stable
security definer
set search_path = ''
as $$
  with hours as (
    select d.hour, sum(d.sends - d.suppressed_bounces) as sends, sum(d.bounces) as bounces,
           sum(d.complaints) as complaints, sum(d.transient_bounces) as transient_bounces,
           sum(d.unsubscribes) as unsubscribes, sum(d.gmail_unsubscribes) as gmail_unsubscribes
    from private.deliverability_counts d
    where d.workspace_id = p_workspace_id
      and (p_sender_identity_id is null or d.sender_identity_id = p_sender_identity_id)
      and d.hour >= now() - interval '90 days'
      and (p_since is null or d.hour >= p_since)
    group by d.hour
  ),
  ordered as (
    select h.*, coalesce(sum(h.sends) over (order by h.hour desc rows between unbounded preceding and 1 preceding), 0) as later_sends
    from hours h
  )
  select w.time_window, coalesce(sum(o.sends), 0)::bigint, coalesce(sum(o.bounces), 0)::bigint,
         coalesce(sum(o.complaints), 0)::bigint, coalesce(sum(o.transient_bounces), 0)::bigint,
         coalesce(sum(o.unsubscribes), 0)::bigint, coalesce(sum(o.gmail_unsubscribes), 0)::bigint
  from (values ('rolling'), ('day')) as w (time_window)
  left join ordered o on case w.time_window
    when 'rolling' then o.hour >= now() - interval '7 days' or o.later_sends < 10000
    else o.hour >= date_trunc('hour', now() - interval '24 hours')
  end
  group by w.time_window
$$;

revoke all on function private.deliverability_window(uuid, uuid, timestamptz) from public, anon, authenticated;

-- As in 20261210092000_deliverability_guardrails.sql, over eligible sends: engages the brake when
-- the platform's own 24-hour totals (every workspace) reach SES's review levels (5% bounces, 0.1%
-- complaints) over at least 5,000 eligible sends. Answers whether it is engaged.
create or replace function private.check_platform_brake()
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_sends bigint;
  v_bounces bigint;
  v_complaints bigint;
begin
  select coalesce(sum(d.sends - d.suppressed_bounces), 0), coalesce(sum(d.bounces), 0),
         coalesce(sum(d.complaints), 0)
  into v_sends, v_bounces, v_complaints
  from private.deliverability_counts d
  where d.hour >= date_trunc('hour', now() - interval '24 hours');
  if v_sends >= 5000 and (v_bounces::numeric / v_sends >= 0.05 or v_complaints::numeric / v_sends >= 0.001)
     and not (select b.engaged from private.platform_brake b) then
    perform private.engage_platform_brake(format(
      'Platform totals over the last 24 hours: %s permanent bounces and %s complaints in %s sends (suppression-list hits left out)',
      v_bounces, v_complaints, v_sends));
  end if;
  return (select b.engaged from private.platform_brake b);
end
$$;

revoke all on function private.check_platform_brake() from public, anon, authenticated;

grant execute on function private.check_platform_brake() to service_role;

-- As in 20261221093000_sender_warmup.sql, yesterday's rates over eligible sends: the identity's
-- cap on a UTC day: the day's own once counted; else from the last day counted before it (the
-- day before: ×1.5 when its cap was reached with clean rates, ÷1.5 after a warning; an older
-- one: unchanged); 200 for the first.
create or replace function private.warmup_cap(p_sender_identity_id uuid, p_day date)
returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    t.cap,
    case
      when p.day is null then 200
      when p.day < p_day - 1 then p.cap
      when exists (select 1 from private.deliverability_warnings w
                   where w.workspace_id = p.workspace_id
                     and (w.sender_identity_id is null or w.sender_identity_id = p_sender_identity_id)
                     and w.warned_at >= p.day::timestamp at time zone 'UTC')
        then greatest(200, floor(p.cap / 1.5)::integer)
      when p.claimed >= p.cap
           and coalesce(r.bounces::numeric / nullif(r.sends, 0), 0) < 0.02
           and coalesce(r.complaints::numeric / nullif(r.sends, 0), 0) < 0.0005
        then ceil(p.cap * 1.5)::integer
      else p.cap
    end)
  from (select 1) one
  left join private.sender_warmup_days t on t.sender_identity_id = p_sender_identity_id and t.day = p_day
  left join lateral (
    select d.* from private.sender_warmup_days d
    where d.sender_identity_id = p_sender_identity_id and d.day < p_day
    order by d.day desc limit 1
  ) p on true
  left join lateral (
    select sum(c.sends - c.suppressed_bounces) as sends, sum(c.bounces) as bounces,
           sum(c.complaints) as complaints
    from private.deliverability_counts c
    where c.workspace_id = p.workspace_id and c.sender_identity_id = p_sender_identity_id
      and c.hour >= p.day::timestamp at time zone 'UTC'
      and c.hour < (p.day + 1)::timestamp at time zone 'UTC'
  ) r on true
$$;

revoke all on function private.warmup_cap(uuid, date) from public, anon, authenticated;

grant execute on function private.warmup_cap(uuid, date) to service_role;

-- As in 20261221092000_first_send_release.sql, the probe's bounce rate over eligible sends (its
-- rows sent, less its suppression-list hits): for the send cron, judges every sending campaign
-- whose held rows still wait. A campaign already released has later-frozen held rows released
-- too. A probe that reached only suppressed addresses has no eligible send and tells nothing:
-- its held rows wait out their 24 hours. Answers how many rows it released.
create or replace function private.release_first_sends()
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
             count(*) filter (where r.status = 'sent'
                                and (r.bounce_type is distinct from 'Permanent'
                                     or r.bounce_subtype is null
                                     or r.bounce_subtype not in ('Suppressed', 'OnAccountSuppressionList'))) as sends,
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

comment on function analytics.deliverability_stats() is
  'Bounce and complaint rates per workspace and sender identity (rolling: 7 days or 10,000 eligible sends; day: 24 hours) of the workspaces the caller may see; sends are eligible sends (suppression-list hits left out).';

comment on view analytics.deliverability is
  'Rolling (7 days or the last 10,000 eligible sends) and 24-hour bounce and complaint rates per workspace (sender_identity_id null) and per sender identity, with their standing: low_volume, ok, warning, over_pause; paused while a pause is active. sends are eligible sends: suppression-list hits are left out of sends and bounces alike.';

comment on function analytics.platform_deliverability_stats() is
  'Every workspace together against SES''s limits (over eligible sends: suppression-list hits left out), and the platform brake; analysts only.';
