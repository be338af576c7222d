-- Test mode follows the waits a real run would: a call_make that waits for Make.com's answer
-- makes no call in a test, so nothing answers it; with time skipped its timeout passes and the
-- run takes `alt` (`make_timed_out`), unless the test names the answer to pretend:
-- `make_completed` in `events` takes `next`, `make_failed` takes `alt`. A call the workspace's
-- credits would not cover shows `no_credits` (and a waiting step takes `alt`, as a run does).
-- Each wait shows when it would end (`until`), wait_for and a waiting call too. A send step
-- checks the platform's suppressions as a real run does.

create or replace function public.test_flow(p_flow_id uuid, p_contact_id uuid, p_events text[] default '{}')
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_flow public.flows;
  v_contact public.contacts;
  v_step public.flow_steps;
  v_out jsonb := '[]'::jsonb;
  v_outcome text;
  v_next uuid;
  v_match boolean;
  v_detail jsonb;
  v_visits integer := 0;
  v_waits boolean;
  v_price integer;
begin
  select * into v_flow from public.flows f where f.id = p_flow_id;
  if v_flow.id is null or v_flow.workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'flow_not_found', 'Flow not found');
  end if;
  if v_flow.workspace_id not in (select private.user_workspace_ids_at_least('member')) then
    perform private.fail(403, 'insufficient_role', 'Viewers cannot test flows');
  end if;
  select * into v_contact from public.contacts c
  where c.id = p_contact_id and c.workspace_id = v_flow.workspace_id and c.erased_at is null;
  if v_contact.id is null then
    perform private.fail(404, 'contact_not_found', 'Contact not found');
  end if;
  select * into v_step from public.flow_steps s where s.flow_id = v_flow.id and s.version = v_flow.version and s.is_entry;
  while v_step.id is not null and v_visits < 50 loop
    v_visits := v_visits + 1;
    v_detail := null;
    v_next := v_step.next_id;
    if v_step.kind in ('wait', 'wait_until') then
      v_outcome := 'waited';
      v_detail := jsonb_build_object('until', private.flow_step_due(v_step.kind, v_step.config, v_contact.attributes,
        (select z.name from private.time_zones z where z.name = v_contact.attributes ->> 'timezone'), now()));
    elsif v_step.kind = 'wait_for' then
      v_match := coalesce(v_step.config -> 'event' ->> 'name', v_step.config -> 'event' ->> 'type') = any (coalesce(p_events, '{}'));
      v_outcome := case when v_match then 'event_received' else 'timed_out' end;
      v_next := case when v_match then v_step.next_id else v_step.alt_id end;
      v_detail := jsonb_build_object('until', now() + private.flow_duration(v_step.config, 'timeout_'));
    elsif v_step.kind = 'branch' then
      if v_step.config ? 'rule' then
        execute format('select exists (select 1 from public.contacts c where c.id = $2 and c.workspace_id = $1 and %s)',
                       private.segment_condition(v_step.config -> 'rule'))
        into v_match using v_flow.workspace_id, v_contact.id;
      elsif v_step.config ? 'percent' then
        v_match := abs(hashtextextended(v_contact.id::text || ':' || v_step.id::text, 0)) % 100 < (v_step.config ->> 'percent')::integer;
        v_detail := jsonb_build_object('note', 'a real run splits by its own id');
      else
        v_match := coalesce(v_step.config -> 'event' ->> 'name', v_step.config -> 'event' ->> 'type') = any (coalesce(p_events, '{}'));
      end if;
      v_outcome := case when v_match then 'branch_yes' else 'branch_no' end;
      v_next := case when v_match then v_step.next_id else v_step.alt_id end;
    elsif v_step.kind = 'send_email' then
      v_outcome := case
        when v_contact.email is null then 'suppressed'
        when v_contact.unsubscribed_at is not null then 'suppressed'
        when not private.may_market((select ps.marketing_consent from public.workspace_privacy_settings ps
                                     where ps.workspace_id = v_flow.workspace_id),
                                    v_contact.consent_state, v_contact.attributes) then 'suppressed'
        when exists (select 1 from public.email_suppressions x
                     where x.workspace_id = v_flow.workspace_id and x.email = v_contact.email) then 'suppressed'
        when exists (select 1 from private.platform_suppressions p
                     where p.email_hash = sha256(convert_to(lower(v_contact.email), 'UTF8'))) then 'suppressed'
        else 'queued' end;
      v_detail := (select jsonb_build_object('template_id', t.id, 'subject', t.subject, 'html', t.html, 'text', t.text,
                                            'from_email', v_step.config ->> 'from_email', 'to', v_contact.email)
                   from public.email_templates t where t.id = v_step.template_id);
    elsif v_step.kind = 'update_contact' then
      v_outcome := 'updated';
      v_detail := v_step.config;
    elsif v_step.kind = 'call_make' then
      v_waits := private.flow_step_waits('call_make', v_step.config);
      v_price := (select ap.credits from public.automation_prices ap where ap.type = v_step.config ->> 'type');
      v_outcome := case
        when v_price is null or not exists (select 1 from public.projects p
                                            where p.id::text = v_step.config ->> 'project_id'
                                              and p.workspace_id = v_flow.workspace_id) then 'make_skipped'
        when v_price > (select w.credits_remaining from public.workspaces w where w.id = v_flow.workspace_id) then 'no_credits'
        when not v_waits then 'make_queued'
        when 'make_completed' = any (coalesce(p_events, '{}')) then 'make_completed'
        when 'make_failed' = any (coalesce(p_events, '{}')) then 'make_failed'
        else 'make_timed_out' end;
      v_next := case when v_waits and v_outcome <> 'make_completed' then v_step.alt_id else v_step.next_id end;
      v_detail := jsonb_build_object('type', v_step.config ->> 'type', 'project_id', v_step.config ->> 'project_id',
                                     'credits', v_price,
                                     'until', case when v_waits then now() + private.flow_duration(v_step.config, 'timeout_') end);
    elsif v_step.kind = 'notify_team' then
      v_outcome := 'notified';
    elsif v_step.kind = 'exit_flows' then
      v_outcome := 'exited_flows';
    else
      v_outcome := 'exited';
      v_next := null;
    end if;
    v_out := v_out || jsonb_build_array(jsonb_strip_nulls(jsonb_build_object(
      'step', v_step.key, 'kind', v_step.kind, 'outcome', v_outcome,
      case when v_step.kind = 'send_email' then 'email' else 'detail' end, v_detail)));
    select * into v_step from public.flow_steps s where s.id = v_next;
  end loop;
  return v_out;
end
$$;

comment on function public.test_flow(uuid, uuid, text[]) is
  'Test mode (members and above): walks a contact through a flow''s current version with time skipped and nothing changed, showing each step, when each wait would end, and the email it would send or the Make.com call it would make. A call_make that waits takes its timeout path unless events name make_completed or make_failed.';
