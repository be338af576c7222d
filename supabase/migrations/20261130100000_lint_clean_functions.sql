-- `supabase db lint --level warning` (plpgsql_check) reports nothing: two functions it flagged
-- are rewritten with the same behaviour, arguments, results and grants.
--
-- * private.project_workspace_as called the STABLE private.require_user() inside its query's
--   join condition. The planner evaluates stable functions there for its estimates, so merely
--   planning the query without a signed-in user raised "Sign in first". The user is now read
--   once, before the query, which still answers 401 to a caller without one.
-- * private.record_subscription's handler for a second live subscription ended the function
--   without RETURN (private.fail raises, but the checker cannot know). The handler now covers
--   only the insert, and the function ends by returning the row.

-- The project's workspace, when the signed-in user has at least `p_min_role` in it; 404 for
-- non-members (a project's existence is not revealed), 403 for a role too low.
create or replace function private.project_workspace_as(p_project_id uuid, p_min_role text)
returns uuid
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_workspace_id uuid;
  v_role text;
begin
  select p.workspace_id, m.role into v_workspace_id, v_role
  from public.projects p
  join public.workspace_members m on m.workspace_id = p.workspace_id and m.user_id = v_user
  where p.id = p_project_id;
  if v_role is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if private.role_rank(v_role) < private.role_rank(p_min_role) then
    perform private.fail(403, 'insufficient_role', format('This needs the %s role or higher', p_min_role));
  end if;
  return v_workspace_id;
end
$$;

revoke all on function private.project_workspace_as(uuid, text) from public, anon, authenticated;

-- The edge asks it before calling a provider on a project's behalf (Shoptet test and sync).
grant execute on function private.project_workspace_as(uuid, text) to authenticated;

-- Records the subscription Razorpay just created for a workspace, from its create response. The
-- edge calls it as the service after public.prepare_subscription allowed the user. The row
-- starts `created` whatever the response says; webhooks move it from there.
create or replace function private.record_subscription(
  p_workspace_id uuid, p_created_by uuid, p_subscription jsonb
)
returns public.subscriptions
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_razorpay_id text := p_subscription ->> 'id';
  v_tier text;
  v_subscription public.subscriptions;
begin
  select p.tier into v_tier from public.plans p where p.razorpay_plan_id = p_subscription ->> 'plan_id';
  if v_razorpay_id is null or v_razorpay_id !~ '^sub_[A-Za-z0-9]{14}$' or v_tier is null
     or p_subscription #>> '{notes,workspace_id}' is distinct from p_workspace_id::text then
    perform private.fail(502, 'provider_error', 'Razorpay answered with a subscription we did not ask for');
  end if;
  perform 1 from public.workspaces w where w.id = p_workspace_id for update;
  begin
    insert into public.subscriptions
      (workspace_id, plan_tier, razorpay_subscription_id, status, short_url, created_by)
    values (p_workspace_id, v_tier, v_razorpay_id, 'created', p_subscription ->> 'short_url', p_created_by)
    returning * into v_subscription;
  exception when unique_violation then
    perform private.fail(409, 'subscription_exists', 'This workspace already has a live subscription');
  end;
  return v_subscription;
end
$$;

revoke all on function private.record_subscription(uuid, uuid, jsonb) from public, anon, authenticated;

grant execute on function private.record_subscription(uuid, uuid, jsonb) to service_role;
