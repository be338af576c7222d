-- wait_until across a year's end, and dates Postgres cannot make. Two faults of the step's due
-- time (private.flow_step_due, 20261212092000_flow_engine.sql):
--   - a yearly date took this year's anniversary, or next year's when this year's (plus the
--     offset) had passed; with an offset that crosses 1 January that is the wrong year: three
--     days before a 1 January birthday, reached on 30 December, went on at once (next year's
--     1 January minus three days had passed too), and three days after a 31 December birthday,
--     reached on 2 January, waited a whole year for a day that was tomorrow. It now takes the
--     first of the anniversaries around this year whose day (plus the offset) is not past,
--     as the date_attribute trigger counts it;
--   - a year 0000 (`0000-05-01`, as some shops store a birthday without its year) made
--     make_date fail, and with it the whole tick for every flow. The date is now read by
--     private.attribute_date, as the trigger reads it: such a value is no date, and the run goes
--     on at once, as it does without the attribute.
-- Everything else as before.

create or replace function private.flow_step_due(p_kind text, p_config jsonb, p_attributes jsonb, p_tz text, p_from timestamptz)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
declare
  v_at timestamptz;
  v_day date;
  v_today date;
  v_offset integer;
  v_tz text := coalesce(p_tz, 'UTC');
begin
  if p_kind = 'wait' then
    v_at := p_from + private.flow_duration(p_config);
    if p_config ? 'at' then
      v_at := private.next_time_of_day(v_at, p_config ->> 'at',
        case when p_config ? 'weekdays' then array(select jsonb_array_elements_text(p_config -> 'weekdays')::integer) end,
        v_tz);
    end if;
    return v_at;
  elsif p_kind = 'wait_for' then
    return p_from + private.flow_duration(p_config, 'timeout_');
  elsif p_kind = 'wait_until' then
    v_day := private.attribute_date(p_attributes ->> (p_config ->> 'attribute'));
    if v_day is null then
      return p_from;
    end if;
    v_offset := coalesce((p_config ->> 'offset_days')::integer, 0);
    v_today := (p_from at time zone v_tz)::date;
    if coalesce((p_config ->> 'yearly')::boolean, false) then
      -- The first anniversary whose day plus the offset is not past (a 29 February falls on
      -- the 28th in other years); the offset is at most 365 days, so it is one of four.
      select min(a.day) into v_day
      from generate_series(-1, 2) as g(n)
      cross join lateral (
        select (v_day + make_interval(years => extract(year from v_today)::integer - extract(year from v_day)::integer + g.n))::date
               + v_offset as day) as a
      where a.day >= v_today;
    else
      v_day := v_day + v_offset;
    end if;
    v_at := (v_day + coalesce(p_config ->> 'at', '09:00')::time) at time zone v_tz;
    return greatest(v_at, p_from);
  end if;
  return p_from;
end
$$;

revoke all on function private.flow_step_due(text, jsonb, jsonb, text, timestamptz) from public, anon, authenticated;
