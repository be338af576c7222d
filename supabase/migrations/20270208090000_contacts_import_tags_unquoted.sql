-- Mailchimp's audience export writes a contact's tags quoted inside the field (`"VIP","Customer"`
-- in its TAGS column): split on the commas, each tag kept its quotes (`"VIP"`), a tag the shop
-- never named. A tag is now trimmed of a matched pair of surrounding double quotes as well as
-- spaces (issue 14, imports from other tools); a quote at one end only is the tag's own
-- (`Screen 27"`).

-- functions -----------------------------------------------------------------------------------

-- As 20270118090000_contacts_import_stamps_its_inserts.sql, each tag out of its pair of `"`.
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
begin
  v_claim := private.claim_import_chunk(p_job_id, 'contacts', p_max_records);
  v_job := v_claim.job;
  v_to := v_claim.upto;
  if v_to is null then
    return v_job;
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
