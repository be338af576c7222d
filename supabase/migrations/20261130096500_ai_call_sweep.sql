-- AI calls the edge never finished: the edge debits a call, then asks Groq, then finishes it
-- (refunding a failure). If the function is stopped in between (Vercel's time limit, a crash,
-- a lost connection) the call stays 'pending' and its credits are gone. The cron fails such
-- calls once they are older than any call may run and refunds each exactly once.

-- Fails and refunds up to p_limit AI calls pending for more than p_older_than_minutes, oldest
-- first, in one statement; returns how many it failed. Calls another transaction holds (the
-- edge finishing them right now, or a concurrent sweep) are skipped, and only a call still
-- pending is touched, so finish_ai_call and the sweep never both refund a call; a call that
-- somehow has a refund already is failed without another (the ledger's unique index on
-- (ai_call_id, reason) backs this up). Each refund's balance_after follows the workspace's
-- balance in call order.
create function private.refund_abandoned_ai_calls(p_older_than_minutes integer, p_limit integer)
returns integer
language sql
security definer
set search_path = ''
as $$
  with abandoned as (
    update public.ai_calls c
    set status = 'failed', error_code = 'abandoned', finished_at = now()
    where c.id in (
      select p.id
      from public.ai_calls p
      where p.status = 'pending'
        and p.created_at < now() - make_interval(mins => greatest(p_older_than_minutes, 1))
      order by p.created_at
      limit greatest(p_limit, 0)
      for update skip locked
    )
      and c.status = 'pending'
    returning c.id, c.workspace_id, c.credits_charged, c.created_at
  ),
  owed as (
    select a.id, a.workspace_id, a.credits_charged, a.created_at
    from abandoned a
    where a.credits_charged > 0
      and not exists (
        select from public.credit_ledger l where l.ai_call_id = a.id and l.reason = 'ai_refund'
      )
  ),
  credited as (
    update public.workspaces w
    set credits_remaining = w.credits_remaining + t.total
    from (select o.workspace_id, sum(o.credits_charged)::integer as total from owed o group by o.workspace_id) t
    where w.id = t.workspace_id
    returning w.id, w.credits_remaining, t.total
  ),
  refunded as (
    insert into public.credit_ledger (workspace_id, delta, balance_after, reason, ai_call_id)
    select o.workspace_id, o.credits_charged,
           c.credits_remaining - c.total
             + sum(o.credits_charged) over (
               partition by o.workspace_id order by o.created_at, o.id rows unbounded preceding
             )::integer,
           'ai_refund', o.id
    from owed o
    join credited c on c.id = o.workspace_id
    returning 1
  )
  select count(*)::integer from abandoned
$$;

revoke all on function private.refund_abandoned_ai_calls(integer, integer) from public, anon, authenticated;

grant execute on function private.refund_abandoned_ai_calls(integer, integer) to service_role;
