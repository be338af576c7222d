-- Raw webhook payloads leave with the account or workspace they belong to.
-- 1. Razorpay events name the paying user (a payment's email and contact): deleting the account
--    left them stored for up to 30 days. The user's deletion (auth.users) now deletes the
--    Razorpay payloads that name their address or phone (the billing facts stay in
--    subscriptions and payments, which hold neither).
-- 2. A workspace's purge (or the deletion of a solo workspace with its account) left the
--    payloads attributed to it (workspace_id, no foreign key) for up to the platform's 30 days.
--    They are deleted with the workspace row now (applied ones; one still waiting to be applied
--    is stripped when the applier finds nobody, 20261225090000_webhook_payload_attribution.sql).

create function private.erase_billing_payloads_of_user()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_keys text[] := private.identifier_keys(
    array_remove(array[lower(nullif(btrim(old.email), '')), private.phone_digits(old.phone)], null));
begin
  if cardinality(v_keys) > 0 then
    delete from private.webhook_events e
    where e.provider = 'razorpay' and e.identity_keys && v_keys;
  end if;
  return null;
end
$$;

revoke all on function private.erase_billing_payloads_of_user() from public, anon, authenticated;

create trigger on_auth_user_deleted_billing_payloads
  after delete on auth.users
  for each row execute function private.erase_billing_payloads_of_user();

create function private.delete_payloads_of_workspace()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.webhook_events e
  where e.workspace_id = old.id and e.status <> 'received';
  return null;
end
$$;

revoke all on function private.delete_payloads_of_workspace() from public, anon, authenticated;

create trigger workspaces_delete_payloads
  after delete on public.workspaces
  for each row execute function private.delete_payloads_of_workspace();

update private.personal_data_columns
set note = coalesce(note || '; ', '') || 'Razorpay events name the paying member: deleted with their account'
where table_schema = 'private' and table_name = 'webhook_events' and column_name = 'body';
