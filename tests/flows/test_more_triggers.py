"""Flows that start on an order containing a product or a category (the order's lines record a
second event), and on a contact's first open or click of an email."""

import uuid
from typing import Any

import psycopg
import pytest

from tests.factories.email import add_contacts, list_campaign, start
from tests.factories.flows import create_flow, runs
from tests.factories.workspaces import create_user, make_project, one

Conn = psycopg.Connection[Any]
WAIT = [{"key": "w", "kind": "wait", "config": {"days": 1}}]


@pytest.fixture(autouse=True)
def quiet_flows(conn: Conn) -> None:
    conn.execute("update public.flows set status = 'paused' where status = 'active'")


def order(conn: Conn, owner: Any, project: uuid.UUID, contact: uuid.UUID, product: Any) -> None:
    order_id = one(
        conn,
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency) values (%s, %s, %s, 'manual', %s, 'paid', now(),"
        " 60, 'EUR') returning id",
        (owner.workspace_id, project, contact, uuid.uuid4().hex),
    )["id"]
    conn.execute(
        "insert into public.order_items (order_id, workspace_id, name, quantity, unit_price,"
        " total, product_id) values (%s, %s, 'Line', 1, 60, 60, %s)",
        (order_id, owner.workspace_id, product),
    )


def test_orders_start_flows_by_product_category_or_any_once_each(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    [tea_buyer, cup_buyer] = add_contacts(conn, owner, 2, prefix="buyer")
    tea, cup = (
        one(
            conn,
            "insert into public.products (workspace_id, project_id, source, external_id, title,"
            " price, currency, category) values (%s, %s, 'shopify', %s, %s, 60, 'EUR', %s)"
            " returning id",
            (owner.workspace_id, project, uuid.uuid4().hex, title, category),
        )["id"]
        for title, category in (("Sencha", "Tea"), ("Mug", "Cups"))
    )
    by_product = create_flow(
        conn,
        owner,
        "order_placed",
        WAIT,
        trigger_config={"scope": "product", "product_id": str(tea)},
    )
    by_category = create_flow(
        conn, owner, "order_placed", WAIT, trigger_config={"scope": "category", "category": "tea"}
    )
    any_order = create_flow(
        conn,
        owner,
        "order_placed",
        WAIT,
        entry_policy="every_time",
        entry_key="event",
        exit_events=[{"type": "email_clicked"}],
    )
    order(conn, owner, project, tea_buyer, tea)
    order(conn, owner, project, cup_buyer, cup)
    assert [r["contact_id"] for r in runs(conn, by_product)] == [tea_buyer]
    assert [r["contact_id"] for r in runs(conn, by_category)] == [tea_buyer]
    assert sorted(str(r["contact_id"]) for r in runs(conn, any_order)) == sorted(
        [str(tea_buyer), str(cup_buyer)]
    )


def test_a_first_open_and_click_are_events_flows_start_on(conn: Conn) -> None:
    owner = create_user(conn)
    [reader] = add_contacts(conn, owner, 1, prefix="reader")
    opened = create_flow(conn, owner, "email_opened", WAIT)
    clicked = create_flow(conn, owner, "email_clicked", WAIT)
    start(conn, owner, list_campaign(conn, owner, [reader]))
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(),"
        " opened_at = now(), opens = 1 where contact_id = %s",
        (reader,),
    )
    conn.execute(
        "update public.campaign_recipients set opens = 2, last_opened_at = now()"
        " where contact_id = %s",
        (reader,),
    )
    assert [r["contact_id"] for r in runs(conn, opened)] == [reader]
    assert runs(conn, clicked) == []
    conn.execute(
        "update public.campaign_recipients set clicked_at = now(), clicks = 1"
        " where contact_id = %s",
        (reader,),
    )
    assert [r["contact_id"] for r in runs(conn, clicked)] == [reader]
    events = one(
        conn,
        "select count(*) filter (where type = 'email_opened') as opened,"
        " count(*) filter (where type = 'email_clicked') as clicked"
        " from public.contact_events where contact_id = %s",
        (reader,),
    )
    assert events == {"opened": 1, "clicked": 1}
