"""Contacts and orders under RLS, as Data API users."""

from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.factories import acting_as, add_member, create_user, make_project

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
