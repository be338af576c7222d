"""Two stores of one workspace, in two projects, number their customers alike (WooCommerce's
customer 5 in each): each project's customer 5 is its own contact, found and updated only by its
own store's webhooks and backfill, with its own orders; a Shopify compliance webhook acts on its
own store's customer only; a person who bought in both stores is one contact whose ids (one per
store) its erasure and access export both cover
(20270222090000_shop_customers_keyed_per_project.sql)."""

import uuid
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from api.app import create_app
from tests.factories.edge import edge_settings
from tests.factories.workspaces import User, acting_as, create_user, make_project, one
from tests.fakes.jwks import JwksServer
from tests.fakes.woocommerce_server import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    WooCommerceServer,
    serve_woocommerce,
)
from tests.shops.test_customer_webhooks import post_to_woocommerce, woocommerce_customer_body
from tests.shops.test_shop_webhooks import (
    ENCRYPTION_KEY,
    client,  # noqa: F401 (fixture)
    connect,
    post_shopify,
    post_woocommerce,
    shopify_order,
    woocommerce_order,
)
from tests.shops.test_woocommerce_backfill import call_backfill, connect_api

Conn = psycopg.Connection[DictRow]


def two_stores(conn: Conn, name: str = "Store") -> tuple[User, uuid.UUID, uuid.UUID]:
    """A workspace (on a paid plan: no contact limit in the way) with two projects."""
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (owner.workspace_id,)
    )
    return owner, make_project(conn, owner, f"{name} A"), make_project(conn, owner, f"{name} B")


def customer_5(email: str, first_name: str) -> dict[str, Any]:
    """A store's customer 5 (WooCommerce's REST v3 shape)."""
    return woocommerce_customer_body(
        5,
        email=email,
        first_name=first_name,
        last_name="Nováková",
        billing={"first_name": first_name, "email": email, "country": "SK"},
    )


def order_of_5(order_id: int, email: str, total: str) -> dict[str, Any]:
    return woocommerce_order(
        order_id, customer_id=5, total=total, billing={"email": email, "country": "SK"}
    )


def customer_ids(conn: Conn, workspace: uuid.UUID) -> list[tuple[Any, ...]]:
    """The workspace's customer ids: (project, source, id, contact's email, first name)."""
    rows = conn.execute(
        "select x.project_id, x.source, x.external_id, c.email, c.first_name"
        " from public.contact_external_ids x join public.contacts c on c.id = x.contact_id"
        " where x.workspace_id = %s",
        (workspace,),
    ).fetchall()
    return in_order(tuple(row.values()) for row in rows)


def in_order(ids: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Customer ids by their contact's email, then project."""
    return sorted(ids, key=lambda row: (row[3], str(row[0])))


def order_contacts(conn: Conn, workspace: uuid.UUID) -> list[tuple[Any, ...]]:
    """The workspace's orders: (project, order id, total, its contact's email)."""
    rows = conn.execute(
        "select o.project_id, o.external_id, o.total::text, c.email"
        " from public.orders o left join public.contacts c on c.id = o.contact_id"
        " where o.workspace_id = %s order by c.email, o.project_id",
        (workspace,),
    ).fetchall()
    return [tuple(row.values()) for row in rows]


def contacts_count(conn: Conn, workspace: uuid.UUID) -> int:
    return int(
        one(
            conn, "select count(*) as n from public.contacts where workspace_id = %s", (workspace,)
        )["n"]
    )


def test_two_woocommerce_stores_customer_5_by_webhook_are_two_contacts(
    client: TestClient,  # noqa: F811
    conn: Conn,
    jwks: JwksServer,
) -> None:
    owner, store_a, store_b = two_stores(conn)
    for project in (store_a, store_b):
        assert connect(client, jwks, owner, project, "woocommerce").status_code == 200
    deliveries = [
        (store_a, customer_5("alice@example.test", "Alice"), "customer.created"),
        (store_b, customer_5("bara@example.test", "Bára"), "customer.created"),
    ]
    orders = [
        (store_a, order_of_5(1, "alice@example.test", "45.90")),
        (store_b, order_of_5(1, "bara@example.test", "120.00")),
    ]
    for project, customer, topic in deliveries:
        assert post_to_woocommerce(client, project, customer, topic).status_code == 200
    for project, order in orders:
        assert post_woocommerce(client, project, order).status_code == 200

    ids = [
        (store_a, "woocommerce", "5", "alice@example.test", "Alice"),
        (store_b, "woocommerce", "5", "bara@example.test", "Bára"),
    ]
    placed = [
        (store_a, "1", "45.90", "alice@example.test"),
        (store_b, "1", "120.00", "bara@example.test"),
    ]
    assert customer_ids(conn, owner.workspace_id) == ids
    assert order_contacts(conn, owner.workspace_id) == placed
    assert contacts_count(conn, owner.workspace_id) == 2

    # Every delivery again (updates, as a store sends them): nothing changes.
    for project, customer, _ in deliveries:
        assert post_to_woocommerce(client, project, customer, "customer.updated").status_code == 200
    for project, order in orders:
        assert post_woocommerce(client, project, order).status_code == 200
    assert customer_ids(conn, owner.workspace_id) == ids
    assert order_contacts(conn, owner.workspace_id) == placed
    assert contacts_count(conn, owner.workspace_id) == 2

    # Store B deletes its customer 5: store A's customer 5 keeps their id.
    deleted = post_to_woocommerce(client, store_b, {"id": 5}, "customer.deleted")
    assert deleted.status_code == 200
    assert customer_ids(conn, owner.workspace_id) == ids[:1]


def test_two_woocommerce_backfills_of_customer_5_are_two_contacts(
    conn: Conn, database_url: str, jwks: JwksServer
) -> None:
    owner, store_a, store_b = two_stores(conn, "Backfilled")
    with ExitStack() as stack:
        servers: list[WooCommerceServer] = [
            stack.enter_context(serve_woocommerce()) for _ in range(2)
        ]
        settings = edge_settings(
            database_url,
            jwks,
            integrations_encryption_key=ENCRYPTION_KEY,
            woocommerce_allowed_origins=[server.base_url for server in servers],
        )
        edge = stack.enter_context(TestClient(create_app(settings)))
        stores = list(zip((store_a, store_b), servers, strict=True))
        for (project, server), (email, name, total) in zip(
            stores,
            [("alice@example.test", "Alice", "45.90"), ("bara@example.test", "Bára", "120.00")],
            strict=True,
        ):
            server.customers = [customer_5(email, name)]
            server.orders = [order_of_5(1, email, total)]
            answer = connect_api(
                edge,
                jwks,
                owner,
                project,
                store_url=server.base_url,
                consumer_key=CONSUMER_KEY,
                consumer_secret=CONSUMER_SECRET,
            )
            assert answer.status_code == 200, answer.text

        def backfill_both() -> None:
            for project, _ in stores:
                answer = call_backfill(edge, jwks, owner, project)
                assert answer.status_code == 200, answer.text
                assert answer.json()["data"]["finished"] is True

        backfill_both()
        ids = [
            (store_a, "woocommerce", "5", "alice@example.test", "Alice"),
            (store_b, "woocommerce", "5", "bara@example.test", "Bára"),
        ]
        placed = [
            (store_a, "1", "45.90", "alice@example.test"),
            (store_b, "1", "120.00", "bara@example.test"),
        ]
        assert customer_ids(conn, owner.workspace_id) == ids
        assert order_contacts(conn, owner.workspace_id) == placed

        # A second backfill of both stores reads everything again and changes nothing.
        backfill_both()
        assert customer_ids(conn, owner.workspace_id) == ids
        assert order_contacts(conn, owner.workspace_id) == placed
        assert contacts_count(conn, owner.workspace_id) == 2


def shopify_customer(email: str, first_name: str) -> dict[str, Any]:
    return {"id": 7001, "email": email, "first_name": first_name, "last_name": "Nováková"}


def contact_by_email(conn: Conn, workspace: uuid.UUID, email: str) -> dict[str, Any]:
    return one(
        conn,
        "select c.id, c.email, c.erased_at from public.contacts c"
        " where c.workspace_id = %s and c.email = %s",
        (workspace, email),
    )


def two_shopify_stores(
    conn: Conn, edge: TestClient, jwks: JwksServer
) -> tuple[User, uuid.UUID, uuid.UUID]:
    """Two Shopify projects whose orders 8101 came from a customer 7001 each (other people)."""
    owner, store_a, store_b = two_stores(conn, "Shopify")
    for project, email, name in (
        (store_a, "ada@example.test", "Ada"),
        (store_b, "bea@example.test", "Bea"),
    ):
        assert connect(edge, jwks, owner, project, "shopify").status_code == 200
        order = shopify_order(8101, email=email, customer=shopify_customer(email, name))
        assert post_shopify(edge, project, order).status_code == 200
    assert contacts_count(conn, owner.workspace_id) == 2
    return owner, store_a, store_b


def test_a_shopify_customers_redact_erases_only_its_stores_customer(
    client: TestClient,  # noqa: F811
    conn: Conn,
    jwks: JwksServer,
) -> None:
    owner, store_a, store_b = two_shopify_stores(conn, client, jwks)
    ada = contact_by_email(conn, owner.workspace_id, "ada@example.test")
    bea = contact_by_email(conn, owner.workspace_id, "bea@example.test")

    # Store A's access request for its customer 7001 (no email given) is Ada's only.
    request = {
        "shop_id": 954889,
        "shop_domain": "demo.myshopify.com",
        "orders_requested": [8101],
        "customer": {"id": 7001},
        "data_request": {"id": 9999},
    }
    answer = post_shopify(client, store_a, request, topic="customers/data_request")
    assert answer.status_code == 200
    exports = conn.execute(
        "select contact_id from public.contact_exports where workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert [row["contact_id"] for row in exports] == [ada["id"]]

    # Store A's customers/redact for customer 7001 (no email given) erases Ada only.
    redact = {
        "shop_id": 954889,
        "shop_domain": "demo.myshopify.com",
        "customer": {"id": 7001},
        "orders_to_redact": [8101],
    }
    assert post_shopify(client, store_a, redact, topic="customers/redact").status_code == 200
    assert contact_by_email(conn, owner.workspace_id, "bea@example.test") == bea
    erased = one(conn, "select erased_at from public.contacts where id = %s", (ada["id"],))
    assert erased["erased_at"] is not None
    assert customer_ids(conn, owner.workspace_id) == [
        (store_b, "shopify", "7001", "bea@example.test", "Bea")
    ]
    assert order_contacts(conn, owner.workspace_id) == [
        (store_b, "8101", "1299.00", "bea@example.test"),
        (store_a, "8101", "1299.00", None),
    ]


def test_a_shopify_shop_redact_unlinks_only_its_stores_customer_ids(
    client: TestClient,  # noqa: F811
    conn: Conn,
    jwks: JwksServer,
) -> None:
    owner, store_a, store_b = two_shopify_stores(conn, client, jwks)
    body = {"shop_id": 954889, "shop_domain": "demo.myshopify.com"}
    assert post_shopify(client, store_a, body, topic="shop/redact").status_code == 200
    assert customer_ids(conn, owner.workspace_id) == [
        (store_b, "shopify", "7001", "bea@example.test", "Bea")
    ]
    # Both people stay contacts, with their orders.
    assert order_contacts(conn, owner.workspace_id) == [
        (store_a, "8101", "1299.00", "ada@example.test"),
        (store_b, "8101", "1299.00", "bea@example.test"),
    ]


def test_erasure_and_export_of_a_person_of_both_stores_cover_both_ids(
    client: TestClient,  # noqa: F811
    conn: Conn,
    jwks: JwksServer,
) -> None:
    owner, store_a, store_b = two_stores(conn, "Shared")
    for project in (store_a, store_b):
        assert connect(client, jwks, owner, project, "woocommerce").status_code == 200
        customer = customer_5("cyril@example.test", "Cyril")
        assert post_to_woocommerce(client, project, customer, "customer.created").status_code == 200
    # One person (one email), customer 5 of each store: one contact with both stores' ids.
    assert customer_ids(conn, owner.workspace_id) == in_order(
        [
            (store_a, "woocommerce", "5", "cyril@example.test", "Cyril"),
            (store_b, "woocommerce", "5", "cyril@example.test", "Cyril"),
        ]
    )
    person = contact_by_email(conn, owner.workspace_id, "cyril@example.test")

    with acting_as(conn, owner):
        export = one(conn, "select id from public.request_contact_export(%s)", (person["id"],))
    document = one(conn, "select private.contact_export_data(%s) as d", (export["id"],))["d"]
    exported = sorted((x["project_id"], x["external_id"]) for x in document["contact_external_ids"])
    assert exported == sorted([(str(store_a), "5"), (str(store_b), "5")])

    erased = one(
        conn,
        "select private.erase_contacts(%s, array[%s]::uuid[], null) as n",
        (owner.workspace_id, person["id"]),
    )
    assert erased["n"] == 1
    assert customer_ids(conn, owner.workspace_id) == []
    # Neither store brings the erased person back by their id.
    for project in (store_a, store_b):
        customer = customer_5("cyril@example.test", "Cyril")
        assert post_to_woocommerce(client, project, customer, "customer.updated").status_code == 200
    assert customer_ids(conn, owner.workspace_id) == []
