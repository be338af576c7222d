-- The migration history table of the Supabase CLI, so `supabase db push` and our runner agree
-- on what has been applied.

create schema if not exists supabase_migrations;

create table if not exists supabase_migrations.schema_migrations (
  version text primary key,
  statements text[],
  name text
);
