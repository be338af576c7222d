-- A shop's customer ids are keyed per project: (project_id, workspace_id, source, external_id).
--
-- Integrations are per project and source, so a workspace can connect two WooCommerce stores (or
-- two Shoptet shops) in two projects, and a customer's id is the store's own (WooCommerce's are
-- small integers: customer 1, 2, 3…). With public.contact_external_ids keyed per workspace and
-- source, store B's customer 5 was found as store A's customer 5: one contact, which took B's
-- customer's orders, name and consent, and which B's customer/redact erased or B's
-- customer/deleted unlinked. Orders were keyed per project for the same reason
-- (20270214090000_orders_keyed_per_project.sql); now so are the customers' ids. Each id is
-- recorded in the project of the writer that saw it and found only by that project's writers:
--   - shop pages, webhooks and backfills act for the integration's project (the project their
--     URL or job names): private.upsert_customers (now taking the project), upsert_shop_customers,
--     upsert_orders, upsert_checkout, apply_shop_customer, forget_shop_customer;
--   - one order through public.import_order or a single shop customer: private.upsert_order and
--     private.upsert_shop_customer, through private.upsert_contact (now taking the project);
--   - the orders import (stage_orders_chunk) finds and records a row's customer_id (source
--     `manual`) in the job's project;
--   - Shopify's compliance webhooks name a shop, so they act for that store's project:
--     redact_shop_customer and record_shop_data_request find the customer by id in the project
--     (by email still in the workspace: the contact is the person, whichever store they bought
--     from), redact_shop unlinks the project's ids only (it used to unlink the whole
--     workspace's, when no other project had the source connected).
-- A customer not known by id in the project is still found by email in the workspace: contacts
-- stay per workspace, and the same person buying in two stores is one contact with one id per
-- store. What is workspace-wide stays so, by the contact: erasure (erase_contacts,
-- contact_tokens, contact_needles) and the access export (contact_export_data) take every id of
-- the contact, whatever its project (unchanged, by (contact_id, workspace_id)).
--
-- Existing ids get a project, the first of (deterministic, one project per row):
--   1. the project of the contact's newest order of that source (newest by placed_at, then
--      created_at, then id); for `manual` ids (the orders import's customer_id, written with
--      the job's orders, whatever their source) the contact's newest order of source `csv` or
--      `manual` (what an import or public.import_order writes beside such an id), else its newest
--      order of any source (a Shopify export's): a customer imported into one project who later
--      bought in another project's connected store keeps the id in the project of the import;
--   2. else the project of the workspace's only integration of that source;
--   3. else the workspace's oldest project (created_at, then id).
-- An id whose workspace has no project left is deleted: every writer and look-up acts for a
-- project, so nothing could find it again (the contact itself stays). A workspace that already
-- merged two stores' customers keeps that contact; from now on the other store's customer of the
-- same id (and another email) becomes a contact of its own.
--
-- The new key leads with the project, so it also serves the foreign key to the project (on
-- delete cascade: a deleted project's customer ids go, as its orders do). The old key's columns
-- stay indexed, not unique, as (workspace_id, source, external_id): the members' policy filters
-- by workspace_id, and a customer looked up by id across the workspace (the Data API) stays one
-- index probe. (contact_id, workspace_id) stays: erasure and export read a contact's ids by it.
--
-- Lock order: adding the column takes the table's ACCESS EXCLUSIVE lock at once, for the whole
-- migration (one transaction); the backfill and the checks of NOT NULL and the foreign key read
-- it once each. As 20270214090000 did, the new indexes are built first and only then does the
-- old primary key go and the new one take its place (a change of the catalog only).
--
-- Copied and changed (each only where it finds or records a customer id, and where it passes
-- the project on):
--   private.upsert_customers (new signature: the project after the workspace; the old one is
--     dropped) and private.apply_shop_customer from 20270206091000_shop_customer_fitted_once.sql;
--   private.upsert_shop_customers from 20261201105000_shop_orders_page_upsert.sql;
--   private.upsert_contact (new signature, as upsert_customers) and private.upsert_shop_customer
--     from 20261123100000_customers_orders.sql;
--   private.upsert_order, private.upsert_orders, private.upsert_checkout and
--     private.stage_orders_chunk from 20270214090000_orders_keyed_per_project.sql;
--   private.forget_shop_customer from 20261209123000_shop_customer_webhooks.sql;
--   private.redact_shop_customer, private.record_shop_data_request and private.redact_shop from
--     20270122090000_shopify_compliance_webhooks.sql.

-- tables --------------------------------------------------------------------------------------

alter table public.contact_external_ids add column project_id uuid;

comment on column public.contact_external_ids.project_id is
  'The project whose store (or import) named the customer by this id; a shop''s customer ids are its own, so each project keeps its own.';

-- The backfill rule of the header, in its order.
update public.contact_external_ids x
set project_id = coalesce(
  (select o.project_id from public.orders o
   where o.workspace_id = x.workspace_id and o.contact_id = x.contact_id
     and (o.source = x.source or x.source = 'manual')
   order by x.source = 'manual' and o.source in ('csv', 'manual') desc,
            o.placed_at desc, o.created_at desc, o.id desc
   limit 1),
  (select min(i.project_id::text)::uuid from private.integrations i
   where i.workspace_id = x.workspace_id and i.source = x.source
   having count(*) = 1),
  (select p.id from public.projects p
   where p.workspace_id = x.workspace_id
   order by p.created_at, p.id
   limit 1)
);

-- Ids of a workspace without a project: no writer or look-up can reach them any more.
delete from public.contact_external_ids x where x.project_id is null;

alter table public.contact_external_ids alter column project_id set not null;

alter table public.contact_external_ids
  add constraint contact_external_ids_project_id_workspace_id_fkey
  foreign key (project_id, workspace_id) references public.projects (id, workspace_id) on delete cascade;

-- indexes first --------------------------------------------------------------------------------

create unique index contact_external_ids_project_key
  on public.contact_external_ids (project_id, workspace_id, source, external_id);

create index contact_external_ids_workspace_source_external_id_idx
  on public.contact_external_ids (workspace_id, source, external_id);

-- then the key swap (a change of the catalog only) ---------------------------------------------

alter table public.contact_external_ids drop constraint contact_external_ids_pkey;

alter table public.contact_external_ids
  add constraint contact_external_ids_pkey primary key using index contact_external_ids_project_key;

-- functions -----------------------------------------------------------------------------------

-- Customers as the shops describe them, a page at a time (see 20270206091000), for one project:
-- a customer is found by their shop id in that project, then by email in the workspace, else
-- created; their shop id is recorded in that project.
create function private.upsert_customers(
  p_workspace_id uuid, p_project_id uuid, p_source text, p_customers jsonb
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid := p_workspace_id;
  v_id_source text := case when p_source in ('csv', 'manual') then 'manual' else p_source end;
begin
  -- New customers (neither their shop id nor their email known yet), one contact per email, with
  -- their shop ids, in one statement.
  with customers as (
    select distinct on (coalesce('id:' || c.external_id, 'email:' || c.email))
           c.external_id, c.email, c.phone, c.first_name, c.last_name, c.accepts_marketing,
           d.n
    from jsonb_array_elements(p_customers) with ordinality as d(doc, n)
    cross join lateral private.shop_customer_fitted(d.doc) as c
    where c.external_id is not null or c.email is not null
    order by coalesce('id:' || c.external_id, 'email:' || c.email), d.n
  ),
  unknown as (
    select c.* from customers c
    where not exists (
            select 1 from public.contact_external_ids x
            where x.project_id = p_project_id and x.workspace_id = v_workspace_id
              and x.source = v_id_source and x.external_id = c.external_id
            offset 0)
      and not exists (
            select 1 from public.contacts k where k.workspace_id = v_workspace_id and k.email = c.email
            offset 0)
  ),
  -- A new id per customer, drawn in the target list of a materialised CTE: a volatile function
  -- there runs once for each row the CTE yields, whatever the plan (as an uncorrelated lateral
  -- subquery it could be run once and joined to every customer).
  drawn as materialized (
    select u.*, gen_random_uuid() as new_id from unknown u
  ),
  fresh as (
    select u.*, case when u.email is null then u.new_id
                     else first_value(u.new_id) over (partition by u.email order by u.n) end as contact_id
    from drawn u
  ),
  contacts as (
    insert into public.contacts (id, workspace_id, email, phone, first_name, last_name,
                                 consent_state, consent_source, consent_at)
    select distinct on (f.contact_id) f.contact_id, v_workspace_id, f.email, f.phone, f.first_name,
           f.last_name,
           case f.accepts_marketing when true then 'granted' when false then 'denied' else 'unknown' end,
           case when f.accepts_marketing is not null then p_source end,
           case when f.accepts_marketing is not null then now() end
    from fresh f
    order by f.contact_id, f.n
    returning id
  )
  insert into public.contact_external_ids (project_id, workspace_id, contact_id, source, external_id)
  select p_project_id, v_workspace_id, f.contact_id, v_id_source, f.external_id
  from fresh f
  where f.external_id is not null and f.contact_id in (select c.id from contacts c)
  on conflict do nothing;

  -- Known customers: their shop id is recorded, and they gain a phone or name they lacked.
  with customers as (
    select distinct on (coalesce('id:' || c.external_id, 'email:' || c.email)) c.*, d.n, coalesce(
             (select x.contact_id from public.contact_external_ids x
              where x.project_id = p_project_id and x.workspace_id = v_workspace_id
                and x.source = v_id_source and x.external_id = c.external_id),
             (select k.id from public.contacts k where k.workspace_id = v_workspace_id and k.email = c.email)
           ) as contact_id
    from jsonb_array_elements(p_customers) with ordinality as d(doc, n)
    cross join lateral private.shop_customer_fitted(d.doc) as c
    where c.external_id is not null or c.email is not null
    order by coalesce('id:' || c.external_id, 'email:' || c.email), d.n
  ),
  ids as (
    insert into public.contact_external_ids (project_id, workspace_id, contact_id, source, external_id)
    select p_project_id, v_workspace_id, c.contact_id, v_id_source, c.external_id
    from customers c where c.external_id is not null and c.contact_id is not null
    on conflict do nothing
  )
  update public.contacts k
  set phone = coalesce(k.phone, c.phone), first_name = coalesce(k.first_name, c.first_name),
      last_name = coalesce(k.last_name, c.last_name)
  from customers c
  where c.contact_id = k.id
    and (k.phone is null and c.phone is not null or k.first_name is null and c.first_name is not null
         or k.last_name is null and c.last_name is not null);
end
$$;

revoke all on function private.upsert_customers(uuid, uuid, text, jsonb) from public, anon, authenticated;

-- A customer webhook's customer (see 20270206091000): found by their shop id in the project the
-- webhook's URL names, then by email in the workspace.
create or replace function private.apply_shop_customer(p_project_id uuid, p_source text, p_customer jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_external_id text;
  v_email text;
  v_phone text;
  v_first_name text;
  v_last_name text;
  v_consent text;
  v_contact public.contacts;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if p_source not in ('shopify', 'woocommerce') or jsonb_typeof(p_customer) is distinct from 'object' then
    return null;
  end if;
  -- Fitted as private.upsert_customers fits them (private.shop_customer_fitted); an empty name
  -- takes nothing from the contact's.
  select f.external_id, f.email, f.phone, nullif(f.first_name, ''), nullif(f.last_name, '')
  into v_external_id, v_email, v_phone, v_first_name, v_last_name
  from private.shop_customer_fitted(p_customer) as f;
  v_consent := p_customer ->> 'consent';
  if v_external_id is null and v_email is null then
    return null;
  end if;
  perform private.upsert_customers(v_workspace_id, p_project_id, p_source, jsonb_build_array(p_customer));
  select k.* into v_contact
  from public.contacts k
  where k.workspace_id = v_workspace_id
    and k.id = coalesce(
      (select x.contact_id from public.contact_external_ids x
       where x.project_id = p_project_id and x.workspace_id = v_workspace_id
         and x.source = p_source and x.external_id = v_external_id),
      (select c.id from public.contacts c where c.workspace_id = v_workspace_id and c.email = v_email))
  for update;
  if v_contact.id is null or v_contact.erased_at is not null then
    -- An erased person (never stored again) or a customer without a usable identity.
    return null;
  end if;
  if v_email is not null and (
       v_contact.unsubscribed_at is not null
       or exists (select 1 from public.contacts c
                  where c.workspace_id = v_workspace_id and c.email = v_email and c.id <> v_contact.id)
       or exists (select 1 from private.erased_identities e
                  where e.workspace_id = v_workspace_id
                    and e.identity_key = private.identity_key(v_workspace_id, 'email', v_email))) then
    v_email := null;
  end if;
  update public.contacts k
  set email = coalesce(v_email, k.email),
      phone = coalesce(v_phone, k.phone),
      first_name = coalesce(v_first_name, k.first_name),
      last_name = coalesce(v_last_name, k.last_name),
      consent_state = c.state,
      consent_source = case when c.state is distinct from k.consent_state then p_source else k.consent_source end,
      consent_at = case when c.state is distinct from k.consent_state then now() else k.consent_at end
  from (
    select case
             when v_consent = 'granted' then 'granted'
             when v_consent = 'withdrawn' and v_contact.consent_state = 'granted' then 'withdrawn'
             else v_contact.consent_state
           end as state
  ) as c
  where k.id = v_contact.id
    and (k.email, k.phone, k.first_name, k.last_name, k.consent_state) is distinct from
        (coalesce(v_email, k.email), coalesce(v_phone, k.phone), coalesce(v_first_name, k.first_name),
         coalesce(v_last_name, k.last_name), c.state);
  return v_contact.id;
end
$$;

revoke all on function private.apply_shop_customer(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.apply_shop_customer(uuid, text, jsonb) to service_role;

-- A page of a shop's customers (see 20261201105000): found and recorded in the project.
create or replace function private.upsert_shop_customers(p_project_id uuid, p_source text, p_customers jsonb)
returns integer
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
  perform private.upsert_customers(v_workspace_id, p_project_id, p_source, p_customers);
  return jsonb_array_length(p_customers);
end
$$;

revoke all on function private.upsert_shop_customers(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_shop_customers(uuid, text, jsonb) to service_role;

-- Upserts a customer as the importers describe one:
-- {"external_id"?, "email"?, "phone"?, "first_name"?, "last_name"?, "accepts_marketing"?}.
-- Found by its external id for the source in the project, then by email in the workspace, else
-- created; its external id is recorded in the project (see 20261123100000). Returns null when
-- there is nothing to identify the customer by.
create function private.upsert_contact(
  p_workspace_id uuid, p_project_id uuid, p_source text, p_customer jsonb
)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact_id uuid;
  v_source text := case when p_source in ('csv', 'manual') then 'manual' else p_source end;
  v_external_id text := nullif(p_customer ->> 'external_id', '');
  v_email text := nullif(lower(btrim(p_customer ->> 'email')), '');
begin
  if p_customer is null or jsonb_typeof(p_customer) <> 'object'
     or (v_external_id is null and v_email is null) then
    return null;
  end if;
  if v_external_id is not null then
    select x.contact_id into v_contact_id from public.contact_external_ids x
    where x.project_id = p_project_id and x.workspace_id = p_workspace_id
      and x.source = v_source and x.external_id = v_external_id;
  end if;
  if v_contact_id is null and v_email is not null then
    select c.id into v_contact_id from public.contacts c
    where c.workspace_id = p_workspace_id and c.email = v_email;
  end if;
  if v_contact_id is null then
    insert into public.contacts (workspace_id, email, phone, first_name, last_name,
                                 consent_state, consent_source, consent_at)
    values (
      p_workspace_id, v_email, p_customer ->> 'phone', p_customer ->> 'first_name',
      p_customer ->> 'last_name',
      case (p_customer ->> 'accepts_marketing')::boolean
        when true then 'granted' when false then 'denied' else 'unknown' end,
      case when p_customer ? 'accepts_marketing' then p_source end,
      case when p_customer ? 'accepts_marketing' then now() end
    )
    returning id into v_contact_id;
  else
    update public.contacts c
    set phone = coalesce(c.phone, p_customer ->> 'phone'),
        first_name = coalesce(c.first_name, p_customer ->> 'first_name'),
        last_name = coalesce(c.last_name, p_customer ->> 'last_name')
    where c.id = v_contact_id;
  end if;
  if v_external_id is not null then
    insert into public.contact_external_ids (project_id, workspace_id, contact_id, source, external_id)
    values (p_project_id, p_workspace_id, v_contact_id, v_source, v_external_id)
    on conflict do nothing;
  end if;
  return v_contact_id;
end
$$;

revoke all on function private.upsert_contact(uuid, uuid, text, jsonb) from public, anon, authenticated;

-- A customer event from a shop (no order attached; see 20261123100000), found and recorded in the
-- project.
create or replace function private.upsert_shop_customer(p_project_id uuid, p_source text, p_customer jsonb)
returns uuid
language sql
security definer
set search_path = ''
as $$
  select private.upsert_contact(p.workspace_id, p.id, p_source, p_customer)
  from public.projects p where p.id = p_project_id
$$;

revoke all on function private.upsert_shop_customer(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_shop_customer(uuid, text, jsonb) to service_role;

-- An order from a shop or a CSV row (see 20270214090000): its project's order of that source and
-- id is created or updated, its customer found and recorded in the project.
create or replace function private.upsert_order(p_project_id uuid, p_source text, p_order jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_base_currency text;
  v_contact_id uuid;
  v_currency text := upper(p_order ->> 'currency');
  v_total numeric(14, 2) := (p_order ->> 'total')::numeric;
  v_rate numeric(18, 8) := (p_order ->> 'exchange_rate')::numeric;
  v_order_id uuid;
begin
  select p.workspace_id, w.base_currency into v_workspace_id, v_base_currency
  from public.projects p join public.workspaces w on w.id = p.workspace_id
  where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  v_contact_id := private.upsert_contact(v_workspace_id, p_project_id, p_source, p_order -> 'customer');
  insert into public.orders as o (
    workspace_id, project_id, contact_id, source, external_id, status, placed_at, total,
    currency, exchange_rate, base_total
  )
  values (
    v_workspace_id, p_project_id, v_contact_id, p_source, p_order ->> 'external_id',
    p_order ->> 'status', (p_order ->> 'placed_at')::timestamptz, v_total, v_currency, v_rate,
    case when v_currency = v_base_currency then v_total else round(v_total * v_rate, 2) end
  )
  on conflict (project_id, workspace_id, source, external_id) do update
  set contact_id = coalesce(excluded.contact_id, o.contact_id), status = excluded.status,
      placed_at = excluded.placed_at, total = excluded.total, currency = excluded.currency,
      exchange_rate = excluded.exchange_rate, base_total = excluded.base_total
  returning o.id into v_order_id;
  if p_order ? 'items' then
    delete from public.order_items i where i.order_id = v_order_id;
    insert into public.order_items (order_id, workspace_id, sku, name, quantity, unit_price, total)
    select v_order_id, v_workspace_id, item ->> 'sku',
           coalesce(item ->> 'name', item ->> 'sku', 'item'),
           (item ->> 'quantity')::numeric, (item ->> 'unit_price')::numeric,
           round((item ->> 'quantity')::numeric * (item ->> 'unit_price')::numeric, 2)
    from jsonb_array_elements(p_order -> 'items') as item;
  end if;
  return v_order_id;
end
$$;

revoke all on function private.upsert_order(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_order(uuid, text, jsonb) to service_role;

-- A page of orders (see 20270214090000): each written as its project's order of that source and
-- id, its customer found by their shop id in the project (another project's customer of the same
-- id is another customer), then by email in the workspace.
create or replace function private.upsert_orders(p_project_id uuid, p_source text, p_orders jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
set jit = off
as $$
declare
  v_workspace_id uuid;
  v_base_currency text;
  v_id_source text := case when p_source in ('csv', 'manual') then 'manual' else p_source end;
  v_orders integer;
begin
  select p.workspace_id, w.base_currency into v_workspace_id, v_base_currency
  from public.projects p join public.workspaces w on w.id = p.workspace_id
  where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if jsonb_typeof(p_orders) is distinct from 'array' then
    return 0;
  end if;

  perform private.upsert_customers(
    v_workspace_id, p_project_id, p_source,
    (select coalesce(jsonb_agg(d.doc -> 'customer' order by d.n), '[]'::jsonb)
     from jsonb_array_elements(p_orders) with ordinality as d(doc, n))
  );

  -- This statement's lines are linked as written (see lines below): the link trigger skips it.
  perform pg_catalog.set_config('growthbase.lines_linked_by_writer', 'on', true);
  -- The orders, each with its customer's contact. The page's last copy of an order is the order
  -- as the shop last described it; one that breaks a rule of the table is left out.
  with docs as (
    select distinct on (d.doc ->> 'external_id') d.doc, d.n
    from jsonb_array_elements(p_orders) with ordinality as d(doc, n)
    where jsonb_typeof(d.doc) = 'object' and char_length(d.doc ->> 'external_id') between 1 and 200
    order by d.doc ->> 'external_id', d.n desc
  ),
  valued as (
    select d.doc, d.n, d.doc ->> 'external_id' as external_id, v.total, v.currency, v.rate,
           -- Every valid day but February 29th passes this test at once; the rest is checked
           -- by private.shop_timestamptz.
           case when d.doc ->> 'placed_at' is null then null
                when d.doc ->> 'placed_at' ~ '^(?!0000)[0-9]{4}-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,9})?)?(?:Z|[+-](?:0[0-9]|1[0-5])(?::?[0-5][0-9])?)?)?$'
                then (d.doc ->> 'placed_at')::timestamptz
                else private.shop_timestamptz(d.doc ->> 'placed_at') end as placed_at,
           case when d.doc ->> 'status' in ('pending', 'paid', 'fulfilled', 'cancelled', 'refunded')
                then d.doc ->> 'status' end as status
    from docs d
    cross join lateral (
      select case when d.doc ->> 'total' ~ '^[0-9]{1,12}(\.[0-9]+)?$' then
               case when (d.doc ->> 'total')::numeric < 999999999999.995
                    then round((d.doc ->> 'total')::numeric, 2) end
             end as total,
             case when upper(d.doc ->> 'currency') ~ '^[A-Z]{3}$' then upper(d.doc ->> 'currency') end as currency,
             case when d.doc ->> 'exchange_rate' ~ '^[0-9]{1,10}(\.[0-9]+)?$' then
               case when (d.doc ->> 'exchange_rate')::numeric < 9999999999.999999995
                     and round((d.doc ->> 'exchange_rate')::numeric, 8) > 0
                    then round((d.doc ->> 'exchange_rate')::numeric, 8) end
             end as rate
    ) as v
  ),
  -- An unknown status or an unreadable date keeps the stored order's (read only then).
  checked as (
    select v.doc, v.n, v.external_id, v.total, v.currency, v.rate,
           coalesce(v.status, s.status, 'pending') as status, coalesce(v.placed_at, s.placed_at) as placed_at
    from valued v
    left join lateral (
      select o.status, o.placed_at from public.orders o
      where (v.status is null or v.placed_at is null)
        and o.workspace_id = v_workspace_id and o.project_id = p_project_id and o.source = p_source
        and o.external_id = v.external_id
      offset 0
    ) as s on true
    where v.total is not null and v.currency is not null
  ),
  written as (
    insert into public.orders as o (
      workspace_id, project_id, contact_id, source, external_id, status, placed_at, total,
      currency, exchange_rate, base_total
    )
    select v_workspace_id, p_project_id,
           coalesce(
             (select x.contact_id from public.contact_external_ids x
              where x.project_id = p_project_id and x.workspace_id = v_workspace_id
                and x.source = v_id_source
                and x.external_id = nullif(d.doc -> 'customer' ->> 'external_id', '')),
             (select k.id from public.contacts k
              where k.workspace_id = v_workspace_id
                and k.email = nullif(lower(btrim(d.doc -> 'customer' ->> 'email')), ''))),
           p_source, d.external_id, d.status, d.placed_at, d.total, d.currency, d.rate,
           case when d.currency = v_base_currency then d.total
                when round(d.total * d.rate, 2) < 1000000000000 then round(d.total * d.rate, 2) end
    from checked d
    where d.placed_at is not null
    order by d.n
    on conflict (project_id, workspace_id, source, external_id) do update
    set contact_id = coalesce(excluded.contact_id, o.contact_id), status = excluded.status,
        placed_at = excluded.placed_at, total = excluded.total, currency = excluded.currency,
        exchange_rate = excluded.exchange_rate, base_total = excluded.base_total
    returning o.id, o.external_id, o.project_id
  ),
  -- Lines are replaced when the document lists them; a line that breaks a rule is left out.
  -- Each written order finds its listed lines by its id in one object keyed by the orders' ids
  -- (a join of the written orders to the page's documents was planned as a nested loop over
  -- both, estimated a row each: 1,000,000 comparisons for a page of 1,000).
  listed as (
    select jsonb_object_agg(d.external_id, jsonb_build_array(d.n, d.doc -> 'items')) as lines
    from checked d
    where jsonb_typeof(d.doc -> 'items') = 'array'
  ),
  cleared as (
    delete from public.order_items i
    using written w, listed k
    where i.order_id = w.id and k.lines ? w.external_id
    returning i.id
  ),
  lines as (
    insert into public.order_items (
      order_id, workspace_id, sku, name, quantity, unit_price, total, external_product_id,
      external_variant_id, product_id, variant_id
    )
    select w.id, v_workspace_id, l.sku, l.name, l.quantity, l.unit_price, round(l.quantity * l.unit_price, 2),
           l.external_product_id, l.external_variant_id, coalesce(e.product_id, vs.product_id, ps.product_id),
           case when e.product_id is not null then e.variant_id else vs.variant_id end
    from written w
    cross join listed k
    cross join lateral jsonb_array_elements(k.lines -> w.external_id -> 1) with ordinality as i(item, position)
    cross join lateral (
      select i.item ->> 'sku' as sku,
             coalesce(nullif(i.item ->> 'name', ''), nullif(i.item ->> 'sku', ''), 'item') as name,
             case when i.item ->> 'quantity' ~ '^[0-9]{1,11}(\.[0-9]+)?$' then
               case when (i.item ->> 'quantity')::numeric < 99999999999.9995
                    then round((i.item ->> 'quantity')::numeric, 3) end
             end as quantity,
             case when i.item ->> 'unit_price' ~ '^[0-9]{1,12}(\.[0-9]+)?$' then
               case when (i.item ->> 'unit_price')::numeric < 999999999999.995
                    then round((i.item ->> 'unit_price')::numeric, 2) end
             end as unit_price,
             case when char_length(i.item ->> 'product_id') between 1 and 200
                  then i.item ->> 'product_id' end as external_product_id,
             case when char_length(i.item ->> 'variant_id') between 1 and 200
                  then i.item ->> 'variant_id' end as external_variant_id
      where jsonb_typeof(i.item) = 'object'
    ) as l
    -- Each line is linked to the catalog as it is written, by the rules of
    -- private.link_inserted_order_items: by the shop's product id (and variant id within that
    -- product) in the order's project and source, else by a SKU that names exactly one variant,
    -- else exactly one product, of the order's project (p_project_id: an order is its project's).
    -- That trigger then skips these lines, so a linked line is written once and counted once by
    -- the customer-facts trigger.
    left join lateral (
      select p.id as product_id,
             (select v.id from public.product_variants v
              where v.product_id = p.id and v.workspace_id = p.workspace_id
                and v.external_id = l.external_variant_id) as variant_id
      from public.products p
      where p.workspace_id = v_workspace_id and p.project_id = w.project_id and p.source = p_source
        and p.external_id = l.external_product_id
      offset 0
    ) as e on true
    left join lateral (
      select min(v.product_id::text)::uuid as product_id, min(v.id::text)::uuid as variant_id
      from public.product_variants v
      join public.products p on p.id = v.product_id
      where e.product_id is null and v.workspace_id = v_workspace_id and v.sku = l.sku
        and p.project_id = w.project_id
      having count(*) = 1
    ) as vs on true
    left join lateral (
      select min(p.id::text)::uuid as product_id
      from public.products p
      where e.product_id is null and vs.product_id is null and p.project_id = w.project_id and p.sku = l.sku
      having count(*) = 1
    ) as ps on true
    where l.quantity > 0 and l.unit_price is not null and round(l.quantity * l.unit_price, 2) < 1000000000000
    order by (k.lines -> w.external_id ->> 0)::bigint, i.position
    returning order_items.id
  )
  select count(*) into v_orders from written;
  perform pg_catalog.set_config('growthbase.lines_linked_by_writer', 'off', true);

  -- A Shopify order's currency is the shop's: the newest written is kept on the connection
  -- (product prices the shop sends without a currency are in it).
  if p_source = 'shopify' then
    perform private.note_shop_currency(p_project_id, p_source, (
      select upper(d.doc ->> 'currency')
      from jsonb_array_elements(p_orders) with ordinality as d(doc, n)
      where jsonb_typeof(d.doc) = 'object' and upper(d.doc ->> 'currency') ~ '^[A-Z]{3}$'
      order by d.n desc
      limit 1));
  end if;
  return v_orders;
end
$$;

revoke all on function private.upsert_orders(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_orders(uuid, text, jsonb) to service_role;

-- A checkout webhook's checkout (see 20270214090000): its project's checkout of that id, its
-- customer found by their shop id in the project, then by email in the workspace.
create or replace function private.upsert_checkout(p_project_id uuid, p_source text, p_checkout jsonb)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_contact_id uuid;
  v_before public.checkouts;
  v_after public.checkouts;
  v_customer jsonb := coalesce(p_checkout -> 'customer', '{}'::jsonb);
  v_email text := nullif(lower(btrim(coalesce(v_customer ->> 'email', p_checkout ->> 'email'))), '');
  v_items jsonb := p_checkout -> 'items';
  v_currency text := case when p_checkout ->> 'currency' ~ '^[A-Z]{3}$' then p_checkout ->> 'currency' end;
  v_total numeric;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if v_email is not null or v_customer ->> 'external_id' is not null then
    perform private.upsert_customers(v_workspace_id, p_project_id, p_source,
      jsonb_build_array(v_customer || jsonb_build_object('email', v_email)));
    select coalesce(
      (select x.contact_id from public.contact_external_ids x
       where x.project_id = p_project_id and x.workspace_id = v_workspace_id
         and x.source = p_source and x.external_id = v_customer ->> 'external_id'),
      (select c.id from public.contacts c where c.workspace_id = v_workspace_id and c.email = v_email))
    into v_contact_id;
  end if;
  if coalesce(char_length(p_checkout ->> 'external_id'), 0) not between 1 and 200 then
    -- A checkout id that does not fit the column cannot be found again: its customer is kept.
    return 'skipped';
  end if;
  -- The cart's lines as a list of at most 60 KiB (the checkout's column and its checkout_started
  -- event, which carries them with the URL, hold 64 KiB), else none; its total only as an
  -- amount with its currency.
  if jsonb_typeof(v_items) is distinct from 'array' or pg_catalog.pg_column_size(v_items) > 61440 then
    v_items := '[]'::jsonb;
  end if;
  if v_currency is not null and p_checkout ->> 'total' ~ '^[0-9]{1,12}(\.[0-9]+)?$' then
    v_total := case when (p_checkout ->> 'total')::numeric < 999999999999.995
                    then round((p_checkout ->> 'total')::numeric, 2) end;
  end if;
  select * into v_before from public.checkouts k
  where k.workspace_id = v_workspace_id and k.project_id = p_project_id and k.source = p_source
    and k.external_id = p_checkout ->> 'external_id'
  for update;
  insert into public.checkouts as k (workspace_id, project_id, source, external_id, contact_id, items, total,
                                     currency, recovery_url, started_at, completed_at)
  values (v_workspace_id, p_project_id, p_source, p_checkout ->> 'external_id', v_contact_id,
          v_items, v_total, v_currency,
          case when char_length(p_checkout ->> 'recovery_url') <= 2000 then p_checkout ->> 'recovery_url' end,
          coalesce(private.shop_timestamptz(p_checkout ->> 'started_at'), now()),
          case when p_checkout ->> 'completed_at' is not null
               then coalesce(private.shop_timestamptz(p_checkout ->> 'completed_at'), now()) end)
  on conflict (project_id, workspace_id, source, external_id) do update
  set contact_id = coalesce(excluded.contact_id, k.contact_id),
      items = excluded.items, total = excluded.total, currency = excluded.currency,
      recovery_url = coalesce(excluded.recovery_url, k.recovery_url),
      completed_at = coalesce(k.completed_at, excluded.completed_at)
  returning * into v_after;
  if v_after.contact_id is not null and v_after.completed_at is null
     and (v_before.id is null or v_before.contact_id is null) then
    insert into public.contact_events (workspace_id, contact_id, type, properties, occurred_at)
    select v_workspace_id, v_after.contact_id, 'checkout_started',
           jsonb_build_object('checkout_id', v_after.external_id, 'items', v_after.items, 'total', v_after.total,
                              'currency', v_after.currency, 'url', v_after.recovery_url),
           least(v_after.started_at, now())
    from public.contacts c where c.id = v_after.contact_id and c.erased_at is null;
  end if;
  return case when v_before.id is null then 'created' else 'updated' end;
end
$$;

revoke all on function private.upsert_checkout(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_checkout(uuid, text, jsonb) to service_role;

-- A part of the file staged (see 20270214090000): each order's stored id is the job's project's
-- order of that id, and a row's customer_id is the job's project's (found and recorded there).
create or replace function private.stage_orders_chunk(p_job_id uuid, p_max_records integer)
returns setof public.import_jobs
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
set jit = off
as $$
declare
  v_job public.import_jobs;
  v_items boolean;
  v_from bigint;
  v_to bigint;
  v_last_order text;
  v_room integer;
  v_max integer;
  v_created integer := 0;
  v_errors jsonb;
  v_valid integer;
  v_work uuid;
  v_source text;
begin
  select * into v_job from public.import_jobs j where j.id = p_job_id for update;
  if v_job.status is distinct from 'importing' or v_job.kind is distinct from 'orders'
     or (select count(*) from private.import_order_chunks c where c.job_id = p_job_id and not c.written) >= 2 then
    return;
  end if;
  v_from := coalesce((select max(c.upto) from private.import_order_chunks c where c.job_id = p_job_id),
                     v_job.merge_record);
  if v_from >= v_job.rows_total then
    return;
  end if;
  v_to := least(v_from + greatest(p_max_records, 1), v_job.rows_total);
  if not exists (select 1 from private.import_order_rows r where r.job_id = p_job_id and r.record = v_to) then
    return next private.fail_import_job(p_job_id, 'staging_lost',
      'The database restarted while this file was being imported; what was imported stays, import the file again for the rest');
    return;
  end if;
  perform private.analyze_grown_tables(array['public.contacts', 'public.contact_events',
    'public.contact_external_ids', 'public.orders', 'public.order_items', 'public.customer_facts',
    'public.products', 'public.product_variants']::regclass[]);
  v_items := private.import_has_items(v_job);
  v_source := private.import_order_source(v_job);
  select btrim(r.order_id) into v_last_order
  from private.import_order_rows r where r.job_id = p_job_id and r.record = v_to;
  if v_items then
    -- The part ends after the last line of its last order.
    select coalesce(min(r.record) - 1, v_job.rows_total) into v_to
    from private.import_order_rows r
    where r.job_id = p_job_id and r.record > v_to and btrim(r.order_id) is distinct from v_last_order;
  end if;

  -- The chunk's key for its working rows: the time in milliseconds, then random (as a UUIDv7).
  v_work := encode(overlay(uuid_send(gen_random_uuid())
              placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
              from 1 for 6), 'hex')::uuid;

  -- Each line with its first problem; a line's order is its order_id and, with line items, the
  -- run of consecutive rows it belongs to (order_key); each row is its own order otherwise.
  insert into private.import_order_lines (
    job_id, record, line, order_id, order_key, first_in_order, placed_at, status, total, currency,
    exchange_rate, email, phone, first_name, last_name, customer_id, item_sku, item_name,
    item_quantity, item_unit_price, item_product_id, item_variant_id, has_item, problem,
    problem_column, order_bad, order_has_items, order_items_total
  )
  select v_work, l.record, l.line, l.order_id, l.order_key, l.first_in_order, l.placed_at, l.status_text,
         l.total_text, l.currency_text, l.rate_text, l.email, l.phone, l.first_name, l.last_name,
         l.customer_id, l.item_sku, l.item_name, l.quantity_text, l.price_text, l.item_product_id,
         l.item_variant_id, l.has_item, l.problem,
         case when l.loader_problem is not null then l.loader_column
              when split_part(l.problem, ' ', 1) in ('order_id', 'placed_at', 'status', 'total', 'currency', 'email',
                'first_name', 'last_name', 'customer_id', 'exchange_rate', 'item_name', 'item_quantity',
                'item_unit_price', 'item_product_id') then split_part(l.problem, ' ', 1) end as problem_column,
         bool_or(l.problem is not null) over orders as order_bad,
         bool_or(l.has_item) over orders as order_has_items,
         sum(round(l.quantity_text::numeric * l.price_text::numeric, 2))
           filter (where l.has_item and l.problem is null) over orders as order_items_total
  from (
    select o.*,
           coalesce(o.loader_problem,
             case
               when o.order_id is null then 'order_id is empty'
               when char_length(o.order_id) > 200 then 'order_id may have at most 200 characters'
               when o.placed_at_text is null and o.first_in_order then 'placed_at is empty'
               when o.placed_at_text is not null and o.placed_at is null then 'placed_at must be an ISO date or date-time'
               when o.status_text is null and o.first_in_order then 'status is empty'
               when o.status_text not in ('pending', 'paid', 'fulfilled', 'cancelled', 'refunded')
                 then 'status must be one of pending, paid, fulfilled, cancelled, refunded'
               when o.total_text is null and o.first_in_order and not o.has_item then 'total is empty'
               when o.total_text ~ '^-' then 'total must be zero or more'
               when o.total_text ~ '^[0-9]*\.[0-9]{3,}$' then 'total has more than two decimals'
               when o.total_text !~ '^(?:[0-9]{1,12}(?:\.[0-9]{0,2})?|\.[0-9]{1,2})$' then 'total is not a number below 1000000000000'
               when o.currency_text is null and o.first_in_order then 'currency is empty'
               when o.currency_text !~ '^[A-Z]{3}$' then 'currency must be a three-letter ISO code'
               when o.email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then 'email is not an email address'
               when char_length(o.first_name) > 200 then 'first_name may have at most 200 characters'
               when char_length(o.last_name) > 200 then 'last_name may have at most 200 characters'
               when char_length(o.customer_id) > 200 then 'customer_id may have at most 200 characters'
               when case when o.rate_text !~ '^(?:[0-9]{1,10}(?:\.[0-9]{0,8})?|\.[0-9]{1,8})$' then true
                         else o.rate_text::numeric = 0 end
                 then 'exchange_rate must be a number above 0 with at most 8 decimals'
               when o.rate_text is not null and o.total_text is not null
                    and round(o.total_text::numeric * o.rate_text::numeric, 2) >= 1e12
                 then 'exchange_rate makes the total 1000000000000 or more'
               when not o.first_in_order and (
                 o.placed_at_text <> o.order_placed_at or o.status_text <> o.order_status
                 or o.total_text is distinct from o.order_total and o.total_text is not null
                 or o.currency_text <> o.order_currency
                 or o.email is distinct from o.order_email and o.email is not null
                 or o.customer_id is distinct from o.order_customer_id and o.customer_id is not null)
                 then format('order %s: this line''s order fields differ from its first line (line %s)', left(o.order_id, 50), o.order_line)
               when not o.has_item then null
               when o.item_name is null and o.item_sku is null then 'item_name or item_sku is required for a line item'
               when char_length(coalesce(o.item_name, o.item_sku)) > 500 then 'item_name may have at most 500 characters'
               when char_length(o.item_sku) > 200 then 'item_name: its item_sku may have at most 200 characters'
               when char_length(o.item_product_id) > 200 or char_length(o.item_variant_id) > 200
                 then 'item_product_id and item_variant_id may have at most 200 characters'
               when case when o.quantity_text is null then true
                         when o.quantity_text !~ '^(?:[0-9]{1,10}(?:\.[0-9]{0,3})?|\.[0-9]{1,3})$' then true
                         else o.quantity_text::numeric = 0 end
                 then 'item_quantity must be a number above 0 with at most 3 decimals'
               when o.price_text is null then 'item_unit_price is empty'
               when o.price_text ~ '^-' then 'item_unit_price must be zero or more'
               when o.price_text ~ '^[0-9]*\.[0-9]{3,}$' then 'item_unit_price has more than two decimals'
               when o.price_text !~ '^(?:[0-9]{1,12}(?:\.[0-9]{0,2})?|\.[0-9]{1,2})$' then 'item_unit_price is not a number below 1000000000000'
               when round(o.quantity_text::numeric * o.price_text::numeric, 2) >= 1e12
                 then 'item_unit_price times item_quantity is 1000000000000 or more'
             end) as problem
    from (
      select s.*,
             first_value(s.placed_at_text) over w as order_placed_at,
             first_value(s.status_text) over w as order_status,
             first_value(s.total_text) over w as order_total,
             first_value(s.currency_text) over w as order_currency,
             first_value(s.email) over w as order_email,
             first_value(s.customer_id) over w as order_customer_id,
             first_value(s.line) over w as order_line,
             row_number() over w = 1 as first_in_order
      from (
        select t.*,
               -- An ISO date or date-time (no offset: UTC) that exists in the calendar.
               case when t.placed_at_text ~ '^(?:19|2[0-9])[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?(?:[Zz]|[+-](?:0[0-9]|1[0-5])(?::?[0-5][0-9])?)?)?$'
                     and substr(t.placed_at_text, 9, 2)::integer <= case substr(t.placed_at_text, 6, 2)::integer
                           when 2 then case when substr(t.placed_at_text, 1, 4)::integer % 4 = 0
                                             and (substr(t.placed_at_text, 1, 4)::integer % 100 <> 0
                                                  or substr(t.placed_at_text, 1, 4)::integer % 400 = 0) then 29 else 28 end
                           when 4 then 30 when 6 then 30 when 9 then 30 when 11 then 30 else 31 end
                    then t.placed_at_text::timestamptz end as placed_at,
               case when v_items then t.record - row_number() over (partition by t.order_id order by t.record)
                    else t.record end as order_key
        from (
          select r.record, r.line, r.problem as loader_problem, r.problem_column as loader_column,
                 nullif(btrim(r.order_id), '') as order_id,
                 nullif(btrim(r.placed_at), '') as placed_at_text,
                 nullif(lower(btrim(r.status)), '') as status_text,
                 nullif(btrim(r.total), '') as total_text,
                 nullif(upper(btrim(r.currency)), '') as currency_text,
                 nullif(lower(btrim(r.email)), '') as email,
                 nullif(btrim(r.phone), '') as phone,
                 nullif(btrim(r.first_name), '') as first_name,
                 nullif(btrim(r.last_name), '') as last_name,
                 nullif(btrim(r.customer_id), '') as customer_id,
                 nullif(btrim(r.exchange_rate), '') as rate_text,
                 nullif(btrim(r.item_sku), '') as item_sku,
                 nullif(btrim(r.item_name), '') as item_name,
                 nullif(btrim(r.item_quantity), '') as quantity_text,
                 nullif(btrim(r.item_unit_price), '') as price_text,
                 nullif(btrim(r.item_product_id), '') as item_product_id,
                 nullif(btrim(r.item_variant_id), '') as item_variant_id,
                 coalesce(nullif(btrim(r.item_sku), ''), nullif(btrim(r.item_name), ''), nullif(btrim(r.item_quantity), ''),
                          nullif(btrim(r.item_unit_price), ''), nullif(btrim(r.item_product_id), ''),
                          nullif(btrim(r.item_variant_id), '')) is not null as has_item
          from private.import_order_rows r
          where r.job_id = p_job_id and r.record > v_from and r.record <= v_to
        ) as t
      ) as s
      window w as (partition by s.order_id, s.order_key order by s.record)
    ) as o
  ) as l
  window orders as (partition by l.order_id, l.order_key);

  -- The customers of the chunk's valid orders, one per customer_id (else email), each found
  -- by customer_id (source manual), else by email, with an index probe on its key per customer
  -- whatever the planner knows of the tables' sizes; else new, with an id from its email (so customers
  -- sharing an email share the contact) or random when only a customer_id names it, behind the
  -- chunk's time in milliseconds (as in a UUIDv7): a chunk's new contacts land together at the
  -- end of the primary key's index instead of on random pages all over it.
  insert into private.import_order_customers (
    job_id, customer_key, record, email, phone, first_name, last_name, customer_id, contact_id, is_new,
    linked
  )
  select v_work, c.customer_key, c.record, c.email, c.phone, c.first_name, c.last_name, c.customer_id,
         coalesce(f.found, encode(overlay(
           coalesce(decode(md5(p_job_id::text || c.email), 'hex'), uuid_send(gen_random_uuid()))
           placing substring(int8send((extract(epoch from now()) * 1000)::bigint) from 3) from 1 for 6
         ), 'hex')::uuid),
         f.found is null, f.linked is not null
  from (
    select distinct on (k.customer_key) k.*
    from (
      select coalesce('id:' || l.customer_id, 'email:' || l.email) as customer_key, l.record,
             l.email, l.phone, l.first_name, l.last_name, l.customer_id
      from private.import_order_lines l
      where l.job_id = v_work and l.first_in_order and not l.order_bad and l.order_id is not null
    ) as k
    where k.customer_key is not null
    order by k.customer_key, k.record
  ) as c
  left join lateral (
    select x.contact_id as linked from public.contact_external_ids x
    where x.project_id = v_job.project_id and x.workspace_id = v_job.workspace_id
      and x.source = 'manual' and x.external_id = c.customer_id
    offset 0
  ) as i on true
  -- By email only when no customer_id found it; the email as a range ordered by email (one row
  -- at most), which only the (workspace_id, email) key serves without a sort.
  left join lateral (
    select k.id as by_email from public.contacts k
    where i.linked is null and k.workspace_id = v_job.workspace_id
      and k.email >= c.email and k.email <= c.email
    order by k.email
    limit 1
  ) as e on true
  cross join lateral (
    select coalesce(i.linked, e.by_email) as found, i.linked
  ) as f;

  -- The counter is locked (and the limit read) only when the chunk has new customers.
  v_room := case when exists (select 1 from private.import_order_customers n
                              where n.job_id = v_work and n.is_new)
                 then private.contacts_room(v_job.workspace_id) else 0 end;
  update private.import_order_customers c set over_limit = true
  where c.job_id = v_work and c.is_new and c.contact_id in (
    select n.contact_id from private.import_order_customers n where n.job_id = v_work and n.is_new
    group by n.contact_id order by min(n.record) offset v_room
  );

  insert into public.contacts (id, workspace_id, email, phone, first_name, last_name)
  select distinct on (c.contact_id) c.contact_id, v_job.workspace_id, c.email, c.phone, c.first_name, c.last_name
  from private.import_order_customers c
  where c.job_id = v_work and c.is_new and not c.over_limit
  order by c.contact_id, c.record
  on conflict (workspace_id, email) do nothing;
  get diagnostics v_created = row_count;
  if v_created < (select count(distinct c.contact_id) from private.import_order_customers c
                  where c.job_id = v_work and c.is_new and not c.over_limit) then
    -- Someone else created one of these emails meanwhile: use theirs.
    update private.import_order_customers c
    set contact_id = coalesce(e.by_email, c.contact_id),
        is_new = e.by_email is null or e.by_email = c.contact_id
    from private.import_order_customers n
    left join lateral (
      select k.id as by_email from public.contacts k
      where k.workspace_id = v_job.workspace_id and k.email >= n.email and k.email <= n.email
      order by k.email
      limit 1
    ) as e on true
    where c.job_id = v_work and c.is_new and c.email is not null
      and n.job_id = c.job_id and n.customer_key = c.customer_key;
  end if;

  insert into public.contact_external_ids (project_id, workspace_id, contact_id, source, external_id)
  select v_job.project_id, v_job.workspace_id, c.contact_id, 'manual', c.customer_id
  from private.import_order_customers c
  where c.job_id = v_work and c.customer_id is not null and not c.over_limit
    and not c.linked
  on conflict do nothing;

  update public.contacts k
  set phone = coalesce(k.phone, c.phone), first_name = coalesce(k.first_name, c.first_name),
      last_name = coalesce(k.last_name, c.last_name)
  from private.import_order_customers c
  where c.job_id = v_work and not c.is_new and c.contact_id = k.id
    and (k.phone is null and c.phone is not null or k.first_name is null and c.first_name is not null
         or k.last_name is null and c.last_name is not null);

  -- One row per valid order, from its first line (an order with any bad line has none), with its
  -- customer's contact (or why it is refused) and the id of the order already stored, if any.
  select p.contact_limit into v_max
  from public.workspaces w join public.plans p on p.tier = w.plan_tier where w.id = v_job.workspace_id;
  insert into private.import_order_heads (
    job_id, order_id, order_key, record, line, placed_at, status, currency, exchange_rate, total,
    email, phone, first_name, last_name, customer_id, customer_key, has_items, contact_id,
    rejected, stored_id
  )
  select v_work, f.order_id, f.order_key, f.record, f.line, f.placed_at, f.status, f.currency,
         f.exchange_rate::numeric, coalesce(f.total::numeric, f.order_items_total), f.email, f.phone,
         f.first_name, f.last_name, f.customer_id, c.customer_key, f.order_has_items,
         case when not c.over_limit then c.contact_id end,
         case when c.over_limit then format('Your plan allows %s contacts; this order''s customer would be over the limit', v_max) end,
         (select o.id from public.orders o
          where o.workspace_id = v_job.workspace_id and o.project_id = v_job.project_id
            and o.source = v_source and o.external_id = f.order_id)
  from private.import_order_lines f
  left join lateral (
    select c.customer_key, c.over_limit, c.contact_id from private.import_order_customers c
    where c.job_id = v_work and c.customer_key = coalesce('id:' || f.customer_id, 'email:' || f.email)
    offset 0
  ) as c on true
  where f.job_id = v_work and f.first_in_order and not f.order_bad and f.order_id is not null;
  select count(*) into v_valid
  from private.import_order_heads h where h.job_id = v_work and h.rejected is null;

  -- Every line of a bad or rejected order is reported (when the chunk has any).
  if v_valid < (select count(*) from private.import_order_lines l
                where l.job_id = v_work and l.first_in_order) then
    select jsonb_agg(jsonb_build_object('line', e.line, 'column_name', e.problem_column, 'reason', e.reason)
                     order by e.line)
    into v_errors
    from (
      select l.line, l.problem_column,
             coalesce(l.problem, l.rejected,
                      format('not imported: order %s has an error on line %s', left(l.order_id, 50), l.bad_line)) as reason
      from (
        select b.line, b.order_id, b.problem, b.problem_column,
               min(b.line) filter (where b.problem is not null) over (partition by b.order_id, b.order_key) as bad_line,
               (select h.rejected from private.import_order_heads h
                where h.job_id = v_work and h.order_id = b.order_id and h.order_key = b.order_key) as rejected
        from private.import_order_lines b
        where b.job_id = v_work
      ) as l
      where l.problem is not null or l.rejected is not null or l.bad_line is not null
    ) as e;
  end if;

  -- Staged parts follow the file's order (one at a time, the job locked), so the first 1000 row
  -- errors kept are the file's first, whichever part is written first.
  if v_errors is not null then
    perform private.record_import_errors(v_job, v_errors);
  end if;

  insert into private.import_order_chunks (job_id, first_record, upto, work_id, lines)
  values (p_job_id, v_from, v_to, v_work,
          (select count(*) from private.import_order_lines l where l.job_id = v_work));
  return next v_job;
end
$$;

revoke all on function private.stage_orders_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.stage_orders_chunk(uuid, integer) to service_role;

-- The shop deleted a customer (see 20261209123000): their shop id in the project no longer names
-- the contact (another project's customer of that id keeps theirs). Answers whether a link was
-- removed.
create or replace function private.forget_shop_customer(p_project_id uuid, p_source text, p_external_id text)
returns boolean
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
  delete from public.contact_external_ids x
  where x.project_id = p_project_id and x.workspace_id = v_workspace_id
    and x.source = p_source and x.external_id = p_external_id;
  return found;
end
$$;

revoke all on function private.forget_shop_customer(uuid, text, text) from public, anon, authenticated;

grant execute on function private.forget_shop_customer(uuid, text, text) to service_role;

-- customers/redact (see 20270122090000): the shop's customer (mapped by the edge: external_id,
-- email, order_ids) is erased through the erasure path (private.erase_contacts: the contact linked
-- to the Shopify customer id in the project, and the live contact with that email in the
-- project's workspace), and the
-- listed orders of the project's Shopify source lose their contact link, as erasure treats
-- orders (orders hold no other personal field). Answers the contacts erased.
create or replace function private.redact_shop_customer(p_project_id uuid, p_source text, p_request jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_ids uuid[];
  v_erased integer;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    return 0;
  end if;
  select coalesce(array_agg(distinct m.id), '{}') into v_ids
  from (
    select x.contact_id as id from public.contact_external_ids x
    where x.project_id = p_project_id and x.workspace_id = v_workspace_id and x.source = p_source
      and x.external_id = p_request ->> 'external_id'
    union all
    select c.id from public.contacts c
    where c.workspace_id = v_workspace_id and c.erased_at is null
      and c.email = lower(btrim(p_request ->> 'email'))
  ) as m;
  v_erased := private.erase_contacts(v_workspace_id, v_ids, null);
  if jsonb_typeof(p_request -> 'order_ids') = 'array' then
    update public.orders o set contact_id = null, updated_at = now()
    where o.workspace_id = v_workspace_id and o.project_id = p_project_id
      and o.source = p_source and o.contact_id is not null
      and o.external_id in (select jsonb_array_elements_text(p_request -> 'order_ids'));
  end if;
  return v_erased;
end
$$;

revoke all on function private.redact_shop_customer(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.redact_shop_customer(uuid, text, jsonb) to service_role;

-- customers/data_request (see 20270122090000): an access request for the shop's customer (the
-- contact linked to the Shopify customer id in the project, else the live contact with that email
-- in the project's workspace),
-- recorded as the access-request path records one (public.contact_exports, queued, no
-- requesting user; its insert is audited as export.requested and broadcast to the workspace's
-- admins, and the privacy-exports cron runs it), plus an audit entry naming Shopify's request
-- id. Nothing goes to Shopify. An unknown or erased customer records nothing. Answers the
-- export's id or null.
create or replace function private.record_shop_data_request(p_project_id uuid, p_source text, p_request jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_contact_id uuid;
  v_export_id uuid;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    return null;
  end if;
  select x.contact_id into v_contact_id
  from public.contact_external_ids x join public.contacts c on c.id = x.contact_id
  where x.project_id = p_project_id and x.workspace_id = v_workspace_id and x.source = p_source
    and x.external_id = p_request ->> 'external_id' and c.erased_at is null;
  if v_contact_id is null then
    select c.id into v_contact_id from public.contacts c
    where c.workspace_id = v_workspace_id and c.erased_at is null
      and c.email = lower(btrim(p_request ->> 'email'));
  end if;
  if v_contact_id is null then
    return null;
  end if;
  insert into public.contact_exports (workspace_id, contact_id, requested_by)
  values (v_workspace_id, v_contact_id, null)
  returning id into v_export_id;
  perform private.audit(v_workspace_id, 'shop.data_request', 'contact', v_contact_id::text,
                        jsonb_build_object('source', p_source, 'project_id', p_project_id,
                                           'export_id', v_export_id,
                                           'data_request_id', p_request ->> 'data_request_id'));
  return v_export_id;
end
$$;

revoke all on function private.record_shop_data_request(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.record_shop_data_request(uuid, text, jsonb) to service_role;

-- shop/redact (48 hours after the app was uninstalled; see 20270122090000): the project's Shopify
-- connection goes
-- (its sealed credentials and settings; with it, by cascade, its sync and bulk-operation
-- progress, and its running backfill jobs fail as integration_disconnected), and so does what
-- the project holds from that shop about people: its Shopify checkouts (carts and recovery
-- links) and the project's stored Shopify webhook payloads (but the shop/redact deliveries,
-- which name only the shop), and the project's Shopify customer ids (another project's shop keeps
-- its own: the ids are per project). Contacts, their consents and the orders (which hold no personal
-- field beyond the contact link) stay: they are the workspace's own records; a person's
-- erasure is customers/redact. Answers the rows removed per table.
create or replace function private.redact_shop(p_project_id uuid, p_source text, p_request jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_rows jsonb := '{}'::jsonb;
  v_count integer;
begin
  select i.workspace_id into v_workspace_id
  from private.integrations i where i.project_id = p_project_id and i.source = p_source;
  if v_workspace_id is null then
    return jsonb_build_object('shop_domain', p_request ->> 'shop_domain', 'integrations', 0);
  end if;

  delete from public.checkouts c
  where c.workspace_id = v_workspace_id and c.project_id = p_project_id and c.source = p_source;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('checkouts', v_count);

  delete from private.webhook_events e
  where e.provider = p_source
    and e.event_id like p_project_id::text || ':%'
    and e.event_id not like p_project_id::text || ':shop/redact:%';
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('webhook_events', v_count);

  delete from public.contact_external_ids x
  where x.project_id = p_project_id and x.workspace_id = v_workspace_id and x.source = p_source;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('contact_external_ids', v_count);

  delete from private.integrations i where i.project_id = p_project_id and i.source = p_source;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('integrations', v_count);

  perform private.audit(v_workspace_id, 'shop.redacted', 'project', p_project_id::text,
                        jsonb_build_object('source', p_source, 'rows', v_rows));
  return v_rows;
end
$$;

revoke all on function private.redact_shop(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.redact_shop(uuid, text, jsonb) to service_role;

-- superseded signatures (their callers above pass the project) ---------------------------------

drop function private.upsert_customers(uuid, text, jsonb);

drop function private.upsert_contact(uuid, text, jsonb);
