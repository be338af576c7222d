"""An orders import's part and a products import chunk (or a shop's product page) of one project
written at the same time: the one that comes second waits for the other's commit, then links
the other's rows, so every line names its product (before, neither saw the other's uncommitted
rows and the lines stayed unlinked for good). A shop's order page does not wait for them."""

import threading
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.core.db import Database
from tests.factories.imports import importing_job
from tests.factories.workspaces import create_user, make_project, one, wait_until_blocked
from tests.imports.test_orders_import_links_its_lines import lines, vase_orders

Conn = psycopg.Connection[Any]


def waits_on_advisory_lock(conn: Conn, pid: int) -> bool:
    """Whether the backend waits for an advisory lock (the project's catalog lock)."""
    row = conn.execute(
        "select exists (select from pg_locks where pid = %s and locktype = 'advisory'"
        " and not granted) as waits",
        (pid,),
    ).fetchone()
    return bool(row["waits"])


def in_thread(conn: Conn, sql: str, args: tuple[Any, ...]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(one(conn, sql, args)), daemon=True)
    thread.start()
    return thread, result


def write_all_parts(conn: Conn, job_id: uuid.UUID) -> None:
    for _ in range(10):
        one(conn, "select * from private.stage_orders_chunk(%s, 2)", (job_id,))
        wrote = one(conn, "select * from private.write_orders_chunk(%s)", (job_id,))
        if wrote["status"] != "importing":
            return
    raise AssertionError("the orders job never ended")


def test_an_orders_part_written_while_a_products_chunk_is_open_links_its_lines(
    database: Database, database_url: str, conn: Conn
) -> None:
    """A products CSV (P-VASE, SKU VASE-1) and an orders CSV of 4 orders naming VASE-1 are
    imported together: the first orders part, written while the products chunk is still open,
    waits for it and its lines name P-VASE like the rest. Meanwhile a shop's order page of the
    project is written without waiting."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    orders = importing_job(database, owner, "orders", project, vase_orders(4, uuid.uuid4().hex[:8]))
    products = importing_job(
        database, owner, "products", project, b"product_id,title,sku\nP-VASE,Vase,VASE-1\n"
    )
    one(conn, "select * from private.stage_orders_chunk(%s, 2)", (orders["id"],))
    page = psycopg.connect(database_url, row_factory=dict_row)
    writer = psycopg.connect(database_url, row_factory=dict_row)
    shop = psycopg.connect(database_url, row_factory=dict_row)
    try:
        done = one(page, "select * from private.import_products_chunk(%s, 100)", (products["id"],))
        assert done["status"] == "done"
        writing, wrote = in_thread(
            writer, "select * from private.write_orders_chunk(%s)", (orders["id"],)
        )
        wait_until_blocked(conn, writer.info.backend_pid)
        assert waits_on_advisory_lock(conn, writer.info.backend_pid)
        # A shop's order page (private.upsert_orders) takes no catalog lock: written meanwhile.
        shop_order = {
            "external_id": "S-1",
            "status": "paid",
            "placed_at": "2026-06-01T10:00:00+00:00",
            "total": "10.00",
            "currency": "EUR",
            "customer": {"external_id": "c-1"},
            "items": [{"sku": "MUG-1", "name": "Mug", "quantity": 1, "unit_price": "10.00"}],
        }
        paging, paged = in_thread(
            shop,
            "select private.upsert_orders(%s, 'shopify', %s) as n",
            (project, Jsonb([shop_order])),
        )
        paging.join(30)
        assert paged and paged[0]["n"] == 1
        shop.commit()
        assert writing.is_alive()
        page.commit()
        writing.join(30)
        assert wrote and wrote[0]["status"] == "importing"
        writer.commit()
    finally:
        page.close()
        writer.close()
        shop.close()
    write_all_parts(conn, orders["id"])
    assert lines(conn, project) == [
        ("O-0", "Vase", "P-VASE"),
        ("O-1", "Vase", "P-VASE"),
        ("O-2", "Vase", "P-VASE"),
        ("O-3", "Vase", "P-VASE"),
        ("S-1", "Mug", None),
    ]


def test_a_product_page_written_while_an_orders_part_is_open_links_its_lines(
    database: Database, database_url: str, conn: Conn
) -> None:
    """The reverse: an orders part of 2 orders naming VASE-1 is written and still open when the
    store's product page with VASE-1 arrives; the page waits for the part, then links its
    lines."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    orders = importing_job(database, owner, "orders", project, vase_orders(2, uuid.uuid4().hex[:8]))
    one(conn, "select * from private.stage_orders_chunk(%s, 2)", (orders["id"],))
    writer = psycopg.connect(database_url, row_factory=dict_row)
    page = psycopg.connect(database_url, row_factory=dict_row)
    try:
        wrote = one(writer, "select * from private.write_orders_chunk(%s)", (orders["id"],))
        assert wrote["status"] == "done"
        vase = [{"external_id": "900", "title": "Vase", "sku": "VASE-1", "inventory": 3}]
        paging, paged = in_thread(
            page, "select private.upsert_products(%s, 'shopify', %s) as n", (project, Jsonb(vase))
        )
        wait_until_blocked(conn, page.info.backend_pid)
        assert waits_on_advisory_lock(conn, page.info.backend_pid)
        writer.commit()
        paging.join(30)
        assert paged and paged[0]["n"] == 1
        page.commit()
    finally:
        writer.close()
        page.close()
    assert lines(conn, project) == [("O-0", "Vase", "900"), ("O-1", "Vase", "900")]
