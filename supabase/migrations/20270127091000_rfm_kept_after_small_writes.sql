-- RFM read from kept scores right after a few customers changed (issue 14, performance: right
-- after an order the scores were counted from every customer's facts, 0.39 s against 0.3 s).
--
-- Kept scores (…_rfm_kept_scores.sql) hold while no write touched the workspace since the
-- refresh. A write changes some customers' values; every other customer's value is unchanged,
-- and so is every score whose cut points are unchanged. So:
--   * the stale log row of a writing transaction names the customers it changed (the facts
--     triggers on orders: customer_facts_add_orders, recount_customer_facts), merged across the
--     transaction's statements; more than 100 (so the row stays small, out of TOAST, and a
--     long transaction stops rewriting it), or a write that cannot name them (a deleted
--     contact: its kept row is already gone), leaves the list null (unknown);
--   * the refresh keeps, with the scores, the workspace's customers and, per cut point (the
--     value at ceil(k × n / 5), worst first, k = 1..4, per score), how many customers are worse
--     than it and how many worse or as good;
--   * a read of a stale workspace whose log names at most 1000 customers takes their kept values
--     and their current facts (a probe each), and checks that each cut point is still the value
--     at its position: the kept counts less the changed customers' kept values plus their
--     current ones (a cut point c is the value at position p exactly when fewer than p
--     customers are worse than c and at least p are worse or as good). When all twelve hold, the
--     other customers' kept scores are theirs, and the changed customers are scored against the
--     same cut points; otherwise (or when a changed customer's last order is after the as-of
--     date) the workspace is counted as before. The numbers are the same either way:
--     tests/rfm/test_rfm_from_facts.py compares every path with counting every order.
-- A webhook's order rarely moves a cut point (frequency and recency cut points sit in large
-- ties; money moves one when the order carries the customer across it), so a shop taking orders
-- one at a time reads kept scores between refreshes; an import changes thousands of customers and
-- is counted until the next refresh (pg_cron, every minute).
--
-- Redefined, each copied from its newest definition and changed only as said:
--   private.customer_facts_add_orders (20270102091000_customer_facts_one_order.sql),
--   private.recount_customer_facts (20270127090000_customer_facts_found_by_key.sql),
--   private.delete_rfm_snapshots, private.refresh_rfm_kept (20270102090000_rfm_kept_scores.sql),
--   private.rfm_scores_query (20270113090000_rfm_one_scoring_query.sql; private.rfm_scores,
--   analytics.rfm and analytics.rfm_segment_totals run its text, unchanged).

alter table private.rfm_stale add column contacts uuid[];

comment on column private.rfm_stale.contacts is
  'The customers whose facts the transaction changed in the workspace, when it named them all '
  '(at most 100); null: unknown.';

alter table private.rfm_kept add column customers integer;

alter table private.rfm_kept add column r_cuts date[];

alter table private.rfm_kept add column r_below integer[];

alter table private.rfm_kept add column r_through integer[];

alter table private.rfm_kept add column f_cuts integer[];

alter table private.rfm_kept add column f_below integer[];

alter table private.rfm_kept add column f_through integer[];

alter table private.rfm_kept add column m_cuts numeric[];

alter table private.rfm_kept add column m_below integer[];

alter table private.rfm_kept add column m_through integer[];

comment on column private.rfm_kept.customers is
  'The customers scored; with the cut points (r_cuts: last-order days, f_cuts: orders, m_cuts: '
  'money; worst first, at ceil(k × customers / 5)) and, per cut point, the customers worse than '
  'it (*_below) and worse or as good (*_through), so a read can tell whether they still hold.';

-- The customers a transaction's stale log row names after one more statement's: both lists, or
-- null (unknown) when either is unknown or together they name more than 100.
create function private.rfm_stale_contacts(p_logged uuid[], p_added uuid[])
returns uuid[]
language sql
immutable
set search_path = ''
as $$
  select case when p_logged is null or p_added is null
                   or cardinality(p_logged) + cardinality(p_added) > 100 then null
              else p_logged || p_added end
$$;

revoke all on function private.rfm_stale_contacts(uuid[], uuid[]) from public, anon, authenticated;

-- As in 20270102091000_customer_facts_one_order.sql; the stale log row names the customers
-- written (merged with the transaction's earlier ones).
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
      returning f.workspace_id, f.contact_id
    )
    insert into private.rfm_stale as s (workspace_id, contacts)
    select w.workspace_id, array[w.contact_id] from written w
    on conflict (workspace_id, xact) do update
    set contacts = private.rfm_stale_contacts(s.contacts, excluded.contacts)
    where s.contacts is not null;
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
    returning f.workspace_id, f.contact_id
  )
  insert into private.rfm_stale as s (workspace_id, contacts)
  select w.workspace_id, case when count(*) <= 100 then array_agg(w.contact_id) end
  from written w group by w.workspace_id
  on conflict (workspace_id, xact) do update
  set contacts = private.rfm_stale_contacts(s.contacts, excluded.contacts)
  where s.contacts is not null;
  return null;
end
$$;

revoke all on function private.customer_facts_add_orders() from public, anon, authenticated;


-- As in 20270127090000_customer_facts_found_by_key.sql; the stale log row names the customers
-- written or removed (merged with the transaction's earlier ones).
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
      from customers c
      cross join lateral (
        select g.ctid from public.customer_facts g where g.contact_id = c.contact_id offset 0
      ) as g
      where not exists (select 1 from counted k where k.contact_id = c.contact_id)
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


-- As in 20270102090000_rfm_kept_scores.sql; a deleted customer's kept row is gone, so the
-- transaction's stale row names no customers (unknown: its workspace is counted until refreshed).
create or replace function private.delete_rfm_snapshots()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ids uuid[];
begin
  select array_agg(g.id) into v_ids from gone g;
  if v_ids is null then
    return null;
  end if;
  lock table analytics.rfm_snapshots in row exclusive mode;
  if tg_table_name = 'contacts' then
    delete from analytics.rfm_snapshots s where s.contact_id = any (v_ids);
    -- Their kept scores go, and the rest of their workspaces' are stale (one customer fewer).
    delete from private.rfm_kept_scores k
    where (k.workspace_id, k.contact_id) in (select g.workspace_id, g.id from gone g);
    insert into private.rfm_stale as s (workspace_id)
    select distinct g.workspace_id from gone g
    where exists (select 1 from private.rfm_kept k where k.workspace_id = g.workspace_id)
    on conflict (workspace_id, xact) do update set contacts = null
    where s.contacts is not null;
  else
    delete from analytics.rfm_snapshots s where s.workspace_id = any (v_ids);
    delete from private.rfm_kept_scores k where k.workspace_id = any (v_ids);
    delete from private.rfm_stale s where s.workspace_id = any (v_ids);
  end if;
  return null;
end
$$;

revoke all on function private.delete_rfm_snapshots() from public, anon, authenticated;


-- As in 20270102090000_rfm_kept_scores.sql; it also keeps the workspace's customers, its cut
-- points and, for each, how many customers are worse than it and how many worse or as good.
create or replace function private.refresh_rfm_kept(p_workspace_ids uuid[] default null)
returns integer
language plpgsql
security definer
set search_path = ''
set work_mem = '64MB'
set jit = off
as $$
declare
  v_workspaces uuid[];
  v_refreshed integer;
begin
  delete from private.rfm_kept k
  where (p_workspace_ids is null or k.workspace_id = any (p_workspace_ids))
    and not exists (select 1 from public.customer_facts f where f.workspace_id = k.workspace_id);
  delete from private.rfm_kept_scores s
  where (p_workspace_ids is null or s.workspace_id = any (p_workspace_ids))
    and not exists (select 1 from private.rfm_kept k where k.workspace_id = s.workspace_id)
    and not exists (select 1 from public.customer_facts f where f.workspace_id = s.workspace_id);
  select array_agg(w.id order by w.id) into v_workspaces
  from (
    select w.id from public.workspaces w
    where (p_workspace_ids is null or w.id = any (p_workspace_ids))
      and (exists (select 1 from private.rfm_stale s where s.workspace_id = w.id)
           or not exists (select 1 from private.rfm_kept k where k.workspace_id = w.id))
      and exists (select 1 from public.customer_facts f where f.workspace_id = w.id)
    -- Locks are tried only for these workspaces.
    offset 0
  ) as w
  where pg_catalog.pg_try_advisory_xact_lock(
    pg_catalog.hashtext('growthbase.rfm_kept'), pg_catalog.hashtext(w.id::text)
  );
  if v_workspaces is null then
    return 0;
  end if;
  with cleared as (
    delete from private.rfm_stale s where s.workspace_id = any (v_workspaces)
  ),
  per_contact as materialized (
    select f.workspace_id, f.contact_id, f.first_order_at, f.last_order_at,
           (f.last_order_at at time zone 'UTC')::date as last_order_day,
           f.orders_count as frequency, f.revenue as monetary
    from public.customer_facts f
    where f.workspace_id = any (v_workspaces)
  ),
  cuts as materialized (
    select q.workspace_id, q.last_order_at, q.customers, q.r[1] as r1, q.r[2] as r2, q.r[3] as r3, q.r[4] as r4,
           q.f[1] as f1, q.f[2] as f2, q.f[3] as f3, q.f[4] as f4,
           q.m[1] as m1, q.m[2] as m2, q.m[3] as m3, q.m[4] as m4
    from (
      -- Worst first for every score (oldest last-order day, fewest orders, least money); a
      -- score is 1 plus the number of cut points strictly worse than the value.
      select c.workspace_id, max(c.last_order_at) as last_order_at, count(*)::integer as customers,
             percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
               within group (order by c.last_order_day) as r,
             percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
               within group (order by c.frequency) as f,
             percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
               within group (order by c.monetary) as m
      from per_contact c
      group by c.workspace_id
    ) as q
  ),
  -- Per cut point, the customers worse than it and those worse or as good: a read checks with
  -- them whether the cut points still hold after a few customers changed.
  bounds as (
    select t.workspace_id, t.last_order_at, t.customers,
           array[t.r1, t.r2, t.r3, t.r4] as r_cuts,
           array[count(*) filter (where c.last_order_day < t.r1), count(*) filter (where c.last_order_day < t.r2),
                 count(*) filter (where c.last_order_day < t.r3), count(*) filter (where c.last_order_day < t.r4)]::integer[] as r_below,
           array[count(*) filter (where c.last_order_day <= t.r1), count(*) filter (where c.last_order_day <= t.r2),
                 count(*) filter (where c.last_order_day <= t.r3), count(*) filter (where c.last_order_day <= t.r4)]::integer[] as r_through,
           array[t.f1, t.f2, t.f3, t.f4] as f_cuts,
           array[count(*) filter (where c.frequency < t.f1), count(*) filter (where c.frequency < t.f2),
                 count(*) filter (where c.frequency < t.f3), count(*) filter (where c.frequency < t.f4)]::integer[] as f_below,
           array[count(*) filter (where c.frequency <= t.f1), count(*) filter (where c.frequency <= t.f2),
                 count(*) filter (where c.frequency <= t.f3), count(*) filter (where c.frequency <= t.f4)]::integer[] as f_through,
           array[t.m1, t.m2, t.m3, t.m4]::numeric[] as m_cuts,
           array[count(*) filter (where c.monetary < t.m1), count(*) filter (where c.monetary < t.m2),
                 count(*) filter (where c.monetary < t.m3), count(*) filter (where c.monetary < t.m4)]::integer[] as m_below,
           array[count(*) filter (where c.monetary <= t.m1), count(*) filter (where c.monetary <= t.m2),
                 count(*) filter (where c.monetary <= t.m3), count(*) filter (where c.monetary <= t.m4)]::integer[] as m_through
    from cuts t
    join per_contact c on c.workspace_id = t.workspace_id
    group by t.workspace_id, t.last_order_at, t.customers, t.r1, t.r2, t.r3, t.r4, t.f1, t.f2,
             t.f3, t.f4, t.m1, t.m2, t.m3, t.m4
  ),
  scored as (
    select c.*, m.segment
    from (
      select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at, c.last_order_day,
             c.frequency, c.monetary::numeric(14, 2) as monetary,
             1 + (c.last_order_day > t.r1)::integer + (c.last_order_day > t.r2)::integer
               + (c.last_order_day > t.r3)::integer + (c.last_order_day > t.r4)::integer as r_score,
             1 + (c.frequency > t.f1)::integer + (c.frequency > t.f2)::integer
               + (c.frequency > t.f3)::integer + (c.frequency > t.f4)::integer as f_score,
             1 + (c.monetary > t.m1)::integer + (c.monetary > t.m2)::integer
               + (c.monetary > t.m3)::integer + (c.monetary > t.m4)::integer as m_score
      from per_contact c
      join cuts t on t.workspace_id = c.workspace_id
      offset 0
    ) as c
    join analytics.rfm_segment_map m on m.r_score = c.r_score and m.f_score = c.f_score
  ),
  removed as (
    delete from private.rfm_kept_scores k
    where k.workspace_id = any (v_workspaces)
      and not exists (select 1 from per_contact c
                      where c.workspace_id = k.workspace_id and c.contact_id = k.contact_id)
  ),
  written as (
    insert into private.rfm_kept_scores as k (
      workspace_id, contact_id, first_order_at, last_order_at, last_order_day, frequency,
      monetary, r_score, f_score, m_score, rfm_code, segment
    )
    select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at, s.last_order_day,
           s.frequency, s.monetary, s.r_score, s.f_score, s.m_score,
           (100 * s.r_score + 10 * s.f_score + s.m_score)::text, s.segment
    from scored s
    order by s.workspace_id, s.contact_id
    on conflict (workspace_id, contact_id) do update
    set first_order_at = excluded.first_order_at, last_order_at = excluded.last_order_at,
        last_order_day = excluded.last_order_day, frequency = excluded.frequency,
        monetary = excluded.monetary, r_score = excluded.r_score, f_score = excluded.f_score,
        m_score = excluded.m_score, rfm_code = excluded.rfm_code, segment = excluded.segment
    where (k.first_order_at, k.last_order_at, k.frequency, k.monetary, k.r_score, k.f_score,
           k.m_score, k.segment)
          is distinct from
          (excluded.first_order_at, excluded.last_order_at, excluded.frequency,
           excluded.monetary, excluded.r_score, excluded.f_score, excluded.m_score,
           excluded.segment)
  )
  insert into private.rfm_kept as k (
    workspace_id, last_order_at, customers, r_cuts, r_below, r_through, f_cuts, f_below,
    f_through, m_cuts, m_below, m_through
  )
  select t.workspace_id, t.last_order_at, t.customers, t.r_cuts, t.r_below, t.r_through,
         t.f_cuts, t.f_below, t.f_through, t.m_cuts, t.m_below, t.m_through
  from bounds t
  on conflict (workspace_id) do update
  set last_order_at = excluded.last_order_at, customers = excluded.customers,
      r_cuts = excluded.r_cuts, r_below = excluded.r_below, r_through = excluded.r_through,
      f_cuts = excluded.f_cuts, f_below = excluded.f_below, f_through = excluded.f_through,
      m_cuts = excluded.m_cuts, m_below = excluded.m_below, m_through = excluded.m_through,
      refreshed_at = now();
  get diagnostics v_refreshed = row_count;
  return v_refreshed;
end
$$;

revoke all on function private.refresh_rfm_kept(uuid[]) from public, anon, authenticated;


-- As in 20270113090000_rfm_one_scoring_query.sql ($1 the as-of date, $2 the workspaces, null:
-- all; with p_segments, $3 the segment names), and kept scores also serve a stale workspace
-- whose log names its changed customers (at most 1000) when its cut points still hold.
create or replace function private.rfm_scores_query(p_segments boolean)
returns text
language sql
immutable
set search_path = ''
as $query$
  select pg_catalog.format(
    $scores$
  with fresh as (
    select k.workspace_id from private.rfm_kept k
    where ($2 is null or k.workspace_id = any ($2))
      and k.last_order_at < (($1 + 1)::timestamp at time zone 'UTC')
      and not exists (select 1 from private.rfm_stale s where s.workspace_id = k.workspace_id)
  ),
  -- Kept workspaces whose stale log names every customer changed since (at most 1000).
  candidates as materialized (
    select k.workspace_id, k.customers, k.r_cuts, k.r_below, k.r_through, k.f_cuts, k.f_below,
           k.f_through, k.m_cuts, k.m_below, k.m_through
    from private.rfm_kept k
    where ($2 is null or k.workspace_id = any ($2))
      and k.last_order_at < (($1 + 1)::timestamp at time zone 'UTC')
      and k.customers is not null
      and exists (select 1 from private.rfm_stale s where s.workspace_id = k.workspace_id)
      and not exists (select 1 from private.rfm_stale s
                      where s.workspace_id = k.workspace_id and s.contacts is null)
      and (select sum(cardinality(s.contacts)) from private.rfm_stale s
           where s.workspace_id = k.workspace_id) <= 1000
  ),
  -- Their changed customers: kept values (none for a new customer) and current facts (none for
  -- one who is no longer a customer), each found by its key.
  changes as materialized (
    select c.workspace_id, x.contact_id, o.last_order_day as old_day, o.frequency as old_f,
           o.monetary as old_m, n.first_order_at, n.last_order_at,
           (n.last_order_at at time zone 'UTC')::date as new_day, n.orders_count as new_f,
           n.revenue as new_m
    from candidates c
    cross join lateral (
      select distinct x.contact_id
      from private.rfm_stale s cross join unnest(s.contacts) as x(contact_id)
      where s.workspace_id = c.workspace_id
    ) as x
    left join lateral (
      select o.last_order_day, o.frequency, o.monetary from private.rfm_kept_scores o
      where o.workspace_id = c.workspace_id and o.contact_id = x.contact_id
      offset 0
    ) as o on true
    -- By the key's contact alone (a contact is in one workspace), so no plan reads the
    -- workspace's facts through their other index.
    left join lateral (
      select n.workspace_id, n.first_order_at, n.last_order_at, n.orders_count, n.revenue
      from public.customer_facts n
      where n.contact_id = x.contact_id
      offset 0
    ) as n on n.workspace_id = c.workspace_id
  ),
  -- Those whose every kept cut point is still the value at its position: the kept counts less
  -- the changed customers' kept values plus their current ones. Their other customers keep
  -- their kept scores; the changed ones are scored by the same cut points.
  adjusted as materialized (
    select c.workspace_id
    from candidates c
    cross join lateral (
      select c.customers - count(x.old_f)::integer + count(x.new_f)::integer as customers,
             count(*) filter (where x.last_order_at >= (($1 + 1)::timestamp at time zone 'UTC')) as ahead
      from changes x where x.workspace_id = c.workspace_id
    ) as d
    where d.ahead = 0
      and not exists (
        select 1
        from generate_series(1, 4) as k(k)
        cross join lateral (
          select (k.k * d.customers + 4) / 5 as position,
                 c.r_below[k.k] - count(*) filter (where x.old_day < c.r_cuts[k.k])
                   + count(*) filter (where x.new_day < c.r_cuts[k.k]) as r_below,
                 c.r_through[k.k] - count(*) filter (where x.old_day <= c.r_cuts[k.k])
                   + count(*) filter (where x.new_day <= c.r_cuts[k.k]) as r_through,
                 c.f_below[k.k] - count(*) filter (where x.old_f < c.f_cuts[k.k])
                   + count(*) filter (where x.new_f < c.f_cuts[k.k]) as f_below,
                 c.f_through[k.k] - count(*) filter (where x.old_f <= c.f_cuts[k.k])
                   + count(*) filter (where x.new_f <= c.f_cuts[k.k]) as f_through,
                 c.m_below[k.k] - count(*) filter (where x.old_m < c.m_cuts[k.k])
                   + count(*) filter (where x.new_m < c.m_cuts[k.k]) as m_below,
                 c.m_through[k.k] - count(*) filter (where x.old_m <= c.m_cuts[k.k])
                   + count(*) filter (where x.new_m <= c.m_cuts[k.k]) as m_through
          from changes x where x.workspace_id = c.workspace_id
        ) as t
        where not (t.r_below < t.position and t.position <= t.r_through
                   and t.f_below < t.position and t.position <= t.f_through
                   and t.m_below < t.position and t.position <= t.m_through)
      )
  ),
  kept as materialized (
    select f.workspace_id from fresh f union all select a.workspace_id from adjusted a
  ),
  settled as (
    select f.workspace_id, f.contact_id, f.first_order_at, f.last_order_at,
           f.orders_count as frequency, f.revenue as monetary
    from public.customer_facts f
    where f.last_order_at < (($1 + 1)::timestamp at time zone 'UTC')
      and ($2 is null or f.workspace_id = any ($2))
      and not exists (select 1 from kept k where k.workspace_id = f.workspace_id)
  ),
  recounted as (
    select o.workspace_id, o.contact_id, min(o.placed_at) as first_order_at,
           max(o.placed_at) as last_order_at, count(*)::integer as frequency,
           coalesce(sum(o.base_total), 0) as monetary
    from public.customer_facts f
    join public.orders o on o.contact_id = f.contact_id and o.workspace_id = f.workspace_id
    where f.first_order_at < (($1 + 1)::timestamp at time zone 'UTC')
      and f.last_order_at >= (($1 + 1)::timestamp at time zone 'UTC')
      and ($2 is null or f.workspace_id = any ($2))
      and not exists (select 1 from kept k where k.workspace_id = f.workspace_id)
      and o.status in ('paid', 'fulfilled')
      and o.placed_at < (($1 + 1)::timestamp at time zone 'UTC')
    group by o.workspace_id, o.contact_id
  ),
  per_contact as (
    select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at,
           $1 - (c.last_order_at at time zone 'UTC')::date as recency_days,
           c.frequency, c.monetary, (c.monetary * 100)::bigint as cents
    from (select * from settled union all select * from recounted) as c
  ),
  cuts as materialized (
    select q.workspace_id, q.r[1] as r1, q.r[2] as r2, q.r[3] as r3, q.r[4] as r4,
           q.f[1] as f1, q.f[2] as f2, q.f[3] as f3, q.f[4] as f4,
           q.m[1] as m1, q.m[2] as m2, q.m[3] as m3, q.m[4] as m4
    from (
      select c.workspace_id,
             percentile_disc(array[0.2 + 1e-10, 0.4 + 1e-10, 0.6 + 1e-10, 0.8 + 1e-10])
               within group (order by c.recency_days) as r,
             percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
               within group (order by c.frequency) as f,
             percentile_disc(array[0.2 - 1e-10, 0.4 - 1e-10, 0.6 - 1e-10, 0.8 - 1e-10])
               within group (order by c.cents) as m
      from per_contact c
      group by c.workspace_id
    ) as q
  ),
  counted as (
    select c.workspace_id, c.contact_id, c.first_order_at, c.last_order_at, c.recency_days,
           c.frequency, c.monetary::numeric(14, 2) as monetary,
           case when c.recency_days >= t.r4 then 1 when c.recency_days >= t.r3 then 2
                when c.recency_days >= t.r2 then 3 when c.recency_days >= t.r1 then 4 else 5 end as r_score,
           case when c.frequency <= t.f1 then 1 when c.frequency <= t.f2 then 2
                when c.frequency <= t.f3 then 3 when c.frequency <= t.f4 then 4 else 5 end as f_score,
           case when c.cents <= t.m1 then 1 when c.cents <= t.m2 then 2
                when c.cents <= t.m3 then 3 when c.cents <= t.m4 then 4 else 5 end as m_score
    from per_contact c
    join cuts t on t.workspace_id = c.workspace_id
    -- Only when some workspace asked for has customers and no kept scores that hold.
    where exists (
      select 1 from public.workspaces w
      where ($2 is null or w.id = any ($2))
        and not exists (select 1 from kept k where k.workspace_id = w.id)
        and exists (select 1 from public.customer_facts x where x.workspace_id = w.id)
    )
    -- The scores are computed once per customer, not again for each use below.
    offset 0
  )
  select s.workspace_id, s.contact_id, s.first_order_at, s.last_order_at,
         $1 - s.last_order_day, s.frequency, s.monetary, s.r_score::integer,
         s.f_score::integer, s.m_score::integer%1$s
  from private.rfm_kept_scores s
  where s.workspace_id = any (array(select k.workspace_id from kept k))
    and not exists (select 1 from changes x
                    where x.workspace_id = s.workspace_id and x.contact_id = s.contact_id)
  union all
  select c.*%2$s
  from (
    select x.workspace_id, x.contact_id, x.first_order_at, x.last_order_at, $1 - x.new_day,
           x.new_f, x.new_m::numeric(14, 2),
           1 + (x.new_day > a.r_cuts[1])::integer + (x.new_day > a.r_cuts[2])::integer
             + (x.new_day > a.r_cuts[3])::integer + (x.new_day > a.r_cuts[4])::integer as r_score,
           1 + (x.new_f > a.f_cuts[1])::integer + (x.new_f > a.f_cuts[2])::integer
             + (x.new_f > a.f_cuts[3])::integer + (x.new_f > a.f_cuts[4])::integer as f_score,
           1 + (x.new_m > a.m_cuts[1])::integer + (x.new_m > a.m_cuts[2])::integer
             + (x.new_m > a.m_cuts[3])::integer + (x.new_m > a.m_cuts[4])::integer as m_score
    from changes x
    join candidates a on a.workspace_id = x.workspace_id
    where x.new_f is not null
      and exists (select 1 from adjusted j where j.workspace_id = x.workspace_id)
  ) as c
  union all
  select c.*%2$s from counted c
$scores$,
    case when p_segments then ', s.rfm_code, s.segment' else '' end,
    case when p_segments
         then ', (100 * c.r_score + 10 * c.f_score + c.m_score)::text,'
              ' $3[5 * (c.r_score - 1) + c.f_score]'
         else '' end
  )
$query$;

revoke all on function private.rfm_scores_query(boolean) from public, anon, authenticated;
