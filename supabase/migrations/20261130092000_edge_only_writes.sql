-- Writes only the edge may make leave the Data API. Stored shop credentials must be what the
-- edge encrypted, and an AI call record must name the model the edge is configured to call, so
-- both are written by the service (`private`, service_role only) after the edge has asked the
-- database, as the user, whether the user may act (private.project_workspace_as and
-- private.workspace_role_as). The functions that stay exposed (enqueue_automation,
-- import_order, disconnect_integration) refuse malformed arguments with a 4xx.

-- role check ----------------------------------------------------------------------------------

-- The caller's role in a workspace when it is at least `p_min_role`; 404 for non-members (a
-- workspace's existence is not revealed), 403 for a role too low. Reads only, changes nothing.
create function private.workspace_role_as(p_workspace_id uuid, p_min_role text)
returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_role text;
begin
  perform private.require_valid_role(p_min_role);
  select m.role into v_role
  from public.workspace_members m
  where m.workspace_id = p_workspace_id and m.user_id = v_user;
  if v_role is null then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  if private.role_rank(v_role) < private.role_rank(p_min_role) then
    perform private.fail(403, 'insufficient_role', format('This needs the %s role or higher', p_min_role));
  end if;
  return v_role;
end
$$;

revoke all on function private.workspace_role_as(uuid, text) from public, anon, authenticated;

-- The edge asks it as the user before it acts on a workspace's behalf (AI calls).
grant execute on function private.workspace_role_as(uuid, text) to authenticated;

-- AI calls ------------------------------------------------------------------------------------

drop function public.start_ai_call(uuid, text, text);

-- Starts an AI call the edge has authorised (private.workspace_role_as, as the user, in the
-- same transaction): the plan's rate limits, then the usage row with the configured model and
-- its debit, together or not at all. finish_ai_call refunds a failed call once.
create function private.start_ai_call(
  p_workspace_id uuid, p_user_id uuid, p_feature text, p_model text
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_price integer;
  v_call_id uuid;
begin
  select p.credits into v_price from public.ai_prices p where p.feature = p_feature;
  if v_price is null then
    perform private.fail(422, 'invalid_feature', format('Unknown AI feature %L', p_feature));
  end if;
  perform private.enforce_plan_rate_limits(p_workspace_id, p_user_id, 'ai');
  insert into public.ai_calls (workspace_id, user_id, feature, model, credits_charged)
  values (p_workspace_id, p_user_id, p_feature, p_model, v_price)
  returning id into v_call_id;
  perform private.move_credits(p_workspace_id, -v_price, 'ai_charge', null, v_call_id);
  return v_call_id;
end
$$;

revoke all on function private.start_ai_call(uuid, uuid, text, text) from public, anon, authenticated;

grant execute on function private.start_ai_call(uuid, uuid, text, text) to service_role;

-- shop integrations ---------------------------------------------------------------------------

drop function public.connect_integration(uuid, text, text, text, jsonb);

-- Stores (or replaces) a project's shop credentials, as the edge sealed them; the edge has
-- checked the user is a member of the project's workspace (private.project_workspace_as).
-- A null secret keeps the stored one.
create function private.connect_integration(
  p_project_id uuid, p_source text, p_api_token_encrypted text, p_webhook_secret_encrypted text
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  insert into private.integrations as i
    (project_id, source, workspace_id, api_token_encrypted, webhook_secret_encrypted)
  values (p_project_id, p_source, v_workspace_id, p_api_token_encrypted, p_webhook_secret_encrypted)
  on conflict (project_id, source) do update
  set api_token_encrypted = coalesce(excluded.api_token_encrypted, i.api_token_encrypted),
      webhook_secret_encrypted = coalesce(excluded.webhook_secret_encrypted, i.webhook_secret_encrypted),
      updated_at = now();
end
$$;

revoke all on function private.connect_integration(uuid, text, text, text) from public, anon, authenticated;

grant execute on function private.connect_integration(uuid, text, text, text) to service_role;

-- Members and above remove their project's shop connection; stored credentials and sync
-- progress go with it. Unknown sources are a 422, not a silent no-op.
create or replace function public.disconnect_integration(p_project_id uuid, p_source text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.project_workspace_as(p_project_id, 'member');
  if p_source is null or p_source not in ('shoptet', 'shopify', 'woocommerce') then
    perform private.fail(422, 'invalid_source', 'Source must be shoptet, shopify or woocommerce');
  end if;
  delete from private.integrations i where i.project_id = p_project_id and i.source = p_source;
  return found;
end
$$;

revoke all on function public.disconnect_integration(uuid, text) from public, anon, authenticated;

grant execute on function public.disconnect_integration(uuid, text) to authenticated;

comment on function public.disconnect_integration(uuid, text) is
  'Removes a project''s shop connection (shoptet, shopify or woocommerce) and its stored credentials; members and above of the project''s workspace. Returns whether one existed.';

-- CSV import ----------------------------------------------------------------------------------

-- A member's import of one order into their own project, as source csv: the order must be a
-- JSON object whose customer (if any) is an object and whose items (if any) are an array of
-- objects, so a malformed document is a 422 before anything is written.
create or replace function public.import_order(p_project_id uuid, p_order jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.project_workspace_as(p_project_id, 'member');
  if p_order is null or jsonb_typeof(p_order) <> 'object'
     or jsonb_typeof(coalesce(p_order -> 'customer', '{}'::jsonb)) not in ('object', 'null')
     or jsonb_typeof(coalesce(p_order -> 'items', '[]'::jsonb)) <> 'array'
     or exists (
       select 1 from jsonb_array_elements(coalesce(p_order -> 'items', '[]'::jsonb)) as item
       where jsonb_typeof(item) <> 'object'
     ) then
    perform private.fail(422, 'invalid_order',
      'An order is an object; its customer an object and its items an array of objects');
  end if;
  return private.upsert_order(p_project_id, 'csv', p_order);
end
$$;

revoke all on function public.import_order(uuid, jsonb) from public, anon, authenticated;

grant execute on function public.import_order(uuid, jsonb) to authenticated;

comment on function public.import_order(uuid, jsonb) is
  'Imports (or updates) one order, source csv, into a project of the caller''s workspace; members and above. 422 invalid_order for a malformed document.';

-- automations ---------------------------------------------------------------------------------

-- As before, plus a bound on the input (the same 64 KiB the edge allows), so a caller of the
-- Data API cannot queue a job Make.com would refuse.
create or replace function public.enqueue_automation(
  p_project_id uuid, p_type text, p_input jsonb default '{}'::jsonb, p_idempotency_key text default null
)
returns table (automation public.automations, replayed boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_workspace_id uuid := private.project_workspace_as(p_project_id, 'member');
  v_price integer;
  v_automation public.automations;
begin
  select ap.credits into v_price from public.automation_prices ap where ap.type = p_type;
  if v_price is null then
    perform private.fail(422, 'invalid_automation_type', format('Unknown automation type %L', p_type));
  end if;
  if p_input is null or jsonb_typeof(p_input) <> 'object' then
    perform private.fail(422, 'invalid_input', 'input must be a JSON object');
  end if;
  if octet_length(p_input::text) > 65536 then
    perform private.fail(422, 'input_too_large', 'input must be at most 65536 bytes of JSON');
  end if;
  if p_idempotency_key is not null then
    select * into v_automation from public.automations a
    where a.workspace_id = v_workspace_id and a.started_by = v_user
      and a.idempotency_key = p_idempotency_key;
    if v_automation.id is not null then
      return query select v_automation, true;
      return;
    end if;
  end if;
  perform private.enforce_plan_rate_limits(v_workspace_id, v_user, 'automation');
  insert into public.automations
    (workspace_id, project_id, type, input, credits_charged, started_by, idempotency_key)
  values
    (v_workspace_id, p_project_id, p_type, p_input, v_price, v_user, p_idempotency_key)
  returning * into v_automation;
  perform private.move_credits(v_workspace_id, -v_price, 'automation_charge', v_automation.id);
  insert into private.outbox (topic, automation_id) values ('make.dispatch', v_automation.id);
  return query select v_automation, false;
end
$$;

revoke all on function public.enqueue_automation(uuid, text, jsonb, text) from public, anon, authenticated;

grant execute on function public.enqueue_automation(uuid, text, jsonb, text) to authenticated;

comment on function public.enqueue_automation(uuid, text, jsonb, text) is
  'Starts an automation (seo_audit, content_gen, report) on a project of the caller''s workspace; members and above. Rate limits, the debit, the automation and its dispatch commit together; the same idempotency key returns the first automation and charges nothing.';
