-- The register of personal data: every text, JSON and binary column of every table in the
-- schemas we own (public, private, analytics) is listed here with whose data it may hold and
-- what erasing that person does to it. A column that holds nobody's data is listed too, as
-- `none`, so the register is complete: private.unregistered_columns() lists every column that
-- is missing (and every entry whose column is gone), and a standing test fails on any row, so
-- a migration that adds a column must classify it here (fix forward, with a new migration).
--
-- subject: `contact` (a shop's customer: the person a workspace erases), `member` (a user of
-- Growthbase: removed with their account), `none`.
-- handling, for a contact's erasure or a member's account deletion:
--   cleared            set to null (or empty) on the row, which stays
--   redacted           the person's identifiers replaced by '[erased]' inside the value
--   tombstoned         the whole value replaced by a marker saying it was erased
--   row_deleted        the row is deleted
--   hashed             only a keyed hash is kept (so the person is never mailed again)
--   transient          dropped when the job that staged it ends; an erased person's rows are
--                      refused when merged
--   kept_pseudonymous  kept: it identifies nobody once the rest is gone (a provider's id)
--   not_personal       holds no personal data (subject none)
--
-- Columns are registered only where they exist, so this file also covers tables another
-- feature adds in parallel (they are listed here when present, and the test names any that
-- are not).

create table private.personal_data_columns (
  table_schema text not null,
  table_name text not null,
  column_name text not null,
  subject text not null check (subject in ('contact', 'member', 'none')),
  handling text not null check (handling in (
    'cleared', 'redacted', 'tombstoned', 'row_deleted', 'hashed', 'transient',
    'kept_pseudonymous', 'not_personal'
  )),
  note text check (char_length(note) <= 300),
  primary key (table_schema, table_name, column_name),
  check ((subject = 'none') = (handling = 'not_personal'))
);

comment on table private.personal_data_columns is
  'Register of personal data: whose data each text, JSON or binary column may hold and what erasure does to it.';

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
select v.table_schema, v.table_name, v.column_name, v.subject, v.handling, v.note
from (values
  ('private', 'personal_data_columns', 'table_schema', 'none', 'not_personal', 'this register'),
  ('private', 'personal_data_columns', 'table_name', 'none', 'not_personal', null),
  ('private', 'personal_data_columns', 'column_name', 'none', 'not_personal', null),
  ('private', 'personal_data_columns', 'subject', 'none', 'not_personal', null),
  ('private', 'personal_data_columns', 'handling', 'none', 'not_personal', null),
  ('private', 'personal_data_columns', 'note', 'none', 'not_personal', null),
  ('analytics', 'rfm_segment_map', 'segment', 'none', 'not_personal', null),
  ('analytics', 'rfm_snapshots', 'segment', 'none', 'not_personal', 'the rows of an erased contact are deleted'),
  ('private', 'import_contact_rows', 'attributes', 'contact', 'row_deleted', 'staged import rows'),
  ('private', 'import_contact_rows', 'consent', 'contact', 'row_deleted', null),
  ('private', 'import_contact_rows', 'consent_at', 'contact', 'row_deleted', null),
  ('private', 'import_contact_rows', 'consent_source', 'contact', 'row_deleted', null),
  ('private', 'import_contact_rows', 'email', 'contact', 'row_deleted', null),
  ('private', 'import_contact_rows', 'first_name', 'contact', 'row_deleted', null),
  ('private', 'import_contact_rows', 'last_name', 'contact', 'row_deleted', null),
  ('private', 'import_contact_rows', 'phone', 'contact', 'row_deleted', null),
  ('private', 'import_contact_rows', 'tags', 'contact', 'row_deleted', null),
  ('private', 'import_contact_rows', 'problem', 'none', 'not_personal', 'our own message, naming lines and columns only'),
  ('private', 'import_contact_rows', 'problem_column', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'email', 'contact', 'row_deleted', 'staged import rows'),
  ('private', 'import_order_rows', 'phone', 'contact', 'row_deleted', null),
  ('private', 'import_order_rows', 'first_name', 'contact', 'row_deleted', null),
  ('private', 'import_order_rows', 'last_name', 'contact', 'row_deleted', null),
  ('private', 'import_order_rows', 'customer_id', 'contact', 'row_deleted', null),
  ('private', 'import_order_rows', 'currency', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'exchange_rate', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'item_name', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'item_product_id', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'item_quantity', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'item_sku', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'item_unit_price', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'item_variant_id', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'order_id', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'placed_at', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'problem', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'problem_column', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'status', 'none', 'not_personal', null),
  ('private', 'import_order_rows', 'total', 'none', 'not_personal', null),
  ('private', 'import_contact_work', 'email', 'contact', 'row_deleted', null),
  ('private', 'import_contact_work', 'first_name', 'contact', 'row_deleted', null),
  ('private', 'import_contact_work', 'last_name', 'contact', 'row_deleted', null),
  ('private', 'import_contact_work', 'phone', 'contact', 'row_deleted', null),
  ('private', 'import_contact_work', 'tags', 'contact', 'row_deleted', null),
  ('private', 'import_contact_work', 'consent', 'contact', 'row_deleted', null),
  ('private', 'import_contact_work', 'consent_source', 'contact', 'row_deleted', null),
  ('private', 'import_contact_work', 'attributes', 'contact', 'row_deleted', null),
  ('private', 'import_contact_work', 'problem', 'none', 'not_personal', null),
  ('private', 'import_contact_work', 'problem_column', 'none', 'not_personal', null),
  ('private', 'import_order_customers', 'customer_id', 'contact', 'row_deleted', null),
  ('private', 'import_order_customers', 'customer_key', 'contact', 'row_deleted', null),
  ('private', 'import_order_customers', 'email', 'contact', 'row_deleted', null),
  ('private', 'import_order_customers', 'first_name', 'contact', 'row_deleted', null),
  ('private', 'import_order_customers', 'last_name', 'contact', 'row_deleted', null),
  ('private', 'import_order_customers', 'phone', 'contact', 'row_deleted', null),
  ('private', 'import_order_heads', 'customer_id', 'contact', 'row_deleted', null),
  ('private', 'import_order_heads', 'customer_key', 'contact', 'row_deleted', null),
  ('private', 'import_order_heads', 'email', 'contact', 'row_deleted', null),
  ('private', 'import_order_heads', 'first_name', 'contact', 'row_deleted', null),
  ('private', 'import_order_heads', 'last_name', 'contact', 'row_deleted', null),
  ('private', 'import_order_heads', 'phone', 'contact', 'row_deleted', null),
  ('private', 'import_order_heads', 'currency', 'none', 'not_personal', null),
  ('private', 'import_order_heads', 'order_id', 'none', 'not_personal', null),
  ('private', 'import_order_heads', 'rejected', 'none', 'not_personal', null),
  ('private', 'import_order_heads', 'status', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'customer_id', 'contact', 'row_deleted', null),
  ('private', 'import_order_lines', 'email', 'contact', 'row_deleted', null),
  ('private', 'import_order_lines', 'first_name', 'contact', 'row_deleted', null),
  ('private', 'import_order_lines', 'last_name', 'contact', 'row_deleted', null),
  ('private', 'import_order_lines', 'phone', 'contact', 'row_deleted', null),
  ('private', 'import_order_lines', 'currency', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'exchange_rate', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'item_name', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'item_product_id', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'item_quantity', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'item_sku', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'item_unit_price', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'item_variant_id', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'order_id', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'problem', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'problem_column', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'status', 'none', 'not_personal', null),
  ('private', 'import_order_lines', 'total', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'category', 'none', 'not_personal', 'a shop''s catalogue, no person'),
  ('private', 'import_product_rows', 'currency', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'image_url', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'inventory', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'price', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'problem', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'problem_column', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'product_id', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'sku', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'status', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'title', 'none', 'not_personal', null),
  ('private', 'import_product_rows', 'url', 'none', 'not_personal', null),
  ('private', 'sales_daily', 'source', 'none', 'not_personal', 'sales per day, no person'),
  ('private', 'sales_daily_changes', 'source', 'none', 'not_personal', null),
  ('private', 'import_parts', 'body', 'contact', 'transient', 'raw CSV parts, dropped when their job ends'),
  ('private', 'integrations', 'api_token_encrypted', 'none', 'not_personal', 'a shop credential'),
  ('private', 'integrations', 'webhook_secret_encrypted', 'none', 'not_personal', 'a shop credential'),
  ('private', 'integrations', 'settings', 'none', 'not_personal', null),
  ('private', 'integrations', 'source', 'none', 'not_personal', null),
  ('private', 'outbox', 'last_error', 'none', 'not_personal', 'error class and code'),
  ('private', 'outbox', 'status', 'none', 'not_personal', null),
  ('private', 'outbox', 'topic', 'none', 'not_personal', null),
  ('private', 'platform_suppressions', 'email_hash', 'contact', 'kept_pseudonymous', 'complaints and hard bounces across the platform, as a hash, for deliverability'),
  ('private', 'platform_suppressions', 'reason', 'none', 'not_personal', null),
  ('private', 'rate_limit_windows', 'bucket', 'none', 'not_personal', 'workspace and user ids'),
  ('private', 'sync_streams', 'source', 'none', 'not_personal', null),
  ('private', 'sync_streams', 'stream', 'none', 'not_personal', null),
  ('private', 'webhook_events', 'body', 'contact', 'row_deleted', 'raw provider payloads with names and addresses'),
  ('private', 'webhook_events', 'event_id', 'none', 'not_personal', 'the provider''s event id'),
  ('private', 'webhook_events', 'last_error', 'none', 'not_personal', 'error class and code'),
  ('private', 'webhook_events', 'outcome', 'none', 'not_personal', null),
  ('private', 'webhook_events', 'provider', 'none', 'not_personal', null),
  ('private', 'webhook_events', 'status', 'none', 'not_personal', null),
  ('public', 'ai_calls', 'error_code', 'none', 'not_personal', null),
  ('public', 'ai_calls', 'feature', 'none', 'not_personal', null),
  ('public', 'ai_calls', 'model', 'none', 'not_personal', null),
  ('public', 'ai_calls', 'pii_redacted', 'contact', 'redacted', 'what PII Safe Mode masked before the call'),
  ('public', 'ai_calls', 'status', 'none', 'not_personal', null),
  ('public', 'ai_prices', 'description', 'none', 'not_personal', null),
  ('public', 'ai_prices', 'feature', 'none', 'not_personal', null),
  ('public', 'automation_prices', 'description', 'none', 'not_personal', null),
  ('public', 'automation_prices', 'type', 'none', 'not_personal', null),
  ('public', 'automations', 'input', 'contact', 'redacted', 'the job sent to Make.com (the outbox dispatches it)'),
  ('public', 'automations', 'result', 'contact', 'redacted', 'what Make.com answered'),
  ('public', 'automations', 'error', 'contact', 'redacted', null),
  ('public', 'automations', 'idempotency_key', 'none', 'not_personal', null),
  ('public', 'automations', 'status', 'none', 'not_personal', null),
  ('public', 'automations', 'type', 'none', 'not_personal', null),
  ('public', 'billing_payments', 'currency', 'none', 'not_personal', null),
  ('public', 'billing_payments', 'error_description', 'none', 'not_personal', 'Razorpay''s reason'),
  ('public', 'billing_payments', 'razorpay_invoice_id', 'none', 'not_personal', null),
  ('public', 'billing_payments', 'razorpay_payment_id', 'none', 'not_personal', null),
  ('public', 'billing_payments', 'status', 'none', 'not_personal', null),
  ('public', 'campaign_recipients', 'email', 'contact', 'cleared', 'the address mailed'),
  ('public', 'campaign_recipients', 'error', 'contact', 'cleared', 'a provider''s reason can quote the address'),
  ('public', 'campaign_recipients', 'ses_message_id', 'contact', 'kept_pseudonymous', 'SES''s id: matches late events, names nobody'),
  ('public', 'campaign_recipients', 'bounce_type', 'none', 'not_personal', null),
  ('public', 'campaign_recipients', 'status', 'none', 'not_personal', null),
  ('public', 'campaign_variants', 'html', 'none', 'not_personal', 'a template, rendered per recipient at send time'),
  ('public', 'campaign_variants', 'name', 'none', 'not_personal', null),
  ('public', 'campaign_variants', 'subject', 'none', 'not_personal', null),
  ('public', 'campaign_variants', 'text', 'none', 'not_personal', null),
  ('public', 'campaigns', 'error', 'none', 'not_personal', null),
  ('public', 'campaigns', 'from_email', 'none', 'not_personal', 'the workspace''s sender'),
  ('public', 'campaigns', 'from_name', 'none', 'not_personal', 'the workspace''s sender'),
  ('public', 'campaigns', 'name', 'none', 'not_personal', null),
  ('public', 'campaigns', 'reply_to', 'none', 'not_personal', 'the workspace''s sender'),
  ('public', 'campaigns', 'status', 'none', 'not_personal', null),
  ('public', 'contact_external_ids', 'external_id', 'contact', 'row_deleted', 'the shop''s customer id'),
  ('public', 'contact_external_ids', 'source', 'none', 'not_personal', null),
  ('public', 'contacts', 'email', 'contact', 'cleared', null),
  ('public', 'contacts', 'phone', 'contact', 'cleared', null),
  ('public', 'contacts', 'first_name', 'contact', 'cleared', null),
  ('public', 'contacts', 'last_name', 'contact', 'cleared', null),
  ('public', 'contacts', 'attributes', 'contact', 'cleared', 'address and anything else the shop sent'),
  ('public', 'contacts', 'tags', 'contact', 'cleared', null),
  ('public', 'contacts', 'consent_source', 'contact', 'cleared', null),
  ('public', 'contacts', 'consent_state', 'none', 'not_personal', null),
  ('public', 'credit_ledger', 'grant_reference', 'none', 'not_personal', null),
  ('public', 'credit_ledger', 'reason', 'none', 'not_personal', null),
  ('public', 'customer_facts', 'first_order_source', 'none', 'not_personal', 'the row of an erased contact goes with its orders'' link'),
  ('public', 'customer_facts', 'last_product_title', 'none', 'not_personal', null),
  ('public', 'customer_facts', 'last_category', 'none', 'not_personal', null),
  ('public', 'email_lists', 'name', 'none', 'not_personal', null),
  ('public', 'email_suppressions', 'email', 'contact', 'hashed', 'kept only as a keyed hash in private.erased_identities'),
  ('public', 'email_suppressions', 'detail', 'contact', 'row_deleted', 'SES diagnostics can quote the address'),
  ('public', 'email_suppressions', 'reason', 'none', 'not_personal', null),
  ('public', 'email_templates', 'html', 'none', 'not_personal', null),
  ('public', 'email_templates', 'name', 'none', 'not_personal', null),
  ('public', 'email_templates', 'subject', 'none', 'not_personal', null),
  ('public', 'email_templates', 'text', 'none', 'not_personal', null),
  ('public', 'import_errors', 'column_name', 'none', 'not_personal', null),
  ('public', 'import_errors', 'reason', 'none', 'not_personal', 'our own message, naming lines, columns and order ids'),
  ('public', 'import_jobs', 'column_map', 'none', 'not_personal', null),
  ('public', 'import_jobs', 'columns', 'none', 'not_personal', null),
  ('public', 'import_jobs', 'delimiter', 'none', 'not_personal', null),
  ('public', 'import_jobs', 'encoding', 'none', 'not_personal', null),
  ('public', 'import_jobs', 'error_code', 'none', 'not_personal', null),
  ('public', 'import_jobs', 'error_message', 'none', 'not_personal', null),
  ('public', 'import_jobs', 'file_name', 'none', 'not_personal', null),
  ('public', 'import_jobs', 'kind', 'none', 'not_personal', null),
  ('public', 'import_jobs', 'source', 'none', 'not_personal', null),
  ('public', 'import_jobs', 'status', 'none', 'not_personal', null),
  ('public', 'import_jobs', 'storage_path', 'none', 'not_personal', null),
  ('public', 'order_items', 'external_product_id', 'none', 'not_personal', null),
  ('public', 'order_items', 'external_variant_id', 'none', 'not_personal', null),
  ('public', 'order_items', 'name', 'none', 'not_personal', null),
  ('public', 'order_items', 'sku', 'none', 'not_personal', null),
  ('public', 'orders', 'currency', 'none', 'not_personal', null),
  ('public', 'orders', 'external_id', 'none', 'not_personal', 'kept for revenue; the contact link is removed'),
  ('public', 'orders', 'source', 'none', 'not_personal', null),
  ('public', 'orders', 'status', 'none', 'not_personal', null),
  ('public', 'plan_rate_limits', 'action', 'none', 'not_personal', null),
  ('public', 'plan_rate_limits', 'plan_tier', 'none', 'not_personal', null),
  ('public', 'plan_rate_limits', 'scope', 'none', 'not_personal', null),
  ('public', 'plans', 'currency', 'none', 'not_personal', null),
  ('public', 'plans', 'name', 'none', 'not_personal', null),
  ('public', 'plans', 'razorpay_plan_id', 'none', 'not_personal', null),
  ('public', 'plans', 'tier', 'none', 'not_personal', null),
  ('public', 'product_variants', 'currency', 'none', 'not_personal', null),
  ('public', 'product_variants', 'external_id', 'none', 'not_personal', null),
  ('public', 'product_variants', 'image_url', 'none', 'not_personal', null),
  ('public', 'product_variants', 'sku', 'none', 'not_personal', null),
  ('public', 'product_variants', 'status', 'none', 'not_personal', null),
  ('public', 'product_variants', 'title', 'none', 'not_personal', null),
  ('public', 'products', 'category', 'none', 'not_personal', null),
  ('public', 'products', 'currency', 'none', 'not_personal', null),
  ('public', 'products', 'external_id', 'none', 'not_personal', null),
  ('public', 'products', 'image_url', 'none', 'not_personal', null),
  ('public', 'products', 'sku', 'none', 'not_personal', null),
  ('public', 'products', 'source', 'none', 'not_personal', null),
  ('public', 'products', 'status', 'none', 'not_personal', null),
  ('public', 'products', 'title', 'none', 'not_personal', null),
  ('public', 'products', 'url', 'none', 'not_personal', null),
  ('public', 'profiles', 'display_name', 'member', 'row_deleted', 'deleted with the account'),
  ('public', 'profiles', 'locale', 'member', 'row_deleted', null),
  ('public', 'profiles', 'preferences', 'member', 'row_deleted', null),
  ('public', 'projects', 'name', 'none', 'not_personal', null),
  ('public', 'projects', 'settings', 'none', 'not_personal', null),
  ('public', 'projects', 'type', 'none', 'not_personal', null),
  ('public', 'projects', 'website_url', 'none', 'not_personal', null),
  ('public', 'segments', 'name', 'none', 'not_personal', null),
  ('public', 'segments', 'rule', 'contact', 'redacted', 'a condition can name an address'),
  ('public', 'sender_identities', 'dkim_records', 'none', 'not_personal', null),
  ('public', 'sender_identities', 'dkim_status', 'none', 'not_personal', null),
  ('public', 'sender_identities', 'identity', 'none', 'not_personal', 'the workspace''s sending domain or address'),
  ('public', 'sender_identities', 'kind', 'none', 'not_personal', null),
  ('public', 'subscription_events', 'event', 'none', 'not_personal', null),
  ('public', 'subscription_events', 'status', 'none', 'not_personal', null),
  ('public', 'subscriptions', 'plan_tier', 'none', 'not_personal', null),
  ('public', 'subscriptions', 'razorpay_subscription_id', 'none', 'not_personal', null),
  ('public', 'subscriptions', 'short_url', 'none', 'not_personal', null),
  ('public', 'subscriptions', 'status', 'none', 'not_personal', null),
  ('public', 'workspace_invitations', 'email', 'member', 'row_deleted', 'pruned once ended; deleted with the workspace'),
  ('public', 'workspace_invitations', 'role', 'none', 'not_personal', null),
  ('public', 'workspace_invitations', 'token_hash', 'none', 'not_personal', null),
  ('public', 'workspace_members', 'role', 'none', 'not_personal', null),
  ('public', 'workspaces', 'base_currency', 'none', 'not_personal', null),
  ('public', 'workspaces', 'name', 'member', 'row_deleted', 'a personal workspace is named after its owner; deleted with the account'),
  ('public', 'workspaces', 'plan_tier', 'none', 'not_personal', null),
  ('public', 'workspaces', 'slug', 'member', 'row_deleted', 'derived from the name')
) as v (table_schema, table_name, column_name, subject, handling, note)
where exists (
  select from information_schema.columns c
  where c.table_schema = v.table_schema and c.table_name = v.table_name and c.column_name = v.column_name
);

-- Text, JSON and binary columns of tables in our schemas that are not registered, and entries
-- whose column no longer exists. Empty when the register is complete.
create function private.unregistered_columns()
returns table (table_schema text, table_name text, column_name text, problem text)
language sql
stable
set search_path = ''
as $$
  with columns as (
    select n.nspname::text as table_schema, c.relname::text as table_name, a.attname::text as column_name
    from pg_catalog.pg_attribute a
    join pg_catalog.pg_class c on c.oid = a.attrelid
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    join pg_catalog.pg_type t on t.oid = a.atttypid
    left join pg_catalog.pg_type e on e.oid = t.typelem and t.typcategory = 'A'
    where n.nspname in ('public', 'private', 'analytics')
      and c.relkind in ('r', 'p')
      and not c.relispartition
      and a.attnum > 0 and not a.attisdropped
      and coalesce(e.typname, t.typname) in ('text', 'varchar', 'bpchar', 'json', 'jsonb', 'bytea', 'citext', 'xml')
  )
  select c.table_schema, c.table_name, c.column_name, 'not registered'
  from columns c
  where not exists (
    select from private.personal_data_columns r
    where r.table_schema = c.table_schema and r.table_name = c.table_name and r.column_name = c.column_name
  )
  union all
  select r.table_schema, r.table_name, r.column_name, 'registered but missing'
  from private.personal_data_columns r
  where not exists (
    select from columns c
    where c.table_schema = r.table_schema and c.table_name = r.table_name and c.column_name = r.column_name
  )
  order by 1, 2, 3
$$;

revoke all on function private.unregistered_columns() from public, anon, authenticated;

grant execute on function private.unregistered_columns() to service_role;

revoke all on private.personal_data_columns from public, anon, authenticated;

grant select on private.personal_data_columns to service_role;
