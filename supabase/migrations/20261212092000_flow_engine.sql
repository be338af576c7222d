-- The flow engine: runs, their history, enrolment from contact events, exit goals, and
-- private.advance_flows, the set-based tick.
--
-- A run is one contact's way through one version of a flow. It holds its current step and the
-- time that step is due (due_at: the time it was scheduled for, not when a tick got to it, so
-- a run held by a pause keeps its schedule and a send step can tell how late it is). Entering
-- a step computes its due time (a wait: after its delay or at the next time of day in the
-- contact's time zone; wait_for: its timeout; every other step: at once); a tick claims due
-- runs (for update skip locked), executes their steps kind by kind, one statement per kind for
-- the whole batch, records each outcome in flow_run_steps with a reason code, and moves each
-- run on. Runs that land on a step due at once are taken again in the next round of the same
-- tick, so a run goes through every step that does not wait in one tick.
--
-- Idempotency: a run's steps are numbered (step_seq); flow_run_steps is unique per (run, seq),
-- and a send is a campaign_recipients row unique per flow_run_steps row, so a tick that dies
-- repeats nothing (its transaction rolls back whole) and no two ticks take the same run.

-- time zones -------------------------------------------------------------------------------------

-- The names Postgres knows, copied once: reading pg_timezone_names per contact is slow, and an
-- unknown name must fall back to UTC rather than fail a tick.
create table private.time_zones (
  name text primary key
);

comment on table private.time_zones is 'IANA time zone names Postgres knows (contacts'' attributes.timezone is looked up here).';

insert into private.time_zones (name) select distinct name from pg_catalog.pg_timezone_names;

-- runs ---------------------------------------------------------------------------------------------

create table public.flow_runs (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null,
  flow_id uuid not null,
  version integer not null,
  contact_id uuid not null,
  -- 'contact', or the event's object (an order or checkout id, the custom event's id).
  entry_key text not null check (char_length(entry_key) between 1 and 200),
  status text not null default 'active' check (status in ('active', 'completed', 'exited', 'converted')),
  -- No foreign key (a step of a live version is never deleted; checking one on every move
  -- would cost the engine a lookup per run and step).
  step_id uuid,
  step_seq integer not null default 0,
  due_at timestamptz not null default now(),
  -- When the run reached its current step, and (wait_for) when the awaited event came.
  moved_at timestamptz not null default now(),
  event_at timestamptz,
  -- When a send step held by quiet hours or a cap was first due: its lateness counts from here.
  held_since timestamptz,
  entered_at timestamptz not null default now(),
  finished_at timestamptz,
  exit_reason text check (char_length(exit_reason) <= 100),
  event_id bigint,
  context jsonb not null default '{}'::jsonb check (jsonb_typeof(context) = 'object'),
  last_email_at timestamptz,
  test boolean not null default false,
  -- No foreign keys: the engine only writes runs of existing flows and contacts, and a key
  -- checked per row would cost entry and every step more than the row itself; statement
  -- triggers on flows and contacts delete a deleted one's runs (a contact moved to another
  -- workspace keeps its history in this one's flows).
  check (status <> 'active' or step_id is not null)
);

comment on table public.flow_runs is
  'One contact''s way through one version of a flow: current step, when it is due, how it ended.';

-- No contact runs twice in one flow at once (per entry key).
create unique index flow_runs_one_active_idx on public.flow_runs (flow_id, contact_id, entry_key)
  where status = 'active';

create index flow_runs_due_idx on public.flow_runs (due_at) where status = 'active';

create index flow_runs_contact_idx on public.flow_runs (contact_id, workspace_id, flow_id, entered_at);

create index flow_runs_flow_idx on public.flow_runs (flow_id, workspace_id, entered_at);

create index flow_runs_workspace_id_idx on public.flow_runs (workspace_id);

create index flow_runs_step_idx on public.flow_runs (step_id) where status = 'active';

-- history --------------------------------------------------------------------------------------

create table public.flow_run_steps (
  id bigint generated always as identity primary key,
  -- Goes with its run (a trigger on flow_runs deletes a deleted run's history, one statement
  -- for all of them); neither the run nor the step is a foreign key: the engine writes a row
  -- per run and step, and a key checked per row would cost it more than the row itself.
  run_id uuid not null,
  workspace_id uuid not null,
  flow_id uuid not null,
  step_id uuid,
  seq integer not null,
  kind text not null,
  -- The reason code of what happened at the step.
  outcome text not null check (outcome in (
    'waited', 'event_received', 'timed_out', 'branch_yes', 'branch_no', 'queued', 'stale',
    'suppressed', 'plan_limit', 'quiet_hours', 'capped', 'capped_skipped', 'filter_no_longer_matches',
    'updated', 'exited', 'exited_flows',
    'notified', 'goal', 'erased', 'flow_archived', 'left_by_other_flow'
  )),
  detail jsonb check (detail is null or (jsonb_typeof(detail) = 'object' and pg_catalog.pg_column_size(detail) <= 2000)),
  at timestamptz not null default now(),
  unique (run_id, seq)
);

comment on table public.flow_run_steps is
  'What happened to each run at each step, with a reason code (branch taken, queued, suppressed, stale, goal…).';

create index flow_run_steps_workspace_id_idx on public.flow_run_steps (workspace_id);

-- A deleted flow's or contact's runs go with it, one statement for all of them.
create function private.forget_flow_runs_of_flows()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.flow_runs r where r.flow_id in (select o.id from old_flows o);
  return null;
end
$$;

revoke all on function private.forget_flow_runs_of_flows() from public, anon, authenticated;

create trigger flows_forget_runs
  after delete on public.flows
  referencing old table as old_flows
  for each statement execute function private.forget_flow_runs_of_flows();

create function private.forget_flow_runs_of_contacts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.flow_runs r where r.contact_id in (select o.id from old_contacts o);
  return null;
end
$$;

revoke all on function private.forget_flow_runs_of_contacts() from public, anon, authenticated;

create trigger contacts_forget_flow_runs
  after delete on public.contacts
  referencing old table as old_contacts
  for each statement execute function private.forget_flow_runs_of_contacts();

-- A deleted run's history goes with it (its flow, contact or workspace was deleted).
create function private.forget_flow_run_history()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.flow_run_steps h where h.run_id in (select o.id from old_runs o);
  return null;
end
$$;

revoke all on function private.forget_flow_run_history() from public, anon, authenticated;

create trigger flow_runs_forget_history
  after delete on public.flow_runs
  referencing old table as old_runs
  for each statement execute function private.forget_flow_run_history();

-- A flow's email is a row of the campaign send ledger, one per visit of its step.
alter table public.campaign_recipients
  add column flow_run_step_id bigint;

comment on column public.campaign_recipients.flow_run_step_id is
  'For a flow''s email: the run''s step visit (public.flow_run_steps.id) it was queued by; unique, so a tick cannot queue it twice. Not a foreign key: the history may be deleted with its run while the ledger keeps the send.';

create unique index campaign_recipients_flow_run_step_idx on public.campaign_recipients (flow_run_step_id);

-- What a flow's email may show besides the contact: its run's event (a cart's items and link).
alter table public.campaign_recipients
  add column merge_data jsonb
    check (merge_data is null or (jsonb_typeof(merge_data) = 'object' and pg_catalog.pg_column_size(merge_data) <= 65536));

comment on column public.campaign_recipients.merge_data is
  'For a flow''s email: the triggering event''s properties, rendered as {{ event.… }} (a cart''s items and link).';

-- A campaign mails a contact once; a flow step's campaign once per visit of the step.
alter table public.campaign_recipients drop constraint campaign_recipients_campaign_id_contact_id_key;

create unique index campaign_recipients_campaign_contact_idx on public.campaign_recipients (campaign_id, contact_id)
  where flow_run_step_id is null;

create index campaign_recipients_campaign_contact_all_idx on public.campaign_recipients (campaign_id, contact_id);

-- when a step is due ------------------------------------------------------------------------------

-- The first time at or after p_from that is p_at o'clock in p_tz on one of p_weekdays (ISO).
create function private.next_time_of_day(p_from timestamptz, p_at text, p_weekdays integer[], p_tz text)
returns timestamptz
language sql
stable
set search_path = ''
as $$
  select min(t)
  from generate_series(0, 8) as g(n)
  cross join lateral (select (p_from at time zone p_tz)::date + g.n as d) as day
  cross join lateral (select (day.d + p_at::time) at time zone p_tz as t) as candidate
  where candidate.t >= p_from
    and (p_weekdays is null or extract(isodow from day.d)::integer = any (p_weekdays))
$$;

revoke all on function private.next_time_of_day(timestamptz, text, integer[], text) from public, anon, authenticated;

-- When a run that reaches a step at p_from (its schedule) is due there.
create function private.flow_step_due(p_kind text, p_config jsonb, p_attributes jsonb, p_tz text, p_from timestamptz)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
declare
  v_at timestamptz;
  v_date text;
  v_day date;
  v_tz text := coalesce(p_tz, 'UTC');
begin
  if p_kind = 'wait' then
    v_at := p_from + private.flow_duration(p_config);
    if p_config ? 'at' then
      v_at := private.next_time_of_day(v_at, p_config ->> 'at',
        case when p_config ? 'weekdays' then array(select jsonb_array_elements_text(p_config -> 'weekdays')::integer) end,
        v_tz);
    end if;
    return v_at;
  elsif p_kind = 'wait_for' then
    return p_from + private.flow_duration(p_config, 'timeout_');
  elsif p_kind = 'wait_until' then
    v_date := p_attributes ->> (p_config ->> 'attribute');
    if v_date is null or v_date !~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])' then
      return p_from;
    end if;
    v_day := make_date(substr(v_date, 1, 4)::integer, substr(v_date, 6, 2)::integer, 1)
             + (substr(v_date, 9, 2)::integer - 1);
    if coalesce((p_config ->> 'yearly')::boolean, false) then
      -- The next anniversary (a 29 February falls on the 28th in other years).
      v_day := v_day + make_interval(years => extract(year from p_from at time zone v_tz)::integer - extract(year from v_day)::integer);
      if (v_day + coalesce((p_config ->> 'offset_days')::integer, 0)) < (p_from at time zone v_tz)::date then
        v_day := v_day + interval '1 year';
      end if;
    end if;
    v_at := ((v_day + coalesce((p_config ->> 'offset_days')::integer, 0))
             + coalesce(p_config ->> 'at', '09:00')::time) at time zone v_tz;
    return greatest(v_at, p_from);
  end if;
  return p_from;
end
$$;

revoke all on function private.flow_step_due(text, jsonb, jsonb, text, timestamptz) from public, anon, authenticated;

-- counts on the workspace's channel -------------------------------------------------------------

-- Broadcasts the counts of the given flows on workspace:<id>:flows (event flow_counts).
create function private.broadcast_flow_counts(p_flow_ids uuid[])
returns void
language sql
security definer
set search_path = ''
as $$
  select count(realtime.send(
    jsonb_build_object('flow_id', s.flow_id, 'entered', s.entered, 'active', s.active,
                       'completed', s.completed, 'exited', s.exited, 'converted', s.converted,
                       'emails_queued', s.emails_queued, 'updated_at', s.updated_at),
    'flow_counts', format('workspace:%s:flows', s.workspace_id), true))
  from public.flow_stats s
  where s.flow_id = any (p_flow_ids)
$$;

revoke all on function private.broadcast_flow_counts(uuid[]) from public, anon, authenticated;

-- ending runs ------------------------------------------------------------------------------------

-- Ends the given active runs (goal reached, exited by another flow, archived, erased) with a
-- history row each and the counters moved.
create function private.exit_flow_runs(p_run_ids uuid[], p_status text, p_reason text)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
begin
  with ended as (
    update public.flow_runs r
    set status = p_status, finished_at = now(), exit_reason = p_reason, step_seq = r.step_seq + 1
    where r.id = any (p_run_ids) and r.status = 'active'
    returning r.id, r.workspace_id, r.flow_id, r.step_id, r.step_seq
  ),
  history as (
    insert into public.flow_run_steps (run_id, workspace_id, flow_id, step_id, seq, kind, outcome)
    select e.id, e.workspace_id, e.flow_id, e.step_id, e.step_seq, 'exit', p_reason from ended e
  ),
  counted as (
    update public.flow_stats s
    set active = s.active - e.n,
        exited = s.exited + case when p_status = 'exited' then e.n else 0 end,
        converted = s.converted + case when p_status = 'converted' then e.n else 0 end,
        updated_at = now()
    from (select flow_id, count(*) as n from ended group by flow_id) as e
    where s.flow_id = e.flow_id
  )
  select count(*) into v_count from ended;
  return v_count;
end
$$;

revoke all on function private.exit_flow_runs(uuid[], text, text) from public, anon, authenticated;

-- enrolment, goals and awaited events -----------------------------------------------------------

-- For each statement of new contact events: runs waiting for such an event go on, runs whose
-- flow has it as a goal end as converted, and contacts enter the active flows it triggers
-- (entry policy, "not in flow X", the entry filter, events at most two days old).
create function private.apply_contact_events()
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
             f.id as flow_id, f.workspace_id, f.version, e.contact_id, e.id as event_id,
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
                                    event_id, context)
      select k.workspace_id, k.flow_id, k.version, k.contact_id, k.entry_key, k.step_id,
             case when k.timed then private.flow_step_due(k.kind, k.config, k.attributes, z.name, now())
                  else now() + make_interval(secs => k.delay_seconds) end,
             k.event_id, k.properties
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

create trigger contact_events_apply
  after insert on public.contact_events
  referencing new table as new_events
  for each statement execute function private.apply_contact_events();

-- An erased contact leaves every flow; their events go, and their runs keep no context.
create function private.flows_forget_erased_contact()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.exit_flow_runs(
    array(select r.id from public.flow_runs r where r.contact_id = new.id and r.status = 'active'),
    'exited', 'erased');
  update public.flow_runs r
  set context = '{}'::jsonb, entry_key = r.id::text
  where r.contact_id = new.id;
  update public.campaign_recipients q
  set merge_data = null
  where q.contact_id = new.id and q.merge_data is not null;
  delete from public.contact_events e where e.contact_id = new.id;
  return null;
end
$$;

revoke all on function private.flows_forget_erased_contact() from public, anon, authenticated;

create trigger contacts_leave_flows_when_erased
  after update of erased_at on public.contacts
  for each row when (old.erased_at is null and new.erased_at is not null)
  execute function private.flows_forget_erased_contact();

-- the tick ---------------------------------------------------------------------------------------

-- Moves due runs of active flows, up to p_limit step executions, in rounds of at most p_batch
-- runs; answers how many steps were executed. Safe to run from any number of workers at once.
create function private.advance_flows(p_limit integer default 10000, p_batch integer default 5000)
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
             r.entered_at, r.held_since, r.context, s.kind, s.config, s.next_id, s.alt_id, s.campaign_id,
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

-- archiving -------------------------------------------------------------------------------------

-- → archived: every run still inside exits and queued mail is cancelled.
create function public.archive_flow(p_flow_id uuid)
returns public.flows
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_flow public.flows := private.flow_for_member(p_flow_id);
begin
  update public.flows set status = 'archived', archived_at = now() where id = v_flow.id returning * into v_flow;
  perform private.set_flow_campaigns(v_flow.id, array['sending', 'paused'], 'cancelled');
  perform private.exit_flow_runs(
    array(select r.id from public.flow_runs r where r.flow_id = v_flow.id and r.status = 'active'),
    'exited', 'flow_archived');
  return v_flow;
end
$$;

comment on function public.archive_flow(uuid) is
  'Archives a flow (members and above): runs inside exit, queued mail is cancelled; it cannot come back.';
-- grants -----------------------------------------------------------------------------------------

revoke all on public.flow_runs, public.flow_run_steps from public, anon, authenticated;

revoke all on private.time_zones from public, anon, authenticated;

grant select on public.flow_runs, public.flow_run_steps to authenticated;

grant all on public.flow_runs, public.flow_run_steps to service_role;

grant select on private.time_zones to service_role;

revoke all on function public.archive_flow(uuid) from public, anon;

grant execute on function public.archive_flow(uuid) to authenticated, service_role;

-- RLS --------------------------------------------------------------------------------------------

alter table public.flow_runs enable row level security;

alter table public.flow_run_steps enable row level security;

-- Members of any role may read their workspaces' runs; only the engine writes them.
create policy flow_runs_select_members on public.flow_runs
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' run history; only the engine writes it.
create policy flow_run_steps_select_members on public.flow_run_steps
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- the register of personal data -------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values
  ('private', 'time_zones', 'name', 'none', 'not_personal', null),
  ('public', 'flow_runs', 'entry_key', 'contact', 'tombstoned', 'an order, checkout or event id; the run''s own id after erasure'),
  ('public', 'flow_runs', 'status', 'none', 'not_personal', null),
  ('public', 'flow_runs', 'exit_reason', 'none', 'not_personal', null),
  ('public', 'flow_runs', 'context', 'contact', 'cleared', 'the triggering event''s properties (a cart, an order)'),
  ('public', 'flow_run_steps', 'kind', 'none', 'not_personal', null),
  ('public', 'flow_run_steps', 'outcome', 'none', 'not_personal', null),
  ('public', 'flow_run_steps', 'detail', 'none', 'not_personal', 'reason codes'),
  ('public', 'campaign_recipients', 'merge_data', 'contact', 'cleared', 'a flow email''s event (a cart)');

-- Where pg_cron exists (Supabase), the database ticks every minute by itself; elsewhere the
-- edge's cron endpoint (GET /api/v1/cron/flows) does.
do $$
begin
  if exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
    perform cron.schedule('growthbase-flows', '* * * * *', 'select private.advance_flows(20000)');
  end if;
end
$$;
