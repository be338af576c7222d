-- Custom events from outside (a Make.com scenario, a shop's own code): POST /api/v1/events with
-- a workspace API key (public.api_keys, checked by private.authenticate_api_key). A batch (up to
-- 1,000 events) is recorded in one statement, idempotent by the sender's event id, and only when
-- every event names a contact of the workspace (else nothing is recorded and the edge answers
-- which ones did not).

-- Records a batch of custom events: [{"id", "name", "contact": {"id"|"email"}, "properties"?,
-- "occurred_at"?}]. Answers {"recorded", "duplicates"}, or {"unknown_contacts": [indexes]}
-- (0-based) and records nothing when any event names no contact of the workspace.
create function private.record_custom_events(p_workspace_id uuid, p_events jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_unknown jsonb;
  v_recorded integer;
begin
  if jsonb_typeof(p_events) is distinct from 'array' or jsonb_array_length(p_events) not between 1 and 1000 then
    perform private.fail(422, 'invalid_input', 'events is a list of 1 to 1,000 events');
  end if;
  with given as (
    select e.n - 1 as position, e.event,
           case when e.event -> 'contact' ->> 'id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
                then (e.event -> 'contact' ->> 'id')::uuid end as contact_id,
           lower(btrim(e.event -> 'contact' ->> 'email')) as email
    from jsonb_array_elements(p_events) with ordinality as e(event, n)
  )
  select jsonb_agg(g.position order by g.position) into v_unknown
  from given g
  where not exists (
    select 1 from public.contacts c
    where c.workspace_id = p_workspace_id and c.erased_at is null
      and ((g.contact_id is not null and c.id = g.contact_id) or (g.contact_id is null and c.email = g.email)));
  if v_unknown is not null then
    return jsonb_build_object('unknown_contacts', v_unknown);
  end if;
  insert into public.contact_events (workspace_id, contact_id, type, name, event_key, properties, occurred_at)
  select p_workspace_id, c.id, 'custom', e.event ->> 'name', e.event ->> 'id',
         coalesce(e.event -> 'properties', '{}'::jsonb),
         coalesce((e.event ->> 'occurred_at')::timestamptz, now())
  from jsonb_array_elements(p_events) as e(event)
  join public.contacts c on c.workspace_id = p_workspace_id and c.erased_at is null
   and case when e.event -> 'contact' ->> 'id' ~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
            then c.id = (e.event -> 'contact' ->> 'id')::uuid
            else c.email = lower(btrim(e.event -> 'contact' ->> 'email')) end
  on conflict (workspace_id, event_key) where event_key is not null do nothing;
  get diagnostics v_recorded = row_count;
  return jsonb_build_object('recorded', v_recorded, 'duplicates', jsonb_array_length(p_events) - v_recorded);
end
$$;

-- grants -----------------------------------------------------------------------------------------

revoke all on function private.record_custom_events(uuid, jsonb) from public, anon, authenticated;

grant execute on function private.record_custom_events(uuid, jsonb) to service_role;
