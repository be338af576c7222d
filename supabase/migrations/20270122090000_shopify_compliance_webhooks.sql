-- Shopify's mandatory compliance webhooks (customers/redact, customers/data_request,
-- shop/redact), arriving at the project's Shopify webhook URL, verified and stored like the
-- other topics and applied by the edge as the service through these functions. Each works only
-- inside the workspace of the project the URL names and only on that project's Shopify data.

-- customers/redact: the shop's customer (mapped by the edge: external_id, email, order_ids) is
-- erased through the erasure path (private.erase_contacts: the contact linked to the Shopify
-- customer id in the project's workspace, and the live contact with that email there), and the
-- listed orders of the project's Shopify source lose their contact link, as erasure treats
-- orders (orders hold no other personal field). Answers the contacts erased.
create function private.redact_shop_customer(p_project_id uuid, p_source text, p_request jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_ids uuid[];
  v_erased integer;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    return 0;
  end if;
  select coalesce(array_agg(distinct m.id), '{}') into v_ids
  from (
    select x.contact_id as id from public.contact_external_ids x
    where x.workspace_id = v_workspace_id and x.source = p_source
      and x.external_id = p_request ->> 'external_id'
    union all
    select c.id from public.contacts c
    where c.workspace_id = v_workspace_id and c.erased_at is null
      and c.email = lower(btrim(p_request ->> 'email'))
  ) as m;
  v_erased := private.erase_contacts(v_workspace_id, v_ids, null);
  if jsonb_typeof(p_request -> 'order_ids') = 'array' then
    update public.orders o set contact_id = null, updated_at = now()
    where o.workspace_id = v_workspace_id and o.project_id = p_project_id
      and o.source = p_source and o.contact_id is not null
      and o.external_id in (select jsonb_array_elements_text(p_request -> 'order_ids'));
  end if;
  return v_erased;
end
$$;

revoke all on function private.redact_shop_customer(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.redact_shop_customer(uuid, text, jsonb) to service_role;

-- customers/data_request: an access request for the shop's customer (the contact linked to the
-- Shopify customer id, else the live contact with that email, in the project's workspace),
-- recorded as the access-request path records one (public.contact_exports, queued, no
-- requesting user; its insert is audited as export.requested and broadcast to the workspace's
-- admins, and the privacy-exports cron runs it), plus an audit entry naming Shopify's request
-- id. Nothing goes to Shopify. An unknown or erased customer records nothing. Answers the
-- export's id or null.
create function private.record_shop_data_request(p_project_id uuid, p_source text, p_request jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_contact_id uuid;
  v_export_id uuid;
begin
  select p.workspace_id into v_workspace_id from public.projects p where p.id = p_project_id;
  if v_workspace_id is null then
    return null;
  end if;
  select x.contact_id into v_contact_id
  from public.contact_external_ids x join public.contacts c on c.id = x.contact_id
  where x.workspace_id = v_workspace_id and x.source = p_source
    and x.external_id = p_request ->> 'external_id' and c.erased_at is null;
  if v_contact_id is null then
    select c.id into v_contact_id from public.contacts c
    where c.workspace_id = v_workspace_id and c.erased_at is null
      and c.email = lower(btrim(p_request ->> 'email'));
  end if;
  if v_contact_id is null then
    return null;
  end if;
  insert into public.contact_exports (workspace_id, contact_id, requested_by)
  values (v_workspace_id, v_contact_id, null)
  returning id into v_export_id;
  perform private.audit(v_workspace_id, 'shop.data_request', 'contact', v_contact_id::text,
                        jsonb_build_object('source', p_source, 'project_id', p_project_id,
                                           'export_id', v_export_id,
                                           'data_request_id', p_request ->> 'data_request_id'));
  return v_export_id;
end
$$;

revoke all on function private.record_shop_data_request(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.record_shop_data_request(uuid, text, jsonb) to service_role;

-- shop/redact (48 hours after the app was uninstalled): the project's Shopify connection goes
-- (its sealed credentials and settings; with it, by cascade, its sync and bulk-operation
-- progress, and its running backfill jobs fail as integration_disconnected), and so does what
-- the project holds from that shop about people: its Shopify checkouts (carts and recovery
-- links) and the project's stored Shopify webhook payloads (but the shop/redact deliveries,
-- which name only the shop). The Shopify customer ids of the workspace's contacts are unlinked
-- only when no other project of the workspace is still connected to Shopify (the links are
-- per workspace and source). Contacts, their consents and the orders (which hold no personal
-- field beyond the contact link) stay: they are the workspace's own records; a person's
-- erasure is customers/redact. Answers the rows removed per table.
create function private.redact_shop(p_project_id uuid, p_source text, p_request jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_rows jsonb := '{}'::jsonb;
  v_count integer;
begin
  select i.workspace_id into v_workspace_id
  from private.integrations i where i.project_id = p_project_id and i.source = p_source;
  if v_workspace_id is null then
    return jsonb_build_object('shop_domain', p_request ->> 'shop_domain', 'integrations', 0);
  end if;

  delete from public.checkouts c
  where c.workspace_id = v_workspace_id and c.project_id = p_project_id and c.source = p_source;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('checkouts', v_count);

  delete from private.webhook_events e
  where e.provider = p_source
    and e.event_id like p_project_id::text || ':%'
    and e.event_id not like p_project_id::text || ':shop/redact:%';
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('webhook_events', v_count);

  v_count := 0;
  if not exists (select from private.integrations i
                 where i.workspace_id = v_workspace_id and i.source = p_source
                   and i.project_id <> p_project_id) then
    delete from public.contact_external_ids x
    where x.workspace_id = v_workspace_id and x.source = p_source;
    get diagnostics v_count = row_count;
  end if;
  v_rows := v_rows || jsonb_build_object('contact_external_ids', v_count);

  delete from private.integrations i where i.project_id = p_project_id and i.source = p_source;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('integrations', v_count);

  perform private.audit(v_workspace_id, 'shop.redacted', 'project', p_project_id::text,
                        jsonb_build_object('source', p_source, 'rows', v_rows));
  return v_rows;
end
$$;

revoke all on function private.redact_shop(uuid, text, jsonb) from public, anon, authenticated;

grant execute on function private.redact_shop(uuid, text, jsonb) to service_role;
