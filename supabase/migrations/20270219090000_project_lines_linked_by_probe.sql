-- A project's unlinked order lines, for private.link_order_items (20261201090000_products.sql),
-- which an orders import runs as its job ends (issue 14: imports at the scale of a real shop's
-- history), are found in the partial indexes of unlinked lines that name a product
-- (20270216090000_product_pages_link_their_lines.sql), each line's order by a probe of its key.
-- It joined every unlinked line to its order and kept the project's: on tables without
-- statistics (a new project's) that was planned as a scan of every workspace's lines (84,500
-- lines read for a part of 3,000 beside another workspace's 40,000), and a job of orders without
-- lines still read the project's orders. A line naming neither a shop id nor a SKU can link to
-- nothing and is not read. Copied from 20261201090000_products.sql; only `unlinked` changed.
--
-- No writer calls it any more (mendlink31): it reads every unlinked line of the workspace that
-- names a product (2.2 s for a project of 10 lines beside 200,000 unlinkable lines of another
-- project), so an orders import links its lines as it writes them
-- (20270214090000_orders_keyed_per_project.sql) and a products import links per chunk
-- (20270220090000_woocommerce_export_keyed_as_its_store.sql), neither at the job's end. It stays
-- the project-wide link for an operator (and 20270216090000's one-off pass, which runs before
-- this file, with the 20261201090000 definition).

-- functions -----------------------------------------------------------------------------------

create or replace function private.link_order_items(p_project_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid := (select p.workspace_id from public.projects p where p.id = p_project_id);
  v_linked integer;
begin
  with unlinked as (
    select i.id, i.workspace_id, i.sku, i.external_product_id, i.external_variant_id,
           o.project_id, o.source
    from (
      select i.id, i.order_id, i.workspace_id, i.sku, i.external_product_id, i.external_variant_id
      from public.order_items i
      where i.workspace_id = v_workspace_id and i.product_id is null
        and i.external_product_id is not null
      union all
      select i.id, i.order_id, i.workspace_id, i.sku, i.external_product_id, i.external_variant_id
      from public.order_items i
      where i.workspace_id = v_workspace_id and i.product_id is null and i.sku is not null
        and i.external_product_id is null
    ) as i
    cross join lateral (
      select o.project_id, o.source from public.orders o
      where o.id = i.order_id and o.project_id = p_project_id
      offset 0
    ) as o
  ),
  by_external_id as (
    select u.id, p.id as product_id, v.id as variant_id
    from unlinked u
    join public.products p
      on p.workspace_id = u.workspace_id and p.project_id = u.project_id
     and p.source = u.source and p.external_id = u.external_product_id
    left join public.product_variants v
      on v.product_id = p.id and v.workspace_id = p.workspace_id
     and v.external_id = u.external_variant_id
  ),
  variant_skus as (
    select v.sku, min(v.id::text)::uuid as variant_id, min(v.product_id::text)::uuid as product_id
    from public.product_variants v
    join public.products p on p.id = v.product_id
    where p.project_id = p_project_id and v.sku is not null
    group by v.sku
    having count(*) = 1
  ),
  product_skus as (
    select p.sku, min(p.id::text)::uuid as product_id
    from public.products p
    where p.project_id = p_project_id and p.sku is not null
    group by p.sku
    having count(*) = 1
  ),
  by_sku as (
    select u.id, coalesce(vs.product_id, ps.product_id) as product_id, vs.variant_id
    from unlinked u
    left join variant_skus vs on vs.sku = u.sku
    left join product_skus ps on ps.sku = u.sku
    where u.sku is not null and u.id not in (select e.id from by_external_id e)
      and coalesce(vs.product_id, ps.product_id) is not null
  ),
  links as (
    select * from by_external_id union all select * from by_sku
  )
  update public.order_items i
  set product_id = l.product_id, variant_id = coalesce(i.variant_id, l.variant_id)
  from links l
  where i.id = l.id;
  get diagnostics v_linked = row_count;
  return v_linked;
end
$$;

revoke all on function private.link_order_items(uuid) from public, anon, authenticated;

grant execute on function private.link_order_items(uuid) to service_role;
