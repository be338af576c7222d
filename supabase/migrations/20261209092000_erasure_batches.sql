-- Batch erasure: an admin erases many contacts at once (up to 100,000 per batch). The request
-- records the batch and its contacts (public.request_erasure_batch, as the user); the work is
-- done in chunks (private.erase_batch_chunk, as the service: the edge right after the request
-- for a few seconds, then the cron), each chunk one short transaction that erases up to 500
-- contacts with the same set-based private.erase_contacts a single erasure uses, so a batch is
-- resumable (a chunk that dies rolls back alone; the next call takes the same contacts again),
-- never holds locks for long (the send pipeline's claims skip locked rows and wait at most for
-- one chunk), and its progress is kept on write (erased, skipped) and broadcast on the
-- workspace's private `erasures` channel, which only admins may join. One worker at a time per
-- batch (its row is locked with skip locked). Ids that are not the workspace's contacts, or
-- erased already, are skipped, and counted as such without saying which: a batch never tells
-- whether another workspace has a contact.

create table public.erasure_batches (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  requested_by uuid references auth.users (id) on delete set null,
  status text not null default 'queued' check (status in ('queued', 'running', 'done')),
  total integer not null check (total between 1 and 100000),
  erased integer not null default 0 check (erased >= 0),
  skipped integer not null default 0 check (skipped >= 0),
  chunks integer not null default 0 check (chunks >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  finished_at timestamptz,
  check (erased + skipped <= total)
);

comment on table public.erasure_batches is
  'Batch erasures: how many contacts were named, erased and skipped (not the workspace''s, or erased already), in chunks until done.';

create table private.erasure_batch_items (
  batch_id uuid not null references public.erasure_batches (id) on delete cascade,
  contact_id uuid not null,
  state text not null default 'pending' check (state in ('pending', 'erased', 'skipped')),
  primary key (batch_id, contact_id)
);

comment on table private.erasure_batch_items is
  'The contacts a batch erasure names, and what became of each.';

create index erasure_batches_workspace_id_idx on public.erasure_batches (workspace_id, created_at desc);

create index erasure_batches_requested_by_idx on public.erasure_batches (requested_by);

create index erasure_batches_due_idx on public.erasure_batches (created_at) where status <> 'done';

create index erasure_batch_items_pending_idx on private.erasure_batch_items (batch_id, contact_id)
  where state = 'pending';

create trigger erasure_batches_touch_updated_at
  before update on public.erasure_batches
  for each row execute function private.touch_updated_at();

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'erasure_batches', 'status', 'none', 'not_personal', null),
  ('private', 'erasure_batch_items', 'state', 'none', 'not_personal', 'contact ids only');

-- Broadcasts a batch's progress to the workspace's admins.
create function private.broadcast_erasure_progress()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform realtime.send(
    jsonb_build_object('id', new.id, 'status', new.status, 'total', new.total,
                       'erased', new.erased, 'skipped', new.skipped),
    'erasure_progress',
    'workspace:' || new.workspace_id::text || ':erasures',
    true
  );
  return null;
end
$$;

revoke all on function private.broadcast_erasure_progress() from public, anon, authenticated;

create trigger erasure_batches_broadcast
  after insert or update of status, erased, skipped on public.erasure_batches
  for each row execute function private.broadcast_erasure_progress();

create function private.audit_erasure_batch()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.audit(new.workspace_id, 'erasure.batch_requested', 'erasure_batch', new.id::text,
                          jsonb_build_object('total', new.total));
  else
    perform private.audit(new.workspace_id, 'erasure.batch_finished', 'erasure_batch', new.id::text,
                          jsonb_build_object('total', new.total, 'erased', new.erased, 'skipped', new.skipped,
                                             'chunks', new.chunks));
  end if;
  return null;
end
$$;

revoke all on function private.audit_erasure_batch() from public, anon, authenticated;

create trigger erasure_batches_audit_requested
  after insert on public.erasure_batches
  for each row execute function private.audit_erasure_batch();

create trigger erasure_batches_audit_finished
  after update of status on public.erasure_batches
  for each row
  when (old.status <> 'done' and new.status = 'done')
  execute function private.audit_erasure_batch();

-- requesting -----------------------------------------------------------------------------------

-- An admin names the contacts to erase. Another workspace (or a deleted one) 404, members and
-- viewers 403, no ids or more than 100,000 422. Ids not among the workspace's live contacts
-- are skipped at once.
create function public.request_erasure_batch(p_workspace_id uuid, p_contact_ids uuid[])
returns public.erasure_batches
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_ids uuid[];
  v_batch public.erasure_batches;
  v_skipped integer;
begin
  if p_workspace_id is null or p_workspace_id not in (select private.user_workspace_ids()) then
    perform private.fail(404, 'workspace_not_found', 'Workspace not found');
  end if;
  perform private.workspace_role_as(p_workspace_id, 'admin');
  if cardinality(p_contact_ids) > 100000 then
    perform private.fail(422, 'too_many_contacts', 'A batch erases at most 100,000 contacts');
  end if;
  v_ids := array(select distinct x from unnest(coalesce(p_contact_ids, '{}')) as x where x is not null);
  if cardinality(v_ids) = 0 then
    perform private.fail(422, 'contact_ids_required', 'Name at least one contact to erase');
  end if;
  insert into public.erasure_batches (workspace_id, requested_by, total)
  values (p_workspace_id, v_user, cardinality(v_ids))
  returning * into v_batch;
  with items as (
    insert into private.erasure_batch_items (batch_id, contact_id, state)
    select v_batch.id, x,
           case when exists (select from public.contacts c
                             where c.id = x and c.workspace_id = p_workspace_id and c.erased_at is null)
                then 'pending' else 'skipped' end
    from unnest(v_ids) as x
    returning state
  )
  select count(*) filter (where state = 'skipped') into v_skipped from items;
  if v_skipped > 0 then
    update public.erasure_batches b set skipped = v_skipped,
      status = case when v_skipped = b.total then 'done' else b.status end,
      finished_at = case when v_skipped = b.total then now() end
    where b.id = v_batch.id
    returning * into v_batch;
  end if;
  return v_batch;
end
$$;

revoke all on function public.request_erasure_batch(uuid, uuid[]) from public, anon;

grant execute on function public.request_erasure_batch(uuid, uuid[]) to authenticated;

comment on function public.request_erasure_batch(uuid, uuid[]) is
  'Starts a batch erasure of up to 100,000 contacts (admins and owners), done in chunks; ids that are not the workspace''s live contacts are skipped. 404 workspace_not_found, 403 insufficient_role, 422 contact_ids_required or too_many_contacts.';

-- working --------------------------------------------------------------------------------------

-- Erases the next chunk (at most p_limit contacts, 1 to 5,000) of a batch: p_batch_id's, or
-- the oldest unfinished batch nobody else is working on. Answers the batch after the chunk,
-- or null when there was nothing to take.
create function private.erase_batch_chunk(p_batch_id uuid, p_limit integer)
returns public.erasure_batches
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_batch public.erasure_batches;
  v_ids uuid[];
  v_erased integer;
  v_skipped integer;
begin
  select * into v_batch from public.erasure_batches b
  where b.status <> 'done' and (p_batch_id is null or b.id = p_batch_id)
  order by b.created_at
  limit 1
  for update skip locked;
  if v_batch.id is null then
    return null;
  end if;
  v_ids := array(select i.contact_id from private.erasure_batch_items i
                 where i.batch_id = v_batch.id and i.state = 'pending'
                 order by i.contact_id
                 limit least(greatest(coalesce(p_limit, 500), 1), 5000));
  if cardinality(v_ids) > 0 then
    perform private.erase_contacts(v_batch.workspace_id, v_ids, v_batch.requested_by);
    with marked as (
      update private.erasure_batch_items i
      set state = case when exists (select from public.contacts c
                                    where c.id = i.contact_id and c.workspace_id = v_batch.workspace_id
                                      and c.erased_at is not null)
                       then 'erased' else 'skipped' end
      where i.batch_id = v_batch.id and i.contact_id = any (v_ids)
      returning i.state
    )
    select count(*) filter (where state = 'erased'), count(*) filter (where state = 'skipped')
    into v_erased, v_skipped
    from marked;
  end if;
  update public.erasure_batches b
  set erased = b.erased + coalesce(v_erased, 0),
      skipped = b.skipped + coalesce(v_skipped, 0),
      chunks = b.chunks + case when cardinality(v_ids) > 0 then 1 else 0 end,
      status = case when exists (select from private.erasure_batch_items i
                                 where i.batch_id = b.id and i.state = 'pending')
                    then 'running' else 'done' end,
      finished_at = case when exists (select from private.erasure_batch_items i
                                      where i.batch_id = b.id and i.state = 'pending')
                         then null else now() end
  where b.id = v_batch.id
  returning * into v_batch;
  return v_batch;
end
$$;

revoke all on function private.erase_batch_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.erase_batch_chunk(uuid, integer) to service_role;

-- grants -------------------------------------------------------------------------------------

revoke all on public.erasure_batches from public, anon, authenticated;

grant select on public.erasure_batches to authenticated;

grant select, insert, update on public.erasure_batches to service_role;

revoke all on private.erasure_batch_items from public, anon, authenticated;

grant select, insert, update, delete on private.erasure_batch_items to service_role;

-- row level security -------------------------------------------------------------------------

alter table public.erasure_batches enable row level security;

-- Admins and owners read their workspaces' batch erasures.
create policy erasure_batches_select_admins on public.erasure_batches
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Only admins and owners may receive the broadcasts of their workspaces' erasures channel.
create policy realtime_messages_erasures_admins_only on realtime.messages
  as restrictive
  for select to authenticated
  using (
    split_part(topic, ':', 3) <> 'erasures'
    or split_part(topic, ':', 2) in (select id::text from private.user_workspace_ids_at_least('admin') as id)
  );
