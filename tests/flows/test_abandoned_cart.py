"""Shopify's checkout webhooks start the abandoned-cart flow (one run per checkout) and the
order ends it; an RFM snapshot that moves a contact into At Risk starts the win-back."""

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from tests.factories.edge import bearer, edge_settings
from tests.factories.email import FROM_EMAIL, verified_sender
from tests.factories.flows import history, runs, skip_waits, tick
from tests.factories.workspaces import User, acting_as, create_user, make_project, one
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[Any]
ENCRYPTION_KEY = Fernet.generate_key().decode()
SHOP_SECRET = "shpss_" + uuid.uuid4().hex


@pytest.fixture(autouse=True)
def quiet_flows(conn: Conn) -> None:
    conn.execute("update public.flows set status = 'paused' where status = 'active'")


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        integrations_encryption_key=SecretStr(ENCRYPTION_KEY),
        public_base_url="https://edge.example.test",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def ready_made(conn: Conn, owner: User, key: str) -> uuid.UUID:
    sender = verified_sender(conn, owner)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (owner.workspace_id,)
    )
    with acting_as(conn, owner):
        flow = one(
            conn,
            "select public.copy_flow_template(%s, %s, %s, %s) as id",
            (owner.workspace_id, key, sender, FROM_EMAIL),
        )["id"]
        conn.execute("select public.activate_flow(%s)", (flow,))
    return uuid.UUID(str(flow))


def post(client: TestClient, project: uuid.UUID, topic: str, document: dict[str, Any]) -> Any:
    body = json.dumps(document).encode()
    signature = base64.b64encode(hmac.new(SHOP_SECRET.encode(), body, hashlib.sha256).digest())
    return client.post(
        f"/api/v1/webhooks/shopify/{project}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Hmac-Sha256": signature.decode(),
        },
    )


def checkout(checkout_id: int, email: str) -> dict[str, Any]:
    """Shopify's abandoned checkout, as its docs show it (trimmed)."""
    return {
        "id": checkout_id,
        "token": uuid.uuid4().hex,
        "cart_token": uuid.uuid4().hex,
        "email": email,
        "created_at": "2026-12-08T10:00:00+01:00",
        "completed_at": None,
        "currency": "EUR",
        "total_price": "39.90",
        "abandoned_checkout_url": f"https://shop.example.com/checkouts/{checkout_id}/recover",
        "line_items": [
            {"title": "Green tea", "sku": "TEA-1", "quantity": 2, "price": "9.95", "product_id": 7}
        ],
        "customer": {"id": checkout_id + 1000, "email": email, "first_name": "Ada"},
    }


def test_a_checkout_starts_the_cart_flow_and_the_order_ends_it(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    answer = client.post(
        f"/api/v1/projects/{project}/integrations/shopify/connect",
        headers=bearer(jwks, owner),
        json={"webhook_secret": SHOP_SECRET},
    )
    assert answer.status_code == 200, answer.text
    flow = ready_made(conn, owner, "abandoned_cart")

    for checkout_id, email in ((501, "buyer@mail.example.org"), (502, "browser@mail.example.org")):
        response = post(client, project, "checkouts/create", checkout(checkout_id, email))
        assert response.json()["data"]["outcome"] == "accepted", response.text
    # An update of the same checkout starts nothing new.
    assert (
        post(
            client, project, "checkouts/update", checkout(501, "buyer@mail.example.org")
        ).status_code
        == 200
    )

    started = {r["entry_key"]: r for r in runs(conn, flow)}
    assert set(started) == {"501", "502"}
    # The reminder waits an hour after the checkout for an order.
    assert {r["due_at"] - r["entered_at"] for r in started.values()} == {timedelta(hours=1)}
    assert started["501"]["context"]["items"][0]["name"] == "Green tea"
    cart = one(
        conn,
        "select items, total, recovery_url, contact_id is not null as linked from public.checkouts"
        " where workspace_id = %s and external_id = '501'",
        (owner.workspace_id,),
    )
    assert (cart["total"], cart["linked"]) == (Decimal("39.90"), True)
    assert cart["items"][0]["quantity"] == 2

    order = {
        "id": 9001,
        "email": "buyer@mail.example.org",
        "created_at": datetime.now(UTC).isoformat(),
        "currency": "EUR",
        "total_price": "39.90",
        "financial_status": "paid",
        "customer": {"id": 1501, "email": "buyer@mail.example.org"},
        "line_items": [{"title": "Green tea", "quantity": 2, "price": "9.95"}],
    }
    assert post(client, project, "orders/create", order).status_code == 200
    ended = {r["entry_key"]: r for r in runs(conn, flow)}
    assert (ended["501"]["status"], ended["501"]["exit_reason"]) == ("converted", "goal")
    assert ended["502"]["status"] == "active"

    conn.execute(
        "update public.contacts set consent_state = 'granted' where workspace_id = %s",
        (owner.workspace_id,),
    )
    skip_waits(conn, flow)
    tick(conn)
    [browsing] = [r for r in runs(conn, flow) if r["entry_key"] == "502"]
    assert history(conn, browsing["id"]) == [("wait", "waited"), ("send_email", "queued")]


def test_moving_into_at_risk_starts_the_win_back(conn: Conn) -> None:
    owner = create_user(conn)
    flow = ready_made(conn, owner, "win_back")
    contact = one(
        conn,
        "insert into public.contacts (workspace_id, email, consent_state) values"
        " (%s, 'drifter@mail.example.org', 'granted') returning id",
        (owner.workspace_id,),
    )["id"]
    this_month = date.today().replace(day=1)
    last_month = (this_month.replace(day=1) - timedelta(days=1)).replace(day=1)
    for month, segment in ((last_month, "Champions"), (this_month, "At Risk")):
        conn.execute(
            "insert into analytics.rfm_snapshots (workspace_id, snapshot_month, contact_id,"
            " recency_days, frequency, monetary, r_score, f_score, m_score, segment)"
            " values (%s, %s, %s, 100, 3, 300, 2, 3, 3, %s)",
            (owner.workspace_id, month, contact, segment),
        )
    [run] = runs(conn, flow)
    assert run["contact_id"] == contact
    assert run["context"]["from"] == "Champions" and run["context"]["to"] == "At Risk"
