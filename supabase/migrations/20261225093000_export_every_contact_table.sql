-- The access request missed most of what the inbox, flows and commerce events hold about a
-- person: their inbox identities, conversations, messages (with earlier revisions and the
-- conversation's history), channel opt-outs, abandoned checkouts, custom events, customer facts,
-- flow runs and their steps, suppressions of their address, the team's notifications about
-- them and segments whose rule names them. It also found a stored webhook only by project
-- prefix or SES message id: now every payload attributed to the workspace (an inbox channel's,
-- or one matched to it when applied: 20261225090000_webhook_payload_attribution.sql) that
-- names the person, their inbox identities included. Every earlier table stays as it was.
-- tests/privacy/test_export_coverage.py fails when a table the privacy register marks as
-- holding a contact's data is neither exported nor listed there with its reason.

-- Every row about the export's contact, per table, as JSON objects; only its own workspace's
-- rows (every query is bound to the export's workspace, or to rows that name the person).
create or replace function private.contact_export_data(p_export_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_export public.contact_exports;
  v_ids uuid[];
  v_needles text[];
  v_keys text[];
  v_project_ids uuid[];
  v_identity_ids uuid[];
  v_conversation_ids uuid[];
  v_message_ids uuid[];
  v_run_ids uuid[];
  v_email text;
begin
  select * into v_export from public.contact_exports e where e.id = p_export_id;
  if v_export.id is null then
    perform private.fail(404, 'export_not_found', 'Export not found');
  end if;
  v_ids := array[v_export.contact_id];
  v_needles := array(select n from unnest(private.contact_needles(v_export.workspace_id, v_ids)) as n
                     where char_length(n) >= 5);
  -- The contact's tokens and its inbox identities' (a WhatsApp number, a Telegram or X id).
  v_keys := private.identifier_keys(
    private.contact_tokens(v_export.workspace_id, v_ids)
    || array(select case when i.kind = 'email' then i.address else ltrim(i.address, '-') end
             from public.contact_identities i
             where i.contact_id = v_export.contact_id and i.workspace_id = v_export.workspace_id));
  select coalesce(array_agg(i.id), '{}') into v_identity_ids
  from public.contact_identities i
  where i.contact_id = v_export.contact_id and i.workspace_id = v_export.workspace_id;
  select coalesce(array_agg(c.id), '{}') into v_conversation_ids
  from public.conversations c
  where c.identity_id = any (v_identity_ids) and c.workspace_id = v_export.workspace_id;
  select coalesce(array_agg(m.id), '{}') into v_message_ids
  from public.messages m
  where m.conversation_id = any (v_conversation_ids) and m.workspace_id = v_export.workspace_id;
  select coalesce(array_agg(r.id), '{}') into v_run_ids
  from public.flow_runs r
  where r.contact_id = v_export.contact_id and r.workspace_id = v_export.workspace_id;
  select lower(c.email) into v_email from public.contacts c
  where c.id = v_export.contact_id and c.workspace_id = v_export.workspace_id;
  select coalesce(array_agg(p.id), '{}') into v_project_ids
  from public.projects p where p.workspace_id = v_export.workspace_id;
  return jsonb_build_object(
    'contacts', coalesce((select jsonb_agg(to_jsonb(c)) from public.contacts c
                          where c.id = v_export.contact_id and c.workspace_id = v_export.workspace_id), '[]'),
    'contact_external_ids', coalesce((select jsonb_agg(to_jsonb(x)) from public.contact_external_ids x
                                      where x.contact_id = v_export.contact_id and x.workspace_id = v_export.workspace_id), '[]'),
    'consents', coalesce((select jsonb_agg(to_jsonb(c) order by c.created_at) from public.consents c
                          where c.contact_id = v_export.contact_id and c.workspace_id = v_export.workspace_id), '[]'),
    'orders', coalesce((select jsonb_agg(to_jsonb(o) order by o.placed_at) from public.orders o
                        where o.contact_id = v_export.contact_id and o.workspace_id = v_export.workspace_id), '[]'),
    'order_items', coalesce((select jsonb_agg(to_jsonb(i) order by i.id) from public.order_items i
                             join public.orders o on o.id = i.order_id
                             where o.contact_id = v_export.contact_id and o.workspace_id = v_export.workspace_id), '[]'),
    'email_list_members', coalesce((select jsonb_agg(to_jsonb(m) || jsonb_build_object('list_name', l.name))
                                    from public.email_list_members m join public.email_lists l on l.id = m.list_id
                                    where m.contact_id = v_export.contact_id and m.workspace_id = v_export.workspace_id), '[]'),
    'campaign_recipients', coalesce((select jsonb_agg(to_jsonb(r) || jsonb_build_object('campaign_name', c.name))
                                     from public.campaign_recipients r join public.campaigns c on c.id = r.campaign_id
                                     where r.contact_id = v_export.contact_id and r.workspace_id = v_export.workspace_id), '[]'),
    'rfm_snapshots', coalesce((select jsonb_agg(to_jsonb(s) order by s.snapshot_month) from analytics.rfm_snapshots s
                               where s.contact_id = v_export.contact_id and s.workspace_id = v_export.workspace_id), '[]'),
    'automations', coalesce((select jsonb_agg(jsonb_build_object('id', a.id, 'type', a.type, 'status', a.status,
                                                                 'input', a.input, 'result', a.result, 'created_at', a.created_at))
                             from public.automations a
                             where a.workspace_id = v_export.workspace_id and cardinality(v_needles) > 0
                               and exists (select from unnest(v_needles) as n
                                           where strpos(lower(a.input::text || coalesce(a.result::text, '')), lower(n)) > 0)), '[]'),
    'segments', coalesce((select jsonb_agg(jsonb_build_object('id', s.id, 'name', s.name, 'rule', s.rule))
                          from public.segments s
                          where s.workspace_id = v_export.workspace_id and cardinality(v_needles) > 0
                            and exists (select from unnest(v_needles) as n
                                        where strpos(lower(s.rule::text), lower(n)) > 0)), '[]'),
    'contact_identities', coalesce((select jsonb_agg(to_jsonb(i) order by i.created_at) from public.contact_identities i
                                    where i.id = any (v_identity_ids)), '[]'),
    'conversations', coalesce((select jsonb_agg(to_jsonb(c) order by c.created_at) from public.conversations c
                               where c.id = any (v_conversation_ids)), '[]'),
    'messages', coalesce((select jsonb_agg(to_jsonb(m) order by m.created_at) from public.messages m
                          where m.id = any (v_message_ids)), '[]'),
    'message_revisions', coalesce((select jsonb_agg(to_jsonb(r) order by r.replaced_at) from public.message_revisions r
                                   where r.message_id = any (v_message_ids) and r.workspace_id = v_export.workspace_id), '[]'),
    'conversation_events', coalesce((select jsonb_agg(to_jsonb(e) order by e.id) from public.conversation_events e
                                     where e.conversation_id = any (v_conversation_ids)
                                       and e.workspace_id = v_export.workspace_id), '[]'),
    'channel_suppressions', coalesce((select jsonb_agg(to_jsonb(s) order by s.created_at) from public.channel_suppressions s
                                      where s.workspace_id = v_export.workspace_id
                                        and (s.contact_id = v_export.contact_id
                                             or exists (select from public.contact_identities i
                                                        where i.id = any (v_identity_ids)
                                                          and i.kind = s.kind and i.address = s.address))), '[]'),
    'email_suppressions', coalesce((select jsonb_agg(to_jsonb(s)) from public.email_suppressions s
                                    where s.workspace_id = v_export.workspace_id and lower(s.email) = v_email), '[]'),
    'checkouts', coalesce((select jsonb_agg(to_jsonb(c) order by c.started_at) from public.checkouts c
                           where c.contact_id = v_export.contact_id and c.workspace_id = v_export.workspace_id), '[]'),
    'contact_events', coalesce((select jsonb_agg(to_jsonb(e) order by e.occurred_at, e.id) from public.contact_events e
                                where e.contact_id = v_export.contact_id and e.workspace_id = v_export.workspace_id), '[]'),
    'customer_facts', coalesce((select jsonb_agg(to_jsonb(f)) from public.customer_facts f
                                where f.contact_id = v_export.contact_id and f.workspace_id = v_export.workspace_id), '[]'),
    'flow_runs', coalesce((select jsonb_agg(to_jsonb(r) order by r.entered_at) from public.flow_runs r
                           where r.id = any (v_run_ids)), '[]'),
    'flow_run_steps', coalesce((select jsonb_agg(to_jsonb(s) order by s.run_id, s.seq, s.id) from public.flow_run_steps s
                                where s.run_id = any (v_run_ids) and s.workspace_id = v_export.workspace_id), '[]'),
    'notifications', coalesce((select jsonb_agg(to_jsonb(n) order by n.created_at) from public.notifications n
                               where n.contact_id = v_export.contact_id and n.workspace_id = v_export.workspace_id), '[]'),
    'ai_calls', coalesce((select jsonb_agg(to_jsonb(a)) from public.ai_calls a
                          where a.workspace_id = v_export.workspace_id and a.pii_redacted is not null and cardinality(v_needles) > 0
                            and exists (select from unnest(v_needles) as n
                                        where strpos(lower(a.pii_redacted::text), lower(n)) > 0)), '[]'),
    -- A stored webhook counts only when it names the person and is this workspace's: one
    -- attributed to it (a shop webhook of one of its projects, stored as `<project id>:<delivery>`,
    -- an inbox channel's, or one matched to it when applied: an SES event, inbound mail, a Make
    -- callback), an SES event about a message it sent them, a Shoptet event about their
    -- Shoptet customer.
    'webhook_events', coalesce((select jsonb_agg(jsonb_build_object('id', e.id, 'provider', e.provider,
                                                                    'received_at', e.received_at, 'body', e.body))
                                from private.webhook_events e
                                where cardinality(v_keys) > 0 and e.identity_keys && v_keys
                                  and (e.workspace_id = v_export.workspace_id
                                       or exists (select from unnest(v_project_ids) as p
                                               where e.event_id like p::text || ':%')
                                       or (e.provider = 'ses' and exists (
                                             select from public.campaign_recipients r
                                             where r.contact_id = v_export.contact_id and r.workspace_id = v_export.workspace_id
                                               and r.ses_message_id is not null and strpos(e.body, r.ses_message_id) > 0))
                                       or (e.provider = 'shoptet' and exists (
                                             select from public.contact_external_ids x
                                             where x.contact_id = v_export.contact_id and x.workspace_id = v_export.workspace_id
                                               and x.source = 'shoptet' and strpos(e.body, x.external_id) > 0)))), '[]')
  );
end
$$;

revoke all on function private.contact_export_data(uuid) from public, anon, authenticated;

grant execute on function private.contact_export_data(uuid) to service_role;
