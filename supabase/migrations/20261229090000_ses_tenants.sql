-- SES tenants (issue 18). Where the SES account supports tenants, each workspace sends as its own
-- SES tenant (`TenantName` on every send), so SES keeps the workspace's reputation and
-- suppression list apart from the other workspaces on the account, and pauses that tenant alone.
-- The edge finds out once a day whether the account has tenants (an account or endpoint without
-- the tenant API answers 404 / UnknownOperation: then mail goes without TenantName, and the
-- workspace's view says so); it creates a workspace's tenant the first time the workspace sends
-- (idempotent: SES's AlreadyExists is taken as done), associates the sender identity (and the
-- configuration set) with it, and reads SES's status of the tenant (GetTenant) every few
-- minutes. analytics.ses_tenants shows that status beside our own standing.

create table private.ses_tenancy (
  account text primary key check (char_length(account) between 1 and 200),
  supported boolean not null,
  checked_at timestamptz not null default now()
);

revoke all on private.ses_tenancy from public, anon, authenticated;

grant select on private.ses_tenancy to service_role;

comment on table private.ses_tenancy is
  'Per SES account: whether it has the tenant API (ListTenants answered), as the edge last found.';

create table private.ses_tenants (
  account text not null check (char_length(account) between 1 and 200),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  tenant_name text not null check (char_length(tenant_name) between 1 and 64),
  tenant_arn text not null check (char_length(tenant_arn) between 1 and 2048),
  -- GetTenant's SendingStatus: ENABLED, REINSTATED or DISABLED.
  sending_status text check (char_length(sending_status) <= 50),
  -- The ARNs of the identities and configuration sets associated with the tenant.
  resources text[] not null default '{}',
  checked_at timestamptz not null default now(),
  created_at timestamptz not null default now(),
  primary key (account, workspace_id),
  unique (account, tenant_name)
);

create index ses_tenants_workspace_id_idx on private.ses_tenants (workspace_id);

revoke all on private.ses_tenants from public, anon, authenticated;

grant select on private.ses_tenants to service_role;

comment on table private.ses_tenants is
  'Each workspace''s SES tenant per SES account: its ARN, SES''s sending status of it (GetTenant) and the resources associated with it.';

-- Whether the account's tenant support is unknown or older than a day (then the edge asks SES).
create function private.ses_tenancy_stale(p_account text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select not exists (select 1 from private.ses_tenancy t
                     where t.account = p_account and t.checked_at > now() - interval '1 day')
$$;

revoke all on function private.ses_tenancy_stale(text) from public, anon, authenticated;

grant execute on function private.ses_tenancy_stale(text) to service_role;

-- What the edge found: whether the account has tenants. Answers the support now in force.
create function private.save_ses_tenancy(p_account text, p_supported boolean)
returns boolean
language sql
security definer
set search_path = ''
as $$
  insert into private.ses_tenancy as t (account, supported)
  values (p_account, p_supported)
  on conflict (account) do update set supported = excluded.supported, checked_at = now()
  returning t.supported
$$;

revoke all on function private.save_ses_tenancy(text, boolean) from public, anon, authenticated;

grant execute on function private.save_ses_tenancy(text, boolean) to service_role;

-- Whether the account sends through tenants (null: not known yet, so not).
create function private.ses_tenancy_supported(p_account text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((select t.supported from private.ses_tenancy t where t.account = p_account), false)
$$;

revoke all on function private.ses_tenancy_supported(text) from public, anon, authenticated;

grant execute on function private.ses_tenancy_supported(text) to service_role;

-- The tenant each of the campaigns sends as (the workspace's, named after it), the SES
-- identity it sends from, and what is known of the tenant (null ARN: not created yet).
create function private.send_tenants(p_account text, p_campaign_ids uuid[])
returns table (campaign_id uuid, workspace_id uuid, identity text, tenant_name text,
               tenant_arn text, resources text[])
language sql
stable
security definer
set search_path = ''
as $$
  select c.id, c.workspace_id, si.identity,
         coalesce(t.tenant_name, 'growthbase-' || c.workspace_id::text), t.tenant_arn,
         coalesce(t.resources, '{}')
  from public.campaigns c
  join public.sender_identities si on si.id = c.sender_identity_id
  left join private.ses_tenants t on t.account = p_account and t.workspace_id = c.workspace_id
  where c.id = any (p_campaign_ids)
$$;

revoke all on function private.send_tenants(text, uuid[]) from public, anon, authenticated;

grant execute on function private.send_tenants(text, uuid[]) to service_role;

-- SES created (or already had) the workspace's tenant and associated the resources with it.
create function private.save_ses_tenant(
  p_account text, p_workspace_id uuid, p_tenant_name text, p_tenant_arn text,
  p_sending_status text, p_resources text[]
)
returns void
language sql
security definer
set search_path = ''
as $$
  insert into private.ses_tenants as t (account, workspace_id, tenant_name, tenant_arn, sending_status, resources)
  values (p_account, p_workspace_id, p_tenant_name, p_tenant_arn, p_sending_status, p_resources)
  on conflict (account, workspace_id) do update
  set tenant_name = excluded.tenant_name, tenant_arn = excluded.tenant_arn,
      sending_status = coalesce(excluded.sending_status, t.sending_status),
      resources = array(select distinct r from unnest(t.resources || excluded.resources) r order by r),
      checked_at = now()
$$;

revoke all on function private.save_ses_tenant(text, uuid, text, text, text, text[]) from public, anon, authenticated;

grant execute on function private.save_ses_tenant(text, uuid, text, text, text, text[]) to service_role;

-- Tenants whose SES status is older than 15 minutes, oldest first.
create function private.stale_ses_tenants(p_account text, p_limit integer)
returns table (tenant_name text)
language sql
stable
security definer
set search_path = ''
as $$
  select t.tenant_name from private.ses_tenants t
  where t.account = p_account and t.checked_at < now() - interval '15 minutes'
  order by t.checked_at
  limit greatest(p_limit, 0)
$$;

revoke all on function private.stale_ses_tenants(text, integer) from public, anon, authenticated;

grant execute on function private.stale_ses_tenants(text, integer) to service_role;

-- GetTenant's answer: the tenant's sending status, or (p_found false) that SES no longer has
-- it, so the next send creates it again.
create function private.save_ses_tenant_status(
  p_account text, p_tenant_name text, p_found boolean, p_sending_status text
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if p_found then
    update private.ses_tenants t
    set sending_status = p_sending_status, checked_at = now()
    where t.account = p_account and t.tenant_name = p_tenant_name;
  else
    delete from private.ses_tenants t where t.account = p_account and t.tenant_name = p_tenant_name;
  end if;
end
$$;

revoke all on function private.save_ses_tenant_status(text, text, boolean, text) from public, anon, authenticated;

grant execute on function private.save_ses_tenant_status(text, text, boolean, text) to service_role;

-- Each visible workspace per SES account the platform sends through: whether the account has
-- tenants, the workspace's tenant and SES's status of it, beside our own standing (the
-- workspace's rolling window in analytics.deliverability) and whether we paused it.
create function analytics.ses_tenant_stats()
returns table (
  workspace_id uuid, account text, tenants_supported boolean, tenant_name text,
  ses_sending_status text, ses_checked_at timestamptz, standing text, paused boolean, detail text
)
language sql
stable
security definer
set search_path = ''
-- The planner's guess for the function scans below is far above the real size, and compiling
-- the plan (JIT) then costs about a second for a handful of rows.
set jit = off
as $$
  select w.id, a.account, a.supported, t.tenant_name, t.sending_status, t.checked_at,
         d.status, coalesce(d.paused, false),
         case
           when not a.supported then
             'This SES account has no tenants: the workspace sends under the account''s shared reputation and suppression list'
           when t.tenant_name is null then
             'The workspace''s SES tenant is created with its first send'
           else format('Sends as SES tenant %s; SES reports its sending %s', t.tenant_name,
                       coalesce(lower(t.sending_status), 'status unknown'))
         end
  from public.workspaces w
  cross join private.ses_tenancy a
  left join private.ses_tenants t on t.account = a.account and t.workspace_id = w.id
  left join analytics.deliverability_stats() d
    on d.workspace_id = w.id and d.sender_identity_id is null and d.time_window = 'rolling'
  where (select private.analytics_sees_all())
     or w.id in (select private.user_workspace_ids())
$$;

revoke all on function analytics.ses_tenant_stats() from public, anon;

grant execute on function analytics.ses_tenant_stats() to authenticated, growthbase_analyst;

comment on function analytics.ses_tenant_stats() is
  'Each workspace the caller may see, per SES account: whether the account has tenants, the workspace''s SES tenant and SES''s sending status of it, beside our own standing and pause.';

create view analytics.ses_tenants with (security_invoker = true) as
  select * from analytics.ses_tenant_stats();

revoke all on analytics.ses_tenants from public, anon;

grant select on analytics.ses_tenants to authenticated, growthbase_analyst;

comment on view analytics.ses_tenants is
  'Per workspace and SES account: whether the account has tenants (else the workspace shares the account''s reputation), the workspace''s SES tenant with SES''s sending status (ENABLED, REINSTATED, DISABLED) beside our standing (low_volume, ok, warning, over_pause) and pause.';
