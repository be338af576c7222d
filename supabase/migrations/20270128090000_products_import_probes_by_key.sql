-- A products import reads each product and variant it writes by a probe on its key, whatever
-- the planner knows (issue 14, commerce data at scale).
--
-- Without planner statistics on products (a new project's, or a table never analyzed:
-- autovacuum does not run here) a chunk's statements joined its lines and documents to the
-- project's products with nested loops that scanned by the key's first three columns
-- (workspace, project, source) and filtered the external id: private.write_products found each
-- listed product's row so (`owners`), so every product whose variants a chunk writes read all
-- of the project's CSV products (a chunk of 3,000 rows, 1,500 products of two variants, read
-- products 1,131,750 times into an empty project, 1,408,250 into one with half of them);
-- private.import_variant_documents joined the project's products to the chunk's lines the
-- other way round (lines x products) and found each product's currency by a scan of the
-- chunk's lines per line (lines x lines). Each product is now found by a subquery that cannot
-- be merged into the join (`offset 0`): one probe on the whole key per line or document.
--
-- In write_products, the variants written are answered with their product's external id from
-- a probe of the product's row (not a join of two CTEs the planner estimates at one row each:
-- variants x products), and a shop's product drops the variants its document does not list by
-- comparing each stored variant with its own product's list (not a scan of the page's variants
-- per stored variant). import_variant_documents takes the currency of a product's first valid
-- row with a title from a window over the chunk's lines (the same row: the first by record).
-- import_products_chunk's check of variant rows finds their product by a probe as well.
--
-- Copied from 20261230090000_csv_products_through_page_upsert.sql (their newest definitions;
-- import_products_chunk with the setting 20261230092000_bulk_order_writes_without_jit.sql gave
-- it, jit off); only those statements change.

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

create or replace function private.import_variant_documents(
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
               'currency', case when c.variant_price is not null then coalesce(c.currency, p.currency, c.titled_currency) end,
               'inventory', c.variant_inventory, 'image_url', c.variant_image_url,
               'status', c.variant_status
             )) order by c.record)
           ) as doc
    from (
      -- Each line with the currency of its product's first valid row with a title, if any.
      select l.*,
             case when first_value(l.title is not null and l.problem is null) over titled
                  then first_value(l.currency) over titled end as titled_currency
      from private.import_product_lines(p_job_id, p_after, p_to) as l
      window titled as (partition by l.product_id
                        order by l.title is not null and l.problem is null desc, l.record)
    ) as c
    cross join lateral (
      select p.currency from public.products p
      where p.workspace_id = p_workspace_id and p.project_id = p_project_id and p.source = 'csv'
        and p.external_id = c.product_id
      offset 0
    ) as p
    where c.problem is null and c.variant_id is not null
    group by c.product_id
  ) as d
$$;

revoke all on function private.import_variant_documents(uuid, bigint, bigint, uuid, uuid) from public, anon, authenticated;

create or replace function private.import_products_chunk(p_job_id uuid, p_max_records integer)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
set jit = off
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
  left join lateral (
    select p.id, p.currency from public.products p
    where p.workspace_id = v_job.workspace_id and p.project_id = v_job.project_id and p.source = 'csv'
      and p.external_id = c.product_id
    offset 0
  ) as p on true
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
