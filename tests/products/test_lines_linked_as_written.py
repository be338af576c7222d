"""A shop's order written after its catalog has its lines linked at once: product analytics
count the product (with its category), a "bought category lately" segment finds the buyer, and
the order_placed lines event names the product, with no catalog write in between."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.factories.commerce import add_line, add_order, add_product, add_variant
from tests.factories.workspaces import acting_as, create_user, fund, make_project, one

Conn = psycopg.Connection[Any]


def test_a_webhook_order_after_the_catalog_is_linked_as_written(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    project = make_project(conn, owner)
    tea = add_product(conn, owner.workspace_id, project, "tea", "Tea", sku="TEA", category="Drinks")
    mug = add_product(conn, owner.workspace_id, project, "mug", "Mug", category="Kitchen")
    red = add_variant(conn, owner.workspace_id, mug, "mug-red", sku="MUG-RED")
    # Two products share a SKU: a line with it names neither.
    for name in ("pot-a", "pot-b"):
        add_product(conn, owner.workspace_id, project, name, "Pot", sku="POT")
    tag = uuid.uuid4().hex[:8]
    email = f"ann-{tag}@example.test"
    # As a shop's webhook writes an order (private.upsert_orders): SKUs only, no catalog ids.
    order = add_order(
        conn,
        project,
        f"{tag}-1",
        email,
        placed_at=(datetime.now(UTC) - timedelta(hours=3)).isoformat(),
        total=35,
        items=[
            {"sku": "TEA", "name": "Tea", "quantity": 2, "unit_price": 5},
            {"sku": "MUG-RED", "name": "Mug, red", "quantity": 1, "unit_price": 15},
            {"sku": "POT", "name": "Pot", "quantity": 1, "unit_price": 5},
        ],
    )
    # A line carrying the shop's product and variant ids, as a set-based writer inserts it.
    add_line(conn, order, "Mug", external_product_id="mug", external_variant_id="mug-red")

    lines = conn.execute(
        "select sku, product_id, variant_id from public.order_items where order_id = %s"
        " order by id",
        (order,),
    ).fetchall()
    assert [(r["sku"], r["product_id"], r["variant_id"]) for r in lines] == [
        ("TEA", tea, None),
        ("MUG-RED", mug, red),
        ("POT", None, None),
        (None, mug, red),
    ]

    with acting_as(conn, owner):
        revenue = conn.execute(
            "select product_id, title, category, revenue from analytics.product_revenue"
            " order by revenue desc, title"
        ).fetchall()
        drinkers = one(
            conn,
            "select public.preview_segment(%s, %s, 10) as p",
            (owner.workspace_id, Jsonb({"bought": {"category": "drinks", "within_days": 1}})),
        )["p"]
    assert [tuple(r.values()) for r in revenue] == [
        (mug, "Mug", "Kitchen", 25),
        (tea, "Tea", "Drinks", 10),
        (None, "Pot", None, 5),
    ]
    assert [s["email"] for s in drinkers["sample"]] == [email]

    events = conn.execute(
        "select properties from public.contact_events where type = 'order_placed'"
        " and properties ->> 'order_id' = %s and properties ? 'lines'",
        (str(order),),
    ).fetchall()
    # One event per statement that wrote lines: the order's, then the line added to it.
    assert sorted(
        (sorted(e["properties"]["product_ids"]), sorted(e["properties"]["categories"]))
        for e in events
    ) == sorted(
        [
            (sorted([str(tea), str(mug)]), ["drinks", "kitchen"]),
            ([str(mug)], ["kitchen"]),
        ]
    )
    facts = one(
        conn,
        "select last_product_id, last_category from public.customer_facts f"
        " join public.contacts c on c.id = f.contact_id where c.email = %s",
        (email,),
    )
    assert (facts["last_product_id"], facts["last_category"]) == (mug, "Kitchen")


def test_an_order_of_many_lines_through_the_data_api_is_linked_as_written(conn: Conn) -> None:
    """public.import_order writes a source csv order in one statement, however many its lines:
    101 lines after the catalog are all linked, none left for a job that never comes."""
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    project = make_project(conn, owner)
    tea = add_product(conn, owner.workspace_id, project, "tea", "Tea", sku="TEA", category="Drinks")
    tag = uuid.uuid4().hex[:8]
    order = {
        "external_id": f"{tag}-big",
        "status": "paid",
        "placed_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "total": "505",
        "currency": "EUR",
        "customer": {"email": f"big-{tag}@example.test"},
        "items": [{"sku": "TEA", "name": "Tea", "quantity": 1, "unit_price": 5}] * 101,
    }
    with acting_as(conn, owner):
        order_id = one(conn, "select public.import_order(%s, %s) as id", (project, Jsonb(order)))[
            "id"
        ]
        revenue = conn.execute(
            "select product_id, category, revenue from analytics.product_revenue"
        ).fetchall()
    linked = one(
        conn,
        "select count(*) filter (where product_id = %s) as linked, count(*) as lines"
        " from public.order_items where order_id = %s",
        (tea, order_id),
    )
    assert (linked["linked"], linked["lines"]) == (101, 101)
    assert [tuple(r.values()) for r in revenue] == [(tea, "Drinks", 505)]


def test_a_shop_pages_lines_are_linked_in_the_write_that_inserts_them(conn: Conn) -> None:
    """private.upsert_orders (every webhook, sync and backfill page) writes each line with its
    product: no second write of the line (and no second customer-facts recount), and the
    order_placed event and the buyer's facts still name the products."""
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    project = make_project(conn, owner)
    tea = add_product(conn, owner.workspace_id, project, "tea", "Tea", sku="TEA", category="Drinks")
    mug = add_product(conn, owner.workspace_id, project, "mug", "Mug", category="Kitchen")
    red = add_variant(conn, owner.workspace_id, mug, "mug-red", sku="MUG-RED")
    for name in ("pot-a", "pot-b"):
        add_product(conn, owner.workspace_id, project, name, "Pot", sku="POT")
    tag = uuid.uuid4().hex[:8]
    placed = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    page = [
        {
            "external_id": f"{tag}-{n}",
            "status": "paid",
            "placed_at": placed,
            "total": "25",
            "currency": "EUR",
            "customer": {"email": f"page-{tag}-{n}@example.test"},
            "items": [
                {"sku": "TEA", "name": "Tea", "quantity": 1, "unit_price": 5},
                {"sku": "MUG-RED", "name": "Mug, red", "quantity": 1, "unit_price": 15},
                {"sku": "POT", "name": "Pot", "quantity": 1, "unit_price": 5},
            ],
        }
        for n in range(2)
    ]
    counts = (
        "select n_tup_ins, n_tup_upd from pg_catalog.pg_stat_xact_user_tables"
        " where relid = 'public.order_items'::regclass"
    )
    with conn.transaction():
        before = one(conn, counts)
        conn.execute("select private.upsert_orders(%s, 'shopify', %s)", (project, Jsonb(page)))
        after = one(conn, counts)
        # The page's statement alone skips the link trigger: a later write in the same
        # transaction (a webhook's single order) is still linked.
        single = add_order(
            conn,
            project,
            f"{tag}-single",
            f"single-{tag}@example.test",
            placed_at=placed,
            items=[{"sku": "TEA", "name": "Tea", "quantity": 1, "unit_price": 5}],
        )
    assert [
        r["product_id"]
        for r in conn.execute(
            "select product_id from public.order_items where order_id = %s", (single,)
        ).fetchall()
    ] == [tea]
    # This transaction's own writes: six lines inserted, none updated.
    assert (after["n_tup_ins"] - before["n_tup_ins"], after["n_tup_upd"] - before["n_tup_upd"]) == (
        6,
        0,
    )
    lines = conn.execute(
        "select i.sku, i.product_id, i.variant_id from public.order_items i"
        " join public.orders o on o.id = i.order_id"
        " where o.project_id = %s and o.external_id in (%s, %s) order by o.external_id, i.id",
        (project, f"{tag}-0", f"{tag}-1"),
    ).fetchall()
    assert [(r["sku"], r["product_id"], r["variant_id"]) for r in lines] == [
        ("TEA", tea, None),
        ("MUG-RED", mug, red),
        ("POT", None, None),
    ] * 2
    events = conn.execute(
        "select e.properties from public.contact_events e join public.contacts c"
        " on c.id = e.contact_id where e.type = 'order_placed' and e.properties ? 'lines'"
        " and c.email like %s",
        (f"page-{tag}-%",),
    ).fetchall()
    assert [sorted(e["properties"]["product_ids"]) for e in events] == [
        sorted([str(tea), str(mug)])
    ] * 2
    facts = conn.execute(
        "select f.last_product_id from public.customer_facts f"
        " join public.contacts c on c.id = f.contact_id where c.email like %s",
        (f"page-{tag}-%",),
    ).fetchall()
    assert [f["last_product_id"] for f in facts] == [mug, mug]
