-- Products from Shopify's and WooCommerce's product webhooks (issue 14 §3): products/create,
-- products/update, products/delete; product.created, product.updated, product.restored,
-- product.deleted (WooCommerce's deleted means moved to the trash). The edge maps a product onto
-- {"external_id", "title", "sku"?, "price"?, "currency"?, "inventory"?, "url"?, "image_url"?,
-- "category"?, "status", "variants"?: [{"external_id", "title"?, "sku"?, "price"?, "currency"?,
-- "inventory"?, "image_url"?, "status"?}]} and applies it here, as the service, after storing
-- the delivery.
--
--   - a product is matched by its shop id within the project and source: a new one is created,
--     a known one takes the shop's values, an unchanged one is not written;
--   - its variants, when the document lists them, are matched by their shop id within the
--     product the same way, and variants the shop no longer lists are removed (order lines keep
--     their history; their reference is cleared by the foreign key);
--   - a price is kept only with its currency (the shops' product payloads name a currency only
--     in Shopify's presentment prices);
--   - a deleted product is archived rather than removed, so its sales stay attributed to it;
--   - order lines of the project that name the product's ids (or an unambiguous SKU) are linked.

create function private.upsert_shop_product(p_project_id uuid, p_source text, p_product jsonb)
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
  insert into public.products as p (
    workspace_id, project_id, source, external_id, title, sku, price, currency, inventory, url,
    image_url, category, status
  )
  select v_workspace_id, p_project_id, p_source, left(d.external_id, 200), left(d.title, 500),
         left(d.sku, 200), case when d.currency is not null then d.price end,
         case when d.price is not null then d.currency end, d.inventory, left(d.url, 2048),
         left(d.image_url, 2048), left(d.category, 500), d.status
  from (
    select p_product ->> 'external_id' as external_id, p_product ->> 'title' as title,
           nullif(p_product ->> 'sku', '') as sku,
           case when p_product ->> 'price' ~ '^[0-9]{1,12}(\.[0-9]{1,2})?$' then (p_product ->> 'price')::numeric(14, 2) end as price,
           case when p_product ->> 'currency' ~ '^[A-Z]{3}$' then p_product ->> 'currency' end as currency,
           case when p_product ->> 'inventory' ~ '^-?[0-9]{1,9}$' then (p_product ->> 'inventory')::integer end as inventory,
           nullif(p_product ->> 'url', '') as url, nullif(p_product ->> 'image_url', '') as image_url,
           nullif(p_product ->> 'category', '') as category,
           case when p_product ->> 'status' in ('active', 'draft', 'archived') then p_product ->> 'status' else 'active' end as status
  ) as d
  on conflict (workspace_id, project_id, source, external_id) do update
  set title = excluded.title, sku = excluded.sku, price = excluded.price,
      currency = excluded.currency, inventory = excluded.inventory, url = excluded.url,
      image_url = excluded.image_url, category = excluded.category, status = excluded.status,
      updated_at = now()
  where (p.title, p.sku, p.price, p.currency, p.inventory, p.url, p.image_url, p.category, p.status)
        is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                          excluded.inventory, excluded.url, excluded.image_url, excluded.category,
                          excluded.status);
  select p.id into v_product_id from public.products p
  where p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = p_source
    and p.external_id = left(p_product ->> 'external_id', 200);

  if jsonb_typeof(p_product -> 'variants') = 'array' then
    with listed as (
      select distinct on (v.external_id) v.*
      from (
        select left(e.doc ->> 'external_id', 200) as external_id,
               left(nullif(e.doc ->> 'title', ''), 500) as title, left(nullif(e.doc ->> 'sku', ''), 200) as sku,
               case when e.doc ->> 'price' ~ '^[0-9]{1,12}(\.[0-9]{1,2})?$' then (e.doc ->> 'price')::numeric(14, 2) end as price,
               case when e.doc ->> 'currency' ~ '^[A-Z]{3}$' then e.doc ->> 'currency' end as currency,
               case when e.doc ->> 'inventory' ~ '^-?[0-9]{1,9}$' then (e.doc ->> 'inventory')::integer end as inventory,
               left(nullif(e.doc ->> 'image_url', ''), 2048) as image_url,
               case when e.doc ->> 'status' in ('active', 'draft', 'archived') then e.doc ->> 'status' else 'active' end as status,
               e.n
        from jsonb_array_elements(p_product -> 'variants') with ordinality as e(doc, n)
        where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
      ) as v
      order by v.external_id, v.n
    ),
    removed as (
      delete from public.product_variants v
      where v.product_id = v_product_id and v.workspace_id = v_workspace_id
        and v.external_id not in (select l.external_id from listed l)
    )
    insert into public.product_variants as v (
      workspace_id, product_id, external_id, title, sku, price, currency, inventory, image_url, status
    )
    select v_workspace_id, v_product_id, l.external_id, l.title, l.sku,
           case when l.currency is not null then l.price end,
           case when l.price is not null then l.currency end, l.inventory, l.image_url, l.status
    from listed l
    order by l.n
    on conflict (product_id, workspace_id, external_id) do update
    set title = excluded.title, sku = excluded.sku, price = excluded.price,
        currency = excluded.currency, inventory = excluded.inventory,
        image_url = excluded.image_url, status = excluded.status, updated_at = now()
    where (v.title, v.sku, v.price, v.currency, v.inventory, v.image_url, v.status)
          is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                            excluded.inventory, excluded.image_url, excluded.status);
  end if;
  perform private.link_order_items(p_project_id);
  return v_product_id;
end
$$;

revoke all on function private.upsert_shop_product(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_shop_product(uuid, text, jsonb) to service_role;

-- The shop deleted a product (or moved it to the trash): archived. Answers whether one was
-- found.
create function private.archive_shop_product(p_project_id uuid, p_source text, p_external_id text)
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
  update public.products p set status = 'archived', updated_at = now()
  where p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = p_source
    and p.external_id = p_external_id and p.status <> 'archived';
  return found or exists (
    select 1 from public.products p
    where p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = p_source
      and p.external_id = p_external_id
  );
end
$$;

revoke all on function private.archive_shop_product(uuid, text, text) from public, anon, authenticated;

grant execute on function private.archive_shop_product(uuid, text, text) to service_role;
