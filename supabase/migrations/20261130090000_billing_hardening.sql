-- Billing hardening: subscription rows and their state come only from Razorpay, and every plan's
-- monthly credits are granted.
--
-- * A subscription row is written only from Razorpay's create response, by the edge as the
--   service (private.record_subscription); its id must have Razorpay's shape. The functions that
--   let any workspace admin store any id and status through the Data API are gone.
-- * A workspace's tier comes only from statuses Razorpay reported in a verified webhook
--   (last_event_at is set), never from a row's stored status alone.
-- * Applying a stored Razorpay webhook locks it first and re-checks that it is unprocessed, so a
--   redelivery arriving during the first apply changes nothing.
-- * The free plan's monthly credits are granted when a workspace is created and then once per
--   calendar month (UTC) by the cron; the ledger's unique grant reference makes each grant
--   happen once. Paid plans are granted on each charge, as before.

-- subscriptions -------------------------------------------------------------------------------

drop function public.record_subscription(uuid, text, text, text, text);

drop function public.mark_cancel_at_period_end(uuid);

-- Rows whose id cannot be a Razorpay subscription id were stored through the removed function
-- and never reported by Razorpay (it only sends ids of that shape); they cannot be managed.
delete from public.subscriptions s
where s.razorpay_subscription_id !~ '^sub_[A-Za-z0-9]{14}$' and s.last_event_at is null;

alter table public.subscriptions
  add constraint subscriptions_razorpay_subscription_id_shape
  check (razorpay_subscription_id ~ '^sub_[A-Za-z0-9]{14}$') not valid;

alter table public.subscriptions validate constraint subscriptions_razorpay_subscription_id_shape;

-- Records the subscription Razorpay just created for a workspace, from its create response. The
-- edge calls it as the service after public.prepare_subscription allowed the user. The row
-- starts `created` whatever the response says; webhooks move it from there.
create function private.record_subscription(
  p_workspace_id uuid, p_created_by uuid, p_subscription jsonb
)
returns public.subscriptions
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_razorpay_id text := p_subscription ->> 'id';
  v_tier text;
  v_subscription public.subscriptions;
begin
  select p.tier into v_tier from public.plans p where p.razorpay_plan_id = p_subscription ->> 'plan_id';
  if v_razorpay_id is null or v_razorpay_id !~ '^sub_[A-Za-z0-9]{14}$' or v_tier is null
     or p_subscription #>> '{notes,workspace_id}' is distinct from p_workspace_id::text then
    perform private.fail(502, 'provider_error', 'Razorpay answered with a subscription we did not ask for');
  end if;
  perform 1 from public.workspaces w where w.id = p_workspace_id for update;
  insert into public.subscriptions
    (workspace_id, plan_tier, razorpay_subscription_id, status, short_url, created_by)
  values (p_workspace_id, v_tier, v_razorpay_id, 'created', p_subscription ->> 'short_url', p_created_by)
  returning * into v_subscription;
  return v_subscription;
exception when unique_violation then
  perform private.fail(409, 'subscription_exists', 'This workspace already has a live subscription');
end
$$;

revoke all on function private.record_subscription(uuid, uuid, jsonb) from public, anon, authenticated;

grant execute on function private.record_subscription(uuid, uuid, jsonb) to service_role;

-- Notes that Razorpay accepted a cancellation at the period end; the edge calls it as the
-- service after the cancel call succeeded for a subscription the user manages.
create function private.mark_cancel_at_period_end(p_subscription_id uuid)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.subscriptions s set cancel_at_period_end = true where s.id = p_subscription_id
$$;

revoke all on function private.mark_cancel_at_period_end(uuid) from public, anon, authenticated;

grant execute on function private.mark_cancel_at_period_end(uuid) to service_role;

-- The tier a workspace has: that of its newest subscription whose live paying status Razorpay
-- reported in a webhook (last_event_at is set only there), else free.
create or replace function private.refresh_workspace_tier(p_workspace_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tier text;
begin
  select s.plan_tier into v_tier from public.subscriptions s
  where s.workspace_id = p_workspace_id
    and s.last_event_at is not null
    and s.status in ('active', 'pending', 'resumed')
  order by s.created_at desc
  limit 1;
  v_tier := coalesce(v_tier, 'free');
  update public.workspaces w set plan_tier = v_tier where w.id = p_workspace_id and w.plan_tier <> v_tier;
  return v_tier;
end
$$;

revoke all on function private.refresh_workspace_tier(uuid) from public, anon, authenticated;

-- credits -------------------------------------------------------------------------------------

-- Grants credits once per reference, also under concurrency: the workspace row is locked, and
-- the ledger's unique grant reference decides whether this call is the one that grants.
create or replace function private.grant_credits(p_workspace_id uuid, p_credits integer, p_reference text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_balance integer;
  v_ledger_id bigint;
begin
  if p_credits <= 0 then
    return false;
  end if;
  select w.credits_remaining into v_balance from public.workspaces w where w.id = p_workspace_id for update;
  if v_balance is null then
    return false;
  end if;
  insert into public.credit_ledger (workspace_id, delta, balance_after, reason, grant_reference)
  values (p_workspace_id, p_credits, v_balance + p_credits, 'grant', p_reference)
  on conflict (grant_reference) where grant_reference is not null do nothing
  returning id into v_ledger_id;
  if v_ledger_id is null then
    return false;
  end if;
  update public.workspaces w set credits_remaining = v_balance + p_credits where w.id = p_workspace_id;
  return true;
end
$$;

revoke all on function private.grant_credits(uuid, integer, text) from public, anon, authenticated;

-- The ledger reference of a workspace's free-plan grant for the current calendar month (UTC).
create function private.free_credits_reference(p_workspace_id uuid)
returns text
language sql
stable
set search_path = ''
as $$
  select 'free:' || to_char(now() at time zone 'utc', 'YYYY-MM') || ':' || p_workspace_id::text
$$;

revoke all on function private.free_credits_reference(uuid) from public, anon, authenticated;

-- A new workspace on the free plan gets this month's free credits at once.
create function private.grant_free_credits_to_new_workspace()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.plan_tier = 'free' then
    perform private.grant_credits(
      new.id,
      (select p.monthly_credits from public.plans p where p.tier = 'free'),
      private.free_credits_reference(new.id)
    );
  end if;
  return null;
end
$$;

revoke all on function private.grant_free_credits_to_new_workspace() from public, anon, authenticated;

create trigger workspaces_grant_free_credits
  after insert on public.workspaces
  for each row execute function private.grant_free_credits_to_new_workspace();

-- Grants this month's free credits to up to p_limit workspaces on the free plan that have not
-- had them yet, in one statement; returns how many it granted. The cron calls it until it
-- grants fewer than p_limit. Workspaces another run holds are skipped (that run grants them),
-- and the unique grant reference turns a grant committed meanwhile into a no-op.
create function private.grant_free_monthly_credits(p_limit integer)
returns integer
language sql
security definer
set search_path = ''
as $$
  with free_plan as (
    select p.monthly_credits from public.plans p where p.tier = 'free' and p.monthly_credits > 0
  ),
  due as (
    select w.id, w.credits_remaining, private.free_credits_reference(w.id) as reference
    from public.workspaces w
    where w.plan_tier = 'free'
      and not exists (
        select from public.credit_ledger l where l.grant_reference = private.free_credits_reference(w.id)
      )
    limit greatest(p_limit, 0)
    for update of w skip locked
  ),
  granted as (
    insert into public.credit_ledger (workspace_id, delta, balance_after, reason, grant_reference)
    select d.id, f.monthly_credits, d.credits_remaining + f.monthly_credits, 'grant', d.reference
    from due d cross join free_plan f
    on conflict (grant_reference) where grant_reference is not null do nothing
    returning workspace_id, delta
  ),
  credited as (
    update public.workspaces w set credits_remaining = w.credits_remaining + g.delta
    from granted g
    where w.id = g.workspace_id
    returning w.id
  )
  select count(*)::integer from credited
$$;

revoke all on function private.grant_free_monthly_credits(integer) from public, anon, authenticated;

grant execute on function private.grant_free_monthly_credits(integer) to service_role;

-- webhooks ------------------------------------------------------------------------------------

-- Applies one stored Razorpay webhook (see the billing migration's header for why the result
-- does not depend on arrival order). The stored event is locked and must still be unprocessed,
-- so an apply that runs while another applies the same event waits, then changes nothing.
create or replace function private.apply_razorpay_event(p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stored private.webhook_events;
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
  select * into v_stored from private.webhook_events e
  where e.id = p_event_id and e.provider = 'razorpay'
  for update;
  if v_stored.id is null then
    return 'unknown_event';
  end if;
  if v_stored.status <> 'received' then
    return v_stored.outcome;
  end if;
  v_body := v_stored.body::jsonb;
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

revoke all on function private.apply_razorpay_event(uuid) from public, anon, authenticated;

grant execute on function private.apply_razorpay_event(uuid) to service_role;
