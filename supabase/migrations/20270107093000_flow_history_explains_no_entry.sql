-- "Why did contact X not get step Y" also answers for a contact who never entered the flow
-- (issue 15). flow_contact_history listed a contact's runs and every step's reason code, and
-- nothing at all for a contact with no run, which is the question a shop asks most ("why did
-- she not get the welcome mail?"). Such a contact now gets one row, kind `entry` and outcome
-- `not_entered`, whose detail names the first of these that holds now: the flow is not active,
-- the contact is erased, they were in the flow the flow excludes within its days, the entry
-- filter does not match them, no event of the flow's trigger has been recorded for them since
-- the flow went live, or none of those events matched the trigger's settings in time (within
-- two days of happening). It is read as the caller, under RLS, as before: a stranger still gets
-- nothing.
create or replace function public.flow_contact_history(p_flow_id uuid, p_contact_id uuid)
returns table (run_id uuid, version integer, run_status text, entered_at timestamptz, exit_reason text,
               seq integer, step_key text, kind text, outcome text, detail jsonb, at timestamptz)
language plpgsql
stable
security invoker
set search_path = ''
as $$
declare
  v_flow public.flows;
  v_contact public.contacts;
  v_matches boolean;
  v_last_event timestamptz;
  v_reason jsonb;
begin
  return query
    select r.id, r.version, r.status, r.entered_at, r.exit_reason, h.seq, s.key, h.kind, h.outcome,
           h.detail, h.at
    from public.flow_runs r
    left join public.flow_run_steps h on h.run_id = r.id
    left join public.flow_steps s on s.id = h.step_id
    where r.flow_id = p_flow_id and r.contact_id = p_contact_id
    order by r.entered_at, h.seq;
  if found then
    return;
  end if;
  select * into v_flow from public.flows f where f.id = p_flow_id;
  select * into v_contact from public.contacts c
  where c.id = p_contact_id and c.workspace_id = v_flow.workspace_id;
  if v_flow.id is null or v_contact.id is null then
    return;
  end if;
  if v_flow.status <> 'active' then
    v_reason := jsonb_build_object('reason', 'flow_not_active', 'status', v_flow.status);
  elsif v_contact.erased_at is not null then
    v_reason := jsonb_build_object('reason', 'contact_erased');
  elsif v_flow.not_in_flow_id is not null and exists (
    select 1 from public.flow_runs x
    where x.flow_id = v_flow.not_in_flow_id and x.contact_id = p_contact_id and not x.test
      and (x.status = 'active' or x.finished_at > now() - make_interval(days => v_flow.not_in_flow_days))
  ) then
    v_reason := jsonb_build_object('reason', 'in_excluded_flow_lately', 'flow_id', v_flow.not_in_flow_id,
                                   'days', v_flow.not_in_flow_days);
  end if;
  if v_reason is null and v_flow.entry_filter is not null then
    execute 'select exists (select 1 from public.contacts c where c.id = $1 and '
            || private.segment_condition(v_flow.entry_filter) || ')'
      into v_matches using p_contact_id;
    if not v_matches then
      v_reason := jsonb_build_object('reason', 'filter_not_matched');
    end if;
  end if;
  if v_reason is null then
    select max(e.occurred_at) into v_last_event
    from public.contact_events e
    where e.workspace_id = v_flow.workspace_id and e.contact_id = p_contact_id
      and e.type = v_flow.trigger_type and e.occurred_at >= v_flow.activated_at;
    v_reason := case when v_last_event is null
      then jsonb_build_object('reason', 'no_trigger_event', 'trigger', v_flow.trigger_type)
      else jsonb_build_object('reason', 'trigger_not_matched', 'trigger', v_flow.trigger_type,
                              'last_event_at', v_last_event) end;
  end if;
  return query select null::uuid, v_flow.version, null::text, null::timestamptz, null::text, null::integer,
                      null::text, 'entry'::text, 'not_entered'::text, v_reason, now();
end
$$;
