-- Flow metrics, ready-made flows and test mode.
--
-- Metrics: analytics.flow_step_stats() (security definer: only the workspaces the caller may
-- see, or all for a growthbase_analyst session) answers per step of every version: runs that
-- reached it, the outcome counts (reason codes), runs waiting there now, and for send steps the
-- campaign metrics of the step's campaign (sent, delivered, opens, clicks, attributed orders and
-- revenue: last click within the flow's attribution window, as for campaigns). The views
-- analytics.flow_step_performance and analytics.flow_performance (per flow, with the counts kept
-- on write in public.flow_stats) sit on top.
--
-- Ready-made flows: public.flow_templates holds three (welcome series, abandoned cart, win-back);
-- public.copy_flow_template makes a draft of one in a workspace, with its emails as templates.
--
-- Test mode: public.test_flow walks a contact through a flow's current version (a draft too)
-- with time skipped and nothing changed: each step, the branch it takes and why, and the email it
-- would send.

-- metrics ----------------------------------------------------------------------------------------

create function analytics.flow_step_stats()
returns table (
  workspace_id uuid, flow_id uuid, flow_name text, flow_status text, version integer,
  step_id uuid, step_key text, kind text, reached bigint, outcomes jsonb, waiting bigint,
  sent bigint, delivered bigint, unique_opens bigint, unique_clicks bigint, bounced bigint,
  unsubscribed bigint, attributed_orders bigint, attributed_revenue numeric(14, 2), currency text
)
language sql
stable
security definer
set search_path = ''
as $$
  with visible as (
    select w.id from public.workspaces w
    where private.analytics_sees_all() or w.id in (select private.user_workspace_ids())
  ),
  history as (
    select h.step_id, sum(h.n)::bigint as reached, jsonb_object_agg(h.outcome, h.n) as outcomes
    from (
      select x.step_id, x.outcome, count(*) as n
      from public.flow_run_steps x
      where x.workspace_id in (select id from visible) and x.step_id is not null
      group by x.step_id, x.outcome
    ) as h
    group by h.step_id
  ),
  waiting as (
    select r.step_id, count(*) as n
    from public.flow_runs r
    where r.workspace_id in (select id from visible) and r.status = 'active'
    group by r.step_id
  )
  select s.workspace_id, s.flow_id, f.name, f.status, s.version, s.id, s.key, s.kind,
         coalesce(h.reached, 0), coalesce(h.outcomes, '{}'::jsonb), coalesce(w.n, 0),
         v.sent, v.delivered, v.unique_opens, v.unique_clicks, v.bounced, v.unsubscribed,
         v.attributed_orders, v.attributed_revenue, v.currency
  from public.flow_steps s
  join public.flows f on f.id = s.flow_id
  left join history h on h.step_id = s.id
  left join waiting w on w.step_id = s.id
  left join analytics.campaign_variant_stats() v on v.variant_id = s.variant_id
  where s.workspace_id in (select id from visible)
$$;

comment on function analytics.flow_step_stats() is
  'Per step of every flow version the caller may see: runs reached, outcome counts, runs waiting, and the step''s email metrics and attributed revenue.';

create view analytics.flow_step_performance with (security_invoker = true) as
  select s.workspace_id, s.flow_id, s.flow_name, s.flow_status, s.version, s.step_id, s.step_key,
         s.kind, s.reached, s.outcomes, s.waiting, s.sent, s.delivered, s.unique_opens,
         s.unique_clicks, s.bounced, s.unsubscribed,
         round(s.unique_opens::numeric / nullif(s.delivered, 0), 4) as open_rate,
         round(s.unique_clicks::numeric / nullif(s.delivered, 0), 4) as click_rate,
         s.attributed_orders, s.attributed_revenue, s.currency
  from analytics.flow_step_stats() s;

comment on view analytics.flow_step_performance is
  'Per flow step and version: reached, outcomes by reason code, waiting, emails sent, delivered, opened, clicked, and attributed orders and revenue.';

-- Per flow the caller may see: its settings and the counts kept on write.
create function analytics.flow_totals()
returns table (
  workspace_id uuid, flow_id uuid, flow_name text, status text, version integer, trigger_type text,
  entered bigint, waiting bigint, completed bigint, exited bigint, converted bigint
)
language sql
stable
security definer
set search_path = ''
as $$
  select f.workspace_id, f.id, f.name, f.status, f.version, f.trigger_type,
         st.entered, st.active, st.completed, st.exited, st.converted
  from public.flows f
  join public.flow_stats st on st.flow_id = f.id
  where private.analytics_sees_all() or f.workspace_id in (select private.user_workspace_ids())
$$;

comment on function analytics.flow_totals() is
  'Per flow the caller may see: entered, waiting, completed, exited and converted runs (kept on write).';

create view analytics.flow_performance with (security_invoker = true) as
  with steps as (
    select s.flow_id, sum(s.sent)::bigint as sent, sum(s.delivered)::bigint as delivered,
           sum(s.unique_opens)::bigint as unique_opens, sum(s.unique_clicks)::bigint as unique_clicks,
           sum(s.attributed_orders)::bigint as attributed_orders,
           sum(s.attributed_revenue)::numeric(14, 2) as attributed_revenue, max(s.currency) as currency
    from analytics.flow_step_stats() s
    group by s.flow_id
  )
  select t.workspace_id, t.flow_id, t.flow_name, t.status, t.version, t.trigger_type,
         t.entered, t.waiting, t.completed, t.exited, t.converted,
         round(t.converted::numeric / nullif(t.entered, 0), 4) as goal_rate,
         coalesce(s.sent, 0) as sent, coalesce(s.delivered, 0) as delivered,
         coalesce(s.unique_opens, 0) as unique_opens, coalesce(s.unique_clicks, 0) as unique_clicks,
         round(s.unique_opens::numeric / nullif(s.delivered, 0), 4) as open_rate,
         round(s.unique_clicks::numeric / nullif(s.delivered, 0), 4) as click_rate,
         coalesce(s.attributed_orders, 0) as attributed_orders,
         coalesce(s.attributed_revenue, 0) as attributed_revenue, s.currency
  from analytics.flow_totals() t
  left join steps s on s.flow_id = t.flow_id;

comment on view analytics.flow_performance is
  'Per flow: entered, waiting, completed, exited, converted (goal), emails and attributed revenue.';

-- ready-made flows -------------------------------------------------------------------------------

create table public.flow_templates (
  key text primary key check (key ~ '^[a-z_]{1,50}$'),
  name text not null,
  description text not null,
  trigger_type text not null,
  trigger_config jsonb not null default '{}'::jsonb,
  entry_policy text not null,
  reentry_days integer,
  entry_key text not null,
  exit_events jsonb not null default '[]'::jsonb,
  -- Emails by name: {"<name>": {"subject", "html"}}; steps name them as "email": "<name>".
  emails jsonb not null,
  steps jsonb not null
);

comment on table public.flow_templates is
  'Ready-made flows a workspace can copy (public.copy_flow_template): welcome series, abandoned cart, win-back.';

insert into public.flow_templates (key, name, description, trigger_type, trigger_config, entry_policy,
                                   reentry_days, entry_key, exit_events, emails, steps)
values
  ('welcome_series', 'Welcome series',
   'A welcome at once, and a second email two days later to those who have not ordered yet.',
   'contact_created', '{}', 'once', null, 'contact', '[]',
   '{"welcome": {"subject": "Welcome, {{ first_name | default(\"friend\") }}", "html": "<p>Hi {{ first_name | default(\"there\") }}, thanks for joining us.</p>"},
     "nudge": {"subject": "Something to start with", "html": "<p>Hi {{ first_name | default(\"there\") }}, here is what our customers love most.</p>"}}',
   '[{"key": "welcome", "kind": "send_email", "email": "welcome", "next": "two_days"},
     {"key": "two_days", "kind": "wait", "config": {"days": 2}, "next": "ordered"},
     {"key": "ordered", "kind": "branch", "config": {"event": {"type": "order_placed"}}, "next": "done", "alt": "nudge"},
     {"key": "nudge", "kind": "send_email", "email": "nudge"},
     {"key": "done", "kind": "exit"}]'),
  ('abandoned_cart', 'Abandoned cart',
   'A reminder an hour after a checkout without an order (dropped when more than 12 hours late), and another a day later; an order ends it.',
   'checkout_started', '{}', 'every_time', null, 'event', '[{"type": "order_placed"}]',
   '{"cart_1h": {"subject": "You left something in your cart", "html": "<p>Hi {{ first_name | default(\"there\") }}, your cart is waiting for you:</p><ul>{% for item in event[\"items\"] %}<li>{{ item.quantity }} × {{ item.name }}</li>{% endfor %}</ul>{% if event.url %}<p><a href=\"{{ event.url }}\">Back to your cart</a></p>{% endif %}"},
     "cart_24h": {"subject": "Still thinking it over?", "html": "<p>Hi {{ first_name | default(\"there\") }}, your cart is still saved.</p>"}}',
   '[{"key": "hour", "kind": "wait", "config": {"hours": 1}, "next": "cart_1h"},
     {"key": "cart_1h", "kind": "send_email", "email": "cart_1h", "config": {"max_lateness_minutes": 720}, "next": "day"},
     {"key": "day", "kind": "wait", "config": {"hours": 23}, "next": "cart_24h"},
     {"key": "cart_24h", "kind": "send_email", "email": "cart_24h", "config": {"max_lateness_minutes": 1440}}]'),
  ('win_back', 'Win-back',
   'When a good customer drifts into At Risk or Can''t Lose Them: an email at 10:00 their time, a reminder a week later unless they ordered.',
   'rfm_segment_changed', '{"to": ["At Risk", "Can''t Lose Them"]}', 'once_per_period', 90, 'contact',
   '[{"type": "order_placed"}]',
   '{"miss_you": {"subject": "We miss you, {{ first_name | default(\"friend\") }}", "html": "<p>It has been a while. Here is what is new.</p>"},
     "last_call": {"subject": "A little thank-you", "html": "<p>A little something for coming back.</p>"}}',
   '[{"key": "morning", "kind": "wait", "config": {"minutes": 1, "at": "10:00"}, "next": "miss_you"},
     {"key": "miss_you", "kind": "send_email", "email": "miss_you", "next": "week"},
     {"key": "week", "kind": "wait", "config": {"days": 7}, "next": "last_call"},
     {"key": "last_call", "kind": "send_email", "email": "last_call"}]');

-- Makes a draft of a ready-made flow in a workspace (members and above): its emails become the
-- workspace's templates and its send steps use the given sender and from address. Answers the
-- new flow's id.
create function public.copy_flow_template(
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
                            entry_key, exit_events, created_by)
  values (p_workspace_id, v_template.name, v_template.trigger_type, v_template.trigger_config,
          v_template.entry_policy, v_template.reentry_days, v_template.entry_key, v_template.exit_events, auth.uid())
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
  'Copies a ready-made flow into the workspace as a draft (members and above), its emails as templates, sent from the given sender.';

-- test mode --------------------------------------------------------------------------------------

-- Walks the contact through the flow's current version with time skipped and changes nothing:
-- [{"step", "kind", "outcome", "detail"?, "email"?}], at most 50 steps (a loop through waits is
-- followed that far). wait_for takes its timeout path unless p_events lists the awaited event
-- (by type, or name for custom events); branches on an event likewise. Members and above.
create function public.test_flow(p_flow_id uuid, p_contact_id uuid, p_events text[] default '{}')
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
        else 'queued' end;
      v_detail := (select jsonb_build_object('template_id', t.id, 'subject', t.subject, 'html', t.html, 'text', t.text,
                                            'from_email', v_step.config ->> 'from_email', 'to', v_contact.email)
                   from public.email_templates t where t.id = v_step.template_id);
    elsif v_step.kind = 'update_contact' then
      v_outcome := 'updated';
      v_detail := v_step.config;
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
  'Test mode (members and above): walks a contact through a flow''s current version with time skipped and nothing changed, showing each step and the email it would send.';

-- Why a contact did (not) get a step: their runs in the flow with every step's reason code.
create function public.flow_contact_history(p_flow_id uuid, p_contact_id uuid)
returns table (run_id uuid, version integer, run_status text, entered_at timestamptz, exit_reason text,
               seq integer, step_key text, kind text, outcome text, detail jsonb, at timestamptz)
language sql
stable
security invoker
set search_path = ''
as $$
  select r.id, r.version, r.status, r.entered_at, r.exit_reason, h.seq, s.key, h.kind, h.outcome, h.detail, h.at
  from public.flow_runs r
  left join public.flow_run_steps h on h.run_id = r.id
  left join public.flow_steps s on s.id = h.step_id
  where r.flow_id = p_flow_id and r.contact_id = p_contact_id
  order by r.entered_at, h.seq
$$;

comment on function public.flow_contact_history(uuid, uuid) is
  'Why a contact did or did not get a step: each of their runs in the flow and every step''s outcome with its reason code (read under RLS).';

-- grants -----------------------------------------------------------------------------------------

revoke all on function analytics.flow_step_stats() from public, anon;

revoke all on function analytics.flow_totals() from public, anon;

grant execute on function analytics.flow_totals() to authenticated, growthbase_analyst, service_role;

grant execute on function analytics.flow_step_stats() to authenticated, growthbase_analyst, service_role;

revoke all on analytics.flow_step_performance, analytics.flow_performance from public, anon;

grant select on analytics.flow_step_performance, analytics.flow_performance to authenticated, growthbase_analyst, service_role;

revoke all on public.flow_templates from public, anon, authenticated;

grant select on public.flow_templates to authenticated;

grant all on public.flow_templates to service_role;

revoke all on function public.copy_flow_template(uuid, text, uuid, text) from public, anon;

grant execute on function public.copy_flow_template(uuid, text, uuid, text) to authenticated, service_role;

revoke all on function public.test_flow(uuid, uuid, text[]) from public, anon;

grant execute on function public.test_flow(uuid, uuid, text[]) to authenticated, service_role;

revoke all on function public.flow_contact_history(uuid, uuid) from public, anon;

grant execute on function public.flow_contact_history(uuid, uuid) to authenticated, service_role;

-- RLS --------------------------------------------------------------------------------------------

alter table public.flow_templates enable row level security;

-- Any signed-in user may read the ready-made flows (they belong to no workspace).
create policy flow_templates_select_signed_in on public.flow_templates
  for select to authenticated
  using (true);

-- the register of personal data -------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values
  ('public', 'flow_templates', 'key', 'none', 'not_personal', null),
  ('public', 'flow_templates', 'name', 'none', 'not_personal', null),
  ('public', 'flow_templates', 'description', 'none', 'not_personal', null),
  ('public', 'flow_templates', 'trigger_type', 'none', 'not_personal', null),
  ('public', 'flow_templates', 'trigger_config', 'none', 'not_personal', null),
  ('public', 'flow_templates', 'entry_policy', 'none', 'not_personal', null),
  ('public', 'flow_templates', 'entry_key', 'none', 'not_personal', null),
  ('public', 'flow_templates', 'exit_events', 'none', 'not_personal', null),
  ('public', 'flow_templates', 'emails', 'none', 'not_personal', null),
  ('public', 'flow_templates', 'steps', 'none', 'not_personal', null);
