-- A store's API access is stored in one project of a workspace at a time.
--
-- Orders are keyed per project (20270214090000_orders_keyed_per_project.sql), and Shopify's (and
-- a WooCommerce store's) ids are the store's own: one store read by two projects of a workspace
-- would be two copies of every order, counted twice in revenue, customer facts, RFM and sales.
-- Storing a Shopify shop's Admin API access (its myshopify.com domain) or a WooCommerce store's
-- REST API key (its address) that another project of the same workspace already stores is now
-- refused with a 409 `store_connected_elsewhere` naming that project; the same store in two
-- workspaces stays allowed (their orders never meet), and so does storing it again in its own
-- project. The address is kept in clear beside the sealed credentials (`store_address`, compared
-- lower-cased without its scheme, a leading `www.`, the port 443 or a trailing slash), unique per
-- workspace and source, and two calls storing one store at once are serialised by a lock on that
-- address, so the second finds the first's row and is refused. A connection stored before this
-- migration has no address (its credentials are sealed by the edge) until its API access is
-- stored again.

-- tables -----------------------------------------------------------------------------------------

alter table private.integrations
  add column store_address text check (store_address <> '' and length(store_address) <= 2048);

comment on column private.integrations.store_address is
  'The store whose API access is stored, normalised (Shopify: its myshopify.com domain; WooCommerce: its address without scheme, www., port 443 or trailing slash); unique per workspace and source. Null: no API access stored (or stored before 20270217).';

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'integrations', 'store_address', 'none', 'not_personal', 'a shop''s domain or address');

-- indexes ----------------------------------------------------------------------------------------

create unique index integrations_workspace_source_store_address_key
  on private.integrations (workspace_id, source, store_address);

-- functions --------------------------------------------------------------------------------------

-- Stores (or replaces) a project's Shopify or WooCommerce API access, as the edge sealed it, with
-- the store it reads (the edge has checked the user is a member of the project's workspace, in
-- the same transaction). The webhook secret stays as stored (private.connect_integration stores
-- it). A store another project of the workspace stores is refused (409), so one store's orders
-- reach one project of a workspace.
create function private.connect_store_api(
  p_project_id uuid, p_source text, p_store_address text, p_api_token_encrypted text
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_address text := lower(btrim(coalesce(p_store_address, '')));
  v_other uuid;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if p_source is distinct from 'shopify' and p_source is distinct from 'woocommerce' then
    perform private.fail(422, 'invalid_source', 'The source must be shopify or woocommerce');
  end if;
  v_address := regexp_replace(v_address, '^[a-z][a-z0-9+.-]*://', '');
  v_address := regexp_replace(v_address, '^www\.', '');
  v_address := regexp_replace(v_address, '^([^/]*):443(/|$)', '\1\2');
  v_address := regexp_replace(v_address, '/+$', '');
  if v_address = '' or length(v_address) > 2048 or p_api_token_encrypted is null then
    perform private.fail(422, 'invalid_input', 'The store''s address and API access are required');
  end if;

  -- Two calls storing one store in two projects wait here for each other; the second then reads
  -- the first's committed row below (each statement reads what was committed before it began).
  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtextextended(v_workspace_id::text || ':' || p_source || ':' || v_address, 0));

  select i.project_id into v_other
  from private.integrations i
  where i.workspace_id = v_workspace_id and i.source = p_source and i.store_address = v_address
    and i.project_id <> p_project_id;
  if v_other is not null then
    perform private.fail(409, 'store_connected_elsewhere',
      format('This store is already connected to project %s of this workspace; disconnect it there'
             ' first (its orders stay in that project)', v_other));
  end if;

  insert into private.integrations as i
    (project_id, source, workspace_id, api_token_encrypted, store_address)
  values (p_project_id, p_source, v_workspace_id, p_api_token_encrypted, v_address)
  on conflict (project_id, source) do update
  set api_token_encrypted = excluded.api_token_encrypted,
      store_address = excluded.store_address,
      updated_at = now();
end
$$;

revoke all on function private.connect_store_api(uuid, text, text, text) from public, anon, authenticated;
grant execute on function private.connect_store_api(uuid, text, text, text) to service_role;
