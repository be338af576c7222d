"""Contacts and orders under RLS, as Data API users."""

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg import errors

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


def test_contacts_are_normalised_unique_and_members_only(conn: Conn) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.contacts (workspace_id, email, first_name) values (%s, %s, 'Ann')",
            (owner.workspace_id, "  Ann@Example.TEST "),
        )
    with pytest.raises(errors.UniqueViolation), acting_as(conn, owner):
        conn.execute(
            "insert into public.contacts (workspace_id, email) values (%s, 'ANN@example.test')",
            (owner.workspace_id,),
        )
    with pytest.raises(errors.CheckViolation), acting_as(conn, owner):
        conn.execute(
            "insert into public.contacts (workspace_id, phone) values (%s, '603 123 456')",
            (owner.workspace_id,),
        )
    with acting_as(conn, viewer):
        assert [r["email"] for r in conn.execute("select email from public.contacts")] == [
            "ann@example.test"
        ]
        renamed = conn.execute("update public.contacts set first_name = 'X'").rowcount
        assert renamed == 0
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, viewer):
        conn.execute(
            "insert into public.contacts (workspace_id, email) values (%s, 'v@example.test')",
            (owner.workspace_id,),
        )
    with acting_as(conn, stranger):
        assert conn.execute("select id from public.contacts").fetchall() == []
        assert conn.execute("select id from public.orders").fetchall() == []


def test_users_cannot_write_orders_directly(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute(
            "insert into public.orders (workspace_id, project_id, source, external_id, status,"
            " placed_at, total, currency) values (%s, %s, 'manual', '1', 'paid', now(), 1, 'EUR')",
            (owner.workspace_id, project),
        )
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute("select private.upsert_order(%s, 'csv', '{}')", (project,))


def add_contacts(conn: Conn, user: User, prefix: str, how_many: int) -> None:
    conn.execute(
        "insert into public.contacts (workspace_id, email)"
        " select %s, %s || n || '@example.test' from generate_series(1, %s) as n",
        (user.workspace_id, prefix, how_many),
    )


def kept_count(conn: Conn, user: User) -> int:
    row = conn.execute(
        "select contacts from private.workspace_contact_counts where workspace_id = %s",
        (user.workspace_id,),
    ).fetchone()
    return int(row["contacts"]) if row else 0


def drifted(conn: Conn, *users: User) -> list[dict[str, Any]]:
    """The users' workspaces whose counter differs from their contacts."""
    return conn.execute(
        "select * from private.verify_contact_counts() where workspace_id = any (%s)",
        ([user.workspace_id for user in users],),
    ).fetchall()


def test_concurrent_inserts_never_pass_the_contact_limit(conn: Conn, database_url: str) -> None:
    owner = create_user(conn)  # free plan: 1000 contacts
    add_contacts(conn, owner, "existing-", 990)
    writers = 10
    start = threading.Barrier(writers)

    def insert_ten(batch: int) -> str:
        with psycopg.connect(database_url) as own:
            try:
                with acting_as(own, owner):
                    start.wait(timeout=30)
                    add_contacts(own, owner, f"batch{batch}-", 10)
            except psycopg.Error as error:
                return error.sqlstate or "error"
            return "inserted"

    with ThreadPoolExecutor(writers) as pool:
        outcomes = Counter(pool.map(insert_ten, range(writers)))
    total = one(
        conn, "select count(*) from public.contacts where workspace_id = %s", (owner.workspace_id,)
    )
    assert outcomes == {"inserted": 1, "PT402": 9}
    assert total["count"] == 1000


def test_the_contact_counter_follows_every_writer(conn: Conn) -> None:
    owner, other = create_user(conn), create_user(conn)
    member = add_member(conn, owner, "member")
    add_contacts(conn, owner, "bulk-", 30)
    with acting_as(conn, member):
        add_contacts(conn, owner, "member-", 5)
    # The service deletes outright (a dashboard delete is an erasure: tests/privacy).
    conn.execute("delete from public.contacts where email like 'bulk-1%%'")
    conn.execute(
        "insert into public.contacts (workspace_id, email)"
        " select %s, 'bulk-' || n || '@example.test' from generate_series(1, 40) as n"
        " on conflict do nothing",
        (owner.workspace_id,),
    )
    moved = one(
        conn,
        "update public.contacts set workspace_id = %s where email = 'member-1@example.test'"
        " returning id",
        (other.workspace_id,),
    )
    assert moved["id"]
    counts = {
        user.id: one(
            conn,
            "select count(*) from public.contacts where workspace_id = %s",
            (user.workspace_id,),
        )["count"]
        for user in (owner, other)
    }
    assert counts == {owner.id: 44, other.id: 1}
    assert {user.id: kept_count(conn, user) for user in (owner, other)} == counts
    assert drifted(conn, owner, other) == []
    conn.execute("delete from public.workspaces where id = %s", (other.workspace_id,))
    assert kept_count(conn, other) == 0
    assert drifted(conn, owner, other) == []


def test_a_transactions_own_inserts_count_against_the_limit_and_rolled_back_ones_do_not(
    conn: Conn,
) -> None:
    """Row by row under savepoints, as the CSV import writes: the counter is written once, at
    commit, with what the transaction kept."""
    owner = create_user(conn)
    add_contacts(conn, owner, "existing-", 990)
    with conn.transaction():
        for n in range(12):
            try:
                with conn.transaction():
                    conn.execute(
                        "insert into public.contacts (workspace_id, email) values (%s, %s)",
                        (owner.workspace_id, f"row-{n}@example.test"),
                    )
                    if n == 3:
                        raise psycopg.Rollback()
            except psycopg.Error as error:
                assert error.sqlstate == "PT402"
        assert kept_count(conn, owner) == 990
    total = one(
        conn, "select count(*) from public.contacts where workspace_id = %s", (owner.workspace_id,)
    )
    assert (total["count"], kept_count(conn, owner)) == (1000, 1000)
    assert drifted(conn, owner) == []


def test_under_set_constraints_all_immediate_each_change_is_applied_at_once(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, "existing-", 990)
    with conn.transaction():
        add_contacts(conn, owner, "deferred-", 3)
        assert kept_count(conn, owner) == 990
        conn.execute("set constraints all immediate")
        assert kept_count(conn, owner) == 993
        add_contacts(conn, owner, "immediate-", 2)
        conn.execute("delete from public.contacts where email = 'deferred-1@example.test'")
        add_contacts(conn, owner, "more-", 5)
        assert kept_count(conn, owner) == 999
        with refused(402, "plan_limit_reached"), conn.transaction():
            add_contacts(conn, owner, "over-", 2)
        assert (kept_count(conn, owner), drifted(conn, owner)) == (999, [])
    assert (kept_count(conn, owner), drifted(conn, owner)) == (999, [])


def test_a_truncate_resets_every_counter_and_later_inserts_count_again(conn: Conn) -> None:
    """Inside a transaction that rolls back: the other tests' contacts stay."""
    owner, other = create_user(conn), create_user(conn)
    add_contacts(conn, owner, "existing-", 990)
    add_contacts(conn, other, "other-", 4)
    with conn.transaction(force_rollback=True):
        add_contacts(conn, owner, "pending-", 5)
        conn.execute("truncate public.contacts cascade")
        assert (kept_count(conn, owner), kept_count(conn, other)) == (0, 0)
        add_contacts(conn, owner, "after-", 7)
        conn.execute("set constraints all immediate")
        assert (kept_count(conn, owner), kept_count(conn, other)) == (7, 0)
        assert conn.execute("select * from private.verify_contact_counts()").fetchall() == []
    assert (kept_count(conn, owner), kept_count(conn, other)) == (990, 4)


def test_moving_contacts_into_a_full_workspace_is_refused(conn: Conn) -> None:
    full, spare = create_user(conn), create_user(conn)
    add_contacts(conn, full, "full-", 1000)
    add_contacts(conn, spare, "spare-", 2)
    with refused(402, "plan_limit_reached"):
        conn.execute(
            "update public.contacts set workspace_id = %s where workspace_id = %s",
            (full.workspace_id, spare.workspace_id),
        )
    assert (kept_count(conn, full), kept_count(conn, spare)) == (1000, 2)
