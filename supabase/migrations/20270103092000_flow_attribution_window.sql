-- A flow's attribution window reaches its emails. flows.attribution_days (issue 15: a goal
-- "counts a conversion (attribution window per flow, 5 days after a click by default)"; the
-- column says "orders this many days after a flow email's click count as the flow's
-- conversions") was never read: each send step's campaign kept the campaigns' default of 5
-- days, and that is what analytics.flow_step_performance and flow_performance (attributed
-- orders and revenue) and the revenue winner of send variants read. Now a step's campaign
-- takes its flow's window when its version goes live, a change of the flow's window changes
-- the campaigns of all its versions (the window is the flow's, not a version's), and the flow
-- campaigns made before take their flow's window here.

-- As in 20261222093000_flow_send_variants.sql, with the flow's attribution window.
create or replace function private.open_flow_campaigns(p_flow_id uuid, p_version integer)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_step record;
  v_variant_id uuid;
  v_more uuid[];
begin
  perform pg_catalog.set_config('growthbase.flow_engine', 'on', true);
  for v_step in
    select s.*, f.name as flow_name, f.status as flow_status, f.attribution_days
    from public.flow_steps s join public.flows f on f.id = s.flow_id
    where s.flow_id = p_flow_id and s.version = p_version and s.kind = 'send_email' and s.campaign_id is null
  loop
    if v_step.template_id is null then
      perform private.fail(422, 'invalid_reference', format('Step %s: its template was deleted', v_step.key));
    end if;
    insert into public.campaigns (workspace_id, name, status, sender_identity_id, from_name, from_email,
                                  reply_to, started_at, flow_step_id, created_by, attribution_days)
    values (v_step.workspace_id, left(format('Flow %s · %s (v%s)', v_step.flow_name, v_step.key, v_step.version), 200),
            case when v_step.flow_status = 'paused' then 'paused' else 'sending' end,
            v_step.sender_identity_id, v_step.config ->> 'from_name', lower(btrim(v_step.config ->> 'from_email')),
            v_step.config ->> 'reply_to', now(), v_step.id, null, v_step.attribution_days)
    returning * into v_campaign;
    perform private.assert_campaign_sender(v_campaign);
    insert into public.campaign_variants (campaign_id, workspace_id, name, subject, html, text)
    select v_campaign.id, t.workspace_id, 'A', t.subject, t.html, t.text
    from public.email_templates t where t.id = v_step.template_id
    returning id into v_variant_id;
    v_more := null;
    if v_step.config ? 'variants' then
      if exists (select 1 from jsonb_array_elements(v_step.config -> 'variants') v
                 where not exists (select 1 from public.email_templates t
                                   where t.id = (v ->> 'template_id')::uuid and t.workspace_id = v_step.workspace_id)) then
        perform private.fail(422, 'invalid_reference', format('Step %s: a variant''s template was deleted', v_step.key));
      end if;
      with made as (
        insert into public.campaign_variants (campaign_id, workspace_id, name, subject, html, text)
        select v_campaign.id, t.workspace_id, chr(65 + n::integer), t.subject, t.html, t.text
        from jsonb_array_elements(v_step.config -> 'variants') with ordinality as v(value, n)
        join public.email_templates t on t.id = (v.value ->> 'template_id')::uuid
        returning id, name
      )
      select array_agg(m.id order by m.name) into v_more from made m;
    end if;
    update public.flow_steps s
    set campaign_id = v_campaign.id, variant_id = v_variant_id,
        variant_ids = case when v_more is not null then array[v_variant_id] || v_more end
    where s.id = v_step.id;
  end loop;
  perform pg_catalog.set_config('growthbase.flow_engine', '', true);
end
$$;

revoke all on function private.open_flow_campaigns(uuid, integer) from public, anon, authenticated;

-- A flow's new window applies to every version's emails.
create function private.sync_flow_attribution_days()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.campaigns c
  set attribution_days = new.attribution_days
  from public.flow_steps s
  where s.flow_id = new.id and c.id = s.campaign_id and c.attribution_days <> new.attribution_days;
  return null;
end
$$;

revoke all on function private.sync_flow_attribution_days() from public, anon, authenticated;

create trigger flows_sync_attribution_days
  after update of attribution_days on public.flows
  for each row when (old.attribution_days is distinct from new.attribution_days)
  execute function private.sync_flow_attribution_days();

update public.campaigns c
set attribution_days = f.attribution_days
from public.flow_steps s
join public.flows f on f.id = s.flow_id
where c.id = s.campaign_id and c.attribution_days <> f.attribution_days;
