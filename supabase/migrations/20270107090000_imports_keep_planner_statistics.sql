-- Imports keep the planner's statistics of the tables they grow (issue 14).
--
-- Postgres plans a foreign-key check once per connection and keeps the plan until the table's
-- statistics change. An import into a new project planned those checks while `contacts` held a
-- few hundred rows (or none), chose an index on `workspace_id` alone with the contact's id as a
-- filter, and kept that plan while the import added tens of thousands of contacts: every
-- contact event, external id and facts row then read all of the workspace's contacts. The
-- first 250,000 orders of a 1M-order file took 13 minutes that way (the rest, on a connection
-- planned later, took one). Autovacuum would analyze the grown table within its naptime where
-- it runs, but an import must not depend on it: each chunk now analyzes the tables it writes
-- that changed by more than their size since they were last analyzed (at least 100 rows), so
-- statistics follow the import at every doubling and the cached plans are made again. An orders
-- chunk also looks at products and variants, which its lines' foreign keys check.

create function private.analyze_grown_tables(p_tables regclass[])
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_table regclass;
begin
  foreach v_table in array p_tables loop
    if (select pg_catalog.pg_stat_get_mod_since_analyze(c.oid) > greatest(100, c.reltuples)
        from pg_catalog.pg_class c where c.oid = v_table) then
      execute format('analyze %s', v_table);
    end if;
  end loop;
end
$$;

revoke all on function private.analyze_grown_tables(regclass[]) from public, anon, authenticated;

grant execute on function private.analyze_grown_tables(regclass[]) to service_role;

-- As 20261224093000_import_chunk_bookkeeping.sql, and a claimed part first brings the
-- statistics of the tables its kind writes up to date.
create or replace function private.claim_import_chunk(p_job_id uuid, p_kind text, p_max_records integer)
returns private.import_chunk
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_claim private.import_chunk;
  v_job public.import_jobs;
  v_to bigint;
  v_staged boolean := true;
begin
  select * into v_job from public.import_jobs j where j.id = p_job_id for update;
  if v_job.status is distinct from 'importing' or v_job.kind is distinct from p_kind then
    v_claim := row(v_job, null);
    return v_claim;
  end if;
  v_to := least(v_job.merge_record + greatest(p_max_records, 1), v_job.rows_total);
  if v_to > v_job.merge_record then
    execute format(
      'select exists (select 1 from private.%I r where r.job_id = $1 and r.record = $2)',
      case p_kind when 'contacts' then 'import_contact_rows' when 'orders' then 'import_order_rows'
                  else 'import_product_rows' end
    ) into v_staged using p_job_id, v_to;
  end if;
  if not v_staged then
    v_claim := row(private.fail_import_job(p_job_id, 'staging_lost',
      'The database restarted while this file was being imported; what was imported stays, import the file again for the rest'), null);
    return v_claim;
  end if;
  perform private.analyze_grown_tables(case p_kind
    when 'contacts' then array['public.contacts', 'public.contact_events', 'public.contact_external_ids',
                               'public.consents']::regclass[]
    when 'orders' then array['public.contacts', 'public.contact_events', 'public.contact_external_ids',
                             'public.orders', 'public.order_items', 'public.customer_facts',
                             'public.products', 'public.product_variants']::regclass[]
    else array['public.products', 'public.product_variants']::regclass[] end);
  v_claim := row(v_job, v_to);
  return v_claim;
end
$$;
