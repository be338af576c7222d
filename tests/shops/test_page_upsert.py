"""A page of shop orders is written set-based by private.upsert_orders, with the rules of the
one-order upsert: customers by shop id then email (one contact per email within the page), a
later copy of an order in the page wins, lines replaced only when the document has items. A page
of products likewise by private.upsert_products: the last listing wins, unchanged products are
not written, listed variants are exactly the product's afterwards, unlisted keys keep them."""

from typing import Any

import psycopg
import pytest
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


def upsert_products(conn: Conn, project: Any, source: str, documents: Any) -> int:
    with conn.transaction():
        become_service(conn)
        row = conn.execute(
            "select private.upsert_products(%s, %s, %s) as written",
            (project, source, Jsonb(documents)),
        ).fetchone()
    assert row is not None
    return int(row["written"])


def variant(external_id: str, **changes: Any) -> dict[str, Any]:
    return {"external_id": external_id, "sku": f"SKU-{external_id}", "price": "9.90", **changes}


def test_a_page_of_products_is_written_with_its_variants(conn: Conn) -> None:
    user = create_user(conn)
    project = make_project(conn, user)
    page = [
        {"external_id": "p1", "title": "Tea", "variants": [variant("v1"), variant("v2")]},
        {"external_id": "p2", "title": "Mug", "price": "5.00", "currency": "EUR"},
        {"external_id": "p1", "title": "Green tea", "variants": [variant("v1", currency="EUR")]},
        {"external_id": "p3"},  # no title: left out
        "not a product",
    ]
    assert upsert_products(conn, project, "shoptet", page) == 2
    assert upsert_products(conn, project, "shoptet", page) == 0  # unchanged: not written
    # A product without a variants key keeps its variants; an empty list removes them.
    upsert_products(conn, project, "shoptet", [{"external_id": "p1", "title": "Green tea"}])
    rows = conn.execute(
        "select p.external_id, p.title, p.price, p.currency,"
        " array_agg(v.external_id || ':' || coalesce(v.price::text, '-') order by v.external_id)"
        " filter (where v.id is not null) as variants"
        " from public.products p left join public.product_variants v on v.product_id = p.id"
        " where p.project_id = %s group by p.id order by p.external_id",
        (project,),
    ).fetchall()
    assert [tuple(r.values()) for r in rows] == [
        ("p1", "Green tea", None, None, ["v1:9.90"]),  # the last listing; v2 removed
        ("p2", "Mug", 5, "EUR", None),
    ]
    upsert_products(conn, project, "shoptet", [{"external_id": "p1", "title": "T", "variants": []}])
    gone = conn.execute(
        "select count(*) as n from public.product_variants v join public.products p"
        " on p.id = v.product_id where p.project_id = %s",
        (project,),
    ).fetchone()
    assert gone is not None and gone["n"] == 0
    assert upsert_products(conn, project, "csv", page) == 0  # not a shop: nothing written
    assert upsert_products(conn, project, "shoptet", {"external_id": "p9"}) == 0
    with pytest.raises(psycopg.ProgrammingError, match="Project not found"):
        upsert_products(conn, user.workspace_id, "shoptet", page)  # no such project


def test_each_new_customer_of_a_page_gets_a_contact_of_their_own_whatever_the_plan(
    conn: Conn,
) -> None:
    """Several new customers in one page, three without an email, written with the planner
    expecting pages of thousands of customers (it then joins the page to a one-row relation
    from the outer side, the plan in which an uncorrelated `lateral (select gen_random_uuid())`
    drew one id for them all): each customer is a contact of their own, with their own order."""
    user = create_user(conn)
    project = make_project(conn, user)
    customers = [
        {"external_id": "c-1", "first_name": "Ann"},
        {"external_id": "c-2", "first_name": "Bo"},
        {"external_id": "c-3", "first_name": "Cy"},
        {"external_id": "c-4", "email": "dee@example.test", "first_name": "Dee"},
    ]
    page = [order(f"10{n}", customer=c) for n, c in enumerate(customers)]
    with conn.transaction(force_rollback=True):
        # Rolled back with the test's transaction: the page's estimate, not the function. It
        # turns 20270205090000's plan; tests/core/test_values_drawn_per_row.py guards the
        # pattern itself, whatever a later statement's estimates.
        conn.execute("alter function pg_catalog.jsonb_array_elements(jsonb) rows 10000")
        become_service(conn)
        written = conn.execute(
            "select private.upsert_orders(%s, 'shopify', %s) as n", (project, Jsonb(page))
        ).fetchone()
        assert written is not None and written["n"] == 4
        orders = conn.execute(
            "select o.external_id, k.first_name, k.email,"
            " array_agg(x.external_id order by x.external_id) as shop_ids"
            " from public.orders o join public.contacts k on k.id = o.contact_id"
            " join public.contact_external_ids x on x.contact_id = k.id"
            " where o.project_id = %s group by o.id, k.id order by o.external_id",
            (project,),
        ).fetchall()
    assert [tuple(o.values()) for o in orders] == [
        ("100", "Ann", None, ["c-1"]),
        ("101", "Bo", None, ["c-2"]),
        ("102", "Cy", None, ["c-3"]),
        ("103", "Dee", "dee@example.test", ["c-4"]),
    ]
