-- One inbound webhook, one transaction: private.receive_webhook_event stores the delivery (as
-- private.record_webhook_event does: a repeat of an applied event is a duplicate) and applies it
-- at once with the feature's SQL applier (the message upsert, the conversation and unread
-- counters kept by its triggers), in the edge's one transaction that also read the channel's
-- sealed secret. Before, a WhatsApp, Telegram or X delivery took three transactions (the secret
-- read, the store, the apply after the answer): scripts/bench_inbox measured 0.22 of a plain
-- insert per request.
--
-- Nothing is lost when the apply fails: it runs in its own subtransaction, so the stored event
-- stays, its failure is counted by private.webhook_event_failed (the replay cron tries it again
-- with backoff) and the outcome answers `failed:<state>`. The error's code is recorded, never
-- its message (which can quote the payload).

-- Answers the stored event's id, whether it was a duplicate (stored and processed before:
-- nothing more was done) and the apply's outcome (null for a duplicate). p_applier names a
-- function private.<p_applier>(uuid) returning text, such as 'apply_whatsapp_event'.
create function private.receive_webhook_event(p_provider text, p_event_id text, p_body text, p_applier text)
returns table (id uuid, duplicate boolean, outcome text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
  v_duplicate boolean;
  v_outcome text;
begin
  if p_applier !~ '^apply_[a-z_]{1,60}$'
     or to_regprocedure(format('private.%I(uuid)', p_applier)) is null then
    raise exception 'unknown webhook applier %', p_applier using errcode = '22023';
  end if;
  select r.id, r.duplicate into v_id, v_duplicate
  from private.record_webhook_event(p_provider, p_event_id, p_body) as r;
  if v_duplicate then
    return query select v_id, true, null::text;
    return;
  end if;
  begin
    execute format('select private.%I($1)', p_applier) into v_outcome using v_id;
  exception when others then
    v_outcome := 'failed:' || private.webhook_event_failed(v_id, 'sql ' || sqlstate);
  end;
  return query select v_id, false, v_outcome;
end
$$;

revoke all on function private.receive_webhook_event(text, text, text, text) from public, anon, authenticated;

grant execute on function private.receive_webhook_event(text, text, text, text) to service_role;
