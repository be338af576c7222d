"""Shopify's mandatory compliance webhooks (customers/redact, customers/data_request,
shop/redact) through the project's Shopify webhook URL: verified like the other topics, stored,
de-duplicated and applied through the privacy lifecycle's erasure and access-request paths,
never touching another workspace. Bodies follow Shopify's documented payloads."""

import uuid
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from tests.factories.edge import bearer
from tests.factories.workspaces import User, create_user, make_project, one
from tests.fakes.jwks import JwksServer
from tests.shops.test_shop_webhooks import (
    client,  # noqa: F401 (fixture)
    connect,
    post_shopify,
    shop,  # noqa: F401 (fixture)
    shopify_order,
    signed,
)

Conn = psycopg.Connection[DictRow]
EMAIL = "jana.novak@example.test"
CUSTOMER = {"id": 7001, "email": EMAIL, "phone": "603-123-456"}


def redact_body(orders: list[int]) -> dict[str, Any]:
    return {
        "shop_id": 954889,
        "shop_domain": "demo.myshopify.com",
        "customer": CUSTOMER,
        "orders_to_redact": orders,
    }


def data_request_body(customer: dict[str, Any] = CUSTOMER) -> dict[str, Any]:
    return {
        "shop_id": 954889,
        "shop_domain": "demo.myshopify.com",
        "orders_requested": [8101],
        "customer": customer,
        "data_request": {"id": 9999},
    }


def contact(conn: Conn, project: uuid.UUID) -> dict[str, Any]:
    """The workspace's contact first created for EMAIL (it stays, erased, as a tombstone)."""
    return one(
        conn,
        "select c.id, c.email, c.erased_at from public.contacts c"
        " join public.projects p on p.workspace_id = c.workspace_id"
        " where p.id = %s order by c.created_at limit 1",
        (project,),
    )


def other_workspace(conn: Conn, edge: TestClient, jwks: JwksServer) -> tuple[User, uuid.UUID]:
    """Another workspace whose Shopify shop sold to the same person (same customer id, email)."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    assert connect(edge, jwks, owner, project, "shopify").status_code == 200
    assert post_shopify(edge, project, shopify_order(8101)).status_code == 200
    return owner, project


def test_customers_redact_erases_the_customer_and_unlinks_the_listed_orders(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    _, other = other_workspace(conn, client, jwks)
    for order_id in (8101, 8102):
        assert post_shopify(client, project, shopify_order(order_id)).status_code == 200
    person = contact(conn, project)
    assert person["email"] == EMAIL

    delivery = str(uuid.uuid4())
    response = post_shopify(
        client, project, redact_body([8101, 8102]), topic="customers/redact", webhook_id=delivery
    )
    assert response.status_code == 200
    assert response.json() == {"data": {"outcome": "accepted"}, "error": None}

    erased = contact(conn, project)
    assert erased["id"] == person["id"] and erased["erased_at"] is not None
    assert erased["email"] is None
    linked = one(
        conn,
        "select count(*) filter (where contact_id is not null) as linked, count(*) as total"
        " from public.orders where project_id = %s",
        (project,),
    )
    assert linked == {"linked": 0, "total": 2}
    proofs = "select count(*) from public.contact_erasures where contact_id = %s"
    assert one(conn, proofs, (person["id"],))["count"] == 1
    named = "select count(*) from private.webhook_events where body like %s and event_id like %s"
    assert one(conn, named, (f"%{EMAIL}%", f"{project}:%"))["count"] == 0

    # Another workspace's contact with the same email and Shopify id is untouched.
    theirs = contact(conn, other)
    assert theirs["email"] == EMAIL and theirs["erased_at"] is None
    assert (
        one(conn, "select count(*) from public.orders where contact_id = %s", (theirs["id"],))[
            "count"
        ]
        == 1
    )

    # A redelivery changes nothing (and stores nothing naming the person).
    again = post_shopify(
        client, project, redact_body([8101, 8102]), topic="customers/redact", webhook_id=delivery
    )
    assert again.status_code == 200
    assert one(conn, proofs, (person["id"],))["count"] == 1
    assert one(conn, named, (f"%{EMAIL}%", f"{project}:%"))["count"] == 0


def test_customers_data_request_records_an_access_request(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    _, other = other_workspace(conn, client, jwks)
    assert post_shopify(client, project, shopify_order(8101)).status_code == 200
    person = contact(conn, project)

    delivery = str(uuid.uuid4())
    for _ in range(2):
        response = post_shopify(
            client,
            project,
            data_request_body(),
            topic="customers/data_request",
            webhook_id=delivery,
        )
        assert response.status_code == 200
    assert response.json()["data"]["outcome"] == "duplicate"
    exports = conn.execute(
        "select contact_id, requested_by, status from public.contact_exports"
        " where workspace_id = (select workspace_id from public.projects where id = %s)",
        (project,),
    ).fetchall()
    assert exports == [{"contact_id": person["id"], "requested_by": None, "status": "queued"}]
    audited = one(
        conn,
        "select details from public.audit_log where action = 'shop.data_request'"
        " and target_id = %s",
        (str(person["id"]),),
    )
    assert audited["details"]["data_request_id"] == "9999"
    theirs = "select count(*) from public.contact_exports where contact_id = %s"
    assert one(conn, theirs, (contact(conn, other)["id"],))["count"] == 0

    # A customer the workspace does not know: answered, nothing recorded.
    stranger = {"id": 1, "email": "nobody@example.test", "phone": None}
    response = post_shopify(
        client, project, data_request_body(stranger), topic="customers/data_request"
    )
    assert response.status_code == 200
    assert one(conn, theirs, (person["id"],))["count"] == 1


def test_shop_redact_removes_the_connection_and_the_shops_personal_data(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    _, other = other_workspace(conn, client, jwks)
    assert post_shopify(client, project, shopify_order(8101)).status_code == 200
    person = contact(conn, project)

    body = {"shop_id": 954889, "shop_domain": "demo.myshopify.com"}
    response = post_shopify(client, project, body, topic="shop/redact")
    assert response.status_code == 200

    integrations = "select source from private.integrations where project_id = %s"
    assert conn.execute(integrations, (project,)).fetchall() == [{"source": "woocommerce"}]
    links = "select count(*) from public.contact_external_ids where contact_id = %s"
    assert one(conn, links, (person["id"],))["count"] == 0
    stored = conn.execute(
        "select event_id from private.webhook_events where event_id like %s", (f"{project}:%",)
    ).fetchall()
    assert [row["event_id"].split(":")[1] for row in stored] == ["shop/redact"]
    # The workspace's contact and its orders stay; the other workspace keeps everything.
    kept = contact(conn, project)
    assert kept["email"] == EMAIL and kept["erased_at"] is None
    assert (
        one(conn, "select count(*) from public.orders where contact_id = %s", (person["id"],))[
            "count"
        ]
        == 1
    )
    assert conn.execute(integrations, (other,)).fetchall() == [{"source": "shopify"}]
    assert one(conn, links, (contact(conn, other)["id"],))["count"] == 1

    # The shop is gone: its deliveries are refused from now on.
    assert post_shopify(client, project, shopify_order(8102)).status_code == 401


def test_forged_or_malformed_compliance_webhooks_change_nothing(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    assert post_shopify(client, project, shopify_order(8101)).status_code == 200
    person = contact(conn, project)
    forged = post_shopify(
        client,
        project,
        redact_body([8101]),
        topic="customers/redact",
        signature=signed(b"{}", "someone-elses-secret"),
    )
    assert forged.status_code == 401
    assert forged.json()["error"]["code"] == "signature_invalid"
    malformed = post_shopify(
        client, project, {**redact_body([8101]), "customer": EMAIL}, topic="customers/redact"
    )
    assert malformed.status_code == 422
    assert malformed.json()["error"]["code"] == "invalid_input"
    shop_gone = post_shopify(
        client, project, {"shop_id": "x", "shop_domain": ["demo"]}, topic="shop/redact"
    )
    assert shop_gone.status_code == 422
    assert contact(conn, project)["erased_at"] is None
    assert (
        one(conn, "select count(*) from private.integrations where project_id = %s", (project,))[
            "count"
        ]
        == 2
    )
    assert person["email"] == EMAIL


def test_compliance_webhooks_for_another_shop_of_the_app_are_ignored(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    owner, project = shop
    stored = client.post(
        f"/api/v1/projects/{project}/integrations/shopify/api",
        headers=bearer(jwks, owner),
        json={"shop_domain": "demo.myshopify.com", "access_token": "shpat_" + "a1" * 16},
    )
    assert stored.status_code == 200
    assert post_shopify(client, project, shopify_order(8101)).status_code == 200
    elsewhere = "other-shop.myshopify.com"
    for topic, body in (
        ("customers/redact", {**redact_body([8101]), "shop_domain": elsewhere}),
        ("customers/data_request", {**data_request_body(), "shop_domain": elsewhere}),
        ("shop/redact", {"shop_id": 1, "shop_domain": elsewhere}),
    ):
        response = post_shopify(client, project, body, topic=topic)
        assert response.json() == {"data": {"outcome": "ignored"}, "error": None}
    person = contact(conn, project)
    assert person["email"] == EMAIL and person["erased_at"] is None
    assert (
        one(
            conn,
            "select count(*) from public.contact_exports where contact_id = %s",
            (person["id"],),
        )["count"]
        == 0
    )
    assert (
        one(conn, "select count(*) from private.integrations where project_id = %s", (project,))[
            "count"
        ]
        == 2
    )

    # The stored shop's own request is applied.
    response = post_shopify(client, project, redact_body([8101]), topic="customers/redact")
    assert response.json()["data"]["outcome"] == "accepted"
    assert contact(conn, project)["erased_at"] is not None
