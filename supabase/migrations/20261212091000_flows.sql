-- Flows: event-triggered journeys. A flow is a trigger (a contact event), entry rules and a
-- graph of steps; the engine (…_flow_engine.sql) moves each contact's run through the graph.
--
-- States: draft → active ⇄ paused → archived (a draft may also be archived). Only
-- public.save_flow writes steps: it checks the whole graph (at most 200 steps, every
-- reference a template, sender or list of the flow's own workspace, every branch and wait_for
-- with its default, every cycle through a wait) and, on an active or paused flow, saves the
-- graph as a new version: runs already inside keep the version they entered.
--
-- A send_email step sends through the campaign pipeline: each step version owns a campaign
-- (campaigns.flow_step_id) with one variant copied from its template, so its mail is claimed,
-- rate-limited, suppression-checked, rendered, unsubscribed and tracked exactly like a
-- campaign's. Those campaigns stay `sending` while the flow is active (`paused` with it), are
-- never finished by the send loop, and only the flow moves them.

-- templates are referenced with their workspace -------------------------------------------------

alter table public.email_templates
  add constraint email_templates_id_workspace_id_key unique (id, workspace_id);

-- flows ------------------------------------------------------------------------------------------

create table public.flows (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 200),
  status text not null default 'draft' check (status in ('draft', 'active', 'paused', 'archived')),
  trigger_type text not null check (trigger_type in (
    'contact_created', 'list_joined', 'tag_added', 'order_placed', 'checkout_started',
    'rfm_segment_changed', 'email_opened', 'email_clicked', 'custom'
  )),
  -- list_joined: the list; tag_added: {"tag"}; order_placed: {"scope": any|first|product|category,
  -- "product_id"|"category"}; custom: {"name"}; rfm_segment_changed: {"from"?, "to"?} (arrays).
  trigger_list_id uuid,
  trigger_config jsonb not null default '{}'::jsonb check (jsonb_typeof(trigger_config) = 'object'),
  -- once ever, once per reentry_days, or every time the trigger fires.
  entry_policy text not null default 'once' check (entry_policy in ('once', 'once_per_period', 'every_time')),
  reentry_days integer check (reentry_days between 1 and 3650),
  -- One run at a time per contact, or per contact and the event's object (order, checkout).
  entry_key text not null default 'contact' check (entry_key in ('contact', 'event')),
  -- A segment rule the contact must match to enter (and, with recheck_filter, before each send).
  entry_filter jsonb,
  recheck_filter boolean not null default false,
  -- Not entered by contacts who were in this other flow in the last not_in_flow_days.
  not_in_flow_id uuid,
  not_in_flow_days integer check (not_in_flow_days between 1 and 3650),
  -- Goals: events that end a run wherever it is and count a conversion, e.g.
  -- [{"type": "order_placed"}].
  exit_events jsonb not null default '[]'::jsonb check (jsonb_typeof(exit_events) = 'array'),
  -- Orders this many days after a flow email's click count as the flow's conversions.
  attribution_days integer not null default 5 check (attribution_days between 1 and 90),
  -- Transactional flows (an order or account notice) are exempt from the workspace's frequency
  -- caps and quiet hours; a capped send of any other flow waits for room, or is skipped.
  transactional boolean not null default false,
  cap_action text not null default 'wait' check (cap_action in ('wait', 'skip')),
  version integer not null default 1,
  activated_at timestamptz,
  archived_at timestamptz,
  created_by uuid references auth.users (id) on delete set null default auth.uid(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (id, workspace_id),
  check ((entry_policy = 'once_per_period') = (reentry_days is not null)),
  check (not_in_flow_id is null or not_in_flow_days is not null),
  foreign key (trigger_list_id, workspace_id)
    references public.email_lists (id, workspace_id) on delete set null (trigger_list_id),
  foreign key (not_in_flow_id, workspace_id)
    references public.flows (id, workspace_id) on delete set null (not_in_flow_id)
);

comment on table public.flows is
  'Event-triggered journeys: trigger, entry rules, exit goals and the current version of the step graph. Status moves only through activate_flow, pause_flow, resume_flow and archive_flow.';

create index flows_workspace_id_idx on public.flows (workspace_id, created_at desc);

create index flows_trigger_idx on public.flows (workspace_id, trigger_type) where status = 'active';

create index flows_trigger_list_idx on public.flows (trigger_list_id, workspace_id);

create index flows_not_in_flow_idx on public.flows (not_in_flow_id, workspace_id);

create index flows_created_by_idx on public.flows (created_by);

create trigger flows_touch_updated_at
  before update on public.flows
  for each row execute function private.touch_updated_at();

-- The trigger's and the entry rules' shapes, for every writer.
create function private.validate_flow_settings()
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

revoke all on function private.validate_flow_settings() from public, anon, authenticated;

create trigger flows_validate_settings
  before insert or update on public.flows
  for each row execute function private.validate_flow_settings();

-- The allowed moves; anything else is refused whoever tries it.
create function private.guard_flow_status()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status = old.status then
    return new;
  end if;
  if (old.status, new.status) not in (
    ('draft', 'active'), ('draft', 'archived'), ('active', 'paused'), ('paused', 'active'),
    ('active', 'archived'), ('paused', 'archived')
  ) then
    perform private.fail(409, 'invalid_transition', format('A %s flow cannot become %s', old.status, new.status));
  end if;
  return new;
end
$$;

revoke all on function private.guard_flow_status() from public, anon, authenticated;

create trigger flows_guard_status
  before update of status on public.flows
  for each row execute function private.guard_flow_status();

-- sending rules ----------------------------------------------------------------------------------

-- A workspace's rules for flow email: at most daily_cap marketing emails per contact per calendar
-- day and weekly_cap per rolling 7 days (campaigns' and flows' mail counted together), and no
-- send between quiet_from and quiet_until, both in the contact's time zone (attributes.timezone,
-- else the workspace's `timezone`). A workspace without a row has no caps and no quiet hours.
create table public.flow_send_rules (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  daily_cap integer check (daily_cap between 1 and 100),
  weekly_cap integer check (weekly_cap between 1 and 700),
  quiet_from time,
  quiet_until time,
  timezone text not null default 'UTC' check (char_length(timezone) <= 100),
  updated_at timestamptz not null default now(),
  check ((quiet_from is null) = (quiet_until is null)),
  check (quiet_from is null or quiet_from <> quiet_until)
);

comment on table public.flow_send_rules is
  'Per workspace: frequency caps (per contact per day and per 7 days) and quiet hours for flow email, in the contact''s time zone.';

create trigger flow_send_rules_touch_updated_at
  before update on public.flow_send_rules
  for each row execute function private.touch_updated_at();

-- The workspace's time zone must be one Postgres knows (a wrong one would fail every tick).
create function private.validate_flow_send_rules()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from pg_catalog.pg_timezone_names z where z.name = new.timezone) then
    perform private.fail(422, 'invalid_timezone', 'timezone must be an IANA time zone name');
  end if;
  return new;
end
$$;

revoke all on function private.validate_flow_send_rules() from public, anon, authenticated;

create trigger flow_send_rules_validate
  before insert or update of timezone on public.flow_send_rules
  for each row execute function private.validate_flow_send_rules();

-- steps ------------------------------------------------------------------------------------------

create table public.flow_steps (
  id uuid primary key default gen_random_uuid(),
  flow_id uuid not null,
  workspace_id uuid not null,
  version integer not null,
  key text not null check (key ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
  kind text not null check (kind in (
    'wait', 'wait_until', 'wait_for', 'branch', 'send_email', 'update_contact', 'notify_team',
    'exit', 'exit_flows'
  )),
  is_entry boolean not null default false,
  config jsonb not null default '{}'::jsonb check (jsonb_typeof(config) = 'object'),
  -- The step after this one (for branch: when the rule matches; for wait_for: the event came),
  -- and the alternative (branch: the default; wait_for: the timeout).
  next_key text,
  alt_key text,
  next_id uuid,
  alt_id uuid,
  template_id uuid,
  sender_identity_id uuid,
  list_id uuid,
  -- A wait's plain delay (wait_for: its timeout) in seconds, and whether its due time also
  -- depends on the contact (a time of day in their time zone, a date attribute): the engine
  -- adds the delay inline and calls private.flow_step_due only for timed steps.
  delay_seconds double precision generated always as (
    coalesce((config ->> (case when kind = 'wait_for' then 'timeout_minutes' else 'minutes' end))::double precision, 0) * 60
    + coalesce((config ->> (case when kind = 'wait_for' then 'timeout_hours' else 'hours' end))::double precision, 0) * 3600
    + coalesce((config ->> (case when kind = 'wait_for' then 'timeout_days' else 'days' end))::double precision, 0) * 86400
  ) stored,
  timed boolean generated always as (kind = 'wait_until' or (kind = 'wait' and config ? 'at')) stored,
  -- send_email: the campaign and variant its mail goes out as (set when the version goes live).
  campaign_id uuid,
  variant_id uuid references public.campaign_variants (id) on delete set null,
  created_at timestamptz not null default now(),
  unique (flow_id, version, key),
  unique (id, workspace_id),
  foreign key (flow_id, workspace_id) references public.flows (id, workspace_id) on delete cascade,
  foreign key (template_id, workspace_id)
    references public.email_templates (id, workspace_id) on delete set null (template_id),
  foreign key (sender_identity_id, workspace_id)
    references public.sender_identities (id, workspace_id) on delete set null (sender_identity_id),
  foreign key (list_id, workspace_id)
    references public.email_lists (id, workspace_id) on delete set null (list_id),
  foreign key (campaign_id, workspace_id)
    references public.campaigns (id, workspace_id) on delete set null (campaign_id)
);

comment on table public.flow_steps is
  'The step graph of each flow version (written only by save_flow): kind, config and the next/alternative step.';

create unique index flow_steps_entry_idx on public.flow_steps (flow_id, version) where is_entry;

create index flow_steps_workspace_id_idx on public.flow_steps (workspace_id);

create index flow_steps_flow_idx on public.flow_steps (flow_id, workspace_id);

create index flow_steps_template_idx on public.flow_steps (template_id, workspace_id);

create index flow_steps_sender_idx on public.flow_steps (sender_identity_id, workspace_id);

create index flow_steps_list_idx on public.flow_steps (list_id, workspace_id);

create index flow_steps_campaign_idx on public.flow_steps (campaign_id, workspace_id);

create index flow_steps_variant_idx on public.flow_steps (variant_id);

-- A send step's campaign.
alter table public.campaigns
  add column flow_step_id uuid references public.flow_steps (id) on delete set null;

comment on column public.campaigns.flow_step_id is
  'Set on the campaign a flow''s send_email step sends as; only the flow moves such a campaign.';

create unique index campaigns_flow_step_idx on public.campaigns (flow_step_id);

-- Counters per flow, kept on write by the engine (never counted from the runs on a read).
create table public.flow_stats (
  flow_id uuid primary key,
  workspace_id uuid not null,
  entered bigint not null default 0,
  active bigint not null default 0,
  completed bigint not null default 0,
  exited bigint not null default 0,
  converted bigint not null default 0,
  emails_queued bigint not null default 0,
  updated_at timestamptz not null default now(),
  foreign key (flow_id, workspace_id) references public.flows (id, workspace_id) on delete cascade
);

comment on table public.flow_stats is
  'Per-flow counts kept on write by enrolment and the engine; broadcast on workspace:<id>:flows.';

create index flow_stats_flow_workspace_idx on public.flow_stats (flow_id, workspace_id);

create index flow_stats_workspace_id_idx on public.flow_stats (workspace_id);

create function private.create_flow_stats()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.flow_stats (flow_id, workspace_id) values (new.id, new.workspace_id);
  return null;
end
$$;

revoke all on function private.create_flow_stats() from public, anon, authenticated;

create trigger flows_create_stats
  after insert on public.flows
  for each row execute function private.create_flow_stats();

-- A flow step's campaign is moved only by its flow: members cannot pause, resume or cancel it
-- through the campaign functions, and the send loop never finishes it (it stays open for the
-- next run that reaches the step).
create function private.keep_flow_campaigns()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.flow_step_id is null or new.status = old.status
     or pg_catalog.current_setting('growthbase.flow_engine', true) = 'on' then
    return new;
  end if;
  if new.status = 'sent' then
    return null;
  end if;
  if current_user in ('authenticated', 'anon') then
    perform private.fail(409, 'flow_campaign', 'This campaign sends a flow step: pause or archive the flow instead');
  end if;
  return new;
end
$$;

revoke all on function private.keep_flow_campaigns() from public, anon, authenticated;

create trigger campaigns_keep_flow_campaigns
  before update of status on public.campaigns
  for each row execute function private.keep_flow_campaigns();

-- A template that an active or paused flow sends cannot be deleted (a draft's reference is
-- simply cleared; the draft cannot go live without a template).
create function private.keep_templates_of_live_flows()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if pg_catalog.pg_trigger_depth() = 1 and exists (
    select 1 from public.flow_steps s
    join public.flows f on f.id = s.flow_id and f.status in ('active', 'paused') and s.version = f.version
    where s.template_id = old.id
  ) then
    perform private.fail(409, 'template_in_use', 'An active or paused flow sends this template');
  end if;
  return old;
end
$$;

revoke all on function private.keep_templates_of_live_flows() from public, anon, authenticated;

create trigger email_templates_keep_live_flow_templates
  before delete on public.email_templates
  for each row execute function private.keep_templates_of_live_flows();

-- checking a graph ---------------------------------------------------------------------------------

-- A wait step's delay as an interval (minutes, hours, days; at most a year).
create function private.flow_duration(p_config jsonb, p_prefix text default '')
returns interval
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_minutes numeric := 0;
  v_part text;
begin
  foreach v_part in array array['minutes', 'hours', 'days'] loop
    if p_config ? (p_prefix || v_part) then
      if jsonb_typeof(p_config -> (p_prefix || v_part)) <> 'number'
         or (p_config ->> (p_prefix || v_part))::numeric < 0
         or (p_config ->> (p_prefix || v_part))::numeric > 525600 then
        perform private.fail(422, 'invalid_flow_step', format('%s%s must be a number from 0 to 525600', p_prefix, v_part));
      end if;
      v_minutes := v_minutes + (p_config ->> (p_prefix || v_part))::numeric
                   * case v_part when 'minutes' then 1 when 'hours' then 60 else 1440 end;
    end if;
  end loop;
  if v_minutes > 525600 then
    perform private.fail(422, 'invalid_flow_step', 'A delay is at most 365 days');
  end if;
  return make_interval(secs => (v_minutes * 60)::double precision);
end
$$;

revoke all on function private.flow_duration(jsonb, text) from public, anon, authenticated;

-- An event filter as steps and goals write it: {"type": <event type>, "name"?: <custom name>}.
create function private.valid_flow_event(p_event jsonb)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select jsonb_typeof(p_event) = 'object'
     and coalesce(p_event ->> 'type', '') in ('contact_created', 'list_joined', 'tag_added', 'order_placed',
                                             'checkout_started', 'rfm_segment_changed', 'email_opened',
                                             'email_clicked', 'custom')
     and ((p_event ->> 'type' = 'custom') = (jsonb_typeof(p_event -> 'name') is not distinct from 'string'))
$$;

revoke all on function private.valid_flow_event(jsonb) from public, anon, authenticated;

-- Checks one step's config (raises 422 invalid_flow_step naming the step).
create function private.validate_flow_step(p_workspace_id uuid, p_step jsonb)
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
  v_uuid text := '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$';
begin
  if jsonb_typeof(v_config) <> 'object' then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: config must be an object', v_key));
  end if;
  if v_kind = 'wait' then
    if v_config ? 'at' and (jsonb_typeof(v_config -> 'at') <> 'string' or (v_config ->> 'at') !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$') then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: "at" is a time of day, HH:MM', v_key));
    end if;
    if v_config ? 'weekdays' and (jsonb_typeof(v_config -> 'weekdays') <> 'array'
         or jsonb_array_length(v_config -> 'weekdays') not between 1 and 7
         or exists (select 1 from jsonb_array_elements(v_config -> 'weekdays') d
                    where jsonb_typeof(d) <> 'number' or d::text not in ('1', '2', '3', '4', '5', '6', '7'))) then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: weekdays are ISO day numbers, 1 (Monday) to 7', v_key));
    end if;
    if private.flow_duration(v_config) <= interval '0' and not v_config ? 'at' then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: a wait needs minutes, hours or days, or "at"', v_key));
    end if;
  elsif v_kind = 'wait_until' then
    if jsonb_typeof(v_config -> 'attribute') is distinct from 'string' or char_length(v_config ->> 'attribute') not between 1 and 100 then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: wait_until needs the date attribute', v_key));
    end if;
    if v_config ? 'offset_days' and (jsonb_typeof(v_config -> 'offset_days') <> 'number'
         or (v_config ->> 'offset_days')::numeric not between -365 and 365) then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: offset_days is from -365 to 365', v_key));
    end if;
    if v_config ? 'at' and (jsonb_typeof(v_config -> 'at') <> 'string' or (v_config ->> 'at') !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$') then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: "at" is a time of day, HH:MM', v_key));
    end if;
  elsif v_kind = 'wait_for' then
    if not private.valid_flow_event(v_config -> 'event') then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: wait_for needs "event": {"type", "name"?}', v_key));
    end if;
    if private.flow_duration(v_config, 'timeout_') <= interval '0' then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: wait_for needs timeout_minutes, timeout_hours or timeout_days', v_key));
    end if;
  elsif v_kind = 'branch' then
    if (v_config ? 'rule')::int + (v_config ? 'percent')::int + (v_config ? 'event')::int <> 1 then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: a branch has exactly one of rule, percent, event', v_key));
    end if;
    if v_config ? 'rule' then
      perform private.segment_condition(v_config -> 'rule');
    elsif v_config ? 'percent' then
      if jsonb_typeof(v_config -> 'percent') <> 'number' or (v_config ->> 'percent')::numeric not between 1 and 99
         or (v_config ->> 'percent')::numeric <> trunc((v_config ->> 'percent')::numeric) then
        perform private.fail(422, 'invalid_flow_step', format('Step %s: percent is a whole number from 1 to 99', v_key));
      end if;
    elsif not private.valid_flow_event(v_config -> 'event') then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: "event" is {"type", "name"?}', v_key));
    end if;
  elsif v_kind = 'send_email' then
    if coalesce(v_config ->> 'template_id', '') !~ v_uuid or not exists (
         select 1 from public.email_templates t
         where t.id = (v_config ->> 'template_id')::uuid and t.workspace_id = p_workspace_id) then
      perform private.fail(422, 'invalid_reference', format('Step %s: template not found in this workspace', v_key));
    end if;
    if coalesce(v_config ->> 'sender_identity_id', '') !~ v_uuid or not exists (
         select 1 from public.sender_identities s
         where s.id = (v_config ->> 'sender_identity_id')::uuid and s.workspace_id = p_workspace_id) then
      perform private.fail(422, 'invalid_reference', format('Step %s: sender identity not found in this workspace', v_key));
    end if;
    if jsonb_typeof(v_config -> 'from_email') is distinct from 'string'
       or (v_config ->> 'from_email') !~ '^[^@\s]+@[^@\s]+$' or char_length(v_config ->> 'from_email') > 320 then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: from_email is required', v_key));
    end if;
    if (v_config ? 'from_name' and (jsonb_typeof(v_config -> 'from_name') <> 'string'
          or char_length(v_config ->> 'from_name') > 200 or (v_config ->> 'from_name') ~ '[\r\n]'))
       or (v_config ? 'reply_to' and (jsonb_typeof(v_config -> 'reply_to') <> 'string'
          or (v_config ->> 'reply_to') !~ '^[^@\s]+@[^@\s]+$')) then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: from_name or reply_to is malformed', v_key));
    end if;
    if v_config ? 'max_lateness_minutes' and (jsonb_typeof(v_config -> 'max_lateness_minutes') <> 'number'
         or (v_config ->> 'max_lateness_minutes')::numeric not between 1 and 525600) then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: max_lateness_minutes is from 1 to 525600', v_key));
    end if;
  elsif v_kind = 'update_contact' then
    if exists (select 1 from jsonb_object_keys(v_config) k
               where k not in ('add_tags', 'remove_tags', 'set_attributes', 'add_to_list', 'remove_from_list'))
       or (v_config ? 'add_tags' and (jsonb_typeof(v_config -> 'add_tags') <> 'array' or exists (
             select 1 from jsonb_array_elements(v_config -> 'add_tags') t
             where jsonb_typeof(t) <> 'string' or char_length(t #>> '{}') not between 1 and 100)))
       or (v_config ? 'remove_tags' and (jsonb_typeof(v_config -> 'remove_tags') <> 'array' or exists (
             select 1 from jsonb_array_elements(v_config -> 'remove_tags') t
             where jsonb_typeof(t) <> 'string' or char_length(t #>> '{}') not between 1 and 100)))
       or (v_config ? 'set_attributes' and jsonb_typeof(v_config -> 'set_attributes') <> 'object')
       or v_config = '{}'::jsonb then
      perform private.fail(422, 'invalid_flow_step', format(
        'Step %s: update_contact takes add_tags, remove_tags (lists of tags), set_attributes (an object), add_to_list, remove_from_list', v_key));
    end if;
    if v_config ? 'add_to_list' and v_config ? 'remove_from_list' then
      perform private.fail(422, 'invalid_flow_step', format('Step %s: one list change per step', v_key));
    end if;
    if (v_config ? 'add_to_list' or v_config ? 'remove_from_list') and (
         coalesce(coalesce(v_config ->> 'add_to_list', v_config ->> 'remove_from_list'), '') !~ v_uuid
         or not exists (select 1 from public.email_lists l
                        where l.id = coalesce(v_config ->> 'add_to_list', v_config ->> 'remove_from_list')::uuid
                          and l.workspace_id = p_workspace_id)) then
      perform private.fail(422, 'invalid_reference', format('Step %s: list not found in this workspace', v_key));
    end if;
  elsif v_kind = 'notify_team' then
    if jsonb_typeof(v_config -> 'title') is distinct from 'string' or char_length(v_config ->> 'title') not between 1 and 200
       or (v_config ? 'body' and (jsonb_typeof(v_config -> 'body') <> 'string' or char_length(v_config ->> 'body') > 2000))
       or (v_config ? 'min_role' and coalesce(v_config ->> 'min_role', '') not in ('owner', 'admin', 'member', 'viewer')) then
      perform private.fail(422, 'invalid_flow_step', format(
        'Step %s: notify_team needs a title (and an optional body and min_role: owner, admin, member or viewer)', v_key));
    end if;
  elsif v_kind = 'exit_flows' then
    if v_config ? 'flow_ids' and (jsonb_typeof(v_config -> 'flow_ids') <> 'array' or exists (
         select 1 from jsonb_array_elements(v_config -> 'flow_ids') f
         where jsonb_typeof(f) <> 'string' or (f #>> '{}') !~ v_uuid
            or not exists (select 1 from public.flows o where o.id = (f #>> '{}')::uuid and o.workspace_id = p_workspace_id))) then
      perform private.fail(422, 'invalid_reference', format('Step %s: flow_ids must be flows of this workspace', v_key));
    end if;
  elsif v_kind <> 'exit' or v_kind is null then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: kind is wait, wait_until, wait_for, branch, send_email, update_contact, notify_team, exit or exit_flows', v_key));
  end if;
end
$$;

revoke all on function private.validate_flow_step(uuid, jsonb) from public, anon, authenticated;

-- Checks a whole graph: 1 to 200 steps with unique keys, each valid, edges to existing steps,
-- a default for every branch and a timeout path for every wait_for, nothing after an exit,
-- and every cycle passing through a wait or wait_for (so no run can loop within one tick).
create function private.validate_flow_graph(p_workspace_id uuid, p_steps jsonb)
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
  where s ->> 'kind' in ('branch', 'wait_for') and s ->> 'alt' is null limit 1;
  if v_bad is not null then
    perform private.fail(422, 'missing_default_branch',
      format('Step %s needs "alt": the default branch (for wait_for, the timeout path)', v_bad));
  end if;
  select s ->> 'key' into v_bad from jsonb_array_elements(p_steps) s
  where (s ->> 'kind' = 'exit' and (s ->> 'next' is not null or s ->> 'alt' is not null))
     or (s ->> 'kind' not in ('branch', 'wait_for') and s ->> 'alt' is not null) limit 1;
  if v_bad is not null then
    perform private.fail(422, 'invalid_flow_graph', format('Step %s: only branch and wait_for have "alt", and exit has no next', v_bad));
  end if;
  -- Edges between steps that do not wait; a cycle among them would never wait.
  with recursive edges as (
    select s ->> 'key' as src, e.dst
    from jsonb_array_elements(p_steps) s
    cross join lateral (values (s ->> 'next'), (s ->> 'alt')) as e(dst)
    where e.dst is not null and s ->> 'kind' not in ('wait', 'wait_for')
      and e.dst in (select t ->> 'key' from jsonb_array_elements(p_steps) t where t ->> 'kind' not in ('wait', 'wait_for'))
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

-- A version's send steps get their campaigns (from the template, the sender checked as a
-- campaign's is) when the version goes live.
create function private.open_flow_campaigns(p_flow_id uuid, p_version integer)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_step record;
  v_variant_id uuid;
begin
  perform pg_catalog.set_config('growthbase.flow_engine', 'on', true);
  for v_step in
    select s.*, f.name as flow_name, f.status as flow_status
    from public.flow_steps s join public.flows f on f.id = s.flow_id
    where s.flow_id = p_flow_id and s.version = p_version and s.kind = 'send_email' and s.campaign_id is null
  loop
    if v_step.template_id is null then
      perform private.fail(422, 'invalid_reference', format('Step %s: its template was deleted', v_step.key));
    end if;
    insert into public.campaigns (workspace_id, name, status, sender_identity_id, from_name, from_email,
                                  reply_to, started_at, flow_step_id, created_by)
    values (v_step.workspace_id, left(format('Flow %s · %s (v%s)', v_step.flow_name, v_step.key, v_step.version), 200),
            case when v_step.flow_status = 'paused' then 'paused' else 'sending' end,
            v_step.sender_identity_id, v_step.config ->> 'from_name', lower(btrim(v_step.config ->> 'from_email')),
            v_step.config ->> 'reply_to', now(), v_step.id, null)
    returning * into v_campaign;
    perform private.assert_campaign_sender(v_campaign);
    insert into public.campaign_variants (campaign_id, workspace_id, name, subject, html, text)
    select v_campaign.id, t.workspace_id, 'A', t.subject, t.html, t.text
    from public.email_templates t where t.id = v_step.template_id
    returning id into v_variant_id;
    update public.flow_steps s set campaign_id = v_campaign.id, variant_id = v_variant_id
    where s.id = v_step.id;
  end loop;
  perform pg_catalog.set_config('growthbase.flow_engine', '', true);
end
$$;

revoke all on function private.open_flow_campaigns(uuid, integer) from public, anon, authenticated;

-- Moves every campaign of a flow's send steps (all versions) to a status.
create function private.set_flow_campaigns(p_flow_id uuid, p_from text[], p_status text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform pg_catalog.set_config('growthbase.flow_engine', 'on', true);
  update public.campaigns c
  set status = p_status, finished_at = case when p_status = 'cancelled' then now() else c.finished_at end
  from public.flow_steps s
  where s.flow_id = p_flow_id and c.id = s.campaign_id and c.status = any (p_from);
  if p_status = 'cancelled' then
    update public.campaign_recipients r
    set status = 'cancelled', locked_until = null
    from public.flow_steps s
    where s.flow_id = p_flow_id and r.campaign_id = s.campaign_id and r.status = 'queued';
  end if;
  perform pg_catalog.set_config('growthbase.flow_engine', '', true);
end
$$;

revoke all on function private.set_flow_campaigns(uuid, text[], text) from public, anon, authenticated;

-- the RPCs ---------------------------------------------------------------------------------------

-- The flow, locked, when the caller is a member (or above) of its workspace.
create function private.flow_for_member(p_flow_id uuid)
returns public.flows
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_flow public.flows;
begin
  select * into v_flow from public.flows f where f.id = p_flow_id for update;
  if v_flow.id is null or v_flow.workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'flow_not_found', 'Flow not found');
  end if;
  if v_flow.workspace_id not in (select private.user_workspace_ids_at_least('member')) then
    perform private.fail(403, 'insufficient_role', 'Viewers cannot change flows');
  end if;
  return v_flow;
end
$$;

revoke all on function private.flow_for_member(uuid) from public, anon, authenticated;

-- Saves a flow's step graph (the first step is the entry). A draft's graph is replaced; an
-- active or paused flow gets a new version, live at once, while runs inside keep theirs.
create function public.save_flow(p_flow_id uuid, p_steps jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_flow public.flows := private.flow_for_member(p_flow_id);
  v_version integer;
begin
  if v_flow.status = 'archived' then
    perform private.fail(409, 'flow_archived', 'An archived flow cannot be edited');
  end if;
  perform private.validate_flow_graph(v_flow.workspace_id, p_steps);
  if v_flow.status = 'draft' then
    v_version := v_flow.version;
    delete from public.flow_steps s where s.flow_id = v_flow.id and s.version = v_version;
  else
    v_version := v_flow.version + 1;
  end if;
  insert into public.flow_steps (flow_id, workspace_id, version, key, kind, is_entry, config, next_key, alt_key,
                                 template_id, sender_identity_id, list_id)
  select v_flow.id, v_flow.workspace_id, v_version, s ->> 'key', s ->> 'kind', n = 1,
         coalesce(s -> 'config', '{}'::jsonb), s ->> 'next', s ->> 'alt',
         case when s ->> 'kind' = 'send_email' then (s -> 'config' ->> 'template_id')::uuid end,
         case when s ->> 'kind' = 'send_email' then (s -> 'config' ->> 'sender_identity_id')::uuid end,
         case when s ->> 'kind' = 'update_contact'
              then coalesce(s -> 'config' ->> 'add_to_list', s -> 'config' ->> 'remove_from_list')::uuid end
  from jsonb_array_elements(p_steps) with ordinality as a(s, n);
  update public.flow_steps s
  set next_id = n.id, alt_id = a.id
  from public.flow_steps s2
  left join public.flow_steps n on n.flow_id = s2.flow_id and n.version = s2.version and n.key = s2.next_key
  left join public.flow_steps a on a.flow_id = s2.flow_id and a.version = s2.version and a.key = s2.alt_key
  where s2.id = s.id and s.flow_id = v_flow.id and s.version = v_version;
  if v_flow.status <> 'draft' then
    perform private.open_flow_campaigns(v_flow.id, v_version);
    update public.flows set version = v_version where id = v_flow.id;
  end if;
  return v_version;
end
$$;

comment on function public.save_flow(uuid, jsonb) is
  'Saves a flow''s steps ([{"key", "kind", "config", "next"?, "alt"?}], the first is the entry); members and above. Answers the version saved.';

-- draft → active: the graph is complete and every send step's sender verified.
create function public.activate_flow(p_flow_id uuid)
returns public.flows
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_flow public.flows := private.flow_for_member(p_flow_id);
begin
  if v_flow.status <> 'draft' then
    perform private.fail(409, 'invalid_transition', format('A %s flow cannot be activated (resume a paused one)', v_flow.status));
  end if;
  if not exists (select 1 from public.flow_steps s where s.flow_id = v_flow.id and s.version = v_flow.version) then
    perform private.fail(422, 'invalid_flow_graph', 'Save the flow''s steps before activating it');
  end if;
  update public.flows set status = 'active', activated_at = now() where id = v_flow.id returning * into v_flow;
  perform private.open_flow_campaigns(v_flow.id, v_flow.version);
  return v_flow;
end
$$;

comment on function public.activate_flow(uuid) is
  'Makes a draft flow live (members and above): new trigger events enrol contacts from now on.';

-- active → paused: runs hold where they are (nothing is skipped or exited), and queued mail waits.
create function public.pause_flow(p_flow_id uuid)
returns public.flows
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_flow public.flows := private.flow_for_member(p_flow_id);
begin
  update public.flows set status = 'paused' where id = v_flow.id returning * into v_flow;
  perform private.set_flow_campaigns(v_flow.id, array['sending'], 'paused');
  return v_flow;
end
$$;

comment on function public.pause_flow(uuid) is
  'Pauses an active flow (members and above): its runs hold, new events do not enrol, queued mail waits.';

-- paused → active: held runs go on; a send step that is now later than its max lateness is
-- recorded `stale` and skipped.
create function public.resume_flow(p_flow_id uuid)
returns public.flows
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_flow public.flows := private.flow_for_member(p_flow_id);
begin
  if v_flow.status <> 'paused' then
    perform private.fail(409, 'invalid_transition', format('A %s flow cannot be resumed', v_flow.status));
  end if;
  update public.flows set status = 'active' where id = v_flow.id returning * into v_flow;
  perform private.set_flow_campaigns(v_flow.id, array['paused'], 'sending');
  return v_flow;
end
$$;

comment on function public.resume_flow(uuid) is 'Resumes a paused flow (members and above).';

-- grants -----------------------------------------------------------------------------------------

revoke all on public.flows, public.flow_steps, public.flow_stats from public, anon, authenticated;

grant select, delete on public.flows to authenticated;

grant insert (workspace_id, name, trigger_type, trigger_list_id, trigger_config, entry_policy, reentry_days,
              entry_key, entry_filter, recheck_filter, not_in_flow_id, not_in_flow_days, exit_events,
              attribution_days, transactional, cap_action) on public.flows to authenticated;

grant update (name, trigger_type, trigger_list_id, trigger_config, entry_policy, reentry_days, entry_key,
              entry_filter, recheck_filter, not_in_flow_id, not_in_flow_days, exit_events, attribution_days,
              transactional, cap_action)
  on public.flows to authenticated;

revoke all on public.flow_send_rules from public, anon, authenticated;

grant select, delete on public.flow_send_rules to authenticated;

grant insert (workspace_id, daily_cap, weekly_cap, quiet_from, quiet_until, timezone),
      update (daily_cap, weekly_cap, quiet_from, quiet_until, timezone)
  on public.flow_send_rules to authenticated;

grant all on public.flow_send_rules to service_role;

grant select on public.flow_steps, public.flow_stats to authenticated;

grant all on public.flows, public.flow_steps, public.flow_stats to service_role;

revoke all on function public.save_flow(uuid, jsonb) from public, anon;

revoke all on function public.activate_flow(uuid) from public, anon;

revoke all on function public.pause_flow(uuid) from public, anon;

revoke all on function public.resume_flow(uuid) from public, anon;

grant execute on function public.save_flow(uuid, jsonb) to authenticated, service_role;

grant execute on function public.activate_flow(uuid) to authenticated, service_role;

grant execute on function public.pause_flow(uuid) to authenticated, service_role;

grant execute on function public.resume_flow(uuid) to authenticated, service_role;

-- RLS --------------------------------------------------------------------------------------------

alter table public.flows enable row level security;

alter table public.flow_steps enable row level security;

alter table public.flow_stats enable row level security;

alter table public.flow_send_rules enable row level security;

-- Members of any role may read their workspaces' sending rules.
create policy flow_send_rules_select_members on public.flow_send_rules
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Admins and owners may set their workspaces' sending rules.
create policy flow_send_rules_insert_admins on public.flow_send_rules
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners may change their workspaces' sending rules.
create policy flow_send_rules_update_admins on public.flow_send_rules
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners may remove their workspaces' sending rules.
create policy flow_send_rules_delete_admins on public.flow_send_rules
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Members of any role may read their workspaces' flows.
create policy flows_select_members on public.flows
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members and above may create flows (always as drafts: status is not theirs to write).
create policy flows_insert_members on public.flows
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may edit a flow's settings until it is archived.
create policy flows_update_members on public.flows
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')) and status <> 'archived')
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')) and status <> 'archived');

-- Members and above may delete a draft (a flow that ran is archived instead).
create policy flows_delete_members on public.flows
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')) and status = 'draft');

-- Members of any role may read their workspaces' flow steps; only save_flow writes them.
create policy flow_steps_select_members on public.flow_steps
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' flow counts; only the engine writes them.
create policy flow_stats_select_members on public.flow_stats
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- the register of personal data -------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values
  ('public', 'flows', 'name', 'none', 'not_personal', null),
  ('public', 'flows', 'status', 'none', 'not_personal', null),
  ('public', 'flows', 'trigger_type', 'none', 'not_personal', null),
  ('public', 'flows', 'trigger_config', 'none', 'not_personal', 'a tag, product, category or event name'),
  ('public', 'flows', 'entry_policy', 'none', 'not_personal', null),
  ('public', 'flows', 'entry_key', 'none', 'not_personal', null),
  ('public', 'flows', 'entry_filter', 'none', 'not_personal', 'a segment rule'),
  ('public', 'flows', 'exit_events', 'none', 'not_personal', null),
  ('public', 'flows', 'cap_action', 'none', 'not_personal', null),
  ('public', 'flow_send_rules', 'timezone', 'none', 'not_personal', null),
  ('public', 'flow_steps', 'key', 'none', 'not_personal', null),
  ('public', 'flow_steps', 'kind', 'none', 'not_personal', null),
  ('public', 'flow_steps', 'config', 'none', 'not_personal', 'step settings: waits, rules, template and sender ids'),
  ('public', 'flow_steps', 'next_key', 'none', 'not_personal', null),
  ('public', 'flow_steps', 'alt_key', 'none', 'not_personal', null);
