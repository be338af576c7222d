"""The edge through its ASGI app with real tokens and a real database."""

import socket
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from api.app import create_app
from api.core.settings import Settings
from tests.factories.edge import authorization, bearer, documented_codes, edge_settings
from tests.factories.workspaces import acting_as, create_user
from tests.fakes.jwks import JwksServer

LEGACY_SECRET = "test-legacy-secret-" + uuid.uuid4().hex


def settings_for(database_url: str, jwks: JwksServer) -> Settings:
    return edge_settings(
        database_url, jwks, supabase_jwt_secret=LEGACY_SECRET, database_timeout_seconds=2
    )


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(database_url, jwks))) as test_client:
        yield test_client


def test_me_lists_profile_and_every_workspace_with_role(
    client: TestClient, jwks: JwksServer, conn: psycopg.Connection[DictRow]
) -> None:
    owner = create_user(conn, full_name="Olga Owner")
    user = create_user(conn, full_name="Vita Viewer")
    stranger = create_user(conn)
    with acting_as(conn, owner):
        token = conn.execute(
            "select token from public.invite_member(%s, %s, 'viewer')",
            (owner.workspace_id, user.email),
        ).fetchone()["token"]
    with acting_as(conn, user):
        conn.execute("select public.accept_invitation(%s)", (token,))
    with acting_as(conn, owner):
        conn.execute(
            "update public.workspaces set time_zone = 'Asia/Kolkata' where id = %s",
            (owner.workspace_id,),
        )

    response = client.get("/api/v1/me", headers=bearer(jwks, user))

    assert response.status_code == 200
    body = response.json()
    assert body["error"] is None
    me = body["data"]
    assert (me["id"], me["email"]) == (str(user.id), user.email)
    assert me["profile"] == {"display_name": "Vita Viewer", "locale": "en", "preferences": {}}
    roles = {
        w["id"]: (w["role"], w["plan_tier"], w["credits_remaining"], w["time_zone"])
        for w in me["workspaces"]
    }
    assert roles == {
        str(user.workspace_id): ("owner", "free", 20, "UTC"),
        str(owner.workspace_id): ("viewer", "free", 20, "Asia/Kolkata"),
    }
    assert str(stranger.workspace_id) not in roles


def test_legacy_hs256_tokens_are_accepted(
    client: TestClient, jwks: JwksServer, conn: psycopg.Connection[DictRow]
) -> None:
    user = create_user(conn)
    token = jwt.encode(jwks.claims(user.id), LEGACY_SECRET, algorithm="HS256")
    response = client.get("/api/v1/me", headers=authorization(token))
    assert response.status_code == 200
    assert response.json()["data"]["id"] == str(user.id)


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "authentication_required"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, "authentication_required"),
        ({"Authorization": "Bearer not-a-jwt"}, "token_invalid"),
    ],
)
def test_requests_without_a_valid_token_get_401(
    client: TestClient, headers: dict[str, str], code: str
) -> None:
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["data"] is None
    assert response.json()["error"]["code"] == code


def test_expired_and_foreign_tokens_get_401(
    client: TestClient, jwks: JwksServer, conn: psycopg.Connection[DictRow]
) -> None:
    user = create_user(conn)
    expired = jwks.sign(jwks.claims(user.id, exp=1_600_000_000, iat=1_599_999_000))
    foreign = jwks.sign(jwks.claims(user.id, iss="https://evil.example/auth/v1"))
    codes = [
        client.get("/api/v1/me", headers=authorization(token)).json()["error"]["code"]
        for token in (expired, foreign)
    ]
    assert codes == ["token_expired", "token_issuer_invalid"]


def test_a_token_for_a_user_without_profile_is_404(client: TestClient, jwks: JwksServer) -> None:
    response = client.get("/api/v1/me", headers=authorization(jwks.sign(jwks.claims(uuid.uuid4()))))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "profile_not_found"


def test_settings_are_replaced_field_by_field_and_persisted(
    client: TestClient, jwks: JwksServer, conn: psycopg.Connection[DictRow]
) -> None:
    user = create_user(conn)
    headers = bearer(jwks, user)
    first = client.put(
        "/api/v1/me/settings",
        headers=headers,
        json={
            "display_name": "Petra",
            "locale": "cs-CZ",
            "preferences": {"theme": "dark", "timezone": "Europe/Prague", "weekly_digest": True},
        },
    )
    assert first.status_code == 200
    assert first.json()["data"]["profile"] == {
        "display_name": "Petra",
        "locale": "cs-CZ",
        "preferences": {"theme": "dark", "timezone": "Europe/Prague", "weekly_digest": True},
    }
    second = client.put(
        "/api/v1/me/settings",
        headers=headers,
        json={"preferences": {"theme": "light", "weekly_digest": None}},
    )
    assert second.status_code == 200
    stored = conn.execute(
        "select display_name, locale, preferences from public.profiles where id = %s", (user.id,)
    ).fetchone()
    assert stored == {
        "display_name": "Petra",
        "locale": "cs-CZ",
        "preferences": {"theme": "light", "timezone": "Europe/Prague"},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"favourite_colour": "red"}, "body.favourite_colour"),
        ({"preferences": {"colour": "red"}}, "body.preferences.colour"),
        ({"preferences": {"theme": "neon"}}, "body.preferences.theme"),
        ({"preferences": {"weekly_digest": "yes"}}, "body.preferences.weekly_digest"),
        ({"locale": "english please"}, "body.locale"),
        ({"display_name": ""}, "body.display_name"),
    ],
)
def test_bad_settings_get_422_with_field_paths(
    client: TestClient,
    jwks: JwksServer,
    conn: psycopg.Connection[DictRow],
    body: dict[str, Any],
    field: str,
) -> None:
    user = create_user(conn)
    response = client.put("/api/v1/me/settings", headers=bearer(jwks, user), json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert [issue["field"] for issue in error["details"]] == [field]
    preferences = conn.execute(
        "select preferences from public.profiles where id = %s", (user.id,)
    ).fetchone()
    assert preferences == {"preferences": {}}


def test_the_database_has_the_last_word_on_settings(
    client: TestClient, jwks: JwksServer, conn: psycopg.Connection[DictRow]
) -> None:
    user = create_user(conn)
    response = client.put(
        "/api/v1/me/settings",
        headers=bearer(jwks, user),
        json={"preferences": {"timezone": "Mars/Olympus_Mons"}},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_preferences"
    assert "invalid_preferences" in documented_codes(client, "put_settings", 422)


def test_a_body_that_is_not_json_gets_422(
    client: TestClient, jwks: JwksServer, conn: psycopg.Connection[DictRow]
) -> None:
    user = create_user(conn)
    response = client.put(
        "/api/v1/me/settings",
        headers={**bearer(jwks, user), "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_input"


def test_health_reports_the_database(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"data": {"status": "ok", "database": "ok"}, "error": None}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_health_is_503_when_the_database_is_down(jwks: JwksServer) -> None:
    down = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres?connect_timeout=1"
    with TestClient(create_app(settings_for(down, jwks))) as client:
        response = client.get("/health")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


def test_every_response_carries_a_request_id(client: TestClient) -> None:
    echoed = client.get("/health", headers={"X-Request-Id": "trace-42"})
    replaced = client.get("/health", headers={"X-Request-Id": "bad id with spaces"})
    assert echoed.headers["X-Request-Id"] == "trace-42"
    assert len(replaced.headers["X-Request-Id"]) == 32


def test_unknown_routes_answer_in_the_envelope(client: TestClient) -> None:
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json() == {
        "data": None,
        "error": {"code": "not_found", "message": "Not Found", "details": None},
    }
