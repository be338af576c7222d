-- Shop catalogs synced like orders and customers (issue 14 §3): the Shoptet catalog sync and the
-- WooCommerce backfill's products keep their position as a `products` stream of
-- private.sync_streams (page to resume at, the newest change seen), so a sync that stops
-- resumes at its page.

alter table private.sync_streams drop constraint sync_streams_stream_check;

alter table private.sync_streams
  add constraint sync_streams_stream_check check (stream in ('orders', 'customers', 'products'));
