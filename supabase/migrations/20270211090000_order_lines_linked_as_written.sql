-- An order's lines are linked to the catalog as they are written (issue 14 §3).
--
-- A shop's orders (webhooks, syncs, backfills: private.upsert_orders) write their lines without
-- the catalog's ids, and only a catalog write (a product webhook or page, a products import) or
-- the end of an orders import ran private.link_order_items. So a shop whose catalog was synced
-- first kept every later order's lines unlinked until the next product change: product
-- analytics counted them under their SKU beside the product (its category left out), the
-- segment rule "bought product / category X in the last N days" missed every recent buyer, and
-- customer facts named no last product.
--
-- The lines a statement inserts without a product are now linked by the same statement, by the
-- rules of private.link_order_items: by the shop's product id (and variant id within that
-- product) in the order's project and source, else by a SKU that names exactly one variant,
-- else exactly one product, of the project. The lines are found in the statement's transition
-- table and every order, product and variant by a probe of its key (subqueries the planner
-- cannot merge), so a webhook's order costs a few probes, whatever the tables' statistics.
-- Every writer's lines are linked here, however many (an order the Data API imports through
-- public.import_order, private.upsert_order); a shop's page (private.upsert_orders,
-- 20270207090000) and an orders import's part (private.write_orders_chunk, 20270214090000)
-- write their lines already linked by the same rules and mark that statement with the
-- transaction-local setting growthbase.lines_linked_by_writer, which this trigger skips.
-- Otherwise it only touches lines still without a product.

create function private.link_inserted_order_items()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if pg_catalog.current_setting('growthbase.lines_linked_by_writer', true) = 'on'
     or not exists (select from new_items i
                    where i.product_id is null and (i.external_product_id is not null or i.sku is not null)) then
    return null;
  end if;
  update public.order_items t
  set product_id = l.product_id, variant_id = coalesce(t.variant_id, l.variant_id)
  from (
    select i.id, coalesce(e.product_id, vs.product_id, ps.product_id) as product_id,
           case when e.product_id is not null then e.variant_id else vs.variant_id end as variant_id
    from new_items i
    cross join lateral (
      select o.project_id, o.source from public.orders o where o.id = i.order_id offset 0
    ) as o
    left join lateral (
      select p.id as product_id,
             (select v.id from public.product_variants v
              where v.product_id = p.id and v.workspace_id = p.workspace_id
                and v.external_id = i.external_variant_id) as variant_id
      from public.products p
      where p.workspace_id = i.workspace_id and p.project_id = o.project_id and p.source = o.source
        and p.external_id = i.external_product_id
      offset 0
    ) as e on true
    left join lateral (
      select min(v.product_id::text)::uuid as product_id, min(v.id::text)::uuid as variant_id
      from public.product_variants v
      join public.products p on p.id = v.product_id
      where e.product_id is null and v.workspace_id = i.workspace_id and v.sku = i.sku
        and p.project_id = o.project_id
      having count(*) = 1
    ) as vs on true
    left join lateral (
      select min(p.id::text)::uuid as product_id
      from public.products p
      where e.product_id is null and vs.product_id is null and p.project_id = o.project_id
        and p.sku = i.sku
      having count(*) = 1
    ) as ps on true
    where i.product_id is null and (i.external_product_id is not null or i.sku is not null)
  ) as l
  where t.id = l.id and l.product_id is not null;
  return null;
end
$$;

revoke all on function private.link_inserted_order_items() from public, anon, authenticated;

create trigger order_items_link_catalog
  after insert on public.order_items
  referencing new table as new_items
  for each statement execute function private.link_inserted_order_items();

-- The order_placed lines event (…_order_lines_and_engagement_events.sql) names the products the
-- lines have once linked: the trigger above runs first (triggers fire in name order), so each
-- line's product is read from the stored line, a probe of its key, rather than from the
-- transition table, which holds the lines as inserted. Copied from
-- 20270127090000_customer_facts_found_by_key.sql; only the product's lateral changes.
create or replace function private.record_order_lines()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.contact_events (workspace_id, contact_id, type, properties, occurred_at)
  select o.workspace_id, o.contact_id, 'order_placed',
         jsonb_build_object(
           'order_id', o.id, 'lines', true,
           'product_ids', coalesce(jsonb_agg(distinct p.product_id) filter (where p.product_id is not null), '[]'::jsonb),
           'categories', coalesce(jsonb_agg(distinct lower(p.category)) filter (where p.category is not null), '[]'::jsonb)),
         o.placed_at
  from new_items i
  cross join lateral (
    select o.id, o.workspace_id, o.contact_id, o.placed_at from public.orders o
    where o.id = i.order_id and o.placed_at > now() - interval '2 days'
    offset 0
  ) as o
  cross join lateral (
    select from public.contacts c where c.id = o.contact_id and c.erased_at is null offset 0
  ) as c
  left join lateral (
    select s.product_id, (select p.category from public.products p where p.id = s.product_id) as category
    from public.order_items s where s.id = i.id
    offset 0
  ) as p on true
  group by o.id, o.workspace_id, o.contact_id, o.placed_at;
  return null;
end
$$;

revoke all on function private.record_order_lines() from public, anon, authenticated;
