"""POST /api/v1/privacy/contacts/{id}/erase: admins erase their workspace's contacts; everyone
else gets the envelope's clear refusal."""

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
from tests.factories.workspaces import User, acting_as, add_member, create_user, fund, one
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = Settings(database_url=SecretStr(database_url), supabase_url=jwks.base_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def erase(client: TestClient, jwks: JwksServer, user: User, contact_id: object) -> Any:
    return client.post(
        f"/api/v1/privacy/contacts/{contact_id}/erase",
        headers={"Authorization": f"Bearer {jwks.sign(jwks.claims(user.id))}"},
    )


def test_admins_erase_and_everyone_else_is_refused(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    viewer = add_member(conn, owner, "viewer")
    admin = add_member(conn, owner, "admin")
    stranger = create_user(conn)
    email = f"edge-{uuid.uuid4().hex[:8]}@example.test"
    with acting_as(conn, owner):
        contact_id = one(
            conn,
            "insert into public.contacts (workspace_id, email, first_name) values (%s, %s,"
            " 'Edge') returning id",
            (owner.workspace_id, email),
        )["id"]

    answers = {
        "stranger": erase(client, jwks, stranger, contact_id),
        "viewer": erase(client, jwks, viewer, contact_id),
        "not a uuid": erase(client, jwks, admin, "42"),
    }
    assert {name: (a.status_code, a.json()["error"]["code"]) for name, a in answers.items()} == {
        "stranger": (404, "contact_not_found"),
        "viewer": (403, "insufficient_role"),
        "not a uuid": (422, "invalid_input"),
    }

    done = erase(client, jwks, admin, contact_id)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["error"] is None
    assert body["data"]["contact_id"] == str(contact_id)
    assert body["data"]["requested_by"] == str(admin.id)
    row = one(
        conn,
        "select email, first_name, erased_at from public.contacts where id = %s",
        (contact_id,),
    )
    assert (row["email"], row["first_name"]) == (None, None) and row["erased_at"] is not None

    again = erase(client, jwks, owner, contact_id)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "contact_already_erased")
