-- Exposed functions answer every argument with success or a 4xx of ours (SQLSTATE PT4xx with a
-- code), never a raw SQL error: PostgREST would pass a 22xxx or 23xxx on as a bare 400/409
-- without our code, and the edge as a 500. import_order checks each field of the document,
-- enqueue_automation the idempotency key's length, and segment rules bound their numbers.

-- orders --------------------------------------------------------------------------------------

-- A number an importer may send as a JSON number or a numeric string; null when it is neither
-- or not finite (numeric takes 'NaN' and 'Infinity').
create function private.order_number(p_value jsonb)
returns numeric
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_number numeric;
begin
  if jsonb_typeof(p_value) not in ('number', 'string') then
    return null;
  end if;
  v_number := (p_value #>> '{}')::numeric;
  if v_number in ('NaN'::numeric, 'Infinity'::numeric, '-Infinity'::numeric) then
    return null;
  end if;
  return v_number;
exception when data_exception then
  return null;
end
$$;

revoke all on function private.order_number(jsonb) from public, anon, authenticated;

-- A finite point in time given as a JSON string; null when it is anything else.
create function private.order_timestamp(p_value jsonb)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
declare
  v_at timestamptz;
begin
  if jsonb_typeof(p_value) is distinct from 'string' then
    return null;
  end if;
  v_at := (p_value #>> '{}')::timestamptz;
  return case when isfinite(v_at) then v_at end;
exception when data_exception then
  return null;
end
$$;

revoke all on function private.order_timestamp(jsonb) from public, anon, authenticated;

-- What is wrong with an order document, field by field (null when nothing is), against the
-- columns private.upsert_order writes: orders, order_items and the customer's contact.
create function private.order_problem(p_order jsonb)
returns text
language plpgsql
stable
set search_path = ''
as $$
declare
  v_customer jsonb := p_order -> 'customer';
  v_total numeric := private.order_number(p_order -> 'total');
  v_rate numeric;
  v_item jsonb;
  v_quantity numeric;
  v_price numeric;
begin
  if jsonb_typeof(p_order -> 'external_id') not in ('string', 'number')
     or char_length(p_order ->> 'external_id') not between 1 and 200 then
    return 'external_id is required: a string of 1 to 200 characters';
  end if;
  if p_order ->> 'status' is null
     or p_order ->> 'status' not in ('pending', 'paid', 'fulfilled', 'cancelled', 'refunded')
     or jsonb_typeof(p_order -> 'status') <> 'string' then
    return 'status is required: pending, paid, fulfilled, cancelled or refunded';
  end if;
  if private.order_timestamp(p_order -> 'placed_at') is null then
    return 'placed_at is required: a date and time such as 2026-11-30T10:00:00Z';
  end if;
  if v_total is null or v_total < 0 or v_total >= 1e12 then
    return 'total is required: a number from 0 to 999999999999.99';
  end if;
  if jsonb_typeof(p_order -> 'currency') is distinct from 'string'
     or (p_order ->> 'currency') !~ '^[A-Za-z]{3}$' then
    return 'currency is required: a three-letter ISO 4217 code';
  end if;
  if coalesce(jsonb_typeof(p_order -> 'exchange_rate'), 'null') <> 'null' then
    v_rate := private.order_number(p_order -> 'exchange_rate');
    if v_rate is null or v_rate <= 0 or v_rate >= 1e10 or round(v_total * v_rate, 2) >= 1e12 then
      return 'exchange_rate must be a positive number below 10000000000 that keeps the total below 1000000000000';
    end if;
  end if;
  if jsonb_typeof(v_customer) = 'object' then
    if nullif(lower(btrim(v_customer ->> 'email')), '') !~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' then
      return 'customer.email must be an email address';
    end if;
    if v_customer ->> 'phone' !~ '^\+[1-9][0-9]{6,14}$' then
      return 'customer.phone must be in E.164 form, such as +420123456789';
    end if;
    if char_length(v_customer ->> 'first_name') > 200 or char_length(v_customer ->> 'last_name') > 200 then
      return 'customer.first_name and customer.last_name may have at most 200 characters';
    end if;
    if char_length(v_customer ->> 'external_id') > 200 then
      return 'customer.external_id may have at most 200 characters';
    end if;
    if jsonb_typeof(v_customer -> 'accepts_marketing') in ('array', 'object')
       or jsonb_typeof(v_customer -> 'accepts_marketing') in ('string', 'number')
          and lower(btrim(v_customer ->> 'accepts_marketing'))
              not in ('t', 'true', 'y', 'yes', 'on', '1', 'f', 'false', 'n', 'no', 'off', '0') then
      return 'customer.accepts_marketing must be true or false';
    end if;
  end if;
  for v_item in select item from jsonb_array_elements(coalesce(p_order -> 'items', '[]'::jsonb)) as item loop
    v_quantity := private.order_number(v_item -> 'quantity');
    v_price := private.order_number(v_item -> 'unit_price');
    if v_quantity is null or v_quantity <= 0 or v_quantity >= 1e11 then
      return 'items[].quantity is required: a number above 0 and below 100000000000';
    end if;
    if v_price is null or v_price < 0 or v_price >= 1e12 or round(v_quantity * v_price, 2) >= 1e12 then
      return 'items[].unit_price is required: a number from 0 whose line total stays below 1000000000000';
    end if;
  end loop;
  return null;
end
$$;

revoke all on function private.order_problem(jsonb) from public, anon, authenticated;

-- A member's import of one order into their own project, as source csv. The document's shape
-- and every field are checked first, each failure a 422 invalid_order naming the field; a data
-- error the checks did not foresee is still a 422 invalid_order, never a raw SQL error.
create or replace function public.import_order(p_project_id uuid, p_order jsonb)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_problem text;
  v_column text;
begin
  perform private.project_workspace_as(p_project_id, 'member');
  if p_order is null or jsonb_typeof(p_order) <> 'object'
     or jsonb_typeof(coalesce(p_order -> 'customer', '{}'::jsonb)) not in ('object', 'null')
     or jsonb_typeof(coalesce(p_order -> 'items', '[]'::jsonb)) <> 'array'
     or exists (
       select 1 from jsonb_array_elements(coalesce(p_order -> 'items', '[]'::jsonb)) as item
       where jsonb_typeof(item) <> 'object'
     ) then
    perform private.fail(422, 'invalid_order',
      'An order is an object; its customer an object and its items an array of objects');
  end if;
  v_problem := private.order_problem(p_order);
  if v_problem is not null then
    perform private.fail(422, 'invalid_order', v_problem);
  end if;
  begin
    return private.upsert_order(p_project_id, 'csv', p_order);
  exception when data_exception or not_null_violation or check_violation then
    get stacked diagnostics v_column = column_name;
    perform private.fail(422, 'invalid_order',
      coalesce(v_column || ' is missing or not allowed', 'A value of the order is missing, malformed or out of range'));
    return null;
  end;
end
$$;

revoke all on function public.import_order(uuid, jsonb) from public, anon, authenticated;

grant execute on function public.import_order(uuid, jsonb) to authenticated;

comment on function public.import_order(uuid, jsonb) is
  'Imports (or updates) one order, source csv, into a project of the caller''s workspace; members and above. 422 invalid_order, naming the field, for a malformed document.';

-- automations ---------------------------------------------------------------------------------

-- As before, plus a bound on the input (the same 64 KiB the edge allows, so a caller of the
-- Data API cannot queue a job Make.com would refuse) and the idempotency key's length (1 to 128
-- characters, as the column allows), each a 422 rather than a check violation.
create or replace function public.enqueue_automation(
  p_project_id uuid, p_type text, p_input jsonb default '{}'::jsonb, p_idempotency_key text default null
)
returns table (automation public.automations, replayed boolean)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := private.require_user();
  v_workspace_id uuid := private.project_workspace_as(p_project_id, 'member');
  v_price integer;
  v_automation public.automations;
begin
  select ap.credits into v_price from public.automation_prices ap where ap.type = p_type;
  if v_price is null then
    perform private.fail(422, 'invalid_automation_type', format('Unknown automation type %L', p_type));
  end if;
  if p_input is null or jsonb_typeof(p_input) <> 'object' then
    perform private.fail(422, 'invalid_input', 'input must be a JSON object');
  end if;
  if octet_length(p_input::text) > 65536 then
    perform private.fail(422, 'input_too_large', 'input must be at most 65536 bytes of JSON');
  end if;
  if char_length(p_idempotency_key) not between 1 and 128 then
    perform private.fail(422, 'invalid_idempotency_key', 'An idempotency key has 1 to 128 characters');
  end if;
  if p_idempotency_key is not null then
    select * into v_automation from public.automations a
    where a.workspace_id = v_workspace_id and a.started_by = v_user
      and a.idempotency_key = p_idempotency_key;
    if v_automation.id is not null then
      return query select v_automation, true;
      return;
    end if;
  end if;
  perform private.enforce_plan_rate_limits(v_workspace_id, v_user, 'automation');
  insert into public.automations
    (workspace_id, project_id, type, input, credits_charged, started_by, idempotency_key)
  values
    (v_workspace_id, p_project_id, p_type, p_input, v_price, v_user, p_idempotency_key)
  returning * into v_automation;
  perform private.move_credits(v_workspace_id, -v_price, 'automation_charge', v_automation.id);
  insert into private.outbox (topic, automation_id) values ('make.dispatch', v_automation.id);
  return query select v_automation, false;
end
$$;

revoke all on function public.enqueue_automation(uuid, text, jsonb, text) from public, anon, authenticated;

grant execute on function public.enqueue_automation(uuid, text, jsonb, text) to authenticated;

comment on function public.enqueue_automation(uuid, text, jsonb, text) is
  'Starts an automation (seo_audit, content_gen, report) on a project of the caller''s workspace; members and above. Rate limits, the debit, the automation and its dispatch commit together; the same idempotency key (1 to 128 characters) returns the first automation and charges nothing.';

-- segments ------------------------------------------------------------------------------------

-- A number in a segment rule: counts, days and revenue, so anything from -10^15 to 10^15 with
-- at most 6 decimals. Larger magnitudes or finer fractions mean nothing for a segment and
-- would be pasted into the generated query as thousands of digits.
create or replace function private.segment_number(p_value jsonb)
returns numeric
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_number numeric;
begin
  if p_value is null then
    return null;
  end if;
  if jsonb_typeof(p_value) <> 'number' then
    perform private.fail(422, 'invalid_segment_rule', format('%s is not a number', left(p_value::text, 100)));
  end if;
  v_number := (p_value #>> '{}')::numeric;
  if abs(v_number) >= 1e15 or scale(v_number) > 6 then
    perform private.fail(422, 'invalid_segment_rule',
      format('%s is out of range: numbers in segment rules lie between -10^15 and 10^15 with at most 6 decimals',
             left(p_value::text, 100)));
  end if;
  return v_number;
end
$$;

revoke all on function private.segment_number(jsonb) from public, anon, authenticated;

grant execute on function private.segment_number(jsonb) to authenticated, service_role;
