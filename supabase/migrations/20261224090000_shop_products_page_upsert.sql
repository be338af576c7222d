-- Products from the shops a page at a time (issue 14 §3, §4): the Shoptet catalog sync, the
-- WooCommerce backfill (products with their variations) and Shopify's bulk backfill write a
-- whole page of products with one call, as orders are written (private.upsert_orders), and a
-- product webhook writes a page of one through the same function.
--
-- A page is a JSON array of products shaped as the product webhooks' (see
-- 20261209125000_shop_product_webhooks.sql): {"external_id", "title", "sku"?, "price"?,
-- "currency"?, "inventory"?, "url"?, "image_url"?, "category"?, "status"?, "variants"?: [...]}.
--
--   - a product without an external id or a title is left out; a product listed twice in a
--     page is written once, from its last listing (a page is read oldest first);
--   - a product is matched by its shop id within the project and source: a new one is created,
--     a known one takes the shop's values, an unchanged one is not written;
--   - a product whose document lists its variants ("variants" an array, empty included) has
--     exactly those variants afterwards: listed ones matched by their shop id within the
--     product (created, updated, or left alone when unchanged), the others removed (order lines
--     keep their history; their reference is cleared by the foreign key); a product without a
--     "variants" key keeps its variants;
--   - a price is kept only with its currency;
--   - the project's unlinked order lines naming these products (ids, else an unambiguous SKU)
--     are linked once for the page.
-- Answers how many products were created or changed.

create function private.upsert_products(p_project_id uuid, p_source text, p_products jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_written integer;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if p_source not in ('shoptet', 'shopify', 'woocommerce') or jsonb_typeof(p_products) is distinct from 'array' then
    return 0;
  end if;

  with listed as (
    select distinct on (left(e.doc ->> 'external_id', 200)) left(e.doc ->> 'external_id', 200) as external_id, e.doc
    from jsonb_array_elements(p_products) with ordinality as e(doc, n)
    where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
      and nullif(e.doc ->> 'title', '') is not null
    order by left(e.doc ->> 'external_id', 200), e.n desc
  ),
  parsed as (
    select l.external_id, l.doc ->> 'title' as title, nullif(l.doc ->> 'sku', '') as sku,
           case when l.doc ->> 'price' ~ '^[0-9]{1,12}(\.[0-9]{1,2})?$' then (l.doc ->> 'price')::numeric(14, 2) end as price,
           case when l.doc ->> 'currency' ~ '^[A-Z]{3}$' then l.doc ->> 'currency' end as currency,
           case when l.doc ->> 'inventory' ~ '^-?[0-9]{1,9}$' then (l.doc ->> 'inventory')::integer end as inventory,
           nullif(l.doc ->> 'url', '') as url, nullif(l.doc ->> 'image_url', '') as image_url,
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
           left(d.sku, 200), case when d.currency is not null then d.price end,
           case when d.price is not null then d.currency end, d.inventory, left(d.url, 2048),
           left(d.image_url, 2048), left(d.category, 500), d.status
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
    returning 1
  )
  select count(*) into v_written from written;

  -- The variants of the page's products that list theirs (a new statement: it sees the products
  -- written above).
  with listed as (
    select distinct on (left(e.doc ->> 'external_id', 200)) left(e.doc ->> 'external_id', 200) as external_id, e.doc
    from jsonb_array_elements(p_products) with ordinality as e(doc, n)
    where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
      and nullif(e.doc ->> 'title', '') is not null
    order by left(e.doc ->> 'external_id', 200), e.n desc
  ),
  owners as (
    select p.id as product_id, l.doc -> 'variants' as variants
    from listed l
    join public.products p
      on p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = p_source
     and p.external_id = l.external_id
    where jsonb_typeof(l.doc -> 'variants') = 'array'
  ),
  variants as (
    select distinct on (o.product_id, v.external_id) o.product_id, v.*
    from owners o
    cross join lateral (
      select left(e.doc ->> 'external_id', 200) as external_id,
             left(nullif(e.doc ->> 'title', ''), 500) as title, left(nullif(e.doc ->> 'sku', ''), 200) as sku,
             case when e.doc ->> 'price' ~ '^[0-9]{1,12}(\.[0-9]{1,2})?$' then (e.doc ->> 'price')::numeric(14, 2) end as price,
             case when e.doc ->> 'currency' ~ '^[A-Z]{3}$' then e.doc ->> 'currency' end as currency,
             case when e.doc ->> 'inventory' ~ '^-?[0-9]{1,9}$' then (e.doc ->> 'inventory')::integer end as inventory,
             left(nullif(e.doc ->> 'image_url', ''), 2048) as image_url,
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
    where pv.product_id = o.product_id and pv.workspace_id = v_workspace_id
      and not exists (
        select 1 from variants v where v.product_id = pv.product_id and v.external_id = pv.external_id
      )
  )
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
                          excluded.inventory, excluded.image_url, excluded.status);

  perform private.link_order_items(p_project_id);
  return v_written;
end
$$;

revoke all on function private.upsert_products(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_products(uuid, text, jsonb) to service_role;

-- A product webhook's product: a page of one, through the page upsert above (same matching,
-- variants and linking as before); answers the product's id, or null for a product without an
-- external id or title, or from another source.
create or replace function private.upsert_shop_product(p_project_id uuid, p_source text, p_product jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_product_id uuid;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if p_source not in ('shopify', 'woocommerce') or jsonb_typeof(p_product) is distinct from 'object'
     or nullif(p_product ->> 'external_id', '') is null or nullif(p_product ->> 'title', '') is null then
    return null;
  end if;
  perform private.upsert_products(p_project_id, p_source, jsonb_build_array(p_product));
  select p.id into v_product_id from public.products p
  where p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = p_source
    and p.external_id = left(p_product ->> 'external_id', 200);
  return v_product_id;
end
$$;

revoke all on function private.upsert_shop_product(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_shop_product(uuid, text, jsonb) to service_role;
