-- What a support team needs in the inbox: assignment (by hand, or round-robin within a team
-- that respects each member's capacity), status and snooze, priority, labels, internal notes
-- with @mentions, SLA clocks (first response, next response, resolution) counted in business
-- hours, canned responses, auto-resolve after days of silence, contact merge (audited, with
-- suggestions), and reports of first response and resolution times per member and channel.
--
-- Members and above change conversations through the functions below (each change is logged
-- in conversation_events and broadcast on `workspace:<id>:inbox`); viewers only read. Admins
-- manage teams, SLA policies and the inbox settings through the Data API under RLS; members
-- manage canned responses.
--
-- Open load per assignee (open and pending conversations) is kept on write by statement-level
-- triggers, so picking the next assignee never counts a workspace's conversations.

-- tables -------------------------------------------------------------------------------------

create table public.inbox_teams (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 100),
  auto_assign boolean not null default true,
  default_capacity integer not null default 10 check (default_capacity between 1 and 1000),
  created_at timestamptz not null default now(),
  unique (workspace_id, name),
  unique (id, workspace_id)
);

comment on table public.inbox_teams is
  'A support team: new conversations of its channels are assigned round-robin to members under their capacity.';

create table public.inbox_team_members (
  team_id uuid not null,
  workspace_id uuid not null,
  user_id uuid not null references auth.users (id) on delete cascade,
  capacity integer check (capacity between 0 and 1000),
  last_assigned_at timestamptz,
  primary key (team_id, user_id),
  foreign key (team_id, workspace_id) references public.inbox_teams (id, workspace_id) on delete cascade
);

comment on table public.inbox_team_members is
  'A member of a team, with their capacity (open conversations at most; the team''s default when null).';

create index inbox_team_members_team_workspace_idx on public.inbox_team_members (team_id, workspace_id);

create index inbox_team_members_user_id_idx on public.inbox_team_members (user_id);

create index inbox_team_members_workspace_id_idx on public.inbox_team_members (workspace_id);

alter table public.channels add column team_id uuid references public.inbox_teams (id) on delete set null;

create index channels_team_id_idx on public.channels (team_id);

alter table public.conversations add column team_id uuid references public.inbox_teams (id) on delete set null;

alter table public.conversations add column first_response_due_at timestamptz;

alter table public.conversations add column next_response_due_at timestamptz;

alter table public.conversations add column resolution_due_at timestamptz;

create index conversations_team_id_idx on public.conversations (team_id);

create index conversations_stale_idx on public.conversations (last_message_at)
  where status in ('open', 'pending');

create index conversations_snoozed_idx on public.conversations (snoozed_until)
  where status = 'snoozed';

create table private.inbox_assignee_loads (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  open_count integer not null default 0,
  primary key (workspace_id, user_id)
);

comment on table private.inbox_assignee_loads is
  'Open and pending conversations per assignee, kept on write.';

create index inbox_assignee_loads_user_id_idx on private.inbox_assignee_loads (user_id);

create table public.conversation_events (
  id bigint generated always as identity primary key,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  conversation_id uuid not null references public.conversations (id) on delete cascade,
  actor_id uuid references auth.users (id) on delete set null,
  kind text not null check (kind in ('assigned', 'status', 'priority', 'labels', 'team', 'merged')),
  detail jsonb not null default '{}'::jsonb check (jsonb_typeof(detail) = 'object'),
  created_at timestamptz not null default now()
);

comment on table public.conversation_events is
  'What happened to a conversation and who did it (assignments, status, priority, labels, merges).';

create index conversation_events_conversation_idx on public.conversation_events (conversation_id, created_at);

create index conversation_events_workspace_id_idx on public.conversation_events (workspace_id);

create index conversation_events_actor_id_idx on public.conversation_events (actor_id);

create table public.inbox_sla_policies (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  first_response_minutes integer check (first_response_minutes between 1 and 525600),
  next_response_minutes integer check (next_response_minutes between 1 and 525600),
  resolution_minutes integer check (resolution_minutes between 1 and 525600),
  timezone text not null default 'UTC' check (char_length(timezone) <= 64),
  business_hours jsonb check (jsonb_typeof(business_hours) = 'object' and pg_column_size(business_hours) <= 4096),
  updated_at timestamptz not null default now()
);

comment on table public.inbox_sla_policies is
  'A workspace''s SLA targets in business minutes; business_hours maps ISO weekdays ("1" Monday … "7" Sunday) to [["09:00", "17:00"], …] in timezone; none means around the clock.';

create table public.canned_responses (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  short_code text not null check (short_code ~ '^[a-z0-9_-]{1,40}$'),
  title text not null check (char_length(title) between 1 and 200),
  content text not null check (char_length(content) between 1 and 20000),
  created_by uuid references auth.users (id) on delete set null default auth.uid(),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (workspace_id, short_code)
);

comment on table public.canned_responses is 'Saved replies a team inserts by short code.';

create index canned_responses_created_by_idx on public.canned_responses (created_by);

create table public.inbox_settings (
  workspace_id uuid primary key references public.workspaces (id) on delete cascade,
  auto_resolve_days integer check (auto_resolve_days between 1 and 365),
  updated_at timestamptz not null default now()
);

comment on table public.inbox_settings is
  'A workspace''s inbox settings: open and pending conversations silent for auto_resolve_days are resolved.';

create table public.contact_merges (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  kept_contact_id uuid references public.contacts (id) on delete set null,
  merged_contact_id uuid references public.contacts (id) on delete set null,
  merged_by uuid references auth.users (id) on delete set null,
  moved jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now()
);

comment on table public.contact_merges is
  'Audit of contact merges: which contact was merged into which, by whom, and how many rows moved.';

create index contact_merges_workspace_id_idx on public.contact_merges (workspace_id, created_at desc);

create index contact_merges_kept_contact_id_idx on public.contact_merges (kept_contact_id);

create index contact_merges_merged_contact_id_idx on public.contact_merges (merged_contact_id);

create index contact_merges_merged_by_idx on public.contact_merges (merged_by);

create index contacts_workspace_phone_idx on public.contacts (workspace_id, phone) where phone is not null;

-- checks ---------------------------------------------------------------------------------------

-- A team member must be a member (not a viewer) of the team's workspace.
create function private.check_team_member()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not exists (select from public.workspace_members m
                 where m.workspace_id = new.workspace_id and m.user_id = new.user_id
                   and private.role_rank(m.role) >= private.role_rank('member')) then
    perform private.fail(422, 'not_a_member', 'Team members must be members of the workspace');
  end if;
  return new;
end
$$;

revoke all on function private.check_team_member() from public, anon, authenticated;

create trigger inbox_team_members_check
  before insert or update on public.inbox_team_members
  for each row execute function private.check_team_member();

-- An SLA policy's time zone must be one Postgres knows, its hours well-formed.
create function private.check_sla_policy()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not exists (select from pg_catalog.pg_timezone_names z where z.name = new.timezone) then
    perform private.fail(422, 'invalid_timezone', 'The time zone is not one Postgres knows');
  end if;
  if new.business_hours is not null and exists (
    select from jsonb_each(new.business_hours) as d(day, spans)
    where d.day !~ '^[1-7]$' or jsonb_typeof(d.spans) <> 'array'
       or exists (select from jsonb_array_elements(d.spans) as s
                  where jsonb_typeof(s) <> 'array' or jsonb_array_length(s) <> 2
                     or s ->> 0 !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'
                     or s ->> 1 !~ '^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$'
                     or s ->> 0 >= s ->> 1)
  ) then
    perform private.fail(422, 'invalid_business_hours',
      'Business hours are {"1".."7": [["HH:MM", "HH:MM"], ...]} with each span ending after it starts');
  end if;
  new.updated_at := now();
  return new;
end
$$;

revoke all on function private.check_sla_policy() from public, anon, authenticated;

create trigger inbox_sla_policies_check
  before insert or update on public.inbox_sla_policies
  for each row execute function private.check_sla_policy();

create trigger canned_responses_touch_updated_at
  before update on public.canned_responses
  for each row execute function private.touch_updated_at();

-- business hours ---------------------------------------------------------------------------------

-- Business minutes between two moments: the overlap of [p_from, p_to) with the business hours
-- of every local day in between (every minute when there are no hours).
create function private.business_minutes(p_from timestamptz, p_to timestamptz, p_timezone text, p_hours jsonb)
returns numeric
language sql
stable
set search_path = ''
as $$
  select case
    when p_from is null or p_to is null or p_to <= p_from then 0
    when p_hours is null then round(extract(epoch from p_to - p_from) / 60, 2)
    else coalesce((
      select round(sum(greatest(extract(epoch from least(p_to, e.span_end) - greatest(p_from, e.span_start)), 0)) / 60, 2)
      from generate_series((p_from at time zone p_timezone)::date::timestamp, (p_to at time zone p_timezone)::date::timestamp, interval '1 day') as g(day),
           jsonb_array_elements(coalesce(p_hours -> extract(isodow from g.day)::integer::text, '[]'::jsonb)) as s(span),
           lateral (select (g.day::date + (s.span ->> 0)::time) at time zone p_timezone as span_start,
                           (g.day::date + case when s.span ->> 1 = '24:00' then interval '1 day' else (s.span ->> 1)::time::interval end) at time zone p_timezone as span_end) as e
    ), 0)
  end
$$;

revoke all on function private.business_minutes(timestamptz, timestamptz, text, jsonb) from public, anon, authenticated;

grant execute on function private.business_minutes(timestamptz, timestamptz, text, jsonb) to service_role;

-- The moment p_minutes business minutes after p_from (searching a year of days at most).
create function private.business_deadline(p_from timestamptz, p_minutes integer, p_timezone text, p_hours jsonb)
returns timestamptz
language sql
stable
set search_path = ''
as $$
  select case
    when p_from is null or p_minutes is null then null
    when p_hours is null then p_from + make_interval(mins => p_minutes)
    else (
      select x.span_start + make_interval(secs => (p_minutes - (x.before_minutes)) * 60)
      from (
        select w.span_start, w.minutes,
               coalesce(sum(w.minutes) over (order by w.span_start rows between unbounded preceding and 1 preceding), 0) as before_minutes
        from (
          select greatest(e.span_start, p_from) as span_start,
                 extract(epoch from e.span_end - greatest(e.span_start, p_from)) / 60 as minutes
          from generate_series((p_from at time zone p_timezone)::date::timestamp, ((p_from at time zone p_timezone)::date + 366)::timestamp, interval '1 day') as g(day),
               jsonb_array_elements(coalesce(p_hours -> extract(isodow from g.day)::integer::text, '[]'::jsonb)) as s(span),
               lateral (select (g.day::date + (s.span ->> 0)::time) at time zone p_timezone as span_start,
                               (g.day::date + case when s.span ->> 1 = '24:00' then interval '1 day' else (s.span ->> 1)::time::interval end) at time zone p_timezone as span_end) as e
          where e.span_end > p_from
        ) as w
      ) as x
      where x.before_minutes < p_minutes and x.before_minutes + x.minutes >= p_minutes
      order by x.span_start
      limit 1
    )
  end
$$;

revoke all on function private.business_deadline(timestamptz, integer, text, jsonb) from public, anon, authenticated;

grant execute on function private.business_deadline(timestamptz, integer, text, jsonb) to service_role;

-- load counters and auto-assignment -------------------------------------------------------------

create function private.add_assignee_loads(p_workspace_ids uuid[], p_user_ids uuid[], p_changes integer[])
returns void
language sql
set search_path = ''
as $$
  insert into private.inbox_assignee_loads as l (workspace_id, user_id, open_count)
  select d.workspace_id, d.user_id, sum(d.change)
  from unnest(p_workspace_ids, p_user_ids, p_changes) as d(workspace_id, user_id, change)
  where d.user_id is not null
    and exists (select from auth.users u where u.id = d.user_id)
  group by d.workspace_id, d.user_id
  having sum(d.change) <> 0
  order by d.workspace_id, d.user_id
  on conflict (workspace_id, user_id) do update set open_count = greatest(l.open_count + excluded.open_count, 0)
$$;

revoke all on function private.add_assignee_loads(uuid[], uuid[], integer[]) from public, anon, authenticated;

create function private.count_inserted_assignee_loads()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.add_assignee_loads(array_agg(n.workspace_id), array_agg(n.assignee_id), array_agg(1))
  from new_rows n where n.status in ('open', 'pending') and n.assignee_id is not null
  having count(*) > 0;
  return null;
end
$$;

revoke all on function private.count_inserted_assignee_loads() from public, anon, authenticated;

create function private.count_deleted_assignee_loads()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.add_assignee_loads(array_agg(o.workspace_id), array_agg(o.assignee_id), array_agg(-1))
  from old_rows o where o.status in ('open', 'pending') and o.assignee_id is not null
  having count(*) > 0;
  return null;
end
$$;

revoke all on function private.count_deleted_assignee_loads() from public, anon, authenticated;

create function private.count_updated_assignee_loads()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.add_assignee_loads(array_agg(c.workspace_id), array_agg(c.user_id), array_agg(c.change))
  from (
    select n.workspace_id, n.assignee_id as user_id, 1 as change
    from new_rows n join old_rows o on o.id = n.id
    where (n.assignee_id is distinct from o.assignee_id or n.status is distinct from o.status)
      and n.status in ('open', 'pending') and n.assignee_id is not null
    union all
    select o.workspace_id, o.assignee_id, -1
    from new_rows n join old_rows o on o.id = n.id
    where (n.assignee_id is distinct from o.assignee_id or n.status is distinct from o.status)
      and o.status in ('open', 'pending') and o.assignee_id is not null
  ) as c
  having count(*) > 0;
  return null;
end
$$;

revoke all on function private.count_updated_assignee_loads() from public, anon, authenticated;

create trigger conversations_loads_inserted
  after insert on public.conversations
  referencing new table as new_rows
  for each statement execute function private.count_inserted_assignee_loads();

create trigger conversations_loads_updated
  after update on public.conversations
  referencing old table as old_rows new table as new_rows
  for each statement execute function private.count_updated_assignee_loads();

create trigger conversations_loads_deleted
  after delete on public.conversations
  referencing old table as old_rows
  for each statement execute function private.count_deleted_assignee_loads();

-- The team member next in turn with room: the one assigned longest ago (never first) among
-- those whose open load is under their capacity; takes the team's lock so concurrent
-- assignments take turns. Null when everyone is full.
create function private.next_team_assignee(p_team_id uuid)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_team public.inbox_teams;
  v_user uuid;
begin
  select * into v_team from public.inbox_teams t where t.id = p_team_id for update;
  if v_team.id is null then
    return null;
  end if;
  select m.user_id into v_user
  from public.inbox_team_members m
  left join private.inbox_assignee_loads l on l.workspace_id = m.workspace_id and l.user_id = m.user_id
  where m.team_id = p_team_id
    and coalesce(l.open_count, 0) < coalesce(m.capacity, v_team.default_capacity)
    and exists (select from public.workspace_members w
                where w.workspace_id = m.workspace_id and w.user_id = m.user_id)
  order by m.last_assigned_at nulls first, m.user_id
  limit 1;
  if v_user is not null then
    update public.inbox_team_members m set last_assigned_at = clock_timestamp()
    where m.team_id = p_team_id and m.user_id = v_user;
  end if;
  return v_user;
end
$$;

revoke all on function private.next_team_assignee(uuid) from public, anon, authenticated;

grant execute on function private.next_team_assignee(uuid) to service_role;

-- New conversations: the channel's team, an assignee from it when the team auto-assigns (the
-- assignee is notified), and the SLA deadlines of the workspace's policy.
create function private.route_new_conversations()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row record;
  v_assignee uuid;
begin
  update public.conversations c
  set first_response_due_at = private.business_deadline(c.created_at, p.first_response_minutes, p.timezone, p.business_hours),
      resolution_due_at = private.business_deadline(c.created_at, p.resolution_minutes, p.timezone, p.business_hours)
  from new_rows n
  join public.inbox_sla_policies p on p.workspace_id = n.workspace_id
  where c.id = n.id;
  for v_row in
    select n.id, n.workspace_id, n.contact_id, ch.team_id, t.auto_assign
    from new_rows n
    join public.channels ch on ch.id = n.channel_id
    join public.inbox_teams t on t.id = ch.team_id
    where n.assignee_id is null
    order by n.created_at, n.id
  loop
    v_assignee := case when v_row.auto_assign then private.next_team_assignee(v_row.team_id) end;
    update public.conversations c set team_id = v_row.team_id, assignee_id = v_assignee where c.id = v_row.id;
    if v_assignee is not null then
      insert into public.conversation_events (workspace_id, conversation_id, actor_id, kind, detail)
      values (v_row.workspace_id, v_row.id, null, 'assigned',
              jsonb_build_object('assignee_id', v_assignee, 'team_id', v_row.team_id, 'auto', true));
      perform private.notify_users(v_row.workspace_id, array[v_assignee], 'conversation.assigned',
                                   'A conversation was assigned to you', null,
                                   jsonb_build_object('conversation_id', v_row.id), v_row.contact_id);
    end if;
  end loop;
  return null;
end
$$;

revoke all on function private.route_new_conversations() from public, anon, authenticated;

create trigger conversations_route_new
  after insert on public.conversations
  referencing new table as new_rows
  for each statement execute function private.route_new_conversations();

-- SLA clocks as messages arrive: a customer's message waiting after our answer starts the
-- next-response clock; a member's reply stops it.
create function private.inbox_sla_clocks()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.conversations c
  set next_response_due_at = case
        when d.last_outbound is not null and (d.last_inbound is null or d.last_outbound >= d.last_inbound) then null
        when c.first_response_at is not null and c.next_response_due_at is null and d.first_inbound is not null
          then private.business_deadline(d.first_inbound, p.next_response_minutes, p.timezone, p.business_hours)
        else c.next_response_due_at end
  from (
    select n.conversation_id,
           min(n.provider_timestamp) filter (where n.direction = 'inbound' and not n.auto_reply) as first_inbound,
           max(n.provider_timestamp) filter (where n.direction = 'inbound' and not n.auto_reply) as last_inbound,
           max(n.created_at) filter (where n.direction = 'outbound' and n.author_id is not null) as last_outbound
    from new_rows n group by n.conversation_id
  ) as d
  join public.inbox_sla_policies p on true
  where c.id = d.conversation_id and p.workspace_id = c.workspace_id;
  return null;
end
$$;

revoke all on function private.inbox_sla_clocks() from public, anon, authenticated;

create trigger messages_sla_clocks
  after insert on public.messages
  referencing new table as new_rows
  for each statement execute function private.inbox_sla_clocks();

-- New messages, as before (counts and times, inbound total, reopening, broadcasts); the
-- assignee is now told of a customer's reply only in a conversation that existed before the
-- transaction, not of the message that opened it (auto-assignment already told them).
create or replace function private.inbox_messages_inserted()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.conversations c
  set message_count = c.message_count + d.messages,
      inbound_count = c.inbound_count + d.inbound,
      last_message_at = greatest(c.last_message_at, coalesce(d.last_at, c.last_message_at)),
      last_inbound_at = greatest(c.last_inbound_at, d.last_inbound_at),
      last_outbound_at = greatest(c.last_outbound_at, d.last_outbound_at),
      first_response_at = coalesce(c.first_response_at, d.first_outbound_at),
      status = case when d.inbound > 0 and c.status in ('snoozed', 'pending') then 'open' else c.status end,
      snoozed_until = case when d.inbound > 0 and c.status in ('snoozed', 'pending') then null else c.snoozed_until end,
      updated_at = now()
  from (
    select n.conversation_id,
           count(*) filter (where n.direction <> 'note')::integer as messages,
           count(*) filter (where n.direction = 'inbound')::integer as inbound,
           max(n.provider_timestamp) filter (where n.direction <> 'note') as last_at,
           max(n.provider_timestamp) filter (where n.direction = 'inbound') as last_inbound_at,
           max(n.provider_timestamp) filter (where n.direction = 'outbound') as last_outbound_at,
           min(n.created_at) filter (where n.direction = 'outbound' and n.author_id is not null) as first_outbound_at
    from new_rows n
    group by n.conversation_id
  ) as d
  where c.id = d.conversation_id;

  insert into public.inbox_counters as k (workspace_id, inbound_count)
  select n.workspace_id, count(*) from new_rows n where n.direction = 'inbound' group by n.workspace_id
  on conflict (workspace_id) do update set inbound_count = k.inbound_count + excluded.inbound_count;

  -- The assignee hears of a customer's reply (in the app; the text stays in the conversation),
  -- not of the message that opened the conversation (they were told of the assignment).
  perform private.notify_users(c.workspace_id, array[c.assignee_id], 'conversation.replied',
                               'A customer replied', null,
                               jsonb_build_object('conversation_id', c.id), c.contact_id)
  from public.conversations c
  where c.assignee_id is not null and c.created_at < now()
    and c.id in (select n.conversation_id from new_rows n where n.direction = 'inbound');

  perform realtime.send(
    jsonb_build_object('id', n.id, 'conversation_id', n.conversation_id, 'channel_id', n.channel_id,
                       'direction', n.direction, 'status', n.status,
                       'provider_timestamp', n.provider_timestamp),
    'message_created', 'workspace:' || n.workspace_id::text || ':inbox', true)
  from new_rows n;
  return null;
end
$$;

revoke all on function private.inbox_messages_inserted() from public, anon, authenticated;

-- changing conversations (members) ---------------------------------------------------------------

-- The caller's conversation for a change: 404 when it is not theirs to see, 403 for viewers.
create function private.conversation_for_change(p_conversation_id uuid)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conversation public.conversations;
begin
  select * into v_conversation from public.conversations c
  where c.id = p_conversation_id and c.workspace_id in (select private.user_workspace_ids())
  for update;
  if v_conversation.id is null then
    perform private.fail(404, 'conversation_not_found', 'Conversation not found');
  end if;
  perform private.workspace_role_as(v_conversation.workspace_id, 'member');
  return v_conversation;
end
$$;

revoke all on function private.conversation_for_change(uuid) from public, anon, authenticated;

-- Members and above assign a conversation to a member (not a viewer) of its workspace, or
-- unassign it (null). The new assignee is notified unless they assigned it themselves.
create function public.assign_conversation(p_conversation_id uuid, p_assignee_id uuid)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_conversation public.conversations := private.conversation_for_change(p_conversation_id);
begin
  if p_assignee_id is not null and not exists (
    select from public.workspace_members m
    where m.workspace_id = v_conversation.workspace_id and m.user_id = p_assignee_id
      and private.role_rank(m.role) >= private.role_rank('member')
  ) then
    perform private.fail(422, 'assignee_not_member', 'The assignee must be a member of the workspace');
  end if;
  if v_conversation.assignee_id is distinct from p_assignee_id then
    update public.conversations c set assignee_id = p_assignee_id, updated_at = now()
    where c.id = p_conversation_id
    returning * into v_conversation;
    insert into public.conversation_events (workspace_id, conversation_id, actor_id, kind, detail)
    values (v_conversation.workspace_id, p_conversation_id, v_user, 'assigned',
            jsonb_build_object('assignee_id', p_assignee_id));
    if p_assignee_id is not null and p_assignee_id <> v_user then
      perform private.notify_users(v_conversation.workspace_id, array[p_assignee_id], 'conversation.assigned',
                                   'A conversation was assigned to you', null,
                                   jsonb_build_object('conversation_id', p_conversation_id), v_conversation.contact_id);
    end if;
  end if;
  return v_conversation;
end
$$;

revoke all on function public.assign_conversation(uuid, uuid) from public, anon;

grant execute on function public.assign_conversation(uuid, uuid) to authenticated;

comment on function public.assign_conversation(uuid, uuid) is
  'Members and above: assigns a conversation to a member of its workspace (null unassigns); the assignee is notified. 404 conversation_not_found, 403 insufficient_role, 422 assignee_not_member.';

-- Members and above move a conversation to open, pending, resolved, or snoozed until a later
-- moment. Reopening a resolved one while the contact has another open on the channel is 409.
create function public.set_conversation_status(p_conversation_id uuid, p_status text, p_snoozed_until timestamptz default null)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_conversation public.conversations := private.conversation_for_change(p_conversation_id);
  v_previous text := v_conversation.status;
begin
  if p_status is null or p_status not in ('open', 'pending', 'snoozed', 'resolved') then
    perform private.fail(422, 'invalid_status', 'The status is open, pending, snoozed or resolved');
  end if;
  if (p_status = 'snoozed') <> (p_snoozed_until is not null)
     or (p_status = 'snoozed' and (p_snoozed_until <= now() or p_snoozed_until > now() + interval '1 year')) then
    perform private.fail(422, 'invalid_status', 'Snoozing needs a moment within the next year; other statuses none');
  end if;
  if v_previous = 'resolved' and p_status <> 'resolved' and exists (
    select from public.conversations c
    where c.channel_id = v_conversation.channel_id and c.identity_id = v_conversation.identity_id
      and c.status <> 'resolved' and c.id <> p_conversation_id
  ) then
    perform private.fail(409, 'another_conversation_open',
      'The contact has another open conversation on this channel');
  end if;
  update public.conversations c
  set status = p_status, snoozed_until = p_snoozed_until,
      resolved_at = case when p_status = 'resolved' then coalesce(c.resolved_at, now()) end,
      updated_at = now()
  where c.id = p_conversation_id
  returning * into v_conversation;
  if v_previous <> p_status or p_status = 'snoozed' then
    insert into public.conversation_events (workspace_id, conversation_id, actor_id, kind, detail)
    values (v_conversation.workspace_id, p_conversation_id, v_user, 'status',
            jsonb_strip_nulls(jsonb_build_object('from', v_previous, 'to', p_status, 'snoozed_until', p_snoozed_until)));
  end if;
  return v_conversation;
end
$$;

revoke all on function public.set_conversation_status(uuid, text, timestamptz) from public, anon;

grant execute on function public.set_conversation_status(uuid, text, timestamptz) to authenticated;

comment on function public.set_conversation_status(uuid, text, timestamptz) is
  'Members and above: open, pending, resolved, or snoozed until a moment within a year. 404 conversation_not_found, 403 insufficient_role, 422 invalid_status, 409 another_conversation_open.';

-- Members and above set a conversation's priority and labels (at most 20, each 1-50 characters;
-- null keeps what is there).
create function public.tag_conversation(p_conversation_id uuid, p_priority text, p_labels text[] default null)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_conversation public.conversations := private.conversation_for_change(p_conversation_id);
  v_labels text[];
begin
  if p_priority is not null and p_priority not in ('none', 'low', 'medium', 'high', 'urgent') then
    perform private.fail(422, 'invalid_priority', 'The priority is none, low, medium, high or urgent');
  end if;
  if p_labels is not null then
    select coalesce(array_agg(distinct lower(btrim(l)) order by lower(btrim(l))), '{}') into v_labels
    from unnest(p_labels) as l;
    if cardinality(v_labels) > 20 or exists (select from unnest(v_labels) as l
                                             where l is null or char_length(l) not between 1 and 50) then
      perform private.fail(422, 'invalid_labels', 'At most 20 labels of 1 to 50 characters');
    end if;
  end if;
  update public.conversations c
  set priority = coalesce(p_priority, c.priority), labels = coalesce(v_labels, c.labels), updated_at = now()
  where c.id = p_conversation_id
  returning * into v_conversation;
  if p_priority is not null then
    insert into public.conversation_events (workspace_id, conversation_id, actor_id, kind, detail)
    values (v_conversation.workspace_id, p_conversation_id, v_user, 'priority', jsonb_build_object('priority', p_priority));
  end if;
  if v_labels is not null then
    insert into public.conversation_events (workspace_id, conversation_id, actor_id, kind, detail)
    values (v_conversation.workspace_id, p_conversation_id, v_user, 'labels', jsonb_build_object('labels', to_jsonb(v_labels)));
  end if;
  return v_conversation;
end
$$;

revoke all on function public.tag_conversation(uuid, text, text[]) from public, anon;

grant execute on function public.tag_conversation(uuid, text, text[]) to authenticated;

comment on function public.tag_conversation(uuid, text, text[]) is
  'Members and above: sets priority (none, low, medium, high, urgent) and labels (null keeps them). 404 conversation_not_found, 403 insufficient_role, 422 invalid_priority, 422 invalid_labels.';

-- Members and above add an internal note (never sent out); members of the workspace it
-- @mentions (others are dropped) are notified.
create function public.add_conversation_note(p_conversation_id uuid, p_text text, p_mentions uuid[] default null)
returns public.messages
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_conversation public.conversations := private.conversation_for_change(p_conversation_id);
  v_mentions uuid[];
  v_note public.messages;
begin
  if p_text is null or btrim(p_text) = '' or char_length(p_text) > 20000 then
    perform private.fail(422, 'invalid_message', 'A note is 1 to 20000 characters');
  end if;
  select coalesce(array_agg(distinct m.user_id), '{}') into v_mentions
  from public.workspace_members m
  where m.workspace_id = v_conversation.workspace_id and m.user_id = any (coalesce(p_mentions, '{}'));
  insert into public.messages (workspace_id, conversation_id, channel_id, direction, author_id, text, status, mentions)
  values (v_conversation.workspace_id, p_conversation_id, v_conversation.channel_id, 'note', v_user, p_text, 'received', v_mentions)
  returning * into v_note;
  perform private.notify_users(v_conversation.workspace_id, array_remove(v_mentions, v_user), 'conversation.mentioned',
                               'You were mentioned in a conversation', left(p_text, 200),
                               jsonb_build_object('conversation_id', p_conversation_id, 'message_id', v_note.id),
                               v_conversation.contact_id);
  return v_note;
end
$$;

revoke all on function public.add_conversation_note(uuid, text, uuid[]) from public, anon;

grant execute on function public.add_conversation_note(uuid, text, uuid[]) to authenticated;

comment on function public.add_conversation_note(uuid, text, uuid[]) is
  'Members and above: adds an internal note; mentioned members of the workspace are notified. 404 conversation_not_found, 403 insufficient_role, 422 invalid_message.';

-- Admins route a channel's new conversations to a team of the same workspace (null: none).
create function public.set_channel_team(p_channel_id uuid, p_team_id uuid)
returns public.channels
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_channel public.channels;
begin
  select * into v_channel from public.channels c
  where c.id = p_channel_id and c.workspace_id in (select private.user_workspace_ids());
  if v_channel.id is null then
    perform private.fail(404, 'channel_not_found', 'Channel not found');
  end if;
  perform private.workspace_role_as(v_channel.workspace_id, 'admin');
  if p_team_id is not null and not exists (
    select from public.inbox_teams t where t.id = p_team_id and t.workspace_id = v_channel.workspace_id
  ) then
    perform private.fail(404, 'team_not_found', 'Team not found');
  end if;
  update public.channels c set team_id = p_team_id where c.id = p_channel_id returning * into v_channel;
  return v_channel;
end
$$;

revoke all on function public.set_channel_team(uuid, uuid) from public, anon;

grant execute on function public.set_channel_team(uuid, uuid) to authenticated;

comment on function public.set_channel_team(uuid, uuid) is
  'Admins: routes a channel''s new conversations to a team (null: none). 404 channel_not_found, 404 team_not_found, 403 insufficient_role.';

-- contact merge -----------------------------------------------------------------------------------

-- Members and above merge one contact of their workspace into another: the merged contact's
-- inbox identities, conversations and channel opt-outs move to the kept one, which takes the
-- email, phone and names it lacks; the merged contact stays (its orders and campaign history
-- are its own) and says where it went. Both must be the caller's workspace's, distinct and not
-- erased (404 contact_not_found, 422 same_contact). Recorded in contact_merges.
create function public.merge_contacts(p_keep_id uuid, p_merge_id uuid)
returns public.contact_merges
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_keep public.contacts;
  v_merge public.contacts;
  v_moved jsonb := '{}'::jsonb;
  v_count integer;
  v_merge_row public.contact_merges;
begin
  select * into v_keep from public.contacts c
  where c.id = p_keep_id and c.workspace_id in (select private.user_workspace_ids()) and c.erased_at is null;
  select * into v_merge from public.contacts c
  where c.id = p_merge_id and c.workspace_id in (select private.user_workspace_ids()) and c.erased_at is null;
  if v_keep.id is null or v_merge.id is null or v_keep.workspace_id <> v_merge.workspace_id then
    perform private.fail(404, 'contact_not_found', 'Contact not found');
  end if;
  if v_keep.id = v_merge.id then
    perform private.fail(422, 'same_contact', 'A contact cannot be merged into itself');
  end if;
  perform private.workspace_role_as(v_keep.workspace_id, 'member');
  perform 1 from public.contacts c where c.id in (v_keep.id, v_merge.id) order by c.id for update;

  update public.contact_identities i set contact_id = v_keep.id where i.contact_id = v_merge.id;
  get diagnostics v_count = row_count;
  v_moved := v_moved || jsonb_build_object('contact_identities', v_count);
  update public.conversations c set contact_id = v_keep.id where c.contact_id = v_merge.id;
  get diagnostics v_count = row_count;
  v_moved := v_moved || jsonb_build_object('conversations', v_count);
  update public.channel_suppressions s set contact_id = v_keep.id where s.contact_id = v_merge.id;
  get diagnostics v_count = row_count;
  v_moved := v_moved || jsonb_build_object('channel_suppressions', v_count);

  if v_keep.email is null and v_merge.email is not null then
    update public.contacts c set email = null where c.id = v_merge.id;
  end if;
  update public.contacts c
  set email = coalesce(c.email, v_merge.email), phone = coalesce(c.phone, v_merge.phone),
      first_name = coalesce(c.first_name, v_merge.first_name), last_name = coalesce(c.last_name, v_merge.last_name)
  where c.id = v_keep.id;
  update public.contacts c
  set attributes = c.attributes || jsonb_build_object('merged_into', v_keep.id)
  where c.id = v_merge.id;

  insert into public.conversation_events (workspace_id, conversation_id, actor_id, kind, detail)
  select c.workspace_id, c.id, v_user, 'merged', jsonb_build_object('from_contact_id', v_merge.id, 'into_contact_id', v_keep.id)
  from public.conversations c where c.contact_id = v_keep.id;
  insert into public.contact_merges (workspace_id, kept_contact_id, merged_contact_id, merged_by, moved)
  values (v_keep.workspace_id, v_keep.id, v_merge.id, v_user, v_moved)
  returning * into v_merge_row;
  return v_merge_row;
end
$$;

revoke all on function public.merge_contacts(uuid, uuid) from public, anon;

grant execute on function public.merge_contacts(uuid, uuid) to authenticated;

comment on function public.merge_contacts(uuid, uuid) is
  'Members and above: merges a contact''s inbox identities and conversations into another contact of the workspace (audited in contact_merges). 404 contact_not_found, 422 same_contact, 403 insufficient_role.';

-- Contacts that look like one person: two contacts with the same phone, or an inbox identity
-- whose email or phone is another contact's.
create view public.contact_merge_suggestions with (security_invoker = true) as
  select a.workspace_id, a.id as contact_id, b.id as other_contact_id, 'phone' as reason
  from public.contacts a
  join public.contacts b on b.workspace_id = a.workspace_id and b.phone = a.phone and b.id > a.id
  where a.phone is not null and a.erased_at is null and b.erased_at is null
    and not (a.attributes ? 'merged_into') and not (b.attributes ? 'merged_into')
  union all
  select i.workspace_id, i.contact_id, c.id, 'identity_' || i.kind
  from public.contact_identities i
  join public.contacts c on c.workspace_id = i.workspace_id and c.id <> i.contact_id
    and ((i.kind = 'email' and c.email = i.address) or (i.kind = 'whatsapp' and c.phone = '+' || i.address))
  where i.contact_id is not null and c.erased_at is null and not (c.attributes ? 'merged_into');

comment on view public.contact_merge_suggestions is
  'Pairs of contacts that share a phone, or an inbox identity matching another contact''s email or phone.';

-- housekeeping (the cron) ----------------------------------------------------------------------

-- Snoozed conversations whose time has come reopen; open and pending ones silent for the
-- workspace's auto_resolve_days are resolved. Answers how many of each (at most p_limit each).
create function private.inbox_housekeeping(p_limit integer)
returns table (woken integer, resolved integer)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_woken integer;
  v_resolved integer;
begin
  update public.conversations c set status = 'open', snoozed_until = null, updated_at = now()
  where c.id in (select s.id from public.conversations s
                 where s.status = 'snoozed' and s.snoozed_until <= now()
                 order by s.snoozed_until limit p_limit for update skip locked);
  get diagnostics v_woken = row_count;
  with due as (
    select c.id, c.workspace_id from public.conversations c
    join public.inbox_settings s on s.workspace_id = c.workspace_id and s.auto_resolve_days is not null
    where c.status in ('open', 'pending') and c.last_message_at < now() - make_interval(days => s.auto_resolve_days)
    order by c.last_message_at
    limit p_limit
    for update of c skip locked
  ),
  resolved as (
    update public.conversations c set status = 'resolved', resolved_at = now(), updated_at = now()
    from due where c.id = due.id
    returning c.id, c.workspace_id
  ),
  logged as (
    insert into public.conversation_events (workspace_id, conversation_id, actor_id, kind, detail)
    select r.workspace_id, r.id, null, 'status', jsonb_build_object('to', 'resolved', 'auto', true) from resolved r
    returning 1
  )
  select count(*) into v_resolved from logged;
  return query select v_woken, v_resolved;
end
$$;

revoke all on function private.inbox_housekeeping(integer) from public, anon, authenticated;

grant execute on function private.inbox_housekeeping(integer) to service_role;

-- reports -------------------------------------------------------------------------------------

-- Per workspace, channel and assignee (conversations of the last p_days): how many, first
-- response and resolution times (median and average, in minutes and business minutes of the
-- workspace's SLA hours), and SLA breaches. Only the workspaces the caller may see.
create function analytics.inbox_report(p_days integer default 30)
returns table (
  workspace_id uuid, channel_id uuid, assignee_id uuid, conversations bigint, responded bigint,
  resolved bigint, median_first_response_minutes numeric, avg_first_response_minutes numeric,
  median_first_response_business_minutes numeric, median_resolution_minutes numeric,
  avg_resolution_minutes numeric, first_response_breaches bigint, resolution_breaches bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  select c.workspace_id, c.channel_id, c.assignee_id, count(*), count(c.first_response_at), count(c.resolved_at),
         round(percentile_cont(0.5) within group (order by extract(epoch from c.first_response_at - c.created_at) / 60)::numeric, 2),
         round(avg(extract(epoch from c.first_response_at - c.created_at) / 60)::numeric, 2),
         round(percentile_cont(0.5) within group (
           order by private.business_minutes(c.created_at, c.first_response_at, coalesce(p.timezone, 'UTC'), p.business_hours))::numeric, 2),
         round(percentile_cont(0.5) within group (order by extract(epoch from c.resolved_at - c.created_at) / 60)::numeric, 2),
         round(avg(extract(epoch from c.resolved_at - c.created_at) / 60)::numeric, 2),
         count(*) filter (where c.first_response_due_at < coalesce(c.first_response_at, now())),
         count(*) filter (where c.resolution_due_at < coalesce(c.resolved_at, now()))
  from public.conversations c
  left join public.inbox_sla_policies p on p.workspace_id = c.workspace_id
  where c.created_at >= now() - make_interval(days => least(greatest(coalesce(p_days, 30), 1), 3660))
    and (private.analytics_workspace_ids() is null or c.workspace_id = any (private.analytics_workspace_ids()))
  group by c.workspace_id, c.channel_id, c.assignee_id
$$;

revoke all on function analytics.inbox_report(integer) from public, anon;

grant execute on function analytics.inbox_report(integer) to authenticated, growthbase_analyst;

comment on function analytics.inbox_report(integer) is
  'Inbox conversations of the last p_days per workspace, channel and assignee: first response and resolution times (minutes, business minutes) and SLA breaches; the caller''s workspaces only.';

-- personal data ----------------------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'inbox_teams', 'name', 'none', 'not_personal', null),
  ('public', 'conversation_events', 'kind', 'none', 'not_personal', null),
  ('public', 'conversation_events', 'detail', 'none', 'not_personal', 'ids, states and labels'),
  ('public', 'inbox_sla_policies', 'timezone', 'none', 'not_personal', null),
  ('public', 'inbox_sla_policies', 'business_hours', 'none', 'not_personal', null),
  ('public', 'canned_responses', 'short_code', 'none', 'not_personal', 'the team''s saved replies'),
  ('public', 'canned_responses', 'title', 'none', 'not_personal', null),
  ('public', 'canned_responses', 'content', 'none', 'not_personal', null),
  ('public', 'contact_merges', 'moved', 'none', 'not_personal', 'counts per table');

-- grants --------------------------------------------------------------------------------------

revoke all on public.inbox_teams, public.inbox_team_members, public.conversation_events,
  public.inbox_sla_policies, public.canned_responses, public.inbox_settings, public.contact_merges
  from anon, authenticated, public;

revoke all on public.contact_merge_suggestions from anon, authenticated, public;

revoke all on private.inbox_assignee_loads from anon, authenticated, public;

grant select on public.conversation_events, public.contact_merges, public.contact_merge_suggestions
  to authenticated, service_role;

grant select, insert, update, delete on public.inbox_teams, public.inbox_team_members,
  public.inbox_sla_policies, public.canned_responses, public.inbox_settings to authenticated;

grant select on public.inbox_teams, public.inbox_team_members, public.inbox_sla_policies,
  public.canned_responses, public.inbox_settings to service_role;

-- row level security --------------------------------------------------------------------------

alter table public.inbox_teams enable row level security;

alter table public.inbox_team_members enable row level security;

alter table public.conversation_events enable row level security;

alter table public.inbox_sla_policies enable row level security;

alter table public.canned_responses enable row level security;

alter table public.inbox_settings enable row level security;

alter table public.contact_merges enable row level security;

alter table private.inbox_assignee_loads enable row level security;

-- Members of any role may read their workspaces' teams.
create policy inbox_teams_select_members on public.inbox_teams
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Admins and owners create teams in their workspaces.
create policy inbox_teams_insert_admins on public.inbox_teams
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners change their workspaces' teams.
create policy inbox_teams_update_admins on public.inbox_teams
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners delete their workspaces' teams.
create policy inbox_teams_delete_admins on public.inbox_teams
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Members of any role may read who is in their workspaces' teams.
create policy inbox_team_members_select_members on public.inbox_team_members
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Admins and owners add members of the workspace to its teams.
create policy inbox_team_members_insert_admins on public.inbox_team_members
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners change team members' capacity.
create policy inbox_team_members_update_admins on public.inbox_team_members
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners remove members from teams.
create policy inbox_team_members_delete_admins on public.inbox_team_members
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Members of any role may read their workspaces' conversation history; functions write it.
create policy conversation_events_select_members on public.conversation_events
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' SLA policy.
create policy inbox_sla_policies_select_members on public.inbox_sla_policies
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Admins and owners set their workspaces' SLA policy.
create policy inbox_sla_policies_insert_admins on public.inbox_sla_policies
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners change their workspaces' SLA policy.
create policy inbox_sla_policies_update_admins on public.inbox_sla_policies
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners remove their workspaces' SLA policy.
create policy inbox_sla_policies_delete_admins on public.inbox_sla_policies
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Members of any role may read their workspaces' canned responses.
create policy canned_responses_select_members on public.canned_responses
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members and above add canned responses.
create policy canned_responses_insert_members on public.canned_responses
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above edit canned responses.
create policy canned_responses_update_members on public.canned_responses
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above delete canned responses.
create policy canned_responses_delete_members on public.canned_responses
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members of any role may read their workspaces' inbox settings.
create policy inbox_settings_select_members on public.inbox_settings
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Admins and owners set their workspaces' inbox settings.
create policy inbox_settings_insert_admins on public.inbox_settings
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners change their workspaces' inbox settings.
create policy inbox_settings_update_admins on public.inbox_settings
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners remove their workspaces' inbox settings.
create policy inbox_settings_delete_admins on public.inbox_settings
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Members of any role may read their workspaces' merge audit; public.merge_contacts writes it.
create policy contact_merges_select_members on public.contact_merges
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));
