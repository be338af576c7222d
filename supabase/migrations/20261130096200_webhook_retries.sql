-- Stored webhooks whose apply fails are retried with exponential backoff and jitter, and
-- dead-lettered after eight failed attempts, so events that keep failing can no longer hold the
-- replay's batch and starve every newer event.
--
-- The edge records each failed apply (the background apply right after intake, or the replay
-- cron) with private.webhook_event_failed: the error's class and code, never the payload. A
-- dead-lettered event keeps the status 'failed' (which the status check already allows and
-- nothing used before), outcome 'dead_letter'; a re-delivery of it is answered as a duplicate.

alter table private.webhook_events add column attempts integer not null default 0;

alter table private.webhook_events add column last_error text;

alter table private.webhook_events add column next_attempt_at timestamptz;

alter table private.webhook_events
  add constraint webhook_events_attempts_check check (attempts >= 0);

comment on column private.webhook_events.attempts is
  'Failed applies so far; the eighth dead-letters the event (status failed, outcome dead_letter).';

comment on column private.webhook_events.last_error is
  'The last failed apply''s error class and code, as the edge described it; never the payload.';

comment on column private.webhook_events.next_attempt_at is
  'When the replay may try again after a failed apply; null until one fails (a new event is due '
  'at arrival, after a minute''s grace for its own apply).';

-- The replay reads each provider's due events in the order they became due; applied, ignored
-- and dead-lettered events (nearly all of them, for good) stay out of the index.
create index webhook_events_due_idx
  on private.webhook_events (provider, (coalesce(next_attempt_at, received_at)))
  where status = 'received';

-- Stored webhooks not yet processed that are due: never tried by the replay and older than a
-- minute (their own apply right after intake had its chance), or past the backoff of their
-- last failure. Oldest due first, so failures waiting out their backoff leave room for others.
create or replace function private.unprocessed_webhook_events(p_provider text, p_limit integer)
returns setof private.webhook_events
language sql
stable
security definer
set search_path = ''
as $$
  select * from private.webhook_events
  where provider = p_provider
    and status = 'received'
    and coalesce(next_attempt_at, received_at) <= now()
    and received_at < now() - interval '1 minute'
  order by coalesce(next_attempt_at, received_at)
  limit p_limit
$$;

revoke all on function private.unprocessed_webhook_events(text, integer) from public, anon, authenticated;

grant execute on function private.unprocessed_webhook_events(text, integer) to service_role;

-- A failed apply of a stored webhook: counted, then retried after five minutes doubling per
-- attempt (capped at twelve hours) of which a random half is jitter, so events that failed
-- together are not all retried at once; the eighth failure dead-letters the event. Answers
-- 'retrying', 'dead_letter', or 'not_pending' when the event is unknown or was processed
-- meanwhile (another apply finished it), which is then left as it is.
create function private.webhook_event_failed(p_event_id uuid, p_error text)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_max_attempts constant integer := 8;
  v_attempts integer;
  v_backoff_seconds double precision;
begin
  update private.webhook_events e
  set attempts = e.attempts + 1, last_error = left(p_error, 500)
  where e.id = p_event_id and e.status = 'received'
  returning e.attempts into v_attempts;
  if v_attempts is null then
    return 'not_pending';
  end if;
  if v_attempts >= v_max_attempts then
    update private.webhook_events e
    set status = 'failed', outcome = 'dead_letter', processed_at = now(), next_attempt_at = null
    where e.id = p_event_id;
    return 'dead_letter';
  end if;
  v_backoff_seconds := least(43200, 300 * power(2, v_attempts - 1));
  update private.webhook_events e
  set next_attempt_at = now() + make_interval(secs => v_backoff_seconds * (0.5 + random() / 2))
  where e.id = p_event_id;
  return 'retrying';
end
$$;

revoke all on function private.webhook_event_failed(uuid, text) from public, anon, authenticated;

grant execute on function private.webhook_event_failed(uuid, text) to service_role;
