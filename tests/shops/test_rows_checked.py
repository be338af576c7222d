"""A shop's order that breaks a rule of its table (a negative total, a currency that is not a
code, a date Postgres cannot read) is left out of its page, or its bad value dropped where the
rest still means something, and the page's other orders are written: one bad order in a
backfill page must not lose the others, and a webhook's bad order must not fail its apply until
it is dead-lettered. Checkouts keep their cart when a value of theirs breaks a rule."""

import uuid
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.core.db import become_service
from tests.factories.workspaces import User, create_user, make_project, one
from tests.shops.test_shop_webhooks import (
    client,  # noqa: F401 (fixture)
    post_shopify,
    post_woocommerce,
    shop,  # noqa: F401 (fixture)
    shopify_order,
    woocommerce_order,
)

Conn = psycopg.Connection[DictRow]


def order(external_id: str, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "external_id": external_id,
        "status": "paid",
        "placed_at": "2026-06-01T10:00:00+00:00",
        "total": "30.00",
        "currency": "EUR",
        "customer": {"external_id": f"c-{external_id}"},
    }
    document.update(changes)
    return document


def upsert(conn: Conn, project: uuid.UUID, documents: list[Any]) -> int:
    with conn.transaction():
        become_service(conn)
        row = conn.execute(
            "select private.upsert_orders(%s, 'shopify', %s) as written",
            (project, Jsonb(documents)),
        ).fetchone()
    assert row is not None
    return int(row["written"])


def stored(conn: Conn, project: uuid.UUID) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute(
        "select o.external_id, o.status, o.placed_at::date::text as placed, o.total::text,"
        " o.exchange_rate, o.base_total::text,"
        " array(select i.name || ' ' || i.quantity::text || ' x ' || i.unit_price::text"
        "  from public.order_items i where i.order_id = o.id order by i.id) as lines"
        " from public.orders o where o.project_id = %s order by o.external_id",
        (project,),
    ).fetchall()
    return {row["external_id"]: tuple(row.values())[1:] for row in rows}


def test_a_page_writes_the_orders_that_keep_the_rules_and_leaves_out_the_others(
    conn: Conn,
) -> None:
    user = create_user(conn)
    project = make_project(conn, user)  # the workspace's base currency is EUR
    lines = [
        {"sku": "TEA", "name": "Tea", "quantity": 2, "unit_price": "15.00"},
        {"sku": "RETURNED", "name": "Returned", "quantity": 0, "unit_price": "15.00"},
        {"sku": "DISCOUNT", "name": "Discount", "quantity": 1, "unit_price": "-5.00"},
        {"sku": "FREE", "name": "Free", "quantity": 1},  # no price: not a line we can count
        {"quantity": "1.5", "unit_price": 2.345},  # no SKU nor name: kept, as `item`
        "not a line",
    ]
    page = [
        order("good", items=lines),
        order("negative", total="-10.00"),
        order("no-total", total=None),
        order("too-much", total="1000000000000.00"),
        order("euro-sign", currency="€"),
        order("no-such-day", placed_at="2026-02-30T10:00:00Z"),
        order("far-offset", placed_at="2026-06-01T10:00:00+20:00"),
        order("unknown-status", status="on-hold"),
        order("bad-rate", currency="USD", exchange_rate="-1"),
        "not an order",
    ]
    assert upsert(conn, project, page) == 3
    assert stored(conn, project) == {
        "bad-rate": ("paid", "2026-06-01", "30.00", None, None, []),
        "good": (
            "paid",
            "2026-06-01",
            "30.00",
            None,
            "30.00",
            ["Tea 2.000 x 15.00", "item 1.500 x 2.35"],
        ),
        "unknown-status": ("pending", "2026-06-01", "30.00", None, "30.00", []),
    }
    # A later copy with an unknown status, an unreadable date and lines that are not a list
    # keeps what was stored of those; one with a bad total leaves the stored order as it was.
    later = [
        order("good", status="weird", placed_at="yesterday", total="35.00", items="none"),
        order("unknown-status", status="fulfilled", total="-1"),
    ]
    assert upsert(conn, project, later) == 1
    assert stored(conn, project)["good"] == (
        "paid",
        "2026-06-01",
        "35.00",
        None,
        "35.00",
        ["Tea 2.000 x 15.00", "item 1.500 x 2.35"],
    )
    assert stored(conn, project)["unknown-status"][0] == "pending"
    assert upsert(conn, project, [order("only-bad", currency="euro"), 42]) == 0


def event_of(conn: Conn, provider: str, project: uuid.UUID) -> dict[str, Any]:
    return one(
        conn,
        "select status, outcome, attempts from private.webhook_events"
        " where provider = %s and event_id like %s order by received_at desc limit 1",
        (provider, f"{project}:%"),
    )


def test_a_webhook_order_that_breaks_a_rule_is_recorded_as_skipped_not_retried(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    answer = post_shopify(client, project, shopify_order(5001, total_price="-1299.00"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"outcome": "accepted"}
    # Applied once, for good: the same order would fail the same way on every replay.
    assert event_of(conn, "shopify", project) == {
        "status": "ignored",
        "outcome": "skipped",
        "attempts": 0,
    }
    assert (
        one(conn, "select count(*) as n from public.orders where project_id = %s", (project,))["n"]
        == 0
    )
    # A line with a negative price is left out; its order is written with its other lines.
    body = woocommerce_order(5002)
    body["line_items"].append(
        {"id": 6, "name": "Coupon", "sku": "", "quantity": 1, "price": -5, "total": "-5.00"}
    )
    assert post_woocommerce(client, project, body).json()["data"] == {"outcome": "accepted"}
    assert event_of(conn, "woocommerce", project) == {
        "status": "applied",
        "outcome": "applied",
        "attempts": 0,
    }
    lines = conn.execute(
        "select i.name from public.order_items i join public.orders o on o.id = i.order_id"
        " where o.project_id = %s and o.external_id = '5002'",
        (project,),
    ).fetchall()
    assert [line["name"] for line in lines] == ["Mug"]


def shopify_checkout(checkout_id: int, **changes: Any) -> dict[str, Any]:
    checkout = {
        "id": checkout_id,
        "token": f"token-{checkout_id}",
        "email": "cart@example.test",
        "created_at": "2026-06-01T10:00:00+02:00",
        "completed_at": None,
        "total_price": "59.00",
        "currency": "CZK",
        "abandoned_checkout_url": f"https://demo.myshopify.com/recover/{checkout_id}",
        "line_items": [{"title": "Mug", "sku": "MUG", "quantity": 1, "price": "59.00"}],
    }
    checkout.update(changes)
    return checkout


def test_a_checkout_with_values_that_break_rules_keeps_its_cart(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    # An offset Python reads but Postgres does not (beyond ±15:59), and lines over the 64 KiB
    # the cart and its checkout_started event hold.
    long_lines = [
        {"title": "Mug " * 300, "sku": f"MUG-{n}", "quantity": 1, "price": "59.00"}
        for n in range(60)
    ]
    body = shopify_checkout(9001, created_at="2026-06-01T10:00:00+20:00", line_items=long_lines)
    answer = post_shopify(client, project, body, topic="checkouts/create")
    assert answer.json()["data"] == {"outcome": "accepted"}
    assert event_of(conn, "shopify", project)["outcome"] == "applied"
    checkout = one(
        conn,
        "select items, total::text, currency, completed_at is not null as completed,"
        " started_at > now() - interval '1 hour' as started_now"
        " from public.checkouts where project_id = %s and external_id = '9001'",
        (project,),
    )
    assert checkout == {
        "items": [],
        "total": "59.00",
        "currency": "CZK",
        "completed": False,
        "started_now": True,
    }
    # Its completion at a time Postgres cannot read still completes it (its flow must stop).
    done = shopify_checkout(9001, completed_at="2026-06-01T11:00:00+20:00")
    assert post_shopify(client, project, done, topic="checkouts/update").status_code == 200
    assert event_of(conn, "shopify", project)["outcome"] == "applied"
    completed = one(
        conn,
        "select completed_at is not null as completed, jsonb_array_length(items) as lines"
        " from public.checkouts where project_id = %s and external_id = '9001'",
        (project,),
    )
    assert completed == {"completed": True, "lines": 1}


def test_a_checkout_whose_id_cannot_be_stored_is_recorded_as_skipped(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    body = shopify_checkout(1, id="9" * 201)
    answer = post_shopify(client, project, body, topic="checkouts/create")
    assert answer.json()["data"] == {"outcome": "accepted"}
    assert event_of(conn, "shopify", project) == {
        "status": "ignored",
        "outcome": "skipped",
        "attempts": 0,
    }
