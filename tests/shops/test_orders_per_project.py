"""Two stores of one workspace, in two projects, number their orders alike (WooCommerce's order 1
in each): each project keeps its own order 1, with its own total, lines and customer, and a
store's redelivery updates only its own. Shopify checkouts are kept per project likewise."""

import uuid
from decimal import Decimal
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from tests.factories.workspaces import create_user, make_project
from tests.fakes.jwks import JwksServer
from tests.shops.test_rows_checked import shopify_checkout
from tests.shops.test_shop_webhooks import (
    client,  # noqa: F401 (fixture)
    connect,
    post_shopify,
    post_woocommerce,
    woocommerce_order,
)

Conn = psycopg.Connection[DictRow]


def project_orders(conn: Conn, project: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "select o.external_id, o.status, o.total, c.email,"
        " array(select i.name || ' x' || i.quantity::int from public.order_items i"
        "  where i.order_id = o.id order by i.id) as lines"
        " from public.orders o left join public.contacts c on c.id = o.contact_id"
        " where o.project_id = %s order by o.external_id",
        (project,),
    ).fetchall()


def other_store_order(**changes: Any) -> dict[str, Any]:
    """Store B's order 1: another total, customer and lines than store A's."""
    order = woocommerce_order(
        1,
        total="120.00",
        customer_id=34,
        billing={"first_name": "Eva", "last_name": "Malá", "email": "eva@example.test"},
        line_items=[
            {"id": 9, "name": "Teapot", "sku": "POT", "quantity": 2, "price": 50, "total": "100"},
            {"id": 10, "name": "Tea", "sku": "TEA", "quantity": 1, "price": 20, "total": "20"},
        ],
    )
    order.update(changes)
    return order


def test_two_woocommerce_stores_order_1_are_two_orders_each_updated_by_its_store(
    client: TestClient,  # noqa: F811
    conn: Conn,
    jwks: JwksServer,
) -> None:
    owner = create_user(conn)
    store_a = make_project(conn, owner, "Store A")
    store_b = make_project(conn, owner, "Store B")
    for project in (store_a, store_b):
        assert connect(client, jwks, owner, project, "woocommerce").status_code == 200

    assert post_woocommerce(client, store_a, woocommerce_order(1)).status_code == 200
    assert post_woocommerce(client, store_b, other_store_order()).status_code == 200
    a_order = {
        "external_id": "1",
        "status": "paid",
        "total": Decimal("45.90"),
        "email": "peter@example.test",
        "lines": ["Mug x3"],
    }
    b_order = {
        "external_id": "1",
        "status": "paid",
        "total": Decimal("120.00"),
        "email": "eva@example.test",
        "lines": ["Teapot x2", "Tea x1"],
    }
    assert project_orders(conn, store_a) == [a_order]
    assert project_orders(conn, store_b) == [b_order]

    # Store B cancels its order 1 (a redelivery, one line left): store A's order 1 stays.
    cancelled = other_store_order(status="cancelled", total="20.00")
    cancelled["line_items"] = cancelled["line_items"][1:]
    assert post_woocommerce(client, store_b, cancelled).status_code == 200
    b_cancelled = {**b_order, "status": "cancelled", "total": Decimal("20.00"), "lines": ["Tea x1"]}
    assert project_orders(conn, store_a) == [a_order]
    assert project_orders(conn, store_b) == [b_cancelled]

    # Store A's redelivery updates store A's order only.
    assert post_woocommerce(client, store_a, woocommerce_order(1, total="50.00")).status_code == 200
    assert project_orders(conn, store_a) == [{**a_order, "total": Decimal("50.00")}]
    assert project_orders(conn, store_b) == [b_cancelled]


def test_two_shopify_projects_keep_their_own_checkout_of_one_id(
    client: TestClient,  # noqa: F811
    conn: Conn,
    jwks: JwksServer,
) -> None:
    owner = create_user(conn)
    first = make_project(conn, owner, "First")
    second = make_project(conn, owner, "Second")
    for project in (first, second):
        assert connect(client, jwks, owner, project, "shopify").status_code == 200

    checkouts = {
        first: shopify_checkout(9100, email="ana@example.test", total_price="59.00"),
        second: shopify_checkout(9100, email="ben@example.test", total_price="80.00"),
    }
    for project, body in checkouts.items():
        assert post_shopify(client, project, body, topic="checkouts/create").status_code == 200
    done = shopify_checkout(9100, email="ben@example.test", completed_at="2026-06-01T11:00:00Z")
    assert post_shopify(client, second, done, topic="checkouts/update").status_code == 200

    stored = conn.execute(
        "select k.project_id, k.total, c.email, k.completed_at is not null as completed"
        " from public.checkouts k left join public.contacts c on c.id = k.contact_id"
        " where k.workspace_id = %s and k.external_id = '9100' order by c.email",
        (owner.workspace_id,),
    ).fetchall()
    assert [tuple(row.values()) for row in stored] == [
        (first, Decimal("59.00"), "ana@example.test", False),
        (second, Decimal("59.00"), "ben@example.test", True),
    ]
