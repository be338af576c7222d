-- Product analytics convert the lines of a foreign-currency order whose total is zero, and never
-- a base-currency order's (issue 14 §3).
--
-- A line's revenue was its total as is when its order's base_total equalled its total (the order
-- needed no conversion), else × the order's exchange rate. A foreign-currency order with a total
-- of 0 (a 100 % discount, a replacement sent for free) converts to a base_total of 0, equal to
-- its total, so its lines counted in the order's currency as if it were the base: a CZK line of
-- 1,000 added 1,000 EUR to the product. A line's revenue is now decided by its order's
-- currency: as is when the order is in the workspace's base currency (whatever rate it carries:
-- Shoptet sends its exchangeRate, a file may fill exchange_rate on every row), × the order's
-- rate when it is in another, free or not. A foreign order without a rate adds nothing (it has
-- no base_total), as before, unless its base_total was taken as its total (written in the
-- workspace's earlier base currency): then as is, as before. Copied from
-- 20261201093000_product_analytics.sql; the revenue's case changes and the order's workspace is
-- joined for its base currency.
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
              when o.currency = w.base_currency then i.total
              when o.exchange_rate is null and o.base_total = o.total then i.total
              else round(i.total * o.exchange_rate, 2) end
  from public.orders o
  join public.workspaces w on w.id = o.workspace_id
  join public.order_items i on i.order_id = o.id
  left join public.products p on p.id = i.product_id
  where o.status in ('paid', 'fulfilled')
    and (p_workspace_ids is null or o.workspace_id = any (p_workspace_ids))
$$;

revoke all on function private.sold_lines(uuid[]) from public, anon, authenticated;
