"""An orders import's parts, and a products import's chunks, read each row of the tables they
touch a few times, whatever the planner knows of them: a new project's tables, and the import's
own working tables, have no statistics until they are analyzed, and a plan that read all of a
part's lines, or all of the project's products, once per order or product (rows x rows) went
unseen while the tables were small."""

import threading
import uuid
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row

from api.core.db import Database
from tests.factories.imports import importing_job
from tests.factories.statistics import (
    COMMERCE_TABLES,
    CONTACT_CHECK_TABLES,
    TENANT_TABLES,
    crowd_disposable_domains,
    crowd_erased_identities,
    forget_statistics,
    read_since,
    reads,
)
from tests.factories.workspaces import create_user, make_project, one, wait_until_blocked

Conn = psycopg.Connection[DictRow]

TABLES = [
    *COMMERCE_TABLES,
    "private.import_order_lines",
    "private.import_order_heads",
    "private.import_order_customers",
]


def orders_file(first: int, count: int, tag: str, status: str) -> bytes:
    """`count` orders of two lines each from order `first`; a customer per 2 orders."""
    header = (
        "order_id,placed_at,status,total,currency,email,first_name,customer_id,item_sku,"
        "item_name,item_quantity,item_unit_price,item_product_id,item_variant_id\n"
    )
    rows = "".join(
        f"O-{n},2026-05-{1 + n % 28:02d}T10:00:00Z,{status},,EUR,c{n // 2}-{tag}@example.test,"
        f"Name,C{n // 2},S-{n % 300}-{line},Item,1,{n % 90 + 10}.50,"
        f"P-{n % 300},V-{n % 300}-{line}\n"
        for n in range(first, first + count)
        for line in range(2)
    )
    return (header + rows).encode()


def test_an_orders_part_without_statistics_reads_each_row_a_few_times(
    database: Database, database_url: str, conn: Conn
) -> None:
    """Two parts of 3,000 lines (1,500 orders of two lines, 750 customers) staged and written
    with the statistics of the tables they touch removed: into an empty project with a catalog,
    then into one that has the first part's orders (half of the second's are there, their status
    changed). Each step reads each table at most 10 x the part's lines. Another workspace's
    20,000 erased identities make each new contact's erasure check a probe, as in production,
    whatever few rows earlier tests left in a page the planner would scan per contact."""
    user = create_user(conn)
    other = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (user.workspace_id,)
    )
    project = make_project(conn, user)
    tag = uuid.uuid4().hex[:6]
    rows = 3000
    conn.execute(
        "insert into public.products (workspace_id, project_id, source, external_id, title)"
        " select %s, %s, 'csv', 'P-' || n, 'Product ' || n from generate_series(0, 299) as n",
        (user.workspace_id, project),
    )
    conn.execute(
        "insert into public.product_variants (workspace_id, product_id, external_id, title)"
        " select p.workspace_id, p.id, replace(p.external_id, 'P-', 'V-') || '-' || l, 'V'"
        " from public.products p cross join generate_series(0, 1) as l where p.project_id = %s",
        (project,),
    )
    first = importing_job(database, user, "orders", project, orders_file(0, rows // 2, tag, "paid"))
    second = importing_job(
        database, user, "orders", project, orders_file(rows // 4, rows // 2, tag, "fulfilled")
    )
    # The steps' own analyze then finds nothing changed since this one.
    for table in TABLES:
        conn.execute(f"analyze {table}")
    steps: dict[str, dict[str, int]] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        forget_statistics(tx, [*TABLES, *TENANT_TABLES, *CONTACT_CHECK_TABLES])
        crowd_erased_identities(tx, other.workspace_id, 20000)
        crowd_disposable_domains(tx, 20000)
        # Another workspace's 40,000 order lines (no product linked), rolled back.
        tx.execute(
            "with p as (insert into public.projects (workspace_id, name, type, website_url)"
            " values (%(ws)s, 'Other', 'eshop', 'https://other.example') returning id),"
            " o as (insert into public.orders (workspace_id, project_id, source, external_id,"
            " status, placed_at, total, currency) select %(ws)s, p.id, 'csv', 'x-' || n, 'paid',"
            " now(), 10, 'EUR' from p, generate_series(1, 400) as n returning id)"
            " insert into public.order_items (order_id, workspace_id, name, quantity, unit_price,"
            " total) select o.id, %(ws)s, 'Line', 1, 10, 10 from o, generate_series(1, 100)",
            {"ws": other.workspace_id},
        )
        for name, job in (("first", first), ("second", second)):
            before = reads(tx)
            staged = one(tx, "select * from private.stage_orders_chunk(%s, %s)", (job["id"], rows))
            assert staged["status"] == "importing"
            steps[f"stage {name}"] = read_since(tx, before)
            before = reads(tx)
            wrote = one(tx, "select * from private.write_orders_chunk(%s)", (job["id"],))
            assert wrote["status"] == "done"
            steps[f"write {name}"] = read_since(tx, before)
        written = one(
            tx,
            "select count(*) as orders, count(*) filter (where o.status = 'fulfilled') as changed,"
            " (select count(*) from public.order_items i where i.order_id in"
            "  (select id from public.orders where project_id = %s)) as lines,"
            " (select count(*) from public.order_items i where i.product_id is not null"
            "  and i.variant_id is not null and i.workspace_id = %s) as linked"
            " from public.orders o where o.project_id = %s",
            (project, user.workspace_id, project),
        )
        tx.rollback()
    assert (written["orders"], written["changed"]) == (rows * 3 // 4, rows // 2)
    assert written["lines"] == written["linked"] == 2 * written["orders"]
    # A plan that reads a table once per row of the part reads it 75 x the part's lines or more
    # here (before the fix: 230,200 to 9,003,001); a step's own passes stay under 5 x.
    over = {
        step: {table: n for table, n in read.items() if n > 10 * rows}
        for step, read in steps.items()
    }
    assert over == {step: {} for step in steps}, steps


def products_file(first: int, count: int, price: str) -> bytes:
    """`count` products from product `first`, each on two rows: the product with its first
    variant, then its second variant (priced in the product's currency)."""
    header = (
        "product_id,title,sku,price,currency,inventory,url,image_url,category,status,"
        "variant_id,variant_title,variant_sku,variant_price,variant_inventory\n"
    )
    rows = "".join(
        f"P-{n},Product {n},SKU-{n},{price},EUR,5,,,Category {n % 20},active,"
        f"V-{n}-0,Small,VS-{n}-0,{price},1\n"
        f"P-{n},,,,,,,,,,V-{n}-1,Large,VS-{n}-1,{price},2\n"
        for n in range(first, first + count)
    )
    return (header + rows).encode()


def test_a_products_chunk_without_statistics_reads_each_row_a_few_times(
    database: Database, database_url: str, conn: Conn
) -> None:
    """Two chunks of 3,000 rows (1,500 products of two variants) imported with the statistics
    of the tables they touch removed: into an empty project, then into one that has the first
    file's products (half of the second's are there, their prices changed). Each chunk reads
    each table at most 10 x its rows; finding a product by part of its key reads all of the
    project's products per product (before the fix: 1,131,750 and 1,408,250)."""
    user = create_user(conn)
    project = make_project(conn, user)
    rows = 3000
    first = importing_job(database, user, "products", project, products_file(0, rows // 2, "10"))
    second = importing_job(
        database, user, "products", project, products_file(rows // 4, rows // 2, "12.50")
    )
    tables = [*COMMERCE_TABLES, "private.import_product_rows"]
    for table in tables:
        conn.execute(f"analyze {table}")
    steps: dict[str, dict[str, int]] = {}
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        forget_statistics(tx, [*tables, *TENANT_TABLES])
        reports = {}
        for name, job in (("first", first), ("second", second)):
            before = reads(tx)
            reports[name] = one(
                tx, "select * from private.import_products_chunk(%s, %s)", (job["id"], rows)
            )
            steps[name] = read_since(tx, before)
        stored = one(
            tx,
            "select count(distinct p.id) as products, count(v.id) as variants,"
            " count(v.id) filter (where v.price = 12.50 and v.currency = 'EUR') as repriced"
            " from public.products p join public.product_variants v on v.product_id = p.id"
            " where p.project_id = %s",
            (project,),
        )
        tx.rollback()
    counts = {
        name: (r["status"], r["created"], r["updated"], r["rows_failed"])
        for name, r in reports.items()
    }
    # A product row counts its product, a variant row its variant.
    assert counts == {"first": ("done", rows, 0, 0), "second": ("done", rows // 2, rows // 2, 0)}
    assert (stored["products"], stored["variants"], stored["repriced"]) == (
        rows * 3 // 4,
        rows * 3 // 2,
        rows,
    )
    over = {
        step: {table: n for table, n in read.items() if n > 10 * rows}
        for step, read in steps.items()
    }
    assert over == {step: {} for step in steps}, steps


def test_a_customer_created_elsewhere_while_a_part_is_staged_is_the_orders_customer(
    database: Database, database_url: str, conn: Conn
) -> None:
    """A shop's webhook creates a customer's contact after a part looked the customer up and
    before it creates it: the part waits for that contact, then takes it as the customer of its
    orders (one contact per email, its orders on it, counted once as a contact)."""
    user = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (user.workspace_id,)
    )
    project = make_project(conn, user)
    tag = uuid.uuid4().hex[:6]
    rows = "".join(
        f"O-{n},2026-05-0{1 + n}T10:00:00Z,paid,{10 + n}.50,EUR,c{n % 2}-{tag}@example.test,Name\n"
        for n in range(4)
    )
    data = ("order_id,placed_at,status,total,currency,email,first_name\n" + rows).encode()
    job = importing_job(database, user, "orders", project, data)
    webhook = psycopg.connect(database_url, row_factory=dict_row)
    stager = psycopg.connect(database_url, row_factory=dict_row)
    try:
        theirs = one(
            webhook,
            "insert into public.contacts (workspace_id, email, first_name)"
            " values (%s, %s, 'Webhook') returning id",
            (user.workspace_id, f"c1-{tag}@example.test"),
        )["id"]
        staged: list[dict[str, Any]] = []
        staging = threading.Thread(
            target=lambda: staged.append(
                one(stager, "select * from private.stage_orders_chunk(%s, 100)", (job["id"],))
            ),
            daemon=True,
        )
        staging.start()
        wait_until_blocked(conn, stager.info.backend_pid)
        webhook.commit()
        staging.join(30)
        assert staged and staged[0]["status"] == "importing"
        stager.commit()
        wrote = one(stager, "select * from private.write_orders_chunk(%s)", (job["id"],))
        stager.commit()
    finally:
        webhook.close()
        stager.close()
    assert (wrote["status"], wrote["created"], wrote["rows_failed"]) == ("done", 4, 0)
    customers = conn.execute(
        "select k.id, k.email, k.first_name, count(o.id) as orders from public.contacts k"
        " join public.orders o on o.contact_id = k.id where o.project_id = %s"
        " group by k.id order by k.email",
        (project,),
    ).fetchall()
    assert [(c["email"], c["orders"]) for c in customers] == [
        (f"c0-{tag}@example.test", 2),
        (f"c1-{tag}@example.test", 2),
    ]
    assert customers[1]["id"] == theirs
    assert conn.execute("select * from private.verify_contact_counts()").fetchall() == []
