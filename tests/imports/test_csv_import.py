"""CSV import of orders: bad rows reported by line with a reason, good rows imported whole."""

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from api.core.settings import Settings
from scripts.import_orders import main as import_cli
from tests.factories.workspaces import User, add_member, create_user, make_project
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]

CSV = """order_id,placed_at,status,total,currency,email,phone,country,first_name,exchange_rate
A-1,2026-06-01,paid,100.50,CZK,jana@example.test,603 123 456,CZ,Jana,
A-2,2026-06-02T10:00:00+02:00,fulfilled,20,EUR,JANA@example.test,,,,25.10
A-3,2026-06-03,shipped,10,CZK,x@example.test,,,,
A-4,yesterday,paid,10,CZK,x@example.test,,,,
A-5,2026-06-05,paid,-3,CZK,x@example.test,,,,
A-6,2026-06-06,paid,1.234,CZK,x@example.test,,,,
A-7,2026-06-07,paid,5,CZK,not-an-email,,,,
A-1,2026-06-08,paid,5,CZK,x@example.test,,,,
"A-9","2026-06-09","paid","7","czk","multi@example.test","",,"Line
Break",
A-10,2026-06-10,pending,,CZK,,,,,
"""

EXPECTED_ERRORS = [
    {"line": 4, "reason": "status must be one of pending, paid, fulfilled, cancelled, refunded"},
    {"line": 5, "reason": "placed_at must be an ISO date or date-time"},
    {"line": 6, "reason": "total must be zero or more"},
    {"line": 7, "reason": "total has more than two decimals"},
    {"line": 8, "reason": "email is not an email address"},
    {"line": 9, "reason": "order_id repeats line 2"},
    {"line": 12, "reason": "total is empty"},
]


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = Settings(database_url=SecretStr(database_url), supabase_url=jwks.base_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def upload(client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID, text: str) -> Any:
    return client.post(
        f"/api/v1/projects/{project}/orders/import",
        content=text.encode(),
        headers={
            "Authorization": f"Bearer {jwks.sign(jwks.claims(user.id))}",
            "Content-Type": "text/csv",
        },
    )


def imported(conn: Conn, project: uuid.UUID) -> dict[str, tuple[Any, ...]]:
    rows = conn.execute(
        "select o.external_id, o.status, o.total, o.currency, o.base_total, c.email, c.phone"
        " from public.orders o left join public.contacts c on c.id = o.contact_id"
        " where o.project_id = %s",
        (project,),
    ).fetchall()
    return {r["external_id"]: tuple(r.values())[1:] for r in rows}


def test_bad_rows_are_reported_by_line_and_good_rows_imported(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set base_currency = 'CZK' where id = %s", (owner.workspace_id,)
    )
    project = make_project(conn, owner)
    response = upload(client, jwks, owner, project, CSV)
    assert response.status_code == 200
    report = response.json()["data"]
    assert report["errors"] == EXPECTED_ERRORS
    assert (report["imported"], report["failed"]) == (3, 7)
    orders = imported(conn, project)
    assert set(orders) == {"A-1", "A-2", "A-9"}
    assert orders["A-1"][-2:] == ("jana@example.test", "+420603123456")
    assert orders["A-2"][3:5] == (502, "jana@example.test")  # 20 EUR x 25.10
    assert orders["A-9"][2] == "CZK"
    again = upload(client, jwks, owner, project, CSV)
    assert again.json()["data"]["imported"] == 3
    assert len(imported(conn, project)) == 3


def test_a_file_with_the_wrong_columns_is_refused_whole(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    response = upload(client, jwks, owner, project, "id,when\n1,2026-01-01\n")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_csv"
    assert "missing columns: order_id, placed_at, status, total, currency" in error["message"]
    assert "unknown columns: id, when" in error["message"]
    assert imported(conn, project) == {}


def test_viewers_and_strangers_cannot_import(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    project = make_project(conn, owner)
    as_viewer = upload(client, jwks, viewer, project, CSV)
    as_stranger = upload(client, jwks, stranger, project, CSV)
    assert (as_viewer.status_code, as_viewer.json()["error"]["code"]) == (403, "insufficient_role")
    assert (as_stranger.status_code, as_stranger.json()["error"]["code"]) == (
        404,
        "project_not_found",
    )
    assert imported(conn, project) == {}


def test_the_command_line_import_reports_the_same_rows(
    conn: Conn, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    path = tmp_path / "orders.csv"
    path.write_text(CSV)
    status = import_cli([str(path), "--project-id", str(project), "--database-url", database_url])
    captured = capsys.readouterr()
    assert status == 1
    assert captured.err.splitlines() == [
        f"line {e['line']}: {e['reason']}" for e in EXPECTED_ERRORS
    ]
    assert "imported 3 order(s), 7 bad row(s)" in captured.out
    assert set(imported(conn, project)) == {"A-1", "A-2", "A-9"}


def test_a_one_line_file_without_our_columns_is_a_clear_422(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    response = upload(client, jwks, owner, project, "id,when")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_csv"
    assert error["details"]["job"]["status"] == "failed"
    assert imported(conn, project) == {}


def test_a_file_in_another_encoding_is_a_clear_422_and_imports_nothing(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    body = "order_id,placed_at,status,total,currency,email,first_name\n"
    body += "A-1,2026-06-01,paid,10,CZK,jiri@example.test,Jiří\n"
    response = client.post(
        f"/api/v1/projects/{project}/orders/import",
        content=body.encode("cp1250"),
        headers={
            "Authorization": f"Bearer {jwks.sign(jwks.claims(owner.id))}",
            "Content-Type": "text/csv",
        },
    )
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_encoding")
    job = conn.execute(
        "select status, error_code from public.import_jobs where project_id = %s", (project,)
    ).fetchall()
    assert [tuple(j.values()) for j in job] == [("failed", "invalid_encoding")]
    assert imported(conn, project) == {}


def test_a_file_over_5_mib_is_a_413_pointing_to_an_import_job(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    rows = CSV.splitlines(keepends=True)
    body = rows[0] + rows[1] * (5 * 1024 * 1024 // len(rows[1]) + 1)
    response = upload(client, jwks, owner, project, body)
    assert (response.status_code, response.json()["error"]["code"]) == (413, "file_too_large")
    assert "import job" in response.json()["error"]["message"]
    assert imported(conn, project) == {}


def test_a_huge_unknown_column_name_is_named_shortly_in_the_422(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    """A spreadsheet's stray cell in the header row (here 1 MB of text) is an unknown column:
    the answer names its first 100 characters, not the megabyte, twice over."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    stray = "x" * 1_000_000
    header = f"order_id,placed_at,status,total,currency,{stray}\n"
    response = upload(client, jwks, owner, project, header + "A-1,2026-06-01,paid,1,EUR,\n")
    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_csv")
    assert response.json()["error"]["message"] == f"unknown columns: {'x' * 100}…"
    assert len(response.content) < 2000
    assert imported(conn, project) == {}
