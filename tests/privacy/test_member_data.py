"""A user's own access request: everything kept about them as a user, from every workspace,
and nothing of anyone else's."""

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from api.app import create_app
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import acting_as, add_member, create_user, one
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    with TestClient(create_app(edge_settings(database_url, jwks))) as test_client:
        yield test_client


def test_a_user_gets_their_own_data_from_every_workspace_and_no_one_elses(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    with acting_as(conn, owner):
        team = one(conn, "select id from public.create_workspace('Team', 'EUR')")["id"]
    newcomer = create_user(conn)
    with acting_as(conn, owner):
        token = one(
            conn,
            "select token from public.invite_member(%s, %s, 'admin')",
            (team, newcomer.email),
        )["token"]
    with acting_as(conn, newcomer):
        conn.execute("select public.accept_invitation(%s)", (token,))
        mine = one(
            conn, "select id from public.create_api_key(%s, 'Mine', 'member', null)", (team,)
        )["id"]
    with acting_as(conn, owner):
        theirs = one(
            conn, "select id from public.create_api_key(%s, 'Theirs', 'viewer', null)", (team,)
        )["id"]
    outsider = add_member(conn, create_user(conn), "member")

    answer = client.get(
        "/api/v1/privacy/me/data",
        headers={**bearer(jwks, newcomer), "X-Request-Id": "mine-" + uuid.uuid4().hex},
    )

    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["account"]["email"] == newcomer.email
    assert {m["workspace_id"] for m in data["memberships"]} == {
        str(newcomer.workspace_id),
        str(team),
    }
    assert [(i["workspace_id"], i["role"]) for i in data["invitations"]] == [(str(team), "admin")]
    assert [k["id"] for k in data["api_keys_created"]] == [str(mine)]
    assert data["billing"] == {"subscriptions_started": [], "razorpay_payloads": []}
    actions = {(a["workspace_id"], a["action"]) for a in data["audit_log"]}
    assert (str(team), "api_key.created") in actions
    assert all(a["target_id"] != str(theirs) for a in data["audit_log"]), "another user's action"
    assert str(outsider.id) not in answer.text and owner.email not in answer.text
    with acting_as(conn, outsider):
        other = one(conn, "select public.my_personal_data() as data")["data"]
    assert other["account"]["email"] == outsider.email and other["api_keys_created"] == []
