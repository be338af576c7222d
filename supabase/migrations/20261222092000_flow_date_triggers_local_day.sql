-- Date-based triggers count days in the contact's time zone: a birthday flow reaches a contact
-- on their own local day (attributes.timezone; else the workspace's flow_send_rules.timezone;
-- else UTC), and "N days after the last order" counts local days. The event key names the
-- local day, so a contact enrols once per flow and local day however often the cron runs.
-- Local days start at different instants, so each date flow is scanned at most once per UTC
-- hour instead of once per UTC day.

alter table private.flow_date_scans add column scanned_at timestamptz;

comment on table private.flow_date_scans is
  'When each date-triggered flow was last scanned for contacts whose (local) date it is: at most once per UTC hour.';

comment on column private.flow_date_scans.scanned_on is 'The UTC day of the last scan.';

comment on column private.flow_date_scans.scanned_at is 'When the last scan ran (a flow is scanned again from the next UTC hour).';

-- Records the time-based trigger events due now, set-based, one statement per kind:
-- date_attribute (the contact's date, or its anniversary when yearly, is their local today
-- minus the offset; a 29 February counts on the 28th in other years), days_after_last_order
-- (the last order was placed that many local days ago) and email_not_opened (an email sent
-- between N and N + 2 days ago, not bounced, never opened). Event keys make every call after
-- the first a no-op for the same flow, contact and local day (or email). Answers the events
-- recorded.
create or replace function private.record_flow_trigger_events()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_hour timestamptz := date_trunc('hour', now());
  v_flows uuid[];
  v_dates integer;
  v_orders integer;
  v_unopened integer;
begin
  v_flows := array(
    select f.id from public.flows f
    left join private.flow_date_scans d on d.flow_id = f.id
    where f.status = 'active' and f.trigger_type in ('date_attribute', 'days_after_last_order')
      and (d.scanned_at is null or d.scanned_at < v_hour));

  insert into public.contact_events (workspace_id, contact_id, type, event_key, properties)
  select c.workspace_id, c.id, 'date_attribute', 'date:' || f.id || ':' || c.id || ':' || l.today,
         jsonb_build_object('flow_id', f.id, 'date', l.today, 'attribute', f.trigger_config ->> 'attribute',
                            'timezone', l.tz)
  from public.flows f
  left join public.flow_send_rules sr on sr.workspace_id = f.workspace_id
  left join private.time_zones wz on wz.name = sr.timezone
  join public.contacts c on c.workspace_id = f.workspace_id and c.erased_at is null
                        and c.attributes ? (f.trigger_config ->> 'attribute')
  left join private.time_zones cz on cz.name = c.attributes ->> 'timezone'
  cross join lateral (
    select t.tz, (now() at time zone t.tz)::date as today
    from (select coalesce(cz.name, wz.name, 'UTC') as tz) as t
  ) as l
  cross join lateral (
    select private.attribute_date(c.attributes ->> (f.trigger_config ->> 'attribute')) as day,
           l.today - coalesce((f.trigger_config ->> 'offset_days')::integer, 0) as target
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
  select x.workspace_id, x.contact_id, 'days_after_last_order', 'last_order:' || f.id || ':' || x.contact_id || ':' || l.today,
         jsonb_build_object('flow_id', f.id, 'date', l.today, 'order_id', x.last_order_id, 'timezone', l.tz)
  from public.flows f
  left join public.flow_send_rules sr on sr.workspace_id = f.workspace_id
  left join private.time_zones wz on wz.name = sr.timezone
  join public.customer_facts x on x.workspace_id = f.workspace_id
  join public.contacts c on c.id = x.contact_id and c.erased_at is null
  left join private.time_zones cz on cz.name = c.attributes ->> 'timezone'
  cross join lateral (
    select t.tz, (now() at time zone t.tz)::date as today
    from (select coalesce(cz.name, wz.name, 'UTC') as tz) as t
  ) as l
  where f.id = any (v_flows) and f.trigger_type = 'days_after_last_order'
    and (x.last_order_at at time zone l.tz)::date = l.today - (f.trigger_config ->> 'days')::integer
  on conflict (workspace_id, event_key) where event_key is not null do nothing;
  get diagnostics v_orders = row_count;

  insert into private.flow_date_scans as d (flow_id, scanned_on, scanned_at)
  select u.id, (now() at time zone 'UTC')::date, now() from unnest(v_flows) as u(id)
  on conflict (flow_id) do update set scanned_on = excluded.scanned_on, scanned_at = excluded.scanned_at;

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
