-- A workspace that goes stops paying: when an owner deletes a workspace, or an account's
-- deletion takes its solo workspaces with it (or the retention job purges one), every live
-- Razorpay subscription of that workspace is queued here for cancellation at Razorpay. The
-- queue is written by triggers in the same transaction as the deletion, so no deletion path
-- can forget it, and it has no foreign key: a row outlives the workspace it came from (the
-- Razorpay id is all the edge needs). The edge cancels at once after the deletion and the
-- cron retries what Razorpay did not answer (api/billing/cancellations.py), with backoff, up to
-- a dead letter that stays visible here and in the workspace's audit log while it exists.
--
-- Restoring a deleted workspace withdraws cancellations not yet sent; one Razorpay already
-- carried out stays (a cancelled subscription cannot be resumed), and the workspace is back on
-- the free tier when Razorpay's webhook reports it.

create table private.subscription_cancellations (
  razorpay_subscription_id text primary key check (razorpay_subscription_id ~ '^sub_[A-Za-z0-9]{14}$'),
  workspace_id uuid not null,
  subscription_id uuid,
  reason text not null check (reason in ('workspace_deleted', 'workspace_removed')),
  status text not null default 'pending' check (status in ('pending', 'cancelled', 'failed')),
  attempts integer not null default 0 check (attempts >= 0),
  next_attempt_at timestamptz not null default now(),
  razorpay_status text check (char_length(razorpay_status) <= 32),
  last_error text check (char_length(last_error) <= 500),
  requested_at timestamptz not null default now(),
  finished_at timestamptz
);

comment on table private.subscription_cancellations is
  'Razorpay subscriptions of deleted workspaces, to cancel at Razorpay (pending, cancelled, or failed after retries), kept past the workspace''s purge.';

create index subscription_cancellations_due_idx on private.subscription_cancellations (next_attempt_at)
  where status = 'pending';

create index subscription_cancellations_workspace_id_idx on private.subscription_cancellations (workspace_id);

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'subscription_cancellations', 'razorpay_subscription_id', 'none', 'not_personal', 'Razorpay''s id of a workspace''s subscription'),
  ('private', 'subscription_cancellations', 'reason', 'none', 'not_personal', null),
  ('private', 'subscription_cancellations', 'status', 'none', 'not_personal', null),
  ('private', 'subscription_cancellations', 'razorpay_status', 'none', 'not_personal', null),
  ('private', 'subscription_cancellations', 'last_error', 'none', 'not_personal', 'our reason and Razorpay''s refusal text');

-- queueing -----------------------------------------------------------------------------------

-- An owner deleted the workspace (deleted_at set): its live subscriptions are queued.
create function private.queue_cancellations_of_deleted_workspace()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into private.subscription_cancellations (razorpay_subscription_id, workspace_id, subscription_id, reason)
  select s.razorpay_subscription_id, s.workspace_id, s.id, 'workspace_deleted'
  from public.subscriptions s
  where s.workspace_id = new.id and private.subscription_is_live(s.status)
  on conflict (razorpay_subscription_id) do update
  set status = 'pending', attempts = 0, next_attempt_at = now(), reason = excluded.reason,
      last_error = null, finished_at = null
  where private.subscription_cancellations.status <> 'cancelled';
  return null;
end
$$;

revoke all on function private.queue_cancellations_of_deleted_workspace() from public, anon, authenticated;

create trigger workspaces_queue_subscription_cancellations
  after update of deleted_at on public.workspaces
  for each row
  when (old.deleted_at is null and new.deleted_at is not null)
  execute function private.queue_cancellations_of_deleted_workspace();

-- A restored workspace takes back the cancellations not yet carried out.
create function private.withdraw_cancellations_of_restored_workspace()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.subscription_cancellations c
  where c.workspace_id = new.id and c.status = 'pending' and c.reason = 'workspace_deleted';
  return null;
end
$$;

revoke all on function private.withdraw_cancellations_of_restored_workspace() from public, anon, authenticated;

create trigger workspaces_withdraw_subscription_cancellations
  after update of deleted_at on public.workspaces
  for each row
  when (old.deleted_at is not null and new.deleted_at is null)
  execute function private.withdraw_cancellations_of_restored_workspace();

-- A live subscription whose row goes (its workspace is deleted outright: an account's solo
-- workspace, or a purge) is queued before it is gone; also when a cascade deletes it.
create function private.queue_cancellation_of_removed_subscription()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if private.subscription_is_live(old.status) then
    insert into private.subscription_cancellations (razorpay_subscription_id, workspace_id, subscription_id, reason)
    values (old.razorpay_subscription_id, old.workspace_id, old.id, 'workspace_removed')
    on conflict (razorpay_subscription_id) do nothing;
  end if;
  return old;
end
$$;

revoke all on function private.queue_cancellation_of_removed_subscription() from public, anon, authenticated;

create trigger subscriptions_queue_cancellation
  before delete on public.subscriptions
  for each row execute function private.queue_cancellation_of_removed_subscription();

-- the edge's steps (as the service) ------------------------------------------------------------

-- Claims due cancellations (those of p_workspace_ids only, when given), at most p_limit: each
-- is leased for 5 minutes (attempts counted), so two workers never call Razorpay for the same.
create function private.claim_subscription_cancellations(p_limit integer, p_workspace_ids uuid[] default null)
returns setof private.subscription_cancellations
language plpgsql
security definer
set search_path = ''
as $$
begin
  return query
  update private.subscription_cancellations c
  set attempts = c.attempts + 1, next_attempt_at = now() + interval '5 minutes'
  where c.razorpay_subscription_id in (
    select x.razorpay_subscription_id from private.subscription_cancellations x
    where x.status = 'pending' and x.next_attempt_at <= now()
      and (p_workspace_ids is null or x.workspace_id = any (p_workspace_ids))
    order by x.next_attempt_at
    limit least(greatest(coalesce(p_limit, 10), 1), 100)
    for update skip locked
  )
  returning c.*;
end
$$;

revoke all on function private.claim_subscription_cancellations(integer, uuid[]) from public, anon, authenticated;

grant execute on function private.claim_subscription_cancellations(integer, uuid[]) to service_role;

-- What Razorpay answered: `cancelled` (or found it ended already), `retry` (unreachable: again
-- after 2^attempts minutes, at most 6 hours apart, failed after 10 attempts) or `failed` (a
-- refusal retrying cannot change). The workspace's audit log says so while it exists.
create function private.record_subscription_cancellation(
  p_razorpay_subscription_id text, p_outcome text, p_razorpay_status text, p_error text
)
returns private.subscription_cancellations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row private.subscription_cancellations;
begin
  if p_outcome not in ('cancelled', 'retry', 'failed') then
    raise exception 'unknown outcome %', p_outcome;
  end if;
  update private.subscription_cancellations c
  set status = case
        when p_outcome = 'cancelled' then 'cancelled'
        when p_outcome = 'failed' or c.attempts >= 10 then 'failed'
        else 'pending'
      end,
      next_attempt_at = case
        when p_outcome = 'retry' then now() + least(interval '1 minute' * power(2, c.attempts), interval '6 hours')
        else c.next_attempt_at
      end,
      razorpay_status = left(coalesce(p_razorpay_status, c.razorpay_status), 32),
      last_error = left(p_error, 500),
      finished_at = case when p_outcome = 'retry' and c.attempts < 10 then null else now() end
  where c.razorpay_subscription_id = p_razorpay_subscription_id and c.status = 'pending'
  returning * into v_row;
  if v_row.status in ('cancelled', 'failed') then
    perform private.audit(v_row.workspace_id,
                          case when v_row.status = 'cancelled' then 'billing.subscription_cancelled'
                               else 'billing.subscription_cancel_failed' end,
                          'subscription', coalesce(v_row.subscription_id::text, v_row.razorpay_subscription_id),
                          jsonb_build_object('reason', v_row.reason, 'razorpay_status', v_row.razorpay_status,
                                             'attempts', v_row.attempts));
  end if;
  return v_row;
end
$$;

revoke all on function private.record_subscription_cancellation(text, text, text, text) from public, anon, authenticated;

grant execute on function private.record_subscription_cancellation(text, text, text, text) to service_role;

-- grants -------------------------------------------------------------------------------------

revoke all on private.subscription_cancellations from public, anon, authenticated;

grant select, insert, update, delete on private.subscription_cancellations to service_role;
