-- Revenue by category counts a category once whatever its case (issue 14 §3).
--
-- Shops and spreadsheets spell a category differently across products ("Tea" on one, "tea" on
-- another); the segment rule {"bought": {"category": …}} already compares them
-- case-insensitively, but analytics.category_sales grouped them as written, so one category
-- showed as two rows, each with part of its revenue and share. It now groups by the lower-cased
-- name and shows the first spelling (min). Copied from 20261201093000_product_analytics.sql;
-- only the grouping and the name change. Same signature and grants: the reviewed function of
-- tests/security/test_exposed_functions.py, still returning only the caller's workspaces.
create or replace function analytics.category_sales()
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
  select l.workspace_id, min(l.category), count(distinct l.product_key), count(distinct l.order_id),
         count(distinct l.contact_id), sum(l.quantity), coalesce(sum(l.revenue), 0)::numeric(20, 2)
  from private.sold_lines(private.analytics_workspace_ids()) l
  group by l.workspace_id, lower(l.category)
$$;

revoke all on function analytics.category_sales() from public, anon, authenticated;

grant execute on function analytics.category_sales() to authenticated, growthbase_analyst;

comment on function analytics.category_sales() is
  'Per product category (compared case-insensitively) of the workspaces you may see (null: '
  'uncategorised or unlinked lines): products, orders, customers, quantity and revenue in the '
  'base currency.';
