-- Billing with Razorpay: plans and their limits, subscriptions mirroring Razorpay's lifecycle,
-- payments, credits granted once per invoice, and plan limits enforced on every writer.
--
-- Order independence: Razorpay may deliver events late or out of order. A subscription takes
-- the state of the newest event seen (event created_at, then paid_count); cancelled and
-- completed are final and are never undone by an older event. The workspace's tier is derived
-- from its subscriptions (the newest one that is active, pending or resumed; else free), and
-- credits are granted once per invoice, so the end state does not depend on arrival order.

create table public.plans (
  tier text primary key check (tier in ('free', 'solo', 'team')),
  name text not null,
  price numeric(14, 2) not null check (price >= 0),
  currency text not null check (currency ~ '^[A-Z]{3}$'),
  razorpay_plan_id text unique,
  monthly_credits integer not null check (monthly_credits >= 0),
  seat_limit integer not null check (seat_limit > 0),
  contact_limit integer not null check (contact_limit > 0),
  monthly_email_limit integer not null check (monthly_email_limit >= 0)
);

insert into public.plans
  (tier, name, price, currency, razorpay_plan_id, monthly_credits, seat_limit, contact_limit,
   monthly_email_limit)
values
  ('free', 'Free', 0, 'INR', null, 20, 3, 1000, 2000),
  ('solo', 'Solo', 1499, 'INR', 'plan_growthbase_solo', 200, 3, 10000, 20000),
  ('team', 'Team', 4999, 'INR', 'plan_growthbase_team', 1000, 20, 100000, 200000);

alter table public.plan_rate_limits
  add constraint plan_rate_limits_plan_tier_fkey foreign key (plan_tier) references public.plans (tier);

create table public.subscriptions (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  plan_tier text not null references public.plans (tier),
  razorpay_subscription_id text not null unique,
  status text not null default 'created' check (status in (
    'created', 'authenticated', 'active', 'pending', 'halted', 'cancelled', 'completed',
    'paused', 'resumed', 'expired'
  )),
  current_start timestamptz,
  current_end timestamptz,
  paid_count integer not null default 0,
  cancel_at_period_end boolean not null default false,
  short_url text,
  last_event_at timestamptz,
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);

create index subscriptions_workspace_id_idx on public.subscriptions (workspace_id, created_at desc);

-- Statuses in which a subscription still counts as the workspace's one live subscription.
create function private.subscription_is_live(p_status text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select p_status in ('created', 'authenticated', 'active', 'pending', 'halted', 'paused', 'resumed')
$$;

-- One live subscription per workspace.
create unique index subscriptions_one_live_per_workspace_idx
  on public.subscriptions (workspace_id)
  where private.subscription_is_live(status);

create table public.subscription_events (
  id bigint generated always as identity primary key,
  subscription_id uuid not null references public.subscriptions (id) on delete cascade,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  event text not null,
  status text,
  occurred_at timestamptz not null,
  received_at timestamptz not null default now()
);

create index subscription_events_subscription_id_idx on public.subscription_events (subscription_id);

create index subscription_events_workspace_id_idx on public.subscription_events (workspace_id);

create table public.billing_payments (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  subscription_id uuid references public.subscriptions (id) on delete set null,
  razorpay_payment_id text not null unique,
  razorpay_invoice_id text,
  amount integer not null check (amount >= 0),
  currency text not null,
  status text not null check (status in ('captured', 'failed')),
  error_description text,
  occurred_at timestamptz not null
);

create index billing_payments_workspace_id_idx on public.billing_payments (workspace_id, occurred_at desc);

create trigger subscriptions_touch_updated_at
  before update on public.subscriptions
  for each row execute function private.touch_updated_at();

-- Credits bought with an invoice are granted once per invoice, whatever the re-deliveries.
alter table public.credit_ledger add column grant_reference text;

create unique index credit_ledger_one_grant_per_reference_idx
  on public.credit_ledger (grant_reference)
  where grant_reference is not null;

create function private.grant_credits(p_workspace_id uuid, p_credits integer, p_reference text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_balance integer;
begin
  if p_credits <= 0 or exists (
    select from public.credit_ledger l where l.grant_reference = p_reference
  ) then
    return false;
  end if;
  update public.workspaces w set credits_remaining = w.credits_remaining + p_credits
  where w.id = p_workspace_id
  returning w.credits_remaining into v_balance;
  insert into public.credit_ledger (workspace_id, delta, balance_after, reason, grant_reference)
  values (p_workspace_id, p_credits, v_balance, 'grant', p_reference);
  return true;
end
$$;

-- The tier a workspace has: its newest live paying subscription's, else free.
create function private.refresh_workspace_tier(p_workspace_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tier text;
begin
  select s.plan_tier into v_tier from public.subscriptions s
  where s.workspace_id = p_workspace_id and s.status in ('active', 'pending', 'resumed')
  order by s.created_at desc
  limit 1;
  v_tier := coalesce(v_tier, 'free');
  update public.workspaces w set plan_tier = v_tier where w.id = p_workspace_id and w.plan_tier <> v_tier;
  return v_tier;
end
$$;

-- Owners and admins manage billing; the edge asks before it creates anything at Razorpay.
create function public.assert_billing_manager(p_workspace_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.lock_workspace_as(p_workspace_id, 'admin');
end
$$;

-- The Razorpay plan a tier is bought with, or 422 for a tier that cannot be bought.
create function public.purchasable_plan_id(p_tier text)
returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_plan_id text;
begin
  select p.razorpay_plan_id into v_plan_id from public.plans p where p.tier = p_tier;
  if v_plan_id is null then
    perform private.fail(422, 'plan_not_purchasable', format('The %s plan cannot be bought', p_tier));
  end if;
  return v_plan_id;
end
$$;

-- Everything the edge must know before it creates a subscription at Razorpay: the caller
-- manages billing, the workspace has no live subscription, and the plan id to buy.
create function public.prepare_subscription(p_workspace_id uuid, p_tier text)
returns text
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.lock_workspace_as(p_workspace_id, 'admin');
  if exists (
    select from public.subscriptions s
    where s.workspace_id = p_workspace_id and private.subscription_is_live(s.status)
  ) then
    perform private.fail(409, 'subscription_exists', 'This workspace already has a live subscription');
  end if;
  return public.purchasable_plan_id(p_tier);
end
$$;

-- Records a subscription the edge created at Razorpay for the caller's workspace.
create function public.record_subscription(
  p_workspace_id uuid, p_tier text, p_razorpay_subscription_id text, p_status text, p_short_url text
)
returns public.subscriptions
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_subscription public.subscriptions;
begin
  perform private.lock_workspace_as(p_workspace_id, 'admin');
  insert into public.subscriptions
    (workspace_id, plan_tier, razorpay_subscription_id, status, short_url, created_by)
  values (p_workspace_id, p_tier, p_razorpay_subscription_id, p_status, p_short_url, v_user)
  returning * into v_subscription;
  return v_subscription;
exception when unique_violation then
  perform private.fail(409, 'subscription_exists', 'This workspace already has a live subscription');
end
$$;

create function public.mark_cancel_at_period_end(p_subscription_id uuid)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
begin
  select s.workspace_id into v_workspace_id from public.subscriptions s where s.id = p_subscription_id;
  if v_workspace_id is null
     or v_workspace_id not in (select private.user_workspace_ids_at_least('admin')) then
    perform private.fail(404, 'subscription_not_found', 'Subscription not found');
  end if;
  update public.subscriptions set cancel_at_period_end = true where id = p_subscription_id;
end
$$;

-- Applies one stored Razorpay webhook. See the header for why the result is order-independent.
create function private.apply_razorpay_event(p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_body jsonb;
  v_event text;
  v_at timestamptz;
  v_entity jsonb;
  v_payment jsonb;
  v_subscription public.subscriptions;
  v_final constant text[] := array['cancelled', 'completed', 'expired'];
  v_newer boolean;
  v_outcome text := 'applied';
begin
  select e.body::jsonb into v_body from private.webhook_events e where e.id = p_event_id;
  v_event := v_body ->> 'event';
  v_at := to_timestamp((v_body ->> 'created_at')::double precision);
  v_entity := v_body #> '{payload,subscription,entity}';
  v_payment := v_body #> '{payload,payment,entity}';
  if v_entity is not null then
    select * into v_subscription from public.subscriptions s
    where s.razorpay_subscription_id = v_entity ->> 'id' for update;
  elsif v_payment ->> 'subscription_id' is not null then
    select * into v_subscription from public.subscriptions s
    where s.razorpay_subscription_id = v_payment ->> 'subscription_id' for update;
  end if;
  if v_subscription.id is null then
    v_outcome := 'unknown_subscription';
  else
    insert into public.subscription_events (subscription_id, workspace_id, event, status, occurred_at)
    values (v_subscription.id, v_subscription.workspace_id, v_event, v_entity ->> 'status', v_at);
    if v_entity is not null then
      v_newer := case
        when v_subscription.status = any (v_final) then false
        when v_entity ->> 'status' = any (v_final) then true
        when v_subscription.last_event_at is null then true
        else (v_at, coalesce((v_entity ->> 'paid_count')::integer, 0))
             > (v_subscription.last_event_at, v_subscription.paid_count)
      end;
      if v_newer then
        update public.subscriptions s
        set status = v_entity ->> 'status',
            plan_tier = coalesce(
              (select p.tier from public.plans p where p.razorpay_plan_id = v_entity ->> 'plan_id'),
              s.plan_tier
            ),
            current_start = to_timestamp((v_entity ->> 'current_start')::double precision),
            current_end = to_timestamp((v_entity ->> 'current_end')::double precision),
            paid_count = coalesce((v_entity ->> 'paid_count')::integer, s.paid_count),
            last_event_at = v_at
        where s.id = v_subscription.id;
      else
        v_outcome := 'stale';
      end if;
      perform private.refresh_workspace_tier(v_subscription.workspace_id);
    end if;
    if v_payment is not null then
      insert into public.billing_payments
        (workspace_id, subscription_id, razorpay_payment_id, razorpay_invoice_id, amount, currency,
         status, error_description, occurred_at)
      values (
        v_subscription.workspace_id, v_subscription.id, v_payment ->> 'id',
        v_payment ->> 'invoice_id', (v_payment ->> 'amount')::integer, v_payment ->> 'currency',
        case when v_payment ->> 'status' = 'failed' then 'failed' else 'captured' end,
        v_payment ->> 'error_description', v_at
      )
      on conflict (razorpay_payment_id) do update
      set status = case when excluded.status = 'captured' then 'captured' else public.billing_payments.status end;
      if v_event = 'subscription.charged' then
        perform private.grant_credits(
          v_subscription.workspace_id,
          (select p.monthly_credits from public.plans p where p.tier = v_subscription.plan_tier),
          'razorpay:' || coalesce(v_payment ->> 'invoice_id', v_payment ->> 'id')
        );
      end if;
    end if;
  end if;
  perform private.finish_webhook_event(p_event_id, v_outcome);
  return v_outcome;
end
$$;

-- limits --------------------------------------------------------------------------------------

create function private.plan_limit(p_workspace_id uuid, p_limit text)
returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select case p_limit
    when 'seats' then p.seat_limit
    when 'contacts' then p.contact_limit
    when 'monthly_emails' then p.monthly_email_limit
  end
  from public.workspaces w join public.plans p on p.tier = w.plan_tier
  where w.id = p_workspace_id
$$;

create function private.over_limit(p_limit text, p_max integer)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception using
    errcode = 'PT402',
    message = format('Your plan allows %s %s; upgrade to add more', p_max, replace(p_limit, '_', ' ')),
    hint = 'plan_limit_reached',
    detail = jsonb_build_object('limit', p_limit, 'max', p_max)::text;
end
$$;

-- Seats: members plus pending invitations may not exceed the plan's seats.
create function private.enforce_seat_limit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_max integer := private.plan_limit(new.workspace_id, 'seats');
  v_used integer;
begin
  select count(*) into v_used from public.workspace_members m where m.workspace_id = new.workspace_id;
  if tg_table_name = 'workspace_invitations' then
    v_used := v_used + (
      select count(*) from public.workspace_invitations i
      where i.workspace_id = new.workspace_id and i.accepted_at is null and i.revoked_at is null
        and i.expires_at > now() and i.email <> new.email
    );
  end if;
  if v_used >= v_max then
    perform private.over_limit('seats', v_max);
  end if;
  return new;
end
$$;

create trigger workspace_members_seat_limit
  before insert on public.workspace_members
  for each row execute function private.enforce_seat_limit();

create trigger workspace_invitations_seat_limit
  before insert on public.workspace_invitations
  for each row execute function private.enforce_seat_limit();

-- Contacts: checked once per statement from the rows it inserted, so a bulk insert counts the
-- workspace once. (A per-row counter on one hot row makes long import transactions quadratic:
-- every update walks the row's growing version chain.)
create function private.enforce_contact_limit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace record;
begin
  for v_workspace in
    select i.workspace_id, private.plan_limit(i.workspace_id, 'contacts') as max_contacts
    from (select distinct n.workspace_id from inserted n) as i
  loop
    if (select count(*) from public.contacts c where c.workspace_id = v_workspace.workspace_id)
       > v_workspace.max_contacts then
      perform private.over_limit('contacts', v_workspace.max_contacts);
    end if;
  end loop;
  return null;
end
$$;

create trigger contacts_limit
  after insert on public.contacts
  referencing new table as inserted
  for each statement execute function private.enforce_contact_limit();

-- Monthly emails: a campaign reserves its recipients when it starts.
create table private.monthly_email_usage (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  month date not null,
  emails integer not null default 0,
  primary key (workspace_id, month)
);

create function private.reserve_monthly_emails(p_workspace_id uuid, p_emails integer)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_max integer := private.plan_limit(p_workspace_id, 'monthly_emails');
  v_used integer;
begin
  insert into private.monthly_email_usage as u (workspace_id, month, emails)
  values (p_workspace_id, date_trunc('month', now())::date, p_emails)
  on conflict (workspace_id, month) do update set emails = u.emails + excluded.emails
  returning u.emails into v_used;
  if v_used > v_max then
    perform private.over_limit('monthly_emails', v_max);
  end if;
  return v_max - v_used;
end
$$;

-- grants --------------------------------------------------------------------------------------

revoke all on public.plans from anon, authenticated, public;

revoke all on public.subscriptions from anon, authenticated, public;

revoke all on public.subscription_events from anon, authenticated, public;

revoke all on public.billing_payments from anon, authenticated, public;

revoke all on private.monthly_email_usage from public;

grant select on public.plans to authenticated;

grant select on public.subscriptions to authenticated;

grant select on public.subscription_events to authenticated;

grant select on public.billing_payments to authenticated;

grant all on public.plans, public.subscriptions, public.subscription_events, public.billing_payments
  to service_role;

revoke all on function private.grant_credits(uuid, integer, text) from public, anon, authenticated;

revoke all on function private.refresh_workspace_tier(uuid) from public, anon, authenticated;

revoke all on function private.apply_razorpay_event(uuid) from public, anon, authenticated;

revoke all on function private.plan_limit(uuid, text) from public, anon, authenticated;

revoke all on function private.over_limit(text, integer) from public, anon, authenticated;

revoke all on function private.enforce_seat_limit() from public, anon, authenticated;

revoke all on function private.enforce_contact_limit() from public, anon, authenticated;

revoke all on function private.reserve_monthly_emails(uuid, integer) from public, anon, authenticated;

revoke all on function private.subscription_is_live(text) from public, anon, authenticated;

revoke all on function public.assert_billing_manager(uuid) from public, anon;

revoke all on function public.purchasable_plan_id(text) from public, anon;

revoke all on function public.prepare_subscription(uuid, text) from public, anon;

revoke all on function public.record_subscription(uuid, text, text, text, text) from public, anon;

revoke all on function public.mark_cancel_at_period_end(uuid) from public, anon;

grant execute on function public.assert_billing_manager(uuid) to authenticated;

grant execute on function public.purchasable_plan_id(text) to authenticated;

grant execute on function public.prepare_subscription(uuid, text) to authenticated;

grant execute on function public.record_subscription(uuid, text, text, text, text) to authenticated;

grant execute on function public.mark_cancel_at_period_end(uuid) to authenticated;

grant execute on function private.apply_razorpay_event(uuid) to service_role;

grant execute on function private.reserve_monthly_emails(uuid, integer) to service_role;

alter table public.plans enable row level security;

alter table public.subscriptions enable row level security;

alter table public.subscription_events enable row level security;

alter table public.billing_payments enable row level security;

-- Any signed-in user may read the plans.
create policy plans_select_all on public.plans
  for select to authenticated
  using (true);

-- Members of any role may see their workspace's subscription and its status.
create policy subscriptions_select_members on public.subscriptions
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Owners and admins may read the subscription's history.
create policy subscription_events_select_admins on public.subscription_events
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Only owners and admins may see payments (and so invoices) and failed charges.
create policy billing_payments_select_admins on public.billing_payments
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));
