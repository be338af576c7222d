"""A page of shop orders is written set-based by private.upsert_orders, with the rules of the
one-order upsert: customers by shop id then email (one contact per email within the page), a
later copy of an order in the page wins, lines replaced only when the document has items."""

from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.core.db import become_service
from tests.factories.workspaces import create_user, make_project

Conn = psycopg.Connection[DictRow]


def order(external_id: str, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "external_id": external_id,
        "status": "paid",
        "placed_at": "2026-06-01T10:00:00+00:00",
        "total": "30.00",
        "currency": "EUR",
        "customer": {"external_id": "c-1", "email": "Ann@Example.test", "accepts_marketing": True},
    }
    document.update(changes)
    return document


def upsert(conn: Conn, project: Any, source: str, documents: list[dict[str, Any]]) -> int:
    with conn.transaction():
        become_service(conn)
        row = conn.execute(
            "select private.upsert_orders(%s, %s, %s) as written",
            (project, source, Jsonb(documents)),
        ).fetchone()
    assert row is not None
    return int(row["written"])


def test_a_page_is_written_with_the_one_order_rules(conn: Conn) -> None:
    user = create_user(conn)
    project = make_project(conn, user)
    items = [{"sku": "TEA", "name": "Tea", "quantity": 2, "unit_price": "15.00"}]
    page = [
        order("1001", items=items),
        order(
            "1002",
            customer={"external_id": "c-2", "email": "ann@example.test", "phone": "+420603123456"},
        ),
        order("1003", customer={"external_id": "c-3", "first_name": "Bo"}),
        order("1001", status="fulfilled", items=items),
    ]
    assert upsert(conn, project, "shopify", page) == 3
    contacts = conn.execute(
        "select k.email, k.phone, k.first_name, k.consent_state, k.consent_source,"
        " array_agg(x.external_id order by x.external_id) as shop_ids"
        " from public.contacts k join public.contact_external_ids x on x.contact_id = k.id"
        " where k.workspace_id = %s group by k.id order by k.email nulls last",
        (user.workspace_id,),
    ).fetchall()
    assert [tuple(c.values()) for c in contacts] == [
        ("ann@example.test", "+420603123456", None, "granted", "shopify", ["c-1", "c-2"]),
        (None, None, "Bo", "unknown", None, ["c-3"]),
    ]
    orders = conn.execute(
        "select o.external_id, o.status, count(i.id) as lines from public.orders o"
        " left join public.order_items i on i.order_id = o.id where o.project_id = %s"
        " group by o.id order by o.external_id",
        (project,),
    ).fetchall()
    assert [tuple(o.values()) for o in orders] == [
        ("1001", "fulfilled", 1),
        ("1002", "paid", 0),
        ("1003", "paid", 0),
    ]
    # A later page without items keeps the lines; with items it replaces them.
    upsert(conn, project, "shopify", [order("1001", total="31.00")])
    upsert(conn, project, "shopify", [order("1002", items=items * 2)])
    lines = conn.execute(
        "select o.external_id, count(i.id) as lines from public.orders o"
        " join public.order_items i on i.order_id = o.id where o.project_id = %s"
        " group by o.external_id order by 1",
        (project,),
    ).fetchall()
    assert [tuple(r.values()) for r in lines] == [("1001", 1), ("1002", 2)]
