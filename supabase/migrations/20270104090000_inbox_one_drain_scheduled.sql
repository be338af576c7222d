-- One drain of the inbox queue is scheduled at a time, instead of one per accepted webhook.
--
-- Every accepted WhatsApp, Telegram or X webhook used to start its own drain after the answer:
-- it slept INBOX_APPLY_DELAY_SECONDS, then called private.apply_inbox_queue (one more
-- transaction and an advisory-lock probe, and a second call to see the queue empty), also when
-- another drain was already running or about to. At 60 deliveries a second a dozen drains
-- slept at once and each woke to apply the one or two deliveries stored since the one before,
-- so sets stayed at 1-2 deliveries and their triggers ran per delivery
-- (scripts/bench_inbox: answered at 0.36 of a plain insert per request).
--
-- Now the edge asks, after the delivery is committed, whether a drain is already scheduled:
-- the first delivery after the last scheduled drain became due schedules the next one (due
-- after the delay) and runs it; every other delivery is left to that drain, which starts after
-- the delivery was committed, so its first call takes the delivery (it calls again only after
-- taking a full set). What no drain takes (an edge that stopped after its answer, before or
-- during its drain) stays stored, and the next drain or the replay cron applies it.

create table private.inbox_drain_schedule (
  id boolean primary key default true check (id),
  due_at timestamptz not null default 'epoch'
);

comment on table private.inbox_drain_schedule is
  'One row: when the scheduled drain of the inbox queue (private.apply_inbox_queue) is due; '
  'a delivery stored after that moment schedules the next drain.';

insert into private.inbox_drain_schedule (id) values (true);

revoke all on private.inbox_drain_schedule from public, anon, authenticated;

alter table private.inbox_drain_schedule enable row level security;

-- Whether the caller should drain the inbox queue after p_delay_seconds (its delivery already
-- committed): true for the first caller once the scheduled drain is due, which becomes the
-- scheduled one; false while a scheduled drain is still to start (it takes the caller's
-- delivery). The update locks the row only when it schedules, so concurrent callers wait at
-- most for that one statement.
create function private.schedule_inbox_drain(p_delay_seconds double precision)
returns boolean
language sql
security definer
set search_path = ''
as $$
  with scheduled as (
    update private.inbox_drain_schedule s
    set due_at = clock_timestamp() + make_interval(secs => least(greatest(coalesce(p_delay_seconds, 0), 0), 60))
    where s.id and s.due_at <= clock_timestamp()
    returning s.id
  )
  select exists (select from scheduled)
$$;

revoke all on function private.schedule_inbox_drain(double precision) from public, anon, authenticated;

grant execute on function private.schedule_inbox_drain(double precision) to service_role;

