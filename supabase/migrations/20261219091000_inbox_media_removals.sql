-- A stored attachment outlives no message: when messages go (a contact's erasure deletes their
-- identities, so their conversations and messages; a conversation or workspace purge does too),
-- the Storage paths of their fetched attachments (`inbox` bucket) are queued, and the edge's
-- inbox cron removes those files (private.claim_inbox_media_removals, then
-- private.inbox_media_removed). Until then the files are reachable by nobody: the paths name a
-- conversation and message that no longer exist and only the service lists the bucket.

create table private.inbox_media_removals (
  path text primary key check (char_length(path) <= 1024),
  workspace_id uuid not null,
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  queued_at timestamptz not null default now()
);

comment on table private.inbox_media_removals is
  'Storage paths (inbox bucket) of attachments whose messages are gone, waiting for the edge to remove the files.';

create index inbox_media_removals_due_idx on private.inbox_media_removals (next_attempt_at);

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'inbox_media_removals', 'path', 'contact', 'transient', 'a removed attachment''s path (ids and its file name), deleted once Storage removed the file');

revoke all on private.inbox_media_removals from public, anon, authenticated;

grant select, insert, update, delete on private.inbox_media_removals to service_role;

create function private.queue_inbox_media_removals()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into private.inbox_media_removals (path, workspace_id)
  select a.attachment ->> 'storage_path', o.workspace_id
  from old_rows o
  cross join lateral jsonb_array_elements(o.attachments) as a(attachment)
  where jsonb_typeof(o.attachments) = 'array'
    and coalesce(a.attachment ->> 'storage_path', '') <> ''
  on conflict (path) do nothing;
  return null;
end
$$;

revoke all on function private.queue_inbox_media_removals() from public, anon, authenticated;

create trigger messages_queue_media_removals
  after delete on public.messages
  referencing old table as old_rows
  for each statement execute function private.queue_inbox_media_removals();

-- Due paths for one worker (skip locked; the next attempt is pushed out an hour, so a failed
-- removal is tried again later).
create function private.claim_inbox_media_removals(p_limit integer)
returns table (path text)
language sql
security definer
set search_path = ''
as $$
  update private.inbox_media_removals r
  set attempts = r.attempts + 1, next_attempt_at = now() + interval '1 hour'
  where r.path in (
    select d.path from private.inbox_media_removals d
    where d.next_attempt_at <= now()
    order by d.next_attempt_at
    limit least(greatest(coalesce(p_limit, 0), 0), 1000)
    for update skip locked
  )
  returning r.path
$$;

revoke all on function private.claim_inbox_media_removals(integer) from public, anon, authenticated;

grant execute on function private.claim_inbox_media_removals(integer) to service_role;

-- Storage removed these files (or never had them): forget their paths.
create function private.inbox_media_removed(p_paths text[])
returns integer
language sql
security definer
set search_path = ''
as $$
  with gone as (
    delete from private.inbox_media_removals r where r.path = any(p_paths) returning 1
  )
  select count(*)::integer from gone
$$;

revoke all on function private.inbox_media_removed(text[]) from public, anon, authenticated;

grant execute on function private.inbox_media_removed(text[]) to service_role;
