-- A shop's row that breaks a rule of its table is left out (or its bad value dropped), not its
-- page or its webhook.
--
-- 20270205090000_shop_values_fitted.sql fitted over-long values; every other rule of the
-- tables still failed a whole statement: one Shopify order with a negative total, a currency
-- that is not a code, a date Postgres cannot read, or a line with quantity 0 failed the
-- 1,000-order backfill page it came in (the backfill stalled on that page at every call), and a
-- webhook's order failed its apply until it was dead-lettered. The functions every webhook,
-- backfill and sync writes through now check each row against its table's rules first:
--
-- orders (private.upsert_orders), per order:
--   - left out (the page's other orders are written; a stored copy stays as it was): a total
--     that is not a non-negative amount (negative, not a number, missing, 10^12 or more), a
--     currency that is not a three-letter code (its money would mean nothing), a date that
--     cannot be read (not ISO 8601, no such day, an offset beyond ±15:59) for an order not yet
--     stored, a document that is not an object;
--   - its bad value replaced: a status that is not one of ours keeps the stored order's status
--     (`pending` for a new order, as the mappers treat a shop's status they do not know); a date
--     that cannot be read keeps the stored order's; an exchange rate that is not a positive
--     number is dropped (base_total is then null, as for an order without a rate), as is a
--     base total too large for its column;
--   - order lines: a line whose quantity is not above 0, whose unit price is not a non-negative
--     amount, or whose total would not fit is left out (it describes nothing sold at a known
--     price); a line without a SKU or name is kept (its name falls back to the SKU, else `item`);
--     `items` that is not a list leaves the stored lines as they were; each line keeps the shop's
--     product and variant ids (an item's `product_id` / `variant_id`, text up to 200 characters,
--     as the shop's catalog stores them) and is written with its product (and variant), by the
--     rules of private.link_inserted_order_items (20270211090000): by those ids within the
--     order's project and source, else by SKU; the statement is marked with the
--     transaction-local setting growthbase.lines_linked_by_writer (off again after it), which
--     that trigger skips: a linked line is written once, not inserted then updated (a second
--     tuple, and a second customer-facts recount), and an unmatched SKU is not looked up twice;
--     a 1,000-order page
--     of 3 matching lines an order takes 210 ms of CPU instead of 280;
--   - a Shopify order's currency is its shop's currency (Shopify's REST order and the bulk
--     query's shopMoney both name it): the newest one is kept on the connection
--     (private.integrations.currency), for the product prices below.
-- checkouts (private.upsert_checkout): a total that is not a non-negative amount, or comes
--   without a currency code, is dropped (the cart and its recovery link still count); a currency
--   that is not a code is dropped; items that are not a list or over 60 KiB (the column and the
--   checkout_started event that carries them hold 64 KiB) become an empty list; a start time that cannot be read is now, as a missing one; a completion time
--   that cannot be read is taken as now (the shop says it completed: its abandoned-cart flow must
--   stop).
-- products and variants (private.write_products): a price with more than two decimals is
--   rounded (it was dropped); a Shopify price without a currency (its product webhooks and bulk
--   results give a variant's price in the shop's currency and name none) takes the shop's
--   currency kept on the connection; without one known the price is still dropped.
--
-- Functions copied from their newest definitions (20270205090000_shop_values_fitted.sql) with
-- only those changes, and one more in upsert_orders: a written order finds the lines its
-- document lists by its id in one jsonb object, where a join of the written orders to the page's
-- documents (both estimated at one row) ran as a nested loop, 1,000,000 comparisons for a page
-- of 1,000 orders; such a page (3 lines an order) took 440 ms and now takes 150.
-- private.shop_timestamptz reads a shop's time without raising (Postgres 15 has no
-- pg_input_is_valid; a savepoint per row is what the page upserts avoid).

-- tables -----------------------------------------------------------------------------------------

alter table private.integrations
  add column currency text check (currency ~ '^[A-Z]{3}$');

comment on column private.integrations.currency is
  'The shop''s currency as the shop last named it (Shopify: its orders'' currency and the backfill''s shop query); prices the shop sends without a currency are in it.';

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'integrations', 'currency', 'none', 'not_personal', 'a shop''s currency code');

-- functions --------------------------------------------------------------------------------------

-- A shop's time (ISO 8601: a date, optionally a time and an offset) as a timestamptz; null when
-- Postgres could not read it (no such day or hour, an offset beyond ±15:59, another format). The
-- page upserts call it only for a value their faster test (every valid day but February 29th)
-- does not pass: a function with its own search_path costs a tenth of a millisecond a call.
create function private.shop_timestamptz(p_value text)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
declare
  m text[] := pg_catalog.regexp_match(p_value,
    '^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.[0-9]{1,9})?)?(?:Z|[+-]([0-9]{2})(?::?([0-9]{2}))?)?)?$');
begin
  if m is null or m[1]::integer < 1 or m[2]::integer not between 1 and 12 then
    return null;
  end if;
  if m[3]::integer not between 1 and extract(day from pg_catalog.make_date(m[1]::integer, m[2]::integer, 1)
                                                       + interval '1 month - 1 day')
     or coalesce(m[4]::integer, 0) > 23 or coalesce(m[5]::integer, 0) > 59
     or coalesce(m[6]::integer, 0) > 59 or coalesce(m[7]::integer, 0) > 15
     or coalesce(m[8]::integer, 0) > 59 then
    return null;
  end if;
  return p_value::timestamptz;
end
$$;

revoke all on function private.shop_timestamptz(text) from public, anon, authenticated;

grant execute on function private.shop_timestamptz(text) to service_role;

-- The shop's currency kept on its connection (the Shopify backfill's shop query names it).
create function private.note_shop_currency(p_project_id uuid, p_source text, p_currency text)
returns void
language sql
security definer
set search_path = ''
as $$
  update private.integrations i set currency = p_currency
  where i.project_id = p_project_id and i.source = p_source
    and p_currency ~ '^[A-Z]{3}$' and i.currency is distinct from p_currency
$$;

revoke all on function private.note_shop_currency(uuid, text, text) from public, anon, authenticated;

grant execute on function private.note_shop_currency(uuid, text, text) to service_role;

-- A page of orders (see 20261201105000): an order that breaks a rule of its table is left out
-- (or its bad value replaced, see above), the page's other orders are written. Answers the
-- orders written (a copy of an order listed twice in a page counts once).
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
        and o.workspace_id = v_workspace_id and o.source = p_source and o.external_id = v.external_id
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
    on conflict (workspace_id, source, external_id) do update
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
    -- else exactly one product, of the order's project (the stored order's: an update keeps its
    -- project). That trigger then skips these lines, so a linked line is written once and
    -- counted once by the customer-facts trigger.
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

-- A checkout webhook's checkout (see 20261212095000): a value that breaks a rule of the table is
-- dropped (see above), a checkout whose id does not fit is skipped.
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
  where k.workspace_id = v_workspace_id and k.source = p_source and k.external_id = p_checkout ->> 'external_id'
  for update;
  insert into public.checkouts as k (workspace_id, project_id, source, external_id, contact_id, items, total,
                                     currency, recovery_url, started_at, completed_at)
  values (v_workspace_id, p_project_id, p_source, p_checkout ->> 'external_id', v_contact_id,
          v_items, v_total, v_currency,
          case when char_length(p_checkout ->> 'recovery_url') <= 2000 then p_checkout ->> 'recovery_url' end,
          coalesce(private.shop_timestamptz(p_checkout ->> 'started_at'), now()),
          case when p_checkout ->> 'completed_at' is not null
               then coalesce(private.shop_timestamptz(p_checkout ->> 'completed_at'), now()) end)
  on conflict (workspace_id, source, external_id) do update
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

create or replace function private.write_products(
  p_project_id uuid, p_source text, p_products jsonb, p_variants_listed_in_full boolean
)
returns table (product_external_id text, variant_external_id text, inserted boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_shop_currency text;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if p_source not in ('shoptet', 'shopify', 'woocommerce', 'csv') or jsonb_typeof(p_products) is distinct from 'array' then
    return;
  end if;
  -- A price the shop names no currency for is in the shop's currency, when the connection knows it.
  select i.currency into v_shop_currency
  from private.integrations i where i.project_id = p_project_id and i.source = p_source;

  return query
  with listed as (
    select distinct on (left(e.doc ->> 'external_id', 200)) left(e.doc ->> 'external_id', 200) as external_id, e.doc
    from jsonb_array_elements(p_products) with ordinality as e(doc, n)
    where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
      and nullif(e.doc ->> 'title', '') is not null
    order by left(e.doc ->> 'external_id', 200), e.n desc
  ),
  parsed as (
    select l.external_id, l.doc ->> 'title' as title,
           case when char_length(l.doc ->> 'sku') <= 200 then nullif(l.doc ->> 'sku', '') end as sku,
           case when l.doc ->> 'price' ~ '^[0-9]{1,12}(\.[0-9]+)?$' then
             case when (l.doc ->> 'price')::numeric < 999999999999.995 then round((l.doc ->> 'price')::numeric, 2) end
           end as price,
           case when l.doc ->> 'currency' ~ '^[A-Z]{3}$' then l.doc ->> 'currency'
                when l.doc ->> 'currency' is null then v_shop_currency end as currency,
           case when l.doc ->> 'inventory' ~ '^-?[0-9]{1,9}$' then (l.doc ->> 'inventory')::integer end as inventory,
           case when char_length(l.doc ->> 'url') <= 2048 then nullif(l.doc ->> 'url', '') end as url,
           case when char_length(l.doc ->> 'image_url') <= 2048 then nullif(l.doc ->> 'image_url', '') end as image_url,
           nullif(l.doc ->> 'category', '') as category,
           case when l.doc ->> 'status' in ('active', 'draft', 'archived') then l.doc ->> 'status' else 'active' end as status
    from listed l
  ),
  written as (
    insert into public.products as p (
      workspace_id, project_id, source, external_id, title, sku, price, currency, inventory, url,
      image_url, category, status
    )
    select v_workspace_id, p_project_id, p_source, d.external_id, left(d.title, 500),
           d.sku, case when d.currency is not null then d.price end,
           case when d.price is not null then d.currency end, d.inventory, d.url,
           d.image_url, left(d.category, 500), d.status
    from parsed d
    order by d.external_id
    on conflict (workspace_id, project_id, source, external_id) do update
    set title = excluded.title, sku = excluded.sku, price = excluded.price,
        currency = excluded.currency, inventory = excluded.inventory, url = excluded.url,
        image_url = excluded.image_url, category = excluded.category, status = excluded.status,
        updated_at = now()
    where (p.title, p.sku, p.price, p.currency, p.inventory, p.url, p.image_url, p.category, p.status)
          is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                            excluded.inventory, excluded.url, excluded.image_url, excluded.category,
                            excluded.status)
    returning p.external_id, p.xmax = 0 as inserted
  )
  select w.external_id, null::text, w.inserted from written w;

  -- The variants of the page's products that list theirs (a new statement: it sees the products
  -- written above).
  return query
  with listed as (
    select distinct on (left(e.doc ->> 'external_id', 200)) left(e.doc ->> 'external_id', 200) as external_id, e.doc
    from jsonb_array_elements(p_products) with ordinality as e(doc, n)
    where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
      and (nullif(e.doc ->> 'title', '') is not null or not p_variants_listed_in_full)
    order by left(e.doc ->> 'external_id', 200), e.n desc
  ),
  owners as (
    select p.id as product_id, l.doc -> 'variants' as variants,
           array(select left(e.doc ->> 'external_id', 200)
                 from jsonb_array_elements(l.doc -> 'variants') as e(doc)
                 where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
           ) as variant_ids
    from listed l
    cross join lateral (
      select p.id from public.products p
      where p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = p_source
        and p.external_id = l.external_id
      offset 0
    ) as p
    where jsonb_typeof(l.doc -> 'variants') = 'array'
  ),
  variants as (
    select distinct on (o.product_id, v.external_id) o.product_id, v.*
    from owners o
    cross join lateral (
      select left(e.doc ->> 'external_id', 200) as external_id,
             left(nullif(e.doc ->> 'title', ''), 500) as title,
             case when char_length(e.doc ->> 'sku') <= 200 then nullif(e.doc ->> 'sku', '') end as sku,
             case when e.doc ->> 'price' ~ '^[0-9]{1,12}(\.[0-9]+)?$' then
               case when (e.doc ->> 'price')::numeric < 999999999999.995 then round((e.doc ->> 'price')::numeric, 2) end
             end as price,
             case when e.doc ->> 'currency' ~ '^[A-Z]{3}$' then e.doc ->> 'currency'
                  when e.doc ->> 'currency' is null then v_shop_currency end as currency,
             case when e.doc ->> 'inventory' ~ '^-?[0-9]{1,9}$' then (e.doc ->> 'inventory')::integer end as inventory,
             case when char_length(e.doc ->> 'image_url') <= 2048 then nullif(e.doc ->> 'image_url', '') end as image_url,
             case when e.doc ->> 'status' in ('active', 'draft', 'archived') then e.doc ->> 'status' else 'active' end as status,
             e.n
      from jsonb_array_elements(o.variants) with ordinality as e(doc, n)
      where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
    ) as v
    order by o.product_id, v.external_id, v.n
  ),
  removed as (
    delete from public.product_variants pv
    using owners o
    where p_variants_listed_in_full and pv.product_id = o.product_id and pv.workspace_id = v_workspace_id
      and pv.external_id <> all (o.variant_ids)
  ),
  written as (
    insert into public.product_variants as pv (
      workspace_id, product_id, external_id, title, sku, price, currency, inventory, image_url, status
    )
    select v_workspace_id, v.product_id, v.external_id, v.title, v.sku,
           case when v.currency is not null then v.price end,
           case when v.price is not null then v.currency end, v.inventory, v.image_url, v.status
    from variants v
    order by v.product_id, v.n
    on conflict (product_id, workspace_id, external_id) do update
    set title = excluded.title, sku = excluded.sku, price = excluded.price,
        currency = excluded.currency, inventory = excluded.inventory,
        image_url = excluded.image_url, status = excluded.status, updated_at = now()
    where (pv.title, pv.sku, pv.price, pv.currency, pv.inventory, pv.image_url, pv.status)
          is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                            excluded.inventory, excluded.image_url, excluded.status)
    returning pv.product_id, pv.external_id, pv.xmax = 0 as inserted
  )
  select p.external_id, w.external_id, w.inserted
  from written w
  cross join lateral (
    select p.external_id from public.products p where p.id = w.product_id
    offset 0
  ) as p;
end
$$;

revoke all on function private.write_products(uuid, text, jsonb, boolean) from public, anon, authenticated;

grant execute on function private.write_products(uuid, text, jsonb, boolean) to service_role;
