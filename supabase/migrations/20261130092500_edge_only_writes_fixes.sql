-- Fix-forward of 20261130092000_edge_only_writes.sql, which had landed before these changes
-- were made to it: applied on top of the landed version (functions replaced, triggers
-- recreated).

-- Writes only the edge may make leave the Data API. Stored shop credentials must be what the
-- edge encrypted, and an AI call record must name the model the edge is configured to call, so
-- both are written by the service (`private`, service_role only) after the edge has asked the
-- database, as the user, whether the user may act (private.project_workspace_as and
-- private.workspace_role_as). disconnect_integration, which stays exposed, refuses an unknown
-- source with a 422 (import_order and enqueue_automation get theirs in
-- 20261130096000_exposed_function_inputs.sql).

-- role check ----------------------------------------------------------------------------------

-- The caller's role in a workspace when it is at least `p_min_role`; 404 for non-members (a
-- workspace's existence is not revealed), 403 for a role too low. Reads only, changes nothing.
create or replace function private.workspace_role_as(p_workspace_id uuid, p_min_role text)
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

drop function if exists public.start_ai_call(uuid, text, text);

-- Starts an AI call the edge has authorised (private.workspace_role_as, as the user, in the
-- same transaction): the plan's rate limits, then the usage row with the configured model and
-- its debit, together or not at all. finish_ai_call refunds a failed call once.
create or replace function private.start_ai_call(
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

drop function if exists public.connect_integration(uuid, text, text, text, jsonb);

-- Stores (or replaces) a project's shop credentials, as the edge sealed them; the edge has
-- checked the user is a member of the project's workspace (private.project_workspace_as).
-- A null secret keeps the stored one.
create or replace function private.connect_integration(
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
