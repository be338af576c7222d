"""Sales trends: a worked example per day, week and month with splits, who sees what, bad
arguments, the log folded without changing any figure, and writers of one day never waiting
for each other."""

import threading
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories.commerce import add_order
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    make_project,
    one,
    refused,
)

Conn = psycopg.Connection[Any]

TREND = (
    "select period, project_id, source, orders, revenue, average_order_value, new_customers,"
    " returning_orders, guest_orders, currency"
    " from analytics.sales_trend(%(from)s, %(to)s, %(grain)s, %(workspace)s, %(project)s,"
    " %(source)s, %(by)s)"
)


def trend(conn: Conn, user: User, **arguments: Any) -> list[dict[str, Any]]:
    params = {
        "from": date(2026, 3, 1),
        "to": date(2026, 3, 31),
        "grain": "day",
        "workspace": user.workspace_id,
        "project": None,
        "source": None,
        "by": "total",
        **arguments,
    }
    with acting_as(conn, user):
        return conn.execute(TREND, params).fetchall()


@pytest.fixture
def shop(conn: Conn) -> tuple[User, uuid.UUID, uuid.UUID]:
    """March 2026 in two shops of one workspace (base currency EUR):
    2nd (Mon): ann's first order 100 (web, shopify); a guest order 30 (web, csv);
    4th (Wed): ann again 50 (web); bob's first order 20 (pos, woocommerce), and a pending one;
    9th (Mon): bob again 80 (pos); cid's first order 10 USD without a rate (web) — counts, adds 0;
    10th: dan's order, refunded (never counts)."""
    owner = create_user(conn)
    web, pos = make_project(conn, owner, "Web"), make_project(conn, owner, "Shop floor")
    tag = uuid.uuid4().hex[:8]
    ann, bob, cid, dan = (f"{n}-{tag}@example.test" for n in ("ann", "bob", "cid", "dan"))
    add_order(conn, web, f"{tag}-1", ann, placed_at="2026-03-02T09:00:00Z", total=100)
    conn.execute(
        "insert into public.orders (workspace_id, project_id, source, external_id, status,"
        " placed_at, total, currency, base_total) values (%s, %s, 'csv', %s, 'paid',"
        " '2026-03-02T18:00:00Z', 30, 'EUR', 30)",
        (owner.workspace_id, web, f"{tag}-guest"),
    )
    add_order(conn, web, f"{tag}-2", ann, placed_at="2026-03-04T23:59:00Z", total=50)
    add_order(
        conn, pos, f"{tag}-3", bob, placed_at="2026-03-04T10:00:00Z", total=20, source="woocommerce"
    )
    add_order(
        conn,
        pos,
        f"{tag}-4",
        bob,
        placed_at="2026-03-04T11:00:00Z",
        total=99,
        source="woocommerce",
        status="pending",
    )
    add_order(
        conn, pos, f"{tag}-5", bob, placed_at="2026-03-09T10:00:00Z", total=80, source="woocommerce"
    )
    add_order(
        conn, web, f"{tag}-6", cid, placed_at="2026-03-09T10:00:00Z", total=10, currency="USD"
    )
    add_order(
        conn, web, f"{tag}-7", dan, placed_at="2026-03-10T10:00:00Z", total=70, status="refunded"
    )
    return owner, web, pos


def figures(rows: list[dict[str, Any]]) -> dict[Any, tuple[Any, ...]]:
    return {
        (r["period"].day, r["project_id"], r["source"]): (
            r["orders"],
            r["revenue"],
            r["average_order_value"],
            r["new_customers"],
            r["returning_orders"],
            r["guest_orders"],
        )
        for r in rows
    }


def test_days_weeks_and_months_add_up_as_a_shop_owner_counts(
    conn: Conn, shop: tuple[User, uuid.UUID, uuid.UUID]
) -> None:
    owner, web, pos = shop
    days = trend(conn, owner)
    assert len(days) == 31  # every day of the range, zero when nothing sold
    assert {r["currency"] for r in days} == {"EUR"}
    assert {k: v for k, v in figures(days).items() if v[0]} == {
        (2, None, None): (2, 130, 65, 1, 0, 1),
        (4, None, None): (2, 70, 35, 1, 1, 0),
        (9, None, None): (2, 80, 40, 1, 1, 0),
    }
    assert figures(days)[(10, None, None)] == (0, 0, None, 0, 0, 0)
    weeks = trend(conn, owner, grain="week")
    assert [(r["period"], r["orders"], r["revenue"]) for r in weeks] == [
        (date(2026, 2, 23), 0, 0),  # the week of the 1st (a Sunday) holds only the 1st
        (date(2026, 3, 2), 4, 200),
        (date(2026, 3, 9), 2, 80),
        (date(2026, 3, 16), 0, 0),
        (date(2026, 3, 23), 0, 0),
        (date(2026, 3, 30), 0, 0),
    ]
    month = trend(conn, owner, grain="month", to=date(2026, 4, 30))
    assert [(r["period"], *figures([r]).values()) for r in month] == [
        (date(2026, 3, 1), (6, 280, Decimal("46.67"), 3, 2, 1)),
        (date(2026, 4, 1), (0, 0, None, 0, 0, 0)),
    ]
    by_both = trend(conn, owner, grain="month", by="project_source")
    assert figures(by_both) == {
        (1, web, "shopify"): (3, 150, 50, 2, 1, 0),
        (1, web, "csv"): (1, 30, 30, 0, 0, 1),
        (1, pos, "woocommerce"): (2, 100, 50, 1, 1, 0),
    }
    only_pos = trend(conn, owner, grain="month", project=pos, by="source")
    assert figures(only_pos) == {(1, None, "woocommerce"): (2, 100, 50, 1, 1, 0)}


def test_an_earlier_order_or_a_refund_moves_the_new_customer(
    conn: Conn, shop: tuple[User, uuid.UUID, uuid.UUID]
) -> None:
    owner, web, _ = shop
    ann = one(
        conn, "select contact_id from public.orders where project_id = %s and total = 100", (web,)
    )
    conn.execute(
        "update public.orders set status = 'refunded' where project_id = %s and total = 100", (web,)
    )
    moved = {k[0]: v[3] for k, v in figures(trend(conn, owner)).items() if v[3]}
    assert moved == {4: 2, 9: 1}  # ann is new on the 4th now
    conn.execute(
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency, base_total) values (%s, %s, %s, 'manual', 'early',"
        " 'paid', '2026-03-01T08:00:00Z', 5, 'EUR', 5)",
        (owner.workspace_id, web, ann["contact_id"]),
    )
    moved = {k[0]: v[3] for k, v in figures(trend(conn, owner)).items() if v[3]}
    assert moved == {1: 1, 4: 1, 9: 1}
    assert (
        conn.execute(
            "select * from private.verify_sales_daily() where workspace_id = %s",
            (owner.workspace_id,),
        ).fetchall()
        == []
    )


def test_folding_the_log_changes_no_figure(
    conn: Conn, shop: tuple[User, uuid.UUID, uuid.UUID]
) -> None:
    owner, _, _ = shop
    before = trend(conn, owner, grain="week")
    logged = one(
        conn,
        "select count(*) as n from private.sales_daily_changes where workspace_id = %s",
        (owner.workspace_id,),
    )["n"]
    folded = one(
        conn, "select private.compact_sales_daily(array[%s]::uuid[]) as n", (owner.workspace_id,)
    )["n"]
    left = one(
        conn,
        "select count(*) as n from private.sales_daily_changes where workspace_id = %s",
        (owner.workspace_id,),
    )["n"]
    assert logged > 0 and folded > 0 and left == 0
    assert trend(conn, owner, grain="week") == before


def test_members_see_their_workspaces_and_outsiders_nothing(
    conn: Conn, shop: tuple[User, uuid.UUID, uuid.UUID]
) -> None:
    owner, _, _ = shop
    viewer, stranger = add_member(conn, owner, "viewer"), create_user(conn)
    shared = {"workspace": owner.workspace_id}
    assert sum(r["orders"] for r in trend(conn, viewer, **shared)) == 6
    assert sum(r["orders"] for r in trend(conn, viewer, workspace=None)) == 6
    assert trend(conn, stranger, **shared) == []
    assert trend(conn, stranger, workspace=None, grain="month") == []


@pytest.mark.parametrize(
    ("arguments", "code"),
    [
        ({"from": None}, "invalid_date_range"),
        ({"from": date(2026, 4, 1)}, "invalid_date_range"),
        ({"from": date(2010, 1, 1)}, "invalid_date_range"),
        ({"from": date.min}, "invalid_date_range"),
        ({"grain": "year"}, "invalid_grain"),
        ({"grain": None}, "invalid_grain"),
        ({"by": "customer"}, "invalid_split"),
    ],
)
def test_bad_arguments_are_a_422(conn: Conn, arguments: dict[str, Any], code: str) -> None:
    owner = create_user(conn)
    with refused(422, code):
        trend(conn, owner, **arguments)


def test_writers_of_one_day_never_wait_for_each_other(conn: Conn, database_url: str) -> None:
    """Two transactions selling on the same day in the same shop: the second commits while the
    first is still open (lock_timeout turns any wait into an error), and both count."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    buyers = [
        one(
            conn,
            "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
            (owner.workspace_id, f"{n}-{tag}@example.test"),
        )["id"]
        for n in ("first", "second")
    ]
    insert = (
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency, base_total) values (%s, %s, %s, 'csv', %s, 'paid',"
        " '2026-03-05T10:00:00Z', 10, 'EUR', 10)"
    )
    failures: list[BaseException] = []
    with psycopg.connect(database_url, row_factory=dict_row) as holder:
        holder.execute(insert, (owner.workspace_id, project, buyers[0], f"{tag}-1"))

        def second() -> None:
            try:
                with psycopg.connect(database_url, autocommit=True) as racer:
                    racer.execute("set lock_timeout = '5s'")
                    racer.execute(insert, (owner.workspace_id, project, buyers[1], f"{tag}-2"))
                    racer.execute("select private.compact_sales_daily()")
            except BaseException as error:
                failures.append(error)

        racing = threading.Thread(target=second)
        racing.start()
        racing.join()
        holder.commit()
    assert failures == []
    day = trend(conn, owner, **{"from": date(2026, 3, 5), "to": date(2026, 3, 5)})
    assert [(r["orders"], r["new_customers"]) for r in day] == [(2, 2)]
