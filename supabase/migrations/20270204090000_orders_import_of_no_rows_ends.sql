-- An orders file that holds only its header (a shop's export of a day without orders) left its
-- job `importing` for ever: an orders job ends when its last staged part is written, and a file
-- without rows has no part. The job took one of the workspace's three import slots and the
-- cron's attention on every tick. Contacts and products jobs already end at once; now an orders
-- job without rows ends `done` when its validation does (nothing imported, nothing failed), and
-- the jobs already stuck so end now.

-- functions -----------------------------------------------------------------------------------

-- Marks repeated order ids (or an order's lines that are not consecutive), then moves the job
-- on: to importing, or straight to done when the file has no rows.
create or replace function private.validate_orders_import(p_job_id uuid)
returns public.import_jobs
language plpgsql
security definer
set search_path = ''
set plan_cache_mode = force_custom_plan
as $$
declare
  v_job public.import_jobs;
begin
  select * into v_job from public.import_jobs j where j.id = p_job_id;
  update private.import_order_rows r
  set problem = case when private.import_has_items(v_job)
                  then format('the lines of order %s must be consecutive; it started on line %s', left(d.order_id, 50), d.first_line)
                  else format('order_id repeats line %s', d.first_line) end,
      problem_column = 'order_id'
  from (
    select s.record, btrim(s.order_id) as order_id, first_value(s.line) over w as first_line,
           first_value(s.record) over w as first_record, row_number() over w as n
    from private.import_order_rows s
    where s.job_id = p_job_id and s.problem is null
      and btrim(s.order_id) in (
        select btrim(e.order_id) from private.import_order_rows e
        where e.job_id = p_job_id and e.problem is null and btrim(e.order_id) <> ''
        group by 1 having count(*) > 1
      )
    window w as (partition by btrim(s.order_id) order by s.record)
  ) as d
  where r.job_id = p_job_id and r.record = d.record and d.n > 1
    and (not private.import_has_items(v_job) or d.record - d.first_record <> d.n - 1);
  update public.import_jobs j
  set status = case when j.rows_total = 0 then 'done' else 'importing' end,
      finished_at = case when j.rows_total = 0 then now() else j.finished_at end
  where j.id = p_job_id and j.status = 'validating'
  returning * into v_job;
  return v_job;
end
$$;

revoke all on function private.validate_orders_import(uuid) from public, anon, authenticated;

grant execute on function private.validate_orders_import(uuid) to service_role;

-- data ----------------------------------------------------------------------------------------

-- Orders jobs of a file without rows that stayed importing: done, as they would be now.
update public.import_jobs j
set status = 'done', finished_at = now()
where j.kind = 'orders' and j.status = 'importing' and j.rows_total = 0;
