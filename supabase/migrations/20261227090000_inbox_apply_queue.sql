-- Inbox deliveries are stored when they arrive and applied in batches right after the answer.
--
-- A WhatsApp, Telegram or X webhook now reads the channel's secret, checks the signature and
-- stores the raw delivery (private.record_webhook_event: one insert, a repeat is a duplicate)
-- in one transaction, and answers. private.apply_inbox_queue then applies what is stored and
-- due, a batch per call: the edge calls it after every answer (so a delivery is applied within
-- moments, and deliveries that arrive while a drain runs are applied together), and the replay cron
-- still applies whatever is left. Applying in the request cost each delivery a dozen
-- statement-level triggers of its own (counters, SLA clocks, replies, broadcasts, contact
-- events) and a larger commit: scripts/bench_inbox measured 0.29-0.32 of a plain insert per
-- request. In a batch those statements run once for all its messages.
--
-- Nothing is lost or doubled: a delivery is stored before the answer, claimed by one drain at a
-- time (`for update skip locked`, so never one the replay cron holds), and applied idempotently
-- (messages are unique per channel and provider id, statuses only move forward). When a batch
-- fails, each of its deliveries is applied on its own, so one bad delivery is counted
-- (private.webhook_event_failed: retried with backoff, dead-lettered at last) and the others go
-- through.

-- Applies stored WhatsApp deliveries as one set: per channel, the messages of all of them are
-- inserted by one statement (conversations, identities and contacts made for all senders at
-- once) and their statuses moved by one; then every delivery is marked applied (or ignored when
-- its channel is gone). The same rules as private.apply_whatsapp_event, which applies one.
-- Answers how many deliveries it marked.
create function private.apply_whatsapp_events(p_event_ids uuid[])
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_channel public.channels;
  v_values jsonb;
  v_senders jsonb;
  v_statuses jsonb;
  v_marked integer;
begin
  for v_channel in
    select c.* from public.channels c
    where c.kind = 'whatsapp'
      and c.id::text in (select split_part(e.event_id, ':', 1) from private.webhook_events e
                         where e.id = any(p_event_ids) and e.provider = 'whatsapp'
                           and e.status = 'received')
    order by c.id
  loop
    select coalesce(jsonb_agg(c.change -> 'value' order by b.received_at, b.id), '[]'::jsonb)
    into v_values
    from private.webhook_events b,
         jsonb_array_elements(private.jsonb_array_or_empty(b.body::jsonb -> 'entry')) as e(entry),
         jsonb_array_elements(private.jsonb_array_or_empty(e.entry -> 'changes')) as c(change)
    where b.id = any(p_event_ids) and b.provider = 'whatsapp' and b.status = 'received'
      and split_part(b.event_id, ':', 1) = v_channel.id::text
      and jsonb_typeof(c.change -> 'value') = 'object' and c.change ->> 'field' = 'messages'
      and c.change -> 'value' -> 'metadata' ->> 'phone_number_id' = v_channel.account_id;

    select coalesce(jsonb_agg(s), '[]'::jsonb) into v_senders
    from (
      select distinct on (m.msg ->> 'from') m.msg ->> 'from' as address,
             (select left(k -> 'profile' ->> 'name', 200)
              from jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'contacts')) as k
              where k ->> 'wa_id' = m.msg ->> 'from' limit 1) as display_name
      from jsonb_array_elements(v_values) as v(val),
           jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'messages')) as m(msg)
      where m.msg ->> 'from' ~ '^[1-9][0-9]{5,14}$'
      order by m.msg ->> 'from'
    ) as s;

    if jsonb_array_length(v_senders) > 0 then
      insert into public.messages (workspace_id, conversation_id, channel_id, direction, text,
                                   attachments, provider_message_id, status, provider_timestamp, context)
      select v_channel.workspace_id, c.conversation_id, v_channel.id, 'inbound',
             private.whatsapp_text(m.msg), private.whatsapp_attachments(m.msg), m.msg ->> 'id',
             'received', private.unix_time_or_now(m.msg ->> 'timestamp'),
             jsonb_strip_nulls(jsonb_build_object('type', left(m.msg ->> 'type', 40),
                                                  'reply_to', left(m.msg -> 'context' ->> 'id', 998)))
      from jsonb_array_elements(v_values) as v(val)
      cross join jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'messages')) as m(msg)
      join private.inbox_conversations_for(v_channel.id, v_senders) as c on c.address = m.msg ->> 'from'
      where char_length(m.msg ->> 'id') between 1 and 998
      on conflict (channel_id, provider_message_id) do nothing;
    end if;

    select coalesce(jsonb_agg(jsonb_build_object(
             'id', st.s ->> 'id', 'status', st.s ->> 'status',
             'status_at', private.unix_time_or_now(st.s ->> 'timestamp'),
             'error_code', st.s -> 'errors' -> 0 ->> 'code',
             'error_text', coalesce(st.s -> 'errors' -> 0 -> 'error_data' ->> 'details',
                                    st.s -> 'errors' -> 0 ->> 'message',
                                    st.s -> 'errors' -> 0 ->> 'title'))), '[]'::jsonb)
    into v_statuses
    from jsonb_array_elements(v_values) as v(val),
         jsonb_array_elements(private.jsonb_array_or_empty(v.val -> 'statuses')) as st(s)
    where jsonb_typeof(st.s) = 'object';
    if jsonb_array_length(v_statuses) > 0 then
      perform private.apply_message_statuses(v_channel.id, v_statuses);
    end if;
  end loop;

  update private.webhook_events e
  set status = case when c.id is null then 'ignored' else 'applied' end,
      outcome = case when c.id is null then 'ignored:channel_gone' else 'applied' end,
      processed_at = now()
  from private.webhook_events b
  left join public.channels c
    on c.id::text = split_part(b.event_id, ':', 1) and c.kind = 'whatsapp'
  where b.id = any(p_event_ids) and b.provider = 'whatsapp' and b.status = 'received'
    and e.id = b.id;
  get diagnostics v_marked = row_count;
  return v_marked;
end
$$;

revoke all on function private.apply_whatsapp_events(uuid[]) from public, anon, authenticated;

grant execute on function private.apply_whatsapp_events(uuid[]) to service_role;

-- Applies one stored inbox delivery with its provider's applier, on its own: a failure is
-- rolled back alone and counted for a retry (the error's code, never its message). Answers the
-- outcome, `failed:<state>` when it failed.
create function private.apply_inbox_event(p_provider text, p_event_id uuid)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_outcome text;
begin
  begin
    case p_provider
      when 'whatsapp' then v_outcome := private.apply_whatsapp_event(p_event_id);
      when 'telegram' then v_outcome := private.apply_telegram_event(p_event_id);
      when 'x' then v_outcome := private.apply_x_event(p_event_id);
      else raise exception 'not an inbox provider: %', p_provider using errcode = '22023';
    end case;
  exception when others then
    v_outcome := 'failed:' || private.webhook_event_failed(p_event_id, 'sql ' || sqlstate);
  end;
  return v_outcome;
end
$$;

revoke all on function private.apply_inbox_event(text, uuid) from public, anon, authenticated;

grant execute on function private.apply_inbox_event(text, uuid) to service_role;

-- Applies up to p_limit stored inbox deliveries that are due (new ones, and failed ones whose
-- backoff has passed), oldest first: WhatsApp's as one set (each on its own when the set
-- fails), Telegram's and X's each on its own. A delivery whose apply fails is counted for a
-- retry; the others are applied. Answers how many it took, or -1 when another drain is running
-- (one at a time: deliveries that arrive while it runs are taken by its next call, as one set,
-- instead of by as many drains of one). A drain calls again until a call takes none, so a
-- delivery stored while it ran is never left behind: the drain that found it busy stored its
-- delivery before that drain's last call began.
create function private.apply_inbox_queue(p_limit integer)
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

-- The edge no longer applies a delivery in the transaction that stores it.
drop function private.receive_webhook_event(text, text, text, text);
