-- analytics.rfm is public API: any signed-in user may pass any date. A date past what a
-- timestamp can hold (year 294276) overflowed inside the scoring (SQLSTATE 22008); a missing
-- date scored nobody. Both are now a 422, and the scoring itself is unchanged.

create or replace function analytics.rfm(p_as_of date)
returns table (
  workspace_id uuid, contact_id uuid, first_order_at timestamptz, last_order_at timestamptz,
  recency_days integer, frequency integer, monetary numeric(14, 2),
  r_score integer, f_score integer, m_score integer, rfm_code text, segment text
)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if p_as_of is null or p_as_of not between date '1900-01-01' and date '9999-12-31' then
    perform private.fail(422, 'invalid_as_of', 'The as-of date must be between 1900-01-01 and 9999-12-31');
  end if;
  return query
    select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at, s.recency_days,
           s.frequency, s.monetary, s.r_score, s.f_score, s.m_score,
           s.r_score::text || s.f_score::text || s.m_score::text, m.segment
    from private.rfm_scores(
      p_as_of,
      case when private.analytics_sees_all() then null else array(select private.user_workspace_ids()) end
    ) s
    join analytics.rfm_segment_map m on m.r_score = s.r_score and m.f_score = s.f_score;
end
$$;

revoke all on function analytics.rfm(date) from public, anon, authenticated;

grant execute on function analytics.rfm(date) to authenticated, growthbase_analyst;
