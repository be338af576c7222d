-- A value a shop allows but a column does not takes no longer a whole page or event with it.
--
-- Shopify allows a customer's first name of 255 characters; public.contacts keeps 200. A
-- webhook with such a name was answered `accepted`, its apply failed on the contacts check
-- every time the replay tried it, and it ended dead-lettered: the customer's order never
-- reached the shop owner's analytics. A backfill page (1,000 of Shopify's objects, 100 of
-- WooCommerce's, 50 of Shoptet's) failed whole the same way, and its backfill stalled on it.
-- The functions that take the shops' documents (every webhook, backfill and sync goes through
-- them) now fit each value to its column before writing, by one rule:
--   - free text is cut to the column's length: a contact's first and last name (200), a
--     product's or variant's title (500) and category (500), as the products already were;
--   - a value that means nothing cut is dropped, and the rest of its row is written: a customer's
--     shop id over 200 characters (the customer is then found by email), an email that is not
--     one or is over 254 characters (the CSV import's limit; a longer one may not even fit the
--     (workspace, email) index), a phone that is not E.164, a product's or variant's SKU over
--     200 characters (a cut SKU would name another product and link its order lines), a URL or
--     image URL over 2048 characters (a cut one is a broken link), a checkout's recovery URL
--     over 2000;
--   - a row whose own id does not fit (an order's or a checkout's id over 200 characters) cannot
--     be stored or found again: that row is left out, the page's other rows are written.
-- Products' and variants' shop ids stay cut to 200, as they have been since
-- 20261209125000_shop_product_webhooks.sql (a stable key: the same id always cuts the same way).
-- Order lines keep their name and SKU whole (their columns have no limit).
--
-- Each function is copied from its newest definition with only those expressions changed:
-- upsert_customers from 20270128091000_shop_customers_probed_by_key.sql, upsert_orders from
-- 20261201105000_shop_orders_page_upsert.sql (with the `jit = off` of
-- 20261230092000_bulk_order_writes_without_jit.sql), apply_shop_customer from
-- 20261209123000_shop_customer_webhooks.sql, upsert_checkout from
-- 20261212095000_checkout_and_rfm_events.sql, write_products from
-- 20270128090000_products_import_probes_by_key.sql (the CSV import refuses such rows before
-- they reach it, so only the shops' products change).

-- functions -----------------------------------------------------------------------------------

-- Customers as the shops describe them, a page at a time (see 20261201105000): their values
-- fitted to the contacts' columns first.
create or replace function private.upsert_customers(p_workspace_id uuid, p_source text, p_customers jsonb)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid := p_workspace_id;
  v_id_source text := case when p_source in ('csv', 'manual') then 'manual' else p_source end;
begin
  -- New customers (neither their shop id nor their email known yet), one contact per email, with
  -- their shop ids, in one statement.
  with customers as (
    select distinct on (coalesce('id:' || c.external_id, 'email:' || c.email))
           c.external_id, c.email, c.phone, c.first_name, c.last_name, c.accepts_marketing,
           d.n
    from jsonb_array_elements(p_customers) with ordinality as d(doc, n)
    cross join lateral (
      select case when char_length(d.doc ->> 'external_id') <= 200 then nullif(d.doc ->> 'external_id', '') end as external_id,
             case when char_length(e.email) <= 254 and e.email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then e.email end as email,
             case when d.doc ->> 'phone' ~ '^\+[1-9][0-9]{6,14}$' then d.doc ->> 'phone' end as phone,
             left(d.doc ->> 'first_name', 200) as first_name,
             left(d.doc ->> 'last_name', 200) as last_name,
             (d.doc ->> 'accepts_marketing')::boolean as accepts_marketing
      from (select lower(btrim(d.doc ->> 'email')) as email) as e
      where jsonb_typeof(d.doc) = 'object'
    ) as c
    where c.external_id is not null or c.email is not null
    order by coalesce('id:' || c.external_id, 'email:' || c.email), d.n
  ),
  unknown as (
    select c.* from customers c
    where not exists (
            select 1 from public.contact_external_ids x
            where x.workspace_id = v_workspace_id and x.source = v_id_source and x.external_id = c.external_id
            offset 0)
      and not exists (
            select 1 from public.contacts k where k.workspace_id = v_workspace_id and k.email = c.email
            offset 0)
  ),
  fresh as (
    select u.*, case when u.email is null then g.id
                     else first_value(g.id) over (partition by u.email order by u.n) end as contact_id
    from unknown u cross join lateral (select gen_random_uuid() as id) as g
  ),
  contacts as (
    insert into public.contacts (id, workspace_id, email, phone, first_name, last_name,
                                 consent_state, consent_source, consent_at)
    select distinct on (f.contact_id) f.contact_id, v_workspace_id, f.email, f.phone, f.first_name,
           f.last_name,
           case f.accepts_marketing when true then 'granted' when false then 'denied' else 'unknown' end,
           case when f.accepts_marketing is not null then p_source end,
           case when f.accepts_marketing is not null then now() end
    from fresh f
    order by f.contact_id, f.n
    returning id
  )
  insert into public.contact_external_ids (workspace_id, contact_id, source, external_id)
  select v_workspace_id, f.contact_id, v_id_source, f.external_id
  from fresh f
  where f.external_id is not null and f.contact_id in (select c.id from contacts c)
  on conflict do nothing;

  -- Known customers: their shop id is recorded, and they gain a phone or name they lacked.
  with customers as (
    select distinct on (coalesce('id:' || c.external_id, 'email:' || c.email)) c.*, coalesce(
             (select x.contact_id from public.contact_external_ids x
              where x.workspace_id = v_workspace_id and x.source = v_id_source and x.external_id = c.external_id),
             (select k.id from public.contacts k where k.workspace_id = v_workspace_id and k.email = c.email)
           ) as contact_id
    from jsonb_array_elements(p_customers) with ordinality as d(doc, n)
    cross join lateral (
      select case when char_length(d.doc ->> 'external_id') <= 200 then nullif(d.doc ->> 'external_id', '') end as external_id,
             case when char_length(e.email) <= 254 and e.email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then e.email end as email,
             case when d.doc ->> 'phone' ~ '^\+[1-9][0-9]{6,14}$' then d.doc ->> 'phone' end as phone,
             left(d.doc ->> 'first_name', 200) as first_name,
             left(d.doc ->> 'last_name', 200) as last_name, d.n
      from (select lower(btrim(d.doc ->> 'email')) as email) as e
      where jsonb_typeof(d.doc) = 'object'
    ) as c
    where c.external_id is not null or c.email is not null
    order by coalesce('id:' || c.external_id, 'email:' || c.email), c.n
  ),
  ids as (
    insert into public.contact_external_ids (workspace_id, contact_id, source, external_id)
    select v_workspace_id, c.contact_id, v_id_source, c.external_id
    from customers c where c.external_id is not null and c.contact_id is not null
    on conflict do nothing
  )
  update public.contacts k
  set phone = coalesce(k.phone, c.phone), first_name = coalesce(k.first_name, c.first_name),
      last_name = coalesce(k.last_name, c.last_name)
  from customers c
  where c.contact_id = k.id
    and (k.phone is null and c.phone is not null or k.first_name is null and c.first_name is not null
         or k.last_name is null and c.last_name is not null);
end
$$;

revoke all on function private.upsert_customers(uuid, text, jsonb) from public, anon, authenticated;

-- A page of orders (see 20261201105000); an order whose id does not fit is left out.
create or replace function private.upsert_orders(p_project_id uuid, p_source text, p_orders jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
set jit = off
as $$
declare
  v_workspace_id uuid;
  v_base_currency text;
  v_id_source text := case when p_source in ('csv', 'manual') then 'manual' else p_source end;
  v_orders integer;
begin
  select p.workspace_id, w.base_currency into v_workspace_id, v_base_currency
  from public.projects p join public.workspaces w on w.id = p.workspace_id
  where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;

  perform private.upsert_customers(
    v_workspace_id, p_source,
    (select coalesce(jsonb_agg(d.doc -> 'customer' order by d.n), '[]'::jsonb)
     from jsonb_array_elements(p_orders) with ordinality as d(doc, n))
  );

  -- The orders, each with its customer's contact; an order whose id does not fit the column
  -- (over 200 characters) cannot be stored or found again, so it is left out, not its page.
  with docs as (
    select distinct on (d.doc ->> 'external_id') d.doc, d.n
    from jsonb_array_elements(p_orders) with ordinality as d(doc, n)
    where char_length(d.doc ->> 'external_id') between 1 and 200
    order by d.doc ->> 'external_id', d.n desc
  ),
  written as (
    insert into public.orders as o (
      workspace_id, project_id, contact_id, source, external_id, status, placed_at, total,
      currency, exchange_rate, base_total
    )
    select v_workspace_id, p_project_id,
           coalesce(
             (select x.contact_id from public.contact_external_ids x
              where x.workspace_id = v_workspace_id and x.source = v_id_source
                and x.external_id = nullif(d.doc -> 'customer' ->> 'external_id', '')),
             (select k.id from public.contacts k
              where k.workspace_id = v_workspace_id
                and k.email = nullif(lower(btrim(d.doc -> 'customer' ->> 'email')), ''))),
           p_source, d.doc ->> 'external_id', d.doc ->> 'status', (d.doc ->> 'placed_at')::timestamptz,
           v.total, v.currency, v.rate,
           case when v.currency = v_base_currency then v.total else round(v.total * v.rate, 2) end
    from docs d
    cross join lateral (
      select (d.doc ->> 'total')::numeric(14, 2) as total, upper(d.doc ->> 'currency') as currency,
             (d.doc ->> 'exchange_rate')::numeric(18, 8) as rate
    ) as v
    order by d.n
    on conflict (workspace_id, source, external_id) do update
    set contact_id = coalesce(excluded.contact_id, o.contact_id), status = excluded.status,
        placed_at = excluded.placed_at, total = excluded.total, currency = excluded.currency,
        exchange_rate = excluded.exchange_rate, base_total = excluded.base_total
    returning o.id, o.external_id
  ),
  cleared as (
    delete from public.order_items i
    using written w, docs d
    where i.order_id = w.id and d.doc ->> 'external_id' = w.external_id and d.doc ? 'items'
    returning i.id
  ),
  lines as (
    insert into public.order_items (order_id, workspace_id, sku, name, quantity, unit_price, total)
    select w.id, v_workspace_id, item ->> 'sku', coalesce(item ->> 'name', item ->> 'sku', 'item'),
           (item ->> 'quantity')::numeric, (item ->> 'unit_price')::numeric,
           round((item ->> 'quantity')::numeric * (item ->> 'unit_price')::numeric, 2)
    from written w
    join docs d on d.doc ->> 'external_id' = w.external_id and d.doc ? 'items'
    cross join lateral jsonb_array_elements(d.doc -> 'items') with ordinality as i(item, position)
    order by d.n, i.position
    returning order_items.id
  )
  select count(*) into v_orders from written;
  return v_orders;
end
$$;

revoke all on function private.upsert_orders(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_orders(uuid, text, jsonb) to service_role;

-- A customer webhook's customer (see 20261209123000), its values fitted as upsert_customers fits them.
create or replace function private.apply_shop_customer(p_project_id uuid, p_source text, p_customer jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_external_id text;
  v_email text;
  v_phone text;
  v_first_name text;
  v_last_name text;
  v_consent text;
  v_contact public.contacts;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if p_source not in ('shopify', 'woocommerce') or jsonb_typeof(p_customer) is distinct from 'object' then
    return null;
  end if;
  -- Fitted as private.upsert_customers fits them: an id or email that does not fit is dropped,
  -- a name is cut to the column's 200 characters.
  v_external_id := case when char_length(p_customer ->> 'external_id') <= 200 then nullif(p_customer ->> 'external_id', '') end;
  v_email := nullif(lower(btrim(p_customer ->> 'email')), '');
  if char_length(v_email) > 254 or v_email !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
    v_email := null;
  end if;
  v_phone := case when p_customer ->> 'phone' ~ '^\+[1-9][0-9]{6,14}$' then p_customer ->> 'phone' end;
  v_first_name := nullif(left(p_customer ->> 'first_name', 200), '');
  v_last_name := nullif(left(p_customer ->> 'last_name', 200), '');
  v_consent := p_customer ->> 'consent';
  if v_external_id is null and v_email is null then
    return null;
  end if;
  perform private.upsert_customers(v_workspace_id, p_source, jsonb_build_array(p_customer));
  select k.* into v_contact
  from public.contacts k
  where k.workspace_id = v_workspace_id
    and k.id = coalesce(
      (select x.contact_id from public.contact_external_ids x
       where x.workspace_id = v_workspace_id and x.source = p_source and x.external_id = v_external_id),
      (select c.id from public.contacts c where c.workspace_id = v_workspace_id and c.email = v_email))
  for update;
  if v_contact.id is null or v_contact.erased_at is not null then
    -- An erased person (never stored again) or a customer without a usable identity.
    return null;
  end if;
  if v_email is not null and (
       v_contact.unsubscribed_at is not null
       or exists (select 1 from public.contacts c
                  where c.workspace_id = v_workspace_id and c.email = v_email and c.id <> v_contact.id)
       or exists (select 1 from private.erased_identities e
                  where e.workspace_id = v_workspace_id
                    and e.identity_key = private.identity_key(v_workspace_id, 'email', v_email))) then
    v_email := null;
  end if;
  update public.contacts k
  set email = coalesce(v_email, k.email),
      phone = coalesce(v_phone, k.phone),
      first_name = coalesce(v_first_name, k.first_name),
      last_name = coalesce(v_last_name, k.last_name),
      consent_state = c.state,
      consent_source = case when c.state is distinct from k.consent_state then p_source else k.consent_source end,
      consent_at = case when c.state is distinct from k.consent_state then now() else k.consent_at end
  from (
    select case
             when v_consent = 'granted' then 'granted'
             when v_consent = 'withdrawn' and v_contact.consent_state = 'granted' then 'withdrawn'
             else v_contact.consent_state
           end as state
  ) as c
  where k.id = v_contact.id
    and (k.email, k.phone, k.first_name, k.last_name, k.consent_state) is distinct from
        (coalesce(v_email, k.email), coalesce(v_phone, k.phone), coalesce(v_first_name, k.first_name),
         coalesce(v_last_name, k.last_name), c.state);
  return v_contact.id;
end
$$;

revoke all on function private.apply_shop_customer(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.apply_shop_customer(uuid, text, jsonb) to service_role;

-- A checkout webhook's checkout (see 20261212095000): a recovery URL that does not fit is dropped,
-- a checkout whose id does not fit is skipped.
create or replace function private.upsert_checkout(p_project_id uuid, p_source text, p_checkout jsonb)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_contact_id uuid;
  v_before public.checkouts;
  v_after public.checkouts;
  v_customer jsonb := coalesce(p_checkout -> 'customer', '{}'::jsonb);
  v_email text := nullif(lower(btrim(coalesce(v_customer ->> 'email', p_checkout ->> 'email'))), '');
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if v_email is not null or v_customer ->> 'external_id' is not null then
    perform private.upsert_customers(v_workspace_id, p_source,
      jsonb_build_array(v_customer || jsonb_build_object('email', v_email)));
    select coalesce(
      (select x.contact_id from public.contact_external_ids x
       where x.workspace_id = v_workspace_id and x.source = p_source and x.external_id = v_customer ->> 'external_id'),
      (select c.id from public.contacts c where c.workspace_id = v_workspace_id and c.email = v_email))
    into v_contact_id;
  end if;
  if coalesce(char_length(p_checkout ->> 'external_id'), 0) not between 1 and 200 then
    -- A checkout id that does not fit the column cannot be found again: its customer is kept.
    return 'skipped';
  end if;
  select * into v_before from public.checkouts k
  where k.workspace_id = v_workspace_id and k.source = p_source and k.external_id = p_checkout ->> 'external_id'
  for update;
  insert into public.checkouts as k (workspace_id, project_id, source, external_id, contact_id, items, total,
                                     currency, recovery_url, started_at, completed_at)
  values (v_workspace_id, p_project_id, p_source, p_checkout ->> 'external_id', v_contact_id,
          coalesce(p_checkout -> 'items', '[]'::jsonb), (p_checkout ->> 'total')::numeric,
          p_checkout ->> 'currency',
          case when char_length(p_checkout ->> 'recovery_url') <= 2000 then p_checkout ->> 'recovery_url' end,
          coalesce((p_checkout ->> 'started_at')::timestamptz, now()), (p_checkout ->> 'completed_at')::timestamptz)
  on conflict (workspace_id, source, external_id) do update
  set contact_id = coalesce(excluded.contact_id, k.contact_id),
      items = excluded.items, total = excluded.total, currency = excluded.currency,
      recovery_url = coalesce(excluded.recovery_url, k.recovery_url),
      completed_at = coalesce(k.completed_at, excluded.completed_at)
  returning * into v_after;
  if v_after.contact_id is not null and v_after.completed_at is null
     and (v_before.id is null or v_before.contact_id is null) then
    insert into public.contact_events (workspace_id, contact_id, type, properties, occurred_at)
    select v_workspace_id, v_after.contact_id, 'checkout_started',
           jsonb_build_object('checkout_id', v_after.external_id, 'items', v_after.items, 'total', v_after.total,
                              'currency', v_after.currency, 'url', v_after.recovery_url),
           least(v_after.started_at, now())
    from public.contacts c where c.id = v_after.contact_id and c.erased_at is null;
  end if;
  return case when v_before.id is null then 'created' else 'updated' end;
end
$$;

revoke all on function private.upsert_checkout(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_checkout(uuid, text, jsonb) to service_role;

-- A page of products (see 20261230090000): SKUs, URLs and image URLs that do not fit dropped.
create or replace function private.write_products(
  p_project_id uuid, p_source text, p_products jsonb, p_variants_listed_in_full boolean
)
returns table (product_external_id text, variant_external_id text, inserted boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  if p_source not in ('shoptet', 'shopify', 'woocommerce', 'csv') or jsonb_typeof(p_products) is distinct from 'array' then
    return;
  end if;

  return query
  with listed as (
    select distinct on (left(e.doc ->> 'external_id', 200)) left(e.doc ->> 'external_id', 200) as external_id, e.doc
    from jsonb_array_elements(p_products) with ordinality as e(doc, n)
    where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
      and nullif(e.doc ->> 'title', '') is not null
    order by left(e.doc ->> 'external_id', 200), e.n desc
  ),
  parsed as (
    select l.external_id, l.doc ->> 'title' as title,
           case when char_length(l.doc ->> 'sku') <= 200 then nullif(l.doc ->> 'sku', '') end as sku,
           case when l.doc ->> 'price' ~ '^[0-9]{1,12}(\.[0-9]{1,2})?$' then (l.doc ->> 'price')::numeric(14, 2) end as price,
           case when l.doc ->> 'currency' ~ '^[A-Z]{3}$' then l.doc ->> 'currency' end as currency,
           case when l.doc ->> 'inventory' ~ '^-?[0-9]{1,9}$' then (l.doc ->> 'inventory')::integer end as inventory,
           case when char_length(l.doc ->> 'url') <= 2048 then nullif(l.doc ->> 'url', '') end as url,
           case when char_length(l.doc ->> 'image_url') <= 2048 then nullif(l.doc ->> 'image_url', '') end as image_url,
           nullif(l.doc ->> 'category', '') as category,
           case when l.doc ->> 'status' in ('active', 'draft', 'archived') then l.doc ->> 'status' else 'active' end as status
    from listed l
  ),
  written as (
    insert into public.products as p (
      workspace_id, project_id, source, external_id, title, sku, price, currency, inventory, url,
      image_url, category, status
    )
    select v_workspace_id, p_project_id, p_source, d.external_id, left(d.title, 500),
           d.sku, case when d.currency is not null then d.price end,
           case when d.price is not null then d.currency end, d.inventory, d.url,
           d.image_url, left(d.category, 500), d.status
    from parsed d
    order by d.external_id
    on conflict (workspace_id, project_id, source, external_id) do update
    set title = excluded.title, sku = excluded.sku, price = excluded.price,
        currency = excluded.currency, inventory = excluded.inventory, url = excluded.url,
        image_url = excluded.image_url, category = excluded.category, status = excluded.status,
        updated_at = now()
    where (p.title, p.sku, p.price, p.currency, p.inventory, p.url, p.image_url, p.category, p.status)
          is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                            excluded.inventory, excluded.url, excluded.image_url, excluded.category,
                            excluded.status)
    returning p.external_id, p.xmax = 0 as inserted
  )
  select w.external_id, null::text, w.inserted from written w;

  -- The variants of the page's products that list theirs (a new statement: it sees the products
  -- written above).
  return query
  with listed as (
    select distinct on (left(e.doc ->> 'external_id', 200)) left(e.doc ->> 'external_id', 200) as external_id, e.doc
    from jsonb_array_elements(p_products) with ordinality as e(doc, n)
    where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
      and (nullif(e.doc ->> 'title', '') is not null or not p_variants_listed_in_full)
    order by left(e.doc ->> 'external_id', 200), e.n desc
  ),
  owners as (
    select p.id as product_id, l.doc -> 'variants' as variants,
           array(select left(e.doc ->> 'external_id', 200)
                 from jsonb_array_elements(l.doc -> 'variants') as e(doc)
                 where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
           ) as variant_ids
    from listed l
    cross join lateral (
      select p.id from public.products p
      where p.workspace_id = v_workspace_id and p.project_id = p_project_id and p.source = p_source
        and p.external_id = l.external_id
      offset 0
    ) as p
    where jsonb_typeof(l.doc -> 'variants') = 'array'
  ),
  variants as (
    select distinct on (o.product_id, v.external_id) o.product_id, v.*
    from owners o
    cross join lateral (
      select left(e.doc ->> 'external_id', 200) as external_id,
             left(nullif(e.doc ->> 'title', ''), 500) as title,
             case when char_length(e.doc ->> 'sku') <= 200 then nullif(e.doc ->> 'sku', '') end as sku,
             case when e.doc ->> 'price' ~ '^[0-9]{1,12}(\.[0-9]{1,2})?$' then (e.doc ->> 'price')::numeric(14, 2) end as price,
             case when e.doc ->> 'currency' ~ '^[A-Z]{3}$' then e.doc ->> 'currency' end as currency,
             case when e.doc ->> 'inventory' ~ '^-?[0-9]{1,9}$' then (e.doc ->> 'inventory')::integer end as inventory,
             case when char_length(e.doc ->> 'image_url') <= 2048 then nullif(e.doc ->> 'image_url', '') end as image_url,
             case when e.doc ->> 'status' in ('active', 'draft', 'archived') then e.doc ->> 'status' else 'active' end as status,
             e.n
      from jsonb_array_elements(o.variants) with ordinality as e(doc, n)
      where jsonb_typeof(e.doc) = 'object' and nullif(e.doc ->> 'external_id', '') is not null
    ) as v
    order by o.product_id, v.external_id, v.n
  ),
  removed as (
    delete from public.product_variants pv
    using owners o
    where p_variants_listed_in_full and pv.product_id = o.product_id and pv.workspace_id = v_workspace_id
      and pv.external_id <> all (o.variant_ids)
  ),
  written as (
    insert into public.product_variants as pv (
      workspace_id, product_id, external_id, title, sku, price, currency, inventory, image_url, status
    )
    select v_workspace_id, v.product_id, v.external_id, v.title, v.sku,
           case when v.currency is not null then v.price end,
           case when v.price is not null then v.currency end, v.inventory, v.image_url, v.status
    from variants v
    order by v.product_id, v.n
    on conflict (product_id, workspace_id, external_id) do update
    set title = excluded.title, sku = excluded.sku, price = excluded.price,
        currency = excluded.currency, inventory = excluded.inventory,
        image_url = excluded.image_url, status = excluded.status, updated_at = now()
    where (pv.title, pv.sku, pv.price, pv.currency, pv.inventory, pv.image_url, pv.status)
          is distinct from (excluded.title, excluded.sku, excluded.price, excluded.currency,
                            excluded.inventory, excluded.image_url, excluded.status)
    returning pv.product_id, pv.external_id, pv.xmax = 0 as inserted
  )
  select p.external_id, w.external_id, w.inserted
  from written w
  cross join lateral (
    select p.external_id from public.products p where p.id = w.product_id
    offset 0
  ) as p;
end
$$;

revoke all on function private.write_products(uuid, text, jsonb, boolean) from public, anon, authenticated;

grant execute on function private.write_products(uuid, text, jsonb, boolean) to service_role;
