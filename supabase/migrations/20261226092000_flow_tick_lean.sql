-- A leaner tick (issue 15's benchmark: advancing 100k due runs one step). Profiled at 100k due
-- runs (pg_stat_xact_user_functions, auto_explain of every statement), the tick spent its time
-- on: JIT compiling the recording statement (about a second: the planner's estimate for the
-- per-row due time of a timed next step crossed jit_above_cost); reading every claimed run
-- three more times after the claim (grouping by kind, the wait kind's own check, the record's
-- join before the update); and the update's index writes. Now:
--   - the claim and the grouping by kind are one statement, which also keeps each run's step;
--   - kinds that only answer (wait, wait_until, exit) read nothing: a run another kind ended
--     earlier in the batch (exit_flows) is dropped by the record, which moves active runs only;
--   - the record joins the outcomes to the claimed steps in memory, updates the runs, and
--     writes the history from the update's own rows (so only runs that moved get a row);
--   - the tick, and so every kind it calls, runs without JIT (compiling cost more than it
--     saved) and plans each statement for the batch at hand (plan_cache_mode =
--     force_custom_plan): a cached generic plan guesses 10 elements for every array it unnests,
--     and after five ticks in one session it joined the 100k outcomes to the 100k claimed runs
--     (or a branch's 100k runs to its 10k matches) by a nested loop rescanning the other array,
--     which took over twenty minutes where the planned tick takes seconds.
-- Nothing a user sees changes.

-- wait and wait_until: the wait is over.
create or replace function private.advance_flow_wait(p_runs uuid[])
returns private.flow_step_result[]
language sql
immutable
set search_path = ''
as $$
  select array(select row(x.id, 'waited', 'next', null, null, null, null)::private.flow_step_result
               from unnest(p_runs) as x(id))
$$;

revoke all on function private.advance_flow_wait(uuid[]) from public, anon, authenticated;

-- exit: the run ends as exited.
create or replace function private.advance_flow_exit(p_runs uuid[])
returns private.flow_step_result[]
language sql
immutable
set search_path = ''
as $$
  select array(select row(x.id, 'exited', 'exit', null, null, null, null)::private.flow_step_result
               from unnest(p_runs) as x(id))
$$;

revoke all on function private.advance_flow_exit(uuid[]) from public, anon, authenticated;

-- As in 20261222090000_flow_step_kinds.sql (claims due runs of active flows, for update skip
-- locked; hands each kind its runs, exit_flows first; records outcomes, history, moves and the
-- flow's counts; a run whose next step does not wait goes on in the next round), with the
-- claim grouping by kind itself and the record reading each run once.
create or replace function private.advance_flows(p_limit integer default 10000, p_batch integer default 5000)
returns integer
language plpgsql
security definer
set search_path = ''
set jit = off
set plan_cache_mode = force_custom_plan
as $$
declare
  v_kind text;
  v_runs uuid[];
  v_steps uuid[];
  v_ids uuid[];
  v_step_ids uuid[];
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
    v_results := '{}';
    v_ids := '{}';
    v_step_ids := '{}';
    for v_kind, v_runs, v_steps in
      with claimed as (
        select r.id, r.step_id from public.flow_runs r
        join public.flows f on f.id = r.flow_id and f.status = 'active'
        where r.status = 'active' and r.due_at <= now()
        order by r.due_at
        limit least(p_batch, p_limit - v_done)
        for update of r skip locked)
      select s.kind, array_agg(c.id), array_agg(c.step_id)
      from claimed c
      join public.flow_steps s on s.id = c.step_id
      group by s.kind
      order by s.kind <> 'exit_flows', s.kind
    loop
      execute format('select private.%I($1)', 'advance_flow_' || v_kind) into v_part using v_runs;
      v_results := v_results || v_part;
      v_ids := v_ids || v_runs;
      v_step_ids := v_step_ids || v_steps;
    end loop;
    exit when cardinality(v_ids) = 0;

    with moved as (
      select d.run_id, d.outcome, d.route, d.detail, d.hold_until, d.base_at, d.history_id, s.id as step_id, s.kind,
             case d.route when 'alt' then s.alt_id when 'hold' then s.id when 'exit' then null else s.next_id end as to_step
      from unnest(v_results) as d
      join unnest(v_ids, v_step_ids) as c(run_id, step_id) on c.run_id = d.run_id
      join public.flow_steps s on s.id = c.step_id
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
      where r.id = m.run_id and r.status = 'active' and r.step_id = m.step_id
      returning r.id, r.workspace_id, r.flow_id, r.status, r.step_seq, m.step_id, m.kind, m.outcome, m.detail,
                m.hold_until, m.history_id
    ),
    history as (
      insert into public.flow_run_steps (id, run_id, workspace_id, flow_id, step_id, seq, kind, outcome, detail)
      overriding system value
      select coalesce(u.history_id, nextval('public.flow_run_steps_id_seq'::regclass)), u.id, u.workspace_id,
             u.flow_id, u.step_id, u.step_seq, u.kind, u.outcome,
             coalesce(u.detail, case when u.hold_until is not null then jsonb_build_object('until', u.hold_until) end)
      from runs u
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
