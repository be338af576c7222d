-- Contacts import (issue 14 §1): a contacts CSV from another tool, merged set-based a chunk at
-- a time. Columns: email (required; trimmed and lower-cased), first_name, last_name, phone
-- (E.164, normalised by the edge with the row's country), tags (separated by , ; or |),
-- consent (granted/denied/withdrawn/unknown, or yes/no, subscribed/unsubscribed),
-- consent_source and consent_at; every other column becomes a custom attribute.
--
-- A contact is found by its email. A new one takes the file's values; an existing one takes
-- the file's non-empty values, gains its tags and attributes, and takes its consent only while
-- it has none recorded ('unknown'): a file never overrides a consent decision the contact
-- made. Without a consent column nothing about consent is written. Consent from a file
-- records its source (the consent_source column, else 'import: <file name>') and time (the
-- consent_at column, else the import's time).
--
-- The plan's contact limit is checked once per chunk, from the workspace's contact counter
-- (locked for the chunk, so concurrent writers of the workspace wait and the count stays exact):
-- rows past the limit are reported, the rest of the chunk imports.

alter table public.contacts
  add column tags text[] not null default '{}'
    check (cardinality(tags) <= 100 and array_position(tags, null) is null);

comment on column public.contacts.tags is
  'Labels for the contact (at most 100, each 1 to 100 characters), from imports or the SPA.';

create unlogged table private.import_contact_rows (
  job_id uuid not null,
  record bigint not null,
  line bigint not null,
  email text,
  first_name text,
  last_name text,
  phone text,
  tags text,
  consent text,
  consent_source text,
  consent_at text,
  attributes jsonb,
  problem text,
  problem_column text,
  primary key (job_id, record)
);

-- A chunk's rows as checked, while the chunk's transaction merges them (empty in between).
create unlogged table private.import_contact_work (
  job_id uuid not null,
  record bigint not null,
  line bigint not null,
  email text,
  first_name text,
  last_name text,
  phone text,
  tags text[] not null,
  consent text,
  consent_source text,
  consent_at timestamptz,
  attributes jsonb not null,
  problem text,
  problem_column text,
  contact_id uuid,
  primary key (job_id, record)
) with (autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_scale_factor = 0);

-- indexes and triggers ------------------------------------------------------------------------

-- Staging goes when its job ends (or is deleted with its workspace).
create function private.drop_import_contact_rows()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.import_contact_rows r where r.job_id in (select o.id from gone o);
  return null;
end
$$;

revoke all on function private.drop_import_contact_rows() from public, anon, authenticated;

create function private.drop_finished_import_contact_rows()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from private.import_contact_rows r where r.job_id = new.id;
  return null;
end
$$;

revoke all on function private.drop_finished_import_contact_rows() from public, anon, authenticated;

create trigger import_jobs_drop_contact_rows
  after delete on public.import_jobs
  referencing old table as gone
  for each statement execute function private.drop_import_contact_rows();

create trigger import_jobs_drop_finished_contact_rows
  after update of status on public.import_jobs
  for each row when (new.kind = 'contacts' and new.status in ('done', 'failed', 'cancelled') and old.status <> new.status)
  execute function private.drop_finished_import_contact_rows();

-- functions -----------------------------------------------------------------------------------

-- How many contacts the workspace may still add under its plan. Locks the workspace's counter
-- for the rest of the transaction (concurrent writers of the workspace wait), and counts the
-- transaction's own uncommitted changes, so the answer holds until commit.
create function private.contacts_room(p_workspace_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_committed integer;
  v_pending integer := coalesce((nullif(pg_catalog.current_setting('growthbase.pending_contacts', true), '')::jsonb
                                 ->> p_workspace_id::text)::integer, 0);
  v_max integer;
begin
  insert into private.workspace_contact_counts (workspace_id) values (p_workspace_id)
  on conflict (workspace_id) do nothing;
  select c.contacts into v_committed from private.workspace_contact_counts c
  where c.workspace_id = p_workspace_id for update;
  select p.contact_limit into v_max
  from public.workspaces w join public.plans p on p.tier = w.plan_tier where w.id = p_workspace_id;
  return greatest(v_max - v_committed - v_pending, 0);
end
$$;

revoke all on function private.contacts_room(uuid) from public, anon, authenticated;

grant execute on function private.contacts_room(uuid) to service_role;

-- A date or date-time as a shop or a spreadsheet writes it (2026-06-01, 2026-06-01 10:00,
-- 2026-06-01T10:00:00.5+02:00), checked without raising: null when it is not one or not in a
-- real calendar (2026-02-30). A value without an offset is UTC.
create function private.import_timestamp(p_value text)
returns timestamptz
language sql
stable
set search_path = ''
set timezone = 'UTC'
as $$
  select case
    when v ~ '^(?:19|2[0-9])[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?(?:[Zz]|[+-](?:0[0-9]|1[0-5])(?::?[0-5][0-9])?)?)?$'
     and substr(v, 9, 2)::integer <= extract(day from make_date(substr(v, 1, 4)::integer, substr(v, 6, 2)::integer, 1)
                                                    + interval '1 month - 1 day')
    then v::timestamptz
  end
  from btrim(p_value) as v
$$;

revoke all on function private.import_timestamp(text) from public, anon, authenticated;

-- After the file is staged: a later row with the email of an earlier one is reported (the first
-- wins), then the job starts importing.
create function private.validate_contacts_import(p_job_id uuid)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs;
begin
  update private.import_contact_rows r
  set problem = format('email repeats line %s', d.first_line), problem_column = 'email'
  from (
    select s.record, first_value(s.line) over w as first_line, row_number() over w as n
    from private.import_contact_rows s
    where s.job_id = p_job_id and s.problem is null
      and lower(btrim(s.email)) in (
        select lower(btrim(e.email)) from private.import_contact_rows e
        where e.job_id = p_job_id and e.problem is null and btrim(e.email) <> ''
        group by 1 having count(*) > 1
      )
    window w as (partition by lower(btrim(s.email)) order by s.record)
  ) as d
  where r.job_id = p_job_id and r.record = d.record and d.n > 1;
  update public.import_jobs j set status = 'importing'
  where j.id = p_job_id and j.status = 'validating'
  returning * into v_job;
  return v_job;
end
$$;

revoke all on function private.validate_contacts_import(uuid) from public, anon, authenticated;

grant execute on function private.validate_contacts_import(uuid) to service_role;

-- Merges the job's next chunk of up to p_max_records staged rows, in one transaction with the
-- job's cursor and counts: checks every row, reports the bad ones, creates the new contacts the
-- plan has room for and updates the existing ones. The last chunk finishes the job.
create function private.import_contacts_chunk(p_job_id uuid, p_max_records integer)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
as $$
declare
  v_job public.import_jobs;
  v_to bigint;
  v_room integer;
  v_max integer;
  v_errors jsonb;
  v_valid integer;
  v_created integer;
  v_updated integer;
  v_source text;
begin
  select * into v_job from public.import_jobs j where j.id = p_job_id for update;
  if v_job.status is distinct from 'importing' or v_job.kind <> 'contacts' then
    return v_job;
  end if;
  v_to := least(v_job.merge_record + greatest(p_max_records, 1), v_job.rows_total);
  if v_to > v_job.merge_record and not exists (
    select 1 from private.import_contact_rows r where r.job_id = p_job_id and r.record = v_to
  ) then
    return private.fail_import_job(p_job_id, 'staging_lost',
      'The database restarted while this file was being imported; what was imported stays, import the file again for the rest');
  end if;
  v_source := left('import: ' || coalesce(v_job.file_name, v_job.id::text), 100);

  delete from private.import_contact_work w where w.job_id = p_job_id;
  insert into private.import_contact_work (job_id, record, line, email, first_name, last_name,
    phone, tags, consent, consent_source, consent_at, attributes, problem, problem_column)
  select p_job_id, r.record, r.line, v.email, v.first_name, v.last_name, r.phone, v.tags,
         v.consent, v.consent_source, v.consent_at, coalesce(r.attributes, '{}'::jsonb) as attributes,
         coalesce(r.problem,
           case
             when v.email is null then 'email is empty'
             when v.email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then 'email is not an email address'
             when char_length(v.first_name) > 200 then 'first_name may have at most 200 characters'
             when char_length(v.last_name) > 200 then 'last_name may have at most 200 characters'
             when cardinality(v.tags) > 100 then 'tags: at most 100 per contact'
             when exists (select 1 from unnest(v.tags) t where char_length(t) > 100) then 'tags: each at most 100 characters'
             when v.consent_text is not null and v.consent is null then 'consent must be granted, denied, withdrawn or unknown (or yes/no)'
             when char_length(v.consent_source) > 100 then 'consent_source may have at most 100 characters'
             when v.consent_at_text is not null and v.consent_at is null then 'consent_at must be an ISO date or date-time'
           end) as problem,
         coalesce(r.problem_column,
           case
             when v.email is null or v.email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then 'email'
             when char_length(v.first_name) > 200 then 'first_name'
             when char_length(v.last_name) > 200 then 'last_name'
             when cardinality(v.tags) > 100 or exists (select 1 from unnest(v.tags) t where char_length(t) > 100) then 'tags'
             when v.consent_text is not null and v.consent is null then 'consent'
             when char_length(v.consent_source) > 100 then 'consent_source'
             when v.consent_at_text is not null and v.consent_at is null then 'consent_at'
           end) as problem_column
  from private.import_contact_rows r
  cross join lateral (
    select nullif(lower(btrim(r.email)), '') as email,
           nullif(btrim(r.first_name), '') as first_name,
           nullif(btrim(r.last_name), '') as last_name,
           array(select distinct btrim(t) from unnest(regexp_split_to_array(coalesce(r.tags, ''), '[,;|]')) as t
                 where btrim(t) <> '' order by 1) as tags,
           nullif(lower(btrim(r.consent)), '') as consent_text,
           case
             when lower(btrim(r.consent)) in ('granted', 'yes', 'y', 'true', '1', 'subscribed', 'opted in', 'opt-in') then 'granted'
             when lower(btrim(r.consent)) in ('denied', 'no', 'n', 'false', '0', 'not subscribed') then 'denied'
             when lower(btrim(r.consent)) in ('withdrawn', 'unsubscribed', 'opted out', 'opt-out') then 'withdrawn'
             when lower(btrim(r.consent)) = 'unknown' then 'unknown'
           end as consent,
           nullif(btrim(r.consent_source), '') as consent_source,
           nullif(btrim(r.consent_at), '') as consent_at_text,
           private.import_timestamp(nullif(btrim(r.consent_at), '')) as consent_at
  ) as v
  where r.job_id = p_job_id and r.record > v_job.merge_record and r.record <= v_to;

  update private.import_contact_work c set contact_id = k.id
  from public.contacts k
  where c.job_id = p_job_id and k.workspace_id = v_job.workspace_id and k.email = c.email
    and c.problem is null;

  v_room := private.contacts_room(v_job.workspace_id);
  select p.contact_limit into v_max
  from public.workspaces w join public.plans p on p.tier = w.plan_tier where w.id = v_job.workspace_id;
  update private.import_contact_work c
  set problem = format('Your plan allows %s contacts; upgrade to import more', v_max), problem_column = null
  where c.job_id = p_job_id and c.record in (
    select n.record from private.import_contact_work n
    where n.job_id = p_job_id and n.problem is null and n.contact_id is null
    order by n.record offset v_room
  );

  select jsonb_agg(jsonb_build_object('line', c.line, 'column_name', c.problem_column, 'reason', c.problem))
           filter (where c.problem is not null),
         count(*) filter (where c.problem is null)
  into v_errors, v_valid
  from private.import_contact_work c
  where c.job_id = p_job_id;
  if v_errors is not null then
    perform private.record_import_errors(v_job, v_errors);
  end if;

  -- Ids behind the time in milliseconds (as in a UUIDv7), so a chunk's new contacts land together
  -- at the end of the primary key's index.
  insert into public.contacts (id, workspace_id, email, phone, first_name, last_name, tags, attributes,
                               consent_state, consent_source, consent_at)
  select encode(overlay(uuid_send(gen_random_uuid())
                placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
                from 1 for 6), 'hex')::uuid,
         v_job.workspace_id, c.email, c.phone, c.first_name, c.last_name, c.tags, c.attributes,
         coalesce(c.consent, 'unknown'),
         case when c.consent <> 'unknown' then coalesce(c.consent_source, v_source) end,
         case when c.consent <> 'unknown' then coalesce(c.consent_at, now()) end
  from private.import_contact_work c
  where c.job_id = p_job_id and c.problem is null and c.contact_id is null
  order by c.record
  on conflict (workspace_id, email) do nothing;
  get diagnostics v_created = row_count;

  update public.contacts k
  set first_name = coalesce(c.first_name, k.first_name),
      last_name = coalesce(c.last_name, k.last_name),
      phone = coalesce(c.phone, k.phone),
      tags = case when k.tags @> c.tags then k.tags
                  else array(select distinct t from unnest(k.tags || c.tags) as t order by 1) end,
      attributes = k.attributes || c.attributes,
      consent_state = case when k.consent_state = 'unknown' and c.consent <> 'unknown' then c.consent else k.consent_state end,
      consent_source = case when k.consent_state = 'unknown' and c.consent <> 'unknown' then coalesce(c.consent_source, v_source) else k.consent_source end,
      consent_at = case when k.consent_state = 'unknown' and c.consent <> 'unknown' then coalesce(c.consent_at, now()) else k.consent_at end
  from private.import_contact_work c
  where c.job_id = p_job_id and c.contact_id = k.id and c.problem is null
    and (
      coalesce(c.first_name, k.first_name) is distinct from k.first_name
      or coalesce(c.last_name, k.last_name) is distinct from k.last_name
      or coalesce(c.phone, k.phone) is distinct from k.phone
      or not k.tags @> c.tags
      or not k.attributes @> c.attributes
      or (k.consent_state = 'unknown' and c.consent is not null and c.consent <> 'unknown')
    );
  get diagnostics v_updated = row_count;
  delete from private.import_contact_work w where w.job_id = p_job_id;

  update public.import_jobs j
  set merge_record = v_to,
      rows_processed = v_to,
      created = j.created + v_created,
      updated = j.updated + v_updated,
      unchanged = j.unchanged + v_valid - v_created - v_updated,
      status = case when v_to >= j.rows_total then 'done' else j.status end,
      finished_at = case when v_to >= j.rows_total then now() end
  where j.id = p_job_id
  returning * into v_job;
  return v_job;
end
$$;

revoke all on function private.import_contacts_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.import_contacts_chunk(uuid, integer) to service_role;

-- grants --------------------------------------------------------------------------------------

revoke all on private.import_contact_rows from public, anon, authenticated;

revoke all on private.import_contact_work from public, anon, authenticated;

-- The edge copies the file's rows in, as the service.
grant insert on private.import_contact_rows to service_role;

grant insert (tags) on public.contacts to authenticated;

grant update (tags) on public.contacts to authenticated;
