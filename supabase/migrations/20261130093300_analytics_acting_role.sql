-- Analytics sees every workspace only for a request acting as a growthbase_analyst member
-- (issue 12), decided from the role the request acts as, never from the login.

-- Whether the request sees every workspace in analytics: only when the role it acts as (the
-- role set by SET ROLE or set_config('role'), else the login itself) is a growthbase_analyst
-- member. The Data API and the edge act as authenticated, anon or service_role, which never
-- see all, whatever the login and whether or not a user is signed in. (current_user would not
-- do: inside the security-definer callers it is their owner.)
create or replace function private.analytics_sees_all()
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select pg_catalog.pg_has_role(
    coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user)::name,
    'growthbase_analyst',
    'member'
  )
$$;

revoke all on function private.analytics_sees_all() from public, anon, authenticated;
