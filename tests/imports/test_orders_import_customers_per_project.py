"""An orders import's `customer_id` is the job's project's: two projects of one workspace that
each import their shop's customer C1 (other people) keep two contacts, each with its project's
orders, and importing a file again finds its own project's C1
(20270222090000_shop_customers_keyed_per_project.sql)."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from api.core.settings import Settings
from tests.factories.edge import bearer
from tests.factories.workspaces import User, create_user, make_project
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]
HEADER = "order_id,placed_at,status,total,currency,email,first_name,customer_id\n"


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = Settings(database_url=SecretStr(database_url), supabase_url=jwks.base_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def upload(client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID, text: str) -> Any:
    answer = client.post(
        f"/api/v1/projects/{project}/orders/import",
        content=text.encode(),
        headers={**bearer(jwks, user), "Content-Type": "text/csv"},
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]


def state(conn: Conn, workspace: uuid.UUID) -> list[tuple[Any, ...]]:
    """Each order with its contact and that contact's customer ids: (project, order, email, ids)."""
    rows = conn.execute(
        "select o.project_id, o.external_id, c.email,"
        " array(select x.source || ':' || x.external_id || '@' || x.project_id::text"
        "  from public.contact_external_ids x where x.contact_id = c.id order by 1) as ids"
        " from public.orders o left join public.contacts c on c.id = o.contact_id"
        " where o.workspace_id = %s order by o.external_id",
        (workspace,),
    ).fetchall()
    return [tuple(row.values()) for row in rows]


def test_an_imports_customer_id_is_found_and_kept_in_the_jobs_project(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    first = make_project(conn, owner, "First shop")
    second = make_project(conn, owner, "Second shop")
    files = {
        first: HEADER + "A-1,2026-06-01,paid,100,EUR,ann@example.test,Ann,C1\n",
        second: HEADER + "B-1,2026-06-02,paid,50,EUR,ben@example.test,Ben,C1\n",
    }
    for project, text in files.items():
        report = upload(client, jwks, owner, project, text)
        assert (report["status"], report["imported"], report["errors"]) == ("done", 1, [])

    expected = [
        (first, "A-1", "ann@example.test", [f"manual:C1@{first}"]),
        (second, "B-1", "ben@example.test", [f"manual:C1@{second}"]),
    ]
    assert state(conn, owner.workspace_id) == expected

    # The second project's file again, its C1 without an email now: still Ben, in its project.
    again = HEADER + "B-2,2026-06-03,paid,30,EUR,,,C1\n"
    assert upload(client, jwks, owner, second, again)["imported"] == 1
    assert state(conn, owner.workspace_id) == [
        *expected,
        (second, "B-2", "ben@example.test", [f"manual:C1@{second}"]),
    ]
