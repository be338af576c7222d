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

insert into public.plan_rate_limits (plan_tier, action, scope, max_requests, window_seconds) values
  ('free', 'shop_sync', 'user', 10, 60),
  ('free', 'shop_sync', 'workspace', 60, 3600),
  ('solo', 'shop_sync', 'user', 30, 60),
  ('solo', 'shop_sync', 'workspace', 300, 3600),
  ('team', 'shop_sync', 'user', 60, 60),
  ('team', 'shop_sync', 'workspace', 1000, 3600),
  ('free', 'import', 'user', 5, 60),
  ('free', 'import', 'workspace', 20, 3600),
  ('solo', 'import', 'user', 10, 60),
  ('solo', 'import', 'workspace', 100, 3600),
  ('team', 'import', 'user', 30, 60),
  ('team', 'import', 'workspace', 500, 3600),
  ('free', 'preview', 'user', 30, 60),
  ('free', 'preview', 'workspace', 300, 3600),
  ('solo', 'preview', 'user', 60, 60),
  ('solo', 'preview', 'workspace', 1500, 3600),
  ('team', 'preview', 'user', 120, 60),
  ('team', 'preview', 'workspace', 5000, 3600),
  ('free', 'sender_identity', 'user', 10, 60),
  ('free', 'sender_identity', 'workspace', 30, 3600),
  ('solo', 'sender_identity', 'user', 20, 60),
  ('solo', 'sender_identity', 'workspace', 100, 3600),
  ('team', 'sender_identity', 'user', 30, 60),
  ('team', 'sender_identity', 'workspace', 300, 3600),
  ('free', 'billing', 'user', 5, 60),
  ('free', 'billing', 'workspace', 20, 3600),
  ('solo', 'billing', 'user', 10, 60),
  ('solo', 'billing', 'workspace', 40, 3600),
  ('team', 'billing', 'user', 10, 60),
  ('team', 'billing', 'workspace', 60, 3600);

-- The lowest role that may spend an action's limits (the role its endpoints need), or null
-- for an action that is not spent through public.take_action_quota.
create function private.action_quota_min_role(p_action text)
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
create function public.take_action_quota(p_workspace_id uuid, p_action text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_min_role text := private.action_quota_min_role(p_action);
  v_role text;
begin
  select m.role into v_role from public.workspace_members m
  where m.workspace_id = p_workspace_id and m.user_id = v_user;
  if v_role is null then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  if v_min_role is null then
    perform private.fail(422, 'invalid_action', format('Unknown action %L', left(p_action, 40)));
  end if;
  if private.role_rank(v_role) < private.role_rank(v_min_role) then
    perform private.fail(403, 'insufficient_role', format('This needs the %s role or higher', v_min_role));
  end if;
  perform private.enforce_plan_rate_limits(p_workspace_id, v_user, p_action);
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
