"""Product analytics on a small worked shop: revenue by product and category (base currency,
unlinked lines under their SKU), pairs bought together, each RFM segment's top products, and
who sees them."""

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.factories.commerce import add_order, add_product
from tests.factories.workspaces import User, acting_as, add_member, create_user, make_project

Conn = psycopg.Connection[Any]


@pytest.fixture
def shop(conn: Conn) -> tuple[User, dict[str, uuid.UUID]]:
    """Tea (category Drinks), Mug and Pot (Kitchen) in the catalog; lines with SKU CARD are not.
    o1 ann: tea 2x5 + mug 1x12     o2 ann: tea 1x5 + mug 1x12 + card 1x3
    o3 bob: tea 1x5 + card 1x3     o4 bob: mug 1x12 + pot 1x40 (USD at 0.5: halves)
    o5 cid: tea 4x5 + card 2x3     o6 cid: tea 9x5, pending (never counts)."""
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set base_currency = 'EUR' where id = %s", (owner.workspace_id,)
    )
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

    def line(sku: str, quantity: int, price: int) -> dict[str, Any]:
        return {"sku": sku, "name": sku.title(), "quantity": quantity, "unit_price": price}

    orders: list[tuple[str, list[dict[str, Any]], dict[str, Any]]] = [
        ("ann", [line("TEA", 2, 5), line("MUG", 1, 12)], {}),
        ("ann", [line("TEA", 1, 5), line("MUG", 1, 12), line("CARD", 1, 3)], {}),
        ("bob", [line("TEA", 1, 5), line("CARD", 1, 3)], {}),
        ("bob", [line("MUG", 1, 12), line("POT", 1, 40)], {"currency": "USD"}),
        ("cid", [line("TEA", 4, 5), line("CARD", 2, 3)], {}),
        ("cid", [line("TEA", 9, 5)], {"status": "pending"}),
    ]
    for number, (buyer, items, extra) in enumerate(orders):
        order = add_order(
            conn,
            project,
            f"{tag}-{number}",
            f"{buyer}-{tag}@example.test",
            placed_at=f"2026-06-{10 + number}T10:00:00Z",
            total=sum(i["quantity"] * i["unit_price"] for i in items),
            items=items,
            **extra,
        )
        if extra.get("currency") == "USD":
            conn.execute(
                "update public.orders set exchange_rate = 0.5, base_total = round(total * 0.5, 2)"
                " where id = %s",
                (order,),
            )
    conn.execute("select private.link_order_items(%s)", (project,))
    return owner, products


def test_revenue_by_product_and_category(
    conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]
) -> None:
    owner, products = shop
    with acting_as(conn, owner):
        by_product = conn.execute(
            "select product_id, product_key, title, orders, customers, quantity, revenue,"
            " revenue_rank from analytics.product_revenue order by revenue_rank, product_key"
        ).fetchall()
        by_category = conn.execute(
            "select category, products, orders, customers, quantity, revenue, share_of_revenue"
            " from analytics.category_revenue order by category nulls last"
        ).fetchall()
    assert [
        (
            r["product_id"],
            r["title"],
            r["orders"],
            r["customers"],
            r["quantity"],
            r["revenue"],
            r["revenue_rank"],
        )
        for r in by_product
    ] == [
        (products["tea"], "Tea", 4, 3, 8, 40, 1),
        (products["mug"], "Mug", 3, 2, 3, 30, 2),  # 12 + 12 + 6 (USD)
        (products["pot"], "Pot", 1, 1, 1, 20, 3),
        (None, "Card", 3, 3, 4, 12, 4),
    ]
    assert by_product[3]["product_key"] == "sku:CARD"
    assert [tuple(r.values()) for r in by_category] == [
        ("Drinks", 1, 4, 3, 8, 40, Decimal("0.3922")),
        ("Kitchen", 2, 3, 2, 4, 50, Decimal("0.4902")),
        (None, 1, 3, 3, 4, 12, Decimal("0.1176")),
    ]


def test_pairs_bought_together(conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]) -> None:
    owner, _ = shop
    with acting_as(conn, owner):
        pairs = conn.execute(
            "select title, other_title, orders_together, support, confidence, other_confidence,"
            " lift, pair_rank from analytics.products_bought_together order by pair_rank"
        ).fetchall()
    # Five orders count: tea and card together in 3 (tea is in 4, card in 3), tea and mug in 2
    # (mug is in 3); mug with pot and mug with card only once each, so they are left out.
    # confidence is together / orders with the first product of the pair, whichever it is.
    got = {
        frozenset((r["title"], r["other_title"])): (
            r["pair_rank"],
            r["orders_together"],
            r["support"],
            r["lift"],
            {r["title"]: r["confidence"], r["other_title"]: r["other_confidence"]},
        )
        for r in pairs
    }
    assert got == {
        frozenset(("Tea", "Card")): (
            1,
            3,
            Decimal("0.6000"),
            Decimal("1.2500"),
            {"Tea": Decimal("0.7500"), "Card": 1},
        ),
        frozenset(("Tea", "Mug")): (
            2,
            2,
            Decimal("0.4000"),
            Decimal("0.8333"),
            {"Tea": Decimal("0.5000"), "Mug": Decimal("0.6667")},
        ),
    }


def test_each_segments_top_products(conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]) -> None:
    owner, _ = shop
    with acting_as(conn, owner):
        segments = {
            r["contact_id"]: r["segment"]
            for r in conn.execute("select contact_id, segment from analytics.customer_rfm")
        }
        top = conn.execute(
            "select segment, product_rank, title, customers, revenue"
            " from analytics.rfm_segment_top_products order by segment, product_rank"
        ).fetchall()
    assert len(segments) == 3
    expected: dict[str, dict[str, list[Decimal]]] = {}
    lines = conn.execute(
        "select o.contact_id, coalesce(p.title, i.name) as title, case when o.currency = 'USD'"
        " then round(i.total * 0.5, 2) else i.total end as revenue from public.order_items i"
        " join public.orders o on o.id = i.order_id"
        " left join public.products p on p.id = i.product_id"
        " where o.workspace_id = %s and o.status = 'paid'",
        (owner.workspace_id,),
    ).fetchall()
    for row in lines:
        segment = segments[row["contact_id"]]
        expected.setdefault(segment, {}).setdefault(row["title"], []).append(row["revenue"])
    got: dict[str, dict[str, Decimal]] = {}
    for row in top:
        got.setdefault(row["segment"], {})[row["title"]] = row["revenue"]
    assert got == {
        s: {t: sum(v, Decimal(0)) for t, v in titles.items()} for s, titles in expected.items()
    }
    for segment in got:
        ranks = [r["product_rank"] for r in top if r["segment"] == segment]
        assert ranks == list(range(1, len(ranks) + 1))


def test_others_see_none_of_it(conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]) -> None:
    owner, _ = shop
    viewer, stranger = add_member(conn, owner, "viewer"), create_user(conn)
    views = [
        "analytics.product_revenue",
        "analytics.category_revenue",
        "analytics.products_bought_together",
        "analytics.rfm_segment_top_products",
    ]
    for view in views:
        with acting_as(conn, viewer):
            seen = {r["workspace_id"] for r in conn.execute(f"select workspace_id from {view}")}
        with acting_as(conn, stranger):
            unseen = conn.execute(f"select workspace_id from {view}").fetchall()
        assert seen == {owner.workspace_id}, view
        assert unseen == [], view
