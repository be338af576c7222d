-- Deliverability guardrails (issue 18): rolling bounce and complaint rates per workspace and per
-- sender identity, kept as events arrive; thresholds with safe defaults that warn and pause; a
-- pause stops every sending campaign of the workspace (or identity) until an admin
-- acknowledges it; a platform-wide brake no tenant can lift.
--
-- Rates are computed the way SES computes them: permanent bounces ÷ sends, leaving out bounces
-- from a suppression list (SES's bounceSubType Suppressed or OnAccountSuppressionList: the
-- message never left), and complaints ÷ sends, over the larger of the last 7 days or the last
-- 10,000 sends (going back at most 90 days), and over the last 24 hours for spikes. The counts
-- are kept per hour (private.deliverability_counts) by a statement trigger on the send ledger
-- that reads only the rows each statement changed: a row becoming sent, a first permanent
-- bounce, a first complaint, an unsubscribe. Reading a rate sums at most 90 days of hours; no
-- read ever scans the ledger or the events.
--
-- Thresholds (public.deliverability_settings, per workspace; admins may change them within
-- bounds): warn at a bounce rate of 2% or a complaint rate of 0.08%, pause at 5% or 0.1% (SES
-- reviews an account at 5% / 0.1% and Gmail and Yahoo reject bulk senders above 0.3%
-- complaints, so a pause can only be set lower, never higher), once the window holds at least
-- 500 sends (so ten sends cannot trip it). A rate is checked when a bounce or complaint is
-- counted (sends alone only lower it).
--
-- A pause (public.sending_pauses) names its scope (the workspace, or one sender identity), the
-- rate and the figures that tripped it. Every sending campaign in its scope becomes paused with
-- the reason in its `error`; campaigns started or resumed later in that scope are paused when
-- a worker next claims; the owner and admins get an in-app notification
-- (private.notify_members_at_least, kind `sending.paused`) and an email (queued in
-- private.deliverability_emails for the send cron). Only an admin lifts it, by acknowledging
-- it (public.acknowledge_sending_pause): who and when are recorded, its campaigns resume, and
-- the rates that decide the next pause count from the next full hour on (a paused scope sends
-- nothing, so its rates could never fall back otherwise); the answer says whether the rates
-- were still over the limit.
--
-- The platform brake (private.platform_brake) stops every claim of every workspace. The
-- service engages it by hand or it engages itself when the platform's own totals (every
-- workspace together) pass the pause thresholds over at least 5,000 sends; only the service
-- releases it.

-- settings ----------------------------------------------------------------------------------------

create table public.deliverability_settings (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  warn_bounce_rate numeric(6, 5) not null default 0.02 check (warn_bounce_rate between 0.005 and 0.05),
  pause_bounce_rate numeric(6, 5) not null default 0.05 check (pause_bounce_rate between 0.01 and 0.05),
  warn_complaint_rate numeric(6, 5) not null default 0.0008 check (warn_complaint_rate between 0.0001 and 0.001),
  pause_complaint_rate numeric(6, 5) not null default 0.001 check (pause_complaint_rate between 0.0002 and 0.001),
  min_volume integer not null default 500 check (min_volume between 100 and 100000),
  updated_at timestamptz not null default now(),
  check (warn_bounce_rate <= pause_bounce_rate),
  check (warn_complaint_rate <= pause_complaint_rate)
);

comment on table public.deliverability_settings is
  'Per workspace: bounce and complaint rates that warn and that pause sending, and the sends a window needs before they apply. Defaults when absent; pauses can only be set at or below SES''s review levels.';

-- the counts --------------------------------------------------------------------------------------

create table private.deliverability_counts (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  -- The campaign's sender identity when counted (null: none); kept after the identity goes.
  sender_identity_id uuid,
  hour timestamptz not null,
  sends integer not null default 0,
  bounces integer not null default 0,
  suppressed_bounces integer not null default 0,
  transient_bounces integer not null default 0,
  complaints integer not null default 0,
  unsubscribes integer not null default 0,
  gmail_unsubscribes integer not null default 0,
  unique nulls not distinct (workspace_id, sender_identity_id, hour)
);

comment on table private.deliverability_counts is
  'Per workspace, sender identity and hour: sends, permanent bounces (suppression-list hits apart), transient bounces, complaints and unsubscribes (Gmail''s apart), kept by a trigger on the send ledger.';

create index deliverability_counts_hour_idx on private.deliverability_counts (hour);

-- What the trigger last told the workspace, so a warning goes out at most once a day.
create table private.deliverability_warnings (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  sender_identity_id uuid,
  warned_at timestamptz not null,
  unique nulls not distinct (workspace_id, sender_identity_id)
);

comment on table private.deliverability_warnings is
  'When a workspace (or one of its identities) was last warned of a rate over the warning threshold.';

-- pauses ------------------------------------------------------------------------------------------

create table public.sending_pauses (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  -- Null: the whole workspace; else that identity's campaigns.
  sender_identity_id uuid references public.sender_identities (id) on delete cascade,
  reason text not null check (reason in ('bounce_rate', 'complaint_rate')),
  detail text not null check (char_length(detail) <= 1000),
  metrics jsonb not null check (jsonb_typeof(metrics) = 'object'),
  created_at timestamptz not null default now(),
  acknowledged_by uuid references auth.users (id) on delete set null,
  acknowledged_at timestamptz,
  -- The rates when it was acknowledged (they could not fall while nothing was sent).
  metrics_at_acknowledgement jsonb
);

comment on table public.sending_pauses is
  'Sending paused by the guardrails for a workspace or one sender identity: why, with the figures; lifted only by an admin''s recorded acknowledgement.';

create unique index sending_pauses_one_active_idx on public.sending_pauses (workspace_id, sender_identity_id)
  nulls not distinct where acknowledged_at is null;

create index sending_pauses_workspace_id_idx on public.sending_pauses (workspace_id, created_at desc);

create index sending_pauses_sender_identity_id_idx on public.sending_pauses (sender_identity_id);

create index sending_pauses_acknowledged_by_idx on public.sending_pauses (acknowledged_by);

alter table public.campaigns add column paused_by uuid references public.sending_pauses (id) on delete set null;

comment on column public.campaigns.paused_by is
  'The guardrail pause that stopped this campaign; acknowledging it resumes the campaign.';

create index campaigns_paused_by_idx on public.campaigns (paused_by) where paused_by is not null;

alter table public.campaign_recipients add column bounce_subtype text check (char_length(bounce_subtype) <= 50);

comment on column public.campaign_recipients.bounce_subtype is
  'SES''s bounceSubType of the first bounce that decided the row''s bounce_type.';

-- The brake: one row, engaged or not.
create table private.platform_brake (
  id boolean primary key default true check (id),
  engaged boolean not null default false,
  reason text check (char_length(reason) <= 1000),
  changed_at timestamptz not null default now()
);

insert into private.platform_brake (id, engaged) values (true, false);

comment on table private.platform_brake is
  'The platform-wide brake: while engaged no workspace''s mail is claimed; only the service releases it.';

-- Emails to owners and admins about a pause, sent by the send cron from the platform's address.
create table private.deliverability_emails (
  id uuid primary key default gen_random_uuid(),
  pause_id uuid not null references public.sending_pauses (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  subject text not null check (char_length(subject) <= 300),
  body text not null check (char_length(body) <= 5000),
  status text not null default 'queued' check (status in ('queued', 'sent', 'failed')),
  attempts integer not null default 0,
  error text check (char_length(error) <= 1000),
  created_at timestamptz not null default now(),
  sent_at timestamptz
);

comment on table private.deliverability_emails is
  'Pause emails to a workspace''s owner and admins (address read from auth.users when sent).';

create index deliverability_emails_queued_idx on private.deliverability_emails (created_at) where status = 'queued';

create index deliverability_emails_pause_id_idx on private.deliverability_emails (pause_id);

create index deliverability_emails_user_id_idx on private.deliverability_emails (user_id);

-- grants --------------------------------------------------------------------------------------

revoke all on public.deliverability_settings from public, anon, authenticated;

grant select on public.deliverability_settings to authenticated;

grant insert (workspace_id, warn_bounce_rate, pause_bounce_rate, warn_complaint_rate, pause_complaint_rate, min_volume)
  on public.deliverability_settings to authenticated;

grant update (warn_bounce_rate, pause_bounce_rate, warn_complaint_rate, pause_complaint_rate, min_volume, updated_at)
  on public.deliverability_settings to authenticated;

grant select, insert, update on public.deliverability_settings to service_role;

revoke all on public.sending_pauses from public, anon, authenticated;

grant select on public.sending_pauses to authenticated;

grant select on public.sending_pauses to service_role;

revoke all on private.deliverability_counts, private.deliverability_warnings, private.platform_brake,
  private.deliverability_emails from public, anon, authenticated;

grant select on private.deliverability_counts, private.platform_brake to service_role;

grant select on private.deliverability_emails to service_role;

-- row level security ----------------------------------------------------------------------------

alter table public.deliverability_settings enable row level security;

alter table public.sending_pauses enable row level security;

-- Members read their workspaces' thresholds.
create policy deliverability_settings_select_members on public.deliverability_settings
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Admins set their workspace's thresholds (within the table's bounds).
create policy deliverability_settings_insert_admins on public.deliverability_settings
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins change their workspace's thresholds (within the table's bounds).
create policy deliverability_settings_update_admins on public.deliverability_settings
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Members see their workspaces' pauses; only acknowledge_sending_pause (admins) changes one.
create policy sending_pauses_select_members on public.sending_pauses
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- reading the rates -------------------------------------------------------------------------------

-- The counts of one workspace (or one of its identities) in both windows, from `p_since` on:
-- `rolling` is the larger of the last 7 days or the last 10,000 sends (at most 90 days back),
-- `day` the last 24 hours.
create function private.deliverability_window(p_workspace_id uuid, p_sender_identity_id uuid, p_since timestamptz default null)
returns table (time_window text, sends bigint, bounces bigint, complaints bigint, transient_bounces bigint,
               unsubscribes bigint, gmail_unsubscribes bigint)
language sql
stable
security definer
set search_path = ''
as $$
  with hours as (
    select d.hour, sum(d.sends) as sends, sum(d.bounces) as bounces, sum(d.complaints) as complaints,
           sum(d.transient_bounces) as transient_bounces, sum(d.unsubscribes) as unsubscribes,
           sum(d.gmail_unsubscribes) as gmail_unsubscribes
    from private.deliverability_counts d
    where d.workspace_id = p_workspace_id
      and (p_sender_identity_id is null or d.sender_identity_id = p_sender_identity_id)
      and d.hour >= greatest(now() - interval '90 days', coalesce(p_since, '-infinity'))
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

-- The workspace's thresholds, its defaults filled in.
create function private.deliverability_thresholds(p_workspace_id uuid)
returns public.deliverability_settings
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    (select s from public.deliverability_settings s where s.workspace_id = p_workspace_id),
    row(p_workspace_id, 0.02, 0.05, 0.0008, 0.001, 500, now())::public.deliverability_settings
  )
$$;

revoke all on function private.deliverability_thresholds(uuid) from public, anon, authenticated;

-- Every visible workspace and sender identity (and each workspace as a whole, identity null)
-- with its rates in both windows and where they stand against its thresholds.
create function analytics.deliverability_stats()
returns table (
  workspace_id uuid, sender_identity_id uuid, time_window text, sends bigint, bounces bigint,
  complaints bigint, transient_bounces bigint, unsubscribes bigint, gmail_unsubscribes bigint,
  bounce_rate numeric, complaint_rate numeric, status text, paused boolean
)
language sql
stable
security definer
set search_path = ''
as $$
  with visible as (
    select w.id from public.workspaces w
    where (select private.analytics_sees_all())
       or w.id in (select private.user_workspace_ids())
  ),
  scopes as (
    select distinct d.workspace_id, d.sender_identity_id
    from private.deliverability_counts d
    where d.workspace_id in (select v.id from visible v) and d.hour >= now() - interval '90 days'
    union
    select v.id, null::uuid from visible v
  )
  select s.workspace_id, s.sender_identity_id, w.time_window, w.sends, w.bounces, w.complaints,
         w.transient_bounces, w.unsubscribes, w.gmail_unsubscribes,
         round(w.bounces::numeric / nullif(w.sends, 0), 5),
         round(w.complaints::numeric / nullif(w.sends, 0), 5),
         case
           when w.sends < t.min_volume then 'low_volume'
           when w.bounces::numeric / w.sends >= t.pause_bounce_rate
             or w.complaints::numeric / w.sends >= t.pause_complaint_rate then 'over_pause'
           when w.bounces::numeric / w.sends >= t.warn_bounce_rate
             or w.complaints::numeric / w.sends >= t.warn_complaint_rate then 'warning'
           else 'ok'
         end,
         exists (select 1 from public.sending_pauses p
                 where p.workspace_id = s.workspace_id and p.acknowledged_at is null
                   and (p.sender_identity_id is null or p.sender_identity_id = s.sender_identity_id))
  from scopes s
  cross join lateral private.deliverability_window(s.workspace_id, s.sender_identity_id) w
  cross join lateral private.deliverability_thresholds(s.workspace_id) t
$$;

revoke all on function analytics.deliverability_stats() from public, anon;

grant execute on function analytics.deliverability_stats() to authenticated, growthbase_analyst;

comment on function analytics.deliverability_stats() is
  'Bounce and complaint rates per workspace and sender identity (rolling: 7 days or 10,000 sends; day: 24 hours) of the workspaces the caller may see.';

create view analytics.deliverability with (security_invoker = true) as
  select * from analytics.deliverability_stats();

revoke all on analytics.deliverability from public, anon;

grant select on analytics.deliverability to authenticated, growthbase_analyst;

comment on view analytics.deliverability is
  'Rolling (7 days or the last 10,000 sends) and 24-hour bounce and complaint rates per workspace (sender_identity_id null) and per sender identity, with their standing: low_volume, ok, warning, over_pause; paused while a pause is active.';

-- The platform's own totals across every workspace, against SES's limits (review at 5% bounces
-- or 0.1% complaints), and the brake; nothing unless the caller sees every workspace (an
-- analyst).
create function analytics.platform_deliverability_stats()
returns table (time_window text, sends bigint, bounces bigint, complaints bigint,
               bounce_rate numeric, complaint_rate numeric, brake_engaged boolean, brake_reason text)
language sql
stable
security definer
set search_path = ''
as $$
  with totals as (
    select w.time_window, sum(w.sends)::bigint as sends, sum(w.bounces)::bigint as bounces,
           sum(w.complaints)::bigint as complaints
    from public.workspaces ws
    cross join lateral private.deliverability_window(ws.id, null) w
    where (select private.analytics_sees_all())
    group by w.time_window
  )
  select t.time_window, t.sends, t.bounces, t.complaints,
         round(t.bounces::numeric / nullif(t.sends, 0), 5),
         round(t.complaints::numeric / nullif(t.sends, 0), 5),
         b.engaged, b.reason
  from totals t cross join private.platform_brake b
$$;

revoke all on function analytics.platform_deliverability_stats() from public, anon, authenticated;

grant execute on function analytics.platform_deliverability_stats() to growthbase_analyst;

comment on function analytics.platform_deliverability_stats() is
  'Every workspace together against SES''s limits, and the platform brake; analysts only.';

-- pausing -------------------------------------------------------------------------------------

-- Pauses the scope (workspace, or identity when given) once: records why, pauses its sending
-- campaigns with the reason, notifies the owner and admins in the app and queues their emails.
-- Answers the pause's id (null when one was already active).
create function private.pause_sending(
  p_workspace_id uuid, p_sender_identity_id uuid, p_reason text, p_detail text, p_metrics jsonb
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pause uuid;
  v_identity text;
  v_subject text;
begin
  insert into public.sending_pauses (workspace_id, sender_identity_id, reason, detail, metrics)
  values (p_workspace_id, p_sender_identity_id, p_reason, left(p_detail, 1000), p_metrics)
  on conflict (workspace_id, sender_identity_id) where acknowledged_at is null do nothing
  returning id into v_pause;
  if v_pause is null then
    return null;
  end if;
  update public.campaigns c
  set status = 'paused', paused_by = v_pause, error = left(p_detail, 1000)
  where c.workspace_id = p_workspace_id and c.status = 'sending'
    and (p_sender_identity_id is null or c.sender_identity_id = p_sender_identity_id);
  select s.identity into v_identity from public.sender_identities s where s.id = p_sender_identity_id;
  v_subject := format('Sending paused%s: %s', coalesce(' for ' || v_identity, ''),
                      replace(p_reason, '_', ' ') || ' over the limit');
  perform private.notify_members_at_least(
    p_workspace_id, 'admin', 'sending.paused', v_subject, p_detail,
    jsonb_build_object('sending_pause_id', v_pause, 'sender_identity_id', p_sender_identity_id));
  insert into private.deliverability_emails (pause_id, user_id, subject, body)
  select v_pause, m.user_id, v_subject,
         p_detail || E'\n\nNo campaign of this workspace' || coalesce(' sent from ' || v_identity, '')
         || E' goes out until an admin acknowledges the pause in Growthbase.'
  from public.workspace_members m
  where m.workspace_id = p_workspace_id and private.role_rank(m.role) >= private.role_rank('admin');
  perform realtime.send(
    jsonb_build_object('sending_pause_id', v_pause, 'sender_identity_id', p_sender_identity_id,
                       'reason', p_reason, 'detail', p_detail, 'metrics', p_metrics),
    'sending_paused', format('workspace:%s:deliverability', p_workspace_id), true);
  return v_pause;
end
$$;

revoke all on function private.pause_sending(uuid, uuid, text, text, jsonb) from public, anon, authenticated;

grant execute on function private.pause_sending(uuid, uuid, text, text, jsonb) to service_role;

-- Checks one scope's rates (since its last acknowledgement's next hour) against the workspace's
-- thresholds: pauses over the pause level with the minimum volume, warns (at most daily) over
-- the warning level, and broadcasts the rates on the workspace's deliverability channel.
create function private.check_deliverability(p_workspace_id uuid, p_sender_identity_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_since timestamptz;
  v_limits public.deliverability_settings := private.deliverability_thresholds(p_workspace_id);
  v_window record;
  v_bounce numeric;
  v_complaint numeric;
  v_metrics jsonb;
  v_label text;
begin
  -- An identity is judged apart only beside others: alone it is its workspace, and a
  -- workspace-wide pause already stops it.
  if p_sender_identity_id is not null and (
    exists (select 1 from public.sending_pauses p
            where p.workspace_id = p_workspace_id and p.sender_identity_id is null
              and p.acknowledged_at is null)
    or not exists (select 1 from private.deliverability_counts d
                   where d.workspace_id = p_workspace_id
                     and d.sender_identity_id is distinct from p_sender_identity_id
                     and d.hour >= now() - interval '90 days')
  ) then
    return;
  end if;
  select date_trunc('hour', max(p.acknowledged_at)) + interval '1 hour' into v_since
  from public.sending_pauses p
  where p.workspace_id = p_workspace_id and p.acknowledged_at is not null
    and (p.sender_identity_id is null or p.sender_identity_id is not distinct from p_sender_identity_id);
  select coalesce(s.identity, 'the workspace') into v_label
  from (select 1) one left join public.sender_identities s on s.id = p_sender_identity_id;
  for v_window in
    select * from private.deliverability_window(p_workspace_id, p_sender_identity_id, v_since)
    order by time_window desc
  loop
    v_bounce := v_window.bounces::numeric / nullif(v_window.sends, 0);
    v_complaint := v_window.complaints::numeric / nullif(v_window.sends, 0);
    v_metrics := jsonb_build_object(
      'window', v_window.time_window, 'sends', v_window.sends, 'bounces', v_window.bounces,
      'complaints', v_window.complaints, 'bounce_rate', round(v_bounce, 5),
      'complaint_rate', round(v_complaint, 5), 'min_volume', v_limits.min_volume,
      'pause_bounce_rate', v_limits.pause_bounce_rate,
      'pause_complaint_rate', v_limits.pause_complaint_rate);
    perform realtime.send(v_metrics || jsonb_build_object('sender_identity_id', p_sender_identity_id),
                          'deliverability_rates', format('workspace:%s:deliverability', p_workspace_id), true);
    if v_window.sends < v_limits.min_volume then
      continue;
    end if;
    if v_complaint >= v_limits.pause_complaint_rate then
      perform private.pause_sending(p_workspace_id, p_sender_identity_id, 'complaint_rate',
        format('Complaint rate %s%% over the %s (%s complaints in %s sends) reached the pause level of %s%%',
               round(100 * v_complaint, 3), case v_window.time_window when 'day' then 'last 24 hours' else 'rolling window' end,
               v_window.complaints, v_window.sends, round(100 * v_limits.pause_complaint_rate, 3))
        || ' for ' || v_label || '.', v_metrics);
      return;
    end if;
    if v_bounce >= v_limits.pause_bounce_rate then
      perform private.pause_sending(p_workspace_id, p_sender_identity_id, 'bounce_rate',
        format('Bounce rate %s%% over the %s (%s permanent bounces in %s sends) reached the pause level of %s%%',
               round(100 * v_bounce, 2), case v_window.time_window when 'day' then 'last 24 hours' else 'rolling window' end,
               v_window.bounces, v_window.sends, round(100 * v_limits.pause_bounce_rate, 2))
        || ' for ' || v_label || '.', v_metrics);
      return;
    end if;
    if (v_bounce >= v_limits.warn_bounce_rate or v_complaint >= v_limits.warn_complaint_rate)
       and not exists (select 1 from private.deliverability_warnings w
                       where w.workspace_id = p_workspace_id
                         and w.sender_identity_id is not distinct from p_sender_identity_id
                         and w.warned_at > now() - interval '24 hours') then
      insert into private.deliverability_warnings as w (workspace_id, sender_identity_id, warned_at)
      values (p_workspace_id, p_sender_identity_id, now())
      on conflict (workspace_id, sender_identity_id) do update set warned_at = excluded.warned_at;
      perform private.notify_members_at_least(
        p_workspace_id, 'admin', 'sending.warning',
        format('Deliverability warning for %s', v_label),
        format('Bounce rate %s%%, complaint rate %s%% over %s sends (warning at %s%% / %s%%; sending pauses at %s%% / %s%%).',
               round(100 * coalesce(v_bounce, 0), 2), round(100 * coalesce(v_complaint, 0), 3), v_window.sends,
               round(100 * v_limits.warn_bounce_rate, 2), round(100 * v_limits.warn_complaint_rate, 3),
               round(100 * v_limits.pause_bounce_rate, 2), round(100 * v_limits.pause_complaint_rate, 3)),
        jsonb_build_object('sender_identity_id', p_sender_identity_id));
    end if;
  end loop;
end
$$;

revoke all on function private.check_deliverability(uuid, uuid) from public, anon, authenticated;

-- The counting trigger: what each statement changed on the send ledger, per workspace, sender
-- identity and hour; then each scope that gained a bounce or complaint is checked, for the
-- identity and for the workspace as a whole.
create function private.count_deliverability()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspaces uuid[];
  v_identities uuid[];
  v_at integer;
begin
  with changes as (
    select n.workspace_id, c.sender_identity_id,
           (n.status = 'sent' and o.status <> 'sent') as sent,
           (n.bounce_type = 'Permanent' and o.bounce_type is distinct from 'Permanent') as bounced,
           coalesce(n.bounce_subtype in ('Suppressed', 'OnAccountSuppressionList'), false) as suppressed,
           (n.bounce_type = 'Transient' and o.bounced_at is null and n.bounced_at is not null) as soft,
           (n.complained_at is not null and o.complained_at is null) as complained,
           (n.unsubscribed_at is not null and o.unsubscribed_at is null) as unsubscribed,
           split_part(n.email, '@', 2) in ('gmail.com', 'googlemail.com') as gmail
    from new_rows n
    join old_rows o on o.id = n.id
    join public.campaigns c on c.id = n.campaign_id
  ),
  counted as (
    select ch.workspace_id, ch.sender_identity_id,
           count(*) filter (where ch.sent) as sends,
           count(*) filter (where ch.bounced and not ch.suppressed) as bounces,
           count(*) filter (where ch.bounced and ch.suppressed) as suppressed_bounces,
           count(*) filter (where ch.soft) as transient_bounces,
           count(*) filter (where ch.complained) as complaints,
           count(*) filter (where ch.unsubscribed) as unsubscribes,
           count(*) filter (where ch.unsubscribed and ch.gmail) as gmail_unsubscribes
    from changes ch
    group by ch.workspace_id, ch.sender_identity_id
  ),
  stored as (
    insert into private.deliverability_counts as d (
      workspace_id, sender_identity_id, hour, sends, bounces, suppressed_bounces,
      transient_bounces, complaints, unsubscribes, gmail_unsubscribes
    )
    select k.workspace_id, k.sender_identity_id, date_trunc('hour', now()), k.sends, k.bounces,
           k.suppressed_bounces, k.transient_bounces, k.complaints, k.unsubscribes, k.gmail_unsubscribes
    from counted k
    where k.sends + k.bounces + k.suppressed_bounces + k.transient_bounces + k.complaints + k.unsubscribes > 0
    on conflict (workspace_id, sender_identity_id, hour) do update
    set sends = d.sends + excluded.sends,
        bounces = d.bounces + excluded.bounces,
        suppressed_bounces = d.suppressed_bounces + excluded.suppressed_bounces,
        transient_bounces = d.transient_bounces + excluded.transient_bounces,
        complaints = d.complaints + excluded.complaints,
        unsubscribes = d.unsubscribes + excluded.unsubscribes,
        gmail_unsubscribes = d.gmail_unsubscribes + excluded.gmail_unsubscribes
  )
  -- Each workspace that gained a bounce or complaint as a whole (null), then its identities.
  select array_agg(x.workspace_id order by x.sender_identity_id nulls first),
         array_agg(x.sender_identity_id order by x.sender_identity_id nulls first)
  into v_workspaces, v_identities
  from (
    select k.workspace_id, k.sender_identity_id from counted k where k.bounces + k.complaints > 0
    union
    select k.workspace_id, null::uuid from counted k where k.bounces + k.complaints > 0
  ) x;
  for v_at in 1 .. coalesce(cardinality(v_workspaces), 0) loop
    perform private.check_deliverability(v_workspaces[v_at], v_identities[v_at]);
  end loop;
  return null;
end
$$;

revoke all on function private.count_deliverability() from public, anon, authenticated;

create trigger campaign_recipients_count_deliverability
  after update on public.campaign_recipients
  referencing old table as old_rows new table as new_rows
  for each statement execute function private.count_deliverability();

-- acknowledging -----------------------------------------------------------------------------------

-- Admins lift an active pause by acknowledging it: who and when are recorded with the rates at
-- that moment, the campaigns it paused resume (unless another active pause covers them), and the
-- next pause is decided on what is sent from the next full hour on. Answers
-- {"resumed": n, "still_over_limit": bool, "metrics": {...}}: a scope still over its limit is
-- lifted all the same (nothing sent, nothing can change) and is paused again if the mail sent
-- after it trips the thresholds again.
create function public.acknowledge_sending_pause(p_pause_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pause public.sending_pauses;
  v_limits public.deliverability_settings;
  v_window record;
  v_over boolean := false;
  v_metrics jsonb := '{}'::jsonb;
  v_resumed integer;
begin
  select * into v_pause from public.sending_pauses p where p.id = p_pause_id;
  if v_pause.id is null or v_pause.workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'sending_pause_not_found', 'Sending pause not found');
  end if;
  perform private.lock_workspace_as(v_pause.workspace_id, 'admin');
  select * into v_pause from public.sending_pauses p where p.id = p_pause_id for update;
  if v_pause.acknowledged_at is not null then
    perform private.fail(409, 'sending_pause_acknowledged', 'This pause was already acknowledged');
  end if;
  if (select b.engaged from private.platform_brake b) then
    perform private.fail(409, 'platform_brake_engaged',
      'Sending is stopped for the whole platform; the pause can be acknowledged once it is released');
  end if;
  v_limits := private.deliverability_thresholds(v_pause.workspace_id);
  for v_window in
    select * from private.deliverability_window(v_pause.workspace_id, v_pause.sender_identity_id)
  loop
    v_metrics := v_metrics || jsonb_build_object(v_window.time_window, jsonb_build_object(
      'sends', v_window.sends, 'bounces', v_window.bounces, 'complaints', v_window.complaints));
    v_over := v_over or (v_window.sends >= v_limits.min_volume and (
      v_window.bounces::numeric / v_window.sends >= v_limits.pause_bounce_rate
      or v_window.complaints::numeric / v_window.sends >= v_limits.pause_complaint_rate));
  end loop;
  update public.sending_pauses
  set acknowledged_by = auth.uid(), acknowledged_at = now(), metrics_at_acknowledgement = v_metrics
  where id = p_pause_id;
  update public.campaigns c
  set status = 'sending', paused_by = null, error = null
  where c.paused_by = p_pause_id and c.status = 'paused'
    and not exists (select 1 from public.sending_pauses p
                    where p.workspace_id = c.workspace_id and p.acknowledged_at is null
                      and (p.sender_identity_id is null or p.sender_identity_id = c.sender_identity_id));
  get diagnostics v_resumed = row_count;
  return jsonb_build_object('resumed', v_resumed, 'still_over_limit', v_over, 'metrics', v_metrics);
end
$$;

revoke all on function public.acknowledge_sending_pause(uuid) from public, anon, authenticated;

grant execute on function public.acknowledge_sending_pause(uuid) to authenticated;

comment on function public.acknowledge_sending_pause(uuid) is
  'Admins lift a guardrail pause by acknowledging it (recorded); its campaigns resume. Answers resumed, still_over_limit and the rates.';

-- Members resume a paused campaign, as before, unless a guardrail pause covers it or the
-- platform brake is engaged (409 with the reason).
create or replace function public.resume_campaign(p_campaign_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_update(p_campaign_id, 'member');
  v_detail text;
begin
  perform private.require_campaign_status(v_campaign, array['paused'], 'resumed');
  perform private.assert_campaign_sender(v_campaign);
  select p.detail into v_detail from public.sending_pauses p
  where p.workspace_id = v_campaign.workspace_id and p.acknowledged_at is null
    and (p.sender_identity_id is null or p.sender_identity_id = v_campaign.sender_identity_id)
  limit 1;
  if v_detail is not null then
    perform private.fail(409, 'sending_paused',
      'Sending is paused until an admin acknowledges it: ' || v_detail);
  end if;
  update public.campaigns set status = 'sending', paused_by = null where id = p_campaign_id;
end
$$;

revoke all on function public.resume_campaign(uuid) from public, anon, authenticated;

grant execute on function public.resume_campaign(uuid) to authenticated;

comment on function public.resume_campaign(uuid) is
  'Members resume a paused campaign (only a paused one; start_campaign starts drafts), unless a guardrail pause covers it.';

-- the platform brake ------------------------------------------------------------------------------

-- The service engages the brake (by hand, or check_platform_brake): nothing is claimed anywhere.
create function private.engage_platform_brake(p_reason text)
returns void
language sql
security definer
set search_path = ''
as $$
  update private.platform_brake
  set engaged = true, reason = left(p_reason, 1000), changed_at = now()
  where id
$$;

revoke all on function private.engage_platform_brake(text) from public, anon, authenticated;

grant execute on function private.engage_platform_brake(text) to service_role;

-- The service releases the brake; no tenant can.
create function private.release_platform_brake()
returns void
language sql
security definer
set search_path = ''
as $$
  update private.platform_brake set engaged = false, changed_at = now() where id
$$;

revoke all on function private.release_platform_brake() from public, anon, authenticated;

grant execute on function private.release_platform_brake() to service_role;

-- Engages the brake when the platform's own 24-hour totals (every workspace) reach SES's review
-- levels (5% bounces, 0.1% complaints) over at least 5,000 sends. Answers whether it is engaged.
create function private.check_platform_brake()
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
  select coalesce(sum(d.sends), 0), coalesce(sum(d.bounces), 0), coalesce(sum(d.complaints), 0)
  into v_sends, v_bounces, v_complaints
  from private.deliverability_counts d
  where d.hour >= date_trunc('hour', now() - interval '24 hours');
  if v_sends >= 5000 and (v_bounces::numeric / v_sends >= 0.05 or v_complaints::numeric / v_sends >= 0.001)
     and not (select b.engaged from private.platform_brake b) then
    perform private.engage_platform_brake(format(
      'Platform totals over the last 24 hours: %s permanent bounces and %s complaints in %s sends',
      v_bounces, v_complaints, v_sends));
  end if;
  return (select b.engaged from private.platform_brake b);
end
$$;

revoke all on function private.check_platform_brake() from public, anon, authenticated;

grant execute on function private.check_platform_brake() to service_role;

-- pause emails ------------------------------------------------------------------------------------

-- Up to p_limit queued pause emails with their recipients' addresses, for the send cron.
create function private.claim_deliverability_emails(p_limit integer)
returns table (id uuid, email text, subject text, body text)
language sql
security definer
set search_path = ''
as $$
  with picked as (
    select e.id from private.deliverability_emails e
    where e.status = 'queued'
    order by e.created_at
    limit p_limit
    for update skip locked
  ),
  counted as (
    update private.deliverability_emails e
    set attempts = e.attempts + 1
    from picked k where k.id = e.id
    returning e.*
  )
  select c.id, u.email, c.subject, c.body
  from counted c join auth.users u on u.id = c.user_id
  where u.email is not null
$$;

revoke all on function private.claim_deliverability_emails(integer) from public, anon, authenticated;

grant execute on function private.claim_deliverability_emails(integer) to service_role;

-- Records the outcome of pause emails, `{"id", "sent", "error"?}` each; three failures end one.
create function private.record_deliverability_emails(p_outcomes jsonb)
returns void
language sql
security definer
set search_path = ''
as $$
  update private.deliverability_emails e
  set status = case when o.sent then 'sent' when e.attempts >= 3 then 'failed' else 'queued' end,
      sent_at = case when o.sent then now() end,
      error = left(o.error, 1000)
  from jsonb_to_recordset(p_outcomes) as o(id uuid, sent boolean, error text)
  where e.id = o.id
$$;

revoke all on function private.record_deliverability_emails(jsonb) from public, anon, authenticated;

grant execute on function private.record_deliverability_emails(jsonb) to service_role;

-- claiming, with the guardrails ------------------------------------------------------------------

-- As in 20261210090000_send_pipeline.sql, and: nothing while the platform brake is engaged; a
-- sending campaign that a guardrail pause covers (started or resumed after it) is paused with
-- the pause's reason instead of claimed.
create or replace function private.claim_email_batch(
  p_limit integer, p_lease_seconds integer, p_per_second double precision, p_account text default 'default'
)
returns table (
  recipient_id uuid, campaign_id uuid, workspace_id uuid, contact_id uuid, email text,
  attempts integer, subject text, html text, text_body text, from_name text, from_email text,
  reply_to text, contact jsonb, send_in double precision
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_account private.ses_accounts;
  v_now timestamptz := clock_timestamp();
  v_rate double precision;
  v_start timestamptz;
  v_take integer;
  v_claimed integer;
begin
  if (select b.engaged from private.platform_brake b) then
    return;
  end if;
  update public.campaigns c
  set status = 'paused', paused_by = p.id, error = p.detail
  from public.sending_pauses p
  where c.status = 'sending' and p.workspace_id = c.workspace_id and p.acknowledged_at is null
    and (p.sender_identity_id is null or p.sender_identity_id = c.sender_identity_id);

  insert into private.ses_accounts as a (account, configured_rate, rate)
  values (p_account, p_per_second, p_per_second)
  on conflict (account) do update
  set configured_rate = excluded.configured_rate,
      rate = least(excluded.configured_rate, coalesce(a.max_send_rate, excluded.configured_rate))
  where a.configured_rate is distinct from excluded.configured_rate;
  select * into v_account from private.ses_accounts a where a.account = p_account for update;
  if v_account.sending_enabled is false or v_account.paused_until > v_now then
    return;
  end if;
  v_rate := least(v_account.rate, p_per_second, coalesce(v_account.max_send_rate, p_per_second));
  v_start := greatest(v_account.next_slot_at, v_now);
  -- Slots up to a second ahead (or one slot, when the rate is below one a second).
  v_take := least(p_limit, floor((extract(epoch from v_now - v_start) + greatest(1, 1 / v_rate)) * v_rate)::integer);
  if v_account.max_24_hour_send >= 0 then
    v_take := least(v_take, floor(v_account.max_24_hour_send - coalesce(v_account.sent_last_24_hours, 0)
                                  - v_account.claimed_since_check)::integer);
  end if;
  if v_account.error_streak >= 5 then
    v_take := least(v_take, 1);
  end if;
  if v_take <= 0 then
    return;
  end if;

  return query
  with picked as (
    select r.id,
           case
             when not (ct.email = r.email
                       and private.may_market(ps.marketing_consent, ct.consent_state, ct.attributes)
                       and ct.unsubscribed_at is null and ct.erased_at is null
                       and not exists (select 1 from public.email_suppressions s
                                       where s.workspace_id = r.workspace_id and s.email = r.email)
                       and not exists (select 1 from private.platform_suppressions p
                                       where p.email_hash = sha256(convert_to(lower(r.email), 'UTF8'))))
               then 'skip'
             when r.attempts >= 8 then 'give_up'
             else 'send'
           end as verdict
    from public.campaigns c
    join public.sender_identities si on si.id = c.sender_identity_id and si.verified
    cross join lateral (
      select d.* from public.campaign_recipients d
      where d.campaign_id = c.id
        and d.status in ('queued', 'sending')
        and d.next_attempt_at <= now()
        and (d.locked_until is null or d.locked_until < now())
      order by d.next_attempt_at
      limit v_take
      for update of d skip locked
    ) r
    join public.contacts ct on ct.id = r.contact_id
    left join public.workspace_privacy_settings ps on ps.workspace_id = r.workspace_id
    where c.status = 'sending'
    order by r.next_attempt_at
    limit v_take
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
        locked_until = now() + make_interval(secs => p_lease_seconds),
        -- Due again when the lease runs out, so the due index alone says when.
        next_attempt_at = now() + make_interval(secs => p_lease_seconds)
    from picked k
    where k.id = r.id and k.verdict = 'send'
    returning r.*
  )
  select cl.id, cl.campaign_id, cl.workspace_id, cl.contact_id, cl.email, cl.attempts,
         v.subject, v.html, v.text, c.from_name, c.from_email, c.reply_to,
         jsonb_build_object('email', ct.email, 'first_name', ct.first_name,
                            'last_name', ct.last_name, 'phone', ct.phone,
                            'attributes', ct.attributes),
         extract(epoch from v_start - v_now)::double precision
           + (row_number() over (order by cl.next_attempt_at, cl.id) - 1) / v_rate
  from claimed cl
  join public.campaign_variants v on v.id = cl.variant_id
  join public.campaigns c on c.id = cl.campaign_id
  join public.contacts ct on ct.id = cl.contact_id;
  get diagnostics v_claimed = row_count;
  update private.ses_accounts a
  set next_slot_at = v_start + make_interval(secs => v_claimed / v_rate),
      claimed_since_check = a.claimed_since_check + v_claimed,
      updated_at = now()
  where a.account = p_account;
end
$$;

revoke all on function private.claim_email_batch(integer, integer, double precision, text) from public, anon, authenticated;

grant execute on function private.claim_email_batch(integer, integer, double precision, text) to service_role;

-- the register of personal data --------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values
  ('public', 'sending_pauses', 'reason', 'none', 'not_personal', null),
  ('public', 'sending_pauses', 'detail', 'none', 'not_personal', 'rates and counts'),
  ('public', 'sending_pauses', 'metrics', 'none', 'not_personal', 'rates and counts'),
  ('public', 'sending_pauses', 'metrics_at_acknowledgement', 'none', 'not_personal', 'rates and counts'),
  ('public', 'campaign_recipients', 'bounce_subtype', 'none', 'not_personal', 'SES''s bounce subtype'),
  ('private', 'platform_brake', 'reason', 'none', 'not_personal', 'platform totals'),
  ('private', 'deliverability_emails', 'subject', 'none', 'not_personal', 'the rate and the identity'),
  ('private', 'deliverability_emails', 'body', 'none', 'not_personal', 'rates, counts and the identity'),
  ('private', 'deliverability_emails', 'status', 'none', 'not_personal', null),
  ('private', 'deliverability_emails', 'error', 'none', 'not_personal', 'SES''s answer');
