-- The send step in the lean tick, 1.33x slower than in the tick before it (scripts/bench_flows:
-- 100k sends, 10.69 s against 8.02 s on the quiet machine). The lean tick
-- (20261226092000_flow_tick_lean.sql) runs with plan_cache_mode = force_custom_plan so that no
-- statement of the tick or its kinds gets a cached generic plan (which guessed 10 elements per
-- array and turned a 100k batch quadratic). A function's SET holds for everything it calls,
-- and that includes the foreign-key checks of the rows the send step writes: each
-- campaign_recipients row checks its campaign, variant and contact through a prepared
-- statement, and under force_custom_plan every one of those 300k checks was planned anew.
-- The send step now runs with the default plan cache (the checks plan once per session), and
-- its one statement over the batch is dynamic SQL, planned for the batch at hand on every tick
-- as before. Nothing a user sees changes.

-- As in 20261222093000_flow_send_variants.sql, with the plan cache of the session and the
-- batch's statement planned each time.
create or replace function private.advance_flow_send_email(p_runs uuid[])
returns private.flow_step_result[]
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = auto
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

  execute $q$
    with cur as (
      select r.id, r.workspace_id, r.flow_id, r.contact_id, r.step_id, r.step_seq, r.due_at,
             r.held_since, r.context, r.holdout, s.config, s.campaign_id,
             -- The winner once picked; before, a stable split of the runs over the variants.
             coalesce(s.winner_variant_id,
                      s.variant_ids[1 + (abs(hashtextextended(r.id::text || ':variant', 0)) % cardinality(s.variant_ids))::integer],
                      s.variant_id) as variant_id,
             c.email, c.attributes, c.consent_state, c.unsubscribed_at, c.erased_at,
             f.transactional, f.cap_action
      from unnest($1) as x(id)
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
      left join unnest($2) as u(id) on u.id = k.id
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
    from decided d
  $q$
  into v_out
  using p_runs, v_unmatched;
  return v_out;
end
$$;

revoke all on function private.advance_flow_send_email(uuid[]) from public, anon, authenticated;
