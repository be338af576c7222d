-- Product analytics convert the lines of a foreign-currency order whose total is zero (issue 14
-- §3).
--
-- A line's revenue was its total as is when its order's base_total equalled its total (the order
-- needed no conversion), else × the order's exchange rate. A foreign-currency order with a total
-- of 0 (a 100 % discount, a replacement sent for free) converts to a base_total of 0, equal to
-- its total, so its lines counted in the order's currency as if it were the base: a CZK line of
-- 1,000 added 1,000 EUR to the product. Such an order's lines are now converted whenever the
-- order carries a rate; an order without one is in the base currency (a foreign order without a
-- rate has no base_total and adds nothing, as before). Copied from
-- 20261201093000_product_analytics.sql; only the revenue's case changes.
create or replace function private.sold_lines(p_workspace_ids uuid[])
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
              when o.base_total = o.total and (o.total <> 0 or o.exchange_rate is null) then i.total
              else round(i.total * o.exchange_rate, 2) end
  from public.orders o
  join public.order_items i on i.order_id = o.id
  left join public.products p on p.id = i.product_id
  where o.status in ('paid', 'fulfilled')
    and (p_workspace_ids is null or o.workspace_id = any (p_workspace_ids))
$$;

revoke all on function private.sold_lines(uuid[]) from public, anon, authenticated;
