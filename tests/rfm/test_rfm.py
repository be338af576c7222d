"""RFM analytics on a hand-built order history whose expected results are worked out below."""

import threading
import uuid
from collections import Counter
from datetime import date, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import errors, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from api.app import create_app
from api.core.settings import Settings
from tests.factories.workspaces import (
    User,
    acting_as,
    create_user,
    make_project,
    one,
    refused,
    wait_until_blocked,
)

Conn = psycopg.Connection[Any]
AS_OF = date(2026, 6, 30)

# contact -> [(placed_at, total, status)]; J's July order is after the as-of date.
HISTORY: dict[str, list[tuple[str, int, str]]] = {
    "a": [
        ("2026-06-29", 100, "paid"),
        ("2026-05-01", 100, "paid"),
        ("2026-04-01", 100, "paid"),
        ("2026-03-01", 100, "fulfilled"),
    ],
    "b": [("2026-06-29", 50, "paid")],
    "c": [("2026-06-20", 200, "paid"), ("2026-06-01", 200, "paid")],
    "d": [("2026-05-31", 30, "paid")],
    "e": [
        ("2026-05-31", 80, "paid"),
        ("2026-02-01", 80, "fulfilled"),
        ("2026-01-01", 500, "cancelled"),
    ],
    "f": [("2026-04-01", 60, "paid")],
    "g": [("2026-03-02", 1000, "paid"), ("2026-02-02", 10, "refunded")],
    "h": [
        ("2026-01-01", 20, "paid"),
        ("2025-12-01", 20, "paid"),
        ("2025-11-01", 20, "paid"),
        ("2025-10-01", 20, "paid"),
        ("2025-09-01", 20, "paid"),
    ],
    "i": [("2025-12-31", 45, "paid")],
    "j": [("2025-06-30", 70, "paid"), ("2026-07-05", 999, "paid")],
    "only_cancelled": [("2026-06-01", 300, "cancelled")],
    "only_pending": [("2026-06-01", 300, "pending")],
}

# Worked by hand with score = 1 + floor(5 * (rank - 1) / 10), rank() with ties sharing the
# lowest rank (recency ranked from most days ago). Ties at edges: a and b share R rank 9,
# d and e share R rank 6 (so e is not pushed to R=4), six customers share F rank 1, a and c
# share M rank 8.
EXPECTED = {
    "a": (1, 4, 400, "554", "Champions"),
    "b": (1, 1, 50, "512", "New Customers"),
    "c": (10, 2, 400, "444", "Loyal Customers"),
    "d": (30, 1, 30, "311", "About To Sleep"),
    "e": (30, 2, 160, "344", "Loyal Customers"),
    "f": (90, 1, 60, "312", "About To Sleep"),
    "g": (120, 1, 1000, "215", "Hibernating"),
    "h": (180, 5, 100, "253", "Can't Lose Them"),
    "i": (181, 1, 45, "111", "Lost"),
    "j": (365, 1, 70, "113", "Lost"),
}


def add_orders(
    conn: Conn, project: uuid.UUID, history: dict[str, list[tuple[str, int, str]]], prefix: str
) -> dict[str, uuid.UUID]:
    """Orders through the importers' upsert; returns each contact's id."""
    contacts = {}
    for name, orders in history.items():
        for number, (placed, total, status) in enumerate(orders):
            order = {
                "external_id": f"{prefix}-{name}-{number}",
                "status": status,
                "placed_at": f"{placed}T12:00:00Z",
                "total": str(total),
                "currency": "CZK",
                "customer": {"email": f"{prefix}-{name}@example.test", "first_name": name},
                "items": [{"sku": "SKU-1", "name": "Thing", "quantity": 1, "unit_price": total}],
            }
            conn.execute("select private.upsert_order(%s, 'shopify', %s)", (project, Jsonb(order)))
        contacts[name] = one(
            conn,
            "select id from public.contacts where email = %s",
            (f"{prefix}-{name}@example.test",),
        )["id"]
    return contacts


@pytest.fixture
def shop(conn: Conn) -> tuple[User, dict[str, uuid.UUID]]:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set base_currency = 'CZK' where id = %s", (owner.workspace_id,)
    )
    project = make_project(conn, owner)
    contacts = add_orders(conn, project, HISTORY, uuid.uuid4().hex[:8])
    conn.execute(
        "insert into public.contacts (workspace_id, email) values (%s, %s)",
        (owner.workspace_id, f"no-orders-{uuid.uuid4().hex[:6]}@example.test"),
    )
    return owner, contacts


def test_rfm_scores_and_segments_match_the_worked_example(
    conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]
) -> None:
    owner, contacts = shop
    with acting_as(conn, owner):
        rows = conn.execute(
            "select contact_id, recency_days, frequency, monetary, rfm_code, segment"
            " from analytics.rfm(%s)",
            (AS_OF,),
        ).fetchall()
    by_name = {name: contact for name, contact in contacts.items()}
    got = {
        name: (r["recency_days"], r["frequency"], int(r["monetary"]), r["rfm_code"], r["segment"])
        for name, contact in by_name.items()
        for r in rows
        if r["contact_id"] == contact
    }
    assert got == EXPECTED
    assert len(rows) == 10


def test_segment_summary_adds_up(conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]) -> None:
    """The summary view (scored as of today) agrees with the per-contact rows it groups."""
    owner, _ = shop
    with acting_as(conn, owner):
        segments = conn.execute(
            "select * from analytics.rfm_segments where workspace_id = %s", (owner.workspace_id,)
        ).fetchall()
        contacts = conn.execute(
            "select segment, frequency, monetary from analytics.customer_rfm"
            " where workspace_id = %s",
            (owner.workspace_id,),
        ).fetchall()
    revenue = sum(c["monetary"] for c in contacts)
    assert sum(r["customers"] for r in segments) == len(contacts) == 10
    assert revenue == 2315 + 999  # today, j's July order counts too
    for row in segments:
        members = [c for c in contacts if c["segment"] == row["segment"]]
        spent = sum(c["monetary"] for c in members)
        assert row["customers"] == len(members)
        assert row["revenue"] == spent
        orders = sum(c["frequency"] for c in members)
        assert float(row["average_order_value"]) == pytest.approx(float(spent / orders), abs=0.01)
        assert float(row["share_of_customers"]) == pytest.approx(len(members) / 10, abs=1e-4)
        assert float(row["share_of_revenue"]) == pytest.approx(float(spent / revenue), abs=1e-4)


def test_every_rf_cell_has_exactly_one_segment(conn: Conn) -> None:
    cells = conn.execute(
        "select r_score, f_score, count(*) as segments from analytics.rfm_segment_map group by 1, 2"
    ).fetchall()
    assert len(cells) == 25
    assert {c["segments"] for c in cells} == {1}
    names = {r["segment"] for r in conn.execute("select segment from analytics.rfm_segment_map")}
    assert len(names) == 11


def test_foreign_currency_orders_count_for_revenue_only_with_a_rate(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    base = {
        "status": "paid",
        "placed_at": "2026-06-01T10:00:00Z",
        "customer": {"email": "x@e.test"},
    }
    orders = [
        {**base, "external_id": "eur", "total": "10.00", "currency": "EUR"},
        {
            **base,
            "external_id": "usd-rate",
            "total": "10.00",
            "currency": "USD",
            "exchange_rate": "0.9",
        },
        {**base, "external_id": "usd-none", "total": "10.00", "currency": "USD"},
    ]
    for order in orders:
        conn.execute("select private.upsert_order(%s, 'shopify', %s)", (project, Jsonb(order)))
    totals = {
        r["external_id"]: r["base_total"]
        for r in conn.execute(
            "select external_id, base_total from public.orders where project_id = %s", (project,)
        )
    }
    assert totals == {"eur": 10, "usd-rate": 9, "usd-none": None}
    with acting_as(conn, owner):
        row = one(conn, "select frequency, monetary from analytics.rfm(%s)", (AS_OF,))
    assert (row["frequency"], row["monetary"]) == (3, 19)


def test_redelivered_orders_update_instead_of_duplicating(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    order = {
        "external_id": "1001",
        "status": "pending",
        "placed_at": "2026-06-01T10:00:00Z",
        "total": "25.50",
        "currency": "EUR",
        "customer": {"external_id": "c-9", "email": " Jo@Example.TEST "},
        "items": [{"sku": "A", "name": "A", "quantity": 2, "unit_price": "12.75"}],
    }
    for status in ("pending", "paid"):
        conn.execute(
            "select private.upsert_order(%s, 'shopify', %s)",
            (project, Jsonb({**order, "status": status})),
        )
    rows = conn.execute(
        "select o.status, c.email, (select count(*) from public.order_items i"
        " where i.order_id = o.id) as items from public.orders o"
        " join public.contacts c on c.id = o.contact_id where o.project_id = %s",
        (project,),
    ).fetchall()
    assert rows == [{"status": "paid", "email": "jo@example.test", "items": 1}]


def test_snapshots_are_idempotent_and_feed_trend_and_movement(
    conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]
) -> None:
    owner, contacts = shop
    for month in ("2026-05-01", "2026-06-15", "2026-06-01"):
        conn.execute("select analytics.take_rfm_snapshot(%s)", (month,))
    with acting_as(conn, owner):
        june = conn.execute(
            "select contact_id, segment from analytics.rfm_snapshots"
            " where workspace_id = %s and snapshot_month = '2026-06-01'",
            (owner.workspace_id,),
        ).fetchall()
        may = conn.execute(
            "select contact_id, segment from analytics.rfm_snapshots"
            " where workspace_id = %s and snapshot_month = '2026-05-01'",
            (owner.workspace_id,),
        ).fetchall()
        live = conn.execute(
            "select contact_id, segment from analytics.rfm(%s)", (AS_OF,)
        ).fetchall()
        movement = conn.execute(
            "select from_segment, to_segment, customers from analytics.rfm_segment_movement"
            " where workspace_id = %s and snapshot_month = '2026-06-01'",
            (owner.workspace_id,),
        ).fetchall()
        trend = conn.execute(
            "select segment, customers, change from analytics.rfm_segment_trend"
            " where workspace_id = %s and snapshot_month = '2026-06-01'",
            (owner.workspace_id,),
        ).fetchall()
    assert sorted(map(str, june)) == sorted(map(str, live))
    assert contacts["b"] not in {r["contact_id"] for r in may}
    previous = {r["contact_id"]: r["segment"] for r in may}
    expected_moves = Counter((previous.get(r["contact_id"]), r["segment"]) for r in june)
    assert Counter({(m["from_segment"], m["to_segment"]): m["customers"] for m in movement}) == (
        expected_moves
    )
    may_counts, june_counts = Counter(previous.values()), Counter(r["segment"] for r in june)
    assert {t["segment"]: t["change"] for t in trend} == {
        t["segment"]: june_counts[t["segment"]] - may_counts[t["segment"]] for t in trend
    }


def test_dashboard_users_see_only_their_workspaces(
    conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]
) -> None:
    owner, _ = shop
    other = create_user(conn)
    add_orders(conn, make_project(conn, other), {"z": [("2026-06-01", 10, "paid")]}, "other")
    conn.execute("select analytics.take_rfm_snapshot('2026-06-01')")
    queries = [
        "select workspace_id from analytics.customer_rfm",
        "select workspace_id from analytics.rfm_segments",
        "select workspace_id from analytics.rfm_snapshots",
        "select workspace_id from analytics.rfm_segment_trend",
        "select workspace_id from analytics.rfm_segment_movement",
        "select workspace_id from analytics.rfm('2026-06-30')",
        "select workspace_id from analytics.rfm_segment_totals('2026-06-30')",
    ]
    for user in (owner, other):
        with acting_as(conn, user):
            for query in queries:
                seen = {r["workspace_id"] for r in conn.execute(query)}
                assert seen == {user.workspace_id}, query


@pytest.mark.parametrize("as_of", [None, "5874897-12-31", "0001-01-01"])
def test_an_as_of_date_outside_the_calendar_we_score_is_a_422(
    conn: Conn, shop: tuple[User, dict[str, uuid.UUID]], as_of: str | None
) -> None:
    owner, _ = shop
    for function in ("rfm", "rfm_segment_totals"):
        with acting_as(conn, owner), refused(422, "invalid_as_of"):
            conn.execute(f"select * from analytics.{function}(%s::date)", (as_of,))


def test_a_request_acting_as_authenticated_without_a_user_sees_no_workspace(
    conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]
) -> None:
    """The login here is the migrating superuser (a member of every role, growthbase_analyst
    included); what counts is the role the request acts as."""
    conn.execute("select analytics.take_rfm_snapshot('2026-06-01')")
    queries = [
        "select workspace_id from analytics.rfm('2026-06-30')",
        "select workspace_id from analytics.rfm_snapshots",
        "select workspace_id from analytics.ai_usage",
        "select workspace_id from analytics.campaign_performance",
    ]
    seen = {}
    for claims in ('{"role": "authenticated"}', ""):
        with conn.transaction():
            conn.execute(
                "select set_config('role', 'authenticated', true),"
                " set_config('request.jwt.claims', %s, true)",
                (claims,),
            )
            for query in queries:
                seen[(claims, query)] = conn.execute(query).fetchall()
    assert {key: rows for key, rows in seen.items() if rows} == {}


def test_analysts_see_every_workspace_and_nothing_else(
    conn: Conn, database_url: str, shop: tuple[User, dict[str, uuid.UUID]]
) -> None:
    owner, _ = shop
    role = sql.Identifier(f"analyst_{uuid.uuid4().hex[:10]}")
    conn.execute(sql.SQL("create role {} login in role growthbase_analyst").format(role))
    conn.execute("select analytics.take_rfm_snapshot('2026-06-01')")
    analyst_url = psycopg.conninfo.make_conninfo(database_url, user=role.as_string(conn).strip('"'))
    try:
        with psycopg.connect(analyst_url, row_factory=dict_row) as analyst:
            workspaces = {
                r["workspace_id"]
                for r in analyst.execute("select workspace_id from analytics.rfm('2026-06-30')")
            }
            snapshots = one(analyst, "select count(*) from analytics.rfm_snapshots")["count"]
            analyst.execute("select * from analytics.ai_usage").fetchall()
            with pytest.raises(errors.InsufficientPrivilege):
                analyst.execute("select * from public.orders")
            analyst.rollback()
            with pytest.raises(errors.InsufficientPrivilege):
                analyst.execute("select private.upsert_order(gen_random_uuid(), 'csv', '{}')")
    finally:
        conn.execute(sql.SQL("drop role {}").format(role))
    every = {
        r["workspace_id"]
        for r in conn.execute("select workspace_id from private.rfm_scores('2026-06-30', null)")
    }
    assert owner.workspace_id in workspaces
    assert workspaces == every
    assert snapshots == one(conn, "select count(*) from analytics.rfm_snapshots")["count"]


def test_the_cron_endpoint_snapshots_last_month(database_url: str, conn: Conn) -> None:
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url="http://127.0.0.1:54321",
        cron_secret=SecretStr("cron-test-secret"),
    )
    with TestClient(create_app(settings)) as client:
        refused = client.get("/api/v1/cron/rfm-snapshot")
        first = client.get(
            "/api/v1/cron/rfm-snapshot", headers={"Authorization": "Bearer cron-test-secret"}
        )
        second = client.get(
            "/api/v1/cron/rfm-snapshot", headers={"Authorization": "Bearer cron-test-secret"}
        )
    assert refused.status_code == 401
    month = (date.today().replace(day=1) - timedelta(days=1)).replace(day=1)
    assert first.json()["data"]["snapshot_month"] == month.isoformat()
    assert first.json()["data"]["contacts"] == second.json()["data"]["contacts"]
    stored = one(
        conn, "select count(*) from analytics.rfm_snapshots where snapshot_month = %s", (month,)
    )
    assert stored["count"] == second.json()["data"]["contacts"]


def test_deleting_contacts_or_workspaces_deletes_their_snapshot_rows(
    conn: Conn, shop: tuple[User, dict[str, uuid.UUID]]
) -> None:
    owner, contacts = shop
    conn.execute("select analytics.take_rfm_snapshot('2026-06-01')")
    count = "select count(*) as n from analytics.rfm_snapshots where {} = %s"
    before = one(conn, count.format("workspace_id"), (owner.workspace_id,))["n"]
    conn.execute("delete from public.contacts where id = %s", (contacts["a"],))
    assert one(conn, count.format("contact_id"), (contacts["a"],))["n"] == 0
    assert one(conn, count.format("workspace_id"), (owner.workspace_id,))["n"] == before - 1
    conn.execute("delete from public.workspaces where id = %s", (owner.workspace_id,))
    assert one(conn, count.format("workspace_id"), (owner.workspace_id,))["n"] == 0


def test_a_contact_erased_during_a_snapshot_leaves_no_snapshot_row(
    conn: Conn, database_url: str, shop: tuple[User, dict[str, uuid.UUID]]
) -> None:
    """The snapshot scores the contact before the erasure commits; the erasure waits for the
    snapshot and then removes the row it wrote."""
    _, contacts = shop
    with (
        psycopg.connect(database_url, row_factory=dict_row) as snapshot,
        psycopg.connect(database_url, autocommit=True) as erasure,
    ):
        snapshot.execute("select analytics.take_rfm_snapshot('2026-06-01')")
        erasing = threading.Thread(
            target=erasure.execute,
            args=("delete from public.contacts where id = %s", (contacts["b"],)),
        )
        erasing.start()
        wait_until_blocked(conn, erasure.info.backend_pid)
        snapshot.commit()
        erasing.join()
    left = one(
        conn,
        "select count(*) as n from analytics.rfm_snapshots where contact_id = %s",
        (contacts["b"],),
    )
    assert left["n"] == 0
