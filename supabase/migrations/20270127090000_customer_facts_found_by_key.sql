-- The order and line triggers of customer facts and order events find their rows by key,
-- whatever the planner knows (issue 14, commerce data at scale).
--
-- A statement that changed orders or lines passed their ids (or their customers' ids) on as an
-- array and read `where o.id = any (v_orders)`, or joined the transition table to orders,
-- contacts, order lines and products. Without planner statistics (autovacuum is off here; a new
-- Supabase project's tables have none until it runs) the planner prices `= any` of an array of
-- a few hundred ids as most of the table, and a join of an unknown transition table as a hash
-- join: each such statement read every workspace's orders (customer_facts_add_items twice,
-- recount_customer_facts, customer_facts_change_items), every workspace's contacts and each of
-- their orders (record_order_lines), or every workspace's customer facts (lock, last products).
-- Each lookup is now a subquery that cannot be merged into a join (`offset 0`), run once per id
-- with the whole key in its index condition (the pattern of
-- 20270123090000_orders_import_lines_found_by_key.sql): a statement reads the rows it changed and
-- those of their customers, not the table.
--
-- Copied from their newest definitions and changed only in how rows are found:
--   private.lock_customer_facts, private.refresh_last_products, private.customer_facts_add_items,
--   private.customer_facts_change_items (20261201091000_customer_facts.sql),
--   private.recount_customer_facts (20270102090000_rfm_kept_scores.sql),
--   private.record_order_lines (20261212097000_order_lines_and_engagement_events.sql).
-- Facts rows found by a probe are written through the row the probe found (its ctid, in the
-- same statement), so no join to customer_facts is left to the planner either.

-- Locks the facts rows of the given customers, in contact order (so writers of overlapping
-- customers cannot deadlock on them), waiting for any writer that holds one; a probe each.
create or replace function private.lock_customer_facts(p_contacts uuid[])
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform 1
  from (select distinct c.contact_id from unnest(p_contacts) as c(contact_id) order by c.contact_id) as c
  cross join lateral (
    select 1 from public.customer_facts f
    where f.contact_id = c.contact_id
    offset 0
    for update
  ) as f;
end
$$;

revoke all on function private.lock_customer_facts(uuid[]) from public, anon, authenticated;

-- Counts the given customers again from their orders and writes their rows (deleting those left
-- without qualifying orders); the workspaces of the customers it writes are logged stale.
-- Callers lock the existing rows first. Each customer's orders are read by a probe of their
-- contact.
create or replace function private.recount_customer_facts(p_contacts uuid[])
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  with customers as (
    select distinct c.contact_id from unnest(p_contacts) as c(contact_id)
  ),
  counted as (
    select distinct on (o.contact_id)
           o.contact_id, o.workspace_id, o.id as first_order_id, o.placed_at as first_order_at,
           o.project_id as first_order_project_id, o.source as first_order_source,
           last_value(o.id) over w as last_order_id, last_value(o.placed_at) over w as last_order_at,
           (count(*) over w)::integer as orders_count, coalesce(sum(o.base_total) over w, 0) as revenue
    from customers c
    cross join lateral (
      select o.contact_id, o.workspace_id, o.id, o.placed_at, o.project_id, o.source, o.base_total
      from public.orders o
      where o.contact_id = c.contact_id and o.status in ('paid', 'fulfilled')
      offset 0
    ) as o
    window w as (partition by o.contact_id order by o.placed_at, o.id
                 rows between unbounded preceding and unbounded following)
    order by o.contact_id, o.placed_at, o.id
  ),
  written as (
    insert into public.customer_facts as f (
      contact_id, workspace_id, first_order_id, first_order_at, first_order_project_id,
      first_order_source, last_order_id, last_order_at, orders_count, revenue
    )
    select c.contact_id, c.workspace_id, c.first_order_id, c.first_order_at,
           c.first_order_project_id, c.first_order_source, c.last_order_id, c.last_order_at,
           c.orders_count, c.revenue
    from counted c
    order by c.contact_id
    on conflict (contact_id, workspace_id) do update
    set workspace_id = excluded.workspace_id, first_order_id = excluded.first_order_id,
        first_order_at = excluded.first_order_at,
        first_order_project_id = excluded.first_order_project_id,
        first_order_source = excluded.first_order_source, last_order_id = excluded.last_order_id,
        last_order_at = excluded.last_order_at, orders_count = excluded.orders_count,
        revenue = excluded.revenue, updated_at = now()
    where (f.workspace_id, f.first_order_id, f.first_order_at, f.first_order_project_id,
           f.first_order_source, f.last_order_id, f.last_order_at, f.orders_count, f.revenue)
          is distinct from
          (excluded.workspace_id, excluded.first_order_id, excluded.first_order_at,
           excluded.first_order_project_id, excluded.first_order_source, excluded.last_order_id,
           excluded.last_order_at, excluded.orders_count, excluded.revenue)
    returning f.workspace_id
  ),
  removed as (
    delete from public.customer_facts f
    where f.ctid = any (array(
      select g.ctid
      from customers c
      cross join lateral (
        select g.ctid from public.customer_facts g where g.contact_id = c.contact_id offset 0
      ) as g
      where not exists (select 1 from counted k where k.contact_id = c.contact_id)
    ))
    returning f.workspace_id
  )
  insert into private.rfm_stale (workspace_id)
  select distinct x.workspace_id
  from (select w.workspace_id from written w union all select r.workspace_id from removed r) as x
  on conflict do nothing;
end
$$;

revoke all on function private.recount_customer_facts(uuid[]) from public, anon, authenticated;

-- Finds the last product of the given customers again (see …_customer_facts.sql). Callers lock
-- the rows. A customer's orders by a probe of the contact, each order's lines by a probe of the
-- order, the product by its key.
create or replace function private.refresh_last_products(p_contacts uuid[])
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.customer_facts f
  set last_product_order_id = l.order_id, last_product_id = l.product_id,
      last_product_title = l.name, last_category = l.category, updated_at = now()
  from (
    select g.facts_row, x.order_id, x.product_id, x.name, p.category
    from (select distinct c.contact_id from unnest(p_contacts) as c(contact_id)) as c
    cross join lateral (
      select g.ctid as facts_row from public.customer_facts g
      where g.contact_id = c.contact_id
      offset 0
    ) as g
    left join lateral (
      select o.id as order_id, i.product_id, i.name
      from (
        select o.id, o.placed_at from public.orders o
        where o.contact_id = c.contact_id and o.status in ('paid', 'fulfilled')
        offset 0
      ) as o
      cross join lateral (
        select i.product_id, i.name, i.total, i.id from public.order_items i
        where i.order_id = o.id
        offset 0
      ) as i
      order by o.placed_at desc, o.id desc, i.total desc, i.id
      limit 1
    ) as x on true
    left join lateral (
      select p.category from public.products p where p.id = x.product_id offset 0
    ) as p on true
  ) as l
  where f.ctid = l.facts_row
    and (f.last_product_order_id, f.last_product_id, f.last_product_title, f.last_category)
        is distinct from (l.order_id, l.product_id, l.name, l.category);
end
$$;

revoke all on function private.refresh_last_products(uuid[]) from public, anon, authenticated;

-- Lines inserted (transition table new_items): for each customer, the newest qualifying order
-- among the new lines becomes the last product's order when it is at least as new as the
-- current one, and the product is that order's best line (its other lines included). Each order,
-- facts row, line and product is found by a probe of its key.
create or replace function private.customer_facts_add_items()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_orders uuid[];
  v_contacts uuid[];
begin
  select array_agg(distinct i.order_id) into v_orders from new_items i;
  select array_agg(distinct o.contact_id order by o.contact_id) into v_contacts
  from unnest(v_orders) as v(id)
  cross join lateral (
    select o.contact_id from public.orders o
    where o.id = v.id and o.contact_id is not null and o.status in ('paid', 'fulfilled')
    offset 0
  ) as o;
  if v_contacts is null then
    return null;
  end if;
  perform private.lock_customer_facts(v_contacts);
  update public.customer_facts f
  set last_product_order_id = b.order_id, last_product_id = b.product_id,
      last_product_title = b.name, last_category = b.category, updated_at = now()
  from (
    select cf.facts_row, t.order_id, best.product_id, best.name, p.category
    from (
      select distinct on (o.contact_id) o.contact_id, o.id as order_id, o.placed_at
      from unnest(v_orders) as v(id)
      cross join lateral (
        select o.contact_id, o.id, o.placed_at from public.orders o
        where o.id = v.id and o.contact_id is not null and o.status in ('paid', 'fulfilled')
        offset 0
      ) as o
      order by o.contact_id, o.placed_at desc, o.id desc
    ) as t
    cross join lateral (
      select cf.ctid as facts_row, cf.last_product_order_id from public.customer_facts cf
      where cf.contact_id = t.contact_id
      offset 0
    ) as cf
    left join lateral (
      select current_order.id, current_order.placed_at from public.orders current_order
      where current_order.id = cf.last_product_order_id
      offset 0
    ) as current_order on true
    cross join lateral (
      select l.product_id, l.name from public.order_items l
      where l.order_id = t.order_id
      order by l.total desc, l.id
      limit 1
    ) as best
    left join lateral (
      select p.category from public.products p where p.id = best.product_id offset 0
    ) as p on true
    where current_order.id is null
       or (t.placed_at, t.order_id) >= (current_order.placed_at, current_order.id)
  ) as b
  where f.ctid = b.facts_row
    and (f.last_product_order_id, f.last_product_id, f.last_product_title, f.last_category)
        is distinct from (b.order_id, b.product_id, b.name, b.category);
  return null;
end
$$;

revoke all on function private.customer_facts_add_items() from public, anon, authenticated;

-- Lines updated or deleted (old_items, and new_items for updates): customers whose changed
-- lines (order, product, name or total; found with EXCEPTs) belong to an order at least as new
-- as their last product's find it again. Orders and facts rows by a probe of their keys.
create or replace function private.customer_facts_change_items()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_orders uuid[];
  v_contacts uuid[];
begin
  if tg_op = 'UPDATE' then
    -- An insert ... on conflict fires this even when no row conflicted, with empty tables.
    perform 1 from new_items limit 1;
    if not found then
      return null;
    end if;
    with before as (
      select o.id, o.order_id, o.product_id, o.name, o.total from old_items o
    ),
    after as (
      select n.id, n.order_id, n.product_id, n.name, n.total from new_items n
    ),
    changed as (
      (select * from before except select * from after)
      union all
      (select * from after except select * from before)
    )
    select array_agg(distinct c.order_id) into v_orders from changed c;
  else
    select array_agg(distinct o.order_id) into v_orders from old_items o;
  end if;
  if v_orders is null then
    return null;
  end if;
  select array_agg(distinct o.contact_id order by o.contact_id) into v_contacts
  from unnest(v_orders) as v(id)
  cross join lateral (
    select o.contact_id, o.id, o.placed_at from public.orders o
    where o.id = v.id and o.contact_id is not null and o.status in ('paid', 'fulfilled')
    offset 0
  ) as o
  cross join lateral (
    select f.last_product_order_id from public.customer_facts f
    where f.contact_id = o.contact_id
    offset 0
  ) as f
  left join lateral (
    select current_order.id, current_order.placed_at from public.orders current_order
    where current_order.id = f.last_product_order_id
    offset 0
  ) as current_order on true
  where current_order.id is null or (o.placed_at, o.id) >= (current_order.placed_at, current_order.id);
  if v_contacts is not null then
    perform private.lock_customer_facts(v_contacts);
    perform private.refresh_last_products(v_contacts);
  end if;
  return null;
end
$$;

revoke all on function private.customer_facts_change_items() from public, anon, authenticated;

-- Lines inserted: an order_placed event with the order's products and categories for each
-- recent order of a contact not erased (as before); each line's order, the order's contact and
-- each line's product found by a probe of its key.
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
           'product_ids', coalesce(jsonb_agg(distinct i.product_id) filter (where i.product_id is not null), '[]'::jsonb),
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
    select p.category from public.products p where p.id = i.product_id offset 0
  ) as p on true
  group by o.id, o.workspace_id, o.contact_id, o.placed_at;
  return null;
end
$$;

revoke all on function private.record_order_lines() from public, anon, authenticated;
