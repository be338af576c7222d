-- AI calls: priced per feature (a table, not code), paid with the same credits and ledger as
-- automations, refunded once when the provider fails, and recorded one row per call for usage
-- and failure analytics. The prompt and answer are never stored; only what was redacted, by
-- category.

create table public.ai_prices (
  feature text primary key check (feature ~ '^[a-z_]+$'),
  credits integer not null check (credits > 0),
  description text not null
);

insert into public.ai_prices (feature, credits, description) values
  ('campaign_copy', 3, 'Three cold-email variants from a product and an ideal customer profile'),
  ('content', 2, 'Product description, SEO outline and draft, meta title and description');

insert into public.plan_rate_limits (plan_tier, action, scope, max_requests, window_seconds) values
  ('free', 'ai', 'user', 5, 60),
  ('free', 'ai', 'workspace', 30, 3600),
  ('solo', 'ai', 'user', 20, 60),
  ('solo', 'ai', 'workspace', 300, 3600),
  ('team', 'ai', 'user', 60, 60),
  ('team', 'ai', 'workspace', 2000, 3600);

create table public.ai_calls (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  user_id uuid references auth.users (id) on delete set null,
  feature text not null references public.ai_prices (feature),
  model text not null,
  status text not null default 'pending' check (status in ('pending', 'succeeded', 'failed')),
  credits_charged integer not null check (credits_charged >= 0),
  tokens_in integer check (tokens_in >= 0),
  tokens_out integer check (tokens_out >= 0),
  latency_ms integer check (latency_ms >= 0),
  error_code text,
  pii_redacted jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  finished_at timestamptz
);

create index ai_calls_workspace_id_created_at_idx on public.ai_calls (workspace_id, created_at desc);

alter table public.credit_ledger add column ai_call_id uuid references public.ai_calls (id) on delete set null;

alter table public.credit_ledger drop constraint credit_ledger_reason_check;

alter table public.credit_ledger add constraint credit_ledger_reason_check
  check (reason in ('automation_charge', 'automation_refund', 'ai_charge', 'ai_refund', 'grant', 'adjustment'));

create unique index credit_ledger_one_charge_and_refund_per_ai_call_idx
  on public.credit_ledger (ai_call_id, reason)
  where ai_call_id is not null;

-- move_credits learns to reference an AI call; callers with four arguments are unchanged.
drop function private.move_credits(uuid, integer, text, uuid);

create function private.move_credits(
  p_workspace_id uuid, p_delta integer, p_reason text, p_automation_id uuid,
  p_ai_call_id uuid default null
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
    perform private.fail(402, 'insufficient_credits', 'Not enough credits for this');
  end if;
  insert into public.credit_ledger (workspace_id, delta, balance_after, reason, automation_id, ai_call_id)
  values (p_workspace_id, p_delta, v_balance, p_reason, p_automation_id, p_ai_call_id);
  return v_balance;
end
$$;

-- Starts an AI call for a member (or above): rate limits, then the debit and the usage row in
-- one transaction. The edge calls the provider only after this commits.
create function public.start_ai_call(p_workspace_id uuid, p_feature text, p_model text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_role text;
  v_price integer;
  v_call_id uuid;
begin
  select m.role into v_role from public.workspace_members m
  where m.workspace_id = p_workspace_id and m.user_id = v_user;
  if v_role is null then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  if private.role_rank(v_role) < private.role_rank('member') then
    perform private.fail(403, 'insufficient_role', 'Viewers cannot use AI features');
  end if;
  select p.credits into v_price from public.ai_prices p where p.feature = p_feature;
  if v_price is null then
    perform private.fail(422, 'invalid_feature', format('Unknown AI feature %L', p_feature));
  end if;
  perform private.enforce_plan_rate_limits(p_workspace_id, v_user, 'ai');
  insert into public.ai_calls (workspace_id, user_id, feature, model, credits_charged)
  values (p_workspace_id, v_user, p_feature, p_model, v_price)
  returning id into v_call_id;
  perform private.move_credits(p_workspace_id, -v_price, 'ai_charge', null, v_call_id);
  return v_call_id;
end
$$;

-- Records how a call ended; a failed call gets its credits back, once.
create function private.finish_ai_call(
  p_call_id uuid, p_succeeded boolean, p_tokens_in integer, p_tokens_out integer,
  p_latency_ms integer, p_error_code text, p_pii_redacted jsonb
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_call public.ai_calls;
begin
  update public.ai_calls c
  set status = case when p_succeeded then 'succeeded' else 'failed' end,
      tokens_in = p_tokens_in, tokens_out = p_tokens_out, latency_ms = p_latency_ms,
      error_code = p_error_code, pii_redacted = coalesce(p_pii_redacted, '{}'::jsonb),
      finished_at = now()
  where c.id = p_call_id and c.status = 'pending'
  returning * into v_call;
  if v_call.id is not null and not p_succeeded and v_call.credits_charged > 0 then
    perform private.move_credits(v_call.workspace_id, v_call.credits_charged, 'ai_refund', null, v_call.id);
  end if;
end
$$;

-- Usage and failure rate per workspace, model and feature, for the workspaces the caller sees.
create function analytics.ai_usage_summary()
returns table (
  workspace_id uuid, model text, feature text, calls bigint, failures bigint,
  tokens_in bigint, tokens_out bigint, average_latency_ms integer, last_call_at timestamptz
)
language sql
stable
security definer
set search_path = ''
as $$
  select c.workspace_id, c.model, c.feature, count(*), count(*) filter (where c.status = 'failed'),
         coalesce(sum(c.tokens_in), 0), coalesce(sum(c.tokens_out), 0),
         avg(c.latency_ms)::integer, max(c.created_at)
  from public.ai_calls c
  where private.analytics_sees_all()
     or c.workspace_id in (select private.user_workspace_ids())
  group by c.workspace_id, c.model, c.feature
$$;

create view analytics.ai_usage with (security_invoker = true) as
  select u.*, round(u.failures::numeric / nullif(u.calls, 0), 4) as failure_rate
  from analytics.ai_usage_summary() u;

-- grants --------------------------------------------------------------------------------------

revoke all on public.ai_prices from anon, authenticated, public;

revoke all on public.ai_calls from anon, authenticated, public;

grant select on public.ai_prices to authenticated;

grant select on public.ai_calls to authenticated;

grant all on public.ai_prices, public.ai_calls to service_role;

revoke all on function private.move_credits(uuid, integer, text, uuid, uuid) from public, anon, authenticated;

revoke all on function public.start_ai_call(uuid, text, text) from public, anon;

revoke all on function private.finish_ai_call(uuid, boolean, integer, integer, integer, text, jsonb)
  from public, anon, authenticated;

revoke all on function analytics.ai_usage_summary() from public, anon;

grant execute on function public.start_ai_call(uuid, text, text) to authenticated;

grant execute on function private.finish_ai_call(uuid, boolean, integer, integer, integer, text, jsonb)
  to service_role;

-- The view runs as its reader; the summary function decides which workspaces they see.
grant execute on function analytics.ai_usage_summary() to authenticated, growthbase_analyst;

grant select on analytics.ai_usage to authenticated, growthbase_analyst;

alter table public.ai_prices enable row level security;

alter table public.ai_calls enable row level security;

-- Any signed-in user may read the AI price list.
create policy ai_prices_select_all on public.ai_prices
  for select to authenticated
  using (true);

-- Members of any role may read their workspaces' AI calls.
create policy ai_calls_select_members on public.ai_calls
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));
