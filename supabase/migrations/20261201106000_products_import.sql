-- Products import (issue 14 §1, §3): a shop's catalog as CSV, into a project's products with
-- source csv, merged set-based a chunk at a time like orders and contacts. Columns: product_id
-- (the shop's id, required), title (required), sku, price and currency (a price needs its
-- currency), inventory (a whole number; empty: not tracked), url, image_url, category, status
-- (active, draft or archived; empty: active). A product is matched by its product_id: a new one
-- is created, a known one takes the row's values, an unchanged one is not written. A repeated
-- product_id is reported and the first row wins. When the job ends, order lines imported
-- earlier that name these products (by item_product_id, else by an unambiguous SKU) are linked.

create unlogged table private.import_product_rows (
  job_id uuid not null,
  record bigint not null,
  line bigint not null,
  product_id text,
  title text,
  sku text,
  price text,
  currency text,
  inventory text,
  url text,
  image_url text,
  category text,
  status text,
  problem text,
  problem_column text,
  primary key (job_id, record)
);

-- indexes and triggers ------------------------------------------------------------------------

create function private.drop_import_product_rows()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.import_product_rows r where r.job_id in (select o.id from gone o);
  return null;
end
$$;

revoke all on function private.drop_import_product_rows() from public, anon, authenticated;

create function private.drop_finished_import_product_rows()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.import_product_rows r where r.job_id = new.id;
  return null;
end
$$;

revoke all on function private.drop_finished_import_product_rows() from public, anon, authenticated;

create trigger import_jobs_drop_product_rows
  after delete on public.import_jobs
  referencing old table as gone
  for each statement execute function private.drop_import_product_rows();

create trigger import_jobs_drop_finished_product_rows
  after update of status on public.import_jobs
  for each row when (new.kind = 'products' and new.status in ('done', 'failed', 'cancelled') and old.status <> new.status)
  execute function private.drop_finished_import_product_rows();

-- functions -----------------------------------------------------------------------------------

-- After the file is staged: a later row with the product_id of an earlier one is reported (the
-- first wins), then the job starts importing.
create function private.validate_products_import(p_job_id uuid)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs;
begin
  update private.import_product_rows r
  set problem = format('product_id repeats line %s', d.first_line), problem_column = 'product_id'
  from (
    select s.record, first_value(s.line) over w as first_line, row_number() over w as n
    from private.import_product_rows s
    where s.job_id = p_job_id and s.problem is null
      and btrim(s.product_id) in (
        select btrim(e.product_id) from private.import_product_rows e
        where e.job_id = p_job_id and e.problem is null and btrim(e.product_id) <> ''
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

-- Merges the job's next chunk of up to p_max_records staged rows in one statement, with the job's
-- cursor and counts in the same transaction; the last chunk links order lines and ends the job.
create function private.import_products_chunk(p_job_id uuid, p_max_records integer)
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

  with checked as (
    select c.*,
           coalesce(c.loader_problem,
             case
               when c.product_id is null then 'product_id is empty'
               when char_length(c.product_id) > 200 then 'product_id may have at most 200 characters'
               when c.title is null then 'title is empty'
               when char_length(c.title) > 500 then 'title may have at most 500 characters'
               when char_length(c.sku) > 200 then 'sku may have at most 200 characters'
               when c.price ~ '^-' then 'price must be zero or more'
               when c.price ~ '^[0-9]*\.[0-9]{3,}$' then 'price has more than two decimals'
               when c.price !~ '^(?:[0-9]{1,12}(?:\.[0-9]{0,2})?|\.[0-9]{1,2})$' then 'price is not a number below 1000000000000'
               when c.price is not null and c.currency is null then 'currency is empty: a price needs its currency'
               when c.currency !~ '^[A-Z]{3}$' then 'currency must be a three-letter ISO code'
               when c.inventory !~ '^-?[0-9]{1,9}$' then 'inventory must be a whole number'
               when char_length(c.url) > 2048 or char_length(c.image_url) > 2048 then 'url and image_url may have at most 2048 characters'
               when char_length(c.category) > 500 then 'category may have at most 500 characters'
               when c.status not in ('active', 'draft', 'archived') then 'status must be active, draft or archived'
             end) as problem
    from (
      select r.record, r.line, r.problem as loader_problem, r.problem_column as loader_column,
             nullif(btrim(r.product_id), '') as product_id, nullif(btrim(r.title), '') as title,
             nullif(btrim(r.sku), '') as sku, nullif(btrim(r.price), '') as price,
             nullif(upper(btrim(r.currency)), '') as currency, nullif(btrim(r.inventory), '') as inventory,
             nullif(btrim(r.url), '') as url, nullif(btrim(r.image_url), '') as image_url,
             nullif(btrim(r.category), '') as category, nullif(lower(btrim(r.status)), '') as status
      from private.import_product_rows r
      where r.job_id = p_job_id and r.record > v_job.merge_record and r.record <= v_to
    ) as c
  ),
  written as (
    insert into public.products as p (
      workspace_id, project_id, source, external_id, title, sku, price, currency, inventory, url,
      image_url, category, status
    )
    select v_job.workspace_id, v_job.project_id, 'csv', c.product_id, c.title, c.sku,
           c.price::numeric(14, 2), c.currency, c.inventory::integer, c.url, c.image_url,
           c.category, coalesce(c.status, 'active')
    from checked c
    where c.problem is null
    order by c.record
    on conflict (workspace_id, project_id, source, external_id) do update
    set title = excluded.title, sku = excluded.sku, price = excluded.price,
        currency = excluded.currency, inventory = excluded.inventory, url = excluded.url,
        image_url = excluded.image_url, category = excluded.category, status = excluded.status
    where (p.title, p.sku, p.price, p.currency, p.inventory, p.url, p.image_url, p.category, p.status)
          is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                            excluded.inventory, excluded.url, excluded.image_url, excluded.category,
                            excluded.status)
    returning p.xmax = 0 as inserted
  )
  select count(*) filter (where w.inserted), count(*) filter (where not w.inserted),
         (select jsonb_agg(jsonb_build_object(
                   'line', c.line,
                   'column_name', coalesce(c.loader_column, case when split_part(c.problem, ' ', 1) in (
                     'product_id', 'title', 'sku', 'price', 'currency', 'inventory', 'url', 'category', 'status')
                     then split_part(c.problem, ' ', 1) end),
                   'reason', c.problem) order by c.line)
          from checked c where c.problem is not null),
         (select count(*) from checked c where c.problem is null)
  into v_created, v_updated, v_errors, v_valid
  from written w;
  if v_errors is not null then
    perform private.record_import_errors(v_job, v_errors);
  end if;

  update public.import_jobs j
  set merge_record = v_to,
      rows_processed = v_to,
      created = j.created + v_created,
      updated = j.updated + v_updated,
      unchanged = j.unchanged + v_valid - v_created - v_updated,
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

-- grants --------------------------------------------------------------------------------------

revoke all on private.import_product_rows from public, anon, authenticated;

-- The edge copies the file's rows in, as the service.
grant insert on private.import_product_rows to service_role;
