"""A shop's pages of orders (Shopify, WooCommerce and Shoptet syncs and webhooks all write
through private.upsert_orders and its private.upsert_customers) and of products
(private.upsert_products) read each table a few times per row written, whatever the planner
knows: a new project's tables have no statistics until they are analyzed (autovacuum does not
run everywhere), and a page's customers and products, estimated at one row, were matched to
the workspace's by plans that read all of them for every customer or product (rows x rows)."""

import uuid
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from tests.factories.statistics import (
    COMMERCE_TABLES,
    CONTACT_CHECK_TABLES,
    TENANT_TABLES,
    crowd_disposable_domains,
    crowd_erased_identities,
    crowd_order_lines,
    forget_statistics,
    read_since,
    reads,
)
from tests.factories.workspaces import create_user, make_project, one

Conn = psycopg.Connection[DictRow]


def page(first: int, count: int, tag: str, status: str) -> list[dict[str, Any]]:
    """`count` orders from order `first`, a customer per 2 orders, each order with a line."""
    return [
        {
            "external_id": f"O-{n}",
            "status": status,
            "placed_at": f"2026-05-{1 + n % 28:02d}T10:00:00+00:00",
            "total": f"{n % 90 + 10}.50",
            "currency": "EUR",
            "customer": {
                "external_id": f"C-{n // 2}",
                "email": f"c{n // 2}-{tag}@example.test",
                "first_name": "Name",
                "accepts_marketing": n % 3 == 0,
            },
            "items": [{"sku": f"S-{n % 50}", "name": "Item", "quantity": 1, "unit_price": "10.50"}],
        }
        for n in range(first, first + count)
    ]


def test_shop_pages_without_statistics_read_each_row_a_few_times(
    database_url: str, conn: Conn
) -> None:
    """Pages of 1,500 orders (750 customers) written with the statistics of the tables they
    touch removed: into an empty project, then a page overlapping it by half (its customers
    known by their Shopify id, half its orders changed), then the same customers from another
    shop (WooCommerce: known by email only). Each page reads each table at most 10 x its
    orders; a plan that reads the workspace's customers per customer reads hundreds of times.
    Another workspace holds 20,000 contacts (as other tests leave in a worker's database): a
    plan that scans every workspace's contacts once per page reads them all. It also holds
    20,000 erased identities, so that each contact's erasure check is a probe whatever earlier
    tests left (40 of them in one page are scanned per contact: 30,000 rows for this page)."""
    user = create_user(conn)
    other = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id in (%s, %s)",
        (user.workspace_id, other.workspace_id),
    )
    project = make_project(conn, user)
    tag = uuid.uuid4().hex[:6]
    orders = 1500
    pages = [
        ("first", "shopify", page(0, orders, tag, "paid")),
        ("overlapping", "shopify", page(orders // 2, orders, tag, "fulfilled")),
        ("another shop", "woocommerce", page(orders // 2, orders, tag, "paid")),
    ]
    steps: dict[str, dict[str, int]] = {}
    stored: dict[str, int] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        forget_statistics(tx, [*COMMERCE_TABLES, *TENANT_TABLES, *CONTACT_CHECK_TABLES])
        crowd_erased_identities(tx, other.workspace_id, 20000)
        crowd_disposable_domains(tx, 20000)
        tx.execute(
            "insert into public.contacts (workspace_id, email)"
            " select %s, 'other-' || n || %s from generate_series(1, 20000) as n",
            (other.workspace_id, f"-{tag}@example.test"),
        )
        for name, source, documents in pages:
            stored[name] = one(tx, "select count(*) as n from public.orders")["n"]
            before = reads(tx)
            written = one(
                tx,
                "select private.upsert_orders(%s, %s, %s) as n",
                (project, source, Jsonb(documents)),
            )
            assert written["n"] == orders
            steps[name] = read_since(tx, before)
        stored_now = one(
            tx,
            "select (select count(*) from public.orders where project_id = %(p)s) as orders,"
            " (select count(*) from public.orders where project_id = %(p)s"
            "  and status = 'fulfilled') as changed,"
            " (select count(*) from public.contacts where workspace_id = %(w)s) as contacts,"
            " (select count(*) from public.contact_external_ids where workspace_id = %(w)s)"
            "  as shop_ids",
            {"p": project, "w": user.workspace_id},
        )
        tx.rollback()
    # One contact per customer (1,125 of them), linked to each shop's id for them.
    assert (stored_now["orders"], stored_now["changed"]) == (2 * orders + orders // 2, orders)
    assert (stored_now["contacts"], stored_now["shop_ids"]) == (1125, 1125 + 750)
    # The orders' own triggers (customer facts, order events; not changed here) read the whole
    # orders table (every workspace's) once per statement: linear, bounded as such.
    for name, read in steps.items():
        orders_read = read.pop("orders", 0)
        assert orders_read <= 10 * orders + 3 * stored[name], (name, orders_read, stored[name])
    over = {
        name: {table: n for table, n in read.items() if n > 10 * orders}
        for name, read in steps.items()
    }
    assert over == {name: {} for name in steps}, steps


def products_page(count: int, variants: int, title: str) -> list[dict[str, Any]]:
    return [
        {
            "external_id": f"P-{n}",
            "title": f"{title} {n}",
            "price": "10.00",
            "currency": "EUR",
            "variants": [
                {"external_id": f"V-{n}-{v}", "sku": f"SKU-{n}-{v}", "price": "10.00"}
                for v in range(variants)
            ],
        }
        for n in range(count)
    ]


def test_shop_product_pages_without_statistics_read_each_row_a_few_times(
    database_url: str, conn: Conn
) -> None:
    """A page of 250 products of four variants (a Shopify page) written with the statistics
    removed, then the page again with each product renamed and listing three of its variants
    (the fourth removed). Each page reads each table at most 10 x the rows it lists. The
    project's lines naming the page's products, one per product by its shop ids and one by a
    variant's SKU, are linked by the first page. Another workspace holds 20,000 unlinked order
    lines, and the project 15,000 naming products it lacks: a page that reads every workspace's,
    or its project's, unlinked lines reads more than its bound."""
    user = create_user(conn)
    other = create_user(conn)
    project = make_project(conn, user)
    count = 250
    pages = [("first", products_page(count, 4, "Tea")), ("again", products_page(count, 3, "Mug"))]
    steps: dict[str, dict[str, int]] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        forget_statistics(tx, [*COMMERCE_TABLES, *TENANT_TABLES])
        crowd_order_lines(tx, make_project(conn, other), 20000, "X-")
        crowd_order_lines(tx, project, 15000, "OTHER-")
        tx.execute(
            "insert into public.orders (workspace_id, project_id, source, external_id, status,"
            " placed_at, total, currency)"
            " select p.workspace_id, p.id, 'shopify', 'PAGE-' || n, 'paid', '2025-01-01', 20,"
            " 'EUR' from public.projects p cross join generate_series(0, %s) as n where p.id = %s",
            (count - 1, project),
        )
        tx.execute(
            "insert into public.order_items (order_id, workspace_id, sku, name, quantity,"
            " unit_price, total, external_product_id, external_variant_id)"
            " select o.id, o.workspace_id, l.sku, 'Tea', 1, 10, 10, l.product, l.variant"
            " from generate_series(0, %s) as n"
            " join public.orders o on o.workspace_id = %s and o.source = 'shopify'"
            "  and o.external_id = 'PAGE-' || n"
            " cross join lateral (values ('P-' || n, 'V-' || n || '-0', null),"
            "  (null, null, 'SKU-' || n || '-1')) as l(product, variant, sku)",
            (count - 1, user.workspace_id),
        )
        for name, documents in pages:
            before = reads(tx)
            written = one(
                tx,
                "select private.upsert_products(%s, 'shopify', %s) as n",
                (project, Jsonb(documents)),
            )
            assert written["n"] == count
            steps[name] = read_since(tx, before)
        stored = one(
            tx,
            "select count(distinct p.id) filter (where p.title like 'Mug %%') as renamed,"
            " count(v.id) as variants,"
            " count(v.id) filter (where v.external_id like '%%-3') as removed_kept"
            " from public.products p join public.product_variants v on v.product_id = p.id"
            " where p.project_id = %s",
            (project,),
        )
        linked = one(
            tx,
            "select count(*) filter (where p.external_id = 'P-' || substr(o.external_id, 6)"
            "  and v.external_id in ('V-' || substr(o.external_id, 6) || '-0',"
            "                        'V-' || substr(o.external_id, 6) || '-1')) as named,"
            " count(*) filter (where i.product_id is null) as unlinked"
            " from public.orders o join public.order_items i on i.order_id = o.id"
            " left join public.products p on p.id = i.product_id"
            " left join public.product_variants v on v.id = i.variant_id"
            " where o.project_id = %s and o.external_id like 'PAGE-%%'",
            (project,),
        )
        tx.rollback()
    assert (stored["renamed"], stored["variants"], stored["removed_kept"]) == (
        count,
        3 * count,
        0,
    )
    assert (linked["named"], linked["unlinked"]) == (2 * count, 0)
    over = {
        name: {table: n for table, n in read.items() if n > 10 * 5 * count}
        for name, read in steps.items()
    }
    assert over == {name: {} for name in steps}, steps
