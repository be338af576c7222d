-- SES tenants follow their workspace (issue 18).
--
-- A deleted workspace's tenant is deleted in SES: when the workspace's rows go (the purge after
-- its 30 days, or its owner's account deleted), its tenants are queued here first (the
-- private.ses_tenants rows go with the workspace) and the send worker deletes them in SES
-- (DeleteTenant; a tenant SES no longer has counts as deleted) on its next run.
--
-- A workspace's own mail besides campaigns (inbox replies) goes as its tenant too: the tenant
-- of a workspace for a From address is found through the workspace's verified sender identity
-- that covers the address (the address itself, else its domain), the identity SES associates
-- with the tenant. The platform's notices to owners and admins stay under the account: they
-- are the platform's mail, not the workspace's.

create table private.ses_tenant_deletions (
  account text not null check (char_length(account) between 1 and 200),
  tenant_name text not null check (char_length(tenant_name) between 1 and 64),
  queued_at timestamptz not null default now(),
  primary key (account, tenant_name)
);

revoke all on private.ses_tenant_deletions from public, anon, authenticated;

grant select on private.ses_tenant_deletions to service_role;

comment on table private.ses_tenant_deletions is
  'SES tenants of deleted workspaces, waiting for the send worker to delete them in SES.';

-- Before a workspace's rows go: its tenants wait for deletion in SES.
create function private.queue_ses_tenant_deletions()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into private.ses_tenant_deletions (account, tenant_name)
  select t.account, t.tenant_name from private.ses_tenants t where t.workspace_id = old.id
  on conflict (account, tenant_name) do nothing;
  return old;
end
$$;

revoke all on function private.queue_ses_tenant_deletions() from public, anon, authenticated;

create trigger workspaces_queue_ses_tenant_deletions
  before delete on public.workspaces
  for each row execute function private.queue_ses_tenant_deletions();

-- The account's tenants waiting for deletion, oldest first.
create function private.ses_tenant_deletions_due(p_account text, p_limit integer)
returns setof text
language sql
stable
security definer
set search_path = ''
as $$
  select d.tenant_name from private.ses_tenant_deletions d
  where d.account = p_account
  order by d.queued_at, d.tenant_name
  limit greatest(p_limit, 0)
$$;

revoke all on function private.ses_tenant_deletions_due(text, integer) from public, anon, authenticated;

grant execute on function private.ses_tenant_deletions_due(text, integer) to service_role;

-- SES deleted the tenant (or no longer had it).
create function private.ses_tenant_deleted(p_account text, p_tenant_name text)
returns void
language sql
security definer
set search_path = ''
as $$
  delete from private.ses_tenant_deletions d where d.account = p_account and d.tenant_name = p_tenant_name
$$;

revoke all on function private.ses_tenant_deleted(text, text) from public, anon, authenticated;

grant execute on function private.ses_tenant_deleted(text, text) to service_role;

-- The tenant a workspace's mail from p_sender goes as, shaped as private.send_tenants answers
-- (null ARN: not created yet): none when the account has no tenants or no verified identity of
-- the workspace covers the address (then the mail goes under the account).
create function private.mail_tenant(p_account text, p_workspace_id uuid, p_sender text)
returns table (workspace_id uuid, identity text, tenant_name text, tenant_arn text, resources text[])
language sql
stable
security definer
set search_path = ''
as $$
  select si.workspace_id, si.identity,
         coalesce(t.tenant_name, 'growthbase-' || si.workspace_id::text), t.tenant_arn,
         coalesce(t.resources, '{}')
  from public.sender_identities si
  left join private.ses_tenants t on t.account = p_account and t.workspace_id = si.workspace_id
  where private.ses_tenancy_supported(p_account)
    and si.workspace_id = p_workspace_id and si.verified
    and si.identity in (lower(btrim(p_sender)), lower(split_part(btrim(p_sender), '@', 2)))
  order by si.identity = lower(btrim(p_sender)) desc
  limit 1
$$;

revoke all on function private.mail_tenant(text, uuid, text) from public, anon, authenticated;

grant execute on function private.mail_tenant(text, uuid, text) to service_role;

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'ses_tenant_deletions', 'account', 'none', 'not_personal', 'which SES account, by its configured name'),
  ('private', 'ses_tenant_deletions', 'tenant_name', 'none', 'not_personal', 'growthbase-<workspace id>');
