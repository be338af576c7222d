"""The order and line triggers of customer facts and order events read the rows a statement
changed and their customers' rows, whatever the planner knows: a new project's tables have no
statistics until something analyzes them, and a plan that read every workspace's orders,
contacts or facts for a statement of a hundred orders went unseen while the tables were small."""

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.factories.statistics import forget_statistics, read_since, reads
from tests.factories.workspaces import create_user, make_project, one

Conn = psycopg.Connection[Any]

TABLES = ["orders", "order_items", "customer_facts", "contacts", "products"]


def shop(conn: Conn, customers: int, orders_each: int, lines: bool) -> tuple[uuid.UUID, str]:
    """A workspace with `customers` customers of `orders_each` paid orders (the newest an hour
    old), five products per customer and, with `lines`, a line per order. Returns its id and
    the tag its orders' ids start with."""
    user = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (user.workspace_id,)
    )
    project = make_project(conn, user)
    tag = uuid.uuid4().hex[:8]
    params = {
        "ws": user.workspace_id,
        "project": project,
        "tag": tag,
        "customers": customers,
        "orders": orders_each,
    }
    conn.execute(
        "insert into public.contacts (workspace_id, email)"
        " select %(ws)s, %(tag)s || '-' || n || '@example.test'"
        " from generate_series(1, %(customers)s) as n",
        params,
    )
    conn.execute(
        "insert into public.products (workspace_id, project_id, source, external_id, title,"
        " category)"
        " select %(ws)s, %(project)s, 'csv', %(tag)s || '-p' || n, 'Product ' || n, 'C' || n %% 7"
        " from generate_series(1, 5 * %(customers)s) as n",
        params,
    )
    conn.execute(
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency, base_total)"
        " select %(ws)s, %(project)s, c.id, 'csv', %(tag)s || '-' || c.email || '-' || k, 'paid',"
        " now() - k * interval '1 hour', 10 + k, 'EUR', 10 + k"
        " from public.contacts c cross join generate_series(1, %(orders)s) as k"
        " where c.workspace_id = %(ws)s",
        params,
    )
    if lines:
        conn.execute(
            "insert into public.order_items (workspace_id, order_id, name, quantity, unit_price,"
            " total)"
            " select o.workspace_id, o.id, 'Line', 1, o.total, o.total"
            " from public.orders o where o.workspace_id = %(ws)s",
            params,
        )
    return user.workspace_id, tag


def test_order_and_line_writes_without_statistics_read_their_customers_only(
    conn: Conn, database_url: str
) -> None:
    """Beside a workspace of 20,000 orders, lines and products and 4,000 customers, another's
    100 newest orders (of 100 customers with two orders each) get two lines each, have them
    changed, are refunded and deleted, each a statement of many rows, with the tables'
    statistics removed. Each statement reads at most 10 rows of a table per order it changed
    (before: every workspace's orders, contacts or facts, 20,000 and more), and the facts and
    the order events are what the writes say."""
    shop(conn, 4000, 5, lines=True)
    workspace, tag = shop(conn, 100, 2, lines=False)
    for table in TABLES:
        conn.execute(f"analyze public.{table}")
    newest = [
        r["id"]
        for r in conn.execute(
            "select o.id from public.orders o where o.workspace_id = %s"
            " and o.external_id like '%%-1' order by o.id",
            (workspace,),
        ).fetchall()
    ]
    assert len(newest) == 100
    products = [
        one(
            conn,
            "select id from public.products where workspace_id = %s and external_id = %s",
            (workspace, f"{tag}-p{n}"),
        )["id"]
        for n in (1, 2)
    ]
    steps: dict[str, dict[str, int]] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        forget_statistics(tx, [f"public.{table}" for table in TABLES])
        # The statements find their own rows by their row ids, so only the triggers read by key.
        targets = [
            r["ctid"]
            for r in tx.execute(
                "select ctid from public.orders where id = any (%s)", (newest,)
            ).fetchall()
        ]
        statements = {
            "lines added": (
                "insert into public.order_items (workspace_id, order_id, name, quantity,"
                " unit_price, total, product_id)"
                " select %s, o.id, 'Line ' || l, 1, 5 * l, 5 * l, (%s::uuid[])[l]"
                " from unnest(%s::uuid[]) as o(id) cross join generate_series(1, 2) as l",
                (workspace, products, newest),
            ),
            "lines changed": (
                "update public.order_items set total = 30"
                " where ctid = any (array(select i.ctid from unnest(%s::uuid[]) as o(id)"
                "  cross join lateral (select i.ctid from public.order_items i"
                "   where i.order_id = o.id and i.name = 'Line 1' offset 0) as i))",
                (newest,),
            ),
            "orders refunded": (
                "update public.orders set status = 'refunded' where ctid = any (%s::tid[])",
                (targets,),
            ),
        }
        for name, (query, params) in statements.items():
            before = reads(tx)
            tx.execute(query, params)
            steps[name] = {t: n for t, n in read_since(tx, before).items() if t in TABLES}
            if name == "lines changed":
                # The refund below changes the orders the lines' statements left as they were.
                facts = one(
                    tx,
                    "select count(*) filter (where f.last_product_title = 'Line 1') as line_one,"
                    " count(*) filter (where f.last_category = 'C1') as category,"
                    " (select count(*) from public.contact_events e where e.workspace_id = %s"
                    "  and e.type = 'order_placed' and e.properties ->> 'lines' = 'true'"
                    "  and jsonb_array_length(e.properties -> 'product_ids') = 2) as events"
                    " from public.customer_facts f where f.workspace_id = %s",
                    (workspace, workspace),
                )
                # Each customer's newest order's best line is now Line 1 (30 against 10).
                assert facts == {"line_one": 100, "category": 100, "events": 100}
        after_refund = one(
            tx,
            "select count(*) as customers, sum(orders_count) as orders,"
            " count(*) filter (where last_product_title is null) as without_product"
            " from public.customer_facts where workspace_id = %s",
            (workspace,),
        )
        drift = tx.execute(
            "select * from analytics.verify_customer_facts() where workspace_id = %s",
            (workspace,),
        ).fetchall()
        tx.rollback()
    # The refunded orders no longer count; the older order has no lines.
    assert after_refund == {"customers": 100, "orders": 100, "without_product": 100}
    assert drift == []
    over = {
        step: {table: n for table, n in read.items() if n > 10 * 100}
        for step, read in steps.items()
    }
    assert over == {step: {} for step in steps}, steps
