-- Erasure of a contact (a shop's customer), everywhere the register of personal data
-- (private.personal_data_columns) says their data may be:
--   the contact row stays as a tombstone (id, workspace, times, erased_at) so campaign
--   statistics keep their counts, with every personal field cleared; it no longer counts
--   towards the plan's contact limit;
--   orders stay for revenue analytics without the contact link; shop ids, list memberships
--   and RFM snapshot rows are deleted; campaign recipients lose their address and error text
--   (a queued one is skipped);
--   the workspace's stored webhooks that mention the person (by email, phone or shop customer
--   id, found through an index of hashed identifiers kept on insert) are deleted;
--   automations (the Make.com jobs the outbox sends), segments and AI call records are
--   redacted where they quote the person; staged import rows of the person are deleted;
--   the workspace's suppression of the address is replaced by a keyed hash
--   (private.erased_identities), and a contact with an erased address or phone is never
--   created again (an import or a shop sync skips it) until the person opts in anew.
-- Each erasure is recorded in public.contact_erasures with what it touched.
--
-- One contact is erased with public.erase_contact (admins), many with
-- private.erase_contacts in chunks (the batch job), which takes no lock the send pipeline waits
-- on for longer than its own chunk: recipients are updated by contact id, never by campaign.

-- the keyed hash ---------------------------------------------------------------------------------

-- HMAC-SHA256 pads of one random 256-bit key, made here and never leaving the database.
create table private.privacy_key (
  id boolean primary key default true check (id),
  inner_pad bytea not null check (octet_length(inner_pad) = 64),
  outer_pad bytea not null check (octet_length(outer_pad) = 64)
);

comment on table private.privacy_key is
  'The HMAC key (as its inner and outer pads) behind private.identity_key; made once, never exported.';

do $$
declare
  v_key bytea := sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'))
                 || '\x00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000'::bytea;
  v_inner bytea := substr(v_key, 1, 64);
  v_outer bytea := substr(v_key, 1, 64);
begin
  for i in 0..63 loop
    v_inner := set_byte(v_inner, i, get_byte(v_key, i) # 54);
    v_outer := set_byte(v_outer, i, get_byte(v_key, i) # 92);
  end loop;
  insert into private.privacy_key (inner_pad, outer_pad) values (v_inner, v_outer);
end
$$;

-- The keyed hash of a person's address or phone in a workspace: equal values give equal
-- hashes, and without the key nobody can test a guess against a stored one.
create function private.identity_key(p_workspace_id uuid, p_kind text, p_value text)
returns bytea
language sql
stable
set search_path = ''
as $$
  select sha256(k.outer_pad || sha256(k.inner_pad || convert_to(
    p_workspace_id::text || ':' || p_kind || ':' || case p_kind when 'email' then lower(btrim(p_value)) else btrim(p_value) end,
    'UTF8')))
  from private.privacy_key k
  where p_value is not null and btrim(p_value) <> ''
$$;

revoke all on function private.identity_key(uuid, text, text) from public, anon, authenticated;

grant execute on function private.identity_key(uuid, text, text) to service_role;

-- tables -------------------------------------------------------------------------------------

-- The suppression list of erased people: only keyed hashes of their address and phone.
create table private.erased_identities (
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  identity_key bytea not null,
  kind text not null check (kind in ('email', 'phone')),
  erased_at timestamptz not null default now(),
  primary key (workspace_id, identity_key)
);

comment on table private.erased_identities is
  'Keyed hashes of erased contacts'' addresses and phones: never mailed or imported again until they opt in anew.';

create table public.contact_erasures (
  id uuid primary key default gen_random_uuid(),
  workspace_id uuid not null references public.workspaces (id) on delete cascade,
  contact_id uuid not null,
  requested_by uuid references auth.users (id) on delete set null,
  rows_changed jsonb not null default '{}'::jsonb check (jsonb_typeof(rows_changed) = 'object'),
  created_at timestamptz not null default now()
);

comment on table public.contact_erasures is
  'One row per erased contact: who asked, when, and how many rows of each table the erasure changed. The proof an erasure happened; holds no personal data.';

create index contact_erasures_workspace_id_idx on public.contact_erasures (workspace_id, created_at desc);

create index contact_erasures_contact_id_idx on public.contact_erasures (contact_id);

create index contact_erasures_requested_by_idx on public.contact_erasures (requested_by);

-- An erased recipient keeps its row (the campaign's counts) without the address.
alter table public.campaign_recipients alter column email drop not null;

-- Hashed identifiers (emails, phone-like digit runs, UUIDs) in each stored webhook, so an
-- erasure finds the payloads that mention a person without reading every payload.
alter table private.webhook_events add column identity_keys text[] not null default '{}';

comment on column private.webhook_events.identity_keys is
  'sha256 (hex, 32 characters) of each email, phone-like digit run and UUID in the body, so an erasure finds the payloads that name a person.';

insert into private.personal_data_columns (table_schema, table_name, column_name, subject, handling, note) values
  ('private', 'privacy_key', 'inner_pad', 'none', 'not_personal', 'the HMAC key'),
  ('private', 'privacy_key', 'outer_pad', 'none', 'not_personal', 'the HMAC key'),
  ('private', 'erased_identities', 'identity_key', 'contact', 'hashed', 'kept so the person is never mailed or imported again'),
  ('private', 'erased_identities', 'kind', 'none', 'not_personal', null),
  ('public', 'contact_erasures', 'rows_changed', 'none', 'not_personal', 'counts per table'),
  ('private', 'webhook_events', 'identity_keys', 'contact', 'row_deleted', 'hashes of identifiers in the body, deleted with it');

-- identifiers --------------------------------------------------------------------------------

-- A phone as its digits only, however it was written.
create function private.phone_digits(p_phone text)
returns text
language sql
immutable
set search_path = ''
as $$
  select nullif(regexp_replace(p_phone, '[^0-9]', '', 'g'), '')
$$;

revoke all on function private.phone_digits(text) from public, anon, authenticated;

-- The identifier tokens of a text: lower-case emails, phone-like digit runs (7 to 15 digits,
-- spaces and dashes dropped) and lower-case UUIDs.
create function private.identifier_tokens(p_text text)
returns text[]
language sql
immutable
set search_path = ''
as $$
  select coalesce(array_agg(distinct t), '{}')
  from (
    select lower(m[1]) as t
    from regexp_matches(p_text, '([A-Za-z0-9._%+''-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})', 'g') as m
    union all
    select d
    from regexp_matches(p_text, '(\+?[0-9][0-9 ().-]{5,22}[0-9])', 'g') as m,
         regexp_replace(m[1], '[^0-9]', '', 'g') as d
    where char_length(d) between 7 and 15
    union all
    select lower(m[1])
    from regexp_matches(p_text, '([0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})', 'g') as m
  ) as tokens
$$;

revoke all on function private.identifier_tokens(text) from public, anon, authenticated;

create function private.identifier_keys(p_tokens text[])
returns text[]
language sql
immutable
set search_path = ''
as $$
  select coalesce(array_agg(distinct left(encode(sha256(convert_to(t, 'UTF8')), 'hex'), 32)), '{}')
  from unnest(p_tokens) as t
  where t is not null and t <> ''
$$;

revoke all on function private.identifier_keys(text[]) from public, anon, authenticated;

create function private.index_webhook_identities()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.identity_keys := private.identifier_keys(private.identifier_tokens(new.body));
  return new;
end
$$;

revoke all on function private.index_webhook_identities() from public, anon, authenticated;

create trigger webhook_events_index_identities
  before insert or update of body on private.webhook_events
  for each row execute function private.index_webhook_identities();

update private.webhook_events set identity_keys = private.identifier_keys(private.identifier_tokens(body));

create index webhook_events_identity_keys_idx on private.webhook_events using gin (identity_keys);

-- The identifier tokens of contacts, as erasure matches them against stored payloads.
create function private.contact_tokens(p_workspace_id uuid, p_contact_ids uuid[])
returns text[]
language sql
stable
set search_path = ''
as $$
  select coalesce(array_agg(distinct t), '{}')
  from (
    select lower(c.email) as t from public.contacts c
    where c.workspace_id = p_workspace_id and c.id = any (p_contact_ids)
    union all
    select private.phone_digits(c.phone) from public.contacts c
    where c.workspace_id = p_workspace_id and c.id = any (p_contact_ids)
    union all
    select lower(x.external_id) from public.contact_external_ids x
    where x.workspace_id = p_workspace_id and x.contact_id = any (p_contact_ids)
  ) as tokens
  where t is not null and t <> ''
$$;

revoke all on function private.contact_tokens(uuid, uuid[]) from public, anon, authenticated;

-- redaction ----------------------------------------------------------------------------------

-- The text with every occurrence of each needle (case-insensitive) replaced by '[erased]'.
create function private.redact_text(p_text text, p_needles text[])
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_text text := p_text;
  v_needle text;
begin
  if v_text is null then
    return null;
  end if;
  foreach v_needle in array coalesce(p_needles, '{}') loop
    if v_needle is not null and v_needle <> '' and strpos(lower(v_text), lower(v_needle)) > 0 then
      -- '***=': the rest of the pattern is a literal string.
      v_text := regexp_replace(v_text, '***=' || v_needle, '[erased]', 'gi');
    end if;
  end loop;
  return v_text;
end
$$;

revoke all on function private.redact_text(text, text[]) from public, anon, authenticated;

-- A JSON document with each needle redacted from every string and key in it.
create function private.redact_json(p_value jsonb, p_needles text[])
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_result jsonb;
begin
  case jsonb_typeof(p_value)
    when 'object' then
      select coalesce(jsonb_object_agg(private.redact_text(e.key, p_needles), private.redact_json(e.value, p_needles)), '{}'::jsonb)
      into v_result from jsonb_each(p_value) as e;
    when 'array' then
      select coalesce(jsonb_agg(private.redact_json(e.value, p_needles) order by e.ordinality), '[]'::jsonb)
      into v_result from jsonb_array_elements(p_value) with ordinality as e;
    when 'string' then
      v_result := to_jsonb(private.redact_text(p_value #>> '{}', p_needles));
    else
      v_result := p_value;
  end case;
  return v_result;
end
$$;

revoke all on function private.redact_json(jsonb, text[]) from public, anon, authenticated;

-- The strings erasure redacts from free-form documents: addresses, phones (as stored and as
-- digits), full names, each name part of 3 characters or more, shop ids, and every string of
-- 5 characters or more in the contacts' attributes (their address lines).
create function private.contact_needles(p_workspace_id uuid, p_contact_ids uuid[])
returns text[]
language sql
stable
set search_path = ''
as $$
  select coalesce(array_agg(distinct n order by n), '{}')
  from (
    select unnest(array[
      c.email, c.phone, substr(c.phone, 2),
      nullif(btrim(coalesce(c.first_name, '') || ' ' || coalesce(c.last_name, '')), ''),
      case when char_length(c.first_name) >= 3 then c.first_name end,
      case when char_length(c.last_name) >= 3 then c.last_name end
    ]) as n
    from public.contacts c
    where c.workspace_id = p_workspace_id and c.id = any (p_contact_ids)
    union all
    select v.value
    from public.contacts c, jsonb_path_query(c.attributes, 'strict $.**') as j, lateral (select j #>> '{}' as value) as v
    where c.workspace_id = p_workspace_id and c.id = any (p_contact_ids)
      and jsonb_typeof(j) in ('string', 'number') and char_length(v.value) >= 5
    union all
    select x.external_id from public.contact_external_ids x
    where x.workspace_id = p_workspace_id and x.contact_id = any (p_contact_ids)
      and char_length(x.external_id) >= 5
  ) as needles
  where n is not null and n <> ''
$$;

revoke all on function private.contact_needles(uuid, uuid[]) from public, anon, authenticated;

-- the erasure ------------------------------------------------------------------------------

-- Erases the given contacts of one workspace (those not erased already) and records each
-- erasure; returns how many it erased. Everything happens in the caller's transaction, so an
-- erasure is whole or not at all.
create function private.erase_contacts(p_workspace_id uuid, p_contact_ids uuid[], p_requested_by uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_emails text[];
  v_phones text[];
  v_external_ids text[];
  v_needles text[];
  v_keys text[];
  v_rows jsonb := '{}'::jsonb;
  v_phone_digits text[];
  v_count integer;
  v_staged integer;
begin
  select coalesce(array_agg(c.id order by c.id), '{}'),
         coalesce(array_agg(c.email) filter (where c.email is not null), '{}'),
         coalesce(array_agg(c.phone) filter (where c.phone is not null), '{}')
  into v_ids, v_emails, v_phones
  from (
    select c.id, c.email, c.phone from public.contacts c
    where c.workspace_id = p_workspace_id and c.id = any (p_contact_ids) and c.erased_at is null
    order by c.id
    for update
  ) as c;
  if cardinality(v_ids) = 0 then
    return 0;
  end if;
  select coalesce(array_agg(x.external_id), '{}') into v_external_ids
  from public.contact_external_ids x
  where x.workspace_id = p_workspace_id and x.contact_id = any (v_ids);
  select coalesce(array_agg(private.phone_digits(p)), '{}') into v_phone_digits from unnest(v_phones) as p;
  v_needles := private.contact_needles(p_workspace_id, v_ids);
  v_keys := private.identifier_keys(private.contact_tokens(p_workspace_id, v_ids));

  -- The keyed hashes first: from here on no writer can bring the person back.
  insert into private.erased_identities (workspace_id, identity_key, kind)
  select p_workspace_id, private.identity_key(p_workspace_id, k.kind, k.value), k.kind
  from (
    select 'email' as kind, e as value from unnest(v_emails) as e
    union all
    select 'phone', p from unnest(v_phones) as p
  ) as k
  on conflict (workspace_id, identity_key) do nothing;

  -- Their suppressions live on as those hashes (the permanent ones may go only here).
  perform pg_catalog.set_config('growthbase.erasing', 'on', true);
  delete from public.email_suppressions s
  where s.workspace_id = p_workspace_id and s.email = any (v_emails);
  get diagnostics v_count = row_count;
  perform pg_catalog.set_config('growthbase.erasing', '', true);
  v_rows := v_rows || jsonb_build_object('email_suppressions', v_count);

  update public.orders o set contact_id = null
  where o.contact_id = any (v_ids) and o.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('orders', v_count);

  update public.campaign_recipients r
  set email = null, error = null,
      status = case when r.status in ('queued', 'sending') then 'skipped' else r.status end,
      locked_until = null
  where r.contact_id = any (v_ids) and r.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('campaign_recipients', v_count);

  delete from public.contact_external_ids x where x.contact_id = any (v_ids) and x.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('contact_external_ids', v_count);

  delete from public.email_list_members m where m.contact_id = any (v_ids) and m.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('email_list_members', v_count);

  delete from analytics.rfm_snapshots s where s.contact_id = any (v_ids) and s.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('rfm_snapshots', v_count);

  -- Deleted rather than rewritten: a provider's re-delivery of one is applied again, which
  -- is idempotent and cannot bring the person back (the keyed hashes above). Only this
  -- workspace's: shop webhooks of its projects (stored as `<project id>:<delivery>`), SES
  -- events about messages it sent the person, Shoptet events about their Shoptet customer.
  delete from private.webhook_events e
  where e.identity_keys && v_keys
    and (exists (select from public.projects p
                 where p.workspace_id = p_workspace_id and e.event_id like p.id::text || ':%')
         or (e.provider = 'ses' and exists (
               select from public.campaign_recipients r
               where r.workspace_id = p_workspace_id and r.contact_id = any (v_ids)
                 and r.ses_message_id is not null and strpos(e.body, r.ses_message_id) > 0))
         or (e.provider = 'shoptet' and exists (
               select from unnest(v_external_ids) as x where strpos(e.body, x) > 0)));
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('webhook_events', v_count);

  update public.automations a
  set input = private.redact_json(a.input, v_needles),
      result = private.redact_json(a.result, v_needles),
      error = private.redact_text(a.error, v_needles)
  where a.workspace_id = p_workspace_id
    and exists (
      select from unnest(v_needles) as n
      where strpos(lower(a.input::text || coalesce(a.result::text, '') || coalesce(a.error, '')), lower(n)) > 0
    );
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('automations', v_count);

  update public.segments s set rule = private.redact_json(s.rule, v_needles)
  where s.workspace_id = p_workspace_id
    and exists (select from unnest(v_needles) as n where strpos(lower(s.rule::text), lower(n)) > 0);
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('segments', v_count);

  update public.ai_calls a set pii_redacted = private.redact_json(a.pii_redacted, v_needles)
  where a.workspace_id = p_workspace_id and a.pii_redacted is not null
    and exists (select from unnest(v_needles) as n where strpos(lower(a.pii_redacted::text), lower(n)) > 0);
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('ai_calls', v_count);

  -- Staged and in-flight rows of running imports (each table is a job's own copy of the file).
  v_count := 0;
  delete from private.import_contact_rows r using public.import_jobs j
  where j.workspace_id = p_workspace_id and r.job_id = j.id
    and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits));
  get diagnostics v_staged = row_count;
  v_count := v_count + v_staged;
  delete from private.import_contact_work r using public.import_jobs j
  where j.workspace_id = p_workspace_id and r.job_id = j.id
    and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits));
  get diagnostics v_staged = row_count;
  v_count := v_count + v_staged;
  delete from private.import_order_rows r using public.import_jobs j
  where j.workspace_id = p_workspace_id and r.job_id = j.id
    and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits)
         or r.customer_id = any (v_external_ids));
  get diagnostics v_staged = row_count;
  v_count := v_count + v_staged;
  delete from private.import_order_lines r using public.import_jobs j
  where j.workspace_id = p_workspace_id and r.job_id = j.id
    and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits)
         or r.customer_id = any (v_external_ids));
  get diagnostics v_staged = row_count;
  v_count := v_count + v_staged;
  delete from private.import_order_heads r using public.import_jobs j
  where j.workspace_id = p_workspace_id and r.job_id = j.id
    and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits)
         or r.customer_id = any (v_external_ids));
  get diagnostics v_staged = row_count;
  v_count := v_count + v_staged;
  delete from private.import_order_customers r using public.import_jobs j
  where j.workspace_id = p_workspace_id and r.job_id = j.id
    and (lower(btrim(r.email)) = any (v_emails) or private.phone_digits(r.phone) = any (v_phone_digits)
         or r.customer_id = any (v_external_ids));
  get diagnostics v_staged = row_count;
  v_rows := v_rows || jsonb_build_object('import_rows', v_count + v_staged);

  update public.contacts c
  set email = null, phone = null, first_name = null, last_name = null,
      attributes = '{}'::jsonb, tags = '{}', consent_source = null, erased_at = now()
  where c.id = any (v_ids) and c.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;

  insert into public.contact_erasures (workspace_id, contact_id, requested_by, rows_changed)
  select p_workspace_id, id, p_requested_by, v_rows from unnest(v_ids) as id;
  return v_count;
end
$$;

revoke all on function private.erase_contacts(uuid, uuid[], uuid) from public, anon, authenticated;

grant execute on function private.erase_contacts(uuid, uuid[], uuid) to service_role;

-- An admin erases one contact of their workspace. Another workspace's contact (or none) is
-- 404, a member or viewer 403, a contact erased already 409.
create function public.erase_contact(p_contact_id uuid)
returns public.contact_erasures
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_contact public.contacts;
  v_erasure public.contact_erasures;
begin
  select * into v_contact from public.contacts c
  where c.id = p_contact_id and c.workspace_id in (select private.user_workspace_ids());
  if v_contact.id is null then
    perform private.fail(404, 'contact_not_found', 'Contact not found');
  end if;
  perform private.workspace_role_as(v_contact.workspace_id, 'admin');
  if v_contact.erased_at is not null then
    perform private.fail(409, 'contact_already_erased', 'This contact was erased already');
  end if;
  if private.erase_contacts(v_contact.workspace_id, array[p_contact_id], v_user) = 0 then
    -- Erased by a concurrent request between the read above and the lock.
    perform private.fail(409, 'contact_already_erased', 'This contact was erased already');
  end if;
  select * into v_erasure from public.contact_erasures e
  where e.contact_id = p_contact_id order by e.created_at desc limit 1;
  return v_erasure;
end
$$;

revoke all on function public.erase_contact(uuid) from public, anon;

grant execute on function public.erase_contact(uuid) to authenticated;

comment on function public.erase_contact(uuid) is
  'Erases a contact everywhere (admins and owners): personal fields cleared, orders unlinked, stored payloads naming them deleted, the address kept only as a keyed hash. 404 contact_not_found, 403 insufficient_role, 409 contact_already_erased.';

-- guards on contacts -------------------------------------------------------------------------

-- A contact whose address or phone was erased is not created again: the insert is skipped
-- (an import or shop sync goes on with the rest). An erased contact cannot be filled in
-- again, and no contact can take an erased address or phone.
create function private.keep_erased_contacts_erased()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' and old.erased_at is not null then
    if new.email is not null or new.phone is not null or new.first_name is not null
       or new.last_name is not null or new.attributes <> '{}'::jsonb or new.tags <> '{}'
       or new.erased_at is null then
      perform private.fail(409, 'contact_erased', 'This contact was erased and cannot be changed');
    end if;
    return new;
  end if;
  if (new.email is not null or new.phone is not null) and exists (
    select from private.erased_identities e
    where e.workspace_id = new.workspace_id
      and e.identity_key in (
        private.identity_key(new.workspace_id, 'email', new.email),
        private.identity_key(new.workspace_id, 'phone', new.phone)
      )
  ) then
    if tg_op = 'INSERT' then
      return null;
    end if;
    if new.email is distinct from old.email or new.phone is distinct from old.phone then
      perform private.fail(409, 'contact_erased',
        'This person asked to be erased; they can come back only by opting in again');
    end if;
  end if;
  return new;
end
$$;

revoke all on function private.keep_erased_contacts_erased() from public, anon, authenticated;

create trigger contacts_keep_erased
  before insert or update on public.contacts
  for each row execute function private.keep_erased_contacts_erased();

-- A shop id for a contact that was not created (an erased person) is not stored either.
create function private.skip_unlinked_external_ids()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.contact_id is null then
    return null;
  end if;
  return new;
end
$$;

revoke all on function private.skip_unlinked_external_ids() from public, anon, authenticated;

create trigger contact_external_ids_skip_unlinked
  before insert on public.contact_external_ids
  for each row execute function private.skip_unlinked_external_ids();

-- The contact counter counts contacts not erased: an erasure frees its place in the plan, and
-- deleting an erased contact later frees nothing more.
create or replace function private.count_changed_contacts()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_sign integer := case tg_op when 'INSERT' then 1 else -1 end;
  v_workspace_ids uuid[];
  v_changes integer[];
begin
  select array_agg(c.workspace_id order by c.workspace_id), array_agg(v_sign * c.contacts order by c.workspace_id)
  into v_workspace_ids, v_changes
  from (
    select r.workspace_id, count(*)::integer as contacts from changed r
    where r.erased_at is null
    group by r.workspace_id
  ) as c;
  if v_workspace_ids is not null then
    perform private.add_contact_changes(v_workspace_ids, v_changes);
  end if;
  return null;
end
$$;

revoke all on function private.count_changed_contacts() from public, anon, authenticated;

create function private.count_erased_contact()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.add_contact_changes(array[new.workspace_id], array[-1]);
  return null;
end
$$;

revoke all on function private.count_erased_contact() from public, anon, authenticated;

create trigger contacts_count_erased
  after update of erased_at on public.contacts
  for each row when (old.erased_at is null and new.erased_at is not null)
  execute function private.count_erased_contact();

create or replace function private.verify_contact_counts()
returns table (workspace_id uuid, counted integer, kept integer)
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(c.workspace_id, k.workspace_id), coalesce(c.contacts, 0), coalesce(k.contacts, 0)
  from (
    select n.workspace_id, count(*)::integer as contacts from public.contacts n
    where n.erased_at is null
    group by n.workspace_id
  ) as c
  full join private.workspace_contact_counts k on k.workspace_id = c.workspace_id
  where coalesce(c.contacts, 0) <> coalesce(k.contacts, 0)
$$;

-- Erased contacts already present no longer count.
update private.workspace_contact_counts k
set contacts = k.contacts - e.erased
from (
  select c.workspace_id, count(*)::integer as erased from public.contacts c
  where c.erased_at is not null group by c.workspace_id
) as e
where e.workspace_id = k.workspace_id;

-- Permanent suppressions may also go inside an erasure (private.erase_contacts sets
-- growthbase.erasing for its own delete; the Data API cannot set it).
create or replace function private.keep_permanent_suppressions()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.reason not in ('complaint', 'unsubscribe')
     or current_user = 'service_role'
     or pg_catalog.current_setting('role', true) = 'service_role'
     or pg_catalog.current_setting('growthbase.erasing', true) = 'on' then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  if tg_op = 'DELETE' and pg_catalog.pg_trigger_depth() = 1 then
    perform private.fail(409, 'suppression_is_permanent',
      'An unsubscribe or complaint suppression cannot be lifted');
  end if;
  if tg_op = 'UPDATE' and (
    new.workspace_id <> old.workspace_id or new.email <> old.email
    or new.reason not in ('complaint', 'unsubscribe')
  ) then
    perform private.fail(409, 'suppression_is_permanent',
      'An unsubscribe or complaint suppression keeps its address and reason');
  end if;
  return case when tg_op = 'DELETE' then old else new end;
end
$$;

-- grants -------------------------------------------------------------------------------------

revoke all on private.privacy_key from public, anon, authenticated, service_role;

revoke all on private.erased_identities from public, anon, authenticated;

grant select, insert, delete on private.erased_identities to service_role;

revoke all on public.contact_erasures from public, anon, authenticated;

grant select on public.contact_erasures to authenticated;

grant select on public.contact_erasures to service_role;

-- row level security -------------------------------------------------------------------------

alter table public.contact_erasures enable row level security;

-- Admins and owners read their workspaces' erasure records.
create policy contact_erasures_select_admins on public.contact_erasures
  for select to authenticated
  using (workspace_id in (select private.user_workspace_ids_at_least('admin')));
