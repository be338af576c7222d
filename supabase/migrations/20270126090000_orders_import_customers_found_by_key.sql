-- An orders import finds an existing customer by email with a probe of the contacts' email key,
-- whatever the planner knows (issue 14, imports robustness).
--
-- private.stage_orders_chunk looked each of a part's customers up by email with
-- `k.workspace_id = … and k.email = c.email`. On contacts without statistics (never analyzed:
-- autovacuum off, a fresh Supabase table, or statistics older than the rows) both indexes that
-- lead with the workspace cost the same, one row each, and the planner took
-- contacts(workspace_id, id): it read every contact of the workspace for each customer (a part
-- of 750 customers in a workspace of 750 contacts read 563,625 contact rows). The email is now
-- compared as a range ordered by email, one row at most: only the (workspace_id, email) key
-- gives that order without a sort, so it is the cheapest plan whatever the row estimates, and
-- each customer is one probe. A customer found by its customer_id is not looked up by email at
-- all (it was looked up twice, the lookup's subquery being copied into both uses of its
-- result).
--
-- Copied from 20270123090000_orders_import_lines_found_by_key.sql (the newest definition, with
-- its settings); only the customers' lookup changes, in the insert into import_order_customers
-- and in the update that takes a contact created meanwhile by someone else.

create or replace function private.stage_orders_chunk(p_job_id uuid, p_max_records integer)
returns setof public.import_jobs
language plpgsql
security definer
set search_path = ''
set timezone = 'UTC'
set jit = off
as $$
declare
  v_job public.import_jobs;
  v_items boolean;
  v_from bigint;
  v_to bigint;
  v_last_order text;
  v_room integer;
  v_max integer;
  v_created integer := 0;
  v_errors jsonb;
  v_valid integer;
  v_work uuid;
begin
  select * into v_job from public.import_jobs j where j.id = p_job_id for update;
  if v_job.status is distinct from 'importing' or v_job.kind is distinct from 'orders'
     or (select count(*) from private.import_order_chunks c where c.job_id = p_job_id and not c.written) >= 2 then
    return;
  end if;
  v_from := coalesce((select max(c.upto) from private.import_order_chunks c where c.job_id = p_job_id),
                     v_job.merge_record);
  if v_from >= v_job.rows_total then
    return;
  end if;
  v_to := least(v_from + greatest(p_max_records, 1), v_job.rows_total);
  if not exists (select 1 from private.import_order_rows r where r.job_id = p_job_id and r.record = v_to) then
    return next private.fail_import_job(p_job_id, 'staging_lost',
      'The database restarted while this file was being imported; what was imported stays, import the file again for the rest');
    return;
  end if;
  perform private.analyze_grown_tables(array['public.contacts', 'public.contact_events',
    'public.contact_external_ids', 'public.orders', 'public.order_items', 'public.customer_facts',
    'public.products', 'public.product_variants']::regclass[]);
  v_items := private.import_has_items(v_job);
  select btrim(r.order_id) into v_last_order
  from private.import_order_rows r where r.job_id = p_job_id and r.record = v_to;
  if v_items then
    -- The part ends after the last line of its last order.
    select coalesce(min(r.record) - 1, v_job.rows_total) into v_to
    from private.import_order_rows r
    where r.job_id = p_job_id and r.record > v_to and btrim(r.order_id) is distinct from v_last_order;
  end if;

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
          where r.job_id = p_job_id and r.record > v_from and r.record <= v_to
        ) as t
      ) as s
      window w as (partition by s.order_id, s.order_key order by s.record)
    ) as o
  ) as l
  window orders as (partition by l.order_id, l.order_key);

  -- The customers of the chunk's valid orders, one per customer_id (else email), each found
  -- by customer_id (source manual), else by email, with an index probe on its key per customer
  -- whatever the planner knows of the tables' sizes; else new, with an id from its email (so customers
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
    offset 0
  ) as i on true
  -- By email only when no customer_id found it; the email as a range ordered by email (one row
  -- at most), which only the (workspace_id, email) key serves without a sort.
  left join lateral (
    select k.id as by_email from public.contacts k
    where i.linked is null and k.workspace_id = v_job.workspace_id
      and k.email >= c.email and k.email <= c.email
    order by k.email
    limit 1
  ) as e on true
  cross join lateral (
    select coalesce(i.linked, e.by_email) as found, i.linked
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
    set contact_id = coalesce(e.by_email, c.contact_id),
        is_new = e.by_email is null or e.by_email = c.contact_id
    from private.import_order_customers n
    left join lateral (
      select k.id as by_email from public.contacts k
      where k.workspace_id = v_job.workspace_id and k.email >= n.email and k.email <= n.email
      order by k.email
      limit 1
    ) as e on true
    where c.job_id = v_work and c.is_new and c.email is not null
      and n.job_id = c.job_id and n.customer_key = c.customer_key;
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
  left join lateral (
    select c.customer_key, c.over_limit, c.contact_id from private.import_order_customers c
    where c.job_id = v_work and c.customer_key = coalesce('id:' || f.customer_id, 'email:' || f.email)
    offset 0
  ) as c on true
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

  -- Staged parts follow the file's order (one at a time, the job locked), so the first 1000 row
  -- errors kept are the file's first, whichever part is written first.
  if v_errors is not null then
    perform private.record_import_errors(v_job, v_errors);
  end if;

  insert into private.import_order_chunks (job_id, first_record, upto, work_id, lines)
  values (p_job_id, v_from, v_to, v_work,
          (select count(*) from private.import_order_lines l where l.job_id = v_work));
  return next v_job;
end
$$;

revoke all on function private.stage_orders_chunk(uuid, integer) from public, anon, authenticated;

grant execute on function private.stage_orders_chunk(uuid, integer) to service_role;
