-- Automations: projects, prices, a credit ledger, the automation state machine, per-tier rate
-- limits, a transactional outbox for Make.com dispatch, and stored inbound webhooks.
--
-- Credits move only inside SQL functions: a debit is one conditional UPDATE on the workspace
-- row (so concurrent triggers serialise on it and never go below zero), and every movement is
-- a ledger row whose unique keys make a charge and a refund happen at most once per automation.

-- projects ------------------------------------------------------------------------------------

create table public.projects (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  name text not null check (char_length(name) between 1 and 120 and name = btrim(name)),
  type text not null check (type in ('eshop', 'leadgen')),
  website_url text check (website_url ~ '^https?://[^\s/]+(/\S*)?$' and char_length(website_url) <= 2048),
  settings jsonb not null default '{}'::jsonb check (jsonb_typeof(settings) = 'object'),
  created_by uuid default auth.uid() references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (id, workspace_id)
);

create index projects_workspace_id_idx on public.projects (workspace_id);

create trigger projects_touch_updated_at
  before update on public.projects
  for each row execute function private.touch_updated_at();

-- prices and limits (tables, not code) ---------------------------------------------------------

create table public.automation_prices (
  type text primary key check (type ~ '^[a-z_]+$'),
  credits integer not null check (credits > 0),
  description text not null
);

insert into public.automation_prices (type, credits, description) values
  ('seo_audit', 5, 'SEO audit of the project''s website'),
  ('content_gen', 3, 'Content generation for the project'),
  ('report', 2, 'Performance report for the project');

create table public.plan_rate_limits (
  plan_tier text not null check (plan_tier in ('free', 'solo', 'team')),
  action text not null,
  scope text not null check (scope in ('user', 'workspace')),
  max_requests integer not null check (max_requests > 0),
  window_seconds integer not null check (window_seconds > 0),
  primary key (plan_tier, action, scope)
);

insert into public.plan_rate_limits (plan_tier, action, scope, max_requests, window_seconds) values
  ('free', 'automation', 'user', 5, 60),
  ('free', 'automation', 'workspace', 20, 3600),
  ('solo', 'automation', 'user', 20, 60),
  ('solo', 'automation', 'workspace', 200, 3600),
  ('team', 'automation', 'user', 60, 60),
  ('team', 'automation', 'workspace', 1000, 3600);

-- Fixed-window counters shared by every edge instance.
create table private.rate_limit_windows (
  bucket text not null,
  window_start timestamptz not null,
  hits integer not null,
  primary key (bucket, window_start)
);

-- Counts one request against a bucket; over the limit raises 429 with the seconds to wait in
-- DETAIL as JSON ({"retry_after": n}), and the rejected request is not counted.
create function private.take_rate_limit(
  p_bucket text, p_max_requests integer, p_window_seconds integer
)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_window_start timestamptz := to_timestamp(
    floor(extract(epoch from now()) / p_window_seconds) * p_window_seconds
  );
  v_hits integer;
  v_retry_after integer;
begin
  insert into private.rate_limit_windows as w (bucket, window_start, hits)
  values (p_bucket, v_window_start, 1)
  on conflict (bucket, window_start) do update set hits = w.hits + 1
  returning w.hits into v_hits;
  if v_hits > p_max_requests then
    v_retry_after := greatest(1, ceil(extract(epoch from
      v_window_start + make_interval(secs => p_window_seconds) - now()))::integer);
    raise exception using
      errcode = 'PT429',
      message = format('Too many requests: at most %s per %s seconds', p_max_requests, p_window_seconds),
      hint = 'rate_limited',
      detail = jsonb_build_object('retry_after', v_retry_after)::text;
  end if;
end
$$;

create function private.enforce_plan_rate_limits(p_workspace_id uuid, p_user_id uuid, p_action text)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_limit record;
begin
  for v_limit in
    select l.scope, l.max_requests, l.window_seconds
    from public.plan_rate_limits l
    join public.workspaces w on w.plan_tier = l.plan_tier
    where w.id = p_workspace_id and l.action = p_action
    order by l.scope
  loop
    perform private.take_rate_limit(
      format('%s:%s:%s', p_action, v_limit.scope,
             case v_limit.scope when 'user' then p_user_id else p_workspace_id end),
      v_limit.max_requests,
      v_limit.window_seconds
    );
  end loop;
end
$$;

-- automations ---------------------------------------------------------------------------------

create table public.automations (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  project_id uuid not null,
  type text not null references public.automation_prices (type),
  status text not null default 'queued' check (status in ('queued', 'processing', 'completed', 'failed')),
  input jsonb not null default '{}'::jsonb check (jsonb_typeof(input) = 'object'),
  result jsonb,
  error text,
  credits_charged integer not null check (credits_charged >= 0),
  started_by uuid references auth.users (id) on delete set null,
  idempotency_key text check (char_length(idempotency_key) between 1 and 128),
  created_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  updated_at timestamptz not null default now(),
  foreign key (project_id, workspace_id) references public.projects (id, workspace_id) on delete cascade
);

create index automations_workspace_id_created_at_idx on public.automations (workspace_id, created_at desc);

create index automations_project_id_idx on public.automations (project_id);

create unique index automations_idempotency_key_idx
  on public.automations (workspace_id, started_by, idempotency_key)
  where idempotency_key is not null;

create table public.credit_ledger (
  id bigint generated always as identity primary key,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  delta integer not null check (delta <> 0),
  balance_after integer not null check (balance_after >= 0),
  reason text not null check (reason in ('automation_charge', 'automation_refund', 'grant', 'adjustment')),
  automation_id uuid references public.automations (id) on delete set null,
  created_at timestamptz not null default now()
);

create index credit_ledger_workspace_id_idx on public.credit_ledger (workspace_id, created_at);

create unique index credit_ledger_one_charge_and_refund_per_automation_idx
  on public.credit_ledger (automation_id, reason)
  where automation_id is not null;

-- The state machine: queued -> processing -> completed | failed (queued may also finish
-- directly). Finished automations never change again; timestamps follow the status.
create function private.guard_automation_status()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status is distinct from old.status then
    if not (
      (old.status = 'queued' and new.status in ('processing', 'completed', 'failed'))
      or (old.status = 'processing' and new.status in ('completed', 'failed'))
    ) then
      perform private.fail(409, 'illegal_transition',
        format('An automation cannot go from %s to %s', old.status, new.status));
    end if;
    if new.status = 'processing' then
      new.started_at := coalesce(new.started_at, now());
    elsif new.status in ('completed', 'failed') then
      new.started_at := coalesce(new.started_at, now());
      new.finished_at := now();
    end if;
  elsif old.status in ('completed', 'failed') and (new.result, new.error) is distinct from (old.result, old.error) then
    perform private.fail(409, 'illegal_transition', 'A finished automation cannot change');
  end if;
  new.updated_at := now();
  return new;
end
$$;

create trigger automations_guard_status
  before update on public.automations
  for each row execute function private.guard_automation_status();

create function private.move_credits(
  p_workspace_id uuid, p_delta integer, p_reason text, p_automation_id uuid
)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_balance integer;
begin
  update public.workspaces w
  set credits_remaining = w.credits_remaining + p_delta
  where w.id = p_workspace_id and w.credits_remaining + p_delta >= 0
  returning w.credits_remaining into v_balance;
  if v_balance is null then
    perform private.fail(402, 'insufficient_credits', 'Not enough credits for this automation');
  end if;
  insert into public.credit_ledger (workspace_id, delta, balance_after, reason, automation_id)
  values (p_workspace_id, p_delta, v_balance, p_reason, p_automation_id);
  return v_balance;
end
$$;

-- A failed automation gives its credits back, once (the ledger's unique index holds that).
create function private.refund_failed_automation()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.status = 'failed' and old.status <> 'failed' and new.credits_charged > 0 then
    perform private.move_credits(new.workspace_id, new.credits_charged, 'automation_refund', new.id);
  end if;
  return null;
end
$$;

create trigger automations_refund_failed
  after update of status on public.automations
  for each row execute function private.refund_failed_automation();

-- Live status on the workspace's private channel, authorised by the realtime.messages policy.
create function private.broadcast_automation_status()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' or new.status is distinct from old.status then
    perform realtime.send(
      jsonb_build_object(
        'id', new.id, 'project_id', new.project_id, 'type', new.type, 'status', new.status,
        'previous_status', case when tg_op = 'UPDATE' then old.status end,
        'error', new.error, 'updated_at', new.updated_at
      ),
      'automation_status',
      format('workspace:%s:automations', new.workspace_id),
      true
    );
  end if;
  return null;
end
$$;

create trigger automations_broadcast_status
  after insert or update of status on public.automations
  for each row execute function private.broadcast_automation_status();

-- the outbox ----------------------------------------------------------------------------------

create table private.outbox (
  id uuid primary key default gen_random_uuid(),
  topic text not null,
  automation_id uuid references public.automations (id) on delete cascade,
  status text not null default 'pending' check (status in ('pending', 'sending', 'delivered', 'dead')),
  attempts integer not null default 0,
  max_attempts integer not null default 8 check (max_attempts > 0),
  next_attempt_at timestamptz not null default now(),
  locked_until timestamptz,
  last_error text,
  created_at timestamptz not null default now(),
  delivered_at timestamptz
);

create index outbox_due_idx on private.outbox (next_attempt_at) where status in ('pending', 'sending');

create unique index outbox_automation_topic_idx on private.outbox (automation_id, topic);

-- Claims due messages for one worker: skip-locked so concurrent workers never take the same
-- message, and leased so a worker that dies mid-send releases it when the lease runs out.
create function private.claim_outbox(p_topic text, p_limit integer, p_lease_seconds integer)
returns setof private.outbox
language sql
security definer
set search_path = ''
as $$
  update private.outbox o
  set status = 'sending', attempts = o.attempts + 1,
      locked_until = now() + make_interval(secs => p_lease_seconds)
  where o.id in (
    select d.id from private.outbox d
    where d.topic = p_topic
      and d.status in ('pending', 'sending')
      and d.next_attempt_at <= now()
      and (d.locked_until is null or d.locked_until < now())
    order by d.next_attempt_at
    limit p_limit
    for update skip locked
  )
  returning o.*
$$;

create function private.outbox_delivered(p_message_id uuid)
returns void
language sql
security definer
set search_path = ''
as $$
  update private.outbox
  set status = 'delivered', delivered_at = now(), locked_until = null, last_error = null
  where id = p_message_id and status = 'sending'
$$;

-- A failed attempt: retry with exponential backoff and full jitter (never sooner than the
-- provider's Retry-After), or dead-letter when the attempts are used up or the failure is
-- permanent. Dead-lettering fails the automation, which refunds it.
create function private.outbox_failed(
  p_message_id uuid, p_error text, p_retryable boolean, p_retry_after_seconds integer default null
)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_message private.outbox;
  v_backoff double precision;
begin
  select * into v_message from private.outbox where id = p_message_id and status = 'sending' for update;
  if v_message.id is null then
    return 'unknown';
  end if;
  if p_retryable and v_message.attempts < v_message.max_attempts then
    -- Full jitter, never less than a second, so a failing endpoint is not retried at once.
    v_backoff := 1 + random() * least(3600, 10 * power(2, v_message.attempts - 1));
    update private.outbox
    set status = 'pending', locked_until = null, last_error = left(p_error, 1000),
        next_attempt_at = now() + make_interval(secs => greatest(v_backoff, coalesce(p_retry_after_seconds, 0)))
    where id = p_message_id;
    return 'retrying';
  end if;
  update private.outbox
  set status = 'dead', locked_until = null, last_error = left(p_error, 1000)
  where id = p_message_id;
  update public.automations
  set status = 'failed',
      error = format('Could not deliver to Make.com after %s attempt(s): %s', v_message.attempts, left(p_error, 500))
  where id = v_message.automation_id and status in ('queued', 'processing');
  return 'dead';
end
$$;

-- What the dispatcher sends: the automation with its project.
create function private.make_dispatch_payload(p_automation_id uuid)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select jsonb_build_object(
    'automation', jsonb_build_object(
      'id', a.id, 'workspace_id', a.workspace_id, 'type', a.type, 'status', a.status,
      'input', a.input, 'created_at', a.created_at
    ),
    'project', jsonb_build_object(
      'id', p.id, 'name', p.name, 'type', p.type, 'website_url', p.website_url, 'settings', p.settings
    )
  )
  from public.automations a
  join public.projects p on p.id = a.project_id
  where a.id = p_automation_id
$$;

-- The project's workspace, when the signed-in user has at least `p_min_role` in it; 404 for
-- non-members (a project's existence is not revealed), 403 for a role too low.
create function private.project_workspace_as(p_project_id uuid, p_min_role text)
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_role text;
begin
  select p.workspace_id, m.role into v_workspace_id, v_role
  from public.projects p
  join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = private.require_user()
  where p.id = p_project_id;
  if v_role is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if private.role_rank(v_role) < private.role_rank(p_min_role) then
    perform private.fail(403, 'insufficient_role', format('This needs the %s role or higher', p_min_role));
  end if;
  return v_workspace_id;
end
$$;

-- enqueue -------------------------------------------------------------------------------------

-- Starts an automation for a member (or above) of the project's workspace: rate limits, the
-- debit, the automation and its outbox message commit together or not at all. Repeating a
-- request with the same idempotency key returns the first automation and charges nothing.
create function public.enqueue_automation(
  p_project_id uuid, p_type text, p_input jsonb default '{}'::jsonb, p_idempotency_key text default null
)
returns table (automation public.automations, replayed boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_workspace_id uuid := private.project_workspace_as(p_project_id, 'member');
  v_price integer;
  v_automation public.automations;
begin
  select ap.credits into v_price from public.automation_prices ap where ap.type = p_type;
  if v_price is null then
    perform private.fail(422, 'invalid_automation_type', format('Unknown automation type %L', p_type));
  end if;
  if p_input is null or jsonb_typeof(p_input) <> 'object' then
    perform private.fail(422, 'invalid_input', 'input must be a JSON object');
  end if;
  if p_idempotency_key is not null then
    select * into v_automation from public.automations a
    where a.workspace_id = v_workspace_id and a.started_by = v_user
      and a.idempotency_key = p_idempotency_key;
    if v_automation.id is not null then
      return query select v_automation, true;
      return;
    end if;
  end if;
  perform private.enforce_plan_rate_limits(v_workspace_id, v_user, 'automation');
  insert into public.automations
    (workspace_id, project_id, type, input, credits_charged, started_by, idempotency_key)
  values
    (v_workspace_id, p_project_id, p_type, p_input, v_price, v_user, p_idempotency_key)
  returning * into v_automation;
  perform private.move_credits(v_workspace_id, -v_price, 'automation_charge', v_automation.id);
  insert into private.outbox (topic, automation_id) values ('make.dispatch', v_automation.id);
  return query select v_automation, false;
end
$$;

-- inbound webhooks ----------------------------------------------------------------------------

-- Every verified inbound webhook, stored raw before it is applied so nothing is lost and any
-- event can be replayed; the provider's event id makes a re-delivery a no-op.
create table private.webhook_events (
  id uuid primary key default gen_random_uuid(),
  provider text not null,
  event_id text not null,
  body text not null,
  received_at timestamptz not null default now(),
  status text not null default 'received' check (status in ('received', 'applied', 'ignored', 'failed')),
  outcome text,
  processed_at timestamptz,
  unique (provider, event_id)
);

create function private.record_webhook_event(p_provider text, p_event_id text, p_body text)
returns table (id uuid, duplicate boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  insert into private.webhook_events (provider, event_id, body)
  values (p_provider, p_event_id, p_body)
  on conflict (provider, event_id) do nothing
  returning webhook_events.id into v_id;
  if v_id is not null then
    return query select v_id, false;
  else
    -- A re-delivery of an event that was stored but never processed (the first attempt
    -- failed) is processed again rather than acknowledged as a duplicate.
    return query
      select e.id, e.status <> 'received' from private.webhook_events e
      where e.provider = p_provider and e.event_id = p_event_id;
  end if;
end
$$;

-- Stored webhooks never processed (their apply failed or the instance stopped): the cron
-- replays them.
create function private.unprocessed_webhook_events(p_provider text, p_limit integer)
returns setof private.webhook_events
language sql
stable
security definer
set search_path = ''
as $$
  select * from private.webhook_events
  where provider = p_provider and status = 'received' and received_at < now() - interval '1 minute'
  order by received_at
  limit p_limit
$$;

-- Records what became of a stored webhook, whoever applied it (a SQL function or the edge).
create function private.finish_webhook_event(p_event_id uuid, p_outcome text)
returns void
language sql
security definer
set search_path = ''
as $$
  update private.webhook_events
  set status = case when p_outcome = 'applied' then 'applied' else 'ignored' end,
      outcome = p_outcome, processed_at = now()
  where id = p_event_id
$$;

-- Applies a stored Make.com callback. Callbacks only move an automation forward, so a
-- duplicate or a late `processing` after `completed` changes nothing.
create function private.apply_make_callback(p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_body jsonb;
  v_status text;
  v_current text;
  v_outcome text;
begin
  select e.body::jsonb into v_body from private.webhook_events e where e.id = p_event_id for update;
  v_status := v_body ->> 'status';
  select a.status into v_current
  from public.automations a where a.id = (v_body ->> 'automation_id')::uuid for update;
  if v_status is null or v_status not in ('processing', 'completed', 'failed') then
    v_outcome := 'invalid_status';
  elsif v_current is null then
    v_outcome := 'unknown_automation';
  elsif v_current in ('completed', 'failed')
     or (v_current = 'processing' and v_status = 'processing') then
    v_outcome := 'stale';
  else
    update public.automations a
    set status = v_status,
        result = case when v_status = 'completed' then v_body -> 'result' else a.result end,
        error = case when v_status = 'failed' then coalesce(v_body ->> 'error', 'Failed in Make.com') else a.error end
    where a.id = (v_body ->> 'automation_id')::uuid;
    v_outcome := 'applied';
    update private.outbox o set status = 'delivered', delivered_at = coalesce(o.delivered_at, now()), locked_until = null
    where o.automation_id = (v_body ->> 'automation_id')::uuid and o.status in ('pending', 'sending');
  end if;
  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

-- Old rate-limit windows are useless once passed; the cron drain prunes them.
create function private.prune_rate_limit_windows()
returns integer
language sql
security definer
set search_path = ''
as $$
  with pruned as (
    delete from private.rate_limit_windows
    where window_start < now() - interval '1 day'
    returning 1
  )
  select count(*)::integer from pruned
$$;

-- grants --------------------------------------------------------------------------------------

revoke all on public.projects from anon, authenticated, public;

revoke all on public.automation_prices from anon, authenticated, public;

revoke all on public.plan_rate_limits from anon, authenticated, public;

revoke all on public.automations from anon, authenticated, public;

revoke all on public.credit_ledger from anon, authenticated, public;

revoke all on private.rate_limit_windows from public;

revoke all on private.outbox from public;

revoke all on private.webhook_events from public;

grant select, delete on public.projects to authenticated;

grant insert (workspace_id, name, type, website_url, settings) on public.projects to authenticated;

grant update (name, type, website_url, settings) on public.projects to authenticated;

grant select on public.automation_prices to authenticated;

grant select on public.plan_rate_limits to authenticated;

grant select on public.automations to authenticated;

grant select on public.credit_ledger to authenticated;

grant all on public.projects, public.automation_prices, public.plan_rate_limits, public.automations,
  public.credit_ledger to service_role;

revoke all on function private.project_workspace_as(uuid, text) from public, anon, authenticated;

revoke all on function private.take_rate_limit(text, integer, integer) from public, anon, authenticated;

revoke all on function private.enforce_plan_rate_limits(uuid, uuid, text) from public, anon, authenticated;

revoke all on function private.guard_automation_status() from public, anon, authenticated;

revoke all on function private.move_credits(uuid, integer, text, uuid) from public, anon, authenticated;

revoke all on function private.refund_failed_automation() from public, anon, authenticated;

revoke all on function private.broadcast_automation_status() from public, anon, authenticated;

revoke all on function private.claim_outbox(text, integer, integer) from public, anon, authenticated;

revoke all on function private.outbox_delivered(uuid) from public, anon, authenticated;

revoke all on function private.outbox_failed(uuid, text, boolean, integer) from public, anon, authenticated;

revoke all on function private.make_dispatch_payload(uuid) from public, anon, authenticated;

revoke all on function private.record_webhook_event(text, text, text) from public, anon, authenticated;

revoke all on function private.unprocessed_webhook_events(text, integer) from public, anon, authenticated;

revoke all on function private.finish_webhook_event(uuid, text) from public, anon, authenticated;

revoke all on function private.apply_make_callback(uuid) from public, anon, authenticated;

revoke all on function private.prune_rate_limit_windows() from public, anon, authenticated;

revoke all on function public.enqueue_automation(uuid, text, jsonb, text) from public, anon;

grant execute on function public.enqueue_automation(uuid, text, jsonb, text) to authenticated;

-- The edge asks it before calling a provider on a project's behalf (Shoptet test and sync).
grant execute on function private.project_workspace_as(uuid, text) to authenticated;

-- The edge's privileged work runs as service_role and may call only these.
grant execute on function private.claim_outbox(text, integer, integer) to service_role;

grant execute on function private.outbox_delivered(uuid) to service_role;

grant execute on function private.outbox_failed(uuid, text, boolean, integer) to service_role;

grant execute on function private.make_dispatch_payload(uuid) to service_role;

grant execute on function private.record_webhook_event(text, text, text) to service_role;

grant execute on function private.unprocessed_webhook_events(text, integer) to service_role;

grant execute on function private.finish_webhook_event(uuid, text) to service_role;

grant execute on function private.apply_make_callback(uuid) to service_role;

grant execute on function private.prune_rate_limit_windows() to service_role;

-- row level security --------------------------------------------------------------------------

alter table public.projects enable row level security;

alter table public.automation_prices enable row level security;

alter table public.plan_rate_limits enable row level security;

alter table public.automations enable row level security;

alter table public.credit_ledger enable row level security;

-- Members of any role may read their workspaces' projects.
create policy projects_select_members on public.projects
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members and above may create projects in their workspaces.
create policy projects_insert_members on public.projects
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may edit their workspaces' projects.
create policy projects_update_members on public.projects
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may delete their workspaces' projects.
create policy projects_delete_members on public.projects
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Any signed-in user may read the price list.
create policy automation_prices_select_all on public.automation_prices
  for select to authenticated
  using (true);

-- Any signed-in user may read the plans' rate limits.
create policy plan_rate_limits_select_all on public.plan_rate_limits
  for select to authenticated
  using (true);

-- Members of any role may read their workspaces' automations; they start them through
-- enqueue_automation, and only the edge's callbacks move them on.
create policy automations_select_members on public.automations
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' credit history.
create policy credit_ledger_select_members on public.credit_ledger
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));
