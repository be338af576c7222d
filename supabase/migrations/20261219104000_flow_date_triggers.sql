-- Time-based triggers: a date attribute ± an offset (a birthday, yearly), N days after a
-- contact's last order, and an email not opened within N days. The flows cron records them as
-- contact events (`private.record_flow_trigger_events`), keyed per flow, contact and date (or
-- email), so they enrol through the same rules as every other event and never twice.

alter table public.flows drop constraint flows_trigger_type_check;

alter table public.flows add constraint flows_trigger_type_check check (trigger_type in (
    'contact_created', 'list_joined', 'tag_added', 'order_placed', 'checkout_started',
    'rfm_segment_changed', 'email_opened', 'email_clicked', 'custom',
    'date_attribute', 'days_after_last_order', 'email_not_opened'
  ));

alter table public.contact_events drop constraint contact_events_type_check;

alter table public.contact_events add constraint contact_events_type_check check (type in (
    'contact_created', 'list_joined', 'tag_added', 'order_placed', 'checkout_started',
    'rfm_segment_changed', 'email_opened', 'email_clicked', 'custom',
    'date_attribute', 'days_after_last_order', 'email_not_opened'
  ));

-- the triggers' settings are checked -------------------------------------------------------------

create or replace function private.validate_flow_settings()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_config jsonb := new.trigger_config;
begin
  if new.trigger_type = 'list_joined' and new.trigger_list_id is null and new.status <> 'archived' then
    perform private.fail(422, 'invalid_flow_trigger', 'A list_joined trigger needs trigger_list_id');
  end if;
  if new.trigger_type = 'tag_added' and (jsonb_typeof(v_config -> 'tag') is distinct from 'string'
       or char_length(v_config ->> 'tag') not between 1 and 100) then
    perform private.fail(422, 'invalid_flow_trigger', 'A tag_added trigger needs {"tag": "<1 to 100 characters>"}');
  end if;
  if new.trigger_type = 'custom' and (jsonb_typeof(v_config -> 'name') is distinct from 'string'
       or (v_config ->> 'name') !~ '^[A-Za-z0-9_.:-]{1,100}$') then
    perform private.fail(422, 'invalid_flow_trigger', 'A custom trigger needs {"name": "<event name>"}');
  end if;
  if new.trigger_type = 'order_placed' then
    if coalesce(v_config ->> 'scope', 'any') not in ('any', 'first', 'product', 'category')
       or (v_config ? 'scope' and jsonb_typeof(v_config -> 'scope') <> 'string') then
      perform private.fail(422, 'invalid_flow_trigger', 'order_placed scope is any, first, product or category');
    end if;
    if v_config ->> 'scope' = 'product' and (v_config ->> 'product_id') !~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$' then
      perform private.fail(422, 'invalid_flow_trigger', 'A product scope needs product_id');
    end if;
    if v_config ->> 'scope' = 'category' and (jsonb_typeof(v_config -> 'category') is distinct from 'string'
         or char_length(v_config ->> 'category') not between 1 and 200) then
      perform private.fail(422, 'invalid_flow_trigger', 'A category scope needs category');
    end if;
  end if;
  if new.trigger_type = 'rfm_segment_changed' and (
       (v_config ? 'from' and jsonb_typeof(v_config -> 'from') <> 'array')
       or (v_config ? 'to' and jsonb_typeof(v_config -> 'to') <> 'array')) then
    perform private.fail(422, 'invalid_flow_trigger', 'rfm_segment_changed takes "from" and "to" as arrays of segment names');
  end if;
  if new.trigger_type = 'date_attribute' and (
       jsonb_typeof(v_config -> 'attribute') is distinct from 'string' or char_length(v_config ->> 'attribute') not between 1 and 100
       or (v_config ? 'offset_days' and (jsonb_typeof(v_config -> 'offset_days') <> 'number'
             or (v_config ->> 'offset_days')::numeric not between -365 and 365
             or (v_config ->> 'offset_days')::numeric <> trunc((v_config ->> 'offset_days')::numeric)))
       or (v_config ? 'yearly' and jsonb_typeof(v_config -> 'yearly') <> 'boolean')) then
    perform private.fail(422, 'invalid_flow_trigger',
      'A date_attribute trigger needs {"attribute", "offset_days"? (whole days, -365 to 365), "yearly"? (boolean)}');
  end if;
  if new.trigger_type in ('days_after_last_order', 'email_not_opened') and (
       jsonb_typeof(v_config -> 'days') is distinct from 'number'
       or (v_config ->> 'days')::numeric not between 1 and 365
       or (v_config ->> 'days')::numeric <> trunc((v_config ->> 'days')::numeric)) then
    perform private.fail(422, 'invalid_flow_trigger', format('A %s trigger needs {"days": 1 to 365}', new.trigger_type));
  end if;
  if new.trigger_type = 'email_not_opened' and v_config ? 'campaign_id' and (
       coalesce(v_config ->> 'campaign_id', '') !~* '^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$'
       or not exists (select 1 from public.campaigns c
                      where c.id = (v_config ->> 'campaign_id')::uuid and c.workspace_id = new.workspace_id)) then
    perform private.fail(422, 'invalid_flow_trigger', 'campaign_id must be a campaign of this workspace');
  end if;
  if new.entry_filter is not null then
    perform private.segment_condition(new.entry_filter);
  end if;
  if jsonb_array_length(new.exit_events) > 20 or exists (
       select 1 from jsonb_array_elements(new.exit_events) g
       where jsonb_typeof(g) <> 'object'
          or coalesce(g ->> 'type', '') not in ('contact_created', 'list_joined', 'tag_added', 'order_placed',
                                               'checkout_started', 'rfm_segment_changed', 'email_opened',
                                               'email_clicked', 'custom')
          or (g ->> 'type' = 'custom') <> (jsonb_typeof(g -> 'name') is not distinct from 'string')) then
    perform private.fail(422, 'invalid_exit_events',
      'exit_events is a list of at most 20 {"type": <event type>} (custom events with "name")');
  end if;
  return new;
end
$$;

-- the flow named in the event is the one it enrols in ----------------------------------------

create or replace function private.apply_contact_events()
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

-- the cron records the events ----------------------------------------------------------------

-- The day each date flow was last scanned: date_attribute and days_after_last_order flows are
-- scanned once a (UTC) day, not every minute.
create table private.flow_date_scans (
  flow_id uuid primary key references public.flows (id) on delete cascade,
  scanned_on date not null
);

comment on table private.flow_date_scans is
  'The UTC day each date-triggered flow was last scanned for contacts whose date it is.';

-- A date attribute as a date: YYYY-MM-DD at its start (a day past the month's end rolls over,
-- as wait_until reads it), null for anything else.
create function private.attribute_date(p_value text)
returns date
language sql
immutable
set search_path = ''
as $$
  select case when p_value ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])' and left(p_value, 4) <> '0000'
              then make_date(substr(p_value, 1, 4)::integer, substr(p_value, 6, 2)::integer, 1)
                   + (substr(p_value, 9, 2)::integer - 1) end
$$;

revoke all on function private.attribute_date(text) from public, anon, authenticated;

-- Records the time-based trigger events due now, set-based, one statement per kind:
-- date_attribute (the contact's date, or its anniversary when yearly, is today minus the
-- offset; a 29 February counts on the 28th in other years), days_after_last_order (the last
-- order was placed that many days ago, by UTC day) and email_not_opened (an email sent between
-- N and N + 2 days ago, not bounced, never opened). Event keys make every call after the first
-- a no-op for the same flow, contact and day (or email). Answers the events recorded.
create function private.record_flow_trigger_events()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_today date := (now() at time zone 'UTC')::date;
  v_flows uuid[];
  v_dates integer;
  v_orders integer;
  v_unopened integer;
begin
  v_flows := array(
    select f.id from public.flows f
    left join private.flow_date_scans d on d.flow_id = f.id
    where f.status = 'active' and f.trigger_type in ('date_attribute', 'days_after_last_order')
      and (d.scanned_on is null or d.scanned_on < v_today));

  insert into public.contact_events (workspace_id, contact_id, type, event_key, properties)
  select c.workspace_id, c.id, 'date_attribute', 'date:' || f.id || ':' || c.id || ':' || v_today,
         jsonb_build_object('flow_id', f.id, 'date', v_today, 'attribute', f.trigger_config ->> 'attribute')
  from public.flows f
  join public.contacts c on c.workspace_id = f.workspace_id and c.erased_at is null
                        and c.attributes ? (f.trigger_config ->> 'attribute')
  cross join lateral (
    select private.attribute_date(c.attributes ->> (f.trigger_config ->> 'attribute')) as day,
           v_today - coalesce((f.trigger_config ->> 'offset_days')::integer, 0) as target
  ) as a
  where f.id = any (v_flows) and f.trigger_type = 'date_attribute' and a.day is not null
    and case when coalesce((f.trigger_config ->> 'yearly')::boolean, false)
             then extract(month from a.day) = extract(month from a.target)
                  and (extract(day from a.day) = extract(day from a.target)
                       or (extract(month from a.day) = 2 and extract(day from a.day) = 29
                           and extract(day from a.target) = 28
                           and extract(day from (a.target + 1)) = 1))
             else a.day = a.target end
  on conflict (workspace_id, event_key) where event_key is not null do nothing;
  get diagnostics v_dates = row_count;

  insert into public.contact_events (workspace_id, contact_id, type, event_key, properties)
  select x.workspace_id, x.contact_id, 'days_after_last_order', 'last_order:' || f.id || ':' || x.contact_id || ':' || v_today,
         jsonb_build_object('flow_id', f.id, 'date', v_today, 'order_id', x.last_order_id)
  from public.flows f
  join public.customer_facts x on x.workspace_id = f.workspace_id
   and (x.last_order_at at time zone 'UTC')::date = v_today - (f.trigger_config ->> 'days')::integer
  join public.contacts c on c.id = x.contact_id and c.erased_at is null
  where f.id = any (v_flows) and f.trigger_type = 'days_after_last_order'
  on conflict (workspace_id, event_key) where event_key is not null do nothing;
  get diagnostics v_orders = row_count;

  insert into private.flow_date_scans as d (flow_id, scanned_on)
  select u.id, v_today from unnest(v_flows) as u(id)
  on conflict (flow_id) do update set scanned_on = excluded.scanned_on;

  insert into public.contact_events (workspace_id, contact_id, type, event_key, properties)
  select r.workspace_id, r.contact_id, 'email_not_opened', 'not_opened:' || f.id || ':' || r.id,
         jsonb_build_object('flow_id', f.id, 'campaign_id', r.campaign_id, 'recipient_id', r.id, 'sent_at', r.sent_at)
  from public.flows f
  join public.campaign_recipients r on r.workspace_id = f.workspace_id
   and r.sent_at <= now() - make_interval(days => (f.trigger_config ->> 'days')::integer)
   and r.sent_at > now() - make_interval(days => (f.trigger_config ->> 'days')::integer + 2)
   and r.status = 'sent' and r.opened_at is null and r.bounced_at is null
   and (not f.trigger_config ? 'campaign_id' or r.campaign_id::text = f.trigger_config ->> 'campaign_id')
  join public.contacts c on c.id = r.contact_id and c.erased_at is null
  where f.status = 'active' and f.trigger_type = 'email_not_opened'
  on conflict (workspace_id, event_key) where event_key is not null do nothing;
  get diagnostics v_unopened = row_count;

  return v_dates + v_orders + v_unopened;
end
$$;

revoke all on function private.record_flow_trigger_events() from public, anon, authenticated;

grant execute on function private.record_flow_trigger_events() to service_role;

do $$
begin
  if exists (select from pg_catalog.pg_extension where extname = 'pg_cron') then
    perform cron.schedule('growthbase-flows', '* * * * *',
      'select private.record_flow_trigger_events(); select private.advance_flows(20000)');
  end if;
end
$$;
