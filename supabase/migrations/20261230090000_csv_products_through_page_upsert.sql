-- The CSV products import writes through the shops' page upsert (issue 14 §3): the body of
-- private.upsert_products (20261224090000_shop_products_page_upsert.sql) becomes
-- private.write_products, which answers each product and variant it wrote (so an import can
-- count created and updated rows); private.upsert_products is that call for a shop, then the
-- order-line linking as before. private.import_products_chunk builds its chunk's products and
-- variants as page documents and writes them with the same function, so a product imported
-- from a CSV is stored exactly as the same product from a webhook or a catalog sync.
--
-- write_products(project, source, documents, variants_listed_in_full):
--   - documents as private.upsert_products takes them; source one of the shops or 'csv';
--   - variants_listed_in_full true (the shops): a product whose document lists "variants" has
--     exactly those afterwards, as before;
--   - false (the CSV, whose variants of one product may come in several chunks): listed variants
--     are upserted and none are removed, and a document without a title touches only the
--     variants of a product stored before (a CSV's variant rows after their product's row).

create function private.write_products(
  p_project_id uuid, p_source text, p_products jsonb, p_variants_listed_in_full boolean
)
returns table (product_external_id text, variant_external_id text, inserted boolean)
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
  if p_source not in ('shoptet', 'shopify', 'woocommerce', 'csv') or jsonb_typeof(p_products) is distinct from 'array' then
    return;
  end if;

  return query
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
    select p.id as product_id, p.external_id as product_external_id, l.doc -> 'variants' as variants
    from listed l
    join public.products p
      on p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = p_source
     and p.external_id = l.external_id
    where jsonb_typeof(l.doc -> 'variants') = 'array'
  ),
  variants as (
    select distinct on (o.product_id, v.external_id) o.product_id, o.product_external_id, v.*
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
    where p_variants_listed_in_full and pv.product_id = o.product_id and pv.workspace_id = v_workspace_id
      and not exists (
        select 1 from variants v where v.product_id = pv.product_id and v.external_id = pv.external_id
      )
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
  select o.product_external_id, w.external_id, w.inserted
  from written w
  join owners o on o.product_id = w.product_id;
end
$$;

revoke all on function private.write_products(uuid, text, jsonb, boolean) from public, anon, authenticated;

grant execute on function private.write_products(uuid, text, jsonb, boolean) to service_role;

-- A shop's page of products (the Shoptet catalog, the backfills, a product webhook's page of
-- one): written with every listed product's variants in full, then the project's unlinked order
-- lines naming them linked; answers how many products were created or changed.
create or replace function private.upsert_products(p_project_id uuid, p_source text, p_products jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_written integer;
begin
  if not exists (select 1 from public.projects p where p.id = p_project_id) then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if p_source not in ('shoptet', 'shopify', 'woocommerce') then
    return 0;
  end if;
  select count(*) into v_written
  from private.write_products(p_project_id, p_source, p_products, true) w
  where w.variant_external_id is null;
  perform private.link_order_items(p_project_id);
  return v_written;
end
$$;

revoke all on function private.upsert_products(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_products(uuid, text, jsonb) to service_role;

-- The chunk's product documents: each product from its first row with a title (the README's
-- rule: a repeated product is reported, the first row wins; the page upsert takes a product's
-- last listing, so the documents go newest row first), prices in the upsert's plain form.
create function private.import_product_documents(p_job_id uuid, p_after bigint, p_to bigint)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
           'external_id', c.product_id, 'title', c.title, 'sku', c.sku,
           'price', c.price::numeric(14, 2)::text, 'currency', c.currency, 'inventory', c.inventory,
           'url', c.url, 'image_url', c.image_url, 'category', c.category, 'status', c.status
         )) order by c.record desc), '[]'::jsonb)
  from private.import_product_lines(p_job_id, p_after, p_to) as c
  where c.problem is null and c.title is not null
$$;

revoke all on function private.import_product_documents(uuid, bigint, bigint) from public, anon, authenticated;

-- The chunk's variants as title-less page documents of their stored products, one per product
-- listing its variants in file order; a variant's price takes the row's currency, else its
-- product's (stored, or on the product's row with a title in this chunk).
create function private.import_variant_documents(
  p_job_id uuid, p_after bigint, p_to bigint, p_workspace_id uuid, p_project_id uuid
)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(d.doc), '[]'::jsonb)
  from (
    select jsonb_build_object(
             'external_id', c.product_id,
             'variants', jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
               'external_id', c.variant_id, 'title', c.variant_title, 'sku', c.variant_sku,
               'price', c.variant_price::numeric(14, 2)::text,
               'currency', case when c.variant_price is not null then coalesce(c.currency, p.currency, t.currency) end,
               'inventory', c.variant_inventory, 'image_url', c.variant_image_url,
               'status', c.variant_status
             )) order by c.record)
           ) as doc
    from private.import_product_lines(p_job_id, p_after, p_to) as c
    join public.products p
      on p.workspace_id = p_workspace_id and p.project_id = p_project_id and p.source = 'csv'
     and p.external_id = c.product_id
    left join lateral (
      select t.currency from private.import_product_lines(p_job_id, p_after, p_to) as t
      where t.product_id = c.product_id and t.title is not null and t.problem is null
      order by t.record
      limit 1
    ) as t on true
    where c.problem is null and c.variant_id is not null
    group by c.product_id
  ) as d
$$;

revoke all on function private.import_variant_documents(uuid, bigint, bigint, uuid, uuid) from public, anon, authenticated;

-- Products and variants: checks as 20261224093000_import_chunk_bookkeeping.sql, then the chunk's
-- products and its variants written through private.write_products as pages of the CSV.
create or replace function private.import_products_chunk(p_job_id uuid, p_max_records integer)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs;
  v_claim private.import_chunk;
  v_to bigint;
  v_errors jsonb;
  v_valid integer;
  v_created integer;
  v_updated integer;
  v_variants_created integer;
  v_variants_updated integer;
begin
  v_claim := private.claim_import_chunk(p_job_id, 'products', p_max_records);
  v_job := v_claim.job;
  v_to := v_claim.upto;
  if v_to is null then
    return v_job;
  end if;

  -- Each row's first problem; product fields are checked on rows that carry a title (and on
  -- product rows, which must), variant fields on variant rows.
  update private.import_product_rows r
  set problem = k.problem,
      problem_column = case when split_part(k.problem, ' ', 1) in (
                         'product_id', 'title', 'sku', 'price', 'currency', 'inventory', 'url', 'category',
                         'status', 'variant_id', 'variant_title', 'variant_sku', 'variant_price',
                         'variant_inventory', 'variant_image_url', 'variant_status')
                       then split_part(k.problem, ' ', 1) end
  from (
    select c.record,
           case
             when c.product_id is null then 'product_id is empty'
             when char_length(c.product_id) > 200 then 'product_id may have at most 200 characters'
             when c.title is null and c.variant_id is null then 'title is empty'
             when char_length(c.title) > 500 then 'title may have at most 500 characters'
             when c.title is not null and char_length(c.sku) > 200 then 'sku may have at most 200 characters'
             when c.title is not null and c.price ~ '^-' then 'price must be zero or more'
             when c.title is not null and c.price ~ '^[0-9]*\.[0-9]{3,}$' then 'price has more than two decimals'
             when c.title is not null and c.price !~ '^(?:[0-9]{1,12}(?:\.[0-9]{0,2})?|\.[0-9]{1,2})$' then 'price is not a number below 1000000000000'
             when c.title is not null and c.price is not null and c.currency is null then 'currency is empty: a price needs its currency'
             when c.currency !~ '^[A-Z]{3}$' then 'currency must be a three-letter ISO code'
             when c.title is not null and c.inventory !~ '^-?[0-9]{1,9}$' then 'inventory must be a whole number'
             when c.title is not null and (char_length(c.url) > 2048 or char_length(c.image_url) > 2048) then 'url and image_url may have at most 2048 characters'
             when c.title is not null and char_length(c.category) > 500 then 'category may have at most 500 characters'
             when c.title is not null and c.status not in ('active', 'draft', 'archived') then 'status must be active, draft or archived'
             when c.variant_id is null then null
             when char_length(c.variant_id) > 200 then 'variant_id may have at most 200 characters'
             when char_length(c.variant_title) > 500 then 'variant_title may have at most 500 characters'
             when char_length(c.variant_sku) > 200 then 'variant_sku may have at most 200 characters'
             when c.variant_price ~ '^-' then 'variant_price must be zero or more'
             when c.variant_price ~ '^[0-9]*\.[0-9]{3,}$' then 'variant_price has more than two decimals'
             when c.variant_price !~ '^(?:[0-9]{1,12}(?:\.[0-9]{0,2})?|\.[0-9]{1,2})$' then 'variant_price is not a number below 1000000000000'
             when c.variant_inventory !~ '^-?[0-9]{1,9}$' then 'variant_inventory must be a whole number'
             when char_length(c.variant_image_url) > 2048 then 'variant_image_url may have at most 2048 characters'
             when c.variant_status not in ('active', 'draft', 'archived') then 'variant_status must be active, draft or archived'
           end as problem
    from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
    where c.problem is null
  ) as k
  where r.job_id = p_job_id and r.record = k.record and k.problem is not null;

  -- A product's write counts for the chunk's product row (a variant row counts its variant).
  select count(*) filter (where w.inserted), count(*) filter (where not w.inserted)
  into v_created, v_updated
  from private.write_products(
    v_job.project_id, 'csv', private.import_product_documents(p_job_id, v_job.merge_record, v_to), false
  ) w
  where w.product_external_id in (
    select c.product_id from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
    where c.problem is null and c.variant_id is null
  );

  -- A variant whose product has no row with a title (in this file or stored before), or whose
  -- price has no currency on its row or its product, is reported.
  update private.import_product_rows r
  set problem = case when p.id is null then 'variant_id: its product has no row with a title'
                     else 'variant_price: a price needs a currency, on the row or its product' end,
      problem_column = case when p.id is null then 'variant_id' else 'variant_price' end
  from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
  left join public.products p
    on p.workspace_id = v_job.workspace_id and p.project_id = v_job.project_id and p.source = 'csv'
   and p.external_id = c.product_id
  where r.job_id = p_job_id and r.record = c.record and c.problem is null and c.variant_id is not null
    and (p.id is null or c.variant_price is not null and c.currency is null and p.currency is null
         and not exists (
           select 1 from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as t
           where t.product_id = c.product_id and t.title is not null and t.problem is null
             and t.currency is not null
         ));

  select count(*) filter (where w.inserted), count(*) filter (where not w.inserted)
  into v_variants_created, v_variants_updated
  from private.write_products(
    v_job.project_id, 'csv',
    private.import_variant_documents(p_job_id, v_job.merge_record, v_to, v_job.workspace_id, v_job.project_id),
    false
  ) w
  where w.variant_external_id is not null;

  select jsonb_agg(jsonb_build_object('line', r.line, 'column_name', r.problem_column, 'reason', r.problem)
                   order by r.line) filter (where r.problem is not null),
         count(*) filter (where r.problem is null)
  into v_errors, v_valid
  from private.import_product_rows r
  where r.job_id = p_job_id and r.record > v_job.merge_record and r.record <= v_to;

  v_job := private.finish_import_chunk(v_job, v_to, v_errors, v_valid, v_created + v_variants_created,
                                       v_updated + v_variants_updated);
  if v_job.status = 'done' then
    perform private.link_order_items(v_job.project_id);
  end if;
  return v_job;
end
$$;

revoke all on function private.import_products_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.import_products_chunk(uuid, integer) to service_role;
