-- Access requests: an admin asks for everything stored about one contact. A job
-- (public.contact_exports) gathers every row about the person in every table
-- (private.contact_export_data: profile, shop ids, consents, orders and their lines, list
-- memberships, campaign deliveries and their events, RFM snapshots, and the automations, AI
-- call records and stored webhooks that mention them) into one JSON document; the edge writes
-- it with a CSV per table into a zip in the private Storage bucket `exports`, under the
-- workspace's folder, and answers a signed URL valid 24 hours. Progress is broadcast on
-- `workspace:<id>:exports`, which only admins may join. The file is kept 7 days.

create table public.contact_exports (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  contact_id uuid not null,
  requested_by uuid references auth.users (id) on delete set null,
  status text not null default 'queued' check (status in ('queued', 'running', 'done', 'failed', 'expired')),
  progress integer not null default 0 check (progress between 0 and 100),
  storage_path text check (char_length(storage_path) <= 300),
  tables jsonb not null default '{}'::jsonb check (jsonb_typeof(tables) = 'object'),
  error_code text check (char_length(error_code) <= 64),
  error_message text check (char_length(error_message) <= 500),
  created_at timestamptz not null default now(),
  finished_at timestamptz,
  expires_at timestamptz,
  foreign key (contact_id, workspace_id) references public.contacts (id, workspace_id) on delete cascade
);

comment on table public.contact_exports is
  'Access-request exports of one contact: status, progress, the zip''s path in the exports bucket, rows per table, and why one failed.';

create index contact_exports_workspace_id_idx on public.contact_exports (workspace_id, created_at desc);

create index contact_exports_contact_id_idx on public.contact_exports (contact_id, workspace_id);

create index contact_exports_requested_by_idx on public.contact_exports (requested_by);

create index contact_exports_due_idx on public.contact_exports (created_at) where status in ('queued', 'running');

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('public', 'contact_exports', 'status', 'none', 'not_personal', null),
  ('public', 'contact_exports', 'storage_path', 'none', 'not_personal', 'workspace and export ids'),
  ('public', 'contact_exports', 'tables', 'none', 'not_personal', 'rows per table'),
  ('public', 'contact_exports', 'error_code', 'none', 'not_personal', null),
  ('public', 'contact_exports', 'error_message', 'none', 'not_personal', 'our own message');

insert into storage.buckets (id, name, public, file_size_limit)
values ('exports', 'exports', false, 524288000)
on conflict (id) do nothing;

-- Broadcasts each change of an export's state to the workspace's admins.
create function private.broadcast_export_progress()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform realtime.send(
    jsonb_build_object('id', new.id, 'contact_id', new.contact_id, 'status', new.status,
                       'progress', new.progress, 'error_code', new.error_code),
    'export_progress',
    'workspace:' || new.workspace_id::text || ':exports',
    true
  );
  return null;
end
$$;

revoke all on function private.broadcast_export_progress() from public, anon, authenticated;

create trigger contact_exports_broadcast
  after insert or update of status, progress on public.contact_exports
  for each row execute function private.broadcast_export_progress();

create function private.audit_export()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.audit(new.workspace_id, 'export.requested', 'contact', new.contact_id::text,
                        jsonb_build_object('export_id', new.id));
  return null;
end
$$;

revoke all on function private.audit_export() from public, anon, authenticated;

create trigger contact_exports_audit
  after insert on public.contact_exports
  for each row execute function private.audit_export();

-- requesting -----------------------------------------------------------------------------------

-- An admin asks for a contact's export. Another workspace's contact (or none) 404, members
-- and viewers 403, an erased contact 409 (nothing is left to export).
create function public.request_contact_export(p_contact_id uuid)
returns public.contact_exports
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_contact public.contacts;
  v_export public.contact_exports;
begin
  select * into v_contact from public.contacts c
  where c.id = p_contact_id and c.workspace_id in (select private.user_workspace_ids());
  if v_contact.id is null then
    perform private.fail(404, 'contact_not_found', 'Contact not found');
  end if;
  perform private.workspace_role_as(v_contact.workspace_id, 'admin');
  if v_contact.erased_at is not null then
    perform private.fail(409, 'contact_erased', 'This contact was erased; nothing is left to export');
  end if;
  insert into public.contact_exports (workspace_id, contact_id, requested_by)
  values (v_contact.workspace_id, p_contact_id, v_user)
  returning * into v_export;
  return v_export;
end
$$;

revoke all on function public.request_contact_export(uuid) from public, anon;

grant execute on function public.request_contact_export(uuid) to authenticated;

comment on function public.request_contact_export(uuid) is
  'Starts an access-request export of a contact (admins and owners). 404 contact_not_found, 403 insufficient_role, 409 contact_erased.';

-- gathering --------------------------------------------------------------------------------

-- Every row about the export's contact, per table, as JSON objects; only its own workspace's
-- rows (every query is bound to the export's workspace, or to rows that name the person).
create function private.contact_export_data(p_export_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_export public.contact_exports;
  v_ids uuid[];
  v_needles text[];
  v_keys text[];
  v_project_ids uuid[];
begin
  select * into v_export from public.contact_exports e where e.id = p_export_id;
  if v_export.id is null then
    perform private.fail(404, 'export_not_found', 'Export not found');
  end if;
  v_ids := array[v_export.contact_id];
  v_needles := array(select n from unnest(private.contact_needles(v_export.workspace_id, v_ids)) as n
                     where char_length(n) >= 5);
  v_keys := private.identifier_keys(private.contact_tokens(v_export.workspace_id, v_ids));
  select coalesce(array_agg(p.id), '{}') into v_project_ids
  from public.projects p where p.workspace_id = v_export.workspace_id;
  return jsonb_build_object(
    'contacts', coalesce((select jsonb_agg(to_jsonb(c)) from public.contacts c
                          where c.id = v_export.contact_id and c.workspace_id = v_export.workspace_id), '[]'),
    'contact_external_ids', coalesce((select jsonb_agg(to_jsonb(x)) from public.contact_external_ids x
                                      where x.contact_id = v_export.contact_id and x.workspace_id = v_export.workspace_id), '[]'),
    'consents', coalesce((select jsonb_agg(to_jsonb(c) order by c.created_at) from public.consents c
                          where c.contact_id = v_export.contact_id and c.workspace_id = v_export.workspace_id), '[]'),
    'orders', coalesce((select jsonb_agg(to_jsonb(o) order by o.placed_at) from public.orders o
                        where o.contact_id = v_export.contact_id and o.workspace_id = v_export.workspace_id), '[]'),
    'order_items', coalesce((select jsonb_agg(to_jsonb(i) order by i.id) from public.order_items i
                             join public.orders o on o.id = i.order_id
                             where o.contact_id = v_export.contact_id and o.workspace_id = v_export.workspace_id), '[]'),
    'email_list_members', coalesce((select jsonb_agg(to_jsonb(m) || jsonb_build_object('list_name', l.name))
                                    from public.email_list_members m join public.email_lists l on l.id = m.list_id
                                    where m.contact_id = v_export.contact_id and m.workspace_id = v_export.workspace_id), '[]'),
    'campaign_recipients', coalesce((select jsonb_agg(to_jsonb(r) || jsonb_build_object('campaign_name', c.name))
                                     from public.campaign_recipients r join public.campaigns c on c.id = r.campaign_id
                                     where r.contact_id = v_export.contact_id and r.workspace_id = v_export.workspace_id), '[]'),
    'rfm_snapshots', coalesce((select jsonb_agg(to_jsonb(s) order by s.snapshot_month) from analytics.rfm_snapshots s
                               where s.contact_id = v_export.contact_id and s.workspace_id = v_export.workspace_id), '[]'),
    'automations', coalesce((select jsonb_agg(jsonb_build_object('id', a.id, 'type', a.type, 'status', a.status,
                                                                 'input', a.input, 'result', a.result, 'created_at', a.created_at))
                             from public.automations a
                             where a.workspace_id = v_export.workspace_id and cardinality(v_needles) > 0
                               and exists (select from unnest(v_needles) as n
                                           where strpos(lower(a.input::text || coalesce(a.result::text, '')), lower(n)) > 0)), '[]'),
    'ai_calls', coalesce((select jsonb_agg(to_jsonb(a)) from public.ai_calls a
                          where a.workspace_id = v_export.workspace_id and a.pii_redacted is not null and cardinality(v_needles) > 0
                            and exists (select from unnest(v_needles) as n
                                        where strpos(lower(a.pii_redacted::text), lower(n)) > 0)), '[]'),
    -- A stored webhook counts only when it names the person and is this workspace's: a shop
    -- webhook of one of its projects (the intake stores them as `<project id>:<delivery>`), an
    -- SES event about a message it sent them, a Shoptet event about their Shoptet customer.
    'webhook_events', coalesce((select jsonb_agg(jsonb_build_object('id', e.id, 'provider', e.provider,
                                                                    'received_at', e.received_at, 'body', e.body))
                                from private.webhook_events e
                                where cardinality(v_keys) > 0 and e.identity_keys && v_keys
                                  and (exists (select from unnest(v_project_ids) as p
                                               where e.event_id like p::text || ':%')
                                       or (e.provider = 'ses' and exists (
                                             select from public.campaign_recipients r
                                             where r.contact_id = v_export.contact_id and r.workspace_id = v_export.workspace_id
                                               and r.ses_message_id is not null and strpos(e.body, r.ses_message_id) > 0))
                                       or (e.provider = 'shoptet' and exists (
                                             select from public.contact_external_ids x
                                             where x.contact_id = v_export.contact_id and x.workspace_id = v_export.workspace_id
                                               and x.source = 'shoptet' and strpos(e.body, x.external_id) > 0)))), '[]')
  );
end
$$;

revoke all on function private.contact_export_data(uuid) from public, anon, authenticated;

grant execute on function private.contact_export_data(uuid) to service_role;

-- The job's steps, for the edge (as the service).
create function private.claim_contact_export(p_export_id uuid)
returns public.contact_exports
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_export public.contact_exports;
begin
  update public.contact_exports e set status = 'running', progress = greatest(e.progress, 10)
  where e.id = p_export_id and e.status in ('queued', 'running')
  returning * into v_export;
  return v_export;
end
$$;

revoke all on function private.claim_contact_export(uuid) from public, anon, authenticated;

grant execute on function private.claim_contact_export(uuid) to service_role;

create function private.finish_contact_export(
  p_export_id uuid, p_storage_path text, p_tables jsonb, p_error_code text, p_error_message text
)
returns public.contact_exports
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_export public.contact_exports;
begin
  update public.contact_exports e
  set status = case when p_error_code is null then 'done' else 'failed' end,
      progress = 100,
      storage_path = p_storage_path,
      tables = coalesce(p_tables, '{}'::jsonb),
      error_code = p_error_code,
      error_message = left(p_error_message, 500),
      finished_at = now(),
      expires_at = case when p_error_code is null then now() + interval '7 days' end
  where e.id = p_export_id and e.status = 'running'
  returning * into v_export;
  return v_export;
end
$$;

revoke all on function private.finish_contact_export(uuid, text, jsonb, text, text) from public, anon, authenticated;

grant execute on function private.finish_contact_export(uuid, text, jsonb, text, text) to service_role;

create function private.set_contact_export_progress(p_export_id uuid, p_progress integer)
returns void
language sql
security definer
set search_path = ''
as $$
  update public.contact_exports e set progress = greatest(e.progress, least(p_progress, 99))
  where e.id = p_export_id and e.status = 'running'
$$;

revoke all on function private.set_contact_export_progress(uuid, integer) from public, anon, authenticated;

grant execute on function private.set_contact_export_progress(uuid, integer) to service_role;

-- grants -------------------------------------------------------------------------------------

revoke all on public.contact_exports from public, anon, authenticated;

grant select on public.contact_exports to authenticated;

grant select, insert, update on public.contact_exports to service_role;

-- row level security -------------------------------------------------------------------------

alter table public.contact_exports enable row level security;

-- Admins and owners read their workspaces' exports.
create policy contact_exports_select_admins on public.contact_exports
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));

-- Admins and owners may read the files in their workspaces' folders of the exports bucket.
create policy exports_select_admins on storage.objects
  for select to authenticated
  using (
    bucket_id = 'exports'
    and (storage.foldername(objects.name))[1] in (
      select id::text from private.user_workspace_ids_at_least('admin') as id
    )
  );

-- Only admins and owners may receive the broadcasts of their workspaces' exports channel.
create policy realtime_messages_exports_admins_only on realtime.messages
  as restrictive
  for select to authenticated
  using (
    split_part(topic, ':', 3) <> 'exports'
    or split_part(topic, ':', 2) in (select id::text from private.user_workspace_ids_at_least('admin') as id)
  );
