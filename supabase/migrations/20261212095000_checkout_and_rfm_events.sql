-- Two more facts flows start on: a checkout started (Shopify's checkouts/create and
-- checkouts/update webhooks, verified and stored like its order webhooks) and a contact's RFM
-- segment moving (a monthly snapshot that puts them in another segment than the month before).
--
-- Checkouts: public.checkouts keeps each shop checkout (its lines, total, the shop's recovery
-- URL, and when it completed), linked to its contact, who is found or created as an order's
-- customer is. A `checkout_started` event is recorded once per checkout, when it first has a
-- contact and is not completed; its properties carry the cart (checkout_id, items, total,
-- currency, url), so an abandoned-cart flow keyed by the event (one run per checkout) waits,
-- ends on the order (its goal), or mails the cart.

-- checkouts ----------------------------------------------------------------------------------------

create table public.checkouts (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  project_id uuid not null,
  source text not null check (source in ('shopify')),
  external_id text not null check (char_length(external_id) between 1 and 200),
  contact_id uuid references public.contacts (id) on delete set null,
  items jsonb not null default '[]'::jsonb
    check (jsonb_typeof(items) = 'array' and pg_catalog.pg_column_size(items) <= 65536),
  total numeric(14, 2) check (total >= 0),
  currency text check (currency ~ '^[A-Z]{3}$'),
  recovery_url text check (char_length(recovery_url) <= 2000),
  started_at timestamptz not null default now(),
  completed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (workspace_id, source, external_id),
  foreign key (project_id, workspace_id) references public.projects (id, workspace_id) on delete cascade
);

comment on table public.checkouts is
  'Shop checkouts (Shopify checkouts/create and checkouts/update): the cart, its contact and whether it completed.';

create index checkouts_contact_id_idx on public.checkouts (contact_id);

create index checkouts_project_idx on public.checkouts (project_id, workspace_id);

create trigger checkouts_touch_updated_at
  before update on public.checkouts
  for each row execute function private.touch_updated_at();

-- Upserts one checkout from a shop's webhook (mapped by the edge: external_id, email,
-- customer {external_id, email, first_name, last_name, phone}, items, total, currency,
-- recovery_url, started_at, completed_at), its customer found or created as for orders, and
-- records checkout_started the first time it has a contact and is open. Answers the outcome.
create function private.upsert_checkout(p_project_id uuid, p_source text, p_checkout jsonb)
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
  select * into v_before from public.checkouts k
  where k.workspace_id = v_workspace_id and k.source = p_source and k.external_id = p_checkout ->> 'external_id'
  for update;
  insert into public.checkouts as k (workspace_id, project_id, source, external_id, contact_id, items, total,
                                     currency, recovery_url, started_at, completed_at)
  values (v_workspace_id, p_project_id, p_source, p_checkout ->> 'external_id', v_contact_id,
          coalesce(p_checkout -> 'items', '[]'::jsonb), (p_checkout ->> 'total')::numeric,
          p_checkout ->> 'currency', p_checkout ->> 'recovery_url',
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

-- An erased contact's checkouts go (their cart and recovery link name them).
create function private.erase_contact_checkouts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.checkouts k where k.contact_id = new.id;
  return null;
end
$$;

revoke all on function private.erase_contact_checkouts() from public, anon, authenticated;

create trigger contacts_erase_checkouts
  after update of erased_at on public.contacts
  for each row when (old.erased_at is null and new.erased_at is not null)
  execute function private.erase_contact_checkouts();

-- RFM segment moves ------------------------------------------------------------------------------

-- A snapshot of a recent month that puts a contact in another segment than the month before
-- records rfm_segment_changed {from, to, snapshot_month}; a backfill of old months does not.
create function private.record_rfm_segment_changes()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.contact_events (workspace_id, contact_id, type, properties)
  select n.workspace_id, n.contact_id, 'rfm_segment_changed',
         jsonb_build_object('from', p.segment, 'to', n.segment, 'snapshot_month', n.snapshot_month)
  from new_snapshots n
  join analytics.rfm_snapshots p on p.workspace_id = n.workspace_id and p.contact_id = n.contact_id
   and p.snapshot_month = (n.snapshot_month - interval '1 month')::date
  join public.contacts c on c.id = n.contact_id and c.erased_at is null
  where p.segment <> n.segment
    and n.snapshot_month >= (date_trunc('month', now()) - interval '2 months')::date;
  return null;
end
$$;

revoke all on function private.record_rfm_segment_changes() from public, anon, authenticated;

create trigger rfm_snapshots_record_segment_changes
  after insert on analytics.rfm_snapshots
  referencing new table as new_snapshots
  for each statement execute function private.record_rfm_segment_changes();

-- grants -----------------------------------------------------------------------------------------

revoke all on public.checkouts from public, anon, authenticated;

grant select on public.checkouts to authenticated;

grant all on public.checkouts to service_role;

alter table public.checkouts enable row level security;

-- Members of any role may read their workspaces' checkouts; only shop webhooks write them.
create policy checkouts_select_members on public.checkouts
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- the register of personal data -------------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values
  ('public', 'checkouts', 'source', 'none', 'not_personal', null),
  ('public', 'checkouts', 'external_id', 'contact', 'row_deleted', 'the shop''s checkout id'),
  ('public', 'checkouts', 'items', 'contact', 'row_deleted', 'the cart'),
  ('public', 'checkouts', 'currency', 'none', 'not_personal', null),
  ('public', 'checkouts', 'recovery_url', 'contact', 'row_deleted', 'the shop''s link back to the cart');
