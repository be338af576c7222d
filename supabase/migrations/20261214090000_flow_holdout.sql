-- Holdout: a per-flow share of entering contacts (holdout_percent, 0 to 50, by a stable hash
-- of contact and flow) goes through every step of the flow, but each send step records
-- `holdout` instead of mailing them; analytics.flow_performance compares their goal rate with
-- the others' (holdout_entered, holdout_converted, lift). Enrolment and the tick are redefined
-- whole, as in 20261212092000_flow_engine.sql plus the holdout.

alter table public.flows
  add column holdout_percent integer not null default 0 check (holdout_percent between 0 and 50);

comment on column public.flows.holdout_percent is
  'This share of entering contacts (a stable hash of contact and flow) goes through the flow without its emails, as a control group.';

alter table public.flow_runs
  add column holdout boolean not null default false;

comment on column public.flow_runs.holdout is
  'In the flow''s holdout group: goes through every step, but its emails are not sent.';

alter table public.flow_run_steps drop constraint flow_run_steps_outcome_check;

alter table public.flow_run_steps add constraint flow_run_steps_outcome_check check (outcome in (
    'waited', 'event_received', 'timed_out', 'branch_yes', 'branch_no', 'queued', 'stale',
    'suppressed', 'plan_limit', 'holdout', 'quiet_hours', 'capped', 'capped_skipped', 'filter_no_longer_matches',
    'updated', 'exited', 'exited_flows',
    'notified', 'goal', 'erased', 'flow_archived', 'left_by_other_flow'
  ));

-- enrolment sets the holdout ---------------------------------------------------------------------

create or replace function private.apply_contact_events()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_enrol text := $q$
    with candidates as (
      select distinct on (f.id, e.contact_id,
                          case when f.entry_policy = 'every_time' and f.entry_key = 'event'
                               then coalesce(e.properties ->> 'order_id', e.properties ->> 'checkout_id', e.event_key, e.id::text)
                               else '' end)
             f.id as flow_id, f.workspace_id, f.version, f.holdout_percent, e.contact_id, e.id as event_id,
             case when f.entry_key = 'event'
                  then left(coalesce(e.properties ->> 'order_id', e.properties ->> 'checkout_id', e.event_key, e.id::text), 200)
                  else 'contact' end as entry_key,
             e.properties, s.id as step_id, s.kind, s.config, s.timed, s.delay_seconds, c.attributes
      from new_events e
      join public.flows f on f.workspace_id = e.workspace_id and f.status = 'active' and f.trigger_type = e.type
      join public.flow_steps s on s.flow_id = f.id and s.version = f.version and s.is_entry
      join public.contacts c on c.id = e.contact_id and c.erased_at is null
      where e.occurred_at > now() - interval '2 days'
        and %s
        and case e.type
              when 'list_joined' then f.trigger_list_id::text = e.properties ->> 'list_id'
              when 'tag_added' then f.trigger_config ->> 'tag' = e.properties ->> 'tag'
              when 'custom' then f.trigger_config ->> 'name' = e.name
              when 'order_placed' then
                case coalesce(f.trigger_config ->> 'scope', 'any')
                  when 'any' then not e.properties ? 'lines'
                  when 'first' then not e.properties ? 'lines' and coalesce((e.properties ->> 'first')::boolean, false)
                  when 'product' then e.properties -> 'product_ids' ? (f.trigger_config ->> 'product_id')
                  else e.properties -> 'categories' ? lower(f.trigger_config ->> 'category')
                end
              when 'rfm_segment_changed' then
                (not f.trigger_config ? 'from' or f.trigger_config -> 'from' ? (e.properties ->> 'from'))
                and (not f.trigger_config ? 'to' or f.trigger_config -> 'to' ? (e.properties ->> 'to'))
              else true
            end
        and (f.entry_policy = 'every_time' or not exists (
              select 1 from public.flow_runs x
              where x.flow_id = f.id and x.contact_id = e.contact_id and not x.test
                and (f.entry_policy = 'once' or x.entered_at > now() - make_interval(days => f.reentry_days))))
        and (f.not_in_flow_id is null or not exists (
              select 1 from public.flow_runs x
              where x.flow_id = f.not_in_flow_id and x.contact_id = e.contact_id and not x.test
                and (x.status = 'active' or x.finished_at > now() - make_interval(days => f.not_in_flow_days))))
      order by f.id, e.contact_id,
               case when f.entry_policy = 'every_time' and f.entry_key = 'event'
                    then coalesce(e.properties ->> 'order_id', e.properties ->> 'checkout_id', e.event_key, e.id::text)
                    else '' end,
               e.id
    ),
    entered as (
      insert into public.flow_runs (workspace_id, flow_id, version, contact_id, entry_key, step_id, due_at,
                                    event_id, context, holdout)
      select k.workspace_id, k.flow_id, k.version, k.contact_id, k.entry_key, k.step_id,
             case when k.timed then private.flow_step_due(k.kind, k.config, k.attributes, z.name, now())
                  else now() + make_interval(secs => k.delay_seconds) end,
             k.event_id, k.properties,
             k.holdout_percent > 0
               and abs(hashtextextended(k.contact_id::text || ':' || k.flow_id::text, 0)) %% 100 < k.holdout_percent
      from candidates k
      left join private.time_zones z on z.name = k.attributes ->> 'timezone'
      on conflict (flow_id, contact_id, entry_key) where status = 'active' do nothing
      returning flow_id
    )
    update public.flow_stats s
    set entered = s.entered + n.n, active = s.active + n.n, updated_at = now()
    from (select flow_id, count(*) as n from entered group by flow_id) as n
    where s.flow_id = n.flow_id
  $q$;
  v_flow record;
begin
  -- Awaited events: the run goes on at once, down its "event came" path.
  update public.flow_runs r
  set event_at = e.occurred_at, due_at = least(r.due_at, now())
  from new_events e, public.flow_steps s
  where r.contact_id = e.contact_id and r.workspace_id = e.workspace_id and r.status = 'active'
    and s.id = r.step_id and s.kind = 'wait_for' and r.event_at is null
    and s.config -> 'event' ->> 'type' = e.type
    and (e.type <> 'custom' or s.config -> 'event' ->> 'name' = e.name)
    and e.created_at >= r.moved_at
    and not (e.type = 'order_placed' and e.properties ? 'lines');

  -- Goals.
  perform private.exit_flow_runs(array(
    select r.id
    from new_events e
    join public.flow_runs r on r.contact_id = e.contact_id and r.workspace_id = e.workspace_id and r.status = 'active'
    join public.flows f on f.id = r.flow_id
    where jsonb_array_length(f.exit_events) > 0 and r.entered_at <= e.created_at and r.event_id is distinct from e.id
      and not (e.type = 'order_placed' and e.properties ? 'lines')
      and exists (select 1 from jsonb_array_elements(f.exit_events) g
                  where g ->> 'type' = e.type and (e.type <> 'custom' or g ->> 'name' = e.name))
  ), 'converted', 'goal');

  -- Entry: flows without a filter in one statement, each flow with a filter in its own.
  execute format(v_enrol, 'f.entry_filter is null') using null::uuid, null::uuid;
  for v_flow in
    select distinct f.id, f.workspace_id, f.entry_filter
    from new_events e
    join public.flows f on f.workspace_id = e.workspace_id and f.status = 'active' and f.trigger_type = e.type
    where f.entry_filter is not null
  loop
    execute format(v_enrol, 'f.id = $2 and ' || private.segment_condition(v_flow.entry_filter))
      using v_flow.workspace_id, v_flow.id;
  end loop;
  return null;
end
$$;

revoke all on function private.apply_contact_events() from public, anon, authenticated;

-- the tick records holdout instead of sending -----------------------------------------------------

create or replace function private.advance_flows(p_limit integer default 10000, p_batch integer default 5000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_kinds text[];
  v_yes uuid[];
  v_unmatched uuid[];
  v_part uuid[];
  v_step record;
  v_done integer := 0;
  v_round integer;
  v_flows uuid[] := '{}'::uuid[];
  v_round_flows uuid[];
  v_rounds integer := 0;
begin
  if not exists (select 1 from public.flow_runs r where r.status = 'active' and r.due_at <= now()) then
    return 0;
  end if;
  perform pg_catalog.set_config('growthbase.flow_engine', 'on', true);
  loop
    v_rounds := v_rounds + 1;
    exit when v_done >= p_limit or v_rounds > 60;
    v_ids := array(
      select r.id from public.flow_runs r
      join public.flows f on f.id = r.flow_id and f.status = 'active'
      where r.status = 'active' and r.due_at <= now()
      order by r.due_at
      limit least(p_batch, p_limit - v_done)
      for update of r skip locked);
    exit when cardinality(v_ids) = 0;
    -- The kinds of step in this batch: the statements for the others are skipped.
    v_kinds := array(
      select distinct s.kind from unnest(v_ids) as x(id)
      join public.flow_runs r on r.id = x.id join public.flow_steps s on s.id = r.step_id);

    -- Branch rules, one query per branch step (the rule compiled once).
    v_yes := '{}'::uuid[];
    for v_step in
      select distinct s.id, s.workspace_id, s.config -> 'rule' as rule
      from public.flow_runs r join public.flow_steps s on s.id = r.step_id
      where 'branch' = any (v_kinds) and r.id = any (v_ids) and s.kind = 'branch' and s.config ? 'rule'
    loop
      execute format(
        'select coalesce(array_agg(r.id), ''{}'') from public.flow_runs r join public.contacts c on c.id = r.contact_id'
        ' where r.id = any ($2) and r.step_id = $3 and c.erased_at is null and %s',
        private.segment_condition(v_step.rule))
      into v_part using v_step.workspace_id, v_ids, v_step.id;
      v_yes := v_yes || v_part;
    end loop;

    -- Send steps of flows that check their filter again: who no longer matches.
    v_unmatched := '{}'::uuid[];
    for v_step in
      select distinct f.id, f.workspace_id, f.entry_filter
      from public.flow_runs r
      join public.flow_steps s on s.id = r.step_id and s.kind = 'send_email'
      join public.flows f on f.id = r.flow_id and f.recheck_filter and f.entry_filter is not null
      where 'send_email' = any (v_kinds) and r.id = any (v_ids)
    loop
      execute format(
        'select coalesce(array_agg(r.id), ''{}'') from public.flow_runs r join public.contacts c on c.id = r.contact_id'
        ' join public.flow_steps s on s.id = r.step_id and s.kind = ''send_email'''
        ' where r.id = any ($2) and r.flow_id = $3 and not coalesce((%s), false)',
        private.segment_condition(v_step.entry_filter))
      into v_part using v_step.workspace_id, v_ids, v_step.id;
      v_unmatched := v_unmatched || v_part;
    end loop;

    -- update_contact: tags, attributes and lists, every run of a contact in this round at once.
    if 'update_contact' = any (v_kinds) then
    update public.contacts c
    set tags = array(select distinct t from unnest(c.tags || u.add_tags) as t
                     where not (t = any (u.remove_tags)) order by t)::text[],
        attributes = c.attributes || u.set_attributes
    from (
      select r.contact_id,
             array(select jsonb_array_elements_text(x) from unnest(array_agg(coalesce(s.config -> 'add_tags', '[]'))) as x) as add_tags,
             array(select jsonb_array_elements_text(x) from unnest(array_agg(coalesce(s.config -> 'remove_tags', '[]'))) as x) as remove_tags,
             coalesce((select jsonb_object_agg(kv.key, kv.value)
                       from unnest(array_agg(coalesce(s.config -> 'set_attributes', '{}'))) as x
                       cross join lateral jsonb_each(x) as kv), '{}'::jsonb) as set_attributes
      from public.flow_runs r join public.flow_steps s on s.id = r.step_id and s.kind = 'update_contact'
      where r.id = any (v_ids)
      group by r.contact_id
    ) as u
    where c.id = u.contact_id and c.erased_at is null
      and (cardinality(u.add_tags) > 0 or cardinality(u.remove_tags) > 0 or u.set_attributes <> '{}'::jsonb);

    insert into public.email_list_members (list_id, workspace_id, contact_id)
    select distinct s.list_id, r.workspace_id, r.contact_id
    from public.flow_runs r
    join public.flow_steps s on s.id = r.step_id and s.kind = 'update_contact' and s.config ? 'add_to_list'
    join public.contacts c on c.id = r.contact_id and c.erased_at is null
    where r.id = any (v_ids) and s.list_id is not null
    on conflict do nothing;

    delete from public.email_list_members m
    using public.flow_runs r
    join public.flow_steps s on s.id = r.step_id and s.kind = 'update_contact' and s.config ? 'remove_from_list'
    where r.id = any (v_ids) and m.list_id = s.list_id and m.contact_id = r.contact_id;
    end if;

    -- notify_team: the workspace's members (at or above the step's role) get an in-app
    -- notification about the contact (erasing the contact deletes it).
    if 'notify_team' = any (v_kinds) then
    perform count(private.notify_members_at_least(
      r.workspace_id, coalesce(s.config ->> 'min_role', 'member'), 'flow.notify_team',
      s.config ->> 'title', s.config ->> 'body',
      jsonb_build_object('flow_id', r.flow_id, 'run_id', r.id, 'contact_id', r.contact_id), r.contact_id))
    from public.flow_runs r
    join public.flow_steps s on s.id = r.step_id and s.kind = 'notify_team'
    where r.id = any (v_ids) and r.status = 'active';
    end if;

    -- exit_flows: the contact's runs in the other flows (all, or the listed ones) end.
    if 'exit_flows' = any (v_kinds) then
    perform private.exit_flow_runs(array(
      select o.id
      from public.flow_runs r
      join public.flow_steps s on s.id = r.step_id and s.kind = 'exit_flows'
      join public.flow_runs o on o.contact_id = r.contact_id and o.workspace_id = r.workspace_id
                             and o.status = 'active' and o.flow_id <> r.flow_id
      where r.id = any (v_ids)
        and (not s.config ? 'flow_ids' or s.config -> 'flow_ids' ? o.flow_id::text)
    ), 'exited', 'left_by_other_flow');
    end if;

    -- Every claimed run: the step's outcome, its history row, its email, and the move.
    with cur as (
      select r.id, r.workspace_id, r.flow_id, r.contact_id, r.step_id, r.step_seq, r.due_at, r.event_at,
             r.entered_at, r.held_since, r.context, r.holdout, s.kind, s.config, s.next_id, s.alt_id, s.campaign_id,
             s.variant_id, c.email, c.attributes, c.consent_state, c.unsubscribed_at, c.erased_at,
             f.transactional, f.cap_action
      from unnest(v_ids) as x(id)
      join public.flow_runs r on r.id = x.id
      join public.flow_steps s on s.id = r.step_id
      join public.flows f on f.id = r.flow_id
      join public.contacts c on c.id = r.contact_id
      where r.status = 'active'
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
      where k.kind = 'send_email'
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
      select k.*,
             case k.kind
               when 'wait_for' then case when k.event_at is not null then 'event_received' else 'timed_out' end
               when 'branch' then
                 case when (k.config ? 'rule' and y.id is not null)
                        or (k.config ? 'percent'
                            and abs(hashtextextended(k.id::text || ':' || k.step_id::text, 0)) % 100 < (k.config ->> 'percent')::integer)
                        or (k.config ? 'event' and exists (
                              select 1 from public.contact_events e
                              where e.contact_id = k.contact_id and e.workspace_id = k.workspace_id
                                and e.type = k.config -> 'event' ->> 'type'
                                and (e.type <> 'custom' or e.name = k.config -> 'event' ->> 'name')
                                and e.occurred_at >= k.entered_at))
                      then 'branch_yes' else 'branch_no' end
               when 'send_email' then
                 case when m.verdict = 'send' and q.n > coalesce(w.room, 0) then 'plan_limit'
                      when m.verdict = 'send' then 'queued'
                      when m.verdict = 'capped' and k.cap_action = 'skip' then 'capped_skipped'
                      else split_part(m.verdict, ':', 1) end
               when 'update_contact' then 'updated'
               when 'notify_team' then 'notified'
               when 'exit' then 'exited'
               when 'exit_flows' then 'exited_flows'
               else 'waited'
             end as outcome,
             case when m.verdict like 'suppressed:%' then jsonb_build_object('reason', split_part(m.verdict, ':', 2)) end as detail,
             -- A send held by quiet hours waits for their end, one held by a cap for the
             -- contact's next day.
             case when m.verdict = 'quiet_hours'
                    then private.next_time_of_day(now(), to_char(m.quiet_until, 'HH24:MI'), null, m.tz)
                  when m.verdict = 'capped'
                    then (date_trunc('day', now() at time zone m.tz) + interval '1 day') at time zone m.tz
             end as hold_until
      from cur k
      left join unnest(v_yes) as y(id) on y.id = k.id
      left join mail m on m.id = k.id
      left join ranked q on q.id = k.id
      left join room w on w.workspace_id = k.workspace_id
    ),
    moved as (
      select d.*,
             case when d.outcome in ('timed_out', 'branch_no') then d.alt_id
                  when d.outcome in ('quiet_hours', 'capped') then d.step_id
                  when d.outcome in ('exited', 'filter_no_longer_matches') then null
                  else d.next_id end as to_step
      from decided d
    ),
    history as (
      insert into public.flow_run_steps (run_id, workspace_id, flow_id, step_id, seq, kind, outcome, detail)
      select m.id, m.workspace_id, m.flow_id, m.step_id, m.step_seq + 1, m.kind, m.outcome,
             coalesce(m.detail, case when m.hold_until is not null then jsonb_build_object('until', m.hold_until) end)
      from moved m
      returning id, run_id, outcome
    ),
    queued as (
      insert into public.campaign_recipients (campaign_id, workspace_id, variant_id, contact_id, email, flow_run_step_id,
                                              merge_data)
      select m.campaign_id, m.workspace_id, m.variant_id, m.contact_id, m.email, h.id,
             case when m.context <> '{}'::jsonb and pg_catalog.pg_column_size(m.context) <= 65536 then m.context end
      from moved m join history h on h.run_id = m.id
      where h.outcome = 'queued'
      returning workspace_id
    ),
    usage as (
      insert into private.monthly_email_usage as u (workspace_id, month, emails)
      select q.workspace_id, date_trunc('month', now())::date, count(*) from queued q group by q.workspace_id
      on conflict (workspace_id, month) do update set emails = u.emails + excluded.emails
    ),
    runs as (
      update public.flow_runs r
      set step_id = coalesce(m.to_step, r.step_id),
          step_seq = r.step_seq + 1,
          status = case when m.outcome in ('exited', 'filter_no_longer_matches') then 'exited'
                        when m.to_step is null then 'completed' else 'active' end,
          exit_reason = case when m.outcome in ('exited', 'filter_no_longer_matches') then m.outcome
                             when m.to_step is null then 'completed' end,
          finished_at = case when m.to_step is null then now() end,
          due_at = case when m.to_step is null then r.due_at
                        when m.hold_until is not null then m.hold_until
                        when n.timed then private.flow_step_due(n.kind, n.config, m.attributes, z.name,
                                                                case when m.outcome = 'event_received' then now() else r.due_at end)
                        else case when m.outcome = 'event_received' then now() else r.due_at end
                             + make_interval(secs => n.delay_seconds) end,
          moved_at = now(),
          held_since = case when m.hold_until is not null then coalesce(r.held_since, r.due_at) end,
          event_at = null,
          last_email_at = case when m.outcome = 'queued' then now() else r.last_email_at end
      from moved m
      left join public.flow_steps n on n.id = m.to_step
      left join private.time_zones z on z.name = m.attributes ->> 'timezone' and n.timed
      where r.id = m.id
      returning r.flow_id, r.status, m.outcome
    ),
    counted as (
      update public.flow_stats s
      set active = s.active - x.ended, completed = s.completed + x.completed, exited = s.exited + x.exited,
          emails_queued = s.emails_queued + x.queued, updated_at = now()
      from (select flow_id,
                   count(*) filter (where status <> 'active') as ended,
                   count(*) filter (where status = 'completed') as completed,
                   count(*) filter (where status = 'exited') as exited,
                   count(*) filter (where outcome = 'queued') as queued
            from runs group by flow_id) as x
      where s.flow_id = x.flow_id
    )
    select count(*), coalesce(array_agg(distinct flow_id), '{}') into v_round, v_round_flows from runs;
    v_done := v_done + v_round;
    v_flows := v_flows || v_round_flows;
  end loop;
  perform pg_catalog.set_config('growthbase.flow_engine', '', true);
  if cardinality(v_flows) > 0 then
    perform private.broadcast_flow_counts(array(select distinct unnest(v_flows)));
  end if;
  return v_done;
end
$$;

revoke all on function private.advance_flows(integer, integer) from public, anon, authenticated;

grant execute on function private.advance_flows(integer, integer) to service_role;

-- the holdout in the flow metrics -----------------------------------------------------------------

drop view analytics.flow_performance;

drop function analytics.flow_totals();

-- Per flow the caller may see: its settings and the counts kept on write.
create function analytics.flow_totals()
returns table (
  workspace_id uuid, flow_id uuid, flow_name text, status text, version integer, trigger_type text,
  entered bigint, waiting bigint, completed bigint, exited bigint, converted bigint,
  holdout_entered bigint, holdout_converted bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  select f.workspace_id, f.id, f.name, f.status, f.version, f.trigger_type,
         st.entered, st.active, st.completed, st.exited, st.converted,
         coalesce(h.entered, 0), coalesce(h.converted, 0)
  from public.flows f
  join public.flow_stats st on st.flow_id = f.id
  left join lateral (
    select count(*) as entered, count(*) filter (where r.status = 'converted') as converted
    from public.flow_runs r where r.flow_id = f.id and r.holdout and f.holdout_percent > 0
  ) as h on true
  where private.analytics_sees_all() or f.workspace_id in (select private.user_workspace_ids())
$$;

comment on function analytics.flow_totals() is
  'Per flow the caller may see: entered, waiting, completed, exited and converted runs (kept on write).';

create view analytics.flow_performance with (security_invoker = true) as
  with steps as (
    select s.flow_id, sum(s.sent)::bigint as sent, sum(s.delivered)::bigint as delivered,
           sum(s.unique_opens)::bigint as unique_opens, sum(s.unique_clicks)::bigint as unique_clicks,
           sum(s.attributed_orders)::bigint as attributed_orders,
           sum(s.attributed_revenue)::numeric(14, 2) as attributed_revenue, max(s.currency) as currency
    from analytics.flow_step_stats() s
    group by s.flow_id
  )
  select t.workspace_id, t.flow_id, t.flow_name, t.status, t.version, t.trigger_type,
         t.entered, t.waiting, t.completed, t.exited, t.converted,
         round(t.converted::numeric / nullif(t.entered, 0), 4) as goal_rate,
         t.holdout_entered, t.holdout_converted,
         -- The goal rate of those who got the emails minus the holdout's: the flow's lift.
         round((t.converted - t.holdout_converted)::numeric / nullif(t.entered - t.holdout_entered, 0)
               - t.holdout_converted::numeric / nullif(t.holdout_entered, 0), 4) as lift,
         coalesce(s.sent, 0) as sent, coalesce(s.delivered, 0) as delivered,
         coalesce(s.unique_opens, 0) as unique_opens, coalesce(s.unique_clicks, 0) as unique_clicks,
         round(s.unique_opens::numeric / nullif(s.delivered, 0), 4) as open_rate,
         round(s.unique_clicks::numeric / nullif(s.delivered, 0), 4) as click_rate,
         coalesce(s.attributed_orders, 0) as attributed_orders,
         coalesce(s.attributed_revenue, 0) as attributed_revenue, s.currency
  from analytics.flow_totals() t
  left join steps s on s.flow_id = t.flow_id;

comment on view analytics.flow_performance is
  'Per flow: entered, waiting, completed, exited, converted (goal), emails and attributed revenue.';

-- grants -----------------------------------------------------------------------------------------

grant insert (holdout_percent), update (holdout_percent) on public.flows to authenticated;

revoke all on function analytics.flow_totals() from public, anon;

grant execute on function analytics.flow_totals() to authenticated, growthbase_analyst, service_role;

revoke all on analytics.flow_performance from public, anon;

grant select on analytics.flow_performance to authenticated, growthbase_analyst, service_role;
