"""Writes only the edge may make are out of the Data API's reach (credentials the edge sealed,
AI calls with the configured model), and the functions that stay exposed refuse malformed
arguments with a 4xx, as any signed-in user calling /rest/v1/rpc would find."""

import psycopg
import pytest
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from tests.factories.workspaces import (
    acting_as,
    add_member,
    create_user,
    fund,
    make_project,
    refused,
)

Conn = psycopg.Connection[DictRow]


def executable_by(conn: Conn, role: str, name: str) -> list[str]:
    rows = conn.execute(
        "select p.oid::regprocedure::text as signature from pg_proc p"
        " where p.proname = %s and has_function_privilege(%s, p.oid, 'execute')"
        " order by 1",
        (name, role),
    ).fetchall()
    return [row["signature"] for row in rows]


def test_credentials_and_ai_calls_are_written_by_the_service_only(conn: Conn) -> None:
    for name in ("connect_integration", "start_ai_call"):
        assert executable_by(conn, "authenticated", name) == []
        assert executable_by(conn, "anon", name) == []
        assert [s.split(".")[0] for s in executable_by(conn, "service_role", name)] == ["private"]


def test_a_member_cannot_store_credentials_or_record_ai_calls(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 20)
    project = make_project(conn, owner)
    with pytest.raises(psycopg.errors.UndefinedFunction), acting_as(conn, owner):
        conn.execute(
            "select public.connect_integration(%s, 'shopify', 'plaintext', 'plaintext')",
            (project,),
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute(
            "select private.connect_integration(%s, 'shopify', 'plaintext', 'plaintext')",
            (project,),
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute(
            "select private.start_ai_call(%s, %s, 'content', 'any-model')",
            (owner.workspace_id, owner.id),
        )


def test_the_role_check_the_edge_asks_as_the_user(conn: Conn) -> None:
    owner = create_user(conn)
    viewer, stranger = add_member(conn, owner, "viewer"), create_user(conn)
    with acting_as(conn, owner):
        role = conn.execute(
            "select private.workspace_role_as(%s, 'member') as role", (owner.workspace_id,)
        ).fetchone()
    assert role == {"role": "owner"}
    for user, status, code in (
        (viewer, 403, "insufficient_role"),
        (stranger, 404, "workspace_not_found"),
    ):
        with refused(status, code), acting_as(conn, user):
            conn.execute("select private.workspace_role_as(%s, 'member')", (owner.workspace_id,))
    with refused(422, "invalid_role"), acting_as(conn, owner):
        conn.execute("select private.workspace_role_as(%s, 'boss')", (owner.workspace_id,))


@pytest.mark.parametrize(
    "order",
    [
        None,
        [],
        "order",
        {"external_id": "1", "customer": "someone@example.test"},
        {"external_id": "1", "items": {"name": "boots"}},
        {"external_id": "1", "items": ["boots"]},
        {"external_id": "1", "items": None},
    ],
)
def test_import_order_refuses_malformed_documents(conn: Conn, order: object) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    with refused(422, "invalid_order"), acting_as(conn, owner):
        conn.execute("select public.import_order(%s, %s)", (project, Jsonb(order)))


def test_enqueue_automation_refuses_an_input_make_would_not_take(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 100)
    project = make_project(conn, owner)
    with refused(422, "input_too_large"), acting_as(conn, owner):
        conn.execute(
            "select public.enqueue_automation(%s, 'report', %s)",
            (project, Jsonb({"text": "x" * 70_000})),
        )


def test_disconnect_refuses_unknown_sources_and_other_workspaces(conn: Conn) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    project = make_project(conn, owner)
    with refused(422, "invalid_source"), acting_as(conn, owner):
        conn.execute("select public.disconnect_integration(%s, 'ebay')", (project,))
    with refused(404, "project_not_found"), acting_as(conn, stranger):
        conn.execute("select public.disconnect_integration(%s, 'shopify')", (project,))
