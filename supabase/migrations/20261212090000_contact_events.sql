-- Contact events: the append-only record of what happened to a contact, written by the
-- database in the same transaction as the fact (a contact created, a list joined, a tag added,
-- an order placed) or by the edge for custom events (POST /api/v1/events). Flows enrol on them,
-- end runs on them (exit goals) and wait for them; segments and branches can ask "did event X
-- happen since". Rows are never edited; they go with their contact or workspace (a cascade),
-- with the contact's erasure, or when they are older than the workspace keeps them
-- (private.prune_contact_events, 180 days by default).

-- tables -------------------------------------------------------------------------------------

create table public.contact_events (
  id bigint generated always as identity primary key,
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  contact_id uuid not null,
  type text not null check (type in (
    'contact_created', 'list_joined', 'tag_added', 'order_placed', 'checkout_started',
    'rfm_segment_changed', 'email_opened', 'email_clicked', 'custom'
  )),
  -- A custom event's name (`viewed_product`); null for the built-in types.
  name text check (char_length(name) between 1 and 100 and name ~ '^[A-Za-z0-9_.:-]+$'),
  -- The sender's id of the event: the same id twice is one event.
  event_key text check (char_length(event_key) between 1 and 200),
  properties jsonb not null default '{}'::jsonb
    check (jsonb_typeof(properties) = 'object' and pg_catalog.pg_column_size(properties) <= 65536),
  occurred_at timestamptz not null default now(),
  created_at timestamptz not null default now(),
  check ((type = 'custom') = (name is not null)),
  -- A contact moved to another workspace takes its events along.
  foreign key (contact_id, workspace_id) references public.contacts (id, workspace_id)
    on delete cascade on update cascade
);

comment on table public.contact_events is
  'Append-only events per contact (built-in facts recorded by triggers, custom events from the edge); flows enrol, wait and exit on them.';

comment on column public.contact_events.event_key is
  'The sender''s event id: unique per workspace, so a resent event is recorded once.';

create unique index contact_events_event_key_idx on public.contact_events (workspace_id, event_key)
  where event_key is not null;

create index contact_events_contact_idx on public.contact_events (contact_id, workspace_id, type, occurred_at);

create index contact_events_workspace_idx on public.contact_events (workspace_id, created_at);

create index contact_events_created_at_idx on public.contact_events (created_at);

-- append-only ---------------------------------------------------------------------------------

-- Nobody edits an event; deleting one is only a cascade (its contact or workspace), the
-- contact's erasure or the pruning job, and updating one only the cascade of its contact moving
-- to another workspace.
create function private.keep_contact_events_append_only()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' and pg_catalog.pg_trigger_depth() > 1 then
    return new;
  end if;
  if tg_op = 'DELETE' and (pg_catalog.pg_trigger_depth() > 1
                           or pg_catalog.current_setting('growthbase.erasing', true) = 'on'
                           or pg_catalog.current_setting('growthbase.pruning_events', true) = 'on') then
    return old;
  end if;
  perform private.fail(409, 'contact_events_are_append_only', 'Contact events cannot be changed or deleted');
  return null;
end
$$;

revoke all on function private.keep_contact_events_append_only() from public, anon, authenticated;

create trigger contact_events_append_only
  before update or delete on public.contact_events
  for each row execute function private.keep_contact_events_append_only();

-- Deletes events older than p_days (at most p_limit per call, oldest first).
create function private.prune_contact_events(p_days integer default 180, p_limit integer default 10000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_deleted integer;
begin
  perform pg_catalog.set_config('growthbase.pruning_events', 'on', true);
  delete from public.contact_events e
  where e.id in (
    select o.id from public.contact_events o
    where o.created_at < now() - make_interval(days => greatest(p_days, 1))
    order by o.created_at
    limit greatest(p_limit, 1)
  );
  get diagnostics v_deleted = row_count;
  perform pg_catalog.set_config('growthbase.pruning_events', '', true);
  return v_deleted;
end
$$;

revoke all on function private.prune_contact_events(integer, integer) from public, anon, authenticated;

grant execute on function private.prune_contact_events(integer, integer) to service_role;

-- the facts -------------------------------------------------------------------------------------

-- A contact created (and a tag added for each tag it was created with).
create function private.record_contacts_created()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.contact_events (workspace_id, contact_id, type, occurred_at)
  select n.workspace_id, n.id, 'contact_created', n.created_at
  from new_contacts n
  where n.erased_at is null;
  insert into public.contact_events (workspace_id, contact_id, type, properties)
  select n.workspace_id, n.id, 'tag_added', jsonb_build_object('tag', t.tag)
  from new_contacts n
  cross join lateral unnest(n.tags) as t(tag)
  where n.erased_at is null;
  return null;
end
$$;

revoke all on function private.record_contacts_created() from public, anon, authenticated;

create trigger contacts_record_created
  after insert on public.contacts
  referencing new table as new_contacts
  for each statement execute function private.record_contacts_created();

-- A tag added to an existing contact.
create function private.record_tags_added()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.contact_events (workspace_id, contact_id, type, properties)
  select n.workspace_id, n.id, 'tag_added', jsonb_build_object('tag', t.tag)
  from new_contacts n
  join old_contacts o on o.id = n.id
  cross join lateral unnest(n.tags) as t(tag)
  where n.erased_at is null and n.tags is distinct from o.tags and not (t.tag = any (o.tags));
  return null;
end
$$;

revoke all on function private.record_tags_added() from public, anon, authenticated;

create trigger contacts_record_tags_added
  after update on public.contacts
  referencing old table as old_contacts new table as new_contacts
  for each statement execute function private.record_tags_added();

-- A contact added to a list.
create function private.record_lists_joined()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.contact_events (workspace_id, contact_id, type, properties, occurred_at)
  select n.workspace_id, n.contact_id, 'list_joined', jsonb_build_object('list_id', n.list_id), n.added_at
  from new_members n;
  return null;
end
$$;

revoke all on function private.record_lists_joined() from public, anon, authenticated;

create trigger email_list_members_record_joined
  after insert on public.email_list_members
  referencing new table as new_members
  for each statement execute function private.record_lists_joined();

-- An order placed by a known contact. Only orders placed in the last two days are events:
-- importing a shop's history records the orders, not years of journeys to start. `first` says
-- whether the contact had no earlier order.
create function private.record_orders_placed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.contact_events (workspace_id, contact_id, type, properties, occurred_at)
  select n.workspace_id, n.contact_id, 'order_placed',
         jsonb_build_object(
           'order_id', n.id, 'source', n.source, 'status', n.status, 'total', n.total,
           'currency', n.currency, 'base_total', n.base_total,
           'first', row_number() over (partition by n.contact_id order by n.placed_at, n.id) = 1
                    and not exists (select 1 from public.orders o
                                    where o.contact_id = n.contact_id and o.placed_at < n.placed_at
                                      and o.id not in (select x.id from new_orders x))),
         n.placed_at
  from new_orders n
  where n.contact_id is not null and n.placed_at > now() - interval '2 days';
  return null;
end
$$;

revoke all on function private.record_orders_placed() from public, anon, authenticated;

create trigger orders_record_placed
  after insert on public.orders
  referencing new table as new_orders
  for each statement execute function private.record_orders_placed();

-- grants ---------------------------------------------------------------------------------------

revoke all on public.contact_events from public, anon, authenticated;

grant select on public.contact_events to authenticated;

grant all on public.contact_events to service_role;

alter table public.contact_events enable row level security;

-- Members of any role may read their workspaces' contact events; only the database and the
-- edge (as the service) record them.
create policy contact_events_select_members on public.contact_events
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids()));

-- the register of personal data ---------------------------------------------------------------

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note)
values
  ('public', 'contact_events', 'type', 'none', 'not_personal', null),
  ('public', 'contact_events', 'name', 'contact', 'row_deleted', 'a custom event''s name'),
  ('public', 'contact_events', 'event_key', 'contact', 'row_deleted', 'the sender''s event id'),
  ('public', 'contact_events', 'properties', 'contact', 'row_deleted', 'what the sender attached to the event');
