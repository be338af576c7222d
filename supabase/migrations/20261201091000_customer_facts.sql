-- Customer facts kept on write (issue 14 §2): per contact with at least one qualifying order
-- (paid or fulfilled), the first and last order, how many, the revenue in the workspace's base
-- currency (sum of base_total, as RFM counts it), the average order value and the last product
-- bought, so RFM, segments and dashboards read one row per customer instead of re-aggregating
-- every order.
--
-- Maintenance, by statement-level triggers with transition tables (O(rows changed), never a
-- scan of the workspace's orders):
--   orders inserted  -> merged into the facts with one upsert (counts and sums add up; first
--                       and last order by (placed_at, id)); commutative, so concurrent inserts
--                       for one customer queue on its row and each adds its own orders;
--   orders updated   -> only versions whose status class, contact, placed_at, base_total,
--   or deleted          project or source changed; their customers' rows are locked (in contact
--                       order), then counted again from their orders in a new statement, so the
--                       count includes whatever a writer that held the lock committed. A
--                       contact's merge or erasure moves or clears orders' contact_id (an
--                       update, also the on-delete-set-null of a deleted contact), so both
--                       contacts are counted again; a customer left without qualifying orders
--                       loses the row;
--   order lines      -> the last product: the line with the highest total (then the lowest id)
--                       of the customer's newest qualifying order that has lines (Shoptet's
--                       sync writes orders without lines, so the newest order may have none);
--                       only lines of an order at least as new as the current one matter;
--   products         -> a changed category is copied to the customers whose last product it is.
-- An order's contact belongs to the order's workspace (every writer finds or creates it there);
-- the facts' foreign key refuses a write that breaks this rather than scoring it silently.
--
-- analytics.verify_customer_facts() counts everything again from the orders and lists any row
-- that differs (expected: none), for the workspaces the caller may see.

create table public.customer_facts (
  contact_id uuid not null,
  workspace_id uuid not null,
  first_order_id uuid not null,
  first_order_at timestamptz not null,
  first_order_project_id uuid not null,
  first_order_source text not null,
  last_order_id uuid not null,
  last_order_at timestamptz not null,
  orders_count integer not null check (orders_count > 0),
  revenue numeric(20, 2) not null,
  average_order_value numeric(20, 2) generated always as (round(revenue / orders_count, 2)) stored,
  last_product_order_id uuid,
  last_product_id uuid,
  last_product_title text,
  last_category text,
  updated_at timestamptz not null default now(),
  primary key (contact_id, workspace_id),
  foreign key (contact_id, workspace_id) references public.contacts (id, workspace_id) on delete cascade
)
with (fillfactor = 80);

-- indexes -------------------------------------------------------------------------------------

-- A workspace's customers (row level security, RFM for one workspace), and its new customers by
-- the date of their first order (sales trends). Only these columns and the key are indexed, and
-- the table keeps a fifth of each page free, so the usual change (a new order: counts, revenue,
-- last order) is a heap-only update that writes no index.
create index customer_facts_workspace_first_order_idx
  on public.customer_facts (workspace_id, first_order_at)
  include (first_order_project_id, first_order_source);

-- maintenance ---------------------------------------------------------------------------------

-- Counts the given customers again from their orders and writes their rows (deleting those left
-- without qualifying orders). Callers lock the existing rows first.
create function private.recount_customer_facts(p_contacts uuid[])
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  with counted as (
    select distinct on (o.contact_id)
           o.contact_id, o.workspace_id, o.id as first_order_id, o.placed_at as first_order_at,
           o.project_id as first_order_project_id, o.source as first_order_source,
           last_value(o.id) over w as last_order_id, last_value(o.placed_at) over w as last_order_at,
           (count(*) over w)::integer as orders_count, coalesce(sum(o.base_total) over w, 0) as revenue
    from public.orders o
    where o.contact_id = any (p_contacts) and o.status in ('paid', 'fulfilled')
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
    returning f.contact_id
  )
  delete from public.customer_facts f
  where f.contact_id = any (p_contacts)
    and not exists (select 1 from counted c where c.contact_id = f.contact_id);
end
$$;

revoke all on function private.recount_customer_facts(uuid[]) from public, anon, authenticated;

-- Finds the last product of the given customers again (see the header). Callers lock the rows.
create function private.refresh_last_products(p_contacts uuid[])
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
    select c.contact_id, x.order_id, x.product_id, x.name, p.category
    from unnest(p_contacts) as c(contact_id)
    left join lateral (
      select o.id as order_id, i.product_id, i.name
      from public.orders o
      join public.order_items i on i.order_id = o.id
      where o.contact_id = c.contact_id and o.status in ('paid', 'fulfilled')
      order by o.placed_at desc, o.id desc, i.total desc, i.id
      limit 1
    ) as x on true
    left join public.products p on p.id = x.product_id
  ) as l
  where f.contact_id = l.contact_id
    and (f.last_product_order_id, f.last_product_id, f.last_product_title, f.last_category)
        is distinct from (l.order_id, l.product_id, l.name, l.category);
end
$$;

revoke all on function private.refresh_last_products(uuid[]) from public, anon, authenticated;

-- Locks the facts rows of the given customers, in contact order (so writers of overlapping
-- customers cannot deadlock on them), waiting for any writer that holds one.
create function private.lock_customer_facts(p_contacts uuid[])
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform 1 from public.customer_facts f
  where f.contact_id = any (p_contacts)
  order by f.contact_id
  for update;
end
$$;

revoke all on function private.lock_customer_facts(uuid[]) from public, anon, authenticated;

-- Orders inserted: merged into their customers' facts with one upsert (transition table
-- new_orders). Lines cannot exist yet for a new order, so the last product is untouched.
create function private.customer_facts_add_orders()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.customer_facts as f (
    contact_id, workspace_id, first_order_id, first_order_at, first_order_project_id,
    first_order_source, last_order_id, last_order_at, orders_count, revenue
  )
  select a.contact_id, a.workspace_id, a.first_order_id, a.first_order_at,
         a.first_order_project_id, a.first_order_source, a.last_order_id, a.last_order_at,
         a.orders_count, a.revenue
  from (
    select distinct on (n.contact_id)
           n.contact_id, n.workspace_id, n.id as first_order_id, n.placed_at as first_order_at,
           n.project_id as first_order_project_id, n.source as first_order_source,
           last_value(n.id) over w as last_order_id, last_value(n.placed_at) over w as last_order_at,
           (count(*) over w)::integer as orders_count, coalesce(sum(n.base_total) over w, 0) as revenue
    from new_orders n
    where n.contact_id is not null and n.status in ('paid', 'fulfilled')
    window w as (partition by n.contact_id order by n.placed_at, n.id
                 rows between unbounded preceding and unbounded following)
    order by n.contact_id, n.placed_at, n.id
  ) as a
  order by a.contact_id
  on conflict (contact_id, workspace_id) do update
  set first_order_id = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                            then excluded.first_order_id else f.first_order_id end,
      first_order_project_id = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                                    then excluded.first_order_project_id else f.first_order_project_id end,
      first_order_source = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                                then excluded.first_order_source else f.first_order_source end,
      first_order_at = least(f.first_order_at, excluded.first_order_at),
      last_order_id = case when (excluded.last_order_at, excluded.last_order_id) > (f.last_order_at, f.last_order_id)
                           then excluded.last_order_id else f.last_order_id end,
      last_order_at = greatest(f.last_order_at, excluded.last_order_at),
      orders_count = f.orders_count + excluded.orders_count,
      revenue = f.revenue + excluded.revenue,
      updated_at = now();
  return null;
end
$$;

revoke all on function private.customer_facts_add_orders() from public, anon, authenticated;

-- Orders updated or deleted (transition tables old_orders and, for updates, new_orders): the
-- customers of every version that counted and changed in a way facts see (status class,
-- contact, placed_at, base_total, project, source) are locked and counted again, and their last
-- product found again. The changed versions are the old ones without an identical new one and
-- the reverse (two EXCEPTs), not a join of the two tables: a trigger's plan is cached whatever
-- the size of its transition tables, and a nested loop planned for one row would be quadratic
-- for an import's.
create function private.customer_facts_recount_orders()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contacts uuid[];
begin
  if tg_op = 'UPDATE' then
    -- An insert ... on conflict fires this even when no row conflicted, with empty tables.
    perform 1 from new_orders limit 1;
    if not found then
      return null;
    end if;
    with before as (
      select o.id, o.contact_id, o.placed_at, o.base_total, o.workspace_id, o.project_id, o.source
      from old_orders o where o.contact_id is not null and o.status in ('paid', 'fulfilled')
    ),
    after as (
      select n.id, n.contact_id, n.placed_at, n.base_total, n.workspace_id, n.project_id, n.source
      from new_orders n where n.contact_id is not null and n.status in ('paid', 'fulfilled')
    ),
    changed as (
      (select * from before except select * from after)
      union all
      (select * from after except select * from before)
    )
    select array_agg(distinct c.contact_id order by c.contact_id) into v_contacts from changed c;
  else
    select array_agg(distinct o.contact_id order by o.contact_id) into v_contacts
    from old_orders o
    where o.contact_id is not null and o.status in ('paid', 'fulfilled');
  end if;
  if v_contacts is not null then
    perform private.lock_customer_facts(v_contacts);
    perform private.recount_customer_facts(v_contacts);
    perform private.refresh_last_products(v_contacts);
  end if;
  return null;
end
$$;

revoke all on function private.customer_facts_recount_orders() from public, anon, authenticated;

-- Lines inserted (transition table new_items): for each customer, the newest qualifying order
-- among the new lines becomes the last product's order when it is at least as new as the
-- current one, and the product is that order's best line (its other lines included). The
-- orders are passed on as an array, so every plan reads them through indexes whatever their
-- number.
create function private.customer_facts_add_items()
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
  from public.orders o
  where o.id = any (v_orders) and o.contact_id is not null and o.status in ('paid', 'fulfilled');
  if v_contacts is null then
    return null;
  end if;
  perform private.lock_customer_facts(v_contacts);
  update public.customer_facts f
  set last_product_order_id = b.order_id, last_product_id = b.product_id,
      last_product_title = b.name, last_category = b.category, updated_at = now()
  from (
    select t.contact_id, t.order_id, best.product_id, best.name, p.category
    from (
      select distinct on (o.contact_id) o.contact_id, o.id as order_id, o.placed_at
      from public.orders o
      where o.id = any (v_orders) and o.contact_id is not null and o.status in ('paid', 'fulfilled')
      order by o.contact_id, o.placed_at desc, o.id desc
    ) as t
    join public.customer_facts cf on cf.contact_id = t.contact_id
    left join public.orders current_order on current_order.id = cf.last_product_order_id
    cross join lateral (
      select l.product_id, l.name from public.order_items l
      where l.order_id = t.order_id
      order by l.total desc, l.id
      limit 1
    ) as best
    left join public.products p on p.id = best.product_id
    where current_order.id is null
       or (t.placed_at, t.order_id) >= (current_order.placed_at, current_order.id)
  ) as b
  where f.contact_id = b.contact_id
    and (f.last_product_order_id, f.last_product_id, f.last_product_title, f.last_category)
        is distinct from (b.order_id, b.product_id, b.name, b.category);
  return null;
end
$$;

revoke all on function private.customer_facts_add_items() from public, anon, authenticated;

-- Lines updated or deleted (old_items, and new_items for updates): customers whose changed
-- lines (order, product, name or total; found with EXCEPTs, as above) belong to an order at
-- least as new as their last product's find it again.
create function private.customer_facts_change_items()
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
  from public.orders o
  join public.customer_facts f on f.contact_id = o.contact_id
  left join public.orders current_order on current_order.id = f.last_product_order_id
  where o.id = any (v_orders) and o.status in ('paid', 'fulfilled')
    and (current_order.id is null or (o.placed_at, o.id) >= (current_order.placed_at, current_order.id));
  if v_contacts is not null then
    perform private.lock_customer_facts(v_contacts);
    perform private.refresh_last_products(v_contacts);
  end if;
  return null;
end
$$;

revoke all on function private.customer_facts_change_items() from public, anon, authenticated;

-- A product's category changed (old_products, new_products; found with an EXCEPT, as above):
-- copied to the customers whose last product it is. last_product_id is not indexed (it changes
-- with most new orders, and an index would cost every one of them an index write), so this
-- reads the customer facts once per statement that changes categories: catalog edits, rare.
create function private.customer_facts_product_category()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_products uuid[];
  v_categories text[];
begin
  select array_agg(c.id), array_agg(c.category) into v_products, v_categories
  from (select n.id, n.category from new_products n
        except
        select o.id, o.category from old_products o) as c;
  if v_products is null then
    return null;
  end if;
  update public.customer_facts f
  set last_category = c.category, updated_at = now()
  from unnest(v_products, v_categories) as c(id, category)
  where f.last_product_id = c.id and f.last_category is distinct from c.category;
  return null;
end
$$;

revoke all on function private.customer_facts_product_category() from public, anon, authenticated;

-- A truncate of orders or lines (maintenance only) leaves no customers, or no last products.
create function private.customer_facts_truncated()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_table_name = 'orders' then
    delete from public.customer_facts;
  else
    update public.customer_facts
    set last_product_order_id = null, last_product_id = null, last_product_title = null,
        last_category = null, updated_at = now()
    where last_product_order_id is not null;
  end if;
  return null;
end
$$;

revoke all on function private.customer_facts_truncated() from public, anon, authenticated;

-- Created before the backfill: creating them locks orders, order_items and products against
-- writes until this migration commits, so the backfill and the triggers never overlap.
create trigger orders_customer_facts_inserted
  after insert on public.orders
  referencing new table as new_orders
  for each statement execute function private.customer_facts_add_orders();

create trigger orders_customer_facts_updated
  after update on public.orders
  referencing old table as old_orders new table as new_orders
  for each statement execute function private.customer_facts_recount_orders();

create trigger orders_customer_facts_deleted
  after delete on public.orders
  referencing old table as old_orders
  for each statement execute function private.customer_facts_recount_orders();

create trigger orders_customer_facts_truncated
  after truncate on public.orders
  for each statement execute function private.customer_facts_truncated();

create trigger order_items_customer_facts_inserted
  after insert on public.order_items
  referencing new table as new_items
  for each statement execute function private.customer_facts_add_items();

create trigger order_items_customer_facts_updated
  after update on public.order_items
  referencing old table as old_items new table as new_items
  for each statement execute function private.customer_facts_change_items();

create trigger order_items_customer_facts_deleted
  after delete on public.order_items
  referencing old table as old_items
  for each statement execute function private.customer_facts_change_items();

create trigger order_items_customer_facts_truncated
  after truncate on public.order_items
  for each statement execute function private.customer_facts_truncated();

create trigger products_customer_facts_category
  after update on public.products
  referencing old table as old_products new table as new_products
  for each statement execute function private.customer_facts_product_category();

-- The facts of the given customers as their orders and lines say they should be, for the
-- backfill and for the check below.
create function private.counted_customer_facts(p_workspace_ids uuid[])
returns table (
  contact_id uuid, workspace_id uuid, first_order_id uuid, first_order_at timestamptz,
  first_order_project_id uuid, first_order_source text, last_order_id uuid,
  last_order_at timestamptz, orders_count integer, revenue numeric(20, 2),
  last_product_order_id uuid, last_product_id uuid, last_product_title text, last_category text
)
language sql
stable
security definer
set search_path = ''
set work_mem = '64MB'
as $$
  with counted as (
    select distinct on (o.contact_id)
           o.contact_id, o.workspace_id, o.id as first_order_id, o.placed_at as first_order_at,
           o.project_id as first_order_project_id, o.source as first_order_source,
           last_value(o.id) over w as last_order_id, last_value(o.placed_at) over w as last_order_at,
           (count(*) over w)::integer as orders_count, coalesce(sum(o.base_total) over w, 0) as revenue
    from public.orders o
    where o.contact_id is not null and o.status in ('paid', 'fulfilled')
      and (p_workspace_ids is null or o.workspace_id = any (p_workspace_ids))
    window w as (partition by o.contact_id order by o.placed_at, o.id
                 rows between unbounded preceding and unbounded following)
    order by o.contact_id, o.placed_at, o.id
  ),
  last_products as (
    select distinct on (o.contact_id) o.contact_id, o.id as order_id, i.product_id, i.name
    from public.orders o
    join public.order_items i on i.order_id = o.id
    where o.contact_id is not null and o.status in ('paid', 'fulfilled')
      and (p_workspace_ids is null or o.workspace_id = any (p_workspace_ids))
    order by o.contact_id, o.placed_at desc, o.id desc, i.total desc, i.id
  )
  select c.contact_id, c.workspace_id, c.first_order_id, c.first_order_at,
         c.first_order_project_id, c.first_order_source, c.last_order_id, c.last_order_at,
         c.orders_count, c.revenue, l.order_id, l.product_id, l.name, p.category
  from counted c
  left join last_products l on l.contact_id = c.contact_id
  left join public.products p on p.id = l.product_id
$$;

revoke all on function private.counted_customer_facts(uuid[]) from public, anon, authenticated;

insert into public.customer_facts (
  contact_id, workspace_id, first_order_id, first_order_at, first_order_project_id,
  first_order_source, last_order_id, last_order_at, orders_count, revenue,
  last_product_order_id, last_product_id, last_product_title, last_category
)
select c.contact_id, c.workspace_id, c.first_order_id, c.first_order_at, c.first_order_project_id,
       c.first_order_source, c.last_order_id, c.last_order_at, c.orders_count, c.revenue,
       c.last_product_order_id, c.last_product_id, c.last_product_title, c.last_category
from private.counted_customer_facts(null) c;

-- Every customer whose kept facts differ from a count of their orders (expected: none), in
-- the workspaces the caller may see: their own, or all for an analyst (as analytics.rfm).
create function analytics.verify_customer_facts()
returns table (workspace_id uuid, contact_id uuid, kept jsonb, counted jsonb)
language sql
stable
security definer
set search_path = ''
as $$
  with visible as (
    select case when private.analytics_sees_all() then null
                else array(select private.user_workspace_ids()) end as ids
  ),
  kept as (
    select f.contact_id, f.workspace_id, f.first_order_id, f.first_order_at,
           f.first_order_project_id, f.first_order_source, f.last_order_id, f.last_order_at,
           f.orders_count, f.revenue, f.last_product_order_id, f.last_product_id,
           f.last_product_title, f.last_category
    from public.customer_facts f, visible v
    where v.ids is null or f.workspace_id = any (v.ids)
  ),
  counted as (
    select c.* from visible v, private.counted_customer_facts(v.ids) c
  )
  select coalesce(k.workspace_id, c.workspace_id), coalesce(k.contact_id, c.contact_id),
         to_jsonb(k) - 'contact_id', to_jsonb(c) - 'contact_id'
  from kept k
  full join counted c on c.contact_id = k.contact_id
  where k.contact_id is null or c.contact_id is null
     or (k.workspace_id, k.first_order_id, k.first_order_at, k.first_order_project_id,
         k.first_order_source, k.last_order_id, k.last_order_at, k.orders_count, k.revenue,
         k.last_product_order_id, k.last_product_id, k.last_product_title, k.last_category)
        is distinct from
        (c.workspace_id, c.first_order_id, c.first_order_at, c.first_order_project_id,
         c.first_order_source, c.last_order_id, c.last_order_at, c.orders_count, c.revenue,
         c.last_product_order_id, c.last_product_id, c.last_product_title, c.last_category)
$$;

revoke all on function analytics.verify_customer_facts() from public, anon, authenticated;

grant execute on function analytics.verify_customer_facts() to authenticated, growthbase_analyst, service_role;

comment on function analytics.verify_customer_facts() is
  'Customers (of the workspaces you may see) whose kept facts differ from a fresh count of their '
  'orders and lines, with both versions; expected to return nothing.';

-- grants --------------------------------------------------------------------------------------

revoke all on public.customer_facts from anon, authenticated, public;

grant select on public.customer_facts to authenticated;

grant all on public.customer_facts to service_role;

-- row level security --------------------------------------------------------------------------

alter table public.customer_facts enable row level security;

-- Members of any role may read their workspaces' customer facts; only the triggers write them.
create policy customer_facts_select_members on public.customer_facts
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

comment on table public.customer_facts is
  'Per customer (a contact with a paid or fulfilled order): first and last order, orders_count, '
  'revenue in the workspace''s base currency, average_order_value, and the last product bought '
  '(from the newest order with lines). Kept on write by triggers on orders, order_items and '
  'products; analytics.verify_customer_facts() lists any drift. Members read.';
