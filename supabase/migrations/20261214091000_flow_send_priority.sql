-- Waiting sends go out by priority when the rate is the limit: transactional flows first, then
-- abandoned carts, welcomes, win-backs and other flows, campaigns last (due time within each).
-- A flow's `send_priority` says which it is (the ready-made flows set theirs).

alter table public.flows
  add column send_priority text not null default 'other'
    check (send_priority in ('cart', 'welcome', 'win_back', 'other'));

comment on column public.flows.send_priority is
  'Where the flow''s waiting mail goes in the send queue: transactional flows first, then cart, welcome, win_back, other; campaigns last.';

-- The rank of a send in the queue (1 first); a campaign's (no flow) is last.
create function private.send_priority(p_transactional boolean, p_priority text)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case
    when p_transactional then 1
    when p_priority = 'cart' then 2
    when p_priority = 'welcome' then 3
    when p_priority = 'win_back' then 4
    when p_priority is not null then 5
    else 6
  end
$$;

revoke all on function private.send_priority(boolean, text) from public, anon, authenticated;

grant execute on function private.send_priority(boolean, text) to service_role;

-- As in 20261212096000_flow_email_data.sql, and the picked rows go by priority, then due time.
create or replace function private.claim_email_batch(
  p_limit integer, p_lease_seconds integer, p_per_second double precision, p_account text default 'default'
)
returns table (
  recipient_id uuid, campaign_id uuid, workspace_id uuid, contact_id uuid, email text,
  attempts integer, subject text, html text, text_body text, from_name text, from_email text,
  reply_to text, contact jsonb, send_in double precision
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_account private.ses_accounts;
  v_now timestamptz := clock_timestamp();
  v_rate double precision;
  v_start timestamptz;
  v_take integer;
  v_claimed integer;
begin
  if (select b.engaged from private.platform_brake b) then
    return;
  end if;
  update public.campaigns c
  set status = 'paused', paused_by = p.id, error = p.detail
  from public.sending_pauses p
  where c.status = 'sending' and p.workspace_id = c.workspace_id and p.acknowledged_at is null
    and (p.sender_identity_id is null or p.sender_identity_id = c.sender_identity_id);

  insert into private.ses_accounts as a (account, configured_rate, rate)
  values (p_account, p_per_second, p_per_second)
  on conflict (account) do update
  set configured_rate = excluded.configured_rate,
      rate = least(excluded.configured_rate, coalesce(a.max_send_rate, excluded.configured_rate))
  where a.configured_rate is distinct from excluded.configured_rate;
  select * into v_account from private.ses_accounts a where a.account = p_account for update;
  if v_account.sending_enabled is false or v_account.paused_until > v_now then
    return;
  end if;
  v_rate := least(v_account.rate, p_per_second, coalesce(v_account.max_send_rate, p_per_second));
  v_start := greatest(v_account.next_slot_at, v_now);
  -- Slots up to a second ahead (or one slot, when the rate is below one a second).
  v_take := least(p_limit, floor((extract(epoch from v_now - v_start) + greatest(1, 1 / v_rate)) * v_rate)::integer);
  if v_account.max_24_hour_send >= 0 then
    v_take := least(v_take, floor(v_account.max_24_hour_send - coalesce(v_account.sent_last_24_hours, 0)
                                  - v_account.claimed_since_check)::integer);
  end if;
  if v_account.error_streak >= 5 then
    v_take := least(v_take, 1);
  end if;
  if v_take <= 0 then
    return;
  end if;

  return query
  with picked as (
    select r.id,
           case
             when not (ct.email = r.email
                       and private.may_market(ps.marketing_consent, ct.consent_state, ct.attributes)
                       and ct.unsubscribed_at is null and ct.erased_at is null
                       and not exists (select 1 from public.email_suppressions s
                                       where s.workspace_id = r.workspace_id and s.email = r.email)
                       and not exists (select 1 from private.platform_suppressions p
                                       where p.email_hash = sha256(convert_to(lower(r.email), 'UTF8'))))
               then 'skip'
             when r.attempts >= 8 then 'give_up'
             else 'send'
           end as verdict
    from public.campaigns c
    join public.sender_identities si on si.id = c.sender_identity_id and si.verified
    cross join lateral (
      select d.* from public.campaign_recipients d
      where d.campaign_id = c.id
        and d.status in ('queued', 'sending')
        and d.next_attempt_at <= now()
        and (d.locked_until is null or d.locked_until < now())
      order by d.next_attempt_at
      limit v_take
      for update of d skip locked
    ) r
    join public.contacts ct on ct.id = r.contact_id
    left join public.workspace_privacy_settings ps on ps.workspace_id = r.workspace_id
    left join public.flow_steps fs on fs.id = c.flow_step_id
    left join public.flows f on f.id = fs.flow_id
    where c.status = 'sending'
    order by private.send_priority(f.transactional, f.send_priority), r.next_attempt_at
    limit v_take
  ),
  skipped as (
    update public.campaign_recipients r
    set status = 'skipped', locked_until = null,
        error = 'no longer mailable (unsubscribed, suppressed or without consent)'
    from picked k
    where k.id = r.id and k.verdict = 'skip'
  ),
  given_up as (
    -- Claimed eight times without an outcome: the worker died on it each time.
    update public.campaign_recipients r
    set status = 'failed', locked_until = null,
        error = 'gave up after 8 attempts that ended without an outcome'
    from picked k
    where k.id = r.id and k.verdict = 'give_up'
  ),
  claimed as (
    update public.campaign_recipients r
    set status = 'sending', attempts = r.attempts + 1,
        locked_until = now() + make_interval(secs => p_lease_seconds),
        -- Due again when the lease runs out, so the due index alone says when.
        next_attempt_at = now() + make_interval(secs => p_lease_seconds)
    from picked k
    where k.id = r.id and k.verdict = 'send'
    returning r.*
  )
  select cl.id, cl.campaign_id, cl.workspace_id, cl.contact_id, cl.email, cl.attempts,
         v.subject, v.html, v.text, c.from_name, c.from_email, c.reply_to,
         jsonb_build_object('email', ct.email, 'first_name', ct.first_name,
                            'last_name', ct.last_name, 'phone', ct.phone,
                            'attributes', ct.attributes)
           || case when cl.merge_data is not null then jsonb_build_object('event', cl.merge_data) else '{}'::jsonb end,
         extract(epoch from v_start - v_now)::double precision
           + (row_number() over (order by cl.next_attempt_at, cl.id) - 1) / v_rate
  from claimed cl
  join public.campaign_variants v on v.id = cl.variant_id
  join public.campaigns c on c.id = cl.campaign_id
  join public.contacts ct on ct.id = cl.contact_id;
  get diagnostics v_claimed = row_count;
  update private.ses_accounts a
  set next_slot_at = v_start + make_interval(secs => v_claimed / v_rate),
      claimed_since_check = a.claimed_since_check + v_claimed,
      updated_at = now()
  where a.account = p_account;
end
$$;

revoke all on function private.claim_email_batch(integer, integer, double precision, text) from public, anon, authenticated;

grant execute on function private.claim_email_batch(integer, integer, double precision, text) to service_role;

-- The ready-made flows take their priority (as in 20261212094000_flow_metrics.sql otherwise).
create or replace function public.copy_flow_template(
  p_workspace_id uuid, p_template_key text, p_sender_identity_id uuid, p_from_email text
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_template public.flow_templates;
  v_flow_id uuid;
  v_templates jsonb := '{}'::jsonb;
  v_email record;
  v_id uuid;
  v_steps jsonb;
begin
  if p_workspace_id is null or p_workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  if p_workspace_id not in (select private.user_workspace_ids_at_least('member')) then
    perform private.fail(403, 'insufficient_role', 'Viewers cannot create flows');
  end if;
  select * into v_template from public.flow_templates t where t.key = p_template_key;
  if v_template.key is null then
    perform private.fail(404, 'flow_template_not_found', 'No ready-made flow has this key');
  end if;
  insert into public.flows (workspace_id, name, trigger_type, trigger_config, entry_policy, reentry_days,
                            entry_key, exit_events, created_by, send_priority)
  values (p_workspace_id, v_template.name, v_template.trigger_type, v_template.trigger_config,
          v_template.entry_policy, v_template.reentry_days, v_template.entry_key, v_template.exit_events, auth.uid(),
          case v_template.key when 'abandoned_cart' then 'cart' when 'welcome_series' then 'welcome'
                              when 'win_back' then 'win_back' else 'other' end)
  returning id into v_flow_id;
  for v_email in select e.key, e.value from jsonb_each(v_template.emails) as e loop
    insert into public.email_templates (workspace_id, name, subject, html, created_by)
    values (p_workspace_id, left(format('%s: %s (%s)', v_template.name, v_email.key, left(v_flow_id::text, 8)), 200),
            v_email.value ->> 'subject', v_email.value ->> 'html', auth.uid())
    returning id into v_id;
    v_templates := v_templates || jsonb_build_object(v_email.key, v_id);
  end loop;
  select jsonb_agg(
           case when s ->> 'kind' = 'send_email'
                then (s - 'email') || jsonb_build_object('config', coalesce(s -> 'config', '{}'::jsonb) || jsonb_build_object(
                       'template_id', v_templates ->> (s ->> 'email'),
                       'sender_identity_id', p_sender_identity_id,
                       'from_email', p_from_email))
                else s end
           order by n)
  into v_steps
  from jsonb_array_elements(v_template.steps) with ordinality as a(s, n);
  perform public.save_flow(v_flow_id, v_steps);
  return v_flow_id;
end
$$;

comment on function public.copy_flow_template(uuid, text, uuid, text) is
  'Copies a ready-made flow into the workspace as a draft (members and above), its emails as templates, sent from the given sender, with its send priority.';

revoke all on function public.copy_flow_template(uuid, text, uuid, text) from public, anon;

grant execute on function public.copy_flow_template(uuid, text, uuid, text) to authenticated, service_role;

grant insert (send_priority), update (send_priority) on public.flows to authenticated;

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values ('public', 'flows', 'send_priority', 'none', 'not_personal', null);
