-- Customer facts for a statement of one order (issue 14, performance: facts maintenance on one
-- order at a time cost about a third of the order's own insert). The trigger on inserted orders
-- writes a one-order statement's facts with a plain upsert of that order; statements of more
-- orders rank them per customer as before (…_rfm_kept_scores.sql). The same rows either way.

create or replace function private.customer_facts_add_orders()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- One order (a webhook, an edge call, a shop's single order): written as it is, without
  -- ranking the statement's orders per customer (sort, window and distinct), whose start-up
  -- was most of a one-order statement's cost.
  perform 1 from new_orders offset 1;
  if not found then
    with written as (
      insert into public.customer_facts as f (
        contact_id, workspace_id, first_order_id, first_order_at, first_order_project_id,
        first_order_source, last_order_id, last_order_at, orders_count, revenue
      )
      select n.contact_id, n.workspace_id, n.id, n.placed_at, n.project_id, n.source, n.id,
             n.placed_at, 1, coalesce(n.base_total, 0)
      from new_orders n
      where n.contact_id is not null and n.status in ('paid', 'fulfilled')
      on conflict (contact_id, workspace_id) do update
      set first_order_id = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                                then excluded.first_order_id else f.first_order_id end,
          first_order_project_id = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                                        then excluded.first_order_project_id else f.first_order_project_id end,
          first_order_source = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                                    then excluded.first_order_source else f.first_order_source end,
          first_order_at = least(f.first_order_at, excluded.first_order_at),
          last_order_id = case when (excluded.last_order_at, excluded.last_order_id) > (f.last_order_at, f.last_order_id)
                               then excluded.last_order_id else f.last_order_id end,
          last_order_at = greatest(f.last_order_at, excluded.last_order_at),
          orders_count = f.orders_count + excluded.orders_count,
          revenue = f.revenue + excluded.revenue,
          updated_at = now()
      returning f.workspace_id
    )
    insert into private.rfm_stale (workspace_id)
    select w.workspace_id from written w
    on conflict do nothing;
    return null;
  end if;
  with written as (
    insert into public.customer_facts as f (
      contact_id, workspace_id, first_order_id, first_order_at, first_order_project_id,
      first_order_source, last_order_id, last_order_at, orders_count, revenue
    )
    select a.contact_id, a.workspace_id, a.first_order_id, a.first_order_at,
           a.first_order_project_id, a.first_order_source, a.last_order_id, a.last_order_at,
           a.orders_count, a.revenue
    from (
      select distinct on (n.contact_id)
             n.contact_id, n.workspace_id, n.id as first_order_id, n.placed_at as first_order_at,
             n.project_id as first_order_project_id, n.source as first_order_source,
             last_value(n.id) over w as last_order_id, last_value(n.placed_at) over w as last_order_at,
             (count(*) over w)::integer as orders_count, coalesce(sum(n.base_total) over w, 0) as revenue
      from new_orders n
      where n.contact_id is not null and n.status in ('paid', 'fulfilled')
      window w as (partition by n.contact_id order by n.placed_at, n.id
                   rows between unbounded preceding and unbounded following)
      order by n.contact_id, n.placed_at, n.id
    ) as a
    order by a.contact_id
    on conflict (contact_id, workspace_id) do update
    set first_order_id = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                              then excluded.first_order_id else f.first_order_id end,
        first_order_project_id = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                                      then excluded.first_order_project_id else f.first_order_project_id end,
        first_order_source = case when (excluded.first_order_at, excluded.first_order_id) < (f.first_order_at, f.first_order_id)
                                  then excluded.first_order_source else f.first_order_source end,
        first_order_at = least(f.first_order_at, excluded.first_order_at),
        last_order_id = case when (excluded.last_order_at, excluded.last_order_id) > (f.last_order_at, f.last_order_id)
                             then excluded.last_order_id else f.last_order_id end,
        last_order_at = greatest(f.last_order_at, excluded.last_order_at),
        orders_count = f.orders_count + excluded.orders_count,
        revenue = f.revenue + excluded.revenue,
        updated_at = now()
    returning f.workspace_id
  )
  insert into private.rfm_stale (workspace_id)
  select distinct w.workspace_id from written w
  on conflict do nothing;
  return null;
end
$$;

revoke all on function private.customer_facts_add_orders() from public, anon, authenticated;
