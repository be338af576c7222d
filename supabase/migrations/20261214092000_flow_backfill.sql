-- Backfill: an active flow enrols existing contacts who match its entry filter (all contacts of
-- the workspace when it has none) and were never in it, at most p_limit (1 to 10,000) per call,
-- oldest contacts first; call again until it answers 0. Runs start at the entry step as entered
-- now, with no triggering event; the tick's own limit paces the mail they lead to.
create function public.backfill_flow(p_flow_id uuid, p_limit integer default 1000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_flow public.flows := private.flow_for_member(p_flow_id);
  v_count integer;
begin
  if v_flow.status <> 'active' then
    perform private.fail(409, 'flow_not_active', 'Only an active flow enrols contacts');
  end if;
  if p_limit is null or p_limit not between 1 and 10000 then
    perform private.fail(422, 'invalid_limit', 'A backfill takes 1 to 10,000 contacts per call');
  end if;
  execute format($q$
    with picked as (
      select c.id, c.attributes
      from public.contacts c
      where c.workspace_id = $1 and c.erased_at is null and (%s)
        and not exists (select 1 from public.flow_runs r where r.flow_id = $2 and r.contact_id = c.id)
      order by c.created_at, c.id
      limit $3
    ),
    entered as (
      insert into public.flow_runs (workspace_id, flow_id, version, contact_id, entry_key, step_id, due_at, holdout)
      select $1, $2, $4, p.id, 'contact', s.id,
             case when s.timed then private.flow_step_due(s.kind, s.config, p.attributes, z.name, now())
                  else now() + make_interval(secs => s.delay_seconds) end,
             $5 > 0 and abs(hashtextextended(p.id::text || ':' || $2::text, 0)) %% 100 < $5
      from picked p
      join public.flow_steps s on s.flow_id = $2 and s.version = $4 and s.is_entry
      left join private.time_zones z on z.name = p.attributes ->> 'timezone'
      on conflict (flow_id, contact_id, entry_key) where status = 'active' do nothing
      returning 1
    ),
    counted as (
      update public.flow_stats st
      set entered = st.entered + (select count(*) from entered), active = st.active + (select count(*) from entered),
          updated_at = now()
      where st.flow_id = $2
    )
    select count(*) from entered
  $q$, case when v_flow.entry_filter is null then 'true' else private.segment_condition(v_flow.entry_filter) end)
  into v_count
  using v_flow.workspace_id, v_flow.id, p_limit, v_flow.version, v_flow.holdout_percent;
  return v_count;
end
$$;

comment on function public.backfill_flow(uuid, integer) is
  'Enrols up to p_limit existing contacts who match an active flow''s entry filter and were never in it (members and above); call again until it answers 0.';

revoke all on function public.backfill_flow(uuid, integer) from public, anon;

grant execute on function public.backfill_flow(uuid, integer) to authenticated, service_role;
