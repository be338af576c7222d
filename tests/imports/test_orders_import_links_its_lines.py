"""An orders import links each part's lines to the catalog as it writes them: the lines a
cancelled (or failed) job wrote are linked like a finished job's, the job's end reads no other
project's lines, and a part that replaces an order's lines while a product page links the old
ones leaves the order only its new lines."""

import threading
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.core.db import Database
from tests.factories.imports import importing_job
from tests.factories.statistics import crowd_order_lines, read_since, reads
from tests.factories.workspaces import (
    acting_as,
    create_user,
    make_project,
    one,
    wait_until_blocked,
)

Conn = psycopg.Connection[Any]

HEADER = (
    "order_id,placed_at,status,total,currency,email,item_sku,item_name,item_quantity,"
    "item_unit_price\n"
)


def vase_orders(count: int, tag: str, name: str = "Vase") -> bytes:
    """`count` orders of one line each, SKU VASE-1."""
    rows = "".join(
        f"O-{n},2026-05-0{1 + n % 9}T10:00:00Z,paid,10,EUR,c{n}-{tag}@example.test,"
        f"VASE-1,{name},1,10\n"
        for n in range(count)
    )
    return (HEADER + rows).encode()


def vase(conn: Conn, project: uuid.UUID) -> None:
    page = [{"external_id": "900", "title": "Vase", "sku": "VASE-1", "inventory": 3}]
    one(conn, "select private.upsert_products(%s, 'shopify', %s)", (project, Jsonb(page)))


def lines(conn: Conn, project: uuid.UUID) -> list[tuple[str, str, str | None]]:
    """Each line of the project's orders: its order, its name and its product's shop id."""
    rows = conn.execute(
        "select o.external_id as order_id, i.name, p.external_id as product"
        " from public.orders o join public.order_items i on i.order_id = o.id"
        " left join public.products p on p.id = i.product_id"
        " where o.project_id = %s order by o.external_id, i.name",
        (project,),
    ).fetchall()
    return [(r["order_id"], r["name"], r["product"]) for r in rows]


def test_a_cancelled_orders_import_leaves_the_lines_it_wrote_linked(
    database: Database, conn: Conn
) -> None:
    """The store's product VASE-1 is there; a file of 4 orders naming it is cancelled after its
    first part (2 orders) was written: those 2 orders' lines name the product, as a finished
    job's would (before, they were left for the job's end, which a cancelled job never
    reaches, and stayed unlinked for good)."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    vase(conn, project)
    job = importing_job(database, owner, "orders", project, vase_orders(4, uuid.uuid4().hex[:8]))
    staged = one(conn, "select * from private.stage_orders_chunk(%s, 2)", (job["id"],))
    assert staged["status"] == "importing"
    wrote = one(conn, "select * from private.write_orders_chunk(%s)", (job["id"],))
    assert wrote["status"] == "importing"
    with acting_as(conn, owner):
        cancelled = one(conn, "select * from private.cancel_import_job(%s)", (job["id"],))
    assert cancelled["status"] == "cancelled"
    assert lines(conn, project) == [("O-0", "Vase", "900"), ("O-1", "Vase", "900")]


def test_an_orders_import_beside_many_unlinkable_lines_reads_only_its_own(
    database: Database, database_url: str, conn: Conn
) -> None:
    """A file of 10 orders (a line each) imported into a project whose workspace has another
    project with 20,000 unlinked lines naming products no catalog has (a history imported
    without its catalog): the part, and the job's end, read about the job's own lines of
    order_items (before: the end read every unlinked line of the workspace, 20,010 here and
    2.2 s at 200,000), and the lines name the product."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    history = make_project(conn, owner)
    vase(conn, project)
    job = importing_job(database, owner, "orders", project, vase_orders(10, uuid.uuid4().hex[:8]))
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        tx.execute("select set_config('growthbase.lines_linked_by_writer', 'on', true)")
        crowd_order_lines(tx, history, 20000, f"h-{uuid.uuid4().hex[:6]}-")
        tx.execute("select set_config('growthbase.lines_linked_by_writer', 'off', true)")
        staged = one(tx, "select * from private.stage_orders_chunk(%s, 100)", (job["id"],))
        assert staged["status"] == "importing"
        before = reads(tx)
        wrote = one(tx, "select * from private.write_orders_chunk(%s)", (job["id"],))
        read = read_since(tx, before)
        written = lines(tx, project)
        tx.rollback()
    assert wrote["status"] == "done"
    assert written == [(f"O-{n}", "Vase", "900") for n in sorted(range(10), key=str)]
    assert read.get("order_items", 0) <= 100, read


def test_a_changed_orders_lines_replaced_while_a_product_page_links_the_old_line(
    database: Database, database_url: str, conn: Conn
) -> None:
    """Order O-0 was imported with its line `Vase` (no product yet). A second file renames the
    line `Vase blue`; while its part waits to replace the line, a product page inserting VASE-1
    links the old line (a new version of the row). The order then has only its new line, linked
    (by the row's address the part skipped the relinked line, and the order kept both: its line
    revenue counted twice)."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    first = importing_job(database, owner, "orders", project, vase_orders(1, tag))
    one(conn, "select * from private.stage_orders_chunk(%s, 100)", (first["id"],))
    done = one(conn, "select * from private.write_orders_chunk(%s)", (first["id"],))
    assert done["status"] == "done"
    assert lines(conn, project) == [("O-0", "Vase", None)]
    second = importing_job(database, owner, "orders", project, vase_orders(1, tag, "Vase blue"))
    one(conn, "select * from private.stage_orders_chunk(%s, 100)", (second["id"],))
    page = psycopg.connect(database_url, row_factory=dict_row)
    writer = psycopg.connect(database_url, row_factory=dict_row)
    try:
        vase(page, project)
        wrote: list[dict[str, Any]] = []
        writing = threading.Thread(
            target=lambda: wrote.append(
                one(writer, "select * from private.write_orders_chunk(%s)", (second["id"],))
            ),
            daemon=True,
        )
        writing.start()
        wait_until_blocked(conn, writer.info.backend_pid)
        page.commit()
        writing.join(30)
        assert wrote and wrote[0]["status"] == "done"
        writer.commit()
    finally:
        page.close()
        writer.close()
    assert lines(conn, project) == [("O-0", "Vase blue", "900")]
