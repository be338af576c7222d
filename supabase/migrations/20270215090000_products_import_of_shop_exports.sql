-- Shopify's and WooCommerce's product exports import as downloaded (issue 14: a shop owner moving
-- from another tool). The edge reads each export row as a row of our products file
-- (api/imports/product_exports.py) and stages it with two facts only the export has:
--   - skipped: a row holding nothing we keep (Shopify writes a row with only the Handle and an
--     image for each further image of a product). It is staged, so the job's record numbers and
--     its staging-lost check stay as they are, but never checked nor written; it counts as an
--     unchanged row;
--   - parent_sku: a WooCommerce variation names its product in `Parent`, as `id:123` (the edge
--     reads 123 as its product_id) or, when the product has a SKU, as that SKU. The variation's
--     product_id is then the one of the file's product row with that SKU (its first), found
--     once the whole file is staged, in one statement; a SKU no product row of the file has is
--     reported on the variation's row.
-- private.import_product_lines leaves skipped rows out (so the chunk's checks and writes do);
-- private.validate_products_import finds the variations' products first, and leaves skipped
-- rows out of its repeated-id checks (a further image's row would repeat its product's Handle).

-- tables -----------------------------------------------------------------------------------------

alter table private.import_product_rows
  add column parent_sku text,
  add column skipped boolean;

-- A catalogue's SKU, no person.
insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'import_product_rows', 'parent_sku', 'none', 'not_personal', 'a shop''s catalogue, no person');

-- functions --------------------------------------------------------------------------------------

-- A chunk's staged rows, trimmed (empty fields as null), with their problem so far; skipped rows
-- left out. Copied from 20261209124000_product_variants_import.sql; only `skipped` is new.
create or replace function private.import_product_lines(p_job_id uuid, p_after bigint, p_to bigint)
returns table (
  record bigint, line bigint, problem text, product_id text, title text, sku text, price text,
  currency text, inventory text, url text, image_url text, category text, status text,
  variant_id text, variant_title text, variant_sku text, variant_price text,
  variant_inventory text, variant_image_url text, variant_status text
)
language sql
stable
security definer
set search_path = ''
as $$
  select r.record, r.line, r.problem,
         nullif(btrim(r.product_id), ''), nullif(btrim(r.title), ''), nullif(btrim(r.sku), ''),
         nullif(btrim(r.price), ''), nullif(upper(btrim(r.currency)), ''), nullif(btrim(r.inventory), ''),
         nullif(btrim(r.url), ''), nullif(btrim(r.image_url), ''), nullif(btrim(r.category), ''),
         nullif(lower(btrim(r.status)), ''), nullif(btrim(r.variant_id), ''),
         nullif(btrim(r.variant_title), ''), nullif(btrim(r.variant_sku), ''),
         nullif(btrim(r.variant_price), ''), nullif(btrim(r.variant_inventory), ''),
         nullif(btrim(r.variant_image_url), ''), nullif(lower(btrim(r.variant_status)), '')
  from private.import_product_rows r
  where r.job_id = p_job_id and r.record > p_after and r.record <= p_to and r.skipped is not true
$$;

revoke all on function private.import_product_lines(uuid, bigint, bigint) from public, anon, authenticated;

-- After the file is staged: a WooCommerce variation named by its product's SKU takes that
-- product's id (a SKU no product row has is reported); then a later product row (no variant_id)
-- with the product_id of an earlier one, and a later variant row with the product_id and
-- variant_id of an earlier one, are reported (the first wins), skipped rows aside; then the job
-- starts importing. Copied from 20261209124000_product_variants_import.sql with the setting
-- 20270106091000_import_validation_custom_plans.sql gave it; the first two statements and the
-- `skipped` conditions are new.
create or replace function private.validate_products_import(p_job_id uuid)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_custom_plan
as $$
declare
  v_job public.import_jobs;
begin
  update private.import_product_rows r
  set product_id = p.product_id
  from (
    select distinct on (btrim(s.sku)) btrim(s.sku) as sku, btrim(s.product_id) as product_id
    from private.import_product_rows s
    where s.job_id = p_job_id and s.problem is null and s.skipped is not true
      and s.parent_sku is null and nullif(btrim(s.variant_id), '') is null
      and nullif(btrim(s.sku), '') is not null and nullif(btrim(s.product_id), '') is not null
    order by btrim(s.sku), s.record
  ) as p
  where r.job_id = p_job_id and r.parent_sku is not null and r.problem is null
    and btrim(r.parent_sku) = p.sku;
  update private.import_product_rows r
  set problem = format('Parent %s is the SKU of no product in this file', left(btrim(r.parent_sku), 200)),
      problem_column = 'product_id'
  where r.job_id = p_job_id and r.parent_sku is not null and r.problem is null
    and nullif(btrim(r.product_id), '') is null;
  update private.import_product_rows r
  set problem = case when d.variant_id is null then format('product_id repeats line %s', d.first_line)
                     else format('variant_id repeats line %s for this product', d.first_line) end,
      problem_column = case when d.variant_id is null then 'product_id' else 'variant_id' end
  from (
    select s.record, k.variant_id, first_value(s.line) over w as first_line, row_number() over w as n
    from private.import_product_rows s
    cross join lateral (select nullif(btrim(s.variant_id), '') as variant_id) as k
    where s.job_id = p_job_id and s.problem is null and s.skipped is not true
      and (btrim(s.product_id), k.variant_id) in (
        select btrim(e.product_id), nullif(btrim(e.variant_id), '')
        from private.import_product_rows e
        where e.job_id = p_job_id and e.problem is null and e.skipped is not true
          and btrim(e.product_id) <> ''
        group by 1, 2 having count(*) > 1
      )
    window w as (partition by btrim(s.product_id), k.variant_id order by s.record)
  ) as d
  where r.job_id = p_job_id and r.record = d.record and d.n > 1;
  -- The tuple IN above never matches a null variant_id, so repeated product rows are found here.
  update private.import_product_rows r
  set problem = format('product_id repeats line %s', d.first_line), problem_column = 'product_id'
  from (
    select s.record, first_value(s.line) over w as first_line, row_number() over w as n
    from private.import_product_rows s
    where s.job_id = p_job_id and s.problem is null and s.skipped is not true
      and nullif(btrim(s.variant_id), '') is null
      and btrim(s.product_id) in (
        select btrim(e.product_id) from private.import_product_rows e
        where e.job_id = p_job_id and e.problem is null and e.skipped is not true
          and btrim(e.product_id) <> '' and nullif(btrim(e.variant_id), '') is null
        group by 1 having count(*) > 1
      )
    window w as (partition by btrim(s.product_id) order by s.record)
  ) as d
  where r.job_id = p_job_id and r.record = d.record and d.n > 1;
  update public.import_jobs j set status = 'importing'
  where j.id = p_job_id and j.status = 'validating'
  returning * into v_job;
  return v_job;
end
$$;

revoke all on function private.validate_products_import(uuid) from public, anon, authenticated;

grant execute on function private.validate_products_import(uuid) to service_role;

-- The currency of a shop's product export, which names none: the one the export's own shop's
-- connection to the import's project keeps (Shopify's, once its orders or backfill named it);
-- null when it keeps none (a WooCommerce connection never does): the file's `Currency` column
-- gives it then. Another connection's currency is not the export's shop's, and the prices a
-- shop's sync stored are never read here: a project holding them refuses the export
-- (private.import_store_keeps_catalog).
create function private.import_store_currency(p_project_id uuid, p_source text)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select i.currency from private.integrations i
  where i.project_id = p_project_id and i.source = p_source
$$;

revoke all on function private.import_store_currency(uuid, text) from public, anon, authenticated;

grant execute on function private.import_store_currency(uuid, text) to service_role;

-- Whether the import's project holds products of the export's own shop (`shopify`,
-- `woocommerce`): that shop is connected and its sync keeps the project's catalog, keyed by
-- the shop's ids. The export, written as source `csv` (Shopify's names no product id, only the
-- Handle), would store every product a second time beside the store's, and an order line
-- found by its SKU would find two products (private.link_order_items links only an
-- unambiguous one), so the edge refuses the job.
create function private.import_store_keeps_catalog(p_project_id uuid, p_source text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.products p
    where p.workspace_id = (select j.workspace_id from public.projects j where j.id = p_project_id)
      and p.project_id = p_project_id and p.source = p_source
  )
$$;

revoke all on function private.import_store_keeps_catalog(uuid, text) from public, anon, authenticated;

grant execute on function private.import_store_keeps_catalog(uuid, text) to service_role;
