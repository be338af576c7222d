-- Orders and checkouts are keyed per project: (project_id, workspace_id, source, external_id).
--
-- Integrations are per project and source, so a workspace can connect two WooCommerce stores (or
-- two Shoptet shops) in two projects, and their ids are the store's own (order 1, 2, 3…). With
-- orders unique per workspace and source, store B's order 1 updated store A's order 1 (status,
-- total, contact, lines) and stayed in project A; two projects' CSV imports of `#1001` did the
-- same. Now each project's order 1 is its own order, written and found only by its own project's
-- writers: the shop webhooks and syncs (private.upsert_orders, private.upsert_order), checkouts
-- (private.upsert_checkout) and the orders import (stage_orders_chunk finds the stored order,
-- write_orders_chunk updates it and replaces its lines, validate_orders_import takes over the
-- project's own csv orders for the store's ids). A Shopify export imported into another project
-- than the connected store's is that project's orders (it no longer updates the store's).
--
-- The new key is built as a unique index first (every stored row is unique by it already: the
-- old key is narrower) and then becomes the constraint; the old constraint goes. The key leads
-- with the project, so it also serves the foreign key to the project (and the reads of a
-- project's orders) in place of the (project_id, workspace_id) index, which goes: a look-up by
-- the whole key has one index to take, also on a table the planner has no statistics for (with
-- both, it read the project's orders once per order looked up). The old key's columns stay
-- indexed, not unique, as (workspace_id, source, external_id): the members' policy and a
-- workspace's reads filter by its workspace_id, and an order found by its number across the
-- workspace (the Data API: workspace, source, external id) stays one index probe (with
-- (workspace_id) alone it read every order of the workspace).
--
-- Lock order: the migration is one transaction, and a lock it takes is held until it commits.
-- Every index is built first, under CREATE INDEX's SHARE lock (writes wait, reads go on); only
-- then do the constraints change and the superseded indexes go, under ACCESS EXCLUSIVE (reads
-- wait too), which is a change of the catalog only, with no scan or sort of either table.
--
-- Copied and changed (each only where it finds or conflicts on an order or checkout):
--   private.upsert_order from 20261123100000_customers_orders.sql: its conflict target.
--   private.upsert_orders and private.upsert_checkout from 20270207090000_shop_rows_checked.sql:
--     the stored order (or checkout) is looked up in p_project_id; the conflict target.
--   private.validate_orders_import, private.write_orders_chunk, private.stage_orders_chunk from
--     20270212090000_shopify_export_orders_keyed_as_the_store.sql: each look-up of a stored order
--     is in the job's project; write_orders_chunk no longer links lines of orders another project
--     keeps (an order the job writes is always its project's); its delete of the changed orders'
--     lines finds each order's lines by a probe of their order key, and deletes them by their
--     primary key (mendlink31: by ctid, a line a product page linked meanwhile, a new row
--     version, was skipped and kept beside its replacement); it links the lines it writes in the
--     insert that writes them (mendlink31: they were left unlinked for the job's end, which read
--     every unlinked line of the workspace naming a product, 2.2 s beside 200,000 in another
--     project, and which a cancelled or failed job never reached, leaving its written parts'
--     lines unlinked for good).

-- tables --------------------------------------------------------------------------------------

-- indexes first (SHARE lock: reads go on) ------------------------------------------------------

create unique index orders_project_source_external_id_key
  on public.orders (project_id, workspace_id, source, external_id);

create index orders_workspace_source_external_id_idx
  on public.orders (workspace_id, source, external_id);

create unique index checkouts_project_source_external_id_key
  on public.checkouts (project_id, workspace_id, source, external_id);

create index checkouts_workspace_source_external_id_idx
  on public.checkouts (workspace_id, source, external_id);

-- then the catalog swap (ACCESS EXCLUSIVE: no index is built from here on) ---------------------

alter table public.orders drop constraint orders_workspace_id_source_external_id_key;

alter table public.orders
  add constraint orders_project_source_external_id_key
  unique using index orders_project_source_external_id_key;

drop index public.orders_project_id_workspace_id_idx;

alter table public.checkouts drop constraint checkouts_workspace_id_source_external_id_key;

alter table public.checkouts
  add constraint checkouts_project_source_external_id_key
  unique using index checkouts_project_source_external_id_key;

drop index public.checkouts_project_idx;

-- functions -----------------------------------------------------------------------------------

-- An order from a shop or a CSV row (see 20261123100000): its project's order of that source and
-- id is created or updated.
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
  v_contact_id := private.upsert_contact(v_workspace_id, p_source, p_order -> 'customer');
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

-- A page of orders (see 20270207090000): each written as its project's order of that source and
-- id; another project's order of the same id is another order.
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
    v_workspace_id, p_source,
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
              where x.workspace_id = v_workspace_id and x.source = v_id_source
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

-- A checkout webhook's checkout (see 20270207090000): its project's checkout of that id.
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
    perform private.upsert_customers(v_workspace_id, p_source,
      jsonb_build_array(v_customer || jsonb_build_object('email', v_email)));
    select coalesce(
      (select x.contact_id from public.contact_external_ids x
       where x.workspace_id = v_workspace_id and x.source = p_source and x.external_id = v_customer ->> 'external_id'),
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

-- Shopify's Id first (a Shopify export with its Id column): each order, the run of consecutive
-- rows with its Name, takes the Id of its first row as order_id (a later run of the Name, rows of
-- the order that turn up again, takes the Id of the Name's first row, and the repeat check
-- reports it); an order whose first row has no Id, or one that is not Shopify's (a whole number,
-- as its webhooks write it), is reported on each of its rows. Then, as before, repeated order
-- ids (or an order's lines that are not consecutive) are marked, and the job moves on: to
-- importing, or straight to done when the file has no rows. The csv orders taken over are the
-- job project's, and the store's order that keeps them from it is the project's too.
create or replace function private.validate_orders_import(p_job_id uuid)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_custom_plan
as $$
declare
  v_job public.import_jobs;
  v_name text;
  v_shop_id text;
begin
  select * into v_job from public.import_jobs j where j.id = p_job_id;
  if private.import_order_source(v_job) = 'shopify' then
    -- The project's orders imported from the export before its Id was read (source csv, the
    -- Name) become the store's, unless the store's order is already there: importing the export
    -- again does not bring them twice. Another project's csv order of that Name (another store's
    -- or tool's `#1001`) is not this store's and stays as it is.
    begin
      update public.orders o
      set source = 'shopify', external_id = k.shop_id
      from (
        select distinct on (btrim(t.shop_order_id)) btrim(t.order_id) as name, btrim(t.shop_order_id) as shop_id
        from private.import_order_rows t
        where t.job_id = p_job_id and t.problem is null and btrim(t.order_id) <> ''
          and btrim(t.shop_order_id) ~ '^[1-9][0-9]{0,19}$'
        order by btrim(t.shop_order_id), t.record
      ) as k
      where o.workspace_id = v_job.workspace_id and o.project_id = v_job.project_id
        and o.source = 'csv' and o.external_id = k.name
        and not exists (select 1 from public.orders s
                        where s.workspace_id = v_job.workspace_id and s.project_id = v_job.project_id
                          and s.source = 'shopify' and s.external_id = k.shop_id);
    exception when unique_violation then
      -- The store's backfill or a webhook wrote one of these orders since the check above: the
      -- orders are taken over one at a time, and one the store now has stays as it is.
      for v_name, v_shop_id in
        select distinct on (btrim(t.shop_order_id)) btrim(t.order_id), btrim(t.shop_order_id)
        from private.import_order_rows t
        where t.job_id = p_job_id and t.problem is null and btrim(t.order_id) <> ''
          and btrim(t.shop_order_id) ~ '^[1-9][0-9]{0,19}$'
        order by btrim(t.shop_order_id), t.record
      loop
        begin
          update public.orders o
          set source = 'shopify', external_id = v_shop_id
          where o.workspace_id = v_job.workspace_id and o.project_id = v_job.project_id
            and o.source = 'csv' and o.external_id = v_name
            and not exists (select 1 from public.orders s
                            where s.workspace_id = v_job.workspace_id and s.project_id = v_job.project_id
                              and s.source = 'shopify' and s.external_id = v_shop_id);
        exception when unique_violation then
          null;
        end;
      end loop;
    end;
    update private.import_order_rows r
    set order_id = coalesce(d.shop_id, r.order_id),
        problem = coalesce(r.problem, d.bad),
        problem_column = case when r.problem is null and d.bad is not null then 'order_id' else r.problem_column end
    from (
      select f.record, f.shop_id,
             case when f.shop_id is null
                    then format('order %s: Id is empty on its first line (line %s)', left(f.name, 50), f.first_line)
                  when f.shop_id !~ '^[1-9][0-9]{0,19}$'
                    then format('order %s: Id must be Shopify''s order id, a whole number (line %s)', left(f.name, 50), f.first_line)
             end as bad
      from (
        select s.record, s.name, first_value(s.line) over w as first_line,
               -- Rows of an order that turn up again later take its Id, for the repeat check.
               coalesce(first_value(s.shop_id) over w,
                        first_value(s.shop_id) over (partition by s.name order by s.record)) as shop_id
        from (
          select t.record, t.line, btrim(t.order_id) as name, nullif(btrim(t.shop_order_id), '') as shop_id,
                 t.record - row_number() over (partition by btrim(t.order_id) order by t.record) as run
          from private.import_order_rows t
          where t.job_id = p_job_id and btrim(t.order_id) <> ''
        ) as s
        window w as (partition by s.name, s.run order by s.record)
      ) as f
    ) as d
    where r.job_id = p_job_id and r.record = d.record;
  end if;
  -- Only a file with a repeated id (any file with line items) numbers its rows per id.
  if exists (select 1 from private.import_order_rows e
             where e.job_id = p_job_id and e.problem is null and btrim(e.order_id) <> ''
             group by btrim(e.order_id) having count(*) > 1) then
    update private.import_order_rows r
    set problem = case when private.import_has_items(v_job)
                    then format('the lines of order %s must be consecutive; it started on line %s', left(d.order_id, 50), d.first_line)
                    else format('order_id repeats line %s', d.first_line) end,
        problem_column = 'order_id'
    from (
      select s.record, btrim(s.order_id) as order_id, first_value(s.line) over w as first_line,
             first_value(s.record) over w as first_record, row_number() over w as n
      from private.import_order_rows s
      where s.job_id = p_job_id and s.problem is null and btrim(s.order_id) <> ''
      window w as (partition by btrim(s.order_id) order by s.record)
    ) as d
    where r.job_id = p_job_id and r.record = d.record and d.n > 1
      and (not private.import_has_items(v_job) or d.record - d.first_record <> d.n - 1);
  end if;
  update public.import_jobs j
  set status = case when j.rows_total = 0 then 'done' else 'importing' end,
      finished_at = case when j.rows_total = 0 then now() else j.finished_at end
  where j.id = p_job_id and j.status = 'validating'
  returning * into v_job;
  return v_job;
end
$$;

revoke all on function private.validate_orders_import(uuid) from public, anon, authenticated;

grant execute on function private.validate_orders_import(uuid) to service_role;

-- A part of the file written (see 20270212090000): the stored orders it updates are the job's
-- project's; the lines it writes are linked as they are written (the job's end links nothing).
create or replace function private.write_orders_chunk(p_job_id uuid)
returns setof public.import_jobs
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
set jit = off
as $$
declare
  v_chunk private.import_order_chunks;
  v_job public.import_jobs;
  v_items boolean;
  v_base_currency text;
  v_valid integer;
  v_created integer := 0;
  v_updated integer := 0;
  v_written uuid[];
  v_changed uuid[];
  v_work uuid;
  v_source text;
begin
  -- Catalog writers and order-line writers of a project run one after the other (lockfix31): a
  -- part links its lines in its own insert and a product page or products chunk links the
  -- project's unlinked lines naming what it wrote, each seeing only rows committed before its
  -- statement began; run side by side, neither saw the other's rows and the lines stayed
  -- unlinked for good. Parts share the lock (one waits for another only behind a catalog writer
  -- queued between them, which runs between the two); a catalog writer
  -- (private.upsert_products, private.import_products_chunk) takes it exclusively. Whichever
  -- waits runs its statements after the other committed (READ COMMITTED), so it links the
  -- other's rows. Taken before any row lock of the part (its chunk, its orders, the lines it
  -- replaces), so a catalog writer never waits for a row this part holds while the part waits
  -- for the lock. The job's project is read without a lock (it never changes).
  perform pg_catalog.pg_advisory_xact_lock_shared(
    pg_catalog.hashtext('growthbase.project_catalog'), pg_catalog.hashtext(j.project_id::text))
  from public.import_jobs j where j.id = p_job_id;

  select * into v_chunk from private.import_order_chunks c
  where c.job_id = p_job_id and not c.written
  order by c.first_record
  limit 1
  for update skip locked;
  if not found then
    return;
  end if;
  v_work := v_chunk.work_id;
  select * into v_job from public.import_jobs j where j.id = p_job_id;
  v_source := private.import_order_source(v_job);
  if v_job.status is distinct from 'importing' then
    return next v_job;
    return;
  end if;
  if v_chunk.lines > 0 and not exists (select 1 from private.import_order_lines l where l.job_id = v_work) then
    return next private.fail_import_job(p_job_id, 'staging_lost',
      'The database restarted while this file was being imported; what was imported stays, import the file again for the rest');
    return;
  end if;
  v_items := private.import_has_items(v_job);
  select w.base_currency into v_base_currency from public.workspaces w where w.id = v_job.workspace_id;

  select count(*) into v_valid
  from private.import_order_heads h where h.job_id = v_work and h.rejected is null;

  -- Orders already stored (found by an index probe each, when the part was staged) whose values
  -- differ are updated, the others left alone, and new ones inserted without a conflict check
  -- per row. An order stored since the part was staged (another import of the project) fails
  -- the insert: the part's orders are looked up again and written again.
  loop
    begin
      with written as (
        update public.orders o
        set contact_id = coalesce(h.contact_id, o.contact_id), status = h.status,
            placed_at = h.placed_at, total = h.total, currency = h.currency,
            exchange_rate = h.exchange_rate, base_total = n.base_total
        from private.import_order_heads h
        cross join lateral (
          select case when h.currency = v_base_currency then h.total
                      else round(h.total * h.exchange_rate, 2) end as base_total
        ) as n
        where h.job_id = v_work and h.rejected is null and o.id = h.stored_id
          and (o.contact_id, o.status, o.placed_at, o.total, o.currency, o.exchange_rate, o.base_total)
              is distinct from (coalesce(h.contact_id, o.contact_id), h.status, h.placed_at, h.total,
                                h.currency, h.exchange_rate, n.base_total)
        returning o.id
      )
      select count(*), coalesce(array_agg(w.id), '{}') into v_updated, v_written from written w;
    
      insert into public.orders (
        id, workspace_id, project_id, contact_id, source, external_id, status, placed_at, total,
        currency, exchange_rate, base_total
      )
      select encode(overlay(uuid_send(gen_random_uuid())
                    placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
                    from 1 for 6), 'hex')::uuid,
             v_job.workspace_id, v_job.project_id, h.contact_id, v_source, h.order_id, h.status,
             h.placed_at, h.total, h.currency, h.exchange_rate,
             case when h.currency = v_base_currency then h.total else round(h.total * h.exchange_rate, 2) end
      from private.import_order_heads h
      where h.job_id = v_work and h.rejected is null and h.stored_id is null
      order by h.contact_id, h.record;
      get diagnostics v_created = row_count;
      exit;
    exception when unique_violation then
      update private.import_order_heads h
      set stored_id = (select o.id from public.orders o
                       where o.workspace_id = v_job.workspace_id and o.project_id = v_job.project_id
                         and o.source = v_source and o.external_id = h.order_id)
      where h.job_id = v_work and h.rejected is null and h.stored_id is null;
    end;
  end loop;

  if v_items then
    -- Lines are replaced only for orders whose stored lines differ from the file's. The store is
    -- the authority for its own lines: an order the store wrote with its product or variant ids
    -- (private.upsert_orders) keeps its lines when the export (no ids, its own line names) is
    -- imported over it, so a line without a SKU keeps its product; its order's fields are updated.
    with file_lines as (
      select o.id as order_id,
             concat_ws(e'\x1f', l.item_sku, coalesce(l.item_name, l.item_sku), l.item_quantity::numeric(14, 3),
                       l.item_unit_price::numeric(14, 2), l.item_product_id, l.item_variant_id) as fingerprint
      from private.import_order_lines l
      cross join lateral (
        select h.order_id from private.import_order_heads h
        where h.job_id = v_work and h.order_id = l.order_id and h.order_key = l.order_key
          and h.rejected is null and h.has_items
        offset 0
      ) as h
      cross join lateral (
        select o.id from public.orders o
        where o.workspace_id = v_job.workspace_id and o.project_id = v_job.project_id
          and o.source = v_source and o.external_id = h.order_id
        offset 0
      ) as o
      where l.job_id = v_work and l.has_item
    )
    select coalesce(array_agg(f.order_id), '{}') into v_changed
    from (
      select fl.order_id, array_agg(fl.fingerprint order by fl.fingerprint) as lines
      from file_lines fl group by fl.order_id
    ) as f
    where f.lines is distinct from (
      select array_agg(k.fingerprint order by k.fingerprint)
      from public.order_items s
      cross join lateral (
        select concat_ws(e'\x1f', s.sku, s.name, s.quantity, s.unit_price, s.external_product_id,
                         s.external_variant_id) as fingerprint
      ) as k
      where s.order_id = f.order_id
    )
    and not (v_source = 'shopify' and exists (
      select from public.order_items s
      where s.order_id = f.order_id
        and (s.external_product_id is not null or s.external_variant_id is not null)
    ));

    -- The changed orders' lines, each order's found by a probe of the lines' order key whatever
    -- the planner knows (`order_id = any (v_changed)` over a table without statistics was planned
    -- as a scan of every workspace's lines), and deleted by their primary key: a line another
    -- transaction updated meanwhile (a product page linking it) is rechecked in its new version,
    -- which keeps its id but not its ctid (by ctid it was skipped, and the order kept its old
    -- line beside the new one).
    delete from public.order_items s
    where s.id = any (array(
      select i.id
      from unnest(v_changed) as c(order_id)
      cross join lateral (
        select i.id from public.order_items i where i.order_id = c.order_id offset 0
      ) as i
    ));

    -- The part's lines are linked to the catalog in the insert that writes them, by the rules
    -- of private.link_inserted_order_items: by the shop's product id (and variant id within that
    -- product) in the order's project and source (the job's), else by a SKU that names exactly
    -- one variant, else exactly one product, of the project; each product and variant by a probe
    -- of its key. The setting marks the insert for order_items_link_catalog, which skips it. A
    -- written part's lines are thus linked when it commits, whether or not its job ends done;
    -- the job's end reads no line.
    perform pg_catalog.set_config('growthbase.lines_linked_by_writer', 'on', true);
    insert into public.order_items (order_id, workspace_id, sku, name, quantity, unit_price, total,
                                    external_product_id, external_variant_id, product_id, variant_id)
    select o.id, v_job.workspace_id, l.item_sku, coalesce(l.item_name, l.item_sku),
           l.item_quantity::numeric(14, 3), l.item_unit_price::numeric(14, 2),
           round(l.item_quantity::numeric(14, 3) * l.item_unit_price::numeric(14, 2), 2),
           l.item_product_id, l.item_variant_id, coalesce(e.product_id, vs.product_id, ps.product_id),
           case when e.product_id is not null then e.variant_id else vs.variant_id end
    from private.import_order_lines l
    cross join lateral (
      select h.order_id from private.import_order_heads h
      where h.job_id = v_work and h.order_id = l.order_id and h.order_key = l.order_key
        and h.rejected is null
      offset 0
    ) as h
    cross join lateral (
      select o.id, o.project_id from public.orders o
      where o.workspace_id = v_job.workspace_id and o.project_id = v_job.project_id
        and o.source = v_source and o.external_id = h.order_id
      offset 0
    ) as o
    -- A variant belongs to its product's workspace (the foreign key): found by the product's id,
    -- which no index but the variants' key leads with.
    left join lateral (
      select p.id as product_id,
             (select v.id from public.product_variants v
              where v.product_id = p.id and v.external_id = l.item_variant_id) as variant_id
      from public.products p
      where p.workspace_id = v_job.workspace_id and p.project_id = o.project_id and p.source = v_source
        and p.external_id = l.item_product_id
      offset 0
    ) as e on true
    left join lateral (
      select min(v.product_id::text)::uuid as product_id, min(v.id::text)::uuid as variant_id
      from public.product_variants v
      join public.products p on p.id = v.product_id
      where e.product_id is null and v.workspace_id = v_job.workspace_id and v.sku = l.item_sku
        and p.project_id = o.project_id
      having count(*) = 1
    ) as vs on true
    left join lateral (
      select min(p.id::text)::uuid as product_id
      from public.products p
      where e.product_id is null and vs.product_id is null and p.project_id = o.project_id
        and p.sku = l.item_sku
      having count(*) = 1
    ) as ps on true
    where l.job_id = v_work and l.has_item and o.id = any (v_changed)
    order by l.record;
    perform pg_catalog.set_config('growthbase.lines_linked_by_writer', 'off', true);
    -- Orders whose lines alone changed count as updated.
    v_updated := v_updated + (
      select count(*) from private.import_order_heads h
      where h.job_id = v_work and h.stored_id = any (v_changed) and h.stored_id <> all (v_written)
    );
  end if;

  delete from private.import_order_lines w where w.job_id = v_work;
  delete from private.import_order_heads w where w.job_id = v_work;
  delete from private.import_order_customers w where w.job_id = v_work;

  update private.import_order_chunks c set written = true
  where c.job_id = p_job_id and c.first_record = v_chunk.first_record;
  -- The job's row is locked before it is booked, so the statement that books it sees every part
  -- that another worker wrote and committed meanwhile.
  perform 1 from public.import_jobs j where j.id = p_job_id for update;
  update public.import_jobs j
  set rows_processed = j.rows_processed + (v_chunk.upto - v_chunk.first_record),
      created = j.created + v_created,
      updated = j.updated + v_updated,
      unchanged = j.unchanged + v_valid - v_created - v_updated,
      merge_record = p.merged,
      status = case when p.merged >= j.rows_total then 'done' else j.status end,
      finished_at = case when p.merged >= j.rows_total then now() end
  from (
    select coalesce(min(c.first_record) filter (where not c.written), max(c.upto)) as merged
    from private.import_order_chunks c where c.job_id = p_job_id
  ) as p
  where j.id = p_job_id
  returning j.* into v_job;
  return next v_job;
end
$$;

revoke all on function private.write_orders_chunk(uuid) from public, anon, authenticated;

grant execute on function private.write_orders_chunk(uuid) to service_role;

-- A part of the file staged (see 20270212090000): each order's stored id is the job's project's
-- order of that id.
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
    where x.workspace_id = v_job.workspace_id and x.source = 'manual' and x.external_id = c.customer_id
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

  insert into public.contact_external_ids (workspace_id, contact_id, source, external_id)
  select v_job.workspace_id, c.contact_id, 'manual', c.customer_id
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
