-- A cold-email sequence in one thread (issue 16, "Replies and sequences"): a send_email step with
-- `in_thread: true` mails as a reply in the thread of the contact's first email of the same run,
-- so the follow-ups of a sequence land under the first mail in the contact's mailbox, and a reply
-- to any of them is matched by the inbox as before (its SES id in In-Reply-To/References, from
-- that recipient's address; the latest such mail wins, so a reply to a follow-up is the
-- follow-up's).
--
-- The parent is found when the follow-up is sent, not when it is queued (the first mail may go
-- out late): private.email_thread_parents, called once per send round by private.send_round,
-- answers for each claimed row of an in-thread step the SES message id and the variant subject
-- of the earliest mail of its run that SES accepted (status sent, with an SES id), to the same
-- address, and that neither bounced nor was rejected. The worker makes the parent's Message-ID
-- from the SES id (SES replaces any Message-ID we set with its own, `<id>@email.amazonses.com` in
-- us-east-1, `<id>@<region>.amazonses.com` elsewhere), adds In-Reply-To and References, and
-- sends with the subject `Re: <the parent's subject>` rendered for the contact as it was for the
-- first mail (the rendered subject is not stored). No parent yet, or a failed or bounced one:
-- the follow-up goes as a plain mail, never held.

-- As in 20261222093000_flow_send_variants.sql, and: `in_thread` is a boolean.
create or replace function private.validate_flow_step_send_email(p_check private.flow_step_check)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_uuid text := '^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$';
begin
  if coalesce(p_check.config ->> 'template_id', '') !~ v_uuid or not exists (
       select 1 from public.email_templates t
       where t.id = (p_check.config ->> 'template_id')::uuid and t.workspace_id = p_check.workspace_id) then
    perform private.fail(422, 'invalid_reference', format('Step %s: template not found in this workspace', p_check.key));
  end if;
  if coalesce(p_check.config ->> 'sender_identity_id', '') !~ v_uuid or not exists (
       select 1 from public.sender_identities s
       where s.id = (p_check.config ->> 'sender_identity_id')::uuid and s.workspace_id = p_check.workspace_id) then
    perform private.fail(422, 'invalid_reference', format('Step %s: sender identity not found in this workspace', p_check.key));
  end if;
  if jsonb_typeof(p_check.config -> 'from_email') is distinct from 'string'
     or (p_check.config ->> 'from_email') !~ '^[^@\s]+@[^@\s]+$' or char_length(p_check.config ->> 'from_email') > 320 then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: from_email is required', p_check.key));
  end if;
  if (p_check.config ? 'from_name' and (jsonb_typeof(p_check.config -> 'from_name') <> 'string'
        or char_length(p_check.config ->> 'from_name') > 200 or (p_check.config ->> 'from_name') ~ '[\r\n]'))
     or (p_check.config ? 'reply_to' and (jsonb_typeof(p_check.config -> 'reply_to') <> 'string'
        or (p_check.config ->> 'reply_to') !~ '^[^@\s]+@[^@\s]+$')) then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: from_name or reply_to is malformed', p_check.key));
  end if;
  if p_check.config ? 'max_lateness_minutes' and (jsonb_typeof(p_check.config -> 'max_lateness_minutes') <> 'number'
       or (p_check.config ->> 'max_lateness_minutes')::numeric not between 1 and 525600) then
    perform private.fail(422, 'invalid_flow_step', format('Step %s: max_lateness_minutes is from 1 to 525600', p_check.key));
  end if;
  if p_check.config ? 'in_thread' and jsonb_typeof(p_check.config -> 'in_thread') <> 'boolean' then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: in_thread is true or false (true: a reply in the thread of the contact''s first email of the run)', p_check.key));
  end if;
  if p_check.config ? 'variants' and (jsonb_typeof(p_check.config -> 'variants') <> 'array'
       or jsonb_array_length(p_check.config -> 'variants') not between 1 and 3
       or exists (select 1 from jsonb_array_elements(p_check.config -> 'variants') v
                  where jsonb_typeof(v) <> 'object'
                     or exists (select 1 from jsonb_object_keys(v) k where k <> 'template_id'))) then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: variants is a list of 1 to 3 {"template_id"} (the step''s own template is variant A)', p_check.key));
  end if;
  if exists (select 1 from jsonb_array_elements(case when jsonb_typeof(p_check.config -> 'variants') = 'array'
                                                     then p_check.config -> 'variants' else '[]'::jsonb end) v
             where coalesce(v ->> 'template_id', '') !~ v_uuid or not exists (
               select 1 from public.email_templates t
               where t.id = (v ->> 'template_id')::uuid and t.workspace_id = p_check.workspace_id)) then
    perform private.fail(422, 'invalid_reference', format('Step %s: a variant''s template was not found in this workspace', p_check.key));
  end if;
  if p_check.config ? 'winner' and (not p_check.config ? 'variants' or jsonb_typeof(p_check.config -> 'winner') <> 'object'
       or exists (select 1 from jsonb_object_keys(p_check.config -> 'winner') k where k not in ('metric', 'min_sample', 'window_hours'))
       or coalesce(p_check.config -> 'winner' ->> 'metric', 'clicks') not in ('clicks', 'revenue')
       or (p_check.config -> 'winner' ? 'min_sample' and (jsonb_typeof(p_check.config -> 'winner' -> 'min_sample') <> 'number'
             or (p_check.config -> 'winner' ->> 'min_sample')::numeric not between 10 and 100000
             or (p_check.config -> 'winner' ->> 'min_sample')::numeric <> trunc((p_check.config -> 'winner' ->> 'min_sample')::numeric)))
       or (p_check.config -> 'winner' ? 'window_hours' and (jsonb_typeof(p_check.config -> 'winner' -> 'window_hours') <> 'number'
             or (p_check.config -> 'winner' ->> 'window_hours')::numeric not between 1 and 720
             or (p_check.config -> 'winner' ->> 'window_hours')::numeric <> trunc((p_check.config -> 'winner' ->> 'window_hours')::numeric)))) then
    perform private.fail(422, 'invalid_flow_step', format(
      'Step %s: winner (with variants only) is {"metric": "clicks" or "revenue", "min_sample": 10 to 100000, "window_hours": 1 to 720}', p_check.key));
  end if;
end
$$;

revoke all on function private.validate_flow_step_send_email(private.flow_step_check) from public, anon, authenticated;

-- the thread parent, once per send round ---------------------------------------------------------

-- For the claimed rows (p_recipients, each with its campaign in p_campaigns, same order): those
-- of in-thread send steps that have a parent, as {recipient_id: [parent SES message id, parent
-- variant subject]}; null when none has. The campaigns are asked first, once each: a round
-- without an in-thread step reads no row of the ledger, and one with them reads only theirs.
-- The parent is the earliest mail of an earlier step of the same run (the run's history, by
-- (run_id, seq)) that SES accepted (sent, with an SES id), went to the address this one goes to,
-- and did not bounce and was not rejected.
create function private.email_thread_parents(p_recipients uuid[], p_campaigns uuid[])
returns json
language plpgsql
stable
security definer
set search_path = ''
set jit = off
as $$
declare
  v_threaded uuid[];
  v_parents json;
begin
  select array_agg(c.id) into v_threaded
  from public.campaigns c
  join public.flow_steps s on s.id = c.flow_step_id
  where c.id = any (p_campaigns) and s.config -> 'in_thread' = 'true'::jsonb;
  if v_threaded is null then
    return null;
  end if;
  select json_object_agg(x.recipient_id, json_build_array(p.ses_message_id, v.subject))
  into v_parents
  from unnest(p_recipients, p_campaigns) as x(recipient_id, campaign_id)
  join public.campaign_recipients r on r.id = x.recipient_id
  join public.flow_run_steps h on h.id = r.flow_run_step_id
  cross join lateral (
    select q.ses_message_id, q.variant_id
    from public.flow_run_steps e
    join public.campaign_recipients q on q.flow_run_step_id = e.id
    where e.run_id = h.run_id and e.seq < h.seq and e.kind = 'send_email' and e.outcome = 'queued'
      and q.status = 'sent' and q.ses_message_id is not null and q.email = r.email
      and q.bounced_at is null and q.rejected_at is null
    order by q.sent_at, q.id
    limit 1
  ) as p
  join public.campaign_variants v on v.id = p.variant_id
  where x.campaign_id = any (v_threaded);
  return v_parents;
end
$$;

revoke all on function private.email_thread_parents(uuid[], uuid[]) from public, anon, authenticated;

grant execute on function private.email_thread_parents(uuid[], uuid[]) to service_role;

-- the round answers the parents ----------------------------------------------------------------

-- As in 20270105090000_send_round.sql, and: the answer's "threads" (three lines: the
-- variable, the call in the select over the claimed rows, the key in the answer).
-- One round of a send worker: forgets the tenants SES answered it no longer has (p_gone_tenants:
-- the next send makes them again), records the outcomes (private.record_email_outcomes), and
-- claims up to p_limit rows (private.claim_email_rows; none when p_limit is 0). Answers
--   {"counts": {"sent", "retrying", "failed", "cancelled"},
--    "rows": [[recipient_id, campaign_id, variant_id, contact_id, email, attempts, contact, send_in], ...],
--    "variants": {variant_id: [subject, html, text]},
--    "campaigns": {campaign_id: {"workspace_id", "from_name", "from_email", "reply_to",
--                                "reply_domains": [...], "tenant": {...} or null}},
--    "wait": seconds or null, "threads": {recipient_id: [ses_message_id, subject]} or null}
-- where "tenant" (only when p_tenants) is what private.send_tenants knows of the campaign's
-- tenant, and "wait", when fewer rows than asked were claimed, is private.email_send_wait's
-- answer (null: nothing is left to send; not asked otherwise), and "threads" is
-- private.email_thread_parents' answer for the claimed rows (in-thread flow steps' parents).
create or replace function private.send_round(
  p_outcomes jsonb, p_limit integer, p_lease_seconds integer, p_per_second double precision,
  p_account text, p_tenants boolean, p_gone_tenants text[]
)
returns json
language plpgsql
security definer
set search_path = ''
set jit = off
as $$
declare
  v_counts jsonb;
  v_rows json;
  v_variants json;
  v_campaigns json;
  v_claimed integer;
  v_wait double precision;
  v_threads json;
begin
  if cardinality(p_gone_tenants) > 0 then
    delete from private.ses_tenants t where t.account = p_account and t.tenant_name = any (p_gone_tenants);
  end if;
  v_counts := private.record_email_outcomes(coalesce(p_outcomes, '[]'::jsonb), p_account);
  if coalesce(p_limit, 0) <= 0 then
    return json_build_object('counts', v_counts, 'rows', '[]'::json, 'variants', '{}'::json,
                             'campaigns', '{}'::json, 'wait', null);
  end if;
  -- Built as json (text), not jsonb: the answer is only ever sent out.
  with claimed as materialized (
    select * from private.claim_email_rows(p_limit, p_lease_seconds, p_per_second, p_account)
  ),
  sending as (
    select distinct k.campaign_id, k.workspace_id from claimed k
  ),
  domains as (
    select d.workspace_id, json_agg(d.domain) as domains
    from private.inbox_reply_domains(array(select distinct s.workspace_id from sending s)) d
    group by d.workspace_id
  ),
  tenants as (
    select t.campaign_id, to_json(t) as tenant
    from private.send_tenants(p_account, array(select s.campaign_id from sending s)) t
    where p_tenants
  )
  select (select json_agg(json_build_array(k.recipient_id, k.campaign_id, k.variant_id, k.contact_id,
                                           k.email, k.attempts, k.contact, k.send_in))
          from claimed k),
         (select json_object_agg(v.id, json_build_array(v.subject, v.html, v.text))
          from public.campaign_variants v
          where v.id in (select k.variant_id from claimed k)),
         (select json_object_agg(c.id, json_build_object(
                   'workspace_id', c.workspace_id, 'from_name', c.from_name,
                   'from_email', c.from_email, 'reply_to', c.reply_to,
                   'reply_domains', coalesce(d.domains, '[]'::json), 'tenant', t.tenant))
          from public.campaigns c
          left join domains d on d.workspace_id = c.workspace_id
          left join tenants t on t.campaign_id = c.id
          where c.id in (select s.campaign_id from sending s)),
         (select count(*) from claimed),
         (select private.email_thread_parents(array_agg(k.recipient_id), array_agg(k.campaign_id))
          from claimed k)
  into v_rows, v_variants, v_campaigns, v_claimed, v_threads;
  if v_claimed < p_limit then
    v_wait := private.email_send_wait(p_per_second, p_account);
  end if;
  return json_build_object('counts', v_counts, 'rows', coalesce(v_rows, '[]'::json),
                           'variants', coalesce(v_variants, '{}'::json),
                           'campaigns', coalesce(v_campaigns, '{}'::json), 'wait', v_wait,
                           'threads', v_threads);
end
$$;

revoke all on function private.send_round(jsonb, integer, integer, double precision, text, boolean, text[]) from public, anon, authenticated;

grant execute on function private.send_round(jsonb, integer, integer, double precision, text, boolean, text[]) to service_role;
