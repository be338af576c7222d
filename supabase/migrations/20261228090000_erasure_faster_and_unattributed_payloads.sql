-- Erasure, faster and reaching payloads nobody owns.
--
-- 1. Erasing one contact with 10k orders took 1.5-1.8 s (scripts/bench_privacy), most of it
--    unlinking the orders: each unlinked order wrote a new row version into all five of the
--    table's indexes and called the updated_at trigger once. The two indexes on contact_id now
--    hold only orders that have a contact (every lookup by contact implies one), so an unlinked
--    order leaves them; the updated_at trigger fires only when the statement did not set
--    updated_at itself, as erasure now does.
-- 2. Stored payloads naming the person were looked up three times (erase_contacts, the inbox
--    trigger and the attributed-payload trigger), the last by a scan of every payload. Now one
--    function, private.erase_contact_payloads, finds them once through the identity index
--    (hashed addresses, phones, shop and inbox ids of each payload) and deletes those of the
--    workspace and, new, those nobody owns once applied: a dead-lettered payload that matched
--    no workspace used to keep a person's address for 30 days beyond the reach of erasure.
--    One nobody owns yet because it still waits to be applied is left to its applier (it is
--    attributed then, and stripped if it names a person its workspace erased, 20261225090000),
--    except, as before, a Shoptet event naming their Shoptet id and an SES event about a message
--    the workspace sent them.
-- 3. The customer-facts trigger of orders skips comparing the old and new rows when no updated
--    order has a contact any more (an erasure): the old rows' contacts are the ones to recount.
--    Statements that have nothing to change (campaign recipients of a contact never mailed,
--    staged import rows of a workspace without imports) are skipped: their statement triggers
--    and plans cost tens of milliseconds even for no row.

drop index public.orders_contact_id_idx;

create index orders_contact_id_idx on public.orders (contact_id) where contact_id is not null;

drop index public.orders_workspace_contact_idx;

create index orders_workspace_contact_idx on public.orders (workspace_id, contact_id, placed_at)
  where contact_id is not null;

drop trigger orders_touch_updated_at on public.orders;

create trigger orders_touch_updated_at
  before update on public.orders
  for each row when (new.updated_at is not distinct from old.updated_at)
  execute function private.touch_updated_at();

-- Customer facts after an update of orders: when no updated order has a contact any more (an
-- erasure unlinking a contact's orders), the contacts to recount are those of the old rows
-- that counted, without comparing the two transition tables row by row.
create or replace function private.customer_facts_recount_orders()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contacts uuid[];
begin
  if tg_op = 'UPDATE' then
    -- An insert ... on conflict fires this even when no row conflicted, with empty tables.
    perform 1 from new_orders limit 1;
    if not found then
      return null;
    end if;
    perform 1 from new_orders n where n.contact_id is not null limit 1;
    if not found then
      select array_agg(distinct o.contact_id order by o.contact_id) into v_contacts
      from old_orders o
      where o.contact_id is not null and o.status in ('paid', 'fulfilled');
    else
      with before as (
        select o.id, o.contact_id, o.placed_at, o.base_total, o.workspace_id, o.project_id, o.source
        from old_orders o where o.contact_id is not null and o.status in ('paid', 'fulfilled')
      ),
      after as (
        select n.id, n.contact_id, n.placed_at, n.base_total, n.workspace_id, n.project_id, n.source
        from new_orders n where n.contact_id is not null and n.status in ('paid', 'fulfilled')
      ),
      changed as (
        (select * from before except select * from after)
        union all
        (select * from after except select * from before)
      )
      select array_agg(distinct c.contact_id order by c.contact_id) into v_contacts from changed c;
    end if;
  else
    select array_agg(distinct o.contact_id order by o.contact_id) into v_contacts
    from old_orders o
    where o.contact_id is not null and o.status in ('paid', 'fulfilled');
  end if;
  if v_contacts is not null then
    perform private.lock_customer_facts(v_contacts);
    perform private.recount_customer_facts(v_contacts);
    perform private.refresh_last_products(v_contacts);
  end if;
  return null;
end
$$;

revoke all on function private.customer_facts_recount_orders() from public, anon, authenticated;

-- Deletes the stored payloads that name the contacts (p_keys: their identifier keys; their
-- inbox identities are added here) and are the workspace's, or nobody's and not waiting to be
-- applied; of those still waiting and nobody's yet, as before, the Shoptet ones naming their
-- Shoptet ids (p_external_ids) and the SES events about messages the workspace sent them.
-- Answers how many. Seq scans are off: a person's payloads are always a small share of
-- all, and the element statistics of one heavy person (thousands of payloads) made the planner
-- read every payload instead of the identity index. JIT is off: the inflated estimate made the
-- one delete compile itself (about 90 ms) to save nothing.
create function private.erase_contact_payloads(
  p_workspace_id uuid, p_contact_ids uuid[], p_keys text[], p_external_ids text[]
)
returns integer
language plpgsql
security definer
set search_path = ''
set enable_seqscan = off
set jit = off
as $$
declare
  v_keys text[];
  v_count integer;
begin
  select coalesce(p_keys, '{}') || private.identifier_keys(coalesce(array_agg(
           case when i.kind = 'email' then i.address else ltrim(i.address, '-') end), '{}'))
  into v_keys
  from public.contact_identities i
  where i.workspace_id = p_workspace_id and i.contact_id = any (p_contact_ids);
  if cardinality(v_keys) = 0 then
    return 0;
  end if;
  delete from private.webhook_events e
  where e.identity_keys && v_keys
    and (e.workspace_id = p_workspace_id
         or (e.workspace_id is null
             and (e.status <> 'received'
                  or (e.provider = 'shoptet'
                      and exists (select from unnest(p_external_ids) as x where strpos(e.body, x) > 0))
                  or (e.provider = 'ses'
                      and exists (select from public.campaign_recipients r
                                  where r.workspace_id = p_workspace_id and r.contact_id = any (p_contact_ids)
                                    and r.ses_message_id is not null and strpos(e.body, r.ses_message_id) > 0)))));
  get diagnostics v_count = row_count;
  return v_count;
end
$$;

revoke all on function private.erase_contact_payloads(uuid, uuid[], text[], text[]) from public, anon, authenticated;

create or replace function private.erase_contacts(p_workspace_id uuid, p_contact_ids uuid[], p_requested_by uuid)
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

  -- updated_at set here spares the row trigger (orders_touch_updated_at) 10k calls.
  update public.orders o set contact_id = null, updated_at = now()
  where o.contact_id = any (v_ids) and o.workspace_id = p_workspace_id;
  get diagnostics v_count = row_count;
  v_rows := v_rows || jsonb_build_object('orders', v_count);

  -- Each guard below spares statement triggers that run even for no row.
  v_count := 0;
  if exists (select from public.campaign_recipients r
             where r.contact_id = any (v_ids) and r.workspace_id = p_workspace_id) then
    update public.campaign_recipients r
    set email = null, error = null,
        status = case when r.status in ('queued', 'sending') then 'skipped' else r.status end,
        locked_until = null
    where r.contact_id = any (v_ids) and r.workspace_id = p_workspace_id;
    get diagnostics v_count = row_count;
  end if;
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

  -- Every stored payload naming them that is this workspace's, or nobody's once applied
  -- (private.erase_contact_payloads).
  v_count := private.erase_contact_payloads(p_workspace_id, v_ids, v_keys, v_external_ids);
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
  v_staged := 0;
  if exists (select from public.import_jobs j where j.workspace_id = p_workspace_id) then
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
  end if;
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

-- The inbox's part of an erasure is now only the identities (their payloads went above).
create or replace function private.erase_inbox_of_contact()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.contact_identities i where i.contact_id = new.id;
  return new;
end
$$;

-- A flow's part of an erasure touches campaign recipients only when some carry merge data of
-- the contact (the update's statement triggers run even for no row).
create or replace function private.flows_forget_erased_contact()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.exit_flow_runs(
    array(select r.id from public.flow_runs r where r.contact_id = new.id and r.status = 'active'),
    'exited', 'erased');
  update public.flow_runs r
  set context = '{}'::jsonb, entry_key = r.id::text
  where r.contact_id = new.id;
  if exists (select from public.campaign_recipients q where q.contact_id = new.id and q.merge_data is not null) then
    update public.campaign_recipients q
    set merge_data = null
    where q.contact_id = new.id and q.merge_data is not null;
  end if;
  delete from public.contact_events e where e.contact_id = new.id;
  return null;
end
$$;

revoke all on function private.flows_forget_erased_contact() from public, anon, authenticated;

drop trigger contacts_erase_attributed_payloads on public.contacts;

drop function private.erase_attributed_webhook_payloads();
