-- A shop page's new customers are told from known ones by a probe per customer on each key,
-- whatever the planner knows (issue 14, commerce data at scale).
--
-- private.upsert_customers (every Shopify, WooCommerce and Shoptet page of orders, customer
-- webhooks and pages, checkouts) found the page's customers that are not known yet with two
-- NOT EXISTS subqueries, by their shop id and by their email. The planner turns those into
-- anti-joins, and the page's customers (from the page's JSON) are estimated at one row: the
-- joins ran as nested loops whose inner side scanned by the keys' leading columns only (the
-- workspace's links of that shop, contact_external_ids; the workspace's contacts) and filtered
-- the id or email, so every customer of a page read all of the workspace's customers (a second
-- page of 1,500 orders read contact_external_ids 478,455 times and contacts 286,125 times; more
-- the more customers the workspace has). Each subquery now cannot be pulled up into a join
-- (`offset 0`): it runs once per customer with its whole key in the index condition.
--
-- Copied from 20261201105000_shop_orders_page_upsert.sql (its only definition); only the two
-- subqueries of the first statement's `unknown` change.

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
