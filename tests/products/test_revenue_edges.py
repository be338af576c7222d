"""Revenue by product and category at their edges: a free order in another currency is
converted like any other, and a category spelt in two cases is one category."""

import uuid
from decimal import Decimal
from typing import Any

import psycopg

from tests.factories.commerce import add_order, add_product
from tests.factories.workspaces import acting_as, create_user, make_project

Conn = psycopg.Connection[Any]


def test_a_free_order_in_another_currency_counts_converted(conn: Conn) -> None:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set base_currency = 'EUR' where id = %s", (owner.workspace_id,)
    )
    project = make_project(conn, owner)
    mug = add_product(conn, owner.workspace_id, project, "mug", "Mug", sku="MUG")
    tag = uuid.uuid4().hex[:8]
    # A CZK order at 0.04 EUR: one paid, one given away with a 100 % discount (total 0).
    for name, total in (("paid", 1000), ("free", 0)):
        order = add_order(
            conn,
            project,
            f"{tag}-{name}",
            f"{name}-{tag}@example.test",
            total=total,
            currency="CZK",
            items=[{"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": 1000}],
        )
        conn.execute(
            "update public.orders set exchange_rate = 0.04, base_total = round(total * 0.04, 2)"
            " where id = %s",
            (order,),
        )
    with acting_as(conn, owner):
        rows = conn.execute(
            "select product_id, orders, revenue from analytics.product_revenue"
        ).fetchall()
    # 1,000 CZK twice is 80 EUR, never 1,040 (the free order's line taken as EUR).
    assert [tuple(r.values()) for r in rows] == [(mug, 2, Decimal("80.00"))]


def test_a_category_spelt_in_two_cases_is_one_category(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    add_product(conn, owner.workspace_id, project, "tea", "Tea", sku="TEA", category="Drinks")
    add_product(conn, owner.workspace_id, project, "cof", "Coffee", sku="COF", category="drinks")
    tag = uuid.uuid4().hex[:8]
    add_order(
        conn,
        project,
        tag,
        f"ann-{tag}@example.test",
        total=30,
        items=[
            {"sku": "TEA", "name": "Tea", "quantity": 1, "unit_price": 10},
            {"sku": "COF", "name": "Coffee", "quantity": 1, "unit_price": 20},
        ],
    )
    with acting_as(conn, owner):
        rows = conn.execute(
            "select category, products, orders, revenue, share_of_revenue"
            " from analytics.category_revenue"
        ).fetchall()
    assert [tuple(r.values()) for r in rows] == [("Drinks", 2, 1, 30, 1)]


def test_a_free_order_in_the_base_currency_counts_its_lines_as_is(conn: Conn) -> None:
    """An order in the workspace's own currency is never converted, whatever rate it carries (a
    shop's exchangeRate, a file's exchange_rate column): its free order's 10 EUR line is 10."""
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set base_currency = 'EUR' where id = %s", (owner.workspace_id,)
    )
    project = make_project(conn, owner)
    mug = add_product(conn, owner.workspace_id, project, "mug", "Mug", sku="MUG")
    tag = uuid.uuid4().hex[:8]
    order = add_order(
        conn,
        project,
        f"{tag}-free",
        f"free-{tag}@example.test",
        total=0,
        currency="EUR",
        items=[{"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": 10}],
    )
    conn.execute("update public.orders set exchange_rate = 25 where id = %s", (order,))
    with acting_as(conn, owner):
        rows = conn.execute(
            "select product_id, orders, revenue from analytics.product_revenue"
        ).fetchall()
    # Never 250 (the line times the rate the order carries).
    assert [tuple(r.values()) for r in rows] == [(mug, 1, Decimal("10.00"))]
