"""A shop's page of products links the project's order lines that name what it wrote: by the
shop's product and variant ids, or by a SKU that names only one of its variants or products
(also a SKU another product gave up); a page that changes only prices, inventory or titles
cannot change a link, so it links nothing and reads no order line (a Shopify store sends a
product update on every inventory change). A products import links so as each chunk is
written."""

import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.core.db import Database
from tests.factories.commerce import add_line, add_order
from tests.factories.imports import importing_job
from tests.factories.statistics import (
    COMMERCE_TABLES,
    TENANT_TABLES,
    crowd_order_lines,
    forget_statistics,
    read_since,
    reads,
)
from tests.factories.workspaces import create_user, make_project, one

Conn = psycopg.Connection[Any]


def tea(price: str) -> dict[str, Any]:
    return {
        "external_id": "tea",
        "title": "Tea",
        "price": price,
        "currency": "EUR",
        "inventory": 7,
        "variants": [
            {"external_id": "tea-big", "sku": "TEA-B", "price": price},
            {"external_id": "tea-small", "sku": "TEA-S", "price": price},
        ],
    }


def pot(name: str, sku: str) -> dict[str, Any]:
    return {"external_id": name, "title": "Pot", "sku": sku}


def links(conn: Conn, order: uuid.UUID) -> dict[str, tuple[str | None, str | None]]:
    """Each line of the order (by its name) with its product's and variant's shop ids."""
    rows = conn.execute(
        "select i.name, p.external_id as product, v.external_id as variant"
        " from public.order_items i"
        " left join public.products p on p.id = i.product_id"
        " left join public.product_variants v on v.id = i.variant_id"
        " where i.order_id = %s",
        (order,),
    ).fetchall()
    return {r["name"]: (r["product"], r["variant"]) for r in rows}


def test_a_product_page_links_the_lines_naming_it_and_a_price_update_reads_none(
    database_url: str, conn: Conn
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    # The orders arrive before the catalog: their lines name products it does not have yet.
    order = add_order(
        conn,
        project,
        f"{tag}-1",
        f"ann-{tag}@example.test",
        items=[
            {"sku": "MUG-RED", "name": "Mug, red", "quantity": 1, "unit_price": 15},
            {"sku": "POT", "name": "Pot", "quantity": 1, "unit_price": 20},
            {"sku": "LAMP", "name": "Lamp", "quantity": 1, "unit_price": 30},
        ],
    )
    add_line(conn, order, "Tea", external_product_id="tea", external_variant_id="tea-big")
    assert set(links(conn, order).values()) == {(None, None)}

    mug = {
        "external_id": "mug",
        "title": "Mug",
        "variants": [{"external_id": "mug-red", "sku": "MUG-RED"}],
    }
    page = [tea("5.00"), mug, pot("pot-a", "POT"), pot("pot-b", "POT")]
    one(conn, "select private.upsert_products(%s, 'shopify', %s)", (project, Jsonb(page)))
    # By the shop's ids, by a variant's SKU; two products share POT, so it names neither.
    assert links(conn, order) == {
        "Tea": ("tea", "tea-big"),
        "Mug, red": ("mug", "mug-red"),
        "Pot": (None, None),
        "Lamp": (None, None),
    }

    # pot-b takes another SKU: POT now names pot-a alone.
    page = [pot("pot-b", "POT-B")]
    one(conn, "select private.upsert_products(%s, 'shopify', %s)", (project, Jsonb(page)))
    assert links(conn, order)["Pot"] == ("pot-a", None)

    # A price and inventory update (as Shopify sends on every sale) links nothing and reads no
    # order line. The project holds 2,000 more unlinked lines and the tables have no planner
    # statistics: a page that finds its lines by the workspace's lines reads them all. (Without
    # the crowd, the lines of the test's few workspaces fit in a page or two, and whether the
    # planner probed the lines' keys or the workspace's four lines depended on what earlier
    # tests had left and analyzed.)
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        crowd_order_lines(tx, project, 2000, f"crowd-{tag}-")
        forget_statistics(tx, COMMERCE_TABLES + TENANT_TABLES)
        before = reads(tx)
        written = one(
            tx,
            "select private.upsert_products(%s, 'shopify', %s) as n",
            (project, Jsonb([tea("6.50"), pot("pot-a", "POT")])),
        )
        read = read_since(tx, before)
        price = one(
            tx,
            "select p.price from public.products p where p.project_id = %s"
            " and p.external_id = 'tea'",
            (project,),
        )["price"]
        after = links(tx, order)
        tx.rollback()
    assert (written["n"], str(price)) == (1, "6.50")
    assert after["Lamp"] == (None, None)
    assert {t: n for t, n in read.items() if t in ("order_items", "orders")} == {}, read


def test_a_products_import_links_the_lines_naming_a_chunk_as_it_writes_it(
    database: Database, conn: Conn
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    order = add_order(
        conn,
        project,
        f"{tag}-1",
        f"bob-{tag}@example.test",
        items=[
            {"sku": "TEA-1", "name": "Tea", "quantity": 1, "unit_price": 5},
            {"sku": "CUP-1", "name": "Cup", "quantity": 1, "unit_price": 4},
        ],
    )
    catalog = b"product_id,title,sku\nP-TEA,Green tea,TEA-1\nP-CUP,Cup,CUP-1\n"
    job = importing_job(database, owner, "products", project, catalog)
    chunk = one(conn, "select * from private.import_products_chunk(%s, 1)", (job["id"],))
    # The first chunk's product has its line before the job ends.
    assert chunk["status"] == "importing"
    assert links(conn, order) == {"Tea": ("P-TEA", None), "Cup": (None, None)}
    chunk = one(conn, "select * from private.import_products_chunk(%s, 1)", (job["id"],))
    assert chunk["status"] == "done"
    assert links(conn, order) == {"Tea": ("P-TEA", None), "Cup": ("P-CUP", None)}


def test_a_line_written_while_a_page_inserts_its_product_is_linked_by_a_later_page(
    database_url: str, conn: Conn
) -> None:
    """An order naming VASE-1 is written while the page that inserts VASE-1 is still open:
    neither sees the other, and the line is written unlinked. The next page naming the product,
    a price update, links it (it used to skip the link when the page changed no SKU and inserted
    no product, and the line stayed unlinked for good)."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    vase = {"external_id": "900", "title": "Vase", "sku": "VASE-1", "price": "20.00"}
    with psycopg.connect(database_url, row_factory=dict_row) as page:
        one(page, "select private.upsert_products(%s, 'shopify', %s)", (project, Jsonb([vase])))
        order = add_order(
            conn,
            project,
            f"{tag}-1",
            f"eve-{tag}@example.test",
            items=[{"sku": "VASE-1", "name": "Vase", "quantity": 1, "unit_price": 20}],
        )
        page.commit()
    assert links(conn, order) == {"Vase": (None, None)}
    one(
        conn,
        "select private.upsert_products(%s, 'shopify', %s)",
        (project, Jsonb([vase | {"price": "18.00"}])),
    )
    assert links(conn, order) == {"Vase": ("900", None)}
