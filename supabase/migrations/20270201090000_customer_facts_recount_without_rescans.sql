-- Counting customers' facts again stays linear in the customers counted (issue 14, commerce data
-- at scale).
--
-- private.recount_customer_facts found the customers left without qualifying orders with `not
-- exists (select 1 from counted k where k.contact_id = c.contact_id)`. The planner cannot know how
-- many rows the `counted` CTE holds and planned a nested-loop anti-join that rescans the CTE
-- (spilled to a temporary file past work_mem) once per customer: a statement that deletes or
-- updates the orders of n customers compared n² ids. Removing 100,000 orders of about 80,000
-- customers (scripts/bench_rfm's write arms, a refund run, a project's orders deleted) took about
-- 7 minutes, nearly all of it in that one anti-join. The customers without a count are now the
-- customers EXCEPT the counted ones (a hashed or sorted set operation, never a rescan), the
-- pattern the order triggers already use to find changed versions.
--
-- Copied from its newest definition (20270127091000_rfm_kept_after_small_writes.sql) and changed
-- only in that anti-join: private.recount_customer_facts.

-- Counts the given customers again from their orders and writes their rows (deleting those left
-- without qualifying orders); the stale log row names the customers written or removed (merged
-- with the transaction's earlier ones). Callers lock the existing rows first. Each customer's
-- orders are read by a probe of their contact; the customers without a count by an EXCEPT.
create or replace function private.recount_customer_facts(p_contacts uuid[])
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  with customers as (
    select distinct c.contact_id from unnest(p_contacts) as c(contact_id)
  ),
  counted as (
    select distinct on (o.contact_id)
           o.contact_id, o.workspace_id, o.id as first_order_id, o.placed_at as first_order_at,
           o.project_id as first_order_project_id, o.source as first_order_source,
           last_value(o.id) over w as last_order_id, last_value(o.placed_at) over w as last_order_at,
           (count(*) over w)::integer as orders_count, coalesce(sum(o.base_total) over w, 0) as revenue
    from customers c
    cross join lateral (
      select o.contact_id, o.workspace_id, o.id, o.placed_at, o.project_id, o.source, o.base_total
      from public.orders o
      where o.contact_id = c.contact_id and o.status in ('paid', 'fulfilled')
      offset 0
    ) as o
    window w as (partition by o.contact_id order by o.placed_at, o.id
                 rows between unbounded preceding and unbounded following)
    order by o.contact_id, o.placed_at, o.id
  ),
  written as (
    insert into public.customer_facts as f (
      contact_id, workspace_id, first_order_id, first_order_at, first_order_project_id,
      first_order_source, last_order_id, last_order_at, orders_count, revenue
    )
    select c.contact_id, c.workspace_id, c.first_order_id, c.first_order_at,
           c.first_order_project_id, c.first_order_source, c.last_order_id, c.last_order_at,
           c.orders_count, c.revenue
    from counted c
    order by c.contact_id
    on conflict (contact_id, workspace_id) do update
    set workspace_id = excluded.workspace_id, first_order_id = excluded.first_order_id,
        first_order_at = excluded.first_order_at,
        first_order_project_id = excluded.first_order_project_id,
        first_order_source = excluded.first_order_source, last_order_id = excluded.last_order_id,
        last_order_at = excluded.last_order_at, orders_count = excluded.orders_count,
        revenue = excluded.revenue, updated_at = now()
    where (f.workspace_id, f.first_order_id, f.first_order_at, f.first_order_project_id,
           f.first_order_source, f.last_order_id, f.last_order_at, f.orders_count, f.revenue)
          is distinct from
          (excluded.workspace_id, excluded.first_order_id, excluded.first_order_at,
           excluded.first_order_project_id, excluded.first_order_source, excluded.last_order_id,
           excluded.last_order_at, excluded.orders_count, excluded.revenue)
    returning f.workspace_id, f.contact_id
  ),
  removed as (
    delete from public.customer_facts f
    where f.ctid = any (array(
      select g.ctid
      from (
        select c.contact_id from customers c
        except
        select k.contact_id from counted k
      ) as c
      cross join lateral (
        select g.ctid from public.customer_facts g where g.contact_id = c.contact_id offset 0
      ) as g
    ))
    returning f.workspace_id, f.contact_id
  )
  insert into private.rfm_stale as s (workspace_id, contacts)
  select x.workspace_id, case when count(*) <= 100 then array_agg(x.contact_id) end
  from (select w.workspace_id, w.contact_id from written w
        union all select r.workspace_id, r.contact_id from removed r) as x
  group by x.workspace_id
  on conflict (workspace_id, xact) do update
  set contacts = private.rfm_stale_contacts(s.contacts, excluded.contacts)
  where s.contacts is not null;
end
$$;

revoke all on function private.recount_customer_facts(uuid[]) from public, anon, authenticated;
