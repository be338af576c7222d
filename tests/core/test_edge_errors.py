"""No input gets a 500, and every answer carries the envelope and `X-Request-Id`: hostile
signature headers, JSON nested past any parser's stack, NUL in text, unknown routes and
methods, and a handler that fails for real."""

import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.testclient import TestClient
from psycopg.rows import DictRow, dict_row
from pydantic import SecretStr

from api.app import create_app
from api.core.deps import ServiceDatabase
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import create_user, make_project
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]
NON_ASCII_SIGNATURE = "v1=ščř€".encode()  # sent as raw octets, as any client can
DEEP_JSON = b"[" * 3000 + b"]" * 3000


@pytest.fixture(scope="module")
def app(database_url: str, jwks: JwksServer) -> FastAPI:
    settings = edge_settings(
        database_url,
        jwks,
        public_base_url="https://edge.example.test",
        make_signing_secret=SecretStr("make-" + uuid.uuid4().hex),
        razorpay_webhook_secret=SecretStr("rzp-" + uuid.uuid4().hex),
        sns_topic_arns=["arn:aws:sns:eu-central-1:123456789012:growthbase-ses"],
        integrations_encryption_key=SecretStr(Fernet.generate_key().decode()),
    )
    edge = create_app(settings)

    def fail_unexpectedly() -> None:
        raise RuntimeError("a bug")

    edge.add_api_route("/api/v1/test-only/fails", fail_unexpectedly, methods=["GET"])

    def raise_in_database(sqlstate: str, database: ServiceDatabase) -> None:
        """A database error of the given SQLSTATE, its message quoting an input value."""
        assert sqlstate.isalnum() and len(sqlstate) == 5
        with database.as_service() as conn:
            conn.execute(
                f"do $$ begin raise sqlstate '{sqlstate}'"
                " using message = 'bad value reader@shop.example'; end $$"
            )

    edge.add_api_route(
        "/api/v1/test-only/database-error/{sqlstate}", raise_in_database, methods=["GET"]
    )
    return edge


@pytest.fixture(scope="module")
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def assert_envelope(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == {"data": None, "error": response.json()["error"]}
    assert response.json()["error"]["code"] == code
    assert response.headers["X-Request-Id"]


def json_post(client: TestClient, path: str, body: bytes, headers: dict[str, str | bytes]) -> Any:
    """Headers go as raw octets, as any client can send them."""
    raw = {
        name.encode(): value if isinstance(value, bytes) else value.encode()
        for name, value in {"Content-Type": "application/json", **headers}.items()
    }
    return client.post(path, content=body, headers=raw)


@pytest.fixture(scope="module")
def shoptet_project(client: TestClient, database_url: str, jwks: JwksServer) -> uuid.UUID:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        owner = create_user(conn)
        project = make_project(conn, owner)
    connected = client.post(
        f"/api/v1/projects/{project}/integrations/shoptet/connect",
        headers=bearer(jwks, owner),
        json={"api_token": "123456-p-987654-abcdefghij", "webhook_signature_key": "shoptet-key-1"},
    )
    assert connected.status_code == 200, connected.text
    return project


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/api/v1/webhooks/razorpay", "X-Razorpay-Signature"),
        ("/api/v1/webhooks/shoptet/{project}", "Shoptet-Webhook-Signature"),
        ("/api/v1/webhooks/result", "X-Growthbase-Signature"),
        ("/api/v1/webhooks/result", "X-Growthbase-Callback-Token"),
    ],
)
def test_non_ascii_signatures_are_refused_not_crashed(
    client: TestClient, shoptet_project: uuid.UUID, path: str, header: str
) -> None:
    body = json.dumps({"automation_id": str(uuid.uuid4()), "status": "processing"}).encode()
    headers: dict[str, str | bytes] = {
        header: NON_ASCII_SIGNATURE,
        "X-Growthbase-Timestamp": str(int(time.time())),
    }
    response = json_post(client, path.format(project=shoptet_project), body, headers)
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] in {"signature_invalid", "callback_token_invalid"}


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/api/v1/webhooks/result", {"X-Growthbase-Callback-Token": "token"}),
        ("/api/v1/webhooks/ses", {"x-amz-sns-message-type": "Notification"}),
    ],
)
def test_json_nested_past_the_parsers_stack_is_a_422(
    client: TestClient, path: str, header: dict[str, str]
) -> None:
    assert_envelope(json_post(client, path, DEEP_JSON, dict(header)), 422, "invalid_input")


def test_nul_in_text_is_a_422_not_a_database_crash(
    client: TestClient, conn: Conn, jwks: JwksServer
) -> None:
    user = create_user(conn)
    response = client.put(
        "/api/v1/me/settings",
        headers=bearer(jwks, user),
        json={"display_name": "Eve\u0000"},
    )
    assert_envelope(response, 422, "invalid_input")
    profile = conn.execute(
        "select display_name from public.profiles where id = %s", (user.id,)
    ).fetchone()
    assert profile is not None and "\u0000" not in (profile["display_name"] or "")


def test_a_failing_handler_answers_the_envelope_with_its_request_id_and_logs_it(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="growthbase.edge"):
        response = client.get("/api/v1/test-only/fails", headers={"X-Request-Id": "req-500-a"})
    assert_envelope(response, 500, "internal_error")
    assert response.headers["X-Request-Id"] == "req-500-a"
    lines = [record.getMessage() for record in caplog.records]
    assert any("RuntimeError" in line and "request_id=req-500-a" in line for line in lines)
    assert any(" 500 " in line and "request_id=req-500-a" in line for line in lines)


@pytest.mark.parametrize(
    ("sqlstate", "status", "code"),
    [
        ("22023", 422, "invalid_input"),
        ("23P01", 409, "conflict"),
        ("54001", 413, "too_large"),
        ("53300", 503, "database_busy"),
        ("53100", 500, "internal_error"),
        ("53200", 500, "internal_error"),
    ],
)
def test_database_errors_translated_by_class_are_still_logged_without_their_message(
    client: TestClient, caplog: pytest.LogCaptureFixture, sqlstate: str, status: int, code: str
) -> None:
    request_id = f"req-db-{sqlstate}"
    with caplog.at_level(logging.INFO, logger="growthbase.edge"):
        response = client.get(
            f"/api/v1/test-only/database-error/{sqlstate}", headers={"X-Request-Id": request_id}
        )
    assert_envelope(response, status, code)
    logged = [
        record
        for record in caplog.records
        if f"sqlstate={sqlstate}" in record.getMessage()
        and f"request_id={request_id}" in record.getMessage()
    ]
    assert [r.levelno >= logging.WARNING for r in logged] == [True]
    if status != 500:
        # A translated error is the input's fault and its message may quote the input; a 500
        # is our bug, logged with its primary message so it can be found.
        assert all("reader@shop.example" not in r.getMessage() for r in caplog.records)


def test_unknown_routes_wrong_methods_and_invalid_input_carry_the_request_id(
    client: TestClient,
) -> None:
    assert_envelope(client.get("/api/v1/nowhere"), 404, "not_found")
    assert_envelope(client.put("/api/v1/me/settings", content=b"{"), 401, "authentication_required")
    wrong_method = client.delete("/api/v1/me/settings")
    assert_envelope(wrong_method, 405, "method_not_allowed")
    assert wrong_method.headers["Allow"] == "PUT"
    health_method = client.post("/health")
    assert_envelope(health_method, 405, "method_not_allowed")
    assert health_method.headers["Allow"] == "GET"
    invalid = client.post(f"/api/v1/webhooks/shoptet/{'not-a-uuid'}", content=b"{}")
    assert_envelope(invalid, 422, "invalid_input")
