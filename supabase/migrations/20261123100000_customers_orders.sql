-- Contacts and orders from the shops (Shoptet, Shopify, WooCommerce), CSV imports and manual
-- entry, plus the shop integrations' stored (encrypted) credentials.
--
-- Currency: an order keeps its own total and currency. `base_total` is the total in the
-- workspace's base currency: the same number when the currencies match, total × exchange_rate
-- when the source supplied a rate, and null otherwise. Revenue figures (RFM monetary, segment
-- revenue) sum base_total, so an order without a known rate still counts for recency and
-- frequency but adds nothing to revenue, rather than adding a number in the wrong currency.
-- Revenue counts only `paid` and `fulfilled` orders; pending, cancelled and refunded never do.

create table public.contacts (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  email text check (email = lower(btrim(email)) and email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  phone text check (phone ~ '^\+[1-9][0-9]{6,14}$'),
  first_name text check (char_length(first_name) <= 200),
  last_name text check (char_length(last_name) <= 200),
  attributes jsonb not null default '{}'::jsonb check (jsonb_typeof(attributes) = 'object'),
  consent_state text not null default 'unknown' check (consent_state in ('unknown', 'granted', 'denied', 'withdrawn')),
  consent_source text check (char_length(consent_source) <= 100),
  consent_at timestamptz,
  unsubscribed_at timestamptz,
  erased_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (workspace_id, email),
  unique (id, workspace_id)
);

create index contacts_workspace_id_idx on public.contacts (workspace_id);

create table public.contact_external_ids (
  workspace_id uuid not null,
  contact_id uuid not null,
  source text not null check (source in ('shoptet', 'shopify', 'woocommerce', 'manual')),
  external_id text not null check (char_length(external_id) between 1 and 200),
  primary key (workspace_id, source, external_id),
  foreign key (contact_id, workspace_id) references public.contacts (id, workspace_id) on delete cascade
);

create index contact_external_ids_contact_id_idx on public.contact_external_ids (contact_id);

create table public.orders (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  project_id uuid not null,
  contact_id uuid references public.contacts (id) on delete set null,
  source text not null check (source in ('shoptet', 'shopify', 'woocommerce', 'csv', 'manual')),
  external_id text not null check (char_length(external_id) between 1 and 200),
  status text not null check (status in ('pending', 'paid', 'fulfilled', 'cancelled', 'refunded')),
  placed_at timestamptz not null,
  total numeric(14, 2) not null check (total >= 0),
  currency text not null check (currency ~ '^[A-Z]{3}$'),
  exchange_rate numeric(18, 8) check (exchange_rate > 0),
  base_total numeric(14, 2) check (base_total >= 0),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (workspace_id, source, external_id),
  foreign key (project_id, workspace_id) references public.projects (id, workspace_id) on delete cascade
);

create index orders_workspace_contact_idx on public.orders (workspace_id, contact_id, placed_at);

create index orders_contact_id_idx on public.orders (contact_id);

create index orders_project_id_idx on public.orders (project_id);

create table public.order_items (
  id bigint generated always as identity primary key,
  order_id uuid not null references public.orders (id) on delete cascade,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  sku text,
  name text not null,
  quantity numeric(14, 3) not null check (quantity > 0),
  unit_price numeric(14, 2) not null check (unit_price >= 0),
  total numeric(14, 2) not null check (total >= 0)
);

create index order_items_order_id_idx on public.order_items (order_id);

create index order_items_workspace_id_idx on public.order_items (workspace_id);

create trigger contacts_touch_updated_at
  before update on public.contacts
  for each row execute function private.touch_updated_at();

create trigger orders_touch_updated_at
  before update on public.orders
  for each row execute function private.touch_updated_at();

-- Emails are matched case-insensitively everywhere, so they are stored normalised.
create function private.normalise_contact()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.email := nullif(lower(btrim(new.email)), '');
  return new;
end
$$;

create trigger contacts_normalise
  before insert or update of email on public.contacts
  for each row execute function private.normalise_contact();

-- A shop integration per project and source. Secrets are encrypted by the edge with a key that
-- lives only in its environment; the database never sees them in clear.
create table private.integrations (
  project_id uuid not null references public.projects (id) on delete cascade,
  source text not null check (source in ('shoptet', 'shopify', 'woocommerce')),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  api_token_encrypted text,
  webhook_secret_encrypted text,
  settings jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  primary key (project_id, source)
);

-- Incremental sync per stream (orders, customers): changes since `cursor` are paged through;
-- `page` and `high_water` (the newest change seen so far in this run) make a crashed run
-- resumable.
create table private.sync_streams (
  project_id uuid not null,
  source text not null,
  stream text not null check (stream in ('orders', 'customers')),
  cursor timestamptz,
  page integer,
  high_water timestamptz,
  last_synced_at timestamptz,
  primary key (project_id, source, stream),
  foreign key (project_id, source) references private.integrations (project_id, source) on delete cascade
);

-- Upserts a customer as the importers describe one:
-- {"external_id"?, "email"?, "phone"?, "first_name"?, "last_name"?, "accepts_marketing"?}.
-- Found by its external id for the source, then by email, else created; returns null when
-- there is nothing to identify the customer by.
create function private.upsert_contact(p_workspace_id uuid, p_source text, p_customer jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact_id uuid;
  v_source text := case when p_source in ('csv', 'manual') then 'manual' else p_source end;
  v_external_id text := nullif(p_customer ->> 'external_id', '');
  v_email text := nullif(lower(btrim(p_customer ->> 'email')), '');
begin
  if p_customer is null or jsonb_typeof(p_customer) <> 'object'
     or (v_external_id is null and v_email is null) then
    return null;
  end if;
  if v_external_id is not null then
    select x.contact_id into v_contact_id from public.contact_external_ids x
    where x.workspace_id = p_workspace_id and x.source = v_source and x.external_id = v_external_id;
  end if;
  if v_contact_id is null and v_email is not null then
    select c.id into v_contact_id from public.contacts c
    where c.workspace_id = p_workspace_id and c.email = v_email;
  end if;
  if v_contact_id is null then
    insert into public.contacts (workspace_id, email, phone, first_name, last_name,
                                 consent_state, consent_source, consent_at)
    values (
      p_workspace_id, v_email, p_customer ->> 'phone', p_customer ->> 'first_name',
      p_customer ->> 'last_name',
      case (p_customer ->> 'accepts_marketing')::boolean
        when true then 'granted' when false then 'denied' else 'unknown' end,
      case when p_customer ? 'accepts_marketing' then p_source end,
      case when p_customer ? 'accepts_marketing' then now() end
    )
    returning id into v_contact_id;
  else
    update public.contacts c
    set phone = coalesce(c.phone, p_customer ->> 'phone'),
        first_name = coalesce(c.first_name, p_customer ->> 'first_name'),
        last_name = coalesce(c.last_name, p_customer ->> 'last_name')
    where c.id = v_contact_id;
  end if;
  if v_external_id is not null then
    insert into public.contact_external_ids (workspace_id, contact_id, source, external_id)
    values (p_workspace_id, v_contact_id, v_source, v_external_id)
    on conflict do nothing;
  end if;
  return v_contact_id;
end
$$;

-- Upserts one order (and its customer) in the shape every importer produces:
-- {"external_id", "status", "placed_at", "total", "currency", "exchange_rate"?,
--  "customer": {...as above}?, "items": [{"sku"?, "name", "quantity", "unit_price"}]?}
-- A re-delivered order updates the same row; without "items" the stored lines are kept.
create function private.upsert_order(p_project_id uuid, p_source text, p_order jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid;
  v_base_currency text;
  v_contact_id uuid;
  v_currency text := upper(p_order ->> 'currency');
  v_total numeric(14, 2) := (p_order ->> 'total')::numeric;
  v_rate numeric(18, 8) := (p_order ->> 'exchange_rate')::numeric;
  v_order_id uuid;
begin
  select p.workspace_id, w.base_currency into v_workspace_id, v_base_currency
  from public.projects p join public.workspaces w on w.id = p.workspace_id
  where p.id = p_project_id;
  if v_workspace_id is null then
    perform private.fail(404, 'project_not_found', 'Project not found');
  end if;
  v_contact_id := private.upsert_contact(v_workspace_id, p_source, p_order -> 'customer');
  insert into public.orders as o (
    workspace_id, project_id, contact_id, source, external_id, status, placed_at, total,
    currency, exchange_rate, base_total
  )
  values (
    v_workspace_id, p_project_id, v_contact_id, p_source, p_order ->> 'external_id',
    p_order ->> 'status', (p_order ->> 'placed_at')::timestamptz, v_total, v_currency, v_rate,
    case when v_currency = v_base_currency then v_total else round(v_total * v_rate, 2) end
  )
  on conflict (workspace_id, source, external_id) do update
  set contact_id = coalesce(excluded.contact_id, o.contact_id), status = excluded.status,
      placed_at = excluded.placed_at, total = excluded.total, currency = excluded.currency,
      exchange_rate = excluded.exchange_rate, base_total = excluded.base_total
  returning o.id into v_order_id;
  if p_order ? 'items' then
    delete from public.order_items i where i.order_id = v_order_id;
    insert into public.order_items (order_id, workspace_id, sku, name, quantity, unit_price, total)
    select v_order_id, v_workspace_id, item ->> 'sku',
           coalesce(item ->> 'name', item ->> 'sku', 'item'),
           (item ->> 'quantity')::numeric, (item ->> 'unit_price')::numeric,
           round((item ->> 'quantity')::numeric * (item ->> 'unit_price')::numeric, 2)
    from jsonb_array_elements(p_order -> 'items') as item;
  end if;
  return v_order_id;
end
$$;

-- A customer event from a shop (no order attached), for the project's workspace.
create function private.upsert_shop_customer(p_project_id uuid, p_source text, p_customer jsonb)
returns uuid
language sql
security definer
set search_path = ''
as $$
  select private.upsert_contact(p.workspace_id, p_source, p_customer)
  from public.projects p where p.id = p_project_id
$$;

-- Where a stream's sync stands: the cursor of the last finished run and the page to resume at.
create function private.sync_position(p_project_id uuid, p_source text, p_stream text)
returns table (cursor timestamptz, page integer)
language sql
stable
security definer
set search_path = ''
as $$
  select s.cursor, s.page from private.sync_streams s
  where s.project_id = p_project_id and s.source = p_source and s.stream = p_stream
$$;

-- Sync progress, saved after every page so a crashed run resumes where it stopped.
create function private.save_sync_progress(
  p_project_id uuid, p_source text, p_stream text, p_next_page integer, p_high_water timestamptz
)
returns void
language sql
security definer
set search_path = ''
as $$
  insert into private.sync_streams as s (project_id, source, stream, page, high_water)
  values (p_project_id, p_source, p_stream, p_next_page, p_high_water)
  on conflict (project_id, source, stream) do update
  set page = excluded.page, high_water = greatest(s.high_water, excluded.high_water)
$$;

-- A run reached the last page: later runs start from the newest change it saw.
create function private.finish_sync(p_project_id uuid, p_source text, p_stream text)
returns void
language sql
security definer
set search_path = ''
as $$
  update private.sync_streams
  set cursor = coalesce(high_water, cursor), page = null, high_water = null, last_synced_at = now()
  where project_id = p_project_id and source = p_source and stream = p_stream
$$;

-- The same upsert for a signed-in member importing into their own project (CSV import).
create function public.import_order(p_project_id uuid, p_order jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.project_workspace_as(p_project_id, 'member');
  return private.upsert_order(p_project_id, 'csv', p_order);
end
$$;

-- The integration a webhook or sync needs: its workspace and encrypted secrets.
create function private.integration_for(p_project_id uuid, p_source text)
returns private.integrations
language sql
stable
security definer
set search_path = ''
as $$
  select * from private.integrations where project_id = p_project_id and source = p_source
$$;

-- Connects (or updates) a project's shop integration; members and above. The edge encrypts.
create function public.connect_integration(
  p_project_id uuid, p_source text, p_api_token_encrypted text, p_webhook_secret_encrypted text,
  p_settings jsonb default '{}'::jsonb
)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_workspace_id uuid := private.project_workspace_as(p_project_id, 'member');
begin
  insert into private.integrations as i
    (project_id, source, workspace_id, api_token_encrypted, webhook_secret_encrypted, settings)
  values (p_project_id, p_source, v_workspace_id, p_api_token_encrypted, p_webhook_secret_encrypted,
          coalesce(p_settings, '{}'::jsonb))
  on conflict (project_id, source) do update
  set api_token_encrypted = coalesce(excluded.api_token_encrypted, i.api_token_encrypted),
      webhook_secret_encrypted = coalesce(excluded.webhook_secret_encrypted, i.webhook_secret_encrypted),
      settings = excluded.settings, updated_at = now();
end
$$;

create function public.disconnect_integration(p_project_id uuid, p_source text)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.project_workspace_as(p_project_id, 'member');
  delete from private.integrations i where i.project_id = p_project_id and i.source = p_source;
  return found;
end
$$;

-- grants --------------------------------------------------------------------------------------

revoke all on public.contacts from anon, authenticated, public;

revoke all on public.contact_external_ids from anon, authenticated, public;

revoke all on public.orders from anon, authenticated, public;

revoke all on public.order_items from anon, authenticated, public;

revoke all on private.integrations from public;

grant select, delete on public.contacts to authenticated;

grant insert (workspace_id, email, phone, first_name, last_name, attributes, consent_state,
  consent_source, consent_at, unsubscribed_at) on public.contacts to authenticated;

grant update (email, phone, first_name, last_name, attributes, consent_state, consent_source,
  consent_at, unsubscribed_at) on public.contacts to authenticated;

grant select on public.contact_external_ids to authenticated;

grant select on public.orders to authenticated;

grant select on public.order_items to authenticated;

grant all on public.contacts, public.contact_external_ids, public.orders, public.order_items
  to service_role;

revoke all on function private.normalise_contact() from public, anon, authenticated;

revoke all on function private.upsert_contact(uuid, text, jsonb) from public, anon, authenticated;

revoke all on function private.upsert_order(uuid, text, jsonb) from public, anon, authenticated;

revoke all on function private.upsert_shop_customer(uuid, text, jsonb) from public, anon, authenticated;

revoke all on private.sync_streams from public;

revoke all on function private.sync_position(uuid, text, text) from public, anon, authenticated;

revoke all on function private.save_sync_progress(uuid, text, text, integer, timestamptz) from public, anon, authenticated;

revoke all on function private.finish_sync(uuid, text, text) from public, anon, authenticated;

revoke all on function private.integration_for(uuid, text) from public, anon, authenticated;

revoke all on function public.import_order(uuid, jsonb) from public, anon;

revoke all on function public.connect_integration(uuid, text, text, text, jsonb) from public, anon;

revoke all on function public.disconnect_integration(uuid, text) from public, anon;

grant execute on function public.import_order(uuid, jsonb) to authenticated;

grant execute on function public.connect_integration(uuid, text, text, text, jsonb) to authenticated;

grant execute on function public.disconnect_integration(uuid, text) to authenticated;

grant execute on function private.upsert_order(uuid, text, jsonb) to service_role;

grant execute on function private.upsert_shop_customer(uuid, text, jsonb) to service_role;

grant execute on function private.sync_position(uuid, text, text) to service_role;

grant execute on function private.save_sync_progress(uuid, text, text, integer, timestamptz) to service_role;

grant execute on function private.finish_sync(uuid, text, text) to service_role;

grant execute on function private.integration_for(uuid, text) to service_role;

-- row level security --------------------------------------------------------------------------

alter table public.contacts enable row level security;

alter table public.contact_external_ids enable row level security;

alter table public.orders enable row level security;

alter table public.order_items enable row level security;

-- Members of any role may read their workspaces' contacts.
create policy contacts_select_members on public.contacts
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members and above may add contacts to their workspaces.
create policy contacts_insert_members on public.contacts
  for insert to authenticated
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may edit their workspaces' contacts.
create policy contacts_update_members on public.contacts
  for update to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')))
  with check (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members and above may delete their workspaces' contacts.
create policy contacts_delete_members on public.contacts
  for delete to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('member')));

-- Members of any role may read their workspaces' contacts' shop ids.
create policy contact_external_ids_select_members on public.contact_external_ids
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' orders; imports and webhooks write them.
create policy orders_select_members on public.orders
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' order lines.
create policy order_items_select_members on public.order_items
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));
