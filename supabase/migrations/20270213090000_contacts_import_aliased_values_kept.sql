-- Contacts: a column read as one of our fields under another tool's name (an alias: `Firstname`,
-- `Surname`, `Customer Name`, `Tag`, `Accepts Marketing`, `Consent Date`, `Mobile`, …; issue 14)
-- was a custom attribute before aliases, and its row imported whatever its value. Now, when our
-- checks refuse such a column's value (a first or last name over 200 characters, a tag over 100,
-- a consent of `maybe`, a consent date of `last spring`, a phone that does not parse), the row
-- still imports and the value stays the attribute under the column's header, instead of an
-- error. Our own column names (`first_name`, `tags`, `consent`, …) still refuse the row.
--
-- The checks stay here, in one place. The header mapping (api/imports/columns.py) marks such a
-- column `<field>?attribute:<header>` in the job's columns; the edge stages its value in the
-- field as before and, as written (trimmed), in kept_if_refused (the job's such columns in their
-- order; null where the value is empty or too long for an attribute); this chunk, where its
-- check refuses the field's value, leaves the field empty and adds that value to the contact's
-- attributes under the header. A full name (`full_name?attribute:Name`) is kept whole when either
-- its first or its last name is refused; a phone (parsed by the edge) is kept when the edge
-- staged none. Rows whose values pass (nearly all) are merged as before.

-- tables --------------------------------------------------------------------------------------

alter table private.import_contact_rows add column kept_if_refused text[];

comment on column private.import_contact_rows.kept_if_refused is
  'The values of the job''s columns read as our fields under another tool''s name (`<field>?attribute:<header>` in import_jobs.columns, in their order), kept as attributes where the chunk refuses them.';

-- A contact's values, as its other staged columns.
insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values ('private', 'import_contact_rows', 'kept_if_refused', 'contact', 'row_deleted', 'staged import rows');

-- functions -----------------------------------------------------------------------------------

-- Copied from 20270208090000_contacts_import_tags_unquoted.sql; changed: an aliased column's
-- refused value is kept as its attribute (the job's `<field>?attribute:<header>` columns).
create or replace function private.import_contacts_chunk(p_job_id uuid, p_max_records integer)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
set jit = off
as $$
declare
  v_job public.import_jobs;
  v_claim private.import_chunk;
  v_to bigint;
  v_room integer;
  v_max integer;
  v_errors jsonb;
  v_valid integer;
  v_created integer;
  v_updated integer;
  v_source text;
  -- The headers of the columns read as our fields under another tool's name, and where each
  -- field's value is in kept_if_refused (null: no such column).
  v_headers text[];
  v_at_first_name integer;
  v_at_last_name integer;
  v_at_name integer;
  v_at_phone integer;
  v_at_tags integer;
  v_at_consent integer;
  v_at_consent_source integer;
  v_at_consent_at integer;
  v_else boolean;
begin
  v_claim := private.claim_import_chunk(p_job_id, 'contacts', p_max_records);
  v_job := v_claim.job;
  v_to := v_claim.upto;
  if v_to is null then
    return v_job;
  end if;
  v_source := left('import: ' || coalesce(v_job.file_name, v_job.id::text), 100);
  select array_agg(m.header order by m.at),
         max(m.at) filter (where m.field = 'first_name'),
         max(m.at) filter (where m.field = 'last_name'),
         max(m.at) filter (where m.field = 'full_name'),
         max(m.at) filter (where m.field = 'phone'),
         max(m.at) filter (where m.field = 'tags'),
         max(m.at) filter (where m.field = 'consent'),
         max(m.at) filter (where m.field = 'consent_source'),
         max(m.at) filter (where m.field = 'consent_at'),
         count(*) > 0
  into v_headers, v_at_first_name, v_at_last_name, v_at_name, v_at_phone, v_at_tags,
       v_at_consent, v_at_consent_source, v_at_consent_at, v_else
  from (
    select left(t.target, strpos(t.target, '?attribute:') - 1) as field,
           substr(t.target, strpos(t.target, '?attribute:') + length('?attribute:')) as header,
           row_number() over (order by t.n)::integer as at
    from unnest(v_job.columns) with ordinality as t (target, n)
    -- As the edge reads them (api.imports.columns.kept_if_refused): a column kept only as an
    -- attribute is never a kept column, whatever its header says.
    where strpos(t.target, '?attribute:') > 0 and t.target not like 'attribute:%'
  ) as m;

  delete from private.import_contact_work w where w.job_id = p_job_id;
  insert into private.import_contact_work (job_id, record, line, email, first_name, last_name,
    phone, tags, consent, consent_source, consent_at, attributes, problem, problem_column)
  select p_job_id, r.record, r.line, v.email,
         case when k.first_name or k.name then null else v.first_name end,
         case when k.last_name or k.name then null else v.last_name end,
         r.phone,
         case when k.tags then '{}' else v.tags end,
         case when k.consent then null else v.consent end,
         case when k.consent_source then null else v.consent_source end,
         case when k.consent_at then null else v.consent_at end,
         case
           when k.first_name or k.last_name or k.name or k.phone or k.tags or k.consent
                or k.consent_source or k.consent_at
           then coalesce(r.attributes, '{}'::jsonb) || (
             select jsonb_object_agg(v_headers[e.at], r.kept_if_refused[e.at])
             from unnest(array[
               case when k.first_name then v_at_first_name end,
               case when k.last_name then v_at_last_name end,
               case when k.name then v_at_name end,
               case when k.phone then v_at_phone end,
               case when k.tags then v_at_tags end,
               case when k.consent then v_at_consent end,
               case when k.consent_source then v_at_consent_source end,
               case when k.consent_at then v_at_consent_at end]) as e (at)
             where e.at is not null)
           else coalesce(r.attributes, '{}'::jsonb)
         end as attributes,
         coalesce(r.problem,
           case
             when v.email is null then 'email is empty'
             when v.email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then 'email is not an email address'
             when b.first_name and not (k.first_name or k.name) then 'first_name may have at most 200 characters'
             when b.last_name and not (k.last_name or k.name) then 'last_name may have at most 200 characters'
             when b.tag_count and not k.tags then 'tags: at most 100 per contact'
             when b.tag_length and not k.tags then 'tags: each at most 100 characters'
             when b.consent and not k.consent then 'consent must be granted, denied, withdrawn or unknown (or yes/no)'
             when b.consent_source and not k.consent_source then 'consent_source may have at most 100 characters'
             when b.consent_at and not k.consent_at then 'consent_at must be an ISO date or date-time'
           end) as problem,
         coalesce(r.problem_column,
           case
             when v.email is null or v.email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then 'email'
             when b.first_name and not (k.first_name or k.name) then 'first_name'
             when b.last_name and not (k.last_name or k.name) then 'last_name'
             when (b.tag_count or b.tag_length) and not k.tags then 'tags'
             when b.consent and not k.consent then 'consent'
             when b.consent_source and not k.consent_source then 'consent_source'
             when b.consent_at and not k.consent_at then 'consent_at'
           end) as problem_column
  from private.import_contact_rows r
  cross join lateral (
    select nullif(lower(btrim(r.email)), '') as email,
           nullif(btrim(r.first_name), '') as first_name,
           nullif(btrim(r.last_name), '') as last_name,
           array(select distinct u.tag from unnest(regexp_split_to_array(coalesce(r.tags, ''), '[,;|]')) as t,
                        lateral (select btrim(regexp_replace(btrim(t), '^"(.*)"$', '\1')) as tag) as u
                 where u.tag <> '' order by 1) as tags,
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
    -- Once per row (not pulled up into each use: the tags' split was run for every mention).
    offset 0
  ) as v
  -- What our checks refuse (each value's one check).
  cross join lateral (
    select coalesce(char_length(v.first_name) > 200, false) as first_name,
           coalesce(char_length(v.last_name) > 200, false) as last_name,
           cardinality(v.tags) > 100 as tag_count,
           exists (select 1 from unnest(v.tags) t where char_length(t) > 100) as tag_length,
           v.consent_text is not null and v.consent is null as consent,
           coalesce(char_length(v.consent_source) > 100, false) as consent_source,
           v.consent_at_text is not null and v.consent_at is null as consent_at
  ) as b
  -- A refused value of an aliased column the edge staged to keep: kept, not refused.
  cross join lateral (
    select coalesce(v_else and b.first_name and r.kept_if_refused[v_at_first_name] is not null, false) as first_name,
           coalesce(v_else and b.last_name and r.kept_if_refused[v_at_last_name] is not null, false) as last_name,
           coalesce(v_else and (b.first_name or b.last_name) and r.kept_if_refused[v_at_name] is not null, false) as name,
           coalesce(v_else and r.phone is null and r.kept_if_refused[v_at_phone] is not null, false) as phone,
           coalesce(v_else and r.kept_if_refused[v_at_tags] is not null and (b.tag_count or b.tag_length), false) as tags,
           coalesce(v_else and b.consent and r.kept_if_refused[v_at_consent] is not null, false) as consent,
           coalesce(v_else and b.consent_source and r.kept_if_refused[v_at_consent_source] is not null, false) as consent_source,
           coalesce(v_else and b.consent_at and r.kept_if_refused[v_at_consent_at] is not null, false) as consent_at
  ) as k
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

  -- Ids behind the time in milliseconds (as in a UUIDv7), so a chunk's new contacts land together
  -- at the end of the primary key's index.
  insert into public.contacts (id, workspace_id, email, phone, first_name, last_name, tags, attributes,
                               consent_state, consent_source, consent_at, imported_at)
  select encode(overlay(uuid_send(gen_random_uuid())
                placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
                from 1 for 6), 'hex')::uuid,
         v_job.workspace_id, c.email, c.phone, c.first_name, c.last_name, c.tags, c.attributes,
         coalesce(c.consent, 'unknown'),
         case when c.consent <> 'unknown' then coalesce(c.consent_source, v_source) end,
         case when c.consent <> 'unknown' then coalesce(c.consent_at, now()) end,
         now()
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

  v_job := private.finish_import_chunk(v_job, v_to, v_errors, v_valid, v_created, v_updated);
  return v_job;
end
$$;

revoke all on function private.import_contacts_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.import_contacts_chunk(uuid, integer) to service_role;
