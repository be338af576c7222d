"""Segment rules on purchases: who bought a product or a category, lately or ever, as
preview_segment (and a campaign's audience) selects them; malformed rules are refused."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.factories.commerce import add_order, add_product
from tests.factories.workspaces import (
    User,
    acting_as,
    create_user,
    fund,
    make_project,
    one,
    refused,
)

Conn = psycopg.Connection[Any]


def days_ago(days: int) -> str:
    return (datetime.now(UTC) - timedelta(days=days)).isoformat()


def selected(conn: Conn, user: User, rule: dict[str, Any]) -> set[str]:
    with acting_as(conn, user):
        preview = one(
            conn,
            "select public.preview_segment(%s, %s, 100) as p",
            (user.workspace_id, Jsonb(rule)),
        )["p"]
    return {s["email"].split("-")[0] for s in preview["sample"]}


@pytest.fixture
def shop(conn: Conn) -> tuple[User, dict[str, uuid.UUID]]:
    """ann bought tea 10 days ago and a mug 200 days ago; bob a mug 100 days ago; cid's tea is
    pending and dan's refunded; eve bought a pot whose line is not linked to the catalog."""
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    project = make_project(conn, owner)
    products = {
        name: add_product(
            conn,
            owner.workspace_id,
            project,
            name,
            name.title(),
            sku=name.upper(),
            category=category,
        )
        for name, category in (("tea", "Drinks"), ("mug", "Kitchen"), ("pot", "Kitchen"))
    }
    tag = uuid.uuid4().hex[:8]
    purchases = [
        ("ann", "TEA", 10, "paid"),
        ("ann", "MUG", 200, "fulfilled"),
        ("bob", "MUG", 100, "paid"),
        ("cid", "TEA", 3, "pending"),
        ("dan", "TEA", 5, "refunded"),
        ("eve", "POTTERY", 2, "paid"),
    ]
    for number, (buyer, sku, age, status) in enumerate(purchases):
        add_order(
            conn,
            project,
            f"{tag}-{number}",
            f"{buyer}-{tag}@example.test",
            placed_at=days_ago(age),
            status=status,
            items=[{"sku": sku, "name": sku.title(), "quantity": 1, "unit_price": 10}],
        )
    conn.execute("select private.link_order_items(%s)", (project,))
    return owner, products


def test_bought_a_product_or_a_category_lately_or_ever(
    conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]
) -> None:
    owner, products = shop
    tea, mug = str(products["tea"]), str(products["mug"])
    cases: list[tuple[dict[str, Any], set[str]]] = [
        ({"bought": {"product_id": tea}}, {"ann"}),
        ({"bought": {"product_id": mug}}, {"ann", "bob"}),
        ({"bought": {"product_id": mug, "within_days": 150}}, {"bob"}),
        ({"bought": {"category": "kitchen"}}, {"ann", "bob"}),
        ({"bought": {"category": "Kitchen", "within_days": 30}}, set()),
        ({"bought": {"category": "Drinks", "within_days": 30}}, {"ann"}),
        ({"bought": {"category": "Pottery"}}, set()),
        (
            {
                "all": [
                    {"bought": {"category": "kitchen"}},
                    {"not": {"bought": {"product_id": tea}}},
                ]
            },
            {"bob"},
        ),
    ]
    for rule, expected in cases:
        assert selected(conn, owner, rule) == expected, rule


def test_another_workspaces_product_selects_nobody(
    conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]
) -> None:
    _, products = shop
    other = create_user(conn)
    fund(conn, other, 0, "team")
    tag = uuid.uuid4().hex[:8]
    add_order(conn, make_project(conn, other), tag, f"zed-{tag}@example.test", items=[])
    assert selected(conn, other, {"bought": {"product_id": str(products["tea"])}}) == set()


@pytest.mark.parametrize(
    "bought",
    [
        "tea",
        {},
        {"product_id": "tea"},
        {"product_id": 42},
        {"product_id": str(uuid.uuid4()), "category": "Drinks"},
        {"category": ""},
        {"category": ["Drinks"]},
        {"category": "Drinks", "within_days": 0},
        {"category": "Drinks", "within_days": "30"},
        {"category": "Drinks", "since": "2026-01-01"},
    ],
)
def test_malformed_purchase_rules_are_refused(conn: Conn, bought: Any) -> None:
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    with refused(422, "invalid_segment_rule"):
        selected(conn, owner, {"bought": bought})
    with refused(422, "invalid_segment_rule"), acting_as(conn, owner):
        conn.execute(
            "insert into public.segments (workspace_id, name, rule) values (%s, 'Bad', %s)",
            (owner.workspace_id, Jsonb({"any": [{"bought": bought}]})),
        )
