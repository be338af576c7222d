-- A product page links only the order lines that can name what it wrote (issue 14 §3, commerce
-- data at scale).
--
-- Every shop page of products (webhooks, the Shoptet catalog, the backfills) ended with
-- private.link_order_items(project), which reads all of the project's unlinked order lines and
-- all of its catalog's SKUs whatever the page changed: a product webhook (Shopify sends
-- products/update on every inventory change) cost the project's order lines, a backfill of P
-- pages P times that, and without planner statistics it scanned every workspace's order lines
-- and orders.
--
-- A page now links by the same rules (the shop's product id, and variant id within that
-- product, in the order's project and source; else a SKU that names exactly one variant, else
-- exactly one product, of the project) only the project's unlinked lines that can name what the
-- page touched: lines naming one of the page's products by its shop id, and lines whose SKU is
-- one a page's product or one of their variants had before or has after the page (a SKU a page
-- takes away can leave another product its only holder). A line naming a stored product by its
-- shop id is left to that product, as private.link_order_items does. The lines are found by two
-- partial indexes of unlinked lines (workspace and shop product id; workspace and SKU), every
-- product, variant and order by a probe of its key, so a page reads about its own rows.
--
-- Every page links so, also one that inserted no product or variant, removed no variant and
-- changed no SKU (a price, inventory, title or status update, most webhooks): it finds nothing
-- to link in a few index probes when every line it can name is linked, and it links a line that
-- was written unlinked beside a catalog write it could not see (an order written while a page
-- inserting its product was still open: neither saw the other) the next time a page names the
-- product. (A page that changed nothing a link depends on used to skip the link, and such a line
-- stayed unlinked for good; review31b.) Lines that shop order pages wrote before their writers
-- linked them (before …_order_lines_linked_as_written.sql) waited for the next product page of
-- any kind; they are linked once below, project by project.
--
-- A products import chunk links the same way for the products its rows name, as it writes
-- them (a products import's lines used to wait for its end); the job no longer links the whole
-- project as it ends.
--
-- The partial indexes hold only lines without a product: a shop's page writes its lines linked
-- (private.upsert_orders), the link trigger links a webhook's lines in the statement that
-- inserts them, and an orders import links its lines in the insert that writes them
-- (20270214090000_orders_keyed_per_project.sql, write_orders_chunk).
--
-- Locks: every index is built first, under new names (CREATE INDEX's SHARE lock blocks writes of
-- order lines, not reads), and the one-off link pass runs next, under row locks; only then are
-- the two superseded indexes dropped and the new ones renamed to their names, which takes the
-- table's ACCESS EXCLUSIVE lock for catalog changes alone, until the migration commits. (The
-- first drop used to come first: reads of order lines waited for four index builds and the link
-- pass, ~5.7 s at 2,000,000 lines.)
--
-- New: private.product_page_catalog, private.link_product_page_lines. Redefined:
-- private.upsert_products (copied from 20261230090000_csv_products_through_page_upsert.sql) and
-- private.import_products_chunk (copied from 20270128090000_products_import_probes_by_key.sql);
-- only their linking changes.

-- indexes ---------------------------------------------------------------------------------------

-- The lines' product key leaves out the lines without a product: a lookup by product (the
-- foreign key's, analytics') names one, and the unlinked lines are found by the two indexes
-- below, which a planner without statistics passed over for this key's nulls (and read all of
-- a workspace's unlinked lines per product or SKU). A line an orders import writes unlinked
-- thus enters one or two small indexes instead of this one (and of the variant key below).
-- Built under a new name; it replaces order_items_product_id_workspace_id_idx at the end.
create index order_items_linked_product_id_workspace_id_idx on public.order_items (product_id, workspace_id)
  where product_id is not null;

-- Likewise the variant key leaves out the lines without a variant (every unlinked line, and every
-- line of a product without variants): a lookup by variant names one, and an orders import's
-- line, which now enters the indexes of unlinked lines, no longer enters this one. Built under a
-- new name; it replaces order_items_variant_id_workspace_id_idx at the end.
create index order_items_linked_variant_id_workspace_id_idx on public.order_items (variant_id, workspace_id)
  where variant_id is not null;

create index order_items_unlinked_external_product_idx on public.order_items (workspace_id, external_product_id)
  where product_id is null and external_product_id is not null;

create index order_items_unlinked_sku_idx on public.order_items (workspace_id, sku)
  where product_id is null and sku is not null;

-- functions -------------------------------------------------------------------------------------

-- What a page's products are, as the links see them: each stored product of the project and
-- source with one of these shop ids, and each of their variants, with its SKU, as a jsonb array
-- of [product id, variant id or null, sku or null] in key order (so two answers compare
-- equal exactly when no product or variant was inserted or removed and no SKU changed). Each
-- product and its variants by a probe of their keys.
create function private.product_page_catalog(p_project_id uuid, p_source text, p_external_ids text[])
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_array(k.product, k.variant, k.sku) order by k.product, k.variant nulls first),
                  '[]'::jsonb)
  from (
    select p.external_id as product, null::text as variant, p.sku
    from (select distinct e.id from unnest(p_external_ids) as e(id) where e.id is not null) as e
    cross join lateral (
      select p.external_id, p.sku from public.products p
      where p.workspace_id = (select j.workspace_id from public.projects j where j.id = p_project_id)
        and p.project_id = p_project_id and p.source = p_source and p.external_id = e.id
      offset 0
    ) as p
    union all
    select p.external_id, v.external_id, v.sku
    from (select distinct e.id from unnest(p_external_ids) as e(id) where e.id is not null) as e
    cross join lateral (
      select p.id, p.external_id from public.products p
      where p.workspace_id = (select j.workspace_id from public.projects j where j.id = p_project_id)
        and p.project_id = p_project_id and p.source = p_source and p.external_id = e.id
      offset 0
    ) as p
    cross join lateral (
      select v.external_id, v.sku from public.product_variants v
      where v.product_id = p.id
      offset 0
    ) as v
  ) as k
$$;

revoke all on function private.product_page_catalog(uuid, text, text[]) from public, anon, authenticated;

grant execute on function private.product_page_catalog(uuid, text, text[]) to service_role;

-- Links the project's unlinked order lines that name one of these products of the source by its
-- shop id (the variant within it by the line's variant id), or carry one of these SKUs when it
-- names exactly one variant of the project (else exactly one product) and the line names no
-- stored product of its order's source by shop id: private.link_order_items' rules, for the
-- lines that can name a page's products. Each line is found in the partial indexes of unlinked
-- lines, and its order, product and variant by a probe of their keys. Answers how many lines
-- were linked. Seq scans are off: every read is a probe of a key, and a planner without
-- statistics on a table of a few hundred pages read all of the lines to update a few hundred by
-- their keys.
create function private.link_product_page_lines(
  p_project_id uuid, p_source text, p_external_ids text[], p_skus text[]
)
returns integer
language plpgsql
security definer
set search_path = ''
set enable_seqscan = off
as $$
declare
  v_workspace_id uuid;
  v_lines bigint[];
  v_products uuid[];
  v_variants uuid[];
  v_linked integer;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    return 0;
  end if;
  select array_agg(l.id), array_agg(l.product_id), array_agg(l.variant_id)
  into v_lines, v_products, v_variants
  from (
    select i.id, p.id as product_id,
           (select v.id from public.product_variants v
            where v.product_id = p.id and v.workspace_id = p.workspace_id
              and v.external_id = i.external_variant_id) as variant_id
    from (select distinct e.id from unnest(p_external_ids) as e(id) where e.id is not null) as e
    cross join lateral (
      select p.id, p.workspace_id from public.products p
      where p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = p_source
        and p.external_id = e.id
      offset 0
    ) as p
    cross join lateral (
      select i.id, i.order_id, i.external_variant_id from public.order_items i
      where i.workspace_id = v_workspace_id and i.external_product_id = e.id and i.product_id is null
      offset 0
    ) as i
    cross join lateral (
      select o.project_id, o.source from public.orders o where o.id = i.order_id
      offset 0
    ) as o
    where o.project_id = p_project_id and o.source = p_source
    union all
    select i.id, s.product_id, s.variant_id
    from (select distinct e.sku from unnest(p_skus) as e(sku) where e.sku is not null) as e
    cross join lateral (
      select coalesce(vs.product_id, ps.product_id) as product_id, vs.variant_id
      from (
        select min(v.product_id::text)::uuid as product_id, min(v.id::text)::uuid as variant_id
        from (
          select v.id, v.product_id from public.product_variants v
          where v.workspace_id = v_workspace_id and v.sku = e.sku
          offset 0
        ) as v
        cross join lateral (
          select p.project_id from public.products p where p.id = v.product_id
          offset 0
        ) as p
        where p.project_id = p_project_id
        having count(*) = 1
      ) as vs
      full join (
        select min(p.id::text)::uuid as product_id
        from (
          select p.id from public.products p where p.project_id = p_project_id and p.sku = e.sku
          offset 0
        ) as p
        having count(*) = 1
      ) as ps on true
    ) as s
    cross join lateral (
      select i.id, i.order_id, i.external_product_id from public.order_items i
      where s.product_id is not null and i.workspace_id = v_workspace_id and i.sku = e.sku
        and i.product_id is null
      offset 0
    ) as i
    cross join lateral (
      select o.project_id, o.source from public.orders o where o.id = i.order_id
      offset 0
    ) as o
    left join lateral (
      select p.id from public.products p
      where p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = o.source
        and p.external_id = i.external_product_id
      offset 0
    ) as named on true
    where o.project_id = p_project_id and named.id is null
  ) as l;
  if v_lines is null then
    return 0;
  end if;
  -- Each line by its key (a line another transaction linked meanwhile keeps its link).
  update public.order_items t
  set product_id = l.product_id, variant_id = coalesce(t.variant_id, l.variant_id)
  from unnest(v_lines, v_products, v_variants) as l(id, product_id, variant_id)
  where t.id = any (v_lines) and t.id = l.id and t.product_id is null;
  get diagnostics v_linked = row_count;
  return v_linked;
end
$$;

revoke all on function private.link_product_page_lines(uuid, text, text[], text[]) from public, anon, authenticated;

grant execute on function private.link_product_page_lines(uuid, text, text[], text[]) to service_role;

-- A shop's page of products: written as before (20261230090000_csv_products_through_page_upsert.sql),
-- then the project's unlinked lines that can name its products linked (not all of the project's
-- lines; a few probes when none is unlinked).
create or replace function private.upsert_products(p_project_id uuid, p_source text, p_products jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_written integer;
  v_ids text[];
  v_before jsonb;
  v_after jsonb;
begin
  if not exists (select 1 from public.projects p where p.id = p_project_id) then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if p_source not in ('shoptet', 'shopify', 'woocommerce') then
    return 0;
  end if;
  -- The project's catalog lock, exclusively, before any write (lockfix31): an orders import's
  -- part writing lines meanwhile (private.write_orders_chunk, which shares it) finishes first and
  -- this page's link then sees its lines; a part started after waits for this commit, and its
  -- insert then sees these products. Side by side, neither saw the other's rows.
  perform pg_catalog.pg_advisory_xact_lock(
    pg_catalog.hashtext('growthbase.project_catalog'), pg_catalog.hashtext(p_project_id::text));
  v_ids := array(
    select distinct left(e.doc ->> 'external_id', 200)
    from jsonb_array_elements(case when jsonb_typeof(p_products) = 'array' then p_products else '[]'::jsonb end) as e(doc)
    where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
  );
  v_before := private.product_page_catalog(p_project_id, p_source, v_ids);
  select count(*) into v_written
  from private.write_products(p_project_id, p_source, p_products, true) w
  where w.variant_external_id is null;
  v_after := private.product_page_catalog(p_project_id, p_source, v_ids);
  perform private.link_product_page_lines(
    p_project_id, p_source, v_ids,
    array(select distinct k ->> 2 from jsonb_array_elements(v_before || v_after) as k where k ->> 2 is not null)
  );
  return v_written;
end
$$;

revoke all on function private.upsert_products(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_products(uuid, text, jsonb) to service_role;

-- Products and variants, as 20270128090000_products_import_probes_by_key.sql; the products the
-- chunk's rows name are read before and after its writes, and the project's unlinked lines that
-- can name them are linked (private.link_product_page_lines, source csv). The job's end no longer
-- links the whole project: its chunks linked what they wrote.
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

  v_ids := array(
    select distinct c.product_id from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
    where c.problem is null
  );
  v_before := private.product_page_catalog(v_job.project_id, 'csv', v_ids);

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

  v_after := private.product_page_catalog(v_job.project_id, 'csv', v_ids);
  perform private.link_product_page_lines(
    v_job.project_id, 'csv', v_ids,
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
  return v_job;
end
$$;

revoke all on function private.import_products_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.import_products_chunk(uuid, integer) to service_role;

-- Once: the lines shop order pages wrote unlinked before their writers linked them, which the
-- next product page used to link, are linked project by project by the rules above.
select count(private.link_order_items(p.id))
from public.projects p
where exists (
  select from public.orders o
  join public.order_items i on i.order_id = o.id
  where o.project_id = p.id and i.product_id is null
);

-- indexes swapped ------------------------------------------------------------------------------

-- Last, the superseded keys go and the partial ones take their names: catalog changes only, so
-- the table's exclusive lock (taken by the first drop, held until the migration commits) blocks
-- reads for no scan or build.
drop index public.order_items_product_id_workspace_id_idx;

alter index public.order_items_linked_product_id_workspace_id_idx rename to order_items_product_id_workspace_id_idx;

drop index public.order_items_variant_id_workspace_id_idx;

alter index public.order_items_linked_variant_id_workspace_id_idx rename to order_items_variant_id_workspace_id_idx;
