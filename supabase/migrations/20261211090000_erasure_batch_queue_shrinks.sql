-- Fix-forward of 20261209092000_erasure_batches.sql: a batch's item list is a queue that shrinks
-- as it goes, instead of keeping a row per contact for ever (a 100,000-contact batch left
-- 100,000 rows behind). The request queues only the workspace's live contacts (the rest are
-- counted as skipped at once, as before); each chunk deletes the items it took. The per-contact
-- proof stays where it always was, in public.contact_erasures; the batch keeps its counts.

-- Items already finished by the first version are no longer needed.
delete from private.erasure_batch_items i where i.state <> 'pending';

create or replace function public.request_erasure_batch(p_workspace_id uuid, p_contact_ids uuid[])
returns public.erasure_batches
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_ids uuid[];
  v_batch public.erasure_batches;
  v_queued integer;
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
  insert into private.erasure_batch_items (batch_id, contact_id)
  select v_batch.id, c.id
  from public.contacts c
  where c.id = any (v_ids) and c.workspace_id = p_workspace_id and c.erased_at is null;
  get diagnostics v_queued = row_count;
  if v_queued < v_batch.total then
    update public.erasure_batches b set skipped = b.total - v_queued,
      status = case when v_queued = 0 then 'done' else b.status end,
      finished_at = case when v_queued = 0 then now() end
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

create or replace function private.erase_batch_chunk(p_batch_id uuid, p_limit integer)
returns public.erasure_batches
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_batch public.erasure_batches;
  v_ids uuid[];
  v_erased integer := 0;
  v_skipped integer := 0;
begin
  select * into v_batch from public.erasure_batches b
  where b.status <> 'done' and (p_batch_id is null or b.id = p_batch_id)
  order by b.created_at
  limit 1
  for update skip locked;
  if v_batch.id is null then
    return null;
  end if;
  with taken as (
    delete from private.erasure_batch_items i
    where i.batch_id = v_batch.id
      and i.contact_id in (select x.contact_id from private.erasure_batch_items x
                           where x.batch_id = v_batch.id
                           order by x.contact_id
                           limit least(greatest(coalesce(p_limit, 500), 1), 5000))
    returning i.contact_id
  )
  select coalesce(array_agg(t.contact_id), '{}') into v_ids from taken as t;
  if cardinality(v_ids) > 0 then
    perform private.erase_contacts(v_batch.workspace_id, v_ids, v_batch.requested_by);
    -- Erased now or meanwhile by someone else; gone or never the workspace's: skipped.
    select count(*) into v_erased from public.contacts c
    where c.id = any (v_ids) and c.workspace_id = v_batch.workspace_id and c.erased_at is not null;
    v_skipped := cardinality(v_ids) - v_erased;
  end if;
  update public.erasure_batches b
  set erased = b.erased + v_erased,
      skipped = b.skipped + v_skipped,
      chunks = b.chunks + case when cardinality(v_ids) > 0 then 1 else 0 end,
      status = case when exists (select from private.erasure_batch_items i where i.batch_id = b.id)
                    then 'running' else 'done' end,
      finished_at = case when exists (select from private.erasure_batch_items i where i.batch_id = b.id)
                         then null else now() end
  where b.id = v_batch.id
  returning * into v_batch;
  return v_batch;
end
$$;

revoke all on function private.erase_batch_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.erase_batch_chunk(uuid, integer) to service_role;

comment on table private.erasure_batch_items is
  'The contacts a batch erasure has yet to take: a queue each chunk deletes from.';
