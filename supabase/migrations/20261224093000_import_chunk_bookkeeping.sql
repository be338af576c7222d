-- Import chunks' bookkeeping in one place (issue 14): the contacts, orders and products chunk
-- functions each claimed their job's next part, recorded row errors and moved the job's cursor
-- and counts with the same statements. Those are now two private helpers the three call, and the
-- three are redefined once each with no change of behaviour:
--
--   - private.claim_import_chunk(job, kind, max records): locks the job; a job that is not
--     importing, or of another kind, is answered as it is (no part); the part runs from the
--     job's cursor for at most max records (at least one) up to the file's last row, and when
--     its last staged row is gone (staging is unlogged: a database restart empties it) the job
--     fails as staging_lost;
--   - private.finish_import_chunk(job, to, errors, valid, created, updated): records the part's
--     row errors (capped, private.record_import_errors), moves the cursor to `to`, adds the
--     counts (valid rows neither created nor updated are unchanged) and ends the job at its
--     last row; every change of the job is broadcast by its trigger as before.

-- What claiming a part answers: the job (locked) and the part's last record, null when there is
-- no part to import (the job is not importing, is of another kind, or has just failed).
create type private.import_chunk as (job public.import_jobs, upto bigint);

create function private.claim_import_chunk(p_job_id uuid, p_kind text, p_max_records integer)
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
  v_claim := row(v_job, v_to);
  return v_claim;
end
$$;

revoke all on function private.claim_import_chunk(uuid, text, integer) from public, anon, authenticated;

grant execute on function private.claim_import_chunk(uuid, text, integer) to service_role;

create function private.finish_import_chunk(
  p_job public.import_jobs, p_to bigint, p_errors jsonb, p_valid integer, p_created integer, p_updated integer
)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs;
begin
  if p_errors is not null then
    perform private.record_import_errors(p_job, p_errors);
  end if;
  update public.import_jobs j
  set merge_record = p_to,
      rows_processed = p_to,
      created = j.created + p_created,
      updated = j.updated + p_updated,
      unchanged = j.unchanged + p_valid - p_created - p_updated,
      status = case when p_to >= j.rows_total then 'done' else j.status end,
      finished_at = case when p_to >= j.rows_total then now() end
  where j.id = p_job.id
  returning * into v_job;
  return v_job;
end
$$;

revoke all on function private.finish_import_chunk(public.import_jobs, bigint, jsonb, integer, integer, integer) from public, anon, authenticated;

grant execute on function private.finish_import_chunk(public.import_jobs, bigint, jsonb, integer, integer, integer) to service_role;

-- Contacts: as 20261201102000_contacts_import.sql, its bookkeeping through the helpers.
create or replace function private.import_contacts_chunk(p_job_id uuid, p_max_records integer)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
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

  v_job := private.finish_import_chunk(v_job, v_to, v_errors, v_valid, v_created, v_updated);
  return v_job;
end
$$;

revoke all on function private.import_contacts_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.import_contacts_chunk(uuid, integer) to service_role;

-- Orders: as 20261209121000_orders_import_at_scale.sql, its bookkeeping through the helpers.
create or replace function private.import_orders_chunk(p_job_id uuid, p_max_records integer)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
as $$
declare
  v_job public.import_jobs;
  v_claim private.import_chunk;
  v_items boolean;
  v_to bigint;
  v_last_order text;
  v_base_currency text;
  v_room integer;
  v_max integer;
  v_errors jsonb;
  v_valid integer;
  v_created integer := 0;
  v_updated integer := 0;
  v_written uuid[];
  v_changed uuid[];
  v_work uuid;
begin
  v_claim := private.claim_import_chunk(p_job_id, 'orders', p_max_records);
  v_job := v_claim.job;
  v_to := v_claim.upto;
  if v_to is null then
    return v_job;
  end if;
  v_items := private.import_has_items(v_job);
  select btrim(r.order_id) into v_last_order
  from private.import_order_rows r where r.job_id = p_job_id and r.record = v_to;
  if v_items then
    -- The chunk ends after the last line of its last order.
    select coalesce(min(r.record) - 1, v_job.rows_total) into v_to
    from private.import_order_rows r
    where r.job_id = p_job_id and r.record > v_to and btrim(r.order_id) is distinct from v_last_order;
  end if;
  select w.base_currency into v_base_currency from public.workspaces w where w.id = v_job.workspace_id;

  -- The chunk's key for its working rows: the time in milliseconds, then random (as a UUIDv7).
  v_work := encode(overlay(uuid_send(gen_random_uuid())
              placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
              from 1 for 6), 'hex')::uuid;

  -- Each line with its first problem; a line's order is its order_id and, with line items, the
  -- run of consecutive rows it belongs to (order_key); each row is its own order otherwise.
  insert into private.import_order_lines (
    job_id, record, line, order_id, order_key, first_in_order, placed_at, status, total, currency,
    exchange_rate, email, phone, first_name, last_name, customer_id, item_sku, item_name,
    item_quantity, item_unit_price, item_product_id, item_variant_id, has_item, problem,
    problem_column, order_bad, order_has_items, order_items_total
  )
  select v_work, l.record, l.line, l.order_id, l.order_key, l.first_in_order, l.placed_at, l.status_text,
         l.total_text, l.currency_text, l.rate_text, l.email, l.phone, l.first_name, l.last_name,
         l.customer_id, l.item_sku, l.item_name, l.quantity_text, l.price_text, l.item_product_id,
         l.item_variant_id, l.has_item, l.problem,
         case when l.loader_problem is not null then l.loader_column
              when split_part(l.problem, ' ', 1) in ('order_id', 'placed_at', 'status', 'total', 'currency', 'email',
                'first_name', 'last_name', 'customer_id', 'exchange_rate', 'item_name', 'item_quantity',
                'item_unit_price', 'item_product_id') then split_part(l.problem, ' ', 1) end as problem_column,
         bool_or(l.problem is not null) over orders as order_bad,
         bool_or(l.has_item) over orders as order_has_items,
         sum(round(l.quantity_text::numeric * l.price_text::numeric, 2))
           filter (where l.has_item and l.problem is null) over orders as order_items_total
  from (
    select o.*,
           coalesce(o.loader_problem,
             case
               when o.order_id is null then 'order_id is empty'
               when char_length(o.order_id) > 200 then 'order_id may have at most 200 characters'
               when o.placed_at_text is null and o.first_in_order then 'placed_at is empty'
               when o.placed_at_text is not null and o.placed_at is null then 'placed_at must be an ISO date or date-time'
               when o.status_text is null and o.first_in_order then 'status is empty'
               when o.status_text not in ('pending', 'paid', 'fulfilled', 'cancelled', 'refunded')
                 then 'status must be one of pending, paid, fulfilled, cancelled, refunded'
               when o.total_text is null and o.first_in_order and not o.has_item then 'total is empty'
               when o.total_text ~ '^-' then 'total must be zero or more'
               when o.total_text ~ '^[0-9]*\.[0-9]{3,}$' then 'total has more than two decimals'
               when o.total_text !~ '^(?:[0-9]{1,12}(?:\.[0-9]{0,2})?|\.[0-9]{1,2})$' then 'total is not a number below 1000000000000'
               when o.currency_text is null and o.first_in_order then 'currency is empty'
               when o.currency_text !~ '^[A-Z]{3}$' then 'currency must be a three-letter ISO code'
               when o.email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then 'email is not an email address'
               when char_length(o.first_name) > 200 then 'first_name may have at most 200 characters'
               when char_length(o.last_name) > 200 then 'last_name may have at most 200 characters'
               when char_length(o.customer_id) > 200 then 'customer_id may have at most 200 characters'
               when case when o.rate_text !~ '^(?:[0-9]{1,10}(?:\.[0-9]{0,8})?|\.[0-9]{1,8})$' then true
                         else o.rate_text::numeric = 0 end
                 then 'exchange_rate must be a number above 0 with at most 8 decimals'
               when o.rate_text is not null and o.total_text is not null
                    and round(o.total_text::numeric * o.rate_text::numeric, 2) >= 1e12
                 then 'exchange_rate makes the total 1000000000000 or more'
               when not o.first_in_order and (
                 o.placed_at_text <> o.order_placed_at or o.status_text <> o.order_status
                 or o.total_text is distinct from o.order_total and o.total_text is not null
                 or o.currency_text <> o.order_currency
                 or o.email is distinct from o.order_email and o.email is not null
                 or o.customer_id is distinct from o.order_customer_id and o.customer_id is not null)
                 then format('order %s: this line''s order fields differ from its first line (line %s)', left(o.order_id, 50), o.order_line)
               when not o.has_item then null
               when o.item_name is null and o.item_sku is null then 'item_name or item_sku is required for a line item'
               when char_length(coalesce(o.item_name, o.item_sku)) > 500 then 'item_name may have at most 500 characters'
               when char_length(o.item_sku) > 200 then 'item_name: its item_sku may have at most 200 characters'
               when char_length(o.item_product_id) > 200 or char_length(o.item_variant_id) > 200
                 then 'item_product_id and item_variant_id may have at most 200 characters'
               when case when o.quantity_text is null then true
                         when o.quantity_text !~ '^(?:[0-9]{1,10}(?:\.[0-9]{0,3})?|\.[0-9]{1,3})$' then true
                         else o.quantity_text::numeric = 0 end
                 then 'item_quantity must be a number above 0 with at most 3 decimals'
               when o.price_text is null then 'item_unit_price is empty'
               when o.price_text ~ '^-' then 'item_unit_price must be zero or more'
               when o.price_text ~ '^[0-9]*\.[0-9]{3,}$' then 'item_unit_price has more than two decimals'
               when o.price_text !~ '^(?:[0-9]{1,12}(?:\.[0-9]{0,2})?|\.[0-9]{1,2})$' then 'item_unit_price is not a number below 1000000000000'
               when round(o.quantity_text::numeric * o.price_text::numeric, 2) >= 1e12
                 then 'item_unit_price times item_quantity is 1000000000000 or more'
             end) as problem
    from (
      select s.*,
             first_value(s.placed_at_text) over w as order_placed_at,
             first_value(s.status_text) over w as order_status,
             first_value(s.total_text) over w as order_total,
             first_value(s.currency_text) over w as order_currency,
             first_value(s.email) over w as order_email,
             first_value(s.customer_id) over w as order_customer_id,
             first_value(s.line) over w as order_line,
             row_number() over w = 1 as first_in_order
      from (
        select t.*,
               -- An ISO date or date-time (no offset: UTC) that exists in the calendar.
               case when t.placed_at_text ~ '^(?:19|2[0-9])[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])(?:[T ](?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]{1,6})?)?(?:[Zz]|[+-](?:0[0-9]|1[0-5])(?::?[0-5][0-9])?)?)?$'
                     and substr(t.placed_at_text, 9, 2)::integer <= case substr(t.placed_at_text, 6, 2)::integer
                           when 2 then case when substr(t.placed_at_text, 1, 4)::integer % 4 = 0
                                             and (substr(t.placed_at_text, 1, 4)::integer % 100 <> 0
                                                  or substr(t.placed_at_text, 1, 4)::integer % 400 = 0) then 29 else 28 end
                           when 4 then 30 when 6 then 30 when 9 then 30 when 11 then 30 else 31 end
                    then t.placed_at_text::timestamptz end as placed_at,
               case when v_items then t.record - row_number() over (partition by t.order_id order by t.record)
                    else t.record end as order_key
        from (
          select r.record, r.line, r.problem as loader_problem, r.problem_column as loader_column,
                 nullif(btrim(r.order_id), '') as order_id,
                 nullif(btrim(r.placed_at), '') as placed_at_text,
                 nullif(lower(btrim(r.status)), '') as status_text,
                 nullif(btrim(r.total), '') as total_text,
                 nullif(upper(btrim(r.currency)), '') as currency_text,
                 nullif(lower(btrim(r.email)), '') as email,
                 nullif(btrim(r.phone), '') as phone,
                 nullif(btrim(r.first_name), '') as first_name,
                 nullif(btrim(r.last_name), '') as last_name,
                 nullif(btrim(r.customer_id), '') as customer_id,
                 nullif(btrim(r.exchange_rate), '') as rate_text,
                 nullif(btrim(r.item_sku), '') as item_sku,
                 nullif(btrim(r.item_name), '') as item_name,
                 nullif(btrim(r.item_quantity), '') as quantity_text,
                 nullif(btrim(r.item_unit_price), '') as price_text,
                 nullif(btrim(r.item_product_id), '') as item_product_id,
                 nullif(btrim(r.item_variant_id), '') as item_variant_id,
                 coalesce(nullif(btrim(r.item_sku), ''), nullif(btrim(r.item_name), ''), nullif(btrim(r.item_quantity), ''),
                          nullif(btrim(r.item_unit_price), ''), nullif(btrim(r.item_product_id), ''),
                          nullif(btrim(r.item_variant_id), '')) is not null as has_item
          from private.import_order_rows r
          where r.job_id = p_job_id and r.record > v_job.merge_record and r.record <= v_to
        ) as t
      ) as s
      window w as (partition by s.order_id, s.order_key order by s.record)
    ) as o
  ) as l
  window orders as (partition by l.order_id, l.order_key);

  -- The customers of the chunk's valid orders, one per customer_id (else email), each found
  -- by customer_id (source manual), then by email, with an index probe per customer whatever
  -- the planner knows of the tables' sizes; else new, with an id from its email (so customers
  -- sharing an email share the contact) or random when only a customer_id names it, behind the
  -- chunk's time in milliseconds (as in a UUIDv7): a chunk's new contacts land together at the
  -- end of the primary key's index instead of on random pages all over it.
  insert into private.import_order_customers (
    job_id, customer_key, record, email, phone, first_name, last_name, customer_id, contact_id, is_new,
    linked
  )
  select v_work, c.customer_key, c.record, c.email, c.phone, c.first_name, c.last_name, c.customer_id,
         coalesce(f.found, encode(overlay(
           coalesce(decode(md5(p_job_id::text || c.email), 'hex'), uuid_send(gen_random_uuid()))
           placing substring(int8send((extract(epoch from now()) * 1000)::bigint) from 3) from 1 for 6
         ), 'hex')::uuid),
         f.found is null, f.linked is not null
  from (
    select distinct on (k.customer_key) k.*
    from (
      select coalesce('id:' || l.customer_id, 'email:' || l.email) as customer_key, l.record,
             l.email, l.phone, l.first_name, l.last_name, l.customer_id
      from private.import_order_lines l
      where l.job_id = v_work and l.first_in_order and not l.order_bad and l.order_id is not null
    ) as k
    where k.customer_key is not null
    order by k.customer_key, k.record
  ) as c
  left join lateral (
    select x.contact_id as linked from public.contact_external_ids x
    where x.workspace_id = v_job.workspace_id and x.source = 'manual' and x.external_id = c.customer_id
  ) as i on true
  cross join lateral (
    select coalesce(
      i.linked,
      (select k.id from public.contacts k where k.workspace_id = v_job.workspace_id and k.email = c.email)
    ) as found, i.linked
  ) as f;

  -- The counter is locked (and the limit read) only when the chunk has new customers.
  v_room := case when exists (select 1 from private.import_order_customers n
                              where n.job_id = v_work and n.is_new)
                 then private.contacts_room(v_job.workspace_id) else 0 end;
  update private.import_order_customers c set over_limit = true
  where c.job_id = v_work and c.is_new and c.contact_id in (
    select n.contact_id from private.import_order_customers n where n.job_id = v_work and n.is_new
    group by n.contact_id order by min(n.record) offset v_room
  );

  insert into public.contacts (id, workspace_id, email, phone, first_name, last_name)
  select distinct on (c.contact_id) c.contact_id, v_job.workspace_id, c.email, c.phone, c.first_name, c.last_name
  from private.import_order_customers c
  where c.job_id = v_work and c.is_new and not c.over_limit
  order by c.contact_id, c.record
  on conflict (workspace_id, email) do nothing;
  get diagnostics v_created = row_count;
  if v_created < (select count(distinct c.contact_id) from private.import_order_customers c
                  where c.job_id = v_work and c.is_new and not c.over_limit) then
    -- Someone else created one of these emails meanwhile: use theirs.
    update private.import_order_customers c
    set contact_id = coalesce((
          select k.id from public.contacts k where k.workspace_id = v_job.workspace_id and k.email = c.email
        ), c.contact_id),
        is_new = not exists (
          select 1 from public.contacts k
          where k.workspace_id = v_job.workspace_id and k.email = c.email and k.id <> c.contact_id
        )
    where c.job_id = v_work and c.is_new and c.email is not null;
  end if;

  insert into public.contact_external_ids (workspace_id, contact_id, source, external_id)
  select v_job.workspace_id, c.contact_id, 'manual', c.customer_id
  from private.import_order_customers c
  where c.job_id = v_work and c.customer_id is not null and not c.over_limit
    and not c.linked
  on conflict do nothing;

  update public.contacts k
  set phone = coalesce(k.phone, c.phone), first_name = coalesce(k.first_name, c.first_name),
      last_name = coalesce(k.last_name, c.last_name)
  from private.import_order_customers c
  where c.job_id = v_work and not c.is_new and c.contact_id = k.id
    and (k.phone is null and c.phone is not null or k.first_name is null and c.first_name is not null
         or k.last_name is null and c.last_name is not null);

  -- One row per valid order, from its first line (an order with any bad line has none), with its
  -- customer's contact (or why it is refused) and the id of the order already stored, if any.
  select p.contact_limit into v_max
  from public.workspaces w join public.plans p on p.tier = w.plan_tier where w.id = v_job.workspace_id;
  insert into private.import_order_heads (
    job_id, order_id, order_key, record, line, placed_at, status, currency, exchange_rate, total,
    email, phone, first_name, last_name, customer_id, customer_key, has_items, contact_id,
    rejected, stored_id
  )
  select v_work, f.order_id, f.order_key, f.record, f.line, f.placed_at, f.status, f.currency,
         f.exchange_rate::numeric, coalesce(f.total::numeric, f.order_items_total), f.email, f.phone,
         f.first_name, f.last_name, f.customer_id, c.customer_key, f.order_has_items,
         case when not c.over_limit then c.contact_id end,
         case when c.over_limit then format('Your plan allows %s contacts; this order''s customer would be over the limit', v_max) end,
         (select o.id from public.orders o
          where o.workspace_id = v_job.workspace_id and o.source = 'csv' and o.external_id = f.order_id)
  from private.import_order_lines f
  left join private.import_order_customers c
    on c.job_id = v_work and c.customer_key = coalesce('id:' || f.customer_id, 'email:' || f.email)
  where f.job_id = v_work and f.first_in_order and not f.order_bad and f.order_id is not null;

  select count(*) into v_valid
  from private.import_order_heads h where h.job_id = v_work and h.rejected is null;

  -- Every line of a bad or rejected order is reported (when the chunk has any).
  if v_valid < (select count(*) from private.import_order_lines l
                where l.job_id = v_work and l.first_in_order) then
    select jsonb_agg(jsonb_build_object('line', e.line, 'column_name', e.problem_column, 'reason', e.reason)
                     order by e.line)
    into v_errors
    from (
      select l.line, l.problem_column,
             coalesce(l.problem, l.rejected,
                      format('not imported: order %s has an error on line %s', left(l.order_id, 50), l.bad_line)) as reason
      from (
        select b.line, b.order_id, b.problem, b.problem_column,
               min(b.line) filter (where b.problem is not null) over (partition by b.order_id, b.order_key) as bad_line,
               (select h.rejected from private.import_order_heads h
                where h.job_id = v_work and h.order_id = b.order_id and h.order_key = b.order_key) as rejected
        from private.import_order_lines b
        where b.job_id = v_work
      ) as l
      where l.problem is not null or l.rejected is not null or l.bad_line is not null
    ) as e;
  end if;

  -- Orders already stored (found by an index probe each) whose values differ are updated, the
  -- others left alone, and new ones inserted without a conflict check per row (an order
  -- inserted meanwhile by a shop's webhook fails the chunk, which is then run again).
  with written as (
    update public.orders o
    set contact_id = coalesce(h.contact_id, o.contact_id), status = h.status,
        placed_at = h.placed_at, total = h.total, currency = h.currency,
        exchange_rate = h.exchange_rate, base_total = n.base_total
    from private.import_order_heads h
    cross join lateral (
      select case when h.currency = v_base_currency then h.total
                  else round(h.total * h.exchange_rate, 2) end as base_total
    ) as n
    where h.job_id = v_work and h.rejected is null and o.id = h.stored_id
      and (o.contact_id, o.status, o.placed_at, o.total, o.currency, o.exchange_rate, o.base_total)
          is distinct from (coalesce(h.contact_id, o.contact_id), h.status, h.placed_at, h.total,
                            h.currency, h.exchange_rate, n.base_total)
    returning o.id
  )
  select count(*), coalesce(array_agg(w.id), '{}') into v_updated, v_written from written w;

  insert into public.orders (
    id, workspace_id, project_id, contact_id, source, external_id, status, placed_at, total,
    currency, exchange_rate, base_total
  )
  select encode(overlay(uuid_send(gen_random_uuid())
                placing substring(int8send((extract(epoch from clock_timestamp()) * 1000)::bigint) from 3)
                from 1 for 6), 'hex')::uuid,
         v_job.workspace_id, v_job.project_id, h.contact_id, 'csv', h.order_id, h.status,
         h.placed_at, h.total, h.currency, h.exchange_rate,
         case when h.currency = v_base_currency then h.total else round(h.total * h.exchange_rate, 2) end
  from private.import_order_heads h
  where h.job_id = v_work and h.rejected is null and h.stored_id is null
  order by h.contact_id, h.record;
  get diagnostics v_created = row_count;

  if v_items then
    -- Lines are replaced only for orders whose stored lines differ from the file's.
    with file_lines as (
      select o.id as order_id,
             concat_ws(e'\x1f', l.item_sku, coalesce(l.item_name, l.item_sku), l.item_quantity::numeric(14, 3),
                       l.item_unit_price::numeric(14, 2), l.item_product_id, l.item_variant_id) as fingerprint
      from private.import_order_heads h
      join public.orders o on o.workspace_id = v_job.workspace_id and o.source = 'csv' and o.external_id = h.order_id
      join private.import_order_lines l
        on l.job_id = v_work and l.order_id = h.order_id and l.order_key = h.order_key and l.has_item
      where h.job_id = v_work and h.rejected is null and h.has_items
    )
    select coalesce(array_agg(f.order_id), '{}') into v_changed
    from (
      select fl.order_id, array_agg(fl.fingerprint order by fl.fingerprint) as lines
      from file_lines fl group by fl.order_id
    ) as f
    where f.lines is distinct from (
      select array_agg(k.fingerprint order by k.fingerprint)
      from public.order_items s
      cross join lateral (
        select concat_ws(e'\x1f', s.sku, s.name, s.quantity, s.unit_price, s.external_product_id,
                         s.external_variant_id) as fingerprint
      ) as k
      where s.order_id = f.order_id
    );

    delete from public.order_items s where s.order_id = any (v_changed);

    insert into public.order_items (order_id, workspace_id, sku, name, quantity, unit_price, total,
                                    external_product_id, external_variant_id, product_id, variant_id)
    select o.id, v_job.workspace_id, l.item_sku, coalesce(l.item_name, l.item_sku),
           l.item_quantity::numeric(14, 3), l.item_unit_price::numeric(14, 2),
           round(l.item_quantity::numeric(14, 3) * l.item_unit_price::numeric(14, 2), 2),
           l.item_product_id, l.item_variant_id, p.id, v.id
    from private.import_order_heads h
    join public.orders o on o.workspace_id = v_job.workspace_id and o.source = 'csv' and o.external_id = h.order_id
    join private.import_order_lines l
      on l.job_id = v_work and l.order_id = h.order_id and l.order_key = h.order_key and l.has_item
    left join public.products p
      on p.workspace_id = v_job.workspace_id and p.project_id = v_job.project_id and p.source = 'csv'
     and p.external_id = l.item_product_id
    left join public.product_variants v
      on v.product_id = p.id and v.workspace_id = p.workspace_id and v.external_id = l.item_variant_id
    where h.job_id = v_work and h.rejected is null and o.id = any (v_changed)
    order by l.record;

    -- Orders whose lines alone changed count as updated.
    v_updated := v_updated + (
      select count(*) from private.import_order_heads h
      where h.job_id = v_work and h.stored_id = any (v_changed) and h.stored_id <> all (v_written)
    );
  end if;

  delete from private.import_order_lines w where w.job_id = v_work;
  delete from private.import_order_heads w where w.job_id = v_work;
  delete from private.import_order_customers w where w.job_id = v_work;

  v_job := private.finish_import_chunk(v_job, v_to, v_errors, v_valid, v_created, v_updated);
  if v_job.status = 'done' and v_items then
    perform private.link_order_items(v_job.project_id);
  end if;
  return v_job;
end
$$;

revoke all on function private.import_orders_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.import_orders_chunk(uuid, integer) to service_role;

-- Products and variants: as 20261209124000_product_variants_import.sql, its bookkeeping through
-- the helpers.
create or replace function private.import_products_chunk(p_job_id uuid, p_max_records integer)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.import_jobs;
  v_claim private.import_chunk;
  v_to bigint;
  v_errors jsonb;
  v_valid integer;
  v_created integer;
  v_updated integer;
  v_variants_created integer;
  v_variants_updated integer;
begin
  v_claim := private.claim_import_chunk(p_job_id, 'products', p_max_records);
  v_job := v_claim.job;
  v_to := v_claim.upto;
  if v_to is null then
    return v_job;
  end if;

  -- Each row's first problem; product fields are checked on rows that carry a title (and on
  -- product rows, which must), variant fields on variant rows.
  update private.import_product_rows r
  set problem = k.problem,
      problem_column = case when split_part(k.problem, ' ', 1) in (
                         'product_id', 'title', 'sku', 'price', 'currency', 'inventory', 'url', 'category',
                         'status', 'variant_id', 'variant_title', 'variant_sku', 'variant_price',
                         'variant_inventory', 'variant_image_url', 'variant_status')
                       then split_part(k.problem, ' ', 1) end
  from (
    select c.record,
           case
             when c.product_id is null then 'product_id is empty'
             when char_length(c.product_id) > 200 then 'product_id may have at most 200 characters'
             when c.title is null and c.variant_id is null then 'title is empty'
             when char_length(c.title) > 500 then 'title may have at most 500 characters'
             when c.title is not null and char_length(c.sku) > 200 then 'sku may have at most 200 characters'
             when c.title is not null and c.price ~ '^-' then 'price must be zero or more'
             when c.title is not null and c.price ~ '^[0-9]*\.[0-9]{3,}$' then 'price has more than two decimals'
             when c.title is not null and c.price !~ '^(?:[0-9]{1,12}(?:\.[0-9]{0,2})?|\.[0-9]{1,2})$' then 'price is not a number below 1000000000000'
             when c.title is not null and c.price is not null and c.currency is null then 'currency is empty: a price needs its currency'
             when c.currency !~ '^[A-Z]{3}$' then 'currency must be a three-letter ISO code'
             when c.title is not null and c.inventory !~ '^-?[0-9]{1,9}$' then 'inventory must be a whole number'
             when c.title is not null and (char_length(c.url) > 2048 or char_length(c.image_url) > 2048) then 'url and image_url may have at most 2048 characters'
             when c.title is not null and char_length(c.category) > 500 then 'category may have at most 500 characters'
             when c.title is not null and c.status not in ('active', 'draft', 'archived') then 'status must be active, draft or archived'
             when c.variant_id is null then null
             when char_length(c.variant_id) > 200 then 'variant_id may have at most 200 characters'
             when char_length(c.variant_title) > 500 then 'variant_title may have at most 500 characters'
             when char_length(c.variant_sku) > 200 then 'variant_sku may have at most 200 characters'
             when c.variant_price ~ '^-' then 'variant_price must be zero or more'
             when c.variant_price ~ '^[0-9]*\.[0-9]{3,}$' then 'variant_price has more than two decimals'
             when c.variant_price !~ '^(?:[0-9]{1,12}(?:\.[0-9]{0,2})?|\.[0-9]{1,2})$' then 'variant_price is not a number below 1000000000000'
             when c.variant_inventory !~ '^-?[0-9]{1,9}$' then 'variant_inventory must be a whole number'
             when char_length(c.variant_image_url) > 2048 then 'variant_image_url may have at most 2048 characters'
             when c.variant_status not in ('active', 'draft', 'archived') then 'variant_status must be active, draft or archived'
           end as problem
    from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
    where c.problem is null
  ) as k
  where r.job_id = p_job_id and r.record = k.record and k.problem is not null;

  with written as (
    insert into public.products as p (
      workspace_id, project_id, source, external_id, title, sku, price, currency, inventory, url,
      image_url, category, status
    )
    select distinct on (c.product_id)
           v_job.workspace_id, v_job.project_id, 'csv', c.product_id, c.title, c.sku,
           c.price::numeric(14, 2), c.currency, c.inventory::integer, c.url, c.image_url,
           c.category, coalesce(c.status, 'active')
    from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
    where c.problem is null and c.title is not null
    order by c.product_id, c.record
    on conflict (workspace_id, project_id, source, external_id) do update
    set title = excluded.title, sku = excluded.sku, price = excluded.price,
        currency = excluded.currency, inventory = excluded.inventory, url = excluded.url,
        image_url = excluded.image_url, category = excluded.category, status = excluded.status
    where (p.title, p.sku, p.price, p.currency, p.inventory, p.url, p.image_url, p.category, p.status)
          is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                            excluded.inventory, excluded.url, excluded.image_url, excluded.category,
                            excluded.status)
    returning p.external_id, p.xmax = 0 as inserted
  )
  -- A product's write counts for the chunk's product row (a variant row counts its variant).
  select count(*) filter (where w.inserted), count(*) filter (where not w.inserted)
  into v_created, v_updated
  from written w
  where w.external_id in (
    select c.product_id from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
    where c.problem is null and c.variant_id is null
  );

  -- A variant whose product has no row with a title (in this file or stored before), or whose
  -- price has no currency on its row or its product, is reported.
  update private.import_product_rows r
  set problem = case when p.id is null then 'variant_id: its product has no row with a title'
                     else 'variant_price: a price needs a currency, on the row or its product' end,
      problem_column = case when p.id is null then 'variant_id' else 'variant_price' end
  from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
  left join public.products p
    on p.workspace_id = v_job.workspace_id and p.project_id = v_job.project_id and p.source = 'csv'
   and p.external_id = c.product_id
  where r.job_id = p_job_id and r.record = c.record and c.problem is null and c.variant_id is not null
    and (p.id is null or c.variant_price is not null and coalesce(c.currency, p.currency) is null);

  with variants as (
    insert into public.product_variants as v (
      workspace_id, product_id, external_id, title, sku, price, currency, inventory, image_url, status
    )
    select v_job.workspace_id, p.id, c.variant_id, c.variant_title, c.variant_sku,
           c.variant_price::numeric(14, 2),
           case when c.variant_price is not null then coalesce(c.currency, p.currency) end,
           c.variant_inventory::integer, c.variant_image_url, coalesce(c.variant_status, 'active')
    from private.import_product_lines(p_job_id, v_job.merge_record, v_to) as c
    join public.products p
      on p.workspace_id = v_job.workspace_id and p.project_id = v_job.project_id and p.source = 'csv'
     and p.external_id = c.product_id
    where c.problem is null and c.variant_id is not null
    order by c.record
    on conflict (product_id, workspace_id, external_id) do update
    set title = excluded.title, sku = excluded.sku, price = excluded.price,
        currency = excluded.currency, inventory = excluded.inventory,
        image_url = excluded.image_url, status = excluded.status, updated_at = now()
    where (v.title, v.sku, v.price, v.currency, v.inventory, v.image_url, v.status)
          is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                            excluded.inventory, excluded.image_url, excluded.status)
    returning v.xmax = 0 as inserted
  )
  select count(*) filter (where x.inserted), count(*) filter (where not x.inserted)
  into v_variants_created, v_variants_updated
  from variants x;

  select jsonb_agg(jsonb_build_object('line', r.line, 'column_name', r.problem_column, 'reason', r.problem)
                   order by r.line) filter (where r.problem is not null),
         count(*) filter (where r.problem is null)
  into v_errors, v_valid
  from private.import_product_rows r
  where r.job_id = p_job_id and r.record > v_job.merge_record and r.record <= v_to;

  v_job := private.finish_import_chunk(v_job, v_to, v_errors, v_valid, v_created + v_variants_created,
                                       v_updated + v_variants_updated);
  if v_job.status = 'done' then
    perform private.link_order_items(v_job.project_id);
  end if;
  return v_job;
end
$$;

revoke all on function private.import_products_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.import_products_chunk(uuid, integer) to service_role;
