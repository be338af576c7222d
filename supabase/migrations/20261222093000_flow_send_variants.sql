-- Send-step variants with a winner: a send_email step may name up to three more templates
-- (`variants`); its campaign then has variants A (the step's template), B, C, D, and each run is
-- split over them (a stable hash of the run). Once every variant has `min_sample` sends at least
-- `window_hours` old, the one with the most clicks per recipient (or attributed revenue per
-- recipient) wins, ties to the earlier variant; from then on every send of the step is the
-- winner's. Checked by the tick, at most every 10 minutes per step.

alter table public.flow_steps add column variant_ids uuid[];

alter table public.flow_steps add column winner_variant_id uuid
  references public.campaign_variants (id) on delete set null;

alter table public.flow_steps add column winner_picked_at timestamptz;

alter table public.flow_steps add column variants_checked_at timestamptz;

comment on column public.flow_steps.variant_ids is
  'send_email with variants: the campaign variants the runs are split over (A first), set when the version goes live.';

comment on column public.flow_steps.winner_variant_id is
  'send_email with variants: the variant that won (every later send is it); null while the test runs.';

comment on column public.flow_steps.winner_picked_at is 'When the winner was picked.';

comment on column public.flow_steps.variants_checked_at is 'When the tick last looked for a winner (at most every 10 minutes).';

create index flow_steps_winner_variant_idx on public.flow_steps (winner_variant_id);

-- the step's check -----------------------------------------------------------------------------------

create or replace function private.validate_flow_step_send_email(p_check private.flow_step_check)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_uuid text := '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$';
begin
  if coalesce(p_check.config ->> 'template_id', '') !~ v_uuid or not exists (
       select 1 from public.email_templates t
       where t.id = (p_check.config ->> 'template_id')::uuid and t.workspace_id = p_check.workspace_id) then
    perform private.fail(422, 'invalid_reference', format('Step %s: template not found in this workspace', p_check.key));
  end if;
  if coalesce(p_check.config ->> 'sender_identity_id', '') !~ v_uuid or not exists (
       select 1 from public.sender_identities s
       where s.id = (p_check.config ->> 'sender_identity_id')::uuid and s.workspace_id = p_check.workspace_id) then
    perform private.fail(422, 'invalid_reference', format('Step %s: sender identity not found in this workspace', p_check.key));
  end if;
  if jsonb_typeof(p_check.config -> 'from_email') is distinct from 'string'
     or (p_check.config ->> 'from_email') !~ '^[^@\s]+@[^@\s]+$' or char_length(p_check.config ->> 'from_email') > 320 then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: from_email is required', p_check.key));
  end if;
  if (p_check.config ? 'from_name' and (jsonb_typeof(p_check.config -> 'from_name') <> 'string'
        or char_length(p_check.config ->> 'from_name') > 200 or (p_check.config ->> 'from_name') ~ '[\r\n]'))
     or (p_check.config ? 'reply_to' and (jsonb_typeof(p_check.config -> 'reply_to') <> 'string'
        or (p_check.config ->> 'reply_to') !~ '^[^@\s]+@[^@\s]+$')) then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: from_name or reply_to is malformed', p_check.key));
  end if;
  if p_check.config ? 'max_lateness_minutes' and (jsonb_typeof(p_check.config -> 'max_lateness_minutes') <> 'number'
       or (p_check.config ->> 'max_lateness_minutes')::numeric not between 1 and 525600) then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: max_lateness_minutes is from 1 to 525600', p_check.key));
  end if;
  if p_check.config ? 'variants' and (jsonb_typeof(p_check.config -> 'variants') <> 'array'
       or jsonb_array_length(p_check.config -> 'variants') not between 1 and 3
       or exists (select 1 from jsonb_array_elements(p_check.config -> 'variants') v
                  where jsonb_typeof(v) <> 'object'
                     or exists (select 1 from jsonb_object_keys(v) k where k <> 'template_id'))) then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: variants is a list of 1 to 3 {"template_id"} (the step''s own template is variant A)', p_check.key));
  end if;
  if exists (select 1 from jsonb_array_elements(case when jsonb_typeof(p_check.config -> 'variants') = 'array'
                                                     then p_check.config -> 'variants' else '[]'::jsonb end) v
             where coalesce(v ->> 'template_id', '') !~ v_uuid or not exists (
               select 1 from public.email_templates t
               where t.id = (v ->> 'template_id')::uuid and t.workspace_id = p_check.workspace_id)) then
    perform private.fail(422, 'invalid_reference', format('Step %s: a variant''s template was not found in this workspace', p_check.key));
  end if;
  if p_check.config ? 'winner' and (not p_check.config ? 'variants' or jsonb_typeof(p_check.config -> 'winner') <> 'object'
       or exists (select 1 from jsonb_object_keys(p_check.config -> 'winner') k where k not in ('metric', 'min_sample', 'window_hours'))
       or coalesce(p_check.config -> 'winner' ->> 'metric', 'clicks') not in ('clicks', 'revenue')
       or (p_check.config -> 'winner' ? 'min_sample' and (jsonb_typeof(p_check.config -> 'winner' -> 'min_sample') <> 'number'
             or (p_check.config -> 'winner' ->> 'min_sample')::numeric not between 10 and 100000
             or (p_check.config -> 'winner' ->> 'min_sample')::numeric <> trunc((p_check.config -> 'winner' ->> 'min_sample')::numeric)))
       or (p_check.config -> 'winner' ? 'window_hours' and (jsonb_typeof(p_check.config -> 'winner' -> 'window_hours') <> 'number'
             or (p_check.config -> 'winner' ->> 'window_hours')::numeric not between 1 and 720
             or (p_check.config -> 'winner' ->> 'window_hours')::numeric <> trunc((p_check.config -> 'winner' ->> 'window_hours')::numeric)))) then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: winner (with variants only) is {"metric": "clicks" or "revenue", "min_sample": 10 to 100000, "window_hours": 1 to 720}', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_send_email(private.flow_step_check) from public, anon, authenticated;

-- the campaign gets a variant per template -----------------------------------------------------------

-- A version's send steps get their campaigns (from the template, the sender checked as a
-- campaign's is) when the version goes live; a step with variants gets B, C, D from their
-- templates beside A.
create or replace function private.open_flow_campaigns(p_flow_id uuid, p_version integer)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_step record;
  v_variant_id uuid;
  v_more uuid[];
begin
  perform pg_catalog.set_config('growthbase.flow_engine', 'on', true);
  for v_step in
    select s.*, f.name as flow_name, f.status as flow_status
    from public.flow_steps s join public.flows f on f.id = s.flow_id
    where s.flow_id = p_flow_id and s.version = p_version and s.kind = 'send_email' and s.campaign_id is null
  loop
    if v_step.template_id is null then
      perform private.fail(422, 'invalid_reference', format('Step %s: its template was deleted', v_step.key));
    end if;
    insert into public.campaigns (workspace_id, name, status, sender_identity_id, from_name, from_email,
                                  reply_to, started_at, flow_step_id, created_by)
    values (v_step.workspace_id, left(format('Flow %s · %s (v%s)', v_step.flow_name, v_step.key, v_step.version), 200),
            case when v_step.flow_status = 'paused' then 'paused' else 'sending' end,
            v_step.sender_identity_id, v_step.config ->> 'from_name', lower(btrim(v_step.config ->> 'from_email')),
            v_step.config ->> 'reply_to', now(), v_step.id, null)
    returning * into v_campaign;
    perform private.assert_campaign_sender(v_campaign);
    insert into public.campaign_variants (campaign_id, workspace_id, name, subject, html, text)
    select v_campaign.id, t.workspace_id, 'A', t.subject, t.html, t.text
    from public.email_templates t where t.id = v_step.template_id
    returning id into v_variant_id;
    v_more := null;
    if v_step.config ? 'variants' then
      if exists (select 1 from jsonb_array_elements(v_step.config -> 'variants') v
                 where not exists (select 1 from public.email_templates t
                                   where t.id = (v ->> 'template_id')::uuid and t.workspace_id = v_step.workspace_id)) then
        perform private.fail(422, 'invalid_reference', format('Step %s: a variant''s template was deleted', v_step.key));
      end if;
      with made as (
        insert into public.campaign_variants (campaign_id, workspace_id, name, subject, html, text)
        select v_campaign.id, t.workspace_id, chr(65 + n::integer), t.subject, t.html, t.text
        from jsonb_array_elements(v_step.config -> 'variants') with ordinality as v(value, n)
        join public.email_templates t on t.id = (v.value ->> 'template_id')::uuid
        returning id, name
      )
      select array_agg(m.id order by m.name) into v_more from made m;
    end if;
    update public.flow_steps s
    set campaign_id = v_campaign.id, variant_id = v_variant_id,
        variant_ids = case when v_more is not null then array[v_variant_id] || v_more end
    where s.id = v_step.id;
  end loop;
  perform pg_catalog.set_config('growthbase.flow_engine', '', true);
end
$$;

revoke all on function private.open_flow_campaigns(uuid, integer) from public, anon, authenticated;

-- the winner -----------------------------------------------------------------------------------------

-- For the given send steps with variants and no winner yet (each looked at most every 10
-- minutes): the sample of each variant is its sends at least window_hours old; when every
-- variant has min_sample, the best by clicks per recipient, or by revenue per recipient (paid
-- or fulfilled orders of the recipient within the campaign's attribution window after their
-- click), wins, ties to the earlier variant.
create function private.pick_flow_send_winners(p_step_ids uuid[])
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_due uuid[];
begin
  with looked as (
    update public.flow_steps s
    set variants_checked_at = now()
    where s.id = any (p_step_ids) and s.variant_ids is not null and s.winner_variant_id is null
      and (s.variants_checked_at is null or s.variants_checked_at < now() - interval '10 minutes')
    returning s.id
  )
  select array_agg(l.id) into v_due from looked l;
  if v_due is null then
    return;
  end if;

  with due as (
    select s.id, s.campaign_id, s.variant_ids,
           coalesce(s.config -> 'winner' ->> 'metric', 'clicks') as metric,
           coalesce((s.config -> 'winner' ->> 'min_sample')::integer, 100) as min_sample,
           coalesce((s.config -> 'winner' ->> 'window_hours')::integer, 24) as window_hours
    from public.flow_steps s
    where s.id = any (v_due)
  ),
  samples as (
    select d.id as step_id, v.id as variant_id, v.name, d.metric, d.min_sample,
           count(r.id) as n,
           count(r.clicked_at) as clicks,
           coalesce(sum(o.revenue), 0) as revenue
    from due d
    join public.campaigns c on c.id = d.campaign_id
    join public.campaign_variants v on v.campaign_id = d.campaign_id and v.id = any (d.variant_ids)
    left join public.campaign_recipients r
      on r.campaign_id = d.campaign_id and r.variant_id = v.id
     and r.sent_at <= now() - make_interval(hours => d.window_hours)
    left join lateral (
      select sum(x.base_total) as revenue
      from public.orders x
      where d.metric = 'revenue' and r.clicked_at is not null
        and x.workspace_id = r.workspace_id and x.contact_id = r.contact_id and x.status in ('paid', 'fulfilled')
        and x.placed_at >= r.clicked_at and x.placed_at <= r.clicked_at + make_interval(days => c.attribution_days)
    ) as o on true
    group by d.id, v.id, v.name, d.metric, d.min_sample
  ),
  ready as (
    select distinct on (s.step_id) s.step_id, s.variant_id
    from samples s
    where not exists (select 1 from samples t where t.step_id = s.step_id and t.n < t.min_sample)
    order by s.step_id,
             case when s.metric = 'revenue' then s.revenue / nullif(s.n, 0) else s.clicks::numeric / nullif(s.n, 0) end desc nulls last,
             s.name
  )
  update public.flow_steps s
  set winner_variant_id = w.variant_id, winner_picked_at = now()
  from ready w
  where s.id = w.step_id;
end
$$;

revoke all on function private.pick_flow_send_winners(uuid[]) from public, anon, authenticated;

-- the step in a tick: the winner, else the split ------------------------------------------------------

-- send_email: the winner looked for first (variants), then the contact's filter again (when
-- the flow asks), lateness, suppression and consent, holdout, quiet hours and caps (unless
-- transactional), the plan's monthly emails, then one campaign ledger row per visit (of the
-- run's variant), named by the visit's history row.
create or replace function private.advance_flow_send_email(p_runs uuid[])
returns private.flow_step_result[]
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_unmatched uuid[] := '{}'::uuid[];
  v_part uuid[];
  v_step record;
  v_out private.flow_step_result[];
begin
  perform private.pick_flow_send_winners(array(
    select distinct r.step_id from unnest(p_runs) as x(id) join public.flow_runs r on r.id = x.id));

  -- Flows that check their filter again: who no longer matches.
  for v_step in
    select distinct f.id, f.workspace_id, f.entry_filter
    from unnest(p_runs) as x(id)
    join public.flow_runs r on r.id = x.id
    join public.flows f on f.id = r.flow_id and f.recheck_filter and f.entry_filter is not null
  loop
    execute format(
      'select coalesce(array_agg(r.id), ''{}'') from public.flow_runs r join public.contacts c on c.id = r.contact_id'
      ' join public.flow_steps s on s.id = r.step_id and s.kind = ''send_email'''
      ' where r.id = any ($2) and r.flow_id = $3 and not coalesce((%s), false)',
      private.segment_condition(v_step.entry_filter))
    into v_part using v_step.workspace_id, p_runs, v_step.id;
    v_unmatched := v_unmatched || v_part;
  end loop;

  with cur as (
    select r.id, r.workspace_id, r.flow_id, r.contact_id, r.step_id, r.step_seq, r.due_at,
           r.held_since, r.context, r.holdout, s.config, s.campaign_id,
           -- The winner once picked; before, a stable split of the runs over the variants.
           coalesce(s.winner_variant_id,
                    s.variant_ids[1 + (abs(hashtextextended(r.id::text || ':variant', 0)) % cardinality(s.variant_ids))::integer],
                    s.variant_id) as variant_id,
           c.email, c.attributes, c.consent_state, c.unsubscribed_at, c.erased_at,
           f.transactional, f.cap_action
    from unnest(p_runs) as x(id)
    join public.flow_runs r on r.id = x.id and r.status = 'active'
    join public.flow_steps s on s.id = r.step_id
    join public.flows f on f.id = r.flow_id
    join public.contacts c on c.id = r.contact_id
  ),
  mail as (
    select k.id, w.tz, w.quiet_from, w.quiet_until,
           case
             when u.id is not null then 'filter_no_longer_matches'
             when now() - coalesce(k.held_since, k.due_at)
                  > make_interval(mins => coalesce((k.config ->> 'max_lateness_minutes')::integer, 1440)) then 'stale'
             when k.erased_at is not null or k.email is null then 'suppressed:no_email'
             when k.unsubscribed_at is not null then 'suppressed:unsubscribed'
             when not private.may_market(ps.marketing_consent, k.consent_state, k.attributes) then 'suppressed:no_consent'
             when exists (select 1 from public.email_suppressions x where x.workspace_id = k.workspace_id and x.email = k.email)
               or exists (select 1 from private.platform_suppressions p
                          where p.email_hash = sha256(convert_to(lower(k.email), 'UTF8'))) then 'suppressed:suppressed'
             when k.campaign_id is null or k.variant_id is null then 'suppressed:template_removed'
             when k.holdout then 'holdout'
             when k.transactional or w.workspace_id is null then 'send'
             when w.quiet_from is not null
                  and case when w.quiet_from < w.quiet_until
                           then (now() at time zone w.tz)::time >= w.quiet_from and (now() at time zone w.tz)::time < w.quiet_until
                           else (now() at time zone w.tz)::time >= w.quiet_from or (now() at time zone w.tz)::time < w.quiet_until
                      end then 'quiet_hours'
             when (w.daily_cap is not null and (
                     select count(*) from public.campaign_recipients x
                     where x.contact_id = k.contact_id and x.status in ('queued', 'sending', 'sent')
                       and coalesce(x.sent_at, x.next_attempt_at) >= (date_trunc('day', now() at time zone w.tz) at time zone w.tz)
                   ) >= w.daily_cap)
               or (w.weekly_cap is not null and (
                     select count(*) from public.campaign_recipients x
                     where x.contact_id = k.contact_id and x.status in ('queued', 'sending', 'sent')
                       and coalesce(x.sent_at, x.next_attempt_at) >= now() - interval '7 days'
                   ) >= w.weekly_cap) then 'capped'
             else 'send'
           end as verdict
    from cur k
    left join unnest(v_unmatched) as u(id) on u.id = k.id
    left join public.workspace_privacy_settings ps on ps.workspace_id = k.workspace_id
    left join lateral (
      select sr.workspace_id, sr.daily_cap, sr.weekly_cap, sr.quiet_from, sr.quiet_until,
             coalesce((select z.name from private.time_zones z where z.name = k.attributes ->> 'timezone'), sr.timezone) as tz
      from public.flow_send_rules sr where sr.workspace_id = k.workspace_id
    ) as w on true
  ),
  ranked as (
    select m.id, k.workspace_id, row_number() over (partition by k.workspace_id order by k.due_at, k.id) as n
    from mail m join cur k on k.id = m.id
    where m.verdict = 'send'
  ),
  room as (
    select w.workspace_id, private.plan_limit(w.workspace_id, 'monthly_emails') - coalesce(u.emails, 0) as room
    from (select distinct workspace_id from ranked) as w
    left join private.monthly_email_usage u on u.workspace_id = w.workspace_id and u.month = date_trunc('month', now())::date
  ),
  decided as (
    select k.*, o.outcome,
           case when m.verdict like 'suppressed:%' then jsonb_build_object('reason', split_part(m.verdict, ':', 2)) end as detail,
           -- A send held by quiet hours waits for their end, one held by a cap for the
           -- contact's next day.
           case when m.verdict = 'quiet_hours'
                  then private.next_time_of_day(now(), to_char(m.quiet_until, 'HH24:MI'), null, m.tz)
                when m.verdict = 'capped'
                  then (date_trunc('day', now() at time zone m.tz) + interval '1 day') at time zone m.tz
           end as hold_until,
           -- The visit's history row, taken now so the ledger row can name it.
           case when o.outcome = 'queued' then nextval('public.flow_run_steps_id_seq'::regclass) end as history_id
    from cur k
    join mail m on m.id = k.id
    left join ranked q on q.id = k.id
    left join room w on w.workspace_id = k.workspace_id
    cross join lateral (
      select case when m.verdict = 'send' and q.n > coalesce(w.room, 0) then 'plan_limit'
                  when m.verdict = 'send' then 'queued'
                  when m.verdict = 'capped' and k.cap_action = 'skip' then 'capped_skipped'
                  else split_part(m.verdict, ':', 1) end as outcome
    ) as o
  ),
  queued as (
    insert into public.campaign_recipients (campaign_id, workspace_id, variant_id, contact_id, email, flow_run_step_id,
                                            merge_data)
    select d.campaign_id, d.workspace_id, d.variant_id, d.contact_id, d.email, d.history_id,
           case when d.context <> '{}'::jsonb and pg_catalog.pg_column_size(d.context) <= 65536 then d.context end
    from decided d
    where d.outcome = 'queued'
    returning workspace_id
  ),
  usage as (
    insert into private.monthly_email_usage as u (workspace_id, month, emails)
    select q.workspace_id, date_trunc('month', now())::date, count(*) from queued q group by q.workspace_id
    on conflict (workspace_id, month) do update set emails = u.emails + excluded.emails
  )
  select coalesce(array_agg(row(d.id, d.outcome,
                                case when d.outcome in ('quiet_hours', 'capped') then 'hold'
                                     when d.outcome = 'filter_no_longer_matches' then 'exit'
                                     else 'next' end,
                                d.detail, d.hold_until, null, d.history_id)::private.flow_step_result), '{}')
  into v_out
  from decided d;
  return v_out;
end
$$;

revoke all on function private.advance_flow_send_email(uuid[]) from public, anon, authenticated;

-- metrics: a send step's email is all its variants ---------------------------------------------------

create or replace function analytics.flow_step_stats()
returns table (
  workspace_id uuid, flow_id uuid, flow_name text, flow_status text, version integer,
  step_id uuid, step_key text, kind text, reached bigint, outcomes jsonb, waiting bigint,
  sent bigint, delivered bigint, unique_opens bigint, unique_clicks bigint, bounced bigint,
  unsubscribed bigint, attributed_orders bigint, attributed_revenue numeric(14, 2), currency text
)
language sql
stable
security definer
set search_path = ''
as $$
  with visible as (
    select w.id from public.workspaces w
    where private.analytics_sees_all() or w.id in (select private.user_workspace_ids())
  ),
  history as (
    select h.step_id, sum(h.n)::bigint as reached, jsonb_object_agg(h.outcome, h.n) as outcomes
    from (
      select x.step_id, x.outcome, count(*) as n
      from public.flow_run_steps x
      where x.workspace_id in (select id from visible) and x.step_id is not null
      group by x.step_id, x.outcome
    ) as h
    group by h.step_id
  ),
  waiting as (
    select r.step_id, count(*) as n
    from public.flow_runs r
    where r.workspace_id in (select id from visible) and r.status = 'active'
    group by r.step_id
  ),
  mail as (
    select v.campaign_id, sum(v.sent)::bigint as sent, sum(v.delivered)::bigint as delivered,
           sum(v.unique_opens)::bigint as unique_opens, sum(v.unique_clicks)::bigint as unique_clicks,
           sum(v.bounced)::bigint as bounced, sum(v.unsubscribed)::bigint as unsubscribed,
           sum(v.attributed_orders)::bigint as attributed_orders,
           sum(v.attributed_revenue)::numeric(14, 2) as attributed_revenue, max(v.currency) as currency
    from analytics.campaign_variant_stats() v
    group by v.campaign_id
  )
  select s.workspace_id, s.flow_id, f.name, f.status, s.version, s.id, s.key, s.kind,
         coalesce(h.reached, 0), coalesce(h.outcomes, '{}'::jsonb), coalesce(w.n, 0),
         m.sent, m.delivered, m.unique_opens, m.unique_clicks, m.bounced, m.unsubscribed,
         m.attributed_orders, m.attributed_revenue, m.currency
  from public.flow_steps s
  join public.flows f on f.id = s.flow_id
  left join history h on h.step_id = s.id
  left join waiting w on w.step_id = s.id
  left join mail m on m.campaign_id = s.campaign_id and s.kind = 'send_email'
  where s.workspace_id in (select id from visible)
$$;

comment on function analytics.flow_step_stats() is
  'Per step of every flow version the caller may see: runs reached, outcome counts, runs waiting, and the step''s email metrics (all its variants) and attributed revenue.';
