-- A product writer changes only the fields its document carries (Customers, orders and shops;
-- Products import).
--
-- A project's products are written by several writers that each know only some fields: a
-- WooCommerce product webhook carries no price we keep (WooCommerce sends one on every stock
-- change), WooCommerce's products export has no URL, a Shopify product webhook has no URL and
-- its variants' prices name no currency (the shop's, which the connection may not know yet), a
-- products file has the columns its author chose. private.write_products set every field a
-- document lacked to null, so each writer blanked what the others had set: the price the
-- backfill or export stored vanished on the next sale's product webhook, the URL the store's sync
-- stored on the next export import, until the other wrote again.
--
-- Now, for a product and for a variant, a field whose key the document lacks keeps the stored
-- value (a new row: none, and status active as before); a key the document carries is the
-- source's statement and is written as before (null or empty: none; a value the column cannot
-- hold dropped to none, as 20270205090000_shop_values_fitted.sql drops it). Price and currency
-- go together: a document's price is written with its currency (its own, else the shop's the
-- connection keeps); a price key that is null or empty states the product has no price and
-- clears both; a price that names no currency known, or is not a price, is unknown and keeps the
-- stored pair. A products file's empty cell (and a column the file lacks) is absent from its
-- documents (private.import_product_documents and import_variant_documents strip nulls), so an
-- import keeps such fields too. A product's SKU absent keeps its SKU; a stated SKU changes it as
-- before, and the page's links (private.product_page_catalog before and after the write,
-- unchanged) see the SKUs stored before and after the write.
--
-- The stored row is read by a probe of its whole key within the page's one statement (products)
-- and the variants' one statement, as the write's own conflict probe reads it: every writer of a
-- project's products (private.upsert_products, private.import_products_chunk) holds the
-- project's catalog lock (growthbase.project_catalog) while it writes, so the row read is the
-- row the upsert updates.
--
-- Redefined: private.write_products, copied from 20270207090000_shop_rows_checked.sql; only the
-- fields the document lacks are taken from the stored row.

-- functions --------------------------------------------------------------------------------------

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
           l.doc ? 'sku' as has_sku,
           case when char_length(l.doc ->> 'sku') <= 200 then nullif(l.doc ->> 'sku', '') end as sku,
           l.doc ? 'price' and nullif(l.doc ->> 'price', '') is null as price_removed,
           case when l.doc ->> 'price' ~ '^[0-9]{1,12}(\.[0-9]+)?$' then
             case when (l.doc ->> 'price')::numeric < 999999999999.995 then round((l.doc ->> 'price')::numeric, 2) end
           end as price,
           case when l.doc ->> 'currency' ~ '^[A-Z]{3}$' then l.doc ->> 'currency'
                when l.doc ->> 'currency' is null then v_shop_currency end as currency,
           l.doc ? 'inventory' as has_inventory,
           case when l.doc ->> 'inventory' ~ '^-?[0-9]{1,9}$' then (l.doc ->> 'inventory')::integer end as inventory,
           l.doc ? 'url' as has_url,
           case when char_length(l.doc ->> 'url') <= 2048 then nullif(l.doc ->> 'url', '') end as url,
           l.doc ? 'image_url' as has_image_url,
           case when char_length(l.doc ->> 'image_url') <= 2048 then nullif(l.doc ->> 'image_url', '') end as image_url,
           l.doc ? 'category' as has_category,
           nullif(l.doc ->> 'category', '') as category,
           l.doc ? 'status' as has_status,
           case when l.doc ->> 'status' in ('active', 'draft', 'archived') then l.doc ->> 'status' else 'active' end as status
    from listed l
  ),
  -- Each product as the document states it, the stored product's value for a field it lacks.
  merged as (
    select d.external_id, left(d.title, 500) as title,
           case when d.has_sku then d.sku else s.sku end as sku,
           case when d.price is not null and d.currency is not null then d.price
                when not d.price_removed then s.price end as price,
           case when d.price is not null and d.currency is not null then d.currency
                when not d.price_removed then s.currency end as currency,
           case when d.has_inventory then d.inventory else s.inventory end as inventory,
           case when d.has_url then d.url else s.url end as url,
           case when d.has_image_url then d.image_url else s.image_url end as image_url,
           case when d.has_category then left(d.category, 500) else s.category end as category,
           case when d.has_status or s.status is null then d.status else s.status end as status
    from parsed d
    left join lateral (
      select p.sku, p.price, p.currency, p.inventory, p.url, p.image_url, p.category, p.status
      from public.products p
      where p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = p_source
        and p.external_id = d.external_id
      offset 0
    ) as s on true
  ),
  written as (
    insert into public.products as p (
      workspace_id, project_id, source, external_id, title, sku, price, currency, inventory, url,
      image_url, category, status
    )
    select v_workspace_id, p_project_id, p_source, m.external_id, m.title, m.sku, m.price,
           m.currency, m.inventory, m.url, m.image_url, m.category, m.status
    from merged m
    order by m.external_id
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
             e.doc ? 'title' as has_title,
             left(nullif(e.doc ->> 'title', ''), 500) as title,
             e.doc ? 'sku' as has_sku,
             case when char_length(e.doc ->> 'sku') <= 200 then nullif(e.doc ->> 'sku', '') end as sku,
             e.doc ? 'price' and nullif(e.doc ->> 'price', '') is null as price_removed,
             case when e.doc ->> 'price' ~ '^[0-9]{1,12}(\.[0-9]+)?$' then
               case when (e.doc ->> 'price')::numeric < 999999999999.995 then round((e.doc ->> 'price')::numeric, 2) end
             end as price,
             case when e.doc ->> 'currency' ~ '^[A-Z]{3}$' then e.doc ->> 'currency'
                  when e.doc ->> 'currency' is null then v_shop_currency end as currency,
             e.doc ? 'inventory' as has_inventory,
             case when e.doc ->> 'inventory' ~ '^-?[0-9]{1,9}$' then (e.doc ->> 'inventory')::integer end as inventory,
             e.doc ? 'image_url' as has_image_url,
             case when char_length(e.doc ->> 'image_url') <= 2048 then nullif(e.doc ->> 'image_url', '') end as image_url,
             e.doc ? 'status' as has_status,
             case when e.doc ->> 'status' in ('active', 'draft', 'archived') then e.doc ->> 'status' else 'active' end as status,
             e.n
      from jsonb_array_elements(o.variants) with ordinality as e(doc, n)
      where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
    ) as v
    order by o.product_id, v.external_id, v.n
  ),
  -- Each variant as the document states it, the stored variant's value for a field it lacks.
  merged as (
    select v.product_id, v.external_id, v.n,
           case when v.has_title then v.title else s.title end as title,
           case when v.has_sku then v.sku else s.sku end as sku,
           case when v.price is not null and v.currency is not null then v.price
                when not v.price_removed then s.price end as price,
           case when v.price is not null and v.currency is not null then v.currency
                when not v.price_removed then s.currency end as currency,
           case when v.has_inventory then v.inventory else s.inventory end as inventory,
           case when v.has_image_url then v.image_url else s.image_url end as image_url,
           case when v.has_status or s.status is null then v.status else s.status end as status
    from variants v
    left join lateral (
      select pv.title, pv.sku, pv.price, pv.currency, pv.inventory, pv.image_url, pv.status
      from public.product_variants pv
      where pv.product_id = v.product_id and pv.workspace_id = v_workspace_id
        and pv.external_id = v.external_id
      offset 0
    ) as s on true
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
    select v_workspace_id, m.product_id, m.external_id, m.title, m.sku, m.price, m.currency,
           m.inventory, m.image_url, m.status
    from merged m
    order by m.product_id, m.n
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
