-- Erasure blanks an erased person's staged import rows instead of deleting them, so a running
-- import no longer fails as `staging_lost` because of an erasure.
--
-- A chunk tells a staging table a restart emptied (unlogged tables are empty after a crash) from
-- a live one by the chunk's last staged row: private.claim_import_chunk (contacts and products,
-- 20270107090000_imports_keep_planner_statistics.sql) and private.stage_orders_chunk (orders,
-- 20270222090000_shop_customers_keyed_per_project.sql) fail the job as `staging_lost` when the
-- row at the part's end is missing. Erasure deleted the person's rows from
-- private.import_contact_rows and private.import_order_rows: when one was the last row of a part
-- not yet merged (the file's last row, say), the job failed with "The database restarted…" and
-- every row after it was never imported. A legal erasure broke a customer's running import.
--
-- Now erasure keeps the row (its job, record and line) with every value that is the person's set
-- to null and the loader's problem set to `not imported: the person on this line was erased`
-- (no column). Why this design, the smallest of the two:
--   * The loss check stays as it is and stays exact: a restart still empties every row, so the
--     part's last row is still missing then; an erasure now never removes one.
--   * No writer changes: both chunk writers already take a staged row's `problem` (a loader's
--     refusal) as the row's first problem, so the row is refused and reported like any refused
--     line (one error naming its line, counted in rows_failed), and nothing of it is written:
--     import_contacts_chunk writes only rows without a problem; stage_orders_chunk makes the
--     row's whole order bad, so the order, its customer, its contact and its customer id are
--     never written, and its other lines are reported as lines of an order with an error.
--   * An orders row keeps its order_id (an order's number, not the person's; erasure keeps
--     imported orders too, unlinked): a part with line items ends after the last line of the
--     order of its last row, read from that row, and an erased person's other lines (those not
--     naming them) are refused with their order instead of imported as an order of its own.
--   The other design, a loss check on something erasure leaves (any row of the job at or after
--   the part, or a per-job sentinel), either still fails when erasure took every row left or
--   needs the edge's staging and every running job's rows changed.
-- The registry of personal data (private.personal_data_columns) now says `cleared` for these
-- columns. Products' staged rows (private.import_product_rows) hold nobody's data and erasure
-- never touched them. A part of an orders import already staged (its working rows) is handled as
-- before (20270227090000).
--
-- Staging is read only for the workspace's running jobs (review32c): the staged-row statements
-- joined every staged row to the workspace's jobs (any job ever), so once a workspace had
-- imported, each erasure scanned the whole staging tables of every workspace (the planner starts
-- from the unindexable address match). The running jobs are found first (a job that ends drops
-- its staging) and their rows probed by job id; with none running, no staging is read.
--
-- Redefines (copied from the newest definition, changed only where said above):
--   private.erase_contacts from 20270227090000_erasure_of_import_rows_per_project.sql.
create or replace function private.erase_contacts(p_workspace_id uuid, p_contact_ids uuid[], p_requested_by uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_emails text[];
  v_phones text[];
  v_external_ids text[];
  v_id_projects uuid[];
  v_needles text[];
  v_keys text[];
  v_rows jsonb := '{}'::jsonb;
  v_phone_digits text[];
  v_count integer;
  v_staged integer;
  v_jobs uuid[];
begin
  select coalesce(array_agg(c.id order by c.id), '{}'),
         coalesce(array_agg(c.email) filter (where c.email is not null), '{}'),
         coalesce(array_agg(c.phone) filter (where c.phone is not null), '{}')
  into v_ids, v_emails, v_phones
  from (
    select c.id, c.email, c.phone from public.contacts c
    where c.workspace_id = p_workspace_id and c.id = any (p_contact_ids) and c.erased_at is null
    order by c.id
    for update
  ) as c;
  if cardinality(v_ids) = 0 then
    return 0;
  end if;
  -- Each id with its project (the two arrays pair up by position).
  select coalesce(array_agg(x.external_id order by x.project_id, x.external_id), '{}'),
         coalesce(array_agg(x.project_id order by x.project_id, x.external_id), '{}')
  into v_external_ids, v_id_projects
  from public.contact_external_ids x
  where x.workspace_id = p_workspace_id and x.contact_id = any (v_ids);
  select coalesce(array_agg(private.phone_digits(p)), '{}') into v_phone_digits from unnest(v_phones) as p;
  v_needles := private.contact_needles(p_workspace_id, v_ids);
  v_keys := private.identifier_keys(private.contact_tokens(p_workspace_id, v_ids));

  -- The keyed hashes first: from here on no writer can bring the person back.
  insert into private.erased_identities (workspace_id, identity_key, kind)
  select p_workspace_id, private.identity_key(p_workspace_id, k.kind, k.value), k.kind
  from (
    select 'email' as kind, e as value from unnest(v_emails) as e
    union all
    select 'phone', p from unnest(v_phones) as p
  ) as k
  on conflict (workspace_id, identity_key) do nothing;

  -- Their suppressions live on as those hashes (the permanent ones may go only here).
  perform pg_catalog.set_config('growthbase.erasing', 'on', true);
  delete from public.email_suppressions s
  where s.workspace_id = p_workspace_id and s.email = any (v_emails);
  get diagnostics v_count = row_count;
  perform pg_catalog.set_config('growthbase.erasing', '', true);
  v_rows := v_rows || jsonb_build_object('email_suppressions', v_count);

  -- updated_at set here spares the row trigger (orders_touch_updated_at) 10k calls.
  update public.orders o set contact_id = null, updated_at = now()
  where o.contact_id = any (v_ids) and o.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('orders', v_count);

  -- Each guard below spares statement triggers that run even for no row.
  v_count := 0;
  if exists (select from public.campaign_recipients r
             where r.contact_id = any (v_ids) and r.workspace_id = p_workspace_id) then
    update public.campaign_recipients r
    set email = null, error = null,
        status = case when r.status in ('queued', 'sending') then 'skipped' else r.status end,
        locked_until = null
    where r.contact_id = any (v_ids) and r.workspace_id = p_workspace_id;
    get diagnostics v_count = row_count;
  end if;
  v_rows := v_rows || jsonb_build_object('campaign_recipients', v_count);

  delete from public.contact_external_ids x where x.contact_id = any (v_ids) and x.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('contact_external_ids', v_count);

  delete from public.email_list_members m where m.contact_id = any (v_ids) and m.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('email_list_members', v_count);

  delete from analytics.rfm_snapshots s where s.contact_id = any (v_ids) and s.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('rfm_snapshots', v_count);

  -- Every stored payload naming them that is this workspace's, or nobody's once applied
  -- (private.erase_contact_payloads).
  v_count := private.erase_contact_payloads(p_workspace_id, v_ids, v_keys, v_external_ids);
  v_rows := v_rows || jsonb_build_object('webhook_events', v_count);

  update public.automations a
  set input = private.redact_json(a.input, v_needles),
      result = private.redact_json(a.result, v_needles),
      error = private.redact_text(a.error, v_needles)
  where a.workspace_id = p_workspace_id
    and exists (
      select from unnest(v_needles) as n
      where strpos(lower(a.input::text || coalesce(a.result::text, '') || coalesce(a.error, '')), lower(n)) > 0
    );
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('automations', v_count);

  update public.segments s set rule = private.redact_json(s.rule, v_needles)
  where s.workspace_id = p_workspace_id
    and exists (select from unnest(v_needles) as n where strpos(lower(s.rule::text), lower(n)) > 0);
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('segments', v_count);

  update public.ai_calls a set pii_redacted = private.redact_json(a.pii_redacted, v_needles)
  where a.workspace_id = p_workspace_id and a.pii_redacted is not null
    and exists (select from unnest(v_needles) as n where strpos(lower(a.pii_redacted::text), lower(n)) > 0);
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('ai_calls', v_count);

  -- Staged and in-flight rows of running imports (each table is a job's own copy of the file),
  -- a staged row blanked and refused, the others deleted: by address or phone in every job; an
  -- orders row by customer_id only in a job of the project where the person has an id of that
  -- value (an import's customer_id is its project's). An
  -- orders part staged and not yet written keeps its working rows under its work_id
  -- (private.import_order_chunks); its orders and customers go also by the contact they found.
  v_count := 0;
  v_staged := 0;
  -- Only a running job has staging (a job that ends drops it); found first, so the statements
  -- below probe those jobs' rows by their key, and an erasure with no import running reads none.
  select coalesce(array_agg(j.id), '{}') into v_jobs
  from public.import_jobs j
  where j.workspace_id = p_workspace_id and j.status in ('uploading', 'validating', 'importing');
  if cardinality(v_jobs) > 0 then
    -- A staged row stays, blank and refused: a chunk takes its part's missing last row for a
    -- staging a restart emptied (staging_lost).
    update private.import_contact_rows r
    set email = null, first_name = null, last_name = null, phone = null, tags = null, consent = null,
        consent_source = null, consent_at = null, attributes = null, kept_if_refused = null,
        problem = 'not imported: the person on this line was erased', problem_column = null
    from public.import_jobs j
    where r.job_id = any (v_jobs) and j.id = r.job_id
      and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits));
    get diagnostics v_staged = row_count;
    v_count := v_count + v_staged;
    delete from private.import_contact_work r using public.import_jobs j
    where r.job_id = any (v_jobs) and j.id = r.job_id
      and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits));
    get diagnostics v_staged = row_count;
    v_count := v_count + v_staged;
    -- Likewise; its order_id stays, so its whole order is refused (and a part ends after it).
    update private.import_order_rows r
    set email = null, phone = null, first_name = null, last_name = null, customer_id = null,
        problem = 'not imported: the person on this line was erased', problem_column = null
    from public.import_jobs j
    where r.job_id = any (v_jobs) and j.id = r.job_id
      and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits)
           or (btrim(r.customer_id) = any (v_external_ids)
               and exists (select from unnest(v_id_projects, v_external_ids) as x(project_id, external_id)
                           where x.project_id = j.project_id and x.external_id = btrim(r.customer_id))));
    get diagnostics v_staged = row_count;
    v_count := v_count + v_staged;
    -- A staged part's lines stay, without the person: an order's lines are written only through
    -- its order (deleted below), and a part whose lines are all gone is taken by its writer for
    -- a part a restart emptied (staging_lost).
    update private.import_order_lines r
    set email = null, phone = null, first_name = null, last_name = null, customer_id = null
    from public.import_jobs j, private.import_order_chunks c
    where c.job_id = any (v_jobs) and j.id = c.job_id and r.job_id = c.work_id
      and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits)
           or (btrim(r.customer_id) = any (v_external_ids)
               and exists (select from unnest(v_id_projects, v_external_ids) as x(project_id, external_id)
                           where x.project_id = j.project_id and x.external_id = btrim(r.customer_id))));
    get diagnostics v_staged = row_count;
    v_count := v_count + v_staged;
    delete from private.import_order_heads r using public.import_jobs j, private.import_order_chunks c
    where c.job_id = any (v_jobs) and j.id = c.job_id and r.job_id = c.work_id
      and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits)
           or r.contact_id = any (v_ids)
           or (btrim(r.customer_id) = any (v_external_ids)
               and exists (select from unnest(v_id_projects, v_external_ids) as x(project_id, external_id)
                           where x.project_id = j.project_id and x.external_id = btrim(r.customer_id))));
    get diagnostics v_staged = row_count;
    v_count := v_count + v_staged;
    delete from private.import_order_customers r using public.import_jobs j, private.import_order_chunks c
    where c.job_id = any (v_jobs) and j.id = c.job_id and r.job_id = c.work_id
      and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits)
           or r.contact_id = any (v_ids)
           or (btrim(r.customer_id) = any (v_external_ids)
               and exists (select from unnest(v_id_projects, v_external_ids) as x(project_id, external_id)
                           where x.project_id = j.project_id and x.external_id = btrim(r.customer_id))));
    get diagnostics v_staged = row_count;
  end if;
  v_rows := v_rows || jsonb_build_object('import_rows', v_count + v_staged);

  update public.contacts c
  set email = null, phone = null, first_name = null, last_name = null,
      attributes = '{}'::jsonb, tags = '{}', consent_source = null, erased_at = now()
  where c.id = any (v_ids) and c.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;

  insert into public.contact_erasures (workspace_id, contact_id, requested_by, rows_changed)
  select p_workspace_id, id, p_requested_by, v_rows from unnest(v_ids) as id;
  return v_count;
end
$$;

revoke all on function private.erase_contacts(uuid, uuid[], uuid) from public, anon, authenticated;

grant execute on function private.erase_contacts(uuid, uuid[], uuid) to service_role;

-- A staged row of an erased person stays, blank (its job, record and line only) and refused.
update private.personal_data_columns
set handling = 'cleared',
    note = 'staged import rows: an erased person''s row stays, blank and refused (a part''s last row tells a live staging from one a restart emptied)'
where table_schema = 'private' and table_name = 'import_contact_rows' and handling = 'row_deleted';

-- As above: the orders row keeps its order_id (not the person's), so its order is refused.
update private.personal_data_columns
set handling = 'cleared',
    note = 'staged import rows: an erased person''s row stays, blank but for its order_id, and refused (a part''s last row tells a live staging from one a restart emptied)'
where table_schema = 'private' and table_name = 'import_order_rows' and handling = 'row_deleted';

-- A staged part's lines were already blanked, not deleted, since 20270227090000 (review32c).
update private.personal_data_columns
set handling = 'cleared',
    note = 'staged part''s lines: an erased person''s line stays, blank (its order is not written: its head is deleted; a part''s lines tell a live staging from one a restart emptied)'
where table_schema = 'private' and table_name = 'import_order_lines' and handling = 'row_deleted';
