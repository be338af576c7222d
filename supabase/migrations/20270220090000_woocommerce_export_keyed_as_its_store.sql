-- A WooCommerce products export is stored as the store stores its catalog (imports, Products,
-- Shop exports).
--
-- The export's `ID` is the store's own id: a product's is the id WooCommerce's REST API and
-- webhooks name the product by, a variation's the id they name the variation by. The store's
-- sync (api/shops/products.py: woocommerce_product, woocommerce_variant; private.upsert_products)
-- keys a product by `str(product.id)` and a variable product's variants by `str(variation.id)`,
-- source `woocommerce`; the export's rows are read the same way (api/imports/product_exports.py:
-- a product's ID its product_id, a variation's ID its variant_id, its product's from `Parent`).
-- So a job reading WooCommerce's export (its columns hold `woocommerce_id`) now writes and looks
-- up source `woocommerce` instead of `csv`: the export and the store's sync update one catalog
-- whichever comes first, and the edge no longer refuses the export beside a synced store (409
-- store_keeps_catalog stays for Shopify's export, whose Handle is not the store's id). Order
-- lines of the store's orders that name a product by its id are linked to the imported product
-- (private.link_product_page_lines with the job's source). A WooCommerce export into a project
-- without the store is stored as source `woocommerce` too: it is that store's catalog. No export
-- was ever stored as `csv` by a landed release (20270215090000 is this release's own), so no
-- stored product is taken over.
--
-- Redefined (only the source changes):
--   - private.import_products_chunk, copied from 20270216090000_product_pages_link_their_lines.sql:
--     its six literal 'csv' (both writes, the variants' product probe, the catalog read before
--     and after, the link) are the job's source, v_source; mended in place (mendlink31): every
--     chunk links the lines that can name its products, also one that changed nothing a link
--     depends on, and the job's end no longer links the whole project (private.link_order_items
--     read every unlinked line of the workspace naming a product: 2.2 s beside 200,000);
--   - private.import_variant_documents, copied from 20270128090000_products_import_probes_by_key.sql:
--     the stored product its variants belong to is found under the job's source;
--   - private.import_store_currency, copied from 20270215090000_products_import_of_shop_exports.sql:
--     the connection's currency, else (new) the one currency of the prices the shop's sync stored
--     on the project's products of that shop (a WooCommerce connection keeps none, its backfill
--     prices the products in the store's currency).

-- functions -----------------------------------------------------------------------------------

-- The source a products job writes with: the store's when the file is WooCommerce's export,
-- whose ID is the store's id (its columns read `ID` as woocommerce_id); else csv.
create function private.import_product_source(p_job public.import_jobs)
returns text
language sql
immutable
set search_path = ''
as $$
  select case when coalesce(p_job.columns @> array['woocommerce_id'], false) then 'woocommerce' else 'csv' end
$$;

revoke all on function private.import_product_source(public.import_jobs) from public, anon, authenticated;

grant execute on function private.import_product_source(public.import_jobs) to service_role;

-- The chunk's variants as title-less page documents of their stored products (as
-- 20270128090000_products_import_probes_by_key.sql); their product is found under the job's
-- source (private.import_product_source) instead of 'csv'.
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
      where p.workspace_id = p_workspace_id and p.project_id = p_project_id
        and p.source = (select private.import_product_source(j) from public.import_jobs j where j.id = p_job_id)
        and p.external_id = c.product_id
      offset 0
    ) as p
    where c.problem is null and c.variant_id is not null
    group by c.product_id
  ) as d
$$;

revoke all on function private.import_variant_documents(uuid, bigint, bigint, uuid, uuid) from public, anon, authenticated;

-- Products and variants, as 20270216090000_product_pages_link_their_lines.sql, written, probed,
-- read and linked under the job's source (private.import_product_source: `woocommerce` for
-- WooCommerce's export, else `csv`) instead of the literal 'csv'.
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
  v_ids text[];
  v_before jsonb;
  v_after jsonb;
  v_source text;
begin
  v_claim := private.claim_import_chunk(p_job_id, 'products', p_max_records);
  v_job := v_claim.job;
  v_to := v_claim.upto;
  if v_to is null then
    return v_job;
  end if;
  -- The project's catalog lock, exclusively, before any write (lockfix31; see
  -- private.write_orders_chunk, which shares it): an orders part and this chunk run one after
  -- the other, and the later links the earlier's rows (lines, or products) when it writes.
  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtext('growthbase.project_catalog'), pg_catalog.hashtext(v_job.project_id::text));
  v_source := private.import_product_source(v_job);

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

  v_ids := array(
    select distinct c.product_id from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
    where c.problem is null
  );
  v_before := private.product_page_catalog(v_job.project_id, v_source, v_ids);

  -- A product's write counts for the chunk's product row (a variant row counts its variant).
  select count(*) filter (where w.inserted), count(*) filter (where not w.inserted)
  into v_created, v_updated
  from private.write_products(
    v_job.project_id, v_source, private.import_product_documents(p_job_id, v_job.merge_record, v_to), false
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
    where p.workspace_id = v_job.workspace_id and p.project_id = v_job.project_id and p.source = v_source
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
    v_job.project_id, v_source,
    private.import_variant_documents(p_job_id, v_job.merge_record, v_to, v_job.workspace_id, v_job.project_id),
    false
  ) w
  where w.variant_external_id is not null;

  -- Always, also when the chunk changed nothing a link depends on: a line written unlinked
  -- beside a catalog write it could not see (see 20270216090000) is linked by the next chunk or
  -- page naming its product, in a few probes.
  v_after := private.product_page_catalog(v_job.project_id, v_source, v_ids);
  perform private.link_product_page_lines(
    v_job.project_id, v_source, v_ids,
    array(select distinct k ->> 2 from jsonb_array_elements(v_before || v_after) as k where k ->> 2 is not null)
  );

  select jsonb_agg(jsonb_build_object('line', r.line, 'column_name', r.problem_column, 'reason', r.problem)
                   order by r.line) filter (where r.problem is not null),
         count(*) filter (where r.problem is null)
  into v_errors, v_valid
  from private.import_product_rows r
  where r.job_id = p_job_id and r.record > v_job.merge_record and r.record <= v_to;

  v_job := private.finish_import_chunk(v_job, v_to, v_errors, v_valid, v_created + v_variants_created,
                                       v_updated + v_variants_updated);
  -- No project-wide link as the job ends: each chunk linked the lines naming its products, and
  -- private.link_order_items reads every unlinked line of the workspace that names a product.
  return v_job;
end
$$;

revoke all on function private.import_products_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.import_products_chunk(uuid, integer) to service_role;

-- The currency of a shop's product export, which names none: the one the export's own shop's
-- connection to the import's project keeps (Shopify's, once its orders or backfill named it);
-- else (new; copied from 20270215090000_products_import_of_shop_exports.sql) the one currency
-- of the prices the shop's sync stored on the project's products and variants of that shop
-- (a WooCommerce connection keeps none; its backfill prices the catalog in the store's
-- currency); null when there is none, or more than one: the file's `Currency` column gives it
-- then. Another connection's currency is not the export's shop's.
create or replace function private.import_store_currency(p_project_id uuid, p_source text)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    (select i.currency from private.integrations i
     where i.project_id = p_project_id and i.source = p_source),
    (select min(c.currency)
     from (
       select p.currency from public.products p
       where p.workspace_id = (select j.workspace_id from public.projects j where j.id = p_project_id)
         and p.project_id = p_project_id and p.source = p_source and p.currency is not null
       union
       select v.currency from public.products p
       join public.product_variants v on v.product_id = p.id and v.workspace_id = p.workspace_id
       where p.workspace_id = (select j.workspace_id from public.projects j where j.id = p_project_id)
         and p.project_id = p_project_id and p.source = p_source and v.currency is not null
     ) as c
     having count(*) = 1)
  )
$$;

revoke all on function private.import_store_currency(uuid, text) from public, anon, authenticated;

grant execute on function private.import_store_currency(uuid, text) to service_role;
