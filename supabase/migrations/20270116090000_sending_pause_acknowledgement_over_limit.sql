-- Acknowledging a guardrail pause while the rates are still over the pause level is refused with
-- the figures (409 sending_rates_over_limit), unless the admin accepts that explicitly
-- (p_accept_over_limit), which is recorded on the pause. Rates cannot fall while nothing is sent,
-- so without that explicit acceptance a workspace could stay stopped for the whole rolling window
-- (up to 90 days). The rates are judged as the pause judges them: on what was sent since the
-- scope's last acknowledgement's next full hour.
-- A flow's email step whose flow is no longer active (a member paused or archived it meanwhile)
-- is not resumed by the acknowledgement: it stays paused (the pause's mark and reason cleared)
-- until its flow resumes it.

alter table public.sending_pauses add column acknowledged_over_limit boolean;

comment on column public.sending_pauses.acknowledged_over_limit is
  'Set at acknowledgement: whether the rates were still over the pause level and the admin accepted resuming all the same.';

drop function public.acknowledge_sending_pause(uuid);

-- Admins lift an active pause by acknowledging it: who and when are recorded with the rates at
-- that moment; the campaigns it paused resume (unless another active pause covers them, or they
-- send a step of a flow that is not active). While the rates are still over the pause level the
-- acknowledgement is refused unless p_accept_over_limit. Answers
-- {"resumed": n, "still_over_limit": bool, "metrics": {...}}.
create function public.acknowledge_sending_pause(p_pause_id uuid, p_accept_over_limit boolean default false)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_pause public.sending_pauses;
  v_limits public.deliverability_settings;
  v_since timestamptz;
  v_window record;
  v_over text;
  v_metrics jsonb := '{}'::jsonb;
  v_resumed integer;
begin
  select * into v_pause from public.sending_pauses p where p.id = p_pause_id;
  if v_pause.id is null or v_pause.workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'sending_pause_not_found', 'Sending pause not found');
  end if;
  perform private.lock_workspace_as(v_pause.workspace_id, 'admin');
  select * into v_pause from public.sending_pauses p where p.id = p_pause_id for update;
  if v_pause.acknowledged_at is not null then
    perform private.fail(409, 'sending_pause_acknowledged', 'This pause was already acknowledged');
  end if;
  if (select b.engaged from private.platform_brake b) then
    perform private.fail(409, 'platform_brake_engaged',
      'Sending is stopped for the whole platform; the pause can be acknowledged once it is released');
  end if;
  v_limits := private.deliverability_thresholds(v_pause.workspace_id);
  select date_trunc('hour', max(p.acknowledged_at)) + interval '1 hour' into v_since
  from public.sending_pauses p
  where p.workspace_id = v_pause.workspace_id and p.acknowledged_at is not null
    and (p.sender_identity_id is null or p.sender_identity_id is not distinct from v_pause.sender_identity_id);
  for v_window in
    select * from private.deliverability_window(v_pause.workspace_id, v_pause.sender_identity_id, v_since)
    order by time_window desc
  loop
    v_metrics := v_metrics || jsonb_build_object(v_window.time_window, jsonb_build_object(
      'sends', v_window.sends, 'bounces', v_window.bounces, 'complaints', v_window.complaints));
    if v_over is null and v_window.sends >= v_limits.min_volume then
      if v_window.complaints::numeric / v_window.sends >= v_limits.pause_complaint_rate then
        v_over := format('the complaint rate is still %s%% (%s complaints in %s sends over the %s), at or over the pause level of %s%%',
          round(100 * v_window.complaints::numeric / v_window.sends, 3), v_window.complaints, v_window.sends,
          case v_window.time_window when 'day' then 'last 24 hours' else 'rolling window' end,
          round(100 * v_limits.pause_complaint_rate, 3));
      elsif v_window.bounces::numeric / v_window.sends >= v_limits.pause_bounce_rate then
        v_over := format('the bounce rate is still %s%% (%s permanent bounces in %s sends over the %s), at or over the pause level of %s%%',
          round(100 * v_window.bounces::numeric / v_window.sends, 2), v_window.bounces, v_window.sends,
          case v_window.time_window when 'day' then 'last 24 hours' else 'rolling window' end,
          round(100 * v_limits.pause_bounce_rate, 2));
      end if;
    end if;
  end loop;
  if v_over is not null and not coalesce(p_accept_over_limit, false) then
    perform private.fail(409, 'sending_rates_over_limit',
      'Sending stays paused: ' || v_over || '. Remove the addresses or list that caused it, then acknowledge with accept_over_limit to resume all the same (recorded)');
  end if;
  update public.sending_pauses
  set acknowledged_by = auth.uid(), acknowledged_at = now(), metrics_at_acknowledgement = v_metrics,
      acknowledged_over_limit = v_over is not null
  where id = p_pause_id;
  with moved as (
    update public.campaigns c
    set status = case when c.flow_step_id is null
                        or exists (select 1 from public.flow_steps s join public.flows f on f.id = s.flow_id
                                   where s.id = c.flow_step_id and f.status = 'active')
                      then 'sending' else 'paused' end,
        paused_by = null, error = null
    where c.paused_by = p_pause_id and c.status = 'paused'
      and not exists (select 1 from public.sending_pauses p
                      where p.workspace_id = c.workspace_id and p.acknowledged_at is null
                        and (p.sender_identity_id is null or p.sender_identity_id = c.sender_identity_id))
    returning c.status
  )
  select count(*) filter (where m.status = 'sending') into v_resumed from moved m;
  return jsonb_build_object('resumed', v_resumed, 'still_over_limit', v_over is not null, 'metrics', v_metrics);
end
$$;

revoke all on function public.acknowledge_sending_pause(uuid, boolean) from public, anon, authenticated;

grant execute on function public.acknowledge_sending_pause(uuid, boolean) to authenticated;

comment on function public.acknowledge_sending_pause(uuid, boolean) is
  'Admins lift a guardrail pause by acknowledging it (recorded); its campaigns resume. Refused (409 sending_rates_over_limit) while the rates are still over the pause level unless accept_over_limit. Answers resumed, still_over_limit and the rates.';
