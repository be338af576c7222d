-- Each new shop customer gets a contact of their own, whatever plan Postgres picks.
--
-- private.upsert_customers drew a new customer's contact id in an uncorrelated lateral subquery,
-- `unknown u cross join lateral (select gen_random_uuid() as id) as g`. With no reference to `u`
-- that subquery is an ordinary one-row relation: the planner may put it on the outer side of the
-- nested loop (it does once it expects more than one new customer, e.g. when the page's
-- estimate grows) and then draws ONE id for the whole page. Every new customer of the page
-- without an email then became one contact, and with an email too (their email's first id is
-- that same id): several people merged into one contact, their orders and shop ids with it.
-- The id is now drawn in the target list of a materialised CTE (`drawn`), once for each row it
-- yields, and the rest is unchanged (copied from 20270205090000_shop_values_fitted.sql).
--
-- No other function's newest definition draws a volatile value in an uncorrelated subquery
-- meant to be per row (every other gen_random_uuid(), nextval(), random() and clock_timestamp()
-- is in a target list, a scalar assignment or an expression on the row).

-- functions -----------------------------------------------------------------------------------

-- Customers as the shops describe them, a page at a time (see 20261201105000), their values
-- fitted to the contacts' columns (see 20270205090000); each new customer's contact id drawn once
-- per customer.
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
  -- A new id per customer, drawn in the target list of a materialised CTE: a volatile function
  -- there runs once for each row the CTE yields, whatever the plan (as an uncorrelated lateral
  -- subquery it could be run once and joined to every customer).
  drawn as materialized (
    select u.*, gen_random_uuid() as new_id from unknown u
  ),
  fresh as (
    select u.*, case when u.email is null then u.new_id
                     else first_value(u.new_id) over (partition by u.email order by u.n) end as contact_id
    from drawn u
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
