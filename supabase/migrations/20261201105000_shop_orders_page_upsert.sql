-- Shop syncs and webhooks write orders set-based (issue 14 §1): a page of orders (the Shoptet
-- sync's 50, a webhook's one) in a handful of statements for the whole page, not a call of
-- private.upsert_order per order. The rules are private.upsert_order's, unchanged: a customer is
-- found by their shop id for the source, then by email, else created (with their marketing
-- consent when the shop sent it); a found one gains a phone or name it lacked; an order is
-- unique per workspace, source and external id, so a re-delivered order updates its row; lines
-- are replaced when the document has "items" and kept otherwise. Within a page a later document
-- for the same order wins.

-- Customers as the shops describe them ({"external_id"?, "email"?, "phone"?, "first_name"?,
-- "last_name"?, "accepts_marketing"?}), a page at a time: new ones are created (one contact per
-- email) with their shop ids, known ones record their shop id and gain what they lacked.
create function private.upsert_customers(p_workspace_id uuid, p_source text, p_customers jsonb)
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
      select nullif(d.doc ->> 'external_id', '') as external_id,
             nullif(lower(btrim(d.doc ->> 'email')), '') as email,
             d.doc ->> 'phone' as phone,
             d.doc ->> 'first_name' as first_name,
             d.doc ->> 'last_name' as last_name,
             (d.doc ->> 'accepts_marketing')::boolean as accepts_marketing
      where jsonb_typeof(d.doc) = 'object'
    ) as c
    where c.external_id is not null or c.email is not null
    order by coalesce('id:' || c.external_id, 'email:' || c.email), d.n
  ),
  unknown as (
    select c.* from customers c
    where not exists (
            select 1 from public.contact_external_ids x
            where x.workspace_id = v_workspace_id and x.source = v_id_source and x.external_id = c.external_id)
      and not exists (
            select 1 from public.contacts k where k.workspace_id = v_workspace_id and k.email = c.email)
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
      select nullif(d.doc ->> 'external_id', '') as external_id,
             nullif(lower(btrim(d.doc ->> 'email')), '') as email,
             d.doc ->> 'phone' as phone,
             d.doc ->> 'first_name' as first_name,
             d.doc ->> 'last_name' as last_name, d.n
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

create function private.upsert_orders(p_project_id uuid, p_source text, p_orders jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
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

  -- The orders, each with its customer's contact.
  with docs as (
    select distinct on (d.doc ->> 'external_id') d.doc, d.n
    from jsonb_array_elements(p_orders) with ordinality as d(doc, n)
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

-- A page of a shop's customers (the Shoptet sync's customer stream, customer webhooks).
create function private.upsert_shop_customers(p_project_id uuid, p_source text, p_customers jsonb)
returns integer
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
  perform private.upsert_customers(v_workspace_id, p_source, p_customers);
  return jsonb_array_length(p_customers);
end
$$;

revoke all on function private.upsert_shop_customers(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.upsert_shop_customers(uuid, text, jsonb) to service_role;
