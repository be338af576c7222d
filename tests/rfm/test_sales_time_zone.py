"""Sales days in the workspace's time zone: an evening order in UTC is the next day in India,
changing the zone moves the days already counted, a bad zone is a 422, only owners and admins
change it, and a change waits for (then counts) orders being written."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import date
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
    fund,
    make_project,
    one,
    refused,
)

Conn = psycopg.Connection[Any]

TREND = (
    "select period, orders, revenue, new_customers, returning_orders"
    " from analytics.sales_trend(%s, %s, %s, %s)"
)


def trend(
    conn: Conn, user: User, start: date, end: date, grain: str = "day"
) -> dict[date, tuple[int, int, int, int]]:
    """Periods that sold: (orders, revenue, new customers, returning orders)."""
    with acting_as(conn, user):
        rows = conn.execute(TREND, (start, end, grain, user.workspace_id)).fetchall()
    return {
        r["period"]: (r["orders"], int(r["revenue"]), r["new_customers"], r["returning_orders"])
        for r in rows
        if r["orders"] or r["new_customers"]
    }


def set_zone(conn: Conn, user: User, zone: str | None) -> list[dict[str, Any]]:
    """What the Data API's PATCH /rest/v1/workspaces?id=eq.<id> returns for this user."""
    with acting_as(conn, user):
        return conn.execute(
            "update public.workspaces set time_zone = %s where id = %s returning time_zone",
            (zone, user.workspace_id),
        ).fetchall()


def no_drift(conn: Conn, user: User) -> bool:
    return (
        conn.execute(
            "select * from private.verify_sales_daily() where workspace_id = %s",
            (user.workspace_id,),
        ).fetchall()
        == []
    )


@pytest.fixture
def shop(conn: Conn) -> tuple[User, uuid.UUID]:
    """New Year in a shop: ann buys at 10:00 UTC on Jan 1 (15:30 in India) and again at 20:00
    UTC (01:30 on Jan 2 in India); bob's first order is at 19:00 UTC on Jan 31 (00:30 on
    Feb 1 in India). Some of it is folded into the day rows, the rest still in the log."""
    owner = create_user(conn)
    web = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    ann, bob = f"ann-{tag}@example.test", f"bob-{tag}@example.test"
    add_order(conn, web, f"{tag}-1", ann, placed_at="2027-01-01T10:00:00Z", total=100)
    conn.execute("select private.compact_sales_daily(array[%s]::uuid[])", (owner.workspace_id,))
    add_order(conn, web, f"{tag}-2", ann, placed_at="2027-01-01T20:00:00Z", total=40)
    add_order(conn, web, f"{tag}-3", bob, placed_at="2027-01-31T19:00:00Z", total=7)
    return owner, web


def test_an_evening_order_in_utc_counts_on_the_next_day_in_kolkata(
    conn: Conn, shop: tuple[User, uuid.UUID]
) -> None:
    owner, web = shop
    jan, feb = (date(2027, 1, 1), date(2027, 1, 31)), (date(2027, 2, 1), date(2027, 2, 28))
    assert trend(conn, owner, *jan) == {
        date(2027, 1, 1): (2, 140, 1, 1),
        date(2027, 1, 31): (1, 7, 1, 0),
    }
    assert set_zone(conn, owner, "Asia/Kolkata") == [{"time_zone": "Asia/Kolkata"}]
    assert trend(conn, owner, *jan) == {
        date(2027, 1, 1): (1, 100, 1, 0),
        date(2027, 1, 2): (1, 40, 0, 1),
    }
    assert trend(conn, owner, *feb) == {date(2027, 2, 1): (1, 7, 1, 0)}
    assert trend(conn, owner, jan[0], feb[1], "month") == {
        date(2027, 1, 1): (2, 140, 1, 1),
        date(2027, 2, 1): (1, 7, 1, 0),
    }
    # Orders written after the change count in the new zone as well.
    late = f"cid-{uuid.uuid4().hex[:8]}@example.test"
    add_order(conn, web, "late", late, placed_at="2027-01-02T18:45:00Z", total=5)
    assert trend(conn, owner, date(2027, 1, 3), date(2027, 1, 3)) == {
        date(2027, 1, 3): (1, 5, 1, 0)
    }
    assert no_drift(conn, owner)


def test_changing_the_zone_moves_the_days_already_counted(
    conn: Conn, shop: tuple[User, uuid.UUID]
) -> None:
    owner, _ = shop
    utc_weeks = trend(conn, owner, date(2026, 12, 28), date(2027, 2, 7), "week")
    assert set_zone(conn, owner, "America/Los_Angeles") == [{"time_zone": "America/Los_Angeles"}]
    # 10:00 UTC on Jan 1 is 02:00 that day in Los Angeles, 20:00 is 12:00: same day.
    assert trend(conn, owner, date(2027, 1, 1), date(2027, 1, 31)) == {
        date(2027, 1, 1): (2, 140, 1, 1),
        date(2027, 1, 31): (1, 7, 1, 0),
    }
    assert no_drift(conn, owner)
    assert set_zone(conn, owner, "Pacific/Kiritimati") == [{"time_zone": "Pacific/Kiritimati"}]
    # UTC+14: every order is a day later.
    assert trend(conn, owner, date(2027, 1, 1), date(2027, 2, 28)) == {
        date(2027, 1, 2): (2, 140, 1, 1),
        date(2027, 2, 1): (1, 7, 1, 0),
    }
    assert no_drift(conn, owner)
    assert set_zone(conn, owner, "UTC") == [{"time_zone": "UTC"}]
    assert trend(conn, owner, date(2026, 12, 28), date(2027, 2, 7), "week") == utc_weeks
    assert no_drift(conn, owner)


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "asia/kolkata", "", "+05:30", None])
def test_a_zone_postgres_does_not_know_is_a_422(conn: Conn, zone: str | None) -> None:
    owner = create_user(conn)
    with refused(422, "invalid_time_zone"):
        set_zone(conn, owner, zone)
    assert one(
        conn, "select time_zone from public.workspaces where id = %s", (owner.workspace_id,)
    ) == {"time_zone": "UTC"}


@pytest.mark.parametrize(("role", "may"), [("admin", True), ("member", False), ("viewer", False)])
def test_only_owners_and_admins_change_the_zone(conn: Conn, role: str, may: bool) -> None:
    owner = create_user(conn)
    joined, stranger = add_member(conn, owner, role), create_user(conn)
    with acting_as(conn, stranger):
        assert (
            conn.execute(
                "update public.workspaces set time_zone = 'Asia/Kolkata' where id = %s"
                " returning id",
                (owner.workspace_id,),
            ).fetchall()
            == []
        )
    # A member or viewer gets what the Data API answers: an empty list, nothing changed.
    changed = set_zone(conn, User(joined.id, joined.email, owner.workspace_id), "Asia/Kolkata")
    assert changed == ([{"time_zone": "Asia/Kolkata"}] if may else [])
    zone = "select time_zone from public.workspaces where id = %s"
    with acting_as(conn, joined):
        assert one(conn, zone, (owner.workspace_id,)) == {
            "time_zone": "Asia/Kolkata" if may else "UTC"
        }
    assert set_zone(conn, owner, "Europe/Prague") == [{"time_zone": "Europe/Prague"}]


def test_a_change_of_zone_waits_for_orders_being_written_then_counts_them(
    conn: Conn, database_url: str, shop: tuple[User, uuid.UUID]
) -> None:
    """An order's writer still open: the change of zone is a 409 to retry (here after the
    caller's 100 ms lock_timeout); once the writer commits, the change counts its order in the
    new zone, and the figures equal a recount."""
    owner, web = shop
    insert = (
        "insert into public.orders (workspace_id, project_id, source, external_id, status,"
        " placed_at, total, currency, base_total) values (%s, %s, 'csv', %s, 'paid',"
        " '2027-01-01T21:00:00Z', 3, 'EUR', 3)"
    )
    with psycopg.connect(database_url, row_factory=dict_row) as writer:
        writer.execute(insert, (owner.workspace_id, web, f"open-{uuid.uuid4().hex[:8]}"))
        conn.execute("set lock_timeout = '100ms'")
        try:
            with refused(409, "time_zone_busy"):
                set_zone(conn, owner, "Asia/Kolkata")
        finally:
            conn.execute("reset lock_timeout")
        writer.commit()
    assert set_zone(conn, owner, "Asia/Kolkata") == [{"time_zone": "Asia/Kolkata"}]
    assert trend(conn, owner, date(2027, 1, 2), date(2027, 1, 2)) == {
        date(2027, 1, 2): (2, 43, 0, 1)
    }
    assert no_drift(conn, owner)


def test_a_writer_whose_snapshot_predates_a_change_of_zone_retries(
    conn: Conn, database_url: str, shop: tuple[User, uuid.UUID]
) -> None:
    """A repeatable-read writer that began before the change would still see the old zone: its
    order is a serialization failure to retry, never a day counted in the old zone."""
    owner, web = shop
    insert = (
        "insert into public.orders (workspace_id, project_id, source, external_id, status,"
        " placed_at, total, currency, base_total) values (%s, %s, 'csv', %s, 'paid',"
        " '2027-01-01T21:00:00Z', 3, 'EUR', 3)"
    )
    with psycopg.connect(database_url) as writer:
        writer.execute("set transaction isolation level repeatable read")
        writer.execute(
            "select count(*) from public.orders where workspace_id = %s", (owner.workspace_id,)
        )
        assert set_zone(conn, owner, "Asia/Kolkata") == [{"time_zone": "Asia/Kolkata"}]
        with pytest.raises(psycopg.errors.SerializationFailure):
            writer.execute(insert, (owner.workspace_id, web, f"late-{uuid.uuid4().hex[:8]}"))
        writer.rollback()
        writer.execute(insert, (owner.workspace_id, web, f"again-{uuid.uuid4().hex[:8]}"))
        writer.commit()
    assert trend(conn, owner, date(2027, 1, 2), date(2027, 1, 2)) == {
        date(2027, 1, 2): (2, 43, 0, 1)
    }
    assert no_drift(conn, owner)


def waits_for_advisory_lock(watcher: Conn, pid: int) -> bool:
    return bool(
        one(
            watcher,
            "select exists (select from pg_catalog.pg_locks where pid = %s"
            " and locktype = 'advisory' and not granted) as waiting",
            (pid,),
        )["waiting"]
    )


def test_a_change_of_zone_deadlocked_by_a_writer_is_a_409_and_counts_nothing_twice(
    conn: Conn, database_url: str, shop: tuple[User, uuid.UUID]
) -> None:
    """A writer that wrote an order, then locks its workspace row (say to debit credits), while
    a change of zone holds that row and waits for the writer: a deadlock. The change, which
    waited first and so finds it, answers 409 time_zone_busy (not a 500); the writer goes on,
    and a retry counts its order in the new zone."""
    owner, web = shop
    insert = (
        "insert into public.orders (workspace_id, project_id, source, external_id, status,"
        " placed_at, total, currency, base_total) values (%s, %s, 'csv', %s, 'paid',"
        " '2027-01-01T21:00:00Z', 3, 'EUR', 3)"
    )
    with (
        psycopg.connect(database_url, row_factory=dict_row) as writer,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as watcher,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        # The change finds the deadlock (1 s after it began to wait), never the writer.
        writer.execute("set deadlock_timeout = '1min'")
        conn.execute("set deadlock_timeout = '1s'")
        writer.execute(insert, (owner.workspace_id, web, f"held-{uuid.uuid4().hex[:8]}"))

        def change() -> psycopg.Error | None:
            try:
                set_zone(conn, owner, "Asia/Kolkata")
            except psycopg.Error as error:
                return error
            return None

        changing = pool.submit(change)
        while not waits_for_advisory_lock(watcher, conn.info.backend_pid):
            assert not changing.done(), changing.result()
        writer.execute(
            "update public.workspaces set credits_remaining = credits_remaining where id = %s",
            (owner.workspace_id,),
        )
        writer.commit()
        error = changing.result()
        conn.execute("reset deadlock_timeout")
    assert error is not None
    assert (error.sqlstate, error.diag.message_hint) == ("PT409", "time_zone_busy")
    assert one(
        conn, "select time_zone from public.workspaces where id = %s", (owner.workspace_id,)
    ) == {"time_zone": "UTC"}
    assert no_drift(conn, owner)
    assert set_zone(conn, owner, "Asia/Kolkata") == [{"time_zone": "Asia/Kolkata"}]
    assert trend(conn, owner, date(2027, 1, 2), date(2027, 1, 2)) == {
        date(2027, 1, 2): (2, 43, 0, 1)
    }
    assert no_drift(conn, owner)


def test_a_rename_or_a_credit_debit_neither_fails_nor_waits_for_a_repeatable_read_writer(
    conn: Conn, database_url: str, shop: tuple[User, uuid.UUID]
) -> None:
    """Only a change of zone fails a repeatable-read writer of orders: a rename and a credit
    debit committed after its snapshot do not, nor do they wait for it to commit."""
    owner, web = shop
    insert = (
        "insert into public.orders (workspace_id, project_id, source, external_id, status,"
        " placed_at, total, currency, base_total) values (%s, %s, 'csv', %s, 'paid',"
        " '2027-01-01T21:00:00Z', 3, 'EUR', 3)"
    )
    rename = "update public.workspaces set name = %s where id = %s returning name"
    with psycopg.connect(database_url) as writer:
        writer.execute("set transaction isolation level repeatable read")
        writer.execute(
            "select count(*) from public.orders where workspace_id = %s", (owner.workspace_id,)
        )
        with acting_as(conn, owner):
            assert conn.execute(rename, ("Tea shop", owner.workspace_id)).fetchall() == [
                {"name": "Tea shop"}
            ]
        fund(conn, owner, 500)
        writer.execute(insert, (owner.workspace_id, web, f"rr-{uuid.uuid4().hex[:8]}"))
        conn.execute("set lock_timeout = '100ms'")
        try:
            with acting_as(conn, owner):
                assert conn.execute(rename, ("Tea house", owner.workspace_id)).fetchall() == [
                    {"name": "Tea house"}
                ]
            fund(conn, owner, 400)
        finally:
            conn.execute("reset lock_timeout")
        writer.commit()
    assert trend(conn, owner, date(2027, 1, 1), date(2027, 1, 1)) == {
        date(2027, 1, 1): (3, 143, 1, 1)
    }
    assert no_drift(conn, owner)
