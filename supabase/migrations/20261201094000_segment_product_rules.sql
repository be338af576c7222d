-- Segment rules can select the customers who bought a product or a category (issue 14 §3):
--   {"bought": {"product_id": "<product uuid>"}}            a product of the catalog
--   {"bought": {"category": "Tea", "within_days": 30}}      any product of a category (compared
--                                                           case-insensitively), lately
-- that is, who have a paid or fulfilled order in the workspace with a line linked to that
-- product, or to a product of that category, placed within the last within_days days (1 to
-- 3650; any time when absent). Lines not linked to the catalog match neither. Like every rule,
-- a malformed one is refused on save and by preview_segment with 422 invalid_segment_rule; the
-- values are quoted or cast, so a rule cannot inject SQL, and another workspace's product id
-- matches nobody (the orders are the segment's workspace's, $1).
--
-- The condition reads lines through order_items (product_id, workspace_id) for a product and
-- through products (workspace_id, lower(category)) for a category, so it costs what the
-- product's sales cost, not a scan of the workspace's orders.

-- The SQL condition of a "bought" rule (see above), over public.contacts c with the workspace
-- as $1.
create function private.segment_bought_condition(p_bought jsonb)
returns text
language plpgsql
stable
set search_path = ''
as $$
declare
  v_match text;
  v_product uuid;
begin
  if jsonb_typeof(p_bought) is distinct from 'object' then
    perform private.fail(422, 'invalid_segment_rule', '"bought" takes an object');
  end if;
  if exists (select 1 from jsonb_object_keys(p_bought) k where k not in ('product_id', 'category', 'within_days'))
     or (p_bought ? 'product_id') = (p_bought ? 'category') then
    perform private.fail(422, 'invalid_segment_rule',
      '"bought" takes either product_id or category, and optionally within_days');
  end if;
  if p_bought ? 'product_id' then
    begin
      v_product := case when jsonb_typeof(p_bought -> 'product_id') = 'string'
                        then (p_bought ->> 'product_id')::uuid end;
    exception when invalid_text_representation then
      v_product := null;
    end;
    if v_product is null then
      perform private.fail(422, 'invalid_segment_rule',
        format('%s is not a product id', left(coalesce((p_bought -> 'product_id')::text, 'null'), 100)));
    end if;
    v_match := format('i.product_id = %L::uuid and i.workspace_id = $1', v_product);
  else
    if jsonb_typeof(p_bought -> 'category') is distinct from 'string'
       or char_length(p_bought ->> 'category') not between 1 and 500 then
      perform private.fail(422, 'invalid_segment_rule', '"category" is the name of a category (1 to 500 characters)');
    end if;
    v_match := format(
      'i.product_id in (select p.id from public.products p where p.workspace_id = $1'
      ' and lower(p.category) = lower(%L)) and i.workspace_id = $1', p_bought ->> 'category');
  end if;
  return format(
    'c.id in (select o.contact_id from public.order_items i join public.orders o on o.id = i.order_id'
    ' where %s and o.workspace_id = $1 and o.status in (''paid'', ''fulfilled'')%s)',
    v_match,
    case when p_bought ? 'within_days'
      then format(' and o.placed_at >= now() - make_interval(days => %s)', private.segment_days(p_bought -> 'within_days'))
      else '' end);
end
$$;

revoke all on function private.segment_bought_condition(jsonb) from public, anon, authenticated;

-- segment_condition runs as the user who saves a segment (its validation trigger), so the
-- helper is theirs to execute as the other helpers are.
grant execute on function private.segment_bought_condition(jsonb) to authenticated, service_role;

-- The rule compiler as in …_email_campaigns.sql, with the "bought" rule.
create or replace function private.segment_condition(p_rule jsonb, p_depth integer default 0)
returns text
language plpgsql
stable
set search_path = ''
as $$
declare
  v_key text;
  v_parts text[];
  v_target text;
  v_op text := p_rule ->> 'op';
  v_value jsonb := p_rule -> 'value';
  v_orders jsonb;
  v_days integer;
begin
  if jsonb_typeof(p_rule) is distinct from 'object' then
    perform private.fail(422, 'invalid_segment_rule', 'Each segment rule must be a JSON object');
  end if;
  if p_depth > 20 then
    perform private.fail(422, 'invalid_segment_rule', 'Segment rules may nest at most 20 levels deep');
  end if;
  if p_rule ? 'all' or p_rule ? 'any' then
    v_key := case when p_rule ? 'all' then 'all' else 'any' end;
    if jsonb_typeof(p_rule -> v_key) is distinct from 'array' or jsonb_array_length(p_rule -> v_key) = 0 then
      perform private.fail(422, 'invalid_segment_rule', format('"%s" needs a non-empty array of rules', v_key));
    end if;
    select array_agg(private.segment_condition(r.value, p_depth + 1) order by r.ordinality) into v_parts
    from jsonb_array_elements(p_rule -> v_key) with ordinality as r;
    return '(' || array_to_string(v_parts, case v_key when 'all' then ' and ' else ' or ' end) || ')';
  elsif p_rule ? 'not' then
    return '(not coalesce(' || private.segment_condition(p_rule -> 'not', p_depth + 1) || ', false))';
  elsif p_rule ? 'in_list' then
    return format(
      'exists (select 1 from public.email_list_members m where m.contact_id = c.id and m.list_id = %L::uuid)',
      private.segment_uuid(p_rule -> 'in_list'));
  elsif p_rule ? 'rfm_segment' then
    if not exists (select 1 from analytics.rfm_segment_map s where s.segment = p_rule ->> 'rfm_segment') then
      perform private.fail(422, 'invalid_segment_rule', format('Unknown RFM segment %s', p_rule -> 'rfm_segment'));
    end if;
    return format(
      'c.id in (select r.contact_id from private.rfm_scores(current_date, array[$1]) r'
      ' join analytics.rfm_segment_map s on s.r_score = r.r_score and s.f_score = r.f_score'
      ' where s.segment = %L)', p_rule ->> 'rfm_segment');
  elsif p_rule ? 'opened_within_days' or p_rule ? 'clicked_within_days' then
    v_key := case when p_rule ? 'opened_within_days' then 'opened' else 'clicked' end;
    v_days := private.segment_days(p_rule -> (v_key || '_within_days'));
    return format(
      'exists (select 1 from public.campaign_recipients e where e.contact_id = c.id'
      ' and e.last_%s_at >= now() - make_interval(days => %s))', v_key, v_days);
  elsif p_rule ? 'orders' then
    v_orders := p_rule -> 'orders';
    if jsonb_typeof(v_orders) is distinct from 'object'
       or exists (select 1 from jsonb_object_keys(v_orders) k
                  where k not in ('min_count', 'max_count', 'min_revenue', 'within_days')) then
      perform private.fail(422, 'invalid_segment_rule',
        '"orders" takes min_count, max_count, min_revenue and within_days');
    end if;
    v_target := format(
      '(select count(*) as n, coalesce(sum(o.base_total), 0) as revenue from public.orders o'
      ' where o.workspace_id = $1 and o.contact_id = c.id and o.status in (''paid'', ''fulfilled'')%s)',
      case when v_orders ? 'within_days'
        then format(' and o.placed_at >= now() - make_interval(days => %s)', private.segment_days(v_orders -> 'within_days'))
        else '' end);
    return format('exists (select 1 from %s as h where h.n >= %s%s%s)',
      v_target,
      coalesce(private.segment_number(v_orders -> 'min_count'), 1),
      case when v_orders ? 'max_count' then format(' and h.n <= %s', private.segment_number(v_orders -> 'max_count')) else '' end,
      case when v_orders ? 'min_revenue' then format(' and h.revenue >= %s', private.segment_number(v_orders -> 'min_revenue')) else '' end);
  elsif p_rule ? 'bought' then
    return private.segment_bought_condition(p_rule -> 'bought');
  elsif p_rule ? 'field' or p_rule ? 'attribute' then
    if p_rule ? 'field' then
      v_target := case p_rule ->> 'field'
        when 'email' then 'c.email'
        when 'first_name' then 'c.first_name'
        when 'last_name' then 'c.last_name'
        when 'phone' then 'c.phone'
        when 'consent_state' then 'c.consent_state'
        when 'created_at' then 'c.created_at::text'
      end;
      if v_target is null then
        perform private.fail(422, 'invalid_segment_rule', format('Unknown contact field %s', p_rule -> 'field'));
      end if;
    else
      if jsonb_typeof(p_rule -> 'attribute') is distinct from 'string' then
        perform private.fail(422, 'invalid_segment_rule', '"attribute" must name an attribute');
      end if;
      v_target := format('(c.attributes ->> %L)', p_rule ->> 'attribute');
    end if;
    if v_op in ('exists', 'missing') then
      return format('(%s is %s null)', v_target, case v_op when 'exists' then 'not' else '' end);
    end if;
    if v_value is null or jsonb_typeof(v_value) = 'null' then
      perform private.fail(422, 'invalid_segment_rule', format('Operator %s needs a value', coalesce(v_op, '(none)')));
    end if;
    if v_op = 'in' then
      if jsonb_typeof(v_value) <> 'array' or jsonb_array_length(v_value) = 0 then
        perform private.fail(422, 'invalid_segment_rule', '"in" needs a non-empty array');
      end if;
      return format('(%s = any (%L::text[]))', v_target,
        array(select jsonb_array_elements_text(v_value)));
    end if;
    if v_op in ('gt', 'gte', 'lt', 'lte') and jsonb_typeof(v_value) = 'number' then
      return format('(case when %1$s ~ ''^-?[0-9]{1,30}(\.[0-9]{1,30})?$'' then %1$s::numeric %2$s %3$s end)',
        v_target, case v_op when 'gt' then '>' when 'gte' then '>=' when 'lt' then '<' else '<=' end,
        private.segment_number(v_value));
    end if;
    return case v_op
      when 'eq' then format('(%s = %L)', v_target, v_value #>> '{}')
      when 'neq' then format('(%s is distinct from %L)', v_target, v_value #>> '{}')
      when 'contains' then format('(strpos(lower(%s), lower(%L)) > 0)', v_target, v_value #>> '{}')
      when 'starts_with' then format('(starts_with(lower(%s), lower(%L)))', v_target, v_value #>> '{}')
      when 'gt' then format('(%s > %L)', v_target, v_value #>> '{}')
      when 'gte' then format('(%s >= %L)', v_target, v_value #>> '{}')
      when 'lt' then format('(%s < %L)', v_target, v_value #>> '{}')
      when 'lte' then format('(%s <= %L)', v_target, v_value #>> '{}')
      else private.fail_text(422, 'invalid_segment_rule', format('Unknown operator %s', coalesce(v_op, '(none)')))
    end;
  end if;
  perform private.fail(422, 'invalid_segment_rule',
    format('Unknown segment rule with keys %s', (select string_agg(k, ', ') from jsonb_object_keys(p_rule) k)));
  return null;
end
$$;

revoke all on function private.segment_condition(jsonb, integer) from public, anon, authenticated;

grant execute on function private.segment_condition(jsonb, integer) to authenticated, service_role;
