-- Fix-forward of 20261130094000_rate_limit_costly_endpoints.sql, which had landed before these changes
-- were made to it: applied on top of the landed version (functions replaced, triggers
-- recreated).

-- Plan rate limits for every endpoint that costs a provider call or a scan of a workspace's
-- data, so one user cannot tie up the shared workers or the providers' quotas:
--   shop_sync        Shoptet connect, test and sync; Shopify and WooCommerce connect
--   import           CSV order imports
--   preview          email previews (a template render) and segment previews (a contact scan)
--   sender_identity  sender identity registration and refresh (SES calls)
--   billing          subscription create, cancel and change-plan (Razorpay calls)
-- The edge spends one request through public.take_action_quota, as the user, before it calls
-- the provider; a function the Data API exposes that scans (public.preview_segment) spends it
-- itself, so calling it directly is limited the same way.

-- The lowest role that may spend an action's limits (the role its endpoints need), or null
-- for an action that is not spent through public.take_action_quota.
create or replace function private.action_quota_min_role(p_action text)
returns text
language sql
immutable
set search_path = ''
as $$
  select case p_action
    when 'shop_sync' then 'member'
    when 'import' then 'member'
    when 'preview' then 'viewer'
    when 'sender_identity' then 'viewer'
    when 'billing' then 'admin'
  end
$$;

revoke all on function private.action_quota_min_role(text) from public, anon, authenticated;

-- Spends one request of an action's plan limits (per user and per workspace) for the caller in
-- one of their workspaces. Non-members get 404, members below the action's role 403, unknown
-- actions 422, a spent limit 429 with retry_after; it can only spend the caller's own quota.
create or replace function public.take_action_quota(p_workspace_id uuid, p_action text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_min_role text := private.action_quota_min_role(p_action);
begin
  -- Membership first (404), so an outsider learns nothing about actions.
  perform private.workspace_role_as(p_workspace_id, 'viewer');
  if v_min_role is null then
    perform private.fail(422, 'invalid_action', format('Unknown action %L', left(p_action, 40)));
  end if;
  perform private.workspace_role_as(p_workspace_id, v_min_role);
  perform private.enforce_plan_rate_limits(p_workspace_id, private.require_user(), p_action);
end
$$;

revoke all on function public.take_action_quota(uuid, text) from public, anon, authenticated;

grant execute on function public.take_action_quota(uuid, text) to authenticated;

comment on function public.take_action_quota(uuid, text) is
  'Spends one request of the plan''s rate limits for an action (shop_sync, import, preview, '
  'sender_identity, billing) in one of your workspaces; 429 with retry_after once spent.';

-- How many contacts a rule selects and a sample of them, for members of the workspace. Each
-- call scans the workspace's contacts, so it spends the 'preview' limits (and is volatile:
-- PostgREST runs stable functions read-only, where no limit could be counted).
create or replace function public.preview_segment(p_workspace_id uuid, p_rule jsonb, p_sample integer default 10)
returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
begin
  perform public.take_action_quota(p_workspace_id, 'preview');
  v_ids := array(select private.segment_contact_ids(p_workspace_id, p_rule));
  return jsonb_build_object(
    'count', cardinality(v_ids),
    'sample', coalesce((
      select jsonb_agg(jsonb_build_object('id', c.id, 'email', c.email, 'first_name', c.first_name,
                                          'last_name', c.last_name) order by c.email)
      from (select * from public.contacts c where c.id = any (v_ids)
            order by c.email limit least(greatest(p_sample, 0), 100)) c
    ), '[]'::jsonb)
  );
end
$$;

revoke all on function public.preview_segment(uuid, jsonb, integer) from public, anon, authenticated;

grant execute on function public.preview_segment(uuid, jsonb, integer) to authenticated;

comment on function public.preview_segment(uuid, jsonb, integer) is
  'How many contacts of your workspace a segment rule selects, and up to 100 of them; spends '
  'the plan''s preview rate limit.';
