-- A call_make step may wait for Make.com's answer: with a timeout (`timeout_minutes`,
-- `timeout_hours` or `timeout_days`) the run holds at the step after queuing the call, until the
-- automation's callback finishes it or the timeout passes. A completed automation takes `next`
-- (its result copied to the run's context as `make`, so later emails can show it); a failed one,
-- the timeout, or a call that could not be made takes `alt`. Without a timeout the step goes on
-- at once, as before.

alter table public.flow_run_steps drop constraint flow_run_steps_outcome_check;

alter table public.flow_run_steps add constraint flow_run_steps_outcome_check check (outcome in (
    'waited', 'event_received', 'timed_out', 'branch_yes', 'branch_no', 'queued', 'stale',
    'suppressed', 'plan_limit', 'holdout', 'quiet_hours', 'capped', 'capped_skipped', 'filter_no_longer_matches',
    'updated', 'exited', 'exited_flows', 'make_queued', 'make_skipped', 'no_credits',
    'make_completed', 'make_failed', 'make_timed_out', 'make_waiting',
    'notified', 'goal', 'erased', 'flow_archived', 'left_by_other_flow'
  ));

-- the step's check and shape -----------------------------------------------------------------------

create or replace function private.validate_flow_step_call_make(p_check private.flow_step_check)
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
             where k not in ('project_id', 'type', 'input', 'timeout_minutes', 'timeout_hours', 'timeout_days'))
     or jsonb_typeof(p_check.config -> 'type') is distinct from 'string'
     or not exists (select 1 from public.automation_prices ap where ap.type = p_check.config ->> 'type')
     or (p_check.config ? 'input' and (jsonb_typeof(p_check.config -> 'input') <> 'object'
           or pg_catalog.pg_column_size(p_check.config -> 'input') > 16384)) then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: call_make needs project_id, an automation type, an optional input object (at most 16 KiB) and an optional timeout_minutes, timeout_hours or timeout_days', p_check.key));
  end if;
  if exists (select 1 from jsonb_each(p_check.config) e
             where e.key like 'timeout\_%' and (jsonb_typeof(e.value) <> 'number' or (e.value #>> '{}')::numeric < 0))
     or (private.flow_step_waits('call_make', p_check.config)
         and private.flow_duration(p_check.config, 'timeout_') not between interval '1 minute' and interval '30 days') then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: a call_make timeout is from 1 minute to 30 days', p_check.key));
  end if;
  if coalesce(p_check.config ->> 'project_id', '') !~ v_uuid or not exists (
       select 1 from public.projects p
       where p.id = (p_check.config ->> 'project_id')::uuid and p.workspace_id = p_check.workspace_id) then
    perform private.fail(422, 'invalid_reference', format('Step %s: project not found in this workspace', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_call_make(private.flow_step_check) from public, anon, authenticated;

-- A call_make with a timeout has two ways out: `next` (completed) and `alt` (failed, timed out
-- or not made).
create or replace function private.flow_step_alt(p_kind text, p_config jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
  select case when p_kind in ('branch', 'wait_for') then 'required'
              when p_kind = 'call_make' and private.flow_step_waits(p_kind, p_config) then 'required'
              when p_kind = 'exit' then 'terminal'
              else 'forbidden' end
$$;

revoke all on function private.flow_step_alt(text, jsonb) from public, anon, authenticated;

-- A call_make with a timeout waits (its answer comes in a later transaction).
create or replace function private.flow_step_waits(p_kind text, p_config jsonb)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_kind in ('wait', 'wait_for')
         or (p_kind = 'call_make' and (p_config ? 'timeout_minutes' or p_config ? 'timeout_hours' or p_config ? 'timeout_days'))
$$;

revoke all on function private.flow_step_waits(text, jsonb) from public, anon, authenticated;

-- the step in a tick -------------------------------------------------------------------------------

-- First visit (the run is not held): one automation per visit, as before; a waiting step then
-- holds the run until its timeout (counted from when the step was due). Second visit (held: the
-- callback woke it, or the timeout passed): the automation's status decides the way out.
create or replace function private.advance_flow_call_make(p_runs uuid[])
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
    where r.id = any (p_runs) and r.status = 'active' and not r.holdout and r.held_since is null
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

  -- A completed call's result goes to the run's context (what later emails show as `event`).
  update public.flow_runs r
  set context = r.context || jsonb_build_object('make', a.result)
  from public.automations a
  where r.id = any (p_runs) and r.status = 'active' and r.held_since is not null
    and a.flow_run_id = r.id and a.flow_step_seq = r.step_seq and a.status = 'completed'
    and a.result is not null and pg_catalog.pg_column_size(a.result) <= 16384;

  return array(
    select row(r.id, o.outcome,
               case when o.outcome in ('make_queued', 'make_waiting') and k.waits then 'hold'
                    when o.outcome in ('make_failed', 'make_timed_out') then 'alt'
                    when o.outcome in ('make_skipped', 'no_credits') and k.waits then 'alt'
                    else 'next' end,
               case when a.id is not null then jsonb_strip_nulls(jsonb_build_object(
                      'automation_id', a.id,
                      'until', case when o.outcome in ('make_queued', 'make_waiting') and k.waits then k.deadline end,
                      'error', case when o.outcome = 'make_failed' then left(a.error, 500) end)) end,
               case when o.outcome in ('make_queued', 'make_waiting') and k.waits then k.deadline end,
               case when o.outcome in ('make_completed', 'make_failed') then now() end,
               null)::private.flow_step_result
    from unnest(p_runs) as x(id)
    join public.flow_runs r on r.id = x.id and r.status = 'active'
    join public.flow_steps s on s.id = r.step_id
    join public.contacts c on c.id = r.contact_id
    cross join lateral (
      select private.flow_step_waits('call_make', s.config) as waits,
             coalesce(r.held_since, r.due_at) + private.flow_duration(s.config, 'timeout_') as deadline
    ) as k
    -- This visit's automation: made just now (first visit) or when the run began to wait.
    left join public.automations a
      on a.flow_run_id = r.id and a.flow_step_seq = case when r.held_since is null then r.step_seq + 1 else r.step_seq end
    cross join lateral (
      select case
               when r.held_since is not null then
                 case when a.status = 'completed' then 'make_completed'
                      when a.status = 'failed' or a.id is null then 'make_failed'
                      when now() >= k.deadline then 'make_timed_out'
                      else 'make_waiting' end
               when r.holdout then 'holdout'
               when a.id is not null then 'make_queued'
               when c.erased_at is not null then 'make_skipped'
               when not exists (select 1 from public.projects p
                                where p.id::text = s.config ->> 'project_id' and p.workspace_id = r.workspace_id)
                 or not exists (select 1 from public.automation_prices ap where ap.type = s.config ->> 'type')
                 then 'make_skipped'
               else 'no_credits'
             end as outcome
    ) as o);
end
$$;

revoke all on function private.advance_flow_call_make(uuid[]) from public, anon, authenticated;

-- the callback wakes the run --------------------------------------------------------------------------

-- A flow's automation that finishes (the Make.com callback, or the outbox giving up) makes its
-- run due at once when the run still waits at that visit of the step.
create function private.wake_flow_run_of_automation()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.flow_runs r
  set due_at = least(r.due_at, now())
  where r.id = new.flow_run_id and r.status = 'active' and r.step_seq = new.flow_step_seq
    and r.held_since is not null;
  return null;
end
$$;

revoke all on function private.wake_flow_run_of_automation() from public, anon, authenticated;

create trigger automations_wake_flow_run
  after update of status on public.automations
  for each row
  when (new.flow_run_id is not null and new.status in ('completed', 'failed') and old.status is distinct from new.status)
  execute function private.wake_flow_run_of_automation();
