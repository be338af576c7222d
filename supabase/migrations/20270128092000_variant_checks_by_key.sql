-- An order line's check of its variant is a probe on the variant's key, whatever the planner
-- knows (issue 14, commerce data at scale).
--
-- Postgres checks each order line's variant (order_items' foreign key to product_variants'
-- (id, workspace_id)) with a plan it keeps for the session. Without planner statistics on
-- product_variants (a new project's, or a table never analyzed: autovacuum does not run here)
-- that plan took product_variants_workspace_sku_idx, the smallest index leading with the
-- workspace, and filtered the id: every line written read all of the workspace's variants (an
-- orders part of 3,000 lines against 600 variants read 904,500 rows). The SKU index now holds
-- only variants with a SKU (what a lookup by SKU needs), so a check cannot use it, and the
-- workspace's own foreign key (deleting a workspace deletes its variants) is served by an index
-- on (workspace_id, id), with which the check is a probe on both columns as well.

create index product_variants_workspace_id_id_idx on public.product_variants (workspace_id, id);

drop index public.product_variants_workspace_sku_idx;

create index product_variants_workspace_sku_idx on public.product_variants (workspace_id, sku)
  where sku is not null;
