-- Entry of a batch of contact events, cheaper (issue 15's benchmark: 100k events with enrolment
-- <= 5 s). Profiled (auto_explain of every nested statement, 100k custom events entering one
-- flow), three parts cost more than they need:
--   - a second foreign key per event: contact_events references its workspace and, through
--     (contact_id, workspace_id), its contact, whose workspace key already cascades; the
--     contact key alone enforces the same rows and deletions (a workspace's deletion still
--     takes its contacts' events), so the workspace key and its 100k checks per 100k events go;
--   - private.apply_contact_events asked first whether any new event's contact had an active
--     run (an index probe per event) and only then whether any active flow listens for these
--     events (one probe): it now asks the cheap question first, which settles it whenever a
--     flow listens;
--   - its enrolment sorts the candidates (one run per flow, contact and entry key) and, past
--     4 MB, that sort spilled to disk (16 MB for 100k): the function now has 64 MB for it.
-- Nothing a user sees changes.

alter table public.contact_events drop constraint contact_events_workspace_id_fkey;

-- As in 20261223093000_contact_events_nothing_listening.sql, with the two checks swapped and
-- room for the enrolment's sort.
create or replace function private.apply_contact_events()
returns trigger
language plpgsql
security definer
set search_path = ''
set work_mem = '64MB'
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
              when 'date_attribute' then e.properties ->> 'flow_id' = f.id::text
              when 'days_after_last_order' then e.properties ->> 'flow_id' = f.id::text
              when 'email_not_opened' then e.properties ->> 'flow_id' = f.id::text
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
  -- Nothing listening: no active flow these events could enter (asked first: one probe), no
  -- active run of these contacts.
  if not exists (
       select from new_events e
       join public.flows f on f.workspace_id = e.workspace_id and f.status = 'active' and f.trigger_type = e.type)
     and not exists (
       select from new_events e
       join public.flow_runs r on r.contact_id = e.contact_id and r.workspace_id = e.workspace_id
       where r.status = 'active') then
    return null;
  end if;
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
