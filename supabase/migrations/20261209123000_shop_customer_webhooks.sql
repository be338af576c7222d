-- Customer webhooks from Shopify (customers/create, customers/update, customers/delete) and
-- WooCommerce (customer.created, customer.updated, customer.deleted) (issue 14 §4). The edge maps
-- the shop's customer onto the shape private.upsert_customers takes ({"external_id", "email"?,
-- "phone"?, "first_name"?, "last_name"?, "accepts_marketing"?, "consent"?}) and applies it here,
-- as the service, after storing the delivery.
--
-- Created or updated: the customer is found by their shop id, then by email, else created, as
-- for an order's customer (private.upsert_customers). The shop is where the customer keeps their
-- details, so an update takes the shop's non-empty name and phone, and its email unless the
-- contact unsubscribed (its address is then kept, as everywhere), another contact of the
-- workspace has that email, or the address belongs to an erased person. Consent follows an
-- explicit answer in the shop: "granted" (Shopify's subscribed) grants, "withdrawn" (Shopify's
-- unsubscribed) withdraws a grant; anything else leaves the contact's consent alone. Each change
-- of consent is recorded in the consent history (source shop_checkout), by the contacts trigger.
--
-- Deleted: the shop forgot the customer, so the link from their shop id to the contact goes; the
-- contact stays with their orders, consent history and campaign history (erasure is a separate,
-- explicit request).

create function private.apply_shop_customer(p_project_id uuid, p_source text, p_customer jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_external_id text;
  v_email text;
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
  v_external_id := nullif(p_customer ->> 'external_id', '');
  v_email := nullif(lower(btrim(p_customer ->> 'email')), '');
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
      phone = coalesce(nullif(p_customer ->> 'phone', ''), k.phone),
      first_name = coalesce(nullif(p_customer ->> 'first_name', ''), k.first_name),
      last_name = coalesce(nullif(p_customer ->> 'last_name', ''), k.last_name),
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
        (coalesce(v_email, k.email), coalesce(nullif(p_customer ->> 'phone', ''), k.phone),
         coalesce(nullif(p_customer ->> 'first_name', ''), k.first_name),
         coalesce(nullif(p_customer ->> 'last_name', ''), k.last_name), c.state);
  return v_contact.id;
end
$$;

revoke all on function private.apply_shop_customer(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.apply_shop_customer(uuid, text, jsonb) to service_role;

-- The shop deleted a customer: their shop id no longer names the contact. Answers whether a link
-- was removed.
create function private.forget_shop_customer(p_project_id uuid, p_source text, p_external_id text)
returns boolean
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
  delete from public.contact_external_ids x
  where x.workspace_id = v_workspace_id and x.source = p_source and x.external_id = p_external_id;
  return found;
end
$$;

revoke all on function private.forget_shop_customer(uuid, text, text) from public, anon, authenticated;

grant execute on function private.forget_shop_customer(uuid, text, text) to service_role;
