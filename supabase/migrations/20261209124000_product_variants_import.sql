-- Product variants from a catalog CSV (issue 14 §3). A products file may carry variant columns:
-- variant_id (the shop's id of the variant, required when any variant column is there),
-- variant_title, variant_sku, variant_price, variant_inventory, variant_image_url and
-- variant_status. Shops export a catalog as one row per variant: a product's first row carries
-- its fields (product_id, title, sku, price, currency, ...) and its other rows may repeat them or
-- leave them empty (then only product_id and the variant's columns), as Shopify's export does.
--
--   - a product is written from its first row with a title (the first wins; later rows' product
--     fields are not read again), matched by product_id as before;
--   - a variant is matched within its product by variant_id: a new one is created, a known one
--     takes the row's values, an unchanged one is not written; a repeated (product_id,
--     variant_id) is reported and the first row wins;
--   - a variant's price needs a currency: the row's, else its product's;
--   - a variant whose product has no row with a title (in the file, or stored before) is
--     reported: "variant_id: its product has no row with a title";
--   - a row without a variant_id is a product row as before (a repeated one is reported).
-- Counts are per row: a variant row counts its variant, a product row its product. When the job
-- ends, order lines that name these variants (item_product_id and item_variant_id, or an
-- unambiguous SKU) are linked (private.link_order_items).

alter table private.import_product_rows
  add column variant_id text,
  add column variant_title text,
  add column variant_sku text,
  add column variant_price text,
  add column variant_inventory text,
  add column variant_image_url text,
  add column variant_status text;

-- A catalogue's variant columns hold no person's data.
insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'import_product_rows', 'variant_id', 'none', 'not_personal', 'a shop''s catalogue, no person'),
  ('private', 'import_product_rows', 'variant_title', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'variant_sku', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'variant_price', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'variant_inventory', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'variant_image_url', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'variant_status', 'none', 'not_personal', null);

-- functions -----------------------------------------------------------------------------------

-- After the file is staged: a later product row (no variant_id) with the product_id of an
-- earlier one, and a later variant row with the product_id and variant_id of an earlier one, are
-- reported (the first wins); then the job starts importing.
create or replace function private.validate_products_import(p_job_id uuid)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs;
begin
  update private.import_product_rows r
  set problem = case when d.variant_id is null then format('product_id repeats line %s', d.first_line)
                     else format('variant_id repeats line %s for this product', d.first_line) end,
      problem_column = case when d.variant_id is null then 'product_id' else 'variant_id' end
  from (
    select s.record, k.variant_id, first_value(s.line) over w as first_line, row_number() over w as n
    from private.import_product_rows s
    cross join lateral (select nullif(btrim(s.variant_id), '') as variant_id) as k
    where s.job_id = p_job_id and s.problem is null
      and (btrim(s.product_id), k.variant_id) in (
        select btrim(e.product_id), nullif(btrim(e.variant_id), '')
        from private.import_product_rows e
        where e.job_id = p_job_id and e.problem is null and btrim(e.product_id) <> ''
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
    where s.job_id = p_job_id and s.problem is null and nullif(btrim(s.variant_id), '') is null
      and btrim(s.product_id) in (
        select btrim(e.product_id) from private.import_product_rows e
        where e.job_id = p_job_id and e.problem is null and btrim(e.product_id) <> ''
          and nullif(btrim(e.variant_id), '') is null
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

-- A chunk's staged rows, trimmed (empty fields as null), with their problem so far.
create function private.import_product_lines(p_job_id uuid, p_after bigint, p_to bigint)
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
  where r.job_id = p_job_id and r.record > p_after and r.record <= p_to
$$;

revoke all on function private.import_product_lines(uuid, bigint, bigint) from public, anon, authenticated;

-- Merges the job's next chunk of up to p_max_records staged rows, with the job's cursor and
-- counts in the same transaction: checks every row (a bad row's problem is kept on its staged
-- row, so the later statements skip it), writes the chunk's products (from each one's first row
-- with a title), then its variants; the last chunk links order lines and ends the job.
create or replace function private.import_products_chunk(p_job_id uuid, p_max_records integer)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs;
  v_to bigint;
  v_errors jsonb;
  v_valid integer;
  v_created integer;
  v_updated integer;
  v_variants_created integer;
  v_variants_updated integer;
begin
  select * into v_job from public.import_jobs j where j.id = p_job_id for update;
  if v_job.status is distinct from 'importing' or v_job.kind <> 'products' then
    return v_job;
  end if;
  v_to := least(v_job.merge_record + greatest(p_max_records, 1), v_job.rows_total);
  if v_to > v_job.merge_record and not exists (
    select 1 from private.import_product_rows r where r.job_id = p_job_id and r.record = v_to
  ) then
    return private.fail_import_job(p_job_id, 'staging_lost',
      'The database restarted while this file was being imported; what was imported stays, import the file again for the rest');
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

  with written as (
    insert into public.products as p (
      workspace_id, project_id, source, external_id, title, sku, price, currency, inventory, url,
      image_url, category, status
    )
    select distinct on (c.product_id)
           v_job.workspace_id, v_job.project_id, 'csv', c.product_id, c.title, c.sku,
           c.price::numeric(14, 2), c.currency, c.inventory::integer, c.url, c.image_url,
           c.category, coalesce(c.status, 'active')
    from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
    where c.problem is null and c.title is not null
    order by c.product_id, c.record
    on conflict (workspace_id, project_id, source, external_id) do update
    set title = excluded.title, sku = excluded.sku, price = excluded.price,
        currency = excluded.currency, inventory = excluded.inventory, url = excluded.url,
        image_url = excluded.image_url, category = excluded.category, status = excluded.status
    where (p.title, p.sku, p.price, p.currency, p.inventory, p.url, p.image_url, p.category, p.status)
          is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                            excluded.inventory, excluded.url, excluded.image_url, excluded.category,
                            excluded.status)
    returning p.external_id, p.xmax = 0 as inserted
  )
  -- A product's write counts for the chunk's product row (a variant row counts its variant).
  select count(*) filter (where w.inserted), count(*) filter (where not w.inserted)
  into v_created, v_updated
  from written w
  where w.external_id in (
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
    and (p.id is null or c.variant_price is not null and coalesce(c.currency, p.currency) is null);

  with variants as (
    insert into public.product_variants as v (
      workspace_id, product_id, external_id, title, sku, price, currency, inventory, image_url, status
    )
    select v_job.workspace_id, p.id, c.variant_id, c.variant_title, c.variant_sku,
           c.variant_price::numeric(14, 2),
           case when c.variant_price is not null then coalesce(c.currency, p.currency) end,
           c.variant_inventory::integer, c.variant_image_url, coalesce(c.variant_status, 'active')
    from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
    join public.products p
      on p.workspace_id = v_job.workspace_id and p.project_id = v_job.project_id and p.source = 'csv'
     and p.external_id = c.product_id
    where c.problem is null and c.variant_id is not null
    order by c.record
    on conflict (product_id, workspace_id, external_id) do update
    set title = excluded.title, sku = excluded.sku, price = excluded.price,
        currency = excluded.currency, inventory = excluded.inventory,
        image_url = excluded.image_url, status = excluded.status, updated_at = now()
    where (v.title, v.sku, v.price, v.currency, v.inventory, v.image_url, v.status)
          is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                            excluded.inventory, excluded.image_url, excluded.status)
    returning v.xmax = 0 as inserted
  )
  select count(*) filter (where x.inserted), count(*) filter (where not x.inserted)
  into v_variants_created, v_variants_updated
  from variants x;

  select jsonb_agg(jsonb_build_object('line', r.line, 'column_name', r.problem_column, 'reason', r.problem)
                   order by r.line) filter (where r.problem is not null),
         count(*) filter (where r.problem is null)
  into v_errors, v_valid
  from private.import_product_rows r
  where r.job_id = p_job_id and r.record > v_job.merge_record and r.record <= v_to;
  if v_errors is not null then
    perform private.record_import_errors(v_job, v_errors);
  end if;

  update public.import_jobs j
  set merge_record = v_to,
      rows_processed = v_to,
      created = j.created + v_created + v_variants_created,
      updated = j.updated + v_updated + v_variants_updated,
      unchanged = j.unchanged + v_valid - v_created - v_updated - v_variants_created - v_variants_updated,
      status = case when v_to >= j.rows_total then 'done' else j.status end,
      finished_at = case when v_to >= j.rows_total then now() end
  where j.id = p_job_id
  returning * into v_job;
  if v_job.status = 'done' then
    perform private.link_order_items(v_job.project_id);
  end if;
  return v_job;
end
$$;

revoke all on function private.import_products_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.import_products_chunk(uuid, integer) to service_role;
