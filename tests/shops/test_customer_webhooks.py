"""Shopify and WooCommerce customer webhooks (create, update, delete): verified and stored like
the order webhooks, then applied to contacts; replayed by the cron when an apply did not finish.
Payloads follow the providers' documented shapes (Shopify's REST Admin Customer, WooCommerce's
REST v3 customer)."""

import json
import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from tests.factories.webhook_events import put_off_due_webhook_events
from tests.factories.workspaces import User, one
from tests.shops.test_shop_webhooks import (
    CRON,
    FREE_CONTACTS,
    client,  # noqa: F401 (fixture)
    post_shopify,
    shop,  # noqa: F401 (fixture)
    shopify_order,
    signed,
)

Conn = psycopg.Connection[DictRow]


def shopify_customer_body(customer_id: int, **changes: Any) -> dict[str, Any]:
    customer = {
        "id": customer_id,
        "email": "eva.dvorak@example.test",
        "created_at": "2026-06-01T10:15:00+02:00",
        "updated_at": "2026-06-01T10:15:00+02:00",
        "first_name": "Eva",
        "last_name": "Dvořák",
        "orders_count": 0,
        "state": "enabled",
        "total_spent": "0.00",
        "verified_email": True,
        "tax_exempt": False,
        "tags": "",
        "currency": "CZK",
        "phone": "+420603111222",
        "addresses": [],
        "tax_exemptions": [],
        "email_marketing_consent": {
            "state": "subscribed",
            "opt_in_level": "single_opt_in",
            "consent_updated_at": "2026-06-01T10:15:00+02:00",
        },
        "sms_marketing_consent": None,
        "default_address": {"city": "Brno", "country_code": "CZ"},
        "admin_graphql_api_id": f"gid://shopify/Customer/{customer_id}",
    }
    customer.update(changes)
    return customer


def woocommerce_customer_body(customer_id: int, **changes: Any) -> dict[str, Any]:
    customer = {
        "id": customer_id,
        "date_created": "2026-06-02T09:00:00",
        "date_created_gmt": "2026-06-02T07:00:00",
        "email": "marek@example.test",
        "first_name": "Marek",
        "last_name": "Kováč",
        "role": "customer",
        "username": "marek",
        "billing": {
            "first_name": "Marek",
            "last_name": "Kováč",
            "country": "SK",
            "email": "marek@example.test",
            "phone": "0905 123 456",
        },
        "shipping": {"first_name": "Marek", "last_name": "Kováč", "country": "SK"},
        "is_paying_customer": False,
        "avatar_url": "https://secure.gravatar.com/avatar/0?s=96",
    }
    customer.update(changes)
    return customer


def post_customer_to_shopify(
    edge: TestClient, project: uuid.UUID, customer: dict[str, Any], topic: str
) -> Any:
    return post_shopify(edge, project, customer, topic=topic)


def post_to_woocommerce(
    edge: TestClient,
    project: uuid.UUID,
    customer: dict[str, Any],
    topic: str,
    delivery: str | None = None,
) -> Any:
    body = json.dumps(customer).encode()
    return edge.post(
        f"/api/v1/webhooks/woocommerce/{project}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-WC-Webhook-Source": "https://shop.example/",
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": topic.split(".")[0],
            "X-WC-Webhook-Event": topic.split(".")[1],
            "X-WC-Webhook-ID": "4",
            "X-WC-Webhook-Delivery-ID": delivery or uuid.uuid4().hex,
            "X-WC-Webhook-Signature": signed(body),
        },
    )


def contact_of(conn: Conn, project: uuid.UUID, source: str, external_id: str) -> dict[str, Any]:
    return one(
        conn,
        "select k.id, k.email, k.phone, k.first_name, k.last_name, k.consent_state"
        " from public.contacts k join public.contact_external_ids x on x.contact_id = k.id"
        " join public.projects p on p.workspace_id = x.workspace_id"
        " where p.id = %s and x.source = %s and x.external_id = %s",
        (project, source, external_id),
    )


def consent_history(conn: Conn, contact_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = conn.execute(
        "select status, source from public.consents where contact_id = %s order by created_at, id",
        (contact_id,),
    ).fetchall()
    return [(row["status"], row["source"]) for row in rows]


def test_a_shopify_customer_is_created_updated_and_unlinked(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    customer = shopify_customer_body(706405506930370084)
    created = post_customer_to_shopify(client, project, customer, "customers/create")
    assert created.status_code == 200, created.text
    assert created.json()["data"] == {"outcome": "accepted"}
    contact = contact_of(conn, project, "shopify", "706405506930370084")
    assert contact["email"] == "eva.dvorak@example.test"
    assert contact["phone"] == "+420603111222"
    assert (contact["first_name"], contact["last_name"]) == ("Eva", "Dvořák")
    assert contact["consent_state"] == "granted"
    assert consent_history(conn, contact["id"]) == [("granted", "shop_checkout")]

    # The customer changes their name and email and unsubscribes in the shop.
    changed = shopify_customer_body(
        706405506930370084,
        email="eva.nova@example.test",
        last_name="Nová",
        email_marketing_consent={"state": "unsubscribed", "opt_in_level": "single_opt_in"},
    )
    updated = post_customer_to_shopify(client, project, changed, "customers/update")
    assert updated.json()["data"] == {"outcome": "accepted"}
    after = contact_of(conn, project, "shopify", "706405506930370084")
    assert after["id"] == contact["id"]
    assert (after["email"], after["last_name"]) == ("eva.nova@example.test", "Nová")
    assert after["consent_state"] == "withdrawn"
    assert consent_history(conn, contact["id"]) == [
        ("granted", "shop_checkout"),
        ("withdrawn", "shop_checkout"),
    ]

    deleted = post_customer_to_shopify(
        client, project, {"id": 706405506930370084, "phone": None}, "customers/delete"
    )
    assert deleted.json()["data"] == {"outcome": "accepted"}
    assert conn.execute(
        "select count(*) as n from public.contact_external_ids where contact_id = %s",
        (contact["id"],),
    ).fetchone() == {"n": 0}
    # The contact stays, with its history.
    assert one(conn, "select email from public.contacts where id = %s", (contact["id"],)) == {
        "email": "eva.nova@example.test"
    }


def test_a_shopify_customer_update_meets_the_contact_its_order_made(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    assert post_shopify(client, project, shopify_order(5001)).status_code == 200
    order_contact = contact_of(conn, project, "shopify", "7001")
    customer = shopify_customer_body(
        7001, email="jana.novak@example.test", first_name="Jana", last_name="Nováková"
    )
    post_customer_to_shopify(client, project, customer, "customers/update")
    contact = contact_of(conn, project, "shopify", "7001")
    assert contact["id"] == order_contact["id"]
    assert contact["last_name"] == "Nováková"
    count = one(
        conn,
        "select count(*) as n from public.contacts k join public.projects p"
        " on p.workspace_id = k.workspace_id where p.id = %s",
        (project,),
    )
    assert count == {"n": 1}


def test_an_email_of_another_contact_or_an_unsubscribed_one_is_not_taken(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    post_customer_to_shopify(
        client, project, shopify_customer_body(1, email="one@example.test"), "customers/create"
    )
    post_customer_to_shopify(
        client, project, shopify_customer_body(2, email="two@example.test"), "customers/create"
    )
    post_customer_to_shopify(
        client, project, shopify_customer_body(2, email="one@example.test"), "customers/update"
    )
    assert contact_of(conn, project, "shopify", "2")["email"] == "two@example.test"
    conn.execute(
        "update public.contacts set unsubscribed_at = now() where id = %s",
        (contact_of(conn, project, "shopify", "1")["id"],),
    )
    post_customer_to_shopify(
        client, project, shopify_customer_body(1, email="new@example.test"), "customers/update"
    )
    assert contact_of(conn, project, "shopify", "1")["email"] == "one@example.test"


def test_a_woocommerce_customer_is_created_updated_and_unlinked(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    created = post_to_woocommerce(
        client, project, woocommerce_customer_body(25), "customer.created"
    )
    assert created.json()["data"] == {"outcome": "accepted"}
    contact = contact_of(conn, project, "woocommerce", "25")
    assert (contact["email"], contact["phone"]) == ("marek@example.test", "+421905123456")
    assert contact["consent_state"] == "unknown"  # WooCommerce sends no marketing consent
    delivery = uuid.uuid4().hex
    changed = woocommerce_customer_body(25, first_name="Marko")
    for _ in range(2):
        answer = post_to_woocommerce(
            client, project, changed, "customer.updated", delivery=delivery
        )
    assert answer.json()["data"] == {"outcome": "duplicate"}
    assert contact_of(conn, project, "woocommerce", "25")["first_name"] == "Marko"
    gone = post_to_woocommerce(client, project, {"id": 25}, "customer.deleted")
    assert gone.json()["data"] == {"outcome": "accepted"}
    assert (
        conn.execute(
            "select 1 from public.contact_external_ids where contact_id = %s", (contact["id"],)
        ).fetchone()
        is None
    )


def test_signed_customers_of_the_wrong_shape_are_a_422_and_without_an_id_unmappable(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    wrong = post_customer_to_shopify(
        client, project, shopify_customer_body(3, default_address="Brno"), "customers/create"
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["code"] == "invalid_input"
    without_id = post_to_woocommerce(
        client, project, woocommerce_customer_body(0, id=None), "customer.created"
    )
    assert without_id.json()["data"] == {"outcome": "unmappable"}


@pytest.fixture
def no_other_due_shopify_events(conn: Conn) -> None:
    """Every Shopify event other tests left stored and unapplied in the worker's database is put
    off for ever: the replay takes each provider's 50 events due longest ago, whichever
    workspace's, so fifty such leftovers ahead of this test's event left it unreplayed (proven
    with 51 such leftovers run first)."""
    put_off_due_webhook_events(conn, ["shopify"])


@pytest.mark.usefixtures("no_other_due_shopify_events")
def test_a_customer_whose_apply_failed_is_applied_by_the_replay(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    """The plan is full, so the new customer cannot be created after the answer; the replay
    creates them once the workspace upgrades."""
    owner, project = shop
    conn.execute(
        "insert into public.contacts (workspace_id, email)"
        " select %s, 'existing-' || n || '@example.test' from generate_series(1, %s) n",
        (owner.workspace_id, FREE_CONTACTS),
    )
    answer = post_customer_to_shopify(
        client, project, shopify_customer_body(9009), "customers/create"
    )
    assert answer.json()["data"] == {"outcome": "accepted"}
    event = one(
        conn,
        "select id, status, last_error from private.webhook_events"
        " where provider = 'shopify' and event_id like %s",
        (f"{project}:customers/create:%",),
    )
    assert (event["status"], event["last_error"]) == ("received", "psycopg ProgrammingError PT402")
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
    assert replayed.json()["data"]["outcomes"]["shopify:applied"] >= 1
    assert contact_of(conn, project, "shopify", "9009")["email"] == "eva.dvorak@example.test"
