-- A monthly snapshot writes a row per customer (200k for a large shop) in one statement. Its two
-- foreign keys (to contacts and to workspaces, both on delete cascade) made each row look up and
-- key-share-lock its contact and its workspace: two thirds of a snapshot's time. The cascades
-- stay, done by statement triggers instead: deleting contacts (erasure included) or workspaces
-- deletes their snapshot rows, through rfm_snapshots_contact_id_idx and the primary key.
--
-- Nothing but take_rfm_snapshot writes snapshot rows, from customer facts, which exist only for
-- existing contacts. A contact deleted while a snapshot is being taken could still be scored by
-- it, so the snapshot holds the table in share row exclusive mode until it commits, and the
-- deleting trigger first takes row exclusive (which waits for it) and then deletes, in a new
-- statement that sees the snapshot's rows.

alter table analytics.rfm_snapshots
  drop constraint rfm_snapshots_contact_id_fkey,
  drop constraint rfm_snapshots_workspace_id_fkey;

-- Contacts or workspaces deleted (transition table gone): their snapshot rows go too.
create function private.delete_rfm_snapshots()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
begin
  select array_agg(g.id) into v_ids from gone g;
  if v_ids is null then
    return null;
  end if;
  lock table analytics.rfm_snapshots in row exclusive mode;
  if tg_table_name = 'contacts' then
    delete from analytics.rfm_snapshots s where s.contact_id = any (v_ids);
  else
    delete from analytics.rfm_snapshots s where s.workspace_id = any (v_ids);
  end if;
  return null;
end
$$;

revoke all on function private.delete_rfm_snapshots() from public, anon, authenticated;

create trigger contacts_delete_rfm_snapshots
  after delete on public.contacts
  referencing old table as gone
  for each statement execute function private.delete_rfm_snapshots();

create trigger workspaces_delete_rfm_snapshots
  after delete on public.workspaces
  referencing old table as gone
  for each statement execute function private.delete_rfm_snapshots();

-- As before (…_rfm_analytics.sql), holding the snapshots against concurrent deletions until it
-- commits (see above).
create or replace function analytics.take_rfm_snapshot(p_month date)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_month date := date_trunc('month', p_month)::date;
  v_rows integer;
begin
  lock table analytics.rfm_snapshots in share row exclusive mode;
  delete from analytics.rfm_snapshots s where s.snapshot_month = v_month;
  insert into analytics.rfm_snapshots
    (workspace_id, snapshot_month, contact_id, recency_days, frequency, monetary,
     r_score, f_score, m_score, segment)
  select s.workspace_id, v_month, s.contact_id, s.recency_days, s.frequency, s.monetary,
         s.r_score, s.f_score, s.m_score, m.segment
  from private.rfm_scores((v_month + interval '1 month' - interval '1 day')::date, null) s
  join analytics.rfm_segment_map m on m.r_score = s.r_score and m.f_score = s.f_score;
  get diagnostics v_rows = row_count;
  return v_rows;
end
$$;

revoke all on function analytics.take_rfm_snapshot(date) from public, anon, authenticated;

grant execute on function analytics.take_rfm_snapshot(date) to service_role;
