-- The rule fitting a shop's customer to the contacts' columns, written once.
--
-- 20270205090000_shop_values_fitted.sql wrote it three times: in both statements of
-- private.upsert_customers (a page's new customers, then its known ones) and in
-- private.apply_shop_customer (a customer webhook), where one copy could drift from the others.
-- It is now private.shop_customer_fitted, which all three call; the values are the same:
--   - a shop id over 200 characters, an email that is not one or is over 254 characters (after
--     trimming and lower-casing), a phone that is not E.164 are dropped (null);
--   - a first and last name are cut to 200 characters;
--   - `accepts_marketing` as a boolean.
-- It returns one row for any document, all null for one that is not an object (the callers
-- skip a customer with neither a shop id nor an email). It is not set-returning on purpose: the
-- planner expects one row from each call, as from the subquery it replaces, so the page's plans
-- stay as they were. As a set-returning function (expected to return 1,000 rows a call) the
-- page's customers were estimated in the hundreds, and the update of its known customers became
-- a hash join reading every workspace's contacts, once per page: the cause of
-- tests/shops/test_pages_without_statistics.py failing when other tests had left enough contacts
-- in its database (that test now adds 20,000 of another workspace's itself).
--
-- upsert_customers is copied from 20270206090000_shop_customer_ids_drawn_per_row.sql,
-- apply_shop_customer from 20270205090000_shop_values_fitted.sql, each with only its fitting
-- expressions replaced by the call.

-- functions -----------------------------------------------------------------------------------

-- A shop's customer document fitted to the contacts' columns (the rule above).
create function private.shop_customer_fitted(
  p_doc jsonb,
  out external_id text, out email text, out phone text, out first_name text, out last_name text,
  out accepts_marketing boolean
)
language sql
immutable
set search_path = ''
as $$
  select case when char_length(p_doc ->> 'external_id') <= 200 then nullif(p_doc ->> 'external_id', '') end,
         case when char_length(e.email) <= 254 and e.email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then e.email end,
         case when p_doc ->> 'phone' ~ '^\+[1-9][0-9]{6,14}$' then p_doc ->> 'phone' end,
         left(p_doc ->> 'first_name', 200),
         left(p_doc ->> 'last_name', 200),
         (p_doc ->> 'accepts_marketing')::boolean
  from (select lower(btrim(p_doc ->> 'email')) as email) as e
  where jsonb_typeof(p_doc) = 'object'
$$;

revoke all on function private.shop_customer_fitted(jsonb) from public, anon, authenticated;

-- Customers as the shops describe them, a page at a time (see 20261201105000), their values
-- fitted by private.shop_customer_fitted; each new customer's contact id drawn once per customer
-- (see 20270206090000).
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
    cross join lateral private.shop_customer_fitted(d.doc) as c
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
    select distinct on (coalesce('id:' || c.external_id, 'email:' || c.email)) c.*, d.n, coalesce(
             (select x.contact_id from public.contact_external_ids x
              where x.workspace_id = v_workspace_id and x.source = v_id_source and x.external_id = c.external_id),
             (select k.id from public.contacts k where k.workspace_id = v_workspace_id and k.email = c.email)
           ) as contact_id
    from jsonb_array_elements(p_customers) with ordinality as d(doc, n)
    cross join lateral private.shop_customer_fitted(d.doc) as c
    where c.external_id is not null or c.email is not null
    order by coalesce('id:' || c.external_id, 'email:' || c.email), d.n
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

-- A customer webhook's customer (see 20261209123000), its values fitted by private.shop_customer_fitted
-- as upsert_customers fits them.
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
  -- Fitted as private.upsert_customers fits them (private.shop_customer_fitted); an empty name
  -- takes nothing from the contact's.
  select f.external_id, f.email, f.phone, nullif(f.first_name, ''), nullif(f.last_name, '')
  into v_external_id, v_email, v_phone, v_first_name, v_last_name
  from private.shop_customer_fitted(p_customer) as f;
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
