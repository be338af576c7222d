-- An inbox delivery's store answers whether its request runs the next drain, in the same
-- statement: no question after the answer, and the store's triggers trimmed.
--
-- After every answer the edge used to ask private.schedule_inbox_drain whether a drain was
-- scheduled: a thread hop and a round trip per delivery, though only one in about 39 ran the
-- drain (scripts/bench_inbox: 0.55-0.59 of a plain insert per request). Now
-- private.store_inbox_delivery stores the delivery and decides in the same call, and the edge
-- starts a drain after the answer only when told to.
--
-- Deciding before the commit opens a gap the old order did not have: a delivery left to the
-- scheduled drain might still be committing when that drain takes the queue. So every store
-- holds a shared advisory lock until it commits, and the drain takes the same lock exclusively
-- (and lets it go at once) before it claims: it waits for every store that decided before the
-- drain became due, and those are then committed and visible to its claim. What no drain takes
-- (an edge that stopped after its answer) the next drain or the replay cron applies, as before.
--
-- The store's triggers: the edge passes the channel's workspace, so the insert trigger that
-- looks it up (private.attribute_webhook_event) runs only when none is given; the trigger that
-- attributes an applied delivery reads its identifiers only when they are needed (an inbound
-- mail's content, a payload nobody owns, a workspace with erased people), not for every
-- delivery. The identifier index written on insert stays: erasure and exports find payloads
-- still waiting to be applied by it.

-- Stores an inbox delivery (as private.record_webhook_event: a repeat of an applied one is a
-- duplicate, a repeat of one still waiting is stored already) under the given workspace, and
-- answers whether the caller runs the next drain after p_drain_delay_seconds: true for the
-- first delivery once the scheduled drain is due, which schedules the next one; false while a
-- scheduled drain is still to start (it takes this delivery) and for a duplicate.
create function private.store_inbox_delivery(
  p_provider text, p_event_id text, p_body text, p_workspace_id uuid, p_drain_delay_seconds double precision
)
returns table (id uuid, duplicate boolean, drain boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_duplicate boolean := false;
  v_drain boolean := false;
begin
  if p_provider not in ('whatsapp', 'telegram', 'x') then
    raise exception 'not an inbox provider: %', p_provider using errcode = '22023';
  end if;
  -- Held until this transaction ends: the drain waits for it before it claims.
  perform pg_advisory_xact_lock_shared(hashtext('private.store_inbox_delivery'));
  insert into private.webhook_events (provider, event_id, body, workspace_id)
  values (p_provider, p_event_id, p_body, p_workspace_id)
  on conflict (provider, event_id) do nothing
  returning webhook_events.id into v_id;
  if v_id is null then
    select e.id, e.status <> 'received' into v_id, v_duplicate
    from private.webhook_events e
    where e.provider = p_provider and e.event_id = p_event_id;
  end if;
  if not v_duplicate then
    update private.inbox_drain_schedule s
    set due_at = clock_timestamp() + make_interval(secs => least(greatest(coalesce(p_drain_delay_seconds, 0), 0), 60))
    where s.id and s.due_at <= clock_timestamp();
    v_drain := found;
  end if;
  return query select v_id, v_duplicate, v_drain;
end
$$;

revoke all on function private.store_inbox_delivery(text, text, text, uuid, double precision) from public, anon, authenticated;

grant execute on function private.store_inbox_delivery(text, text, text, uuid, double precision) to service_role;

-- Applies up to p_limit stored inbox deliveries that are due (new ones, and failed ones whose
-- backoff has passed), oldest first: WhatsApp's as one set (each on its own when the set
-- fails), Telegram's and X's each on its own. A delivery whose apply fails is counted for a
-- retry; the others are applied. Answers how many it took, or -1 when another drain is running.
-- Before it claims it waits for the stores still committing (private.store_inbox_delivery's
-- lock), so every delivery left to this drain is visible to its claim.
create or replace function private.apply_inbox_queue(p_limit integer)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_whatsapp uuid[];
  v_others uuid[];
  v_providers text[];
begin
  if not pg_try_advisory_xact_lock(hashtext('private.apply_inbox_queue')) then
    return -1;
  end if;
  perform pg_advisory_lock(hashtext('private.store_inbox_delivery'));
  perform pg_advisory_unlock(hashtext('private.store_inbox_delivery'));
  with due as (
    select e.id, e.provider from private.webhook_events e
    where e.provider in ('whatsapp', 'telegram', 'x') and e.status = 'received'
      and coalesce(e.next_attempt_at, e.received_at) <= now()
    order by coalesce(e.next_attempt_at, e.received_at)
    limit greatest(1, least(p_limit, 5000))
    for update skip locked
  )
  select array_agg(d.id) filter (where d.provider = 'whatsapp'),
         array_agg(d.id) filter (where d.provider <> 'whatsapp'),
         array_agg(d.provider) filter (where d.provider <> 'whatsapp')
  into v_whatsapp, v_others, v_providers
  from due d;

  if v_whatsapp is not null then
    begin
      perform private.apply_whatsapp_events(v_whatsapp);
    exception when others then
      for v_at in 1 .. cardinality(v_whatsapp) loop
        perform private.apply_inbox_event('whatsapp', v_whatsapp[v_at]);
      end loop;
    end;
  end if;
  for v_at in 1 .. coalesce(cardinality(v_others), 0) loop
    perform private.apply_inbox_event(v_providers[v_at], v_others[v_at]);
  end loop;
  return coalesce(cardinality(v_whatsapp), 0) + coalesce(cardinality(v_others), 0);
end
$$;

revoke all on function private.apply_inbox_queue(integer) from public, anon, authenticated;

grant execute on function private.apply_inbox_queue(integer) to service_role;

-- The store decides now; nothing asks after the answer.
drop function private.schedule_inbox_drain(double precision);

-- When an applier finishes an event (received -> applied or ignored): record the workspace it
-- was matched to, index what an inbound mail's Base64 content names (its sender, most of all),
-- and strip a payload nobody owns or that names an erased person. A dead-lettered event
-- (received -> failed) is attributed and indexed the same way, and kept whole. The payload's
-- identifiers are read only when one of those needs them.
create or replace function private.attribute_applied_webhook_event()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_message jsonb;
  v_decoded text;
  v_tokens text[];
begin
  if new.workspace_id is null then
    new.workspace_id := private.applied_webhook_workspace(new.provider, new.body);
  end if;
  if new.provider = 'ses_inbound' then
    v_tokens := private.identifier_tokens(new.body);
    begin
      v_message := (new.body::jsonb ->> 'Message')::jsonb;
      if upper(v_message #>> '{receipt,action,encoding}') = 'BASE64' then
        v_decoded := convert_from(decode(left(v_message ->> 'content', 4000000), 'base64'), 'UTF8');
        v_tokens := v_tokens || private.identifier_tokens(v_decoded);
        new.identity_keys := new.identity_keys || private.identifier_keys(v_tokens);
      end if;
    exception when others then
      null;  -- content that is not Base64 UTF-8 text has nothing more to index
    end;
  end if;
  -- A dead-lettered payload keeps its body (what failed is worth reading) for its days.
  if new.status <> 'failed'
     and (new.workspace_id is null
          or (exists (select from private.erased_identities e where e.workspace_id = new.workspace_id)
              and private.webhook_names_erased_person(new.workspace_id,
                                                      coalesce(v_tokens, private.identifier_tokens(new.body))))) then
    new.body := private.webhook_payload_skeleton(new.provider, new.body);
    new.identity_keys := private.identifier_keys(private.identifier_tokens(new.body));
  end if;
  return new;
end
$$;

revoke all on function private.attribute_applied_webhook_event() from public, anon, authenticated;

-- The workspace is looked up from the event id only when the store did not give it.
drop trigger webhook_events_attribute_workspace on private.webhook_events;

create trigger webhook_events_attribute_workspace
  before insert on private.webhook_events
  for each row
  when (new.workspace_id is null)
  execute function private.attribute_webhook_event();
