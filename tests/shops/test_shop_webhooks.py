"""Shopify and WooCommerce order webhooks: verified on the raw body, stored, de-duplicated,
mapped onto contacts and orders, and replayed by the cron when an upsert did not finish.
Payloads follow the providers' documented shapes."""

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from tests.factories.edge import bearer, edge_settings
from tests.factories.statements import counting_statements
from tests.factories.webhook_events import put_off_due_webhook_events
from tests.factories.workspaces import User, add_member, create_user, make_project, one
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]
ENCRYPTION_KEY = Fernet.generate_key().decode()
SHOP_SECRET = "shpss_" + uuid.uuid4().hex
CRON = "cron-" + uuid.uuid4().hex
FREE_CONTACTS = 1000  # the free plan's contact limit


def shopify_order(order_id: int, **changes: Any) -> dict[str, Any]:
    order = {
        "id": order_id,
        "admin_graphql_api_id": f"gid://shopify/Order/{order_id}",
        "email": "jana.novak@example.test",
        "created_at": "2026-06-01T10:15:00+02:00",
        "updated_at": "2026-06-01T10:16:00+02:00",
        "currency": "CZK",
        "presentment_currency": "CZK",
        "total_price": "1299.00",
        "subtotal_price": "1099.00",
        "financial_status": "paid",
        "fulfillment_status": None,
        "cancelled_at": None,
        "name": f"#{order_id}",
        "customer": {
            "id": 7001,
            "email": "Jana.Novak@Example.TEST",
            "first_name": "Jana",
            "last_name": "Novák",
            "phone": "603 123 456",
            "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in"},
            "default_address": {"country_code": "CZ", "city": "Praha"},
        },
        "line_items": [
            {"id": 1, "title": "Running shoes", "sku": "RS-42", "quantity": 1, "price": "1099.00"},
            {"id": 2, "title": "Socks", "sku": "SO-1", "quantity": 2, "price": "100.00"},
        ],
    }
    order.update(changes)
    return order


def woocommerce_order(order_id: int, **changes: Any) -> dict[str, Any]:
    order = {
        "id": order_id,
        "parent_id": 0,
        "status": "processing",
        "currency": "EUR",
        "date_created": "2026-06-02T09:00:00",
        "date_created_gmt": "2026-06-02T07:00:00",
        "total": "45.90",
        "customer_id": 12,
        "billing": {
            "first_name": "Peter",
            "last_name": "Horváth",
            "email": "peter@example.test",
            "phone": "+421 905 123 456",
            "country": "SK",
        },
        "line_items": [
            {"id": 5, "name": "Mug", "sku": "MUG", "quantity": 3, "price": 15.3, "total": "45.90"}
        ],
    }
    order.update(changes)
    return order


def signed(body: bytes, secret: str = SHOP_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        integrations_encryption_key=SecretStr(ENCRYPTION_KEY),
        public_base_url="https://edge.example.test",
        cron_secret=SecretStr(CRON),
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def connect(
    client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID, source: str
) -> Any:
    return client.post(
        f"/api/v1/projects/{project}/integrations/{source}/connect",
        headers=bearer(jwks, user),
        json={"webhook_secret": SHOP_SECRET},
    )


@pytest.fixture
def shop(conn: Conn, client: TestClient, jwks: JwksServer) -> tuple[User, uuid.UUID]:
    owner = create_user(conn)
    project = make_project(conn, owner)
    for source in ("shopify", "woocommerce"):
        assert connect(client, jwks, owner, project, source).status_code == 200
    return owner, project


def post_shopify(
    client: TestClient,
    project: uuid.UUID,
    order: dict[str, Any],
    topic: str = "orders/create",
    webhook_id: str | None = None,
    signature: str | None = None,
) -> Any:
    body = json.dumps(order).encode()
    return client.post(
        f"/api/v1/webhooks/shopify/{project}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Shop-Domain": "demo.myshopify.com",
            "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
            "X-Shopify-Hmac-Sha256": signature or signed(body),
        },
    )


def post_woocommerce(
    client: TestClient,
    project: uuid.UUID,
    order: dict[str, Any],
    delivery: str | None = None,
    signature: str | None = None,
) -> Any:
    body = json.dumps(order).encode()
    return client.post(
        f"/api/v1/webhooks/woocommerce/{project}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-WC-Webhook-Source": "https://shop.example/",
            "X-WC-Webhook-Topic": "order.created",
            "X-WC-Webhook-Resource": "order",
            "X-WC-Webhook-Event": "created",
            "X-WC-Webhook-ID": "3",
            "X-WC-Webhook-Delivery-ID": delivery or uuid.uuid4().hex,
            "X-WC-Webhook-Signature": signature or signed(body),
        },
    )


def orders(conn: Conn, project: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "select o.source, o.external_id, o.status, o.total, o.currency, c.email, c.phone,"
        " c.first_name, c.consent_state,"
        " (select count(*) from public.order_items i where i.order_id = o.id) as items"
        " from public.orders o left join public.contacts c on c.id = o.contact_id"
        " where o.project_id = %s order by o.source, o.external_id",
        (project,),
    ).fetchall()


def test_the_secret_is_stored_encrypted(conn: Conn, shop: tuple[User, uuid.UUID]) -> None:
    _, project = shop
    stored = one(
        conn,
        "select webhook_secret_encrypted from private.integrations"
        " where project_id = %s and source = 'shopify'",
        (project,),
    )["webhook_secret_encrypted"]
    assert SHOP_SECRET not in stored
    assert Fernet(ENCRYPTION_KEY.encode()).decrypt(stored.encode()).decode() == SHOP_SECRET


def test_a_shopify_order_becomes_a_contact_and_an_order(
    client: TestClient, conn: Conn, shop: tuple[User, uuid.UUID]
) -> None:
    _, project = shop
    response = post_shopify(client, project, shopify_order(820982911946154508))
    assert response.status_code == 200
    assert response.json()["data"] == {"outcome": "accepted"}
    assert orders(conn, project) == [
        {
            "source": "shopify",
            "external_id": "820982911946154508",
            "status": "paid",
            "total": 1299,
            "currency": "CZK",
            "email": "jana.novak@example.test",
            "phone": "+420603123456",
            "first_name": "Jana",
            "consent_state": "granted",
            "items": 2,
        }
    ]


def test_an_order_webhook_is_the_page_upsert_of_one_order(
    client: TestClient, conn: Conn, shop: tuple[User, uuid.UUID]
) -> None:
    """Shopify's and WooCommerce's order webhooks write as a sync's page does: one statement
    for the order, one for its lines, whatever the number of lines."""
    _, project = shop
    many_lines = [
        {"id": n, "title": f"Item {n}", "sku": f"SKU-{n}", "quantity": 1, "price": "10.00"}
        for n in range(1, 13)
    ]
    tables = ("public.orders", "public.order_items")
    with counting_statements(conn, *tables) as shopify:
        answer = post_shopify(client, project, shopify_order(4401, line_items=many_lines))
    assert answer.json()["data"] == {"outcome": "accepted"}
    with counting_statements(conn, *tables) as woocommerce:
        answer = post_woocommerce(client, project, woocommerce_order(4402))
    assert answer.json()["data"] == {"outcome": "accepted"}
    assert {o["external_id"]: o["items"] for o in orders(conn, project)} == {"4401": 12, "4402": 1}
    for counts in (shopify, woocommerce):
        assert (counts["orders:INSERT"], counts["order_items:INSERT"]) == (1, 1), counts
        assert counts["orders:UPDATE"] <= 1 and counts["order_items:DELETE"] <= 1, counts


def test_shopify_replays_and_updates(
    client: TestClient, conn: Conn, shop: tuple[User, uuid.UUID]
) -> None:
    _, project = shop
    first = post_shopify(client, project, shopify_order(1001), webhook_id="wh-1")
    replay = post_shopify(client, project, shopify_order(1001), webhook_id="wh-1")
    cancelled = post_shopify(
        client,
        project,
        shopify_order(1001, cancelled_at="2026-06-03T08:00:00+02:00", financial_status="voided"),
        topic="orders/cancelled",
    )
    assert [r.json()["data"]["outcome"] for r in (first, replay, cancelled)] == [
        "accepted",
        "duplicate",
        "accepted",
    ]
    assert [(o["external_id"], o["status"]) for o in orders(conn, project)] == [
        ("1001", "cancelled")
    ]


def test_tampered_or_foreign_shopify_webhooks_are_refused(
    client: TestClient, conn: Conn, shop: tuple[User, uuid.UUID]
) -> None:
    _, project = shop
    body = json.dumps(shopify_order(2002)).encode()
    tampered = post_shopify(
        client, project, shopify_order(2002, total_price="1.00"), signature=signed(body)
    )
    wrong_secret = post_shopify(
        client, project, shopify_order(2002), signature=signed(body, "someone-elses-secret")
    )
    unknown_project = post_shopify(client, uuid.uuid4(), shopify_order(2002))
    for response in (tampered, wrong_secret, unknown_project):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "signature_invalid"
    assert orders(conn, project) == []
    stored = one(
        conn, "select count(*) from private.webhook_events where body like '%%\"id\": 2002,%%'"
    )
    assert stored["count"] == 0


@pytest.mark.parametrize(
    ("source", "order"),
    [
        ("shopify", shopify_order(3001, customer="jana@example.test")),
        ("shopify", shopify_order(3002, line_items={"sku": "RS-42", "quantity": 1})),
        ("shopify", shopify_order(3003, customer=None, billing_address=[{"country_code": "CZ"}])),
        ("shopify", shopify_order(3004, line_items=[{"quantity": "lots", "price": "1"}])),
        ("woocommerce", woocommerce_order(3005, billing=[{"email": "peter@example.test"}])),
    ],
)
def test_signed_orders_of_the_wrong_shape_are_a_422_and_store_nothing(
    client: TestClient, conn: Conn, shop: tuple[User, uuid.UUID], source: str, order: dict[str, Any]
) -> None:
    _, project = shop
    post = post_shopify if source == "shopify" else post_woocommerce
    response = post(client, project, order)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert response.headers["X-Request-Id"]
    assert orders(conn, project) == []
    stored = one(
        conn,
        "select count(*) from private.webhook_events where event_id like %s and body like %s",
        (f"{project}:%", f'%"id": {order["id"]},%'),
    )
    assert stored["count"] == 0


def test_other_shopify_topics_are_acknowledged_and_ignored(
    client: TestClient, conn: Conn, shop: tuple[User, uuid.UUID]
) -> None:
    _, project = shop
    shop_update = {"id": 1, "name": "Demo shop", "email": "owner@example.test"}
    response = post_shopify(client, project, shop_update, topic="shop/update")
    assert response.json()["data"]["outcome"] == "ignored"
    assert orders(conn, project) == []
    stored = one(
        conn,
        "select event_id, status from private.webhook_events where event_id like %s",
        (f"{project}:%",),
    )
    assert stored["event_id"].startswith(f"{project}:other:")
    assert stored["status"] == "ignored"


@pytest.fixture
def no_other_due_shop_events(conn: Conn) -> None:
    """Every Shopify and WooCommerce event other tests left stored and unapplied in the
    worker's database is put off for ever: the replay takes each provider's 50 events due
    longest ago, whichever workspace's, so fifty such leftovers ahead of this test's event left
    it unreplayed (proven with 51 Shopify leftovers run first)."""
    put_off_due_webhook_events(conn, ["shopify", "woocommerce"])


@pytest.mark.usefixtures("no_other_due_shop_events")
def test_an_order_event_stored_before_topics_were_kept_is_replayed_as_an_order(
    client: TestClient, conn: Conn, shop: tuple[User, uuid.UUID]
) -> None:
    _, project = shop
    stored = one(
        conn,
        "select id from private.record_webhook_event('shopify', %s, %s)",
        (f"{project}:{uuid.uuid4()}", json.dumps(shopify_order(5001))),
    )["id"]
    conn.execute(
        "update private.webhook_events set received_at = now() - interval '10 minutes'"
        " where id = %s",
        (stored,),
    )
    client.get("/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"})
    assert [o["external_id"] for o in orders(conn, project)] == ["5001"]


def test_a_woocommerce_order_is_verified_stored_and_mapped(
    client: TestClient, conn: Conn, shop: tuple[User, uuid.UUID]
) -> None:
    _, project = shop
    first = post_woocommerce(client, project, woocommerce_order(727), delivery="d-1")
    replay = post_woocommerce(client, project, woocommerce_order(727), delivery="d-1")
    body = json.dumps(woocommerce_order(728)).encode()
    tampered = post_woocommerce(
        client, project, woocommerce_order(728, total="0.01"), signature=signed(body)
    )
    assert [first.json()["data"]["outcome"], replay.json()["data"]["outcome"]] == [
        "accepted",
        "duplicate",
    ]
    assert tampered.status_code == 401
    assert orders(conn, project) == [
        {
            "source": "woocommerce",
            "external_id": "727",
            "status": "paid",
            "total": Decimal("45.90"),
            "currency": "EUR",
            "email": "peter@example.test",
            "phone": "+421905123456",
            "first_name": "Peter",
            "consent_state": "unknown",
            "items": 1,
        }
    ]


def test_a_woocommerce_ping_is_acknowledged(
    client: TestClient, shop: tuple[User, uuid.UUID]
) -> None:
    _, project = shop
    response = client.post(
        f"/api/v1/webhooks/woocommerce/{project}",
        content=b"webhook_id=3",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.json()["data"] == {"outcome": "ping"}


def test_viewers_cannot_connect_a_shop(conn: Conn, client: TestClient, jwks: JwksServer) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    response = connect(client, jwks, viewer, make_project(conn, owner), "shopify")
    assert (response.status_code, response.json()["error"]["code"]) == (403, "insufficient_role")


def test_a_disconnected_shop_can_no_longer_deliver(
    client: TestClient, jwks: JwksServer, conn: Conn, shop: tuple[User, uuid.UUID]
) -> None:
    owner, project = shop
    response = client.post(
        f"/api/v1/projects/{project}/integrations/shopify/disconnect",
        headers=bearer(jwks, owner),
    )
    assert response.json()["data"]["removed"] is True
    assert post_shopify(client, project, shopify_order(3003)).status_code == 401
    assert orders(conn, project) == []


@pytest.mark.usefixtures("no_other_due_shop_events")
@pytest.mark.parametrize("source", ["shopify", "woocommerce"])
def test_an_order_whose_upsert_failed_is_applied_by_the_replay(
    client: TestClient, conn: Conn, shop: tuple[User, uuid.UUID], source: str
) -> None:
    """The shop was answered, so it will not send the order again: the replay must. Here the
    new customer is past the free plan's contacts until the workspace upgrades."""
    owner, project = shop
    conn.execute(
        "insert into public.contacts (workspace_id, email)"
        " select %s, 'existing-' || n || '@example.test' from generate_series(1, %s) n",
        (owner.workspace_id, FREE_CONTACTS),
    )
    if source == "shopify":
        answer = post_shopify(client, project, shopify_order(4001))
    else:
        answer = post_woocommerce(client, project, woocommerce_order(4001))
    assert answer.json()["data"] == {"outcome": "accepted"}
    assert orders(conn, project) == []
    event = one(
        conn,
        "select id, event_id, status, attempts, last_error from private.webhook_events"
        " where provider = %s and event_id like %s",
        (source, f"{project}:%"),
    )
    topic = "orders/create" if source == "shopify" else "order.created"
    assert event["event_id"].startswith(f"{project}:{topic}:")
    assert (event["status"], event["attempts"], event["last_error"]) == (
        "received",
        1,
        "psycopg ProgrammingError PT402",
    )

    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (owner.workspace_id,)
    )
    conn.execute(
        "update private.webhook_events set received_at = now() - interval '10 minutes',"
        " next_attempt_at = now() where id = %s",
        (event["id"],),
    )
    replayed = client.get(
        "/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"}
    )
    assert replayed.json()["data"]["outcomes"][f"{source}:applied"] >= 1
    assert [o["external_id"] for o in orders(conn, project)] == ["4001"]
    assert one(
        conn, "select status, outcome from private.webhook_events where id = %s", (event["id"],)
    ) == {"status": "applied", "outcome": "applied"}
