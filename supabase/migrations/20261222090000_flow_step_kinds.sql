-- Flow step kinds, one function each: a kind's check (`private.validate_flow_step_<kind>`), its
-- shape in the graph (`private.flow_step_alt`, `private.flow_step_waits`) and its execution in
-- a tick (`private.advance_flow_<kind>`). `private.advance_flows` and
-- `private.validate_flow_step` only dispatch by kind, so the next change to a kind redefines
-- that kind's functions and nothing else. No behaviour changes here.
--
-- A tick stays set-based: it claims a batch of due runs, hands each kind its runs (one call per
-- kind per batch, `exit_flows` first so a run it ends is neither mailed nor moved), and records
-- every kind's outcomes, history and moves in one statement.

-- What a kind's execution answers for each run: the reason code, which way the run goes
-- (`next`, `alt`, `hold` at the step until hold_until, `exit` as exited), a detail for the
-- history, the time the next step's delay counts from (default: when this step was due), and
-- the history row's id when the kind already used it (a send's ledger row names it).
create type private.flow_step_result as (
  run_id uuid,
  outcome text,
  route text,
  detail jsonb,
  hold_until timestamptz,
  base_at timestamptz,
  history_id bigint
);

comment on type private.flow_step_result is
  'One run''s outcome at its step, as a step kind''s private.advance_flow_<kind> answers it to private.advance_flows.';

-- What a kind's check gets: the flow's workspace, the step's key and its config.
create type private.flow_step_check as (
  workspace_id uuid,
  key text,
  config jsonb
);

comment on type private.flow_step_check is
  'A step as private.validate_flow_step hands it to its kind''s private.validate_flow_step_<kind>.';

-- checks, one per kind -------------------------------------------------------------------------------
--
-- Each takes the step to check as a private.flow_step_check: the flow's workspace (for
-- references), the step's key (for the message) and its config.

create function private.validate_flow_step_wait(p_check private.flow_step_check)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if p_check.config ? 'at' and (jsonb_typeof(p_check.config -> 'at') <> 'string' or (p_check.config ->> 'at') !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$') then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: "at" is a time of day, HH:MM', p_check.key));
  end if;
  if p_check.config ? 'weekdays' and (jsonb_typeof(p_check.config -> 'weekdays') <> 'array'
       or jsonb_array_length(p_check.config -> 'weekdays') not between 1 and 7
       or exists (select 1 from jsonb_array_elements(p_check.config -> 'weekdays') d
                  where jsonb_typeof(d) <> 'number' or d::text not in ('1', '2', '3', '4', '5', '6', '7'))) then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: weekdays are ISO day numbers, 1 (Monday) to 7', p_check.key));
  end if;
  if private.flow_duration(p_check.config) <= interval '0' and not p_check.config ? 'at' then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: a wait needs minutes, hours or days, or "at"', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_wait(private.flow_step_check) from public, anon, authenticated;

create function private.validate_flow_step_wait_until(p_check private.flow_step_check)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if jsonb_typeof(p_check.config -> 'attribute') is distinct from 'string' or char_length(p_check.config ->> 'attribute') not between 1 and 100 then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: wait_until needs the date attribute', p_check.key));
  end if;
  if p_check.config ? 'offset_days' and (jsonb_typeof(p_check.config -> 'offset_days') <> 'number'
       or (p_check.config ->> 'offset_days')::numeric not between -365 and 365) then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: offset_days is from -365 to 365', p_check.key));
  end if;
  if p_check.config ? 'at' and (jsonb_typeof(p_check.config -> 'at') <> 'string' or (p_check.config ->> 'at') !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$') then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: "at" is a time of day, HH:MM', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_wait_until(private.flow_step_check) from public, anon, authenticated;

create function private.validate_flow_step_wait_for(p_check private.flow_step_check)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if not private.valid_flow_event(p_check.config -> 'event') then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: wait_for needs "event": {"type", "name"?}', p_check.key));
  end if;
  if private.flow_duration(p_check.config, 'timeout_') <= interval '0' then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: wait_for needs timeout_minutes, timeout_hours or timeout_days', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_wait_for(private.flow_step_check) from public, anon, authenticated;

create function private.validate_flow_step_branch(p_check private.flow_step_check)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if (p_check.config ? 'rule')::int + (p_check.config ? 'percent')::int + (p_check.config ? 'event')::int <> 1 then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: a branch has exactly one of rule, percent, event', p_check.key));
  end if;
  if p_check.config ? 'rule' then
    perform private.segment_condition(p_check.config -> 'rule');
  elsif p_check.config ? 'percent' then
    if jsonb_typeof(p_check.config -> 'percent') <> 'number' or (p_check.config ->> 'percent')::numeric not between 1 and 99
       or (p_check.config ->> 'percent')::numeric <> trunc((p_check.config ->> 'percent')::numeric) then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: percent is a whole number from 1 to 99', p_check.key));
    end if;
  elsif not private.valid_flow_event(p_check.config -> 'event') then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: "event" is {"type", "name"?}', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_branch(private.flow_step_check) from public, anon, authenticated;

create function private.validate_flow_step_send_email(p_check private.flow_step_check)
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
end
$$;

revoke all on function private.validate_flow_step_send_email(private.flow_step_check) from public, anon, authenticated;

create function private.validate_flow_step_update_contact(p_check private.flow_step_check)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_uuid text := '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$';
begin
  if exists (select 1 from jsonb_object_keys(p_check.config) k
             where k not in ('add_tags', 'remove_tags', 'set_attributes', 'add_to_list', 'remove_from_list'))
     or (p_check.config ? 'add_tags' and (jsonb_typeof(p_check.config -> 'add_tags') <> 'array' or exists (
           select 1 from jsonb_array_elements(p_check.config -> 'add_tags') t
           where jsonb_typeof(t) <> 'string' or char_length(t #>> '{}') not between 1 and 100)))
     or (p_check.config ? 'remove_tags' and (jsonb_typeof(p_check.config -> 'remove_tags') <> 'array' or exists (
           select 1 from jsonb_array_elements(p_check.config -> 'remove_tags') t
           where jsonb_typeof(t) <> 'string' or char_length(t #>> '{}') not between 1 and 100)))
     or (p_check.config ? 'set_attributes' and jsonb_typeof(p_check.config -> 'set_attributes') <> 'object')
     or p_check.config = '{}'::jsonb then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: update_contact takes add_tags, remove_tags (lists of tags), set_attributes (an object), add_to_list, remove_from_list', p_check.key));
  end if;
  if p_check.config ? 'add_to_list' and p_check.config ? 'remove_from_list' then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: one list change per step', p_check.key));
  end if;
  if (p_check.config ? 'add_to_list' or p_check.config ? 'remove_from_list') and (
       coalesce(coalesce(p_check.config ->> 'add_to_list', p_check.config ->> 'remove_from_list'), '') !~ v_uuid
       or not exists (select 1 from public.email_lists l
                      where l.id = coalesce(p_check.config ->> 'add_to_list', p_check.config ->> 'remove_from_list')::uuid
                        and l.workspace_id = p_check.workspace_id)) then
    perform private.fail(422, 'invalid_reference', format('Step %s: list not found in this workspace', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_update_contact(private.flow_step_check) from public, anon, authenticated;

create function private.validate_flow_step_notify_team(p_check private.flow_step_check)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if jsonb_typeof(p_check.config -> 'title') is distinct from 'string' or char_length(p_check.config ->> 'title') not between 1 and 200
     or (p_check.config ? 'body' and (jsonb_typeof(p_check.config -> 'body') <> 'string' or char_length(p_check.config ->> 'body') > 2000))
     or (p_check.config ? 'min_role' and coalesce(p_check.config ->> 'min_role', '') not in ('owner', 'admin', 'member', 'viewer')) then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: notify_team needs a title (and an optional body and min_role: owner, admin, member or viewer)', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_notify_team(private.flow_step_check) from public, anon, authenticated;

create function private.validate_flow_step_call_make(p_check private.flow_step_check)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_uuid text := '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$';
begin
  if exists (select 1 from jsonb_object_keys(p_check.config) k where k not in ('project_id', 'type', 'input'))
     or jsonb_typeof(p_check.config -> 'type') is distinct from 'string'
     or not exists (select 1 from public.automation_prices ap where ap.type = p_check.config ->> 'type')
     or (p_check.config ? 'input' and (jsonb_typeof(p_check.config -> 'input') <> 'object'
           or pg_catalog.pg_column_size(p_check.config -> 'input') > 16384)) then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: call_make needs project_id, an automation type and an optional input object (at most 16 KiB)', p_check.key));
  end if;
  if coalesce(p_check.config ->> 'project_id', '') !~ v_uuid or not exists (
       select 1 from public.projects p
       where p.id = (p_check.config ->> 'project_id')::uuid and p.workspace_id = p_check.workspace_id) then
    perform private.fail(422, 'invalid_reference', format('Step %s: project not found in this workspace', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_call_make(private.flow_step_check) from public, anon, authenticated;

create function private.validate_flow_step_exit(p_check private.flow_step_check)
returns void
language sql
stable
security definer
set search_path = ''
as $$
  select null::void
$$;

revoke all on function private.validate_flow_step_exit(private.flow_step_check) from public, anon, authenticated;

create function private.validate_flow_step_exit_flows(p_check private.flow_step_check)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_uuid text := '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$';
begin
  if p_check.config ? 'flow_ids' and (jsonb_typeof(p_check.config -> 'flow_ids') <> 'array' or exists (
       select 1 from jsonb_array_elements(p_check.config -> 'flow_ids') f
       where jsonb_typeof(f) <> 'string' or (f #>> '{}') !~ v_uuid
          or not exists (select 1 from public.flows o where o.id = (f #>> '{}')::uuid and o.workspace_id = p_check.workspace_id))) then
    perform private.fail(422, 'invalid_reference', format('Step %s: flow_ids must be flows of this workspace', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_exit_flows(private.flow_step_check) from public, anon, authenticated;

-- A step's check: its config is an object and its kind's own check passes. The kinds are the
-- ones with a check function.
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
begin
  if jsonb_typeof(v_config) <> 'object' then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: config must be an object', v_key));
  end if;
  if v_kind is null or v_kind !~ '^[a-z_]{1,40}$'
     or pg_catalog.to_regprocedure(format('private.validate_flow_step_%s(private.flow_step_check)', v_kind)) is null then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: kind is %s', v_key, (
      select string_agg(substr(p.proname, 20), ', ' order by p.proname)
      from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'private' and p.proname like 'validate\_flow\_step\_%')));
  end if;
  execute format('select private.%I($1)', 'validate_flow_step_' || v_kind)
    using row(p_workspace_id, v_key, v_config)::private.flow_step_check;
end
$$;

revoke all on function private.validate_flow_step(uuid, jsonb) from public, anon, authenticated;

-- shape in the graph ---------------------------------------------------------------------------------

-- Whether a step has a second way out: `required` (branch: the default; wait_for: the
-- timeout), `forbidden`, or `terminal` (exit: neither next nor alt).
create function private.flow_step_alt(p_kind text, p_config jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
  select case when p_kind in ('branch', 'wait_for') then 'required'
              when p_kind = 'exit' then 'terminal'
              else 'forbidden' end
$$;

revoke all on function private.flow_step_alt(text, jsonb) from public, anon, authenticated;

-- Whether a step waits (a cycle through it cannot spin within one tick).
create function private.flow_step_waits(p_kind text, p_config jsonb)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_kind in ('wait', 'wait_for')
$$;

revoke all on function private.flow_step_waits(text, jsonb) from public, anon, authenticated;

-- Checks a whole graph: 1 to 200 steps with unique keys, each valid, edges to existing steps,
-- a second way out exactly where the kind has one, nothing after an exit, and every cycle
-- passing through a step that waits (so no run can loop within one tick).
create or replace function private.validate_flow_graph(p_workspace_id uuid, p_steps jsonb)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_step jsonb;
  v_bad text;
begin
  if jsonb_typeof(p_steps) is distinct from 'array' or jsonb_array_length(p_steps) = 0 then
    perform private.fail(422, 'invalid_flow_graph', 'steps must be a non-empty array (the first step is the entry)');
  end if;
  if jsonb_array_length(p_steps) > 200 then
    perform private.fail(422, 'too_many_steps', 'A flow has at most 200 steps');
  end if;
  for v_step in select value from jsonb_array_elements(p_steps) loop
    if jsonb_typeof(v_step) <> 'object' or jsonb_typeof(v_step -> 'key') is distinct from 'string'
       or (v_step ->> 'key') !~ '^[a-z0-9][a-z0-9_-]{0,63}$' then
      perform private.fail(422, 'invalid_flow_step', 'Every step needs a key: lower-case letters, digits, _ or -, at most 64');
    end if;
    if (v_step ? 'next' and jsonb_typeof(v_step -> 'next') not in ('string', 'null'))
       or (v_step ? 'alt' and jsonb_typeof(v_step -> 'alt') not in ('string', 'null'))
       or jsonb_typeof(v_step -> 'kind') is distinct from 'string' then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: kind, next and alt are strings', v_step ->> 'key'));
    end if;
    perform private.validate_flow_step(p_workspace_id, v_step);
  end loop;
  select s ->> 'key' into v_bad from jsonb_array_elements(p_steps) s group by 1 having count(*) > 1 limit 1;
  if v_bad is not null then
    perform private.fail(422, 'invalid_flow_graph', format('Step key %s is used twice', v_bad));
  end if;
  select coalesce(s ->> 'key', '') into v_bad
  from jsonb_array_elements(p_steps) s
  where (s ->> 'next' is not null and s ->> 'next' not in (select t ->> 'key' from jsonb_array_elements(p_steps) t))
     or (s ->> 'alt' is not null and s ->> 'alt' not in (select t ->> 'key' from jsonb_array_elements(p_steps) t))
  limit 1;
  if v_bad is not null then
    perform private.fail(422, 'invalid_flow_graph', format('Step %s points at a step that does not exist', v_bad));
  end if;
  select s ->> 'key' into v_bad from jsonb_array_elements(p_steps) s
  where private.flow_step_alt(s ->> 'kind', coalesce(s -> 'config', '{}'::jsonb)) = 'required' and s ->> 'alt' is null limit 1;
  if v_bad is not null then
    perform private.fail(422, 'missing_default_branch',
      format('Step %s needs "alt": the default branch (for wait_for, the timeout path)', v_bad));
  end if;
  select s ->> 'key' into v_bad from jsonb_array_elements(p_steps) s
  cross join lateral (select private.flow_step_alt(s ->> 'kind', coalesce(s -> 'config', '{}'::jsonb)) as alt) as a
  where (a.alt = 'terminal' and (s ->> 'next' is not null or s ->> 'alt' is not null))
     or (a.alt <> 'required' and s ->> 'alt' is not null) limit 1;
  if v_bad is not null then
    perform private.fail(422, 'invalid_flow_graph', format(
      'Step %s: only a step with two ways out (branch, wait_for) has "alt", and exit has no next', v_bad));
  end if;
  -- Edges between steps that do not wait; a cycle among them would never wait.
  with recursive steps as (
    select s ->> 'key' as key, s ->> 'next' as next, s ->> 'alt' as alt,
           private.flow_step_waits(s ->> 'kind', coalesce(s -> 'config', '{}'::jsonb)) as waits
    from jsonb_array_elements(p_steps) s
  ),
  edges as (
    select s.key as src, e.dst
    from steps s
    cross join lateral (values (s.next), (s.alt)) as e(dst)
    where e.dst is not null and not s.waits
      and e.dst in (select t.key from steps t where not t.waits)
  ),
  reach as (
    select src, dst from edges
    union
    select r.src, e.dst from reach r join edges e on e.src = r.dst
  )
  select src into v_bad from reach where src = dst limit 1;
  if v_bad is not null then
    perform private.fail(422, 'cycle_without_wait', format('Step %s is on a cycle without a wait', v_bad));
  end if;
end
$$;

revoke all on function private.validate_flow_graph(uuid, jsonb) from public, anon, authenticated;

-- execution, one per kind --------------------------------------------------------------------------
--
-- Each takes the claimed runs at a step of its kind (locked by the tick) and answers their
-- outcomes; it may act for them (queue mail, change contacts, call Make.com) in the same
-- transaction. A run another kind ended earlier in the batch (exit_flows) is skipped.

-- wait and wait_until: the wait is over.
create function private.advance_flow_wait(p_runs uuid[])
returns private.flow_step_result[]
language sql
security definer
set search_path = ''
as $$
  select coalesce(array_agg(row(r.id, 'waited', 'next', null, null, null, null)::private.flow_step_result), '{}')
  from unnest(p_runs) as x(id)
  join public.flow_runs r on r.id = x.id and r.status = 'active'
$$;

revoke all on function private.advance_flow_wait(uuid[]) from public, anon, authenticated;

create function private.advance_flow_wait_until(p_runs uuid[])
returns private.flow_step_result[]
language sql
security definer
set search_path = ''
as $$
  select private.advance_flow_wait(p_runs)
$$;

revoke all on function private.advance_flow_wait_until(uuid[]) from public, anon, authenticated;

-- wait_for: the event came (next, and the next step's delay counts from now) or the timeout
-- passed (alt).
create function private.advance_flow_wait_for(p_runs uuid[])
returns private.flow_step_result[]
language sql
security definer
set search_path = ''
as $$
  select coalesce(array_agg(case when r.event_at is not null
                                 then row(r.id, 'event_received', 'next', null, null, now(), null)::private.flow_step_result
                                 else row(r.id, 'timed_out', 'alt', null, null, null, null)::private.flow_step_result end), '{}')
  from unnest(p_runs) as x(id)
  join public.flow_runs r on r.id = x.id and r.status = 'active'
$$;

revoke all on function private.advance_flow_wait_for(uuid[]) from public, anon, authenticated;

-- branch: a rule (compiled once per step, one query for its runs), a stable random split per
-- run, or whether an event happened since entry.
create function private.advance_flow_branch(p_runs uuid[])
returns private.flow_step_result[]
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_yes uuid[] := '{}'::uuid[];
  v_part uuid[];
  v_step record;
begin
  for v_step in
    select distinct s.id, s.workspace_id, s.config -> 'rule' as rule
    from unnest(p_runs) as x(id)
    join public.flow_runs r on r.id = x.id
    join public.flow_steps s on s.id = r.step_id
    where s.config ? 'rule'
  loop
    execute format(
      'select coalesce(array_agg(r.id), ''{}'') from public.flow_runs r join public.contacts c on c.id = r.contact_id'
      ' where r.id = any ($2) and r.step_id = $3 and c.erased_at is null and %s',
      private.segment_condition(v_step.rule))
    into v_part using v_step.workspace_id, p_runs, v_step.id;
    v_yes := v_yes || v_part;
  end loop;
  return array(
    select row(k.id, case when k.yes then 'branch_yes' else 'branch_no' end,
               case when k.yes then 'next' else 'alt' end, null, null, null, null)::private.flow_step_result
    from (
      select r.id,
             (s.config ? 'rule' and y.id is not null)
             or (s.config ? 'percent'
                 and abs(hashtextextended(r.id::text || ':' || r.step_id::text, 0)) % 100 < (s.config ->> 'percent')::integer)
             or (s.config ? 'event' and exists (
                   select 1 from public.contact_events e
                   where e.contact_id = r.contact_id and e.workspace_id = r.workspace_id
                     and e.type = s.config -> 'event' ->> 'type'
                     and (e.type <> 'custom' or e.name = s.config -> 'event' ->> 'name')
                     and e.occurred_at >= r.entered_at)) as yes
      from unnest(p_runs) as x(id)
      join public.flow_runs r on r.id = x.id and r.status = 'active'
      join public.flow_steps s on s.id = r.step_id
      left join unnest(v_yes) as y(id) on y.id = r.id
    ) as k);
end
$$;

revoke all on function private.advance_flow_branch(uuid[]) from public, anon, authenticated;

-- send_email: the contact's filter again (when the flow asks), lateness, suppression and
-- consent, holdout, quiet hours and caps (unless transactional), the plan's monthly emails,
-- then one campaign ledger row per visit, named by the visit's history row.
create function private.advance_flow_send_email(p_runs uuid[])
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
           r.held_since, r.context, r.holdout, s.config, s.campaign_id, s.variant_id,
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

-- Kinds that act and move on answer this for every run of theirs still active: on to `next`.
create function private.flow_runs_go_next(p_runs uuid[], p_outcome text)
returns private.flow_step_result[]
language sql
stable
set search_path = ''
as $$
  select array(
    select row(r.id, p_outcome, 'next', null, null, null, null)::private.flow_step_result
    from unnest(p_runs) as x(id) join public.flow_runs r on r.id = x.id and r.status = 'active')
$$;

revoke all on function private.flow_runs_go_next(uuid[], text) from public, anon, authenticated;

-- update_contact: tags, attributes and lists, every run of a contact in this batch at once.
create function private.advance_flow_update_contact(p_runs uuid[])
returns private.flow_step_result[]
language plpgsql
security definer
set search_path = ''
as $$
begin
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
    where r.id = any (p_runs) and r.status = 'active'
    group by r.contact_id
  ) as u
  where c.id = u.contact_id and c.erased_at is null
    and (cardinality(u.add_tags) > 0 or cardinality(u.remove_tags) > 0 or u.set_attributes <> '{}'::jsonb);

  insert into public.email_list_members (list_id, workspace_id, contact_id)
  select distinct s.list_id, r.workspace_id, r.contact_id
  from public.flow_runs r
  join public.flow_steps s on s.id = r.step_id and s.kind = 'update_contact' and s.config ? 'add_to_list'
  join public.contacts c on c.id = r.contact_id and c.erased_at is null
  where r.id = any (p_runs) and r.status = 'active' and s.list_id is not null
  on conflict do nothing;

  delete from public.email_list_members m
  using public.flow_runs r
  join public.flow_steps s on s.id = r.step_id and s.kind = 'update_contact' and s.config ? 'remove_from_list'
  where r.id = any (p_runs) and r.status = 'active' and m.list_id = s.list_id and m.contact_id = r.contact_id;

  return private.flow_runs_go_next(p_runs, 'updated');
end
$$;

revoke all on function private.advance_flow_update_contact(uuid[]) from public, anon, authenticated;

-- notify_team: the workspace's members (at or above the step's role) get an in-app
-- notification about the contact (erasing the contact deletes it).
create function private.advance_flow_notify_team(p_runs uuid[])
returns private.flow_step_result[]
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform count(private.notify_members_at_least(
    r.workspace_id, coalesce(s.config ->> 'min_role', 'member'), 'flow.notify_team',
    s.config ->> 'title', s.config ->> 'body',
    jsonb_build_object('flow_id', r.flow_id, 'run_id', r.id, 'contact_id', r.contact_id), r.contact_id))
  from public.flow_runs r
  join public.flow_steps s on s.id = r.step_id and s.kind = 'notify_team'
  where r.id = any (p_runs) and r.status = 'active';
  return private.flow_runs_go_next(p_runs, 'notified');
end
$$;

revoke all on function private.advance_flow_notify_team(uuid[]) from public, anon, authenticated;

-- exit_flows: the contact's runs in the other flows (all, or the listed ones) end. The tick
-- runs this kind first in a batch, so a run it ends does nothing more.
create function private.advance_flow_exit_flows(p_runs uuid[])
returns private.flow_step_result[]
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.exit_flow_runs(array(
    select o.id
    from public.flow_runs r
    join public.flow_steps s on s.id = r.step_id and s.kind = 'exit_flows'
    join public.flow_runs o on o.contact_id = r.contact_id and o.workspace_id = r.workspace_id
                           and o.status = 'active' and o.flow_id <> r.flow_id
    where r.id = any (p_runs)
      and (not s.config ? 'flow_ids' or s.config -> 'flow_ids' ? o.flow_id::text)
  ), 'exited', 'left_by_other_flow');
  return private.flow_runs_go_next(p_runs, 'exited_flows');
end
$$;

revoke all on function private.advance_flow_exit_flows(uuid[]) from public, anon, authenticated;

-- exit: the run ends as exited.
create function private.advance_flow_exit(p_runs uuid[])
returns private.flow_step_result[]
language sql
security definer
set search_path = ''
as $$
  select coalesce(array_agg(row(r.id, 'exited', 'exit', null, null, null, null)::private.flow_step_result), '{}')
  from unnest(p_runs) as x(id)
  join public.flow_runs r on r.id = x.id and r.status = 'active'
$$;

revoke all on function private.advance_flow_exit(uuid[]) from public, anon, authenticated;

-- call_make: one Make.com automation per visit, charged as a member's would be (the
-- workspace's credits, in due order; a visit they do not cover records no_credits), then
-- dispatched, signed and retried by the automations outbox like any other, its result arriving
-- through the Make.com callback. Holdout runs and erased contacts call nothing.
create function private.advance_flow_call_make(p_runs uuid[])
returns private.flow_step_result[]
language plpgsql
security definer
set search_path = ''
as $$
begin
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
    where r.id = any (p_runs) and r.status = 'active' and not r.holdout
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

  return array(
    select row(r.id,
               case when r.holdout then 'holdout'
                    when mk.id is not null then 'make_queued'
                    when c.erased_at is not null then 'make_skipped'
                    when not exists (select 1 from public.projects p
                                     where p.id::text = s.config ->> 'project_id' and p.workspace_id = r.workspace_id)
                      or not exists (select 1 from public.automation_prices ap where ap.type = s.config ->> 'type')
                      then 'make_skipped'
                    else 'no_credits' end,
               'next',
               case when mk.id is not null then jsonb_build_object('automation_id', mk.id) end,
               null, null, null)::private.flow_step_result
    from unnest(p_runs) as x(id)
    join public.flow_runs r on r.id = x.id and r.status = 'active'
    join public.flow_steps s on s.id = r.step_id
    join public.contacts c on c.id = r.contact_id
    left join public.automations mk on mk.flow_run_id = r.id and mk.flow_step_seq = r.step_seq + 1);
end
$$;

revoke all on function private.advance_flow_call_make(uuid[]) from public, anon, authenticated;

-- the tick -----------------------------------------------------------------------------------------

-- Claims due runs of active flows (for update skip locked), hands each kind its runs, and
-- records every outcome: the history row (the kind's reason code and detail), the move to the
-- next step (or the alternative, or the same step until a held send's time, or the end) with
-- that step's due time, and the flow's counts. A run whose next step does not wait goes on in
-- the next round of the same tick. Answers the steps taken.
create or replace function private.advance_flows(p_limit integer default 10000, p_batch integer default 5000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_kind text;
  v_runs uuid[];
  v_part private.flow_step_result[];
  v_results private.flow_step_result[];
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

    v_results := '{}';
    for v_kind, v_runs in
      select s.kind, array_agg(r.id)
      from unnest(v_ids) as x(id)
      join public.flow_runs r on r.id = x.id
      join public.flow_steps s on s.id = r.step_id
      group by s.kind
      order by s.kind <> 'exit_flows', s.kind
    loop
      execute format('select private.%I($1)', 'advance_flow_' || v_kind) into v_part using v_runs;
      v_results := v_results || v_part;
    end loop;

    with moved as (
      select d.run_id, d.outcome, d.route, d.detail, d.hold_until, d.base_at, d.history_id,
             r.workspace_id, r.flow_id, r.contact_id, r.step_id, r.step_seq, s.kind,
             case d.route when 'alt' then s.alt_id when 'hold' then s.id when 'exit' then null else s.next_id end as to_step
      from unnest(v_results) as d
      join public.flow_runs r on r.id = d.run_id and r.status = 'active'
      join public.flow_steps s on s.id = r.step_id
    ),
    history as (
      insert into public.flow_run_steps (id, run_id, workspace_id, flow_id, step_id, seq, kind, outcome, detail)
      overriding system value
      select coalesce(m.history_id, nextval('public.flow_run_steps_id_seq'::regclass)), m.run_id, m.workspace_id,
             m.flow_id, m.step_id, m.step_seq + 1, m.kind, m.outcome,
             coalesce(m.detail, case when m.hold_until is not null then jsonb_build_object('until', m.hold_until) end)
      from moved m
    ),
    runs as (
      update public.flow_runs r
      set step_id = coalesce(m.to_step, r.step_id),
          step_seq = r.step_seq + 1,
          status = case when m.route = 'exit' then 'exited' when m.to_step is null then 'completed' else 'active' end,
          exit_reason = case when m.route = 'exit' then m.outcome when m.to_step is null then 'completed' end,
          finished_at = case when m.to_step is null then now() end,
          due_at = case when m.to_step is null then r.due_at
                        when m.hold_until is not null then m.hold_until
                        when n.timed then (
                          select private.flow_step_due(n.kind, n.config, c.attributes, z.name, coalesce(m.base_at, r.due_at))
                          from public.contacts c
                          left join private.time_zones z on z.name = c.attributes ->> 'timezone'
                          where c.id = r.contact_id)
                        else coalesce(m.base_at, r.due_at) + make_interval(secs => n.delay_seconds) end,
          moved_at = now(),
          held_since = case when m.hold_until is not null then coalesce(r.held_since, r.due_at) end,
          event_at = null,
          last_email_at = case when m.outcome = 'queued' then now() else r.last_email_at end
      from moved m
      left join public.flow_steps n on n.id = m.to_step
      where r.id = m.run_id
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
