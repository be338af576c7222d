-- Flows call Make.com: a `call_make` step enqueues an automation through the automations
-- outbox (the same signed dispatch, retries, callback and credit charge as a member's), and the
-- run goes on at once; the automation's status and result arrive by the Make.com callback.

alter table public.flow_steps drop constraint flow_steps_kind_check;

alter table public.flow_steps add constraint flow_steps_kind_check check (kind in (
    'wait', 'wait_until', 'wait_for', 'branch', 'send_email', 'update_contact', 'notify_team',
    'call_make', 'exit', 'exit_flows'
  ));

alter table public.flow_run_steps drop constraint flow_run_steps_outcome_check;

alter table public.flow_run_steps add constraint flow_run_steps_outcome_check check (outcome in (
    'waited', 'event_received', 'timed_out', 'branch_yes', 'branch_no', 'queued', 'stale',
    'suppressed', 'plan_limit', 'holdout', 'quiet_hours', 'capped', 'capped_skipped', 'filter_no_longer_matches',
    'updated', 'exited', 'exited_flows', 'make_queued', 'make_skipped', 'no_credits',
    'notified', 'goal', 'erased', 'flow_archived', 'left_by_other_flow'
  ));

-- A flow's automation (no member behind it: started_by is null) names the run and its visit of
-- the step, so one visit never makes two calls.
alter table public.automations add column flow_run_id uuid;

alter table public.automations add column flow_step_seq integer;

comment on column public.automations.flow_run_id is
  'The flow run whose call_make step started this automation (null when a member started it).';

comment on column public.automations.flow_step_seq is
  'The run''s visit of the step (flow_run_steps.seq) that started it.';

create unique index automations_flow_visit_idx
  on public.automations (flow_run_id, flow_step_seq)
  where flow_run_id is not null;

-- call_make is checked like every other step ------------------------------------------------------

create or replace function private.validate_flow_step(p_workspace_id uuid, p_step jsonb)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_key text := p_step ->> 'key';
  v_kind text := p_step ->> 'kind';
  v_config jsonb := coalesce(p_step -> 'config', '{}'::jsonb);
  v_uuid text := '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$';
begin
  if jsonb_typeof(v_config) <> 'object' then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: config must be an object', v_key));
  end if;
  if v_kind = 'wait' then
    if v_config ? 'at' and (jsonb_typeof(v_config -> 'at') <> 'string' or (v_config ->> 'at') !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$') then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: "at" is a time of day, HH:MM', v_key));
    end if;
    if v_config ? 'weekdays' and (jsonb_typeof(v_config -> 'weekdays') <> 'array'
         or jsonb_array_length(v_config -> 'weekdays') not between 1 and 7
         or exists (select 1 from jsonb_array_elements(v_config -> 'weekdays') d
                    where jsonb_typeof(d) <> 'number' or d::text not in ('1', '2', '3', '4', '5', '6', '7'))) then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: weekdays are ISO day numbers, 1 (Monday) to 7', v_key));
    end if;
    if private.flow_duration(v_config) <= interval '0' and not v_config ? 'at' then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: a wait needs minutes, hours or days, or "at"', v_key));
    end if;
  elsif v_kind = 'wait_until' then
    if jsonb_typeof(v_config -> 'attribute') is distinct from 'string' or char_length(v_config ->> 'attribute') not between 1 and 100 then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: wait_until needs the date attribute', v_key));
    end if;
    if v_config ? 'offset_days' and (jsonb_typeof(v_config -> 'offset_days') <> 'number'
         or (v_config ->> 'offset_days')::numeric not between -365 and 365) then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: offset_days is from -365 to 365', v_key));
    end if;
    if v_config ? 'at' and (jsonb_typeof(v_config -> 'at') <> 'string' or (v_config ->> 'at') !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$') then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: "at" is a time of day, HH:MM', v_key));
    end if;
  elsif v_kind = 'wait_for' then
    if not private.valid_flow_event(v_config -> 'event') then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: wait_for needs "event": {"type", "name"?}', v_key));
    end if;
    if private.flow_duration(v_config, 'timeout_') <= interval '0' then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: wait_for needs timeout_minutes, timeout_hours or timeout_days', v_key));
    end if;
  elsif v_kind = 'branch' then
    if (v_config ? 'rule')::int + (v_config ? 'percent')::int + (v_config ? 'event')::int <> 1 then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: a branch has exactly one of rule, percent, event', v_key));
    end if;
    if v_config ? 'rule' then
      perform private.segment_condition(v_config -> 'rule');
    elsif v_config ? 'percent' then
      if jsonb_typeof(v_config -> 'percent') <> 'number' or (v_config ->> 'percent')::numeric not between 1 and 99
         or (v_config ->> 'percent')::numeric <> trunc((v_config ->> 'percent')::numeric) then
        perform private.fail(422, 'invalid_flow_step', format('Step %s: percent is a whole number from 1 to 99', v_key));
      end if;
    elsif not private.valid_flow_event(v_config -> 'event') then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: "event" is {"type", "name"?}', v_key));
    end if;
  elsif v_kind = 'send_email' then
    if coalesce(v_config ->> 'template_id', '') !~ v_uuid or not exists (
         select 1 from public.email_templates t
         where t.id = (v_config ->> 'template_id')::uuid and t.workspace_id = p_workspace_id) then
      perform private.fail(422, 'invalid_reference', format('Step %s: template not found in this workspace', v_key));
    end if;
    if coalesce(v_config ->> 'sender_identity_id', '') !~ v_uuid or not exists (
         select 1 from public.sender_identities s
         where s.id = (v_config ->> 'sender_identity_id')::uuid and s.workspace_id = p_workspace_id) then
      perform private.fail(422, 'invalid_reference', format('Step %s: sender identity not found in this workspace', v_key));
    end if;
    if jsonb_typeof(v_config -> 'from_email') is distinct from 'string'
       or (v_config ->> 'from_email') !~ '^[^@\s]+@[^@\s]+$' or char_length(v_config ->> 'from_email') > 320 then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: from_email is required', v_key));
    end if;
    if (v_config ? 'from_name' and (jsonb_typeof(v_config -> 'from_name') <> 'string'
          or char_length(v_config ->> 'from_name') > 200 or (v_config ->> 'from_name') ~ '[\r\n]'))
       or (v_config ? 'reply_to' and (jsonb_typeof(v_config -> 'reply_to') <> 'string'
          or (v_config ->> 'reply_to') !~ '^[^@\s]+@[^@\s]+$')) then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: from_name or reply_to is malformed', v_key));
    end if;
    if v_config ? 'max_lateness_minutes' and (jsonb_typeof(v_config -> 'max_lateness_minutes') <> 'number'
         or (v_config ->> 'max_lateness_minutes')::numeric not between 1 and 525600) then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: max_lateness_minutes is from 1 to 525600', v_key));
    end if;
  elsif v_kind = 'update_contact' then
    if exists (select 1 from jsonb_object_keys(v_config) k
               where k not in ('add_tags', 'remove_tags', 'set_attributes', 'add_to_list', 'remove_from_list'))
       or (v_config ? 'add_tags' and (jsonb_typeof(v_config -> 'add_tags') <> 'array' or exists (
             select 1 from jsonb_array_elements(v_config -> 'add_tags') t
             where jsonb_typeof(t) <> 'string' or char_length(t #>> '{}') not between 1 and 100)))
       or (v_config ? 'remove_tags' and (jsonb_typeof(v_config -> 'remove_tags') <> 'array' or exists (
             select 1 from jsonb_array_elements(v_config -> 'remove_tags') t
             where jsonb_typeof(t) <> 'string' or char_length(t #>> '{}') not between 1 and 100)))
       or (v_config ? 'set_attributes' and jsonb_typeof(v_config -> 'set_attributes') <> 'object')
       or v_config = '{}'::jsonb then
      perform private.fail(422, 'invalid_flow_step', format(
        'Step %s: update_contact takes add_tags, remove_tags (lists of tags), set_attributes (an object), add_to_list, remove_from_list', v_key));
    end if;
    if v_config ? 'add_to_list' and v_config ? 'remove_from_list' then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: one list change per step', v_key));
    end if;
    if (v_config ? 'add_to_list' or v_config ? 'remove_from_list') and (
         coalesce(coalesce(v_config ->> 'add_to_list', v_config ->> 'remove_from_list'), '') !~ v_uuid
         or not exists (select 1 from public.email_lists l
                        where l.id = coalesce(v_config ->> 'add_to_list', v_config ->> 'remove_from_list')::uuid
                          and l.workspace_id = p_workspace_id)) then
      perform private.fail(422, 'invalid_reference', format('Step %s: list not found in this workspace', v_key));
    end if;
  elsif v_kind = 'notify_team' then
    if jsonb_typeof(v_config -> 'title') is distinct from 'string' or char_length(v_config ->> 'title') not between 1 and 200
       or (v_config ? 'body' and (jsonb_typeof(v_config -> 'body') <> 'string' or char_length(v_config ->> 'body') > 2000))
       or (v_config ? 'min_role' and coalesce(v_config ->> 'min_role', '') not in ('owner', 'admin', 'member', 'viewer')) then
      perform private.fail(422, 'invalid_flow_step', format(
        'Step %s: notify_team needs a title (and an optional body and min_role: owner, admin, member or viewer)', v_key));
    end if;
  elsif v_kind = 'call_make' then
    if exists (select 1 from jsonb_object_keys(v_config) k where k not in ('project_id', 'type', 'input'))
       or jsonb_typeof(v_config -> 'type') is distinct from 'string'
       or not exists (select 1 from public.automation_prices ap where ap.type = v_config ->> 'type')
       or (v_config ? 'input' and (jsonb_typeof(v_config -> 'input') <> 'object'
             or pg_catalog.pg_column_size(v_config -> 'input') > 16384)) then
      perform private.fail(422, 'invalid_flow_step', format(
        'Step %s: call_make needs project_id, an automation type and an optional input object (at most 16 KiB)', v_key));
    end if;
    if coalesce(v_config ->> 'project_id', '') !~ v_uuid or not exists (
         select 1 from public.projects p
         where p.id = (v_config ->> 'project_id')::uuid and p.workspace_id = p_workspace_id) then
      perform private.fail(422, 'invalid_reference', format('Step %s: project not found in this workspace', v_key));
    end if;
  elsif v_kind = 'exit_flows' then
    if v_config ? 'flow_ids' and (jsonb_typeof(v_config -> 'flow_ids') <> 'array' or exists (
         select 1 from jsonb_array_elements(v_config -> 'flow_ids') f
         where jsonb_typeof(f) <> 'string' or (f #>> '{}') !~ v_uuid
            or not exists (select 1 from public.flows o where o.id = (f #>> '{}')::uuid and o.workspace_id = p_workspace_id))) then
      perform private.fail(422, 'invalid_reference', format('Step %s: flow_ids must be flows of this workspace', v_key));
    end if;
  elsif v_kind <> 'exit' or v_kind is null then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: kind is wait, wait_until, wait_for, branch, send_email, update_contact, notify_team, call_make, exit or exit_flows', v_key));
  end if;
end
$$;

revoke all on function private.validate_flow_step(uuid, jsonb) from public, anon, authenticated;

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

    -- call_make: one Make.com automation per visit, charged as a member's would be (the
    -- workspace's credits, in due order; a visit they do not cover records no_credits), then
    -- dispatched, signed and retried by the automations outbox like any other, its result
    -- arriving through the Make.com callback. Holdout runs and erased contacts call nothing.
    if 'call_make' = any (v_kinds) then
    with visits as (
      select r.id as run_id, r.workspace_id, r.flow_id, r.contact_id, r.step_seq, s.project_id_text,
             s.type, s.input, ap.credits,
             sum(ap.credits) over (partition by r.workspace_id order by r.due_at, r.id) as running
      from public.flow_runs r
      join lateral (
        select st.config ->> 'project_id' as project_id_text, st.config ->> 'type' as type,
               coalesce(st.config -> 'input', '{}'::jsonb) as input
        from public.flow_steps st where st.id = r.step_id and st.kind = 'call_make'
      ) as s on true
      join public.automation_prices ap on ap.type = s.type
      join public.projects p on p.id::text = s.project_id_text and p.workspace_id = r.workspace_id
      join public.contacts c on c.id = r.contact_id and c.erased_at is null
      where r.id = any (v_ids) and r.status = 'active' and not r.holdout
    ),
    made as (
      insert into public.automations (workspace_id, project_id, type, input, credits_charged, flow_run_id, flow_step_seq)
      select v.workspace_id, v.project_id_text::uuid, v.type,
             v.input || jsonb_build_object('flow', jsonb_build_object(
               'flow_id', v.flow_id, 'run_id', v.run_id, 'contact_id', v.contact_id)),
             v.credits, v.run_id, v.step_seq + 1
      from visits v join public.workspaces w on w.id = v.workspace_id
      where v.running <= w.credits_remaining
      on conflict (flow_run_id, flow_step_seq) where flow_run_id is not null do nothing
      returning id, workspace_id, credits_charged
    ),
    dispatched as (
      insert into private.outbox (topic, automation_id)
      select 'make.dispatch', m.id from made m
    ),
    debited as (
      update public.workspaces w
      set credits_remaining = w.credits_remaining - d.total
      from (select m.workspace_id, sum(m.credits_charged) as total from made m group by m.workspace_id) as d
      where w.id = d.workspace_id
      returning w.id, w.credits_remaining
    )
    insert into public.credit_ledger (workspace_id, delta, balance_after, reason, automation_id)
    select m.workspace_id, -m.credits_charged,
           d.credits_remaining + sum(m.credits_charged) over (partition by m.workspace_id)
             - sum(m.credits_charged) over (partition by m.workspace_id order by m.id rows between unbounded preceding and current row),
           'automation_charge', m.id
    from made m join debited d on d.id = m.workspace_id;
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
               when 'call_make' then
                 case when k.holdout then 'holdout'
                      when mk.id is not null then 'make_queued'
                      when k.erased_at is not null then 'make_skipped'
                      when not exists (select 1 from public.projects p
                                       where p.id::text = k.config ->> 'project_id' and p.workspace_id = k.workspace_id)
                        or not exists (select 1 from public.automation_prices ap where ap.type = k.config ->> 'type')
                        then 'make_skipped'
                      else 'no_credits' end
               when 'exit' then 'exited'
               when 'exit_flows' then 'exited_flows'
               else 'waited'
             end as outcome,
             case when m.verdict like 'suppressed:%' then jsonb_build_object('reason', split_part(m.verdict, ':', 2))
                  when mk.id is not null then jsonb_build_object('automation_id', mk.id) end as detail,
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
      left join public.automations mk
        on k.kind = 'call_make' and mk.flow_run_id = k.id and mk.flow_step_seq = k.step_seq + 1
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

-- test mode shows the call it would make -----------------------------------------------------

create or replace function public.test_flow(p_flow_id uuid, p_contact_id uuid, p_events text[] default '{}')
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_flow public.flows;
  v_contact public.contacts;
  v_step public.flow_steps;
  v_out jsonb := '[]'::jsonb;
  v_outcome text;
  v_next uuid;
  v_match boolean;
  v_detail jsonb;
  v_visits integer := 0;
begin
  select * into v_flow from public.flows f where f.id = p_flow_id;
  if v_flow.id is null or v_flow.workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'flow_not_found', 'Flow not found');
  end if;
  if v_flow.workspace_id not in (select private.user_workspace_ids_at_least('member')) then
    perform private.fail(403, 'insufficient_role', 'Viewers cannot test flows');
  end if;
  select * into v_contact from public.contacts c
  where c.id = p_contact_id and c.workspace_id = v_flow.workspace_id and c.erased_at is null;
  if v_contact.id is null then
    perform private.fail(404, 'contact_not_found', 'Contact not found');
  end if;
  select * into v_step from public.flow_steps s where s.flow_id = v_flow.id and s.version = v_flow.version and s.is_entry;
  while v_step.id is not null and v_visits < 50 loop
    v_visits := v_visits + 1;
    v_detail := null;
    v_next := v_step.next_id;
    if v_step.kind in ('wait', 'wait_until') then
      v_outcome := 'waited';
      v_detail := jsonb_build_object('until', private.flow_step_due(v_step.kind, v_step.config, v_contact.attributes,
        (select z.name from private.time_zones z where z.name = v_contact.attributes ->> 'timezone'), now()));
    elsif v_step.kind = 'wait_for' then
      v_match := coalesce(v_step.config -> 'event' ->> 'name', v_step.config -> 'event' ->> 'type') = any (coalesce(p_events, '{}'));
      v_outcome := case when v_match then 'event_received' else 'timed_out' end;
      v_next := case when v_match then v_step.next_id else v_step.alt_id end;
    elsif v_step.kind = 'branch' then
      if v_step.config ? 'rule' then
        execute format('select exists (select 1 from public.contacts c where c.id = $2 and c.workspace_id = $1 and %s)',
                       private.segment_condition(v_step.config -> 'rule'))
        into v_match using v_flow.workspace_id, v_contact.id;
      elsif v_step.config ? 'percent' then
        v_match := abs(hashtextextended(v_contact.id::text || ':' || v_step.id::text, 0)) % 100 < (v_step.config ->> 'percent')::integer;
        v_detail := jsonb_build_object('note', 'a real run splits by its own id');
      else
        v_match := coalesce(v_step.config -> 'event' ->> 'name', v_step.config -> 'event' ->> 'type') = any (coalesce(p_events, '{}'));
      end if;
      v_outcome := case when v_match then 'branch_yes' else 'branch_no' end;
      v_next := case when v_match then v_step.next_id else v_step.alt_id end;
    elsif v_step.kind = 'send_email' then
      v_outcome := case
        when v_contact.email is null then 'suppressed'
        when v_contact.unsubscribed_at is not null then 'suppressed'
        when not private.may_market((select ps.marketing_consent from public.workspace_privacy_settings ps
                                     where ps.workspace_id = v_flow.workspace_id),
                                    v_contact.consent_state, v_contact.attributes) then 'suppressed'
        when exists (select 1 from public.email_suppressions x
                     where x.workspace_id = v_flow.workspace_id and x.email = v_contact.email) then 'suppressed'
        else 'queued' end;
      v_detail := (select jsonb_build_object('template_id', t.id, 'subject', t.subject, 'html', t.html, 'text', t.text,
                                            'from_email', v_step.config ->> 'from_email', 'to', v_contact.email)
                   from public.email_templates t where t.id = v_step.template_id);
    elsif v_step.kind = 'update_contact' then
      v_outcome := 'updated';
      v_detail := v_step.config;
    elsif v_step.kind = 'call_make' then
      v_outcome := 'make_queued';
      v_detail := jsonb_build_object('type', v_step.config ->> 'type', 'project_id', v_step.config ->> 'project_id');
    elsif v_step.kind = 'notify_team' then
      v_outcome := 'notified';
    elsif v_step.kind = 'exit_flows' then
      v_outcome := 'exited_flows';
    else
      v_outcome := 'exited';
      v_next := null;
    end if;
    v_out := v_out || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
      'step', v_step.key, 'kind', v_step.kind, 'outcome', v_outcome,
      case when v_step.kind = 'send_email' then 'email' else 'detail' end, v_detail)));
    select * into v_step from public.flow_steps s where s.id = v_next;
  end loop;
  return v_out;
end
$$;

comment on function public.test_flow(uuid, uuid, text[]) is
  'Test mode (members and above): walks a contact through a flow''s current version with time skipped and nothing changed, showing each step and the email it would send or the Make.com call it would make.';
