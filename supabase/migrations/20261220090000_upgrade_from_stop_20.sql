-- A database migrated at stop 20 (commit a498821) holds 20261201102000_contacts_import and
-- 20261201103000_orders_import in their first text; those files were later edited on main
-- (they should not have been), and its version 20261130093000 is contact_counter, not
-- catalog_hardening. Upgrading such a database skips the edited files, so it lacks what the
-- edits added and later migrations rely on. Every statement here is a no-op on a database
-- migrated from scratch; tests/core/test_upgrade_path.py proves both end in the same schema.

-- The orders-import chunk (20261209121000_orders_import_at_scale) writes these per line.
alter table private.import_order_lines add column if not exists order_bad boolean not null default false;

alter table private.import_order_lines alter column order_bad drop default;

alter table private.import_order_lines add column if not exists order_has_items boolean not null default false;

alter table private.import_order_lines alter column order_has_items drop default;

alter table private.import_order_lines add column if not exists order_items_total numeric;

-- Working tables are emptied chunk by chunk: vacuum them by dead rows, not by table size.
alter table private.import_contact_work set (autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0);

alter table private.import_order_customers set (autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0);

alter table private.import_order_heads set (autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0);

alter table private.import_order_lines set (autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0);

-- The two paths left different texts; this one says what the function does.
comment on function public.register_sender_identity(uuid, text) is
  'Admins register a domain or address for their workspace (the edge then creates it in SES); 409 identity_taken while another workspace holds it, or a domain it falls under, verified or for less than 72 hours.';
