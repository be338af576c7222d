-- Product analytics in schema `analytics` (issue 14 §3): revenue by product and by category,
-- products bought together, and each RFM segment's top products.
--
-- Sales are the lines of paid or fulfilled orders. A line's revenue is its total in the
-- workspace's base currency: as is when the order's total needed no conversion (base_total =
-- total), × the order's exchange_rate otherwise, and nothing when the order has no known rate
-- (as order revenue is counted everywhere else). A line counts for its product when it is
-- linked to the catalog; a line not linked (yet) counts under its SKU, or its name when it has
-- none, so sales show before the catalog is synced; product_id is null for those.
--
-- Visibility: each security-definer function returns only the workspaces the caller may see
-- (their own, or every workspace for an analyst, as analytics.rfm); the views on top are
-- security invoker. They aggregate the lines on every read: for analysts and reports, not for
-- a page that loads on every visit.

-- The lines of the visible workspaces' paid or fulfilled orders, keyed by product.
create function private.sold_lines(p_workspace_ids uuid[])
returns table (
  workspace_id uuid, order_id uuid, contact_id uuid, product_key text, product_id uuid,
  title text, sku text, category text, quantity numeric, revenue numeric
)
language sql
stable
security definer
set search_path = ''
as $$
  select o.workspace_id, o.id, o.contact_id,
         coalesce(i.product_id::text, 'sku:' || i.sku, 'name:' || lower(i.name)),
         i.product_id, coalesce(p.title, i.name), coalesce(p.sku, i.sku), p.category,
         i.quantity,
         case when o.base_total is null then null
              when o.base_total = o.total then i.total
              else round(i.total * o.exchange_rate, 2) end
  from public.orders o
  join public.order_items i on i.order_id = o.id
  left join public.products p on p.id = i.product_id
  where o.status in ('paid', 'fulfilled')
    and (p_workspace_ids is null or o.workspace_id = any (p_workspace_ids))
$$;

revoke all on function private.sold_lines(uuid[]) from public, anon, authenticated;

-- The workspaces the caller may see in analytics (null: all).
create function private.analytics_workspace_ids()
returns uuid[]
language sql
stable
security definer
set search_path = ''
as $$
  select case when private.analytics_sees_all() then null
              else array(select private.user_workspace_ids()) end
$$;

revoke all on function private.analytics_workspace_ids() from public, anon, authenticated;

-- Per product (or unlinked SKU or name) of every workspace the caller may see.
create function analytics.product_sales()
returns table (
  workspace_id uuid, product_key text, product_id uuid, title text, sku text, category text,
  orders bigint, customers bigint, quantity numeric, revenue numeric(20, 2)
)
language sql
stable
security definer
set search_path = ''
set jit = off
as $$
  select l.workspace_id, l.product_key, min(l.product_id::text)::uuid, min(l.title), min(l.sku),
         min(l.category), count(distinct l.order_id), count(distinct l.contact_id),
         sum(l.quantity), coalesce(sum(l.revenue), 0)::numeric(20, 2)
  from private.sold_lines(private.analytics_workspace_ids()) l
  group by l.workspace_id, l.product_key
$$;

revoke all on function analytics.product_sales() from public, anon, authenticated;

grant execute on function analytics.product_sales() to authenticated, growthbase_analyst;

comment on function analytics.product_sales() is
  'Per product (unlinked lines under their SKU or name) of the workspaces you may see: orders, '
  'customers, quantity and revenue in the base currency from paid and fulfilled orders.';

-- Per category of every workspace the caller may see (null: lines whose product has none).
create function analytics.category_sales()
returns table (
  workspace_id uuid, category text, products bigint, orders bigint, customers bigint,
  quantity numeric, revenue numeric(20, 2)
)
language sql
stable
security definer
set search_path = ''
set jit = off
as $$
  select l.workspace_id, l.category, count(distinct l.product_key), count(distinct l.order_id),
         count(distinct l.contact_id), sum(l.quantity), coalesce(sum(l.revenue), 0)::numeric(20, 2)
  from private.sold_lines(private.analytics_workspace_ids()) l
  group by l.workspace_id, l.category
$$;

revoke all on function analytics.category_sales() from public, anon, authenticated;

grant execute on function analytics.category_sales() to authenticated, growthbase_analyst;

comment on function analytics.category_sales() is
  'Per product category of the workspaces you may see (null: uncategorised or unlinked lines): '
  'products, orders, customers, quantity and revenue in the base currency.';

-- Pairs of products in the same paid or fulfilled order, for every workspace the caller may
-- see: the 100 pairs bought together most often per workspace (at least twice), with support
-- (share of the workspace's orders with lines), confidence each way and lift.
create function analytics.product_pairs()
returns table (
  workspace_id uuid, product_key text, product_id uuid, title text,
  other_product_key text, other_product_id uuid, other_title text,
  orders_together bigint, support numeric, confidence numeric, other_confidence numeric,
  lift numeric, pair_rank bigint
)
language sql
stable
security definer
set search_path = ''
set jit = off
set work_mem = '64MB'
as $$
  with bought as (
    select distinct l.workspace_id, l.order_id, l.product_key
    from private.sold_lines(private.analytics_workspace_ids()) l
  ),
  products as (
    select p.workspace_id, p.product_key, p.product_id, p.title, p.orders
    from analytics.product_sales() p
  ),
  baskets as (
    select b.workspace_id, count(distinct b.order_id) as orders from bought b group by b.workspace_id
  ),
  pairs as (
    select a.workspace_id, a.product_key, b.product_key as other_product_key, count(*) as together
    from bought a
    join bought b on b.order_id = a.order_id and b.product_key > a.product_key
    group by a.workspace_id, a.product_key, b.product_key
    having count(*) >= 2
  ),
  ranked as (
    select p.*, row_number() over (partition by p.workspace_id
                                   order by p.together desc, p.product_key, p.other_product_key) as pair_rank
    from pairs p
  )
  select r.workspace_id, r.product_key, a.product_id, a.title, r.other_product_key,
         b.product_id, b.title, r.together,
         round(r.together::numeric / k.orders, 4),
         round(r.together::numeric / a.orders, 4),
         round(r.together::numeric / b.orders, 4),
         round(r.together::numeric * k.orders / (a.orders * b.orders), 4),
         r.pair_rank
  from ranked r
  join baskets k on k.workspace_id = r.workspace_id
  join products a on a.workspace_id = r.workspace_id and a.product_key = r.product_key
  join products b on b.workspace_id = r.workspace_id and b.product_key = r.other_product_key
  where r.pair_rank <= 100
$$;

revoke all on function analytics.product_pairs() from public, anon, authenticated;

grant execute on function analytics.product_pairs() to authenticated, growthbase_analyst;

comment on function analytics.product_pairs() is
  'The 100 product pairs bought together most often (at least twice) per workspace you may see: '
  'orders together, support, confidence each way and lift.';

-- Per RFM segment (as of today) and product, for every workspace the caller may see: how many
-- of the segment's customers bought it, and their quantity and revenue (over all their orders).
create function analytics.segment_product_sales()
returns table (
  workspace_id uuid, segment text, product_key text, product_id uuid, title text,
  customers bigint, quantity numeric, revenue numeric(20, 2), product_rank bigint
)
language sql
stable
security definer
set search_path = ''
set jit = off
set work_mem = '64MB'
as $$
  with scored as (
    select s.contact_id, m.segment
    from private.rfm_scores(current_date, private.analytics_workspace_ids()) s
    join analytics.rfm_segment_map m on m.r_score = s.r_score and m.f_score = s.f_score
  ),
  sold as (
    select l.workspace_id, s.segment, l.product_key, min(l.product_id::text)::uuid as product_id,
           min(l.title) as title, count(distinct l.contact_id) as customers,
           sum(l.quantity) as quantity, coalesce(sum(l.revenue), 0)::numeric(20, 2) as revenue
    from private.sold_lines(private.analytics_workspace_ids()) l
    join scored s on s.contact_id = l.contact_id
    group by l.workspace_id, s.segment, l.product_key
  )
  select d.workspace_id, d.segment, d.product_key, d.product_id, d.title, d.customers,
         d.quantity, d.revenue,
         row_number() over (partition by d.workspace_id, d.segment
                            order by d.revenue desc, d.customers desc, d.product_key)
  from sold d
$$;

revoke all on function analytics.segment_product_sales() from public, anon, authenticated;

grant execute on function analytics.segment_product_sales() to authenticated, growthbase_analyst;

comment on function analytics.segment_product_sales() is
  'Per RFM segment (today) and product, for the workspaces you may see: how many of the '
  'segment''s customers bought it, quantity and revenue; product_rank by revenue in the segment.';

create view analytics.product_revenue with (security_invoker = true) as
  select p.workspace_id, p.product_id, p.product_key, p.title, p.sku, p.category, p.orders,
         p.customers, p.quantity, p.revenue,
         round(p.revenue / nullif(sum(p.revenue) over (partition by p.workspace_id), 0), 4)
           as share_of_revenue,
         rank() over (partition by p.workspace_id order by p.revenue desc) as revenue_rank
  from analytics.product_sales() p;

create view analytics.category_revenue with (security_invoker = true) as
  select c.workspace_id, c.category, c.products, c.orders, c.customers, c.quantity, c.revenue,
         round(c.revenue / nullif(sum(c.revenue) over (partition by c.workspace_id), 0), 4)
           as share_of_revenue
  from analytics.category_sales() c;

create view analytics.products_bought_together with (security_invoker = true) as
  select * from analytics.product_pairs();

create view analytics.rfm_segment_top_products with (security_invoker = true) as
  select s.workspace_id, s.segment, s.product_rank, s.product_id, s.product_key, s.title,
         s.customers, s.quantity, s.revenue
  from analytics.segment_product_sales() s
  where s.product_rank <= 10;

comment on view analytics.product_revenue is
  'Revenue (base currency), orders, customers and quantity per product, with its share and rank '
  'in the workspace.';

comment on view analytics.category_revenue is
  'Revenue (base currency), products, orders, customers and quantity per category, with its '
  'share of the workspace''s revenue.';

comment on view analytics.products_bought_together is
  'The top 100 pairs of products bought in the same order per workspace, with support, '
  'confidence and lift.';

comment on view analytics.rfm_segment_top_products is
  'Each RFM segment''s ten best-selling products (by revenue from the segment''s customers).';

-- grants --------------------------------------------------------------------------------------

revoke all on analytics.product_revenue, analytics.category_revenue,
  analytics.products_bought_together, analytics.rfm_segment_top_products from public, anon;

-- The views run as their reader; the functions decide which workspaces they see.
grant select on analytics.product_revenue, analytics.category_revenue,
  analytics.products_bought_together, analytics.rfm_segment_top_products
  to authenticated, growthbase_analyst;
