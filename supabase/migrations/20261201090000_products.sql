-- Products of a workspace's shops (issue 14 §3): the catalog synced from Shoptet, Shopify and
-- WooCommerce (product webhooks, the Shoptet catalog) or imported by CSV, with its variants, and
-- order lines that reference them.
--
-- A product belongs to one shop (project) and is known there by its source's id: external ids
-- are unique per project and source, so two Shopify stores of one workspace cannot collide. A
-- variant is known by its source's id within its product (Shopify and WooCommerce line items
-- carry both the product's and the variant's id). Money is numeric(14,2) with an ISO currency.
--
-- Order lines keep what was sold (name, sku, quantity, prices) as the shop reported it, plus
-- the shop's product and variant ids when it sent them, and nullable references to our rows:
-- a line can arrive before its product (an order webhook before the catalog sync), so the
-- references are filled when the line is written if the product is known, or later by
-- private.link_order_items(project). Deleting a product or variant clears the references and
-- keeps the lines (they are sales history).
--
-- Users read; only the service and SQL functions write (syncs and imports run as the service).

create table public.products (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  project_id uuid not null,
  source text not null check (source in ('shoptet', 'shopify', 'woocommerce', 'csv', 'manual')),
  external_id text not null check (char_length(external_id) between 1 and 200),
  title text not null check (char_length(title) between 1 and 500),
  sku text check (char_length(sku) between 1 and 200),
  price numeric(14, 2) check (price >= 0),
  currency text check (currency ~ '^[A-Z]{3}$'),
  inventory integer,
  url text check (char_length(url) between 1 and 2048),
  image_url text check (char_length(image_url) between 1 and 2048),
  category text check (char_length(category) between 1 and 500),
  status text not null default 'active' check (status in ('active', 'draft', 'archived')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (price is null or currency is not null),
  unique (workspace_id, project_id, source, external_id),
  unique (id, workspace_id),
  foreign key (project_id, workspace_id) references public.projects (id, workspace_id) on delete cascade
);

create table public.product_variants (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  product_id uuid not null,
  external_id text not null check (char_length(external_id) between 1 and 200),
  title text check (char_length(title) between 1 and 500),
  sku text check (char_length(sku) between 1 and 200),
  price numeric(14, 2) check (price >= 0),
  currency text check (currency ~ '^[A-Z]{3}$'),
  inventory integer,
  image_url text check (char_length(image_url) between 1 and 2048),
  status text not null default 'active' check (status in ('active', 'draft', 'archived')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  check (price is null or currency is not null),
  unique (product_id, workspace_id, external_id),
  unique (id, workspace_id),
  foreign key (product_id, workspace_id) references public.products (id, workspace_id) on delete cascade
);

alter table public.order_items
  add column product_id uuid,
  add column variant_id uuid,
  add column external_product_id text check (char_length(external_product_id) between 1 and 200),
  add column external_variant_id text check (char_length(external_variant_id) between 1 and 200),
  add foreign key (product_id, workspace_id)
    references public.products (id, workspace_id) on delete set null (product_id),
  add foreign key (variant_id, workspace_id)
    references public.product_variants (id, workspace_id) on delete set null (variant_id);

-- indexes and triggers ------------------------------------------------------------------------

-- (workspace_id, project_id, source, external_id) above serves the workspace and project keys.
create index products_project_sku_idx on public.products (project_id, sku) where sku is not null;

create index products_workspace_category_idx on public.products (workspace_id, lower(category))
  where category is not null;

create index product_variants_workspace_sku_idx on public.product_variants (workspace_id, sku);

create index order_items_product_id_workspace_id_idx on public.order_items (product_id, workspace_id);

create index order_items_variant_id_workspace_id_idx on public.order_items (variant_id, workspace_id);

create trigger products_touch_updated_at
  before update on public.products
  for each row execute function private.touch_updated_at();

create trigger product_variants_touch_updated_at
  before update on public.product_variants
  for each row execute function private.touch_updated_at();

-- Links a project's order lines that have no product yet to its catalog, set-based: by the
-- shop's product id (and variant id within that product), else by SKU (a variant's, then a
-- product's; only when the SKU names exactly one). Returns how many lines were linked. Run by
-- the syncs and imports after they write products, so lines that arrived first find them.
create function private.link_order_items(p_project_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_linked integer;
begin
  with unlinked as (
    select i.id, i.workspace_id, i.sku, i.external_product_id, i.external_variant_id,
           o.project_id, o.source
    from public.order_items i
    join public.orders o on o.id = i.order_id
    where o.project_id = p_project_id and i.product_id is null
  ),
  by_external_id as (
    select u.id, p.id as product_id, v.id as variant_id
    from unlinked u
    join public.products p
      on p.workspace_id = u.workspace_id and p.project_id = u.project_id
     and p.source = u.source and p.external_id = u.external_product_id
    left join public.product_variants v
      on v.product_id = p.id and v.workspace_id = p.workspace_id
     and v.external_id = u.external_variant_id
  ),
  variant_skus as (
    select v.sku, min(v.id::text)::uuid as variant_id, min(v.product_id::text)::uuid as product_id
    from public.product_variants v
    join public.products p on p.id = v.product_id
    where p.project_id = p_project_id and v.sku is not null
    group by v.sku
    having count(*) = 1
  ),
  product_skus as (
    select p.sku, min(p.id::text)::uuid as product_id
    from public.products p
    where p.project_id = p_project_id and p.sku is not null
    group by p.sku
    having count(*) = 1
  ),
  by_sku as (
    select u.id, coalesce(vs.product_id, ps.product_id) as product_id, vs.variant_id
    from unlinked u
    left join variant_skus vs on vs.sku = u.sku
    left join product_skus ps on ps.sku = u.sku
    where u.sku is not null and u.id not in (select e.id from by_external_id e)
      and coalesce(vs.product_id, ps.product_id) is not null
  ),
  links as (
    select * from by_external_id union all select * from by_sku
  )
  update public.order_items i
  set product_id = l.product_id, variant_id = coalesce(i.variant_id, l.variant_id)
  from links l
  where i.id = l.id;
  get diagnostics v_linked = row_count;
  return v_linked;
end
$$;

revoke all on function private.link_order_items(uuid) from public, anon, authenticated;

grant execute on function private.link_order_items(uuid) to service_role;

-- grants --------------------------------------------------------------------------------------

revoke all on public.products from anon, authenticated, public;

revoke all on public.product_variants from anon, authenticated, public;

grant select on public.products to authenticated;

grant select on public.product_variants to authenticated;

grant all on public.products, public.product_variants to service_role;

-- row level security --------------------------------------------------------------------------

alter table public.products enable row level security;

alter table public.product_variants enable row level security;

-- Members of any role may read their workspaces' products; syncs and imports write them.
create policy products_select_members on public.products
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- Members of any role may read their workspaces' product variants; syncs and imports write them.
create policy product_variants_select_members on public.product_variants
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- comments ------------------------------------------------------------------------------------

comment on table public.products is
  'A shop''s product (per project; external_id unique per project and source): title, SKU, price '
  'and currency, inventory (null: not tracked), URL, image, category, status. Members read; '
  'shop syncs and imports write.';

comment on table public.product_variants is
  'A variant of a product (external_id unique within its product): its own title, SKU, price, '
  'inventory, image and status. Members read; shop syncs and imports write.';

comment on table public.order_items is
  'An order''s lines as the shop reported them (name is the line''s title), with the shop''s '
  'product and variant ids and, once known, references to products and product_variants. '
  'Members read; importers write.';

comment on column public.order_items.product_id is
  'Our product, when the line''s product is in the catalog; null until it is linked (see '
  'private.link_order_items) or after the product was deleted.';

comment on column public.order_items.external_product_id is
  'The shop''s product id for this line (Shopify product_id, WooCommerce product_id).';

comment on column public.order_items.external_variant_id is
  'The shop''s variant id for this line (Shopify variant_id, WooCommerce variation_id).';
