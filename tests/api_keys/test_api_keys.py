"""Workspace API keys and their audit trail: created by admins (the secret shown once, only its
sha256 kept), used through the edge (checked by the database, each use recorded with the
request's id and IP, at most one audit entry an hour), revoked by admins, refused once revoked,
expired or their workspace deleted; members and outsiders can do none of it."""

import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from api.app import create_app
from tests.factories.edge import edge_settings
from tests.factories.workspaces import User, acting_as, add_member, create_user, one, refused
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    with TestClient(create_app(edge_settings(database_url, jwks))) as test_client:
        yield test_client


def new_key(conn: Conn, user: User, workspace: Any = None, **options: Any) -> dict[str, Any]:
    with acting_as(conn, user):
        return one(
            conn,
            "select * from public.create_api_key(%s, %s, %s, %s)",
            (
                workspace or user.workspace_id,
                options.get("name", "Zapier"),
                options.get("role", "member"),
                options.get("expires_at"),
            ),
        )


def audit(conn: Conn, key_id: Any) -> list[dict[str, Any]]:
    rows = conn.execute(
        "select action, actor_id, details, request_id, host(ip) as ip from public.audit_log"
        " where target_type = 'api_key' and target_id = %s order by id",
        (str(key_id),),
    ).fetchall()
    return [dict(row) for row in rows]


def use(client: TestClient, secret: str, request_id: str | None = None) -> Any:
    headers = {"X-Api-Key": secret, "X-Forwarded-For": "198.51.100.23"}
    if request_id:
        headers["X-Request-Id"] = request_id
    return client.get("/api/v1/api-keys/current", headers=headers)


def test_a_key_is_created_used_and_revoked_and_each_step_is_in_the_audit_log(
    conn: Conn, client: TestClient
) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    key = new_key(conn, admin, owner.workspace_id)
    secret = key["secret"]
    assert secret.startswith(key["prefix"]) and len(secret) == 68
    stored = one(conn, "select secret_hash from public.api_keys where id = %s", (key["id"],))
    assert bytes(stored["secret_hash"]) == hashlib.sha256(secret.encode()).digest()
    with acting_as(conn, owner):
        listed = one(
            conn, "select name, prefix, role from public.api_keys where id = %s", (key["id"],)
        )
    assert listed == {"name": "Zapier", "prefix": key["prefix"], "role": "member"}
    with acting_as(conn, owner), pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select secret_hash from public.api_keys")

    request_id = "req-" + uuid.uuid4().hex
    used = use(client, secret, request_id)
    assert used.status_code == 200, used.text
    assert used.json()["data"] == {
        "key_id": str(key["id"]),
        "workspace_id": str(owner.workspace_id),
        "role": "member",
        "prefix": key["prefix"],
    }
    assert use(client, secret).status_code == 200  # within the hour: no second entry
    last_used = one(conn, "select last_used_at from public.api_keys where id = %s", (key["id"],))
    assert last_used["last_used_at"] is not None

    with acting_as(conn, owner):
        conn.execute("select public.revoke_api_key(%s)", (key["id"],))
    refused_answer = use(client, secret)
    assert (refused_answer.status_code, refused_answer.json()["error"]["code"]) == (
        401,
        "api_key_invalid",
    )
    trail = audit(conn, key["id"])
    assert [(e["action"], e["actor_id"]) for e in trail] == [
        ("api_key.created", admin.id),
        ("api_key.used", None),
        ("api_key.revoked", owner.id),
    ]
    assert (trail[1]["request_id"], trail[1]["ip"]) == (request_id, "198.51.100.23")
    assert all(secret not in str(entry["details"]) for entry in trail)
    with refused(409, "api_key_revoked"), acting_as(conn, owner):
        conn.execute("select public.revoke_api_key(%s)", (key["id"],))


def test_members_and_outsiders_cannot_create_see_or_revoke_keys(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    stranger = create_user(conn)
    with refused(403, "insufficient_role"):
        new_key(conn, member, owner.workspace_id)
    with refused(404, "workspace_not_found"):
        new_key(conn, stranger, owner.workspace_id)
    with refused(422, "invalid_api_key"):
        new_key(conn, owner, name=" ")
    with refused(422, "invalid_api_key"):
        new_key(conn, owner, role="admin")
    with refused(422, "invalid_api_key"):
        new_key(conn, owner, expires_at="2000-01-01T00:00:00Z")
    key = new_key(conn, owner)
    for user in (member, stranger):
        with acting_as(conn, user):
            seen = one(
                conn, "select count(*) as n from public.api_keys where id = %s", (key["id"],)
            )
        assert seen == {"n": 0}
        with refused(404, "api_key_not_found"), acting_as(conn, user):
            conn.execute("select public.revoke_api_key(%s)", (key["id"],))


def test_expired_keys_keys_of_deleted_workspaces_and_no_key_are_refused(
    conn: Conn, client: TestClient
) -> None:
    owner = create_user(conn)
    with acting_as(conn, owner):
        team = one(conn, "select id from public.create_workspace('Team', 'EUR')")["id"]
    expiring = new_key(conn, owner)
    conn.execute(
        "update public.api_keys set expires_at = now() - interval '1 second' where id = %s",
        (expiring["id"],),
    )
    of_team = new_key(conn, owner, team)
    assert use(client, of_team["secret"]).status_code == 200
    with acting_as(conn, owner):
        conn.execute("select public.delete_workspace(%s)", (team,))

    def code(answer: Any) -> tuple[int, str]:
        return answer.status_code, answer.json()["error"]["code"]

    assert code(use(client, expiring["secret"])) == (401, "api_key_invalid")
    assert code(use(client, of_team["secret"])) == (401, "api_key_invalid")
    assert code(use(client, "gbk_" + "0" * 64)) == (401, "api_key_invalid")
    assert code(use(client, "not a key")) == (401, "api_key_invalid")
    assert code(client.get("/api/v1/api-keys/current")) == (401, "api_key_required")
