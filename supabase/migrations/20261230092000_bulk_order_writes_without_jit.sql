-- Bulk order writes without JIT compilation (issue 14, import speed). The `order_placed` event
-- query of private.record_orders_placed is planned at millions of cost units for a statement of
-- thousands of orders (a not-exists probe per order), so Postgres JIT-compiles it, with inlining
-- and optimisation, on every import chunk and shop page: 0.3–0.8 s of a 20,000-order chunk spent
-- compiling a query that, for a history import, finds no order recent enough to record. The
-- chunk functions and the shops' page upsert run their statements (and the triggers those fire)
-- interpreted; so does the trigger itself whoever writes the orders.
--
-- A later `create or replace` of one of these functions must keep `set jit = off`.

alter function private.import_orders_chunk(uuid, integer) set jit = off;
alter function private.import_contacts_chunk(uuid, integer) set jit = off;
alter function private.import_products_chunk(uuid, integer) set jit = off;
alter function private.upsert_orders(uuid, text, jsonb) set jit = off;
alter function private.record_orders_placed() set jit = off;
