"""Users and workspaces leaving, and invitations by Supabase's invite email, through the edge
against a provider-shaped Supabase Auth admin server that does to the database what GoTrue does."""

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
from tests.factories.workspaces import User, acting_as, add_member, create_user, fund, one, refused
from tests.fakes.jwks import JwksServer
from tests.fakes.supabase_auth_server import SERVICE_KEY, AuthServer, serve_auth

Conn = psycopg.Connection[DictRow]


@pytest.fixture(scope="module")
def auth(database_url: str) -> Iterator[AuthServer]:
    with serve_auth(database_url) as server:
        yield server


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer, auth: AuthServer) -> Iterator[TestClient]:
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        supabase_auth_url=auth.base_url,
        supabase_service_key=SecretStr(SERVICE_KEY),
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def bearer(jwks: JwksServer, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwks.sign(jwks.claims(user.id))}"}


def shared_workspace(conn: Conn, owner: User) -> uuid.UUID:
    with acting_as(conn, owner):
        row = one(conn, "select id from public.create_workspace('Team', 'EUR')")
    return uuid.UUID(str(row["id"]))


def join(conn: Conn, owner: User, workspace_id: uuid.UUID, role: str) -> User:
    member = create_user(conn)
    with acting_as(conn, owner):
        token = one(
            conn,
            "select token from public.invite_member(%s, %s, %s)",
            (workspace_id, member.email, role),
        )["token"]
    with acting_as(conn, member):
        conn.execute("select public.accept_invitation(%s)", (token,))
    return member


def code(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def test_a_sole_owner_must_hand_over_first_then_the_account_goes_and_the_log_keeps_a_pseudonym(
    conn: Conn, client: TestClient, jwks: JwksServer, auth: AuthServer
) -> None:
    owner = create_user(conn)
    team = shared_workspace(conn, owner)
    fund(conn, owner, 10, "team")
    member = join(conn, owner, team, "member")

    refused_answer = client.delete("/api/v1/privacy/account", headers=bearer(jwks, owner))
    assert code(refused_answer) == (409, "sole_owner")
    assert refused_answer.json()["error"]["details"] == [
        {"workspace_id": str(team), "name": "Team", "other_members": 1}
    ]
    assert not [r for r in auth.requests if r[0] == "DELETE" and str(owner.id) in r[1]]

    with acting_as(conn, owner):
        conn.execute("select public.change_member_role(%s, %s, 'owner')", (team, member.id))
    done = client.delete("/api/v1/privacy/account", headers=bearer(jwks, owner))
    assert done.status_code == 200, done.text
    assert ("DELETE", f"/auth/v1/admin/users/{owner.id}", {"should_soft_delete": False}) in (
        auth.requests
    )
    assert one(conn, "select count(*) as n from auth.users where id = %s", (owner.id,)) == {"n": 0}
    # Their solo personal workspace went with them; the shared one stays with its new owner.
    assert one(
        conn, "select count(*) as n from public.workspaces where id = %s", (owner.workspace_id,)
    ) == {"n": 0}
    kept = one(conn, "select created_by from public.workspaces where id = %s", (team,))
    assert kept["created_by"] is None
    actors = {
        r["actor_id"]
        for r in conn.execute(
            "select actor_id from public.audit_log where workspace_id = %s"
            " and actor_id is not null",
            (team,),
        ).fetchall()
    }
    assert owner.id not in actors and member.id in actors and len(actors) == 2
    targets = [
        r["target_id"]
        for r in conn.execute(
            "select target_id from public.audit_log where workspace_id = %s"
            " and target_type = 'user'",
            (team,),
        ).fetchall()
    ]
    assert str(owner.id) not in targets


def test_an_auth_outage_is_a_clear_502_and_deletes_nothing(
    conn: Conn, client: TestClient, jwks: JwksServer, auth: AuthServer
) -> None:
    user = create_user(conn)
    auth.fail_with = 503
    try:
        answer = client.delete("/api/v1/privacy/account", headers=bearer(jwks, user))
    finally:
        auth.fail_with = None
    assert code(answer) == (502, "auth_admin_failed")
    assert one(conn, "select count(*) as n from auth.users where id = %s", (user.id,)) == {"n": 1}


def test_a_deleted_workspace_disappears_for_everyone_and_an_owner_can_restore_it(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    team = shared_workspace(conn, owner)
    fund(conn, owner, 10, "team")
    admin = join(conn, owner, team, "admin")
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.contacts (workspace_id, email) values (%s, %s)",
            (team, f"w-{uuid.uuid4().hex[:8]}@example.test"),
        )

    assert code(
        client.post(f"/api/v1/privacy/workspaces/{team}/delete", headers=bearer(jwks, admin))
    ) == (403, "insufficient_role")
    assert code(
        client.post(
            f"/api/v1/privacy/workspaces/{owner.workspace_id}/delete", headers=bearer(jwks, owner)
        )
    ) == (409, "personal_workspace")
    deleted = client.post(f"/api/v1/privacy/workspaces/{team}/delete", headers=bearer(jwks, owner))
    assert deleted.status_code == 200, deleted.text

    def visible(user: User) -> tuple[int, int]:
        with acting_as(conn, user):
            workspaces = one(
                conn, "select count(*) as n from public.workspaces where id = %s", (team,)
            )
            contacts = one(
                conn, "select count(*) as n from public.contacts where workspace_id = %s", (team,)
            )
        return workspaces["n"], contacts["n"]

    assert visible(admin) == (0, 0)
    assert visible(owner) == (0, 0)
    assert code(
        client.post(f"/api/v1/privacy/workspaces/{team}/delete", headers=bearer(jwks, owner))
    ) == (409, "workspace_deleted")
    restored = client.post(
        f"/api/v1/privacy/workspaces/{team}/restore", headers=bearer(jwks, owner)
    )
    assert restored.status_code == 200
    assert visible(admin) == (1, 1)

    # After its 30 days the retention job purges it.
    with acting_as(conn, owner):
        conn.execute("select public.delete_workspace(%s)", (team,))
    conn.execute(
        "update public.workspaces set purge_after = now() - interval '1 second' where id = %s",
        (team,),
    )
    assert one(conn, "select private.purge_deleted_workspaces(5) as n")["n"] >= 1
    assert one(
        conn, "select count(*) as n from public.contacts where workspace_id = %s", (team,)
    ) == {"n": 0}


def test_invitations_reach_people_without_an_account_by_supabases_invite_email(
    conn: Conn, client: TestClient, jwks: JwksServer, auth: AuthServer
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    viewer = add_member(conn, owner, "viewer")
    newcomer = f"new-{uuid.uuid4().hex[:8]}@example.test"
    url = f"/api/v1/privacy/workspaces/{owner.workspace_id}/invitations"

    assert code(client.post(url, headers=bearer(jwks, viewer), json={"email": newcomer})) == (
        403,
        "insufficient_role",
    )
    answer = client.post(
        url, headers=bearer(jwks, owner), json={"email": newcomer, "role": "admin"}
    )
    assert answer.status_code == 201, answer.text
    data = answer.json()["data"]
    assert data["invite_email_sent"] is True
    invited = one(
        conn, "select raw_user_meta_data, invited_at from auth.users where email = %s", (newcomer,)
    )
    assert invited["raw_user_meta_data"] == {"workspace_invitation": data["token"]}
    assert invited["invited_at"] is not None

    existing = create_user(conn)
    sent = len(auth.requests)
    known = client.post(url, headers=bearer(jwks, owner), json={"email": existing.email})
    assert known.status_code == 201
    assert known.json()["data"]["invite_email_sent"] is False
    assert len(auth.requests) == sent
    with refused(409, "already_member"), acting_as(conn, owner):
        conn.execute(
            "select public.invite_member(%s, %s, 'member')", (owner.workspace_id, viewer.email)
        )


def test_members_are_notified_in_app_when_a_workspace_is_deleted_and_restored(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    """The deleted workspace is hidden from them, so the notice lands in their personal
    workspace, which they always see."""
    owner = create_user(conn)
    team = shared_workspace(conn, owner)
    fund(conn, owner, 10, "team")
    viewer = join(conn, owner, team, "viewer")
    assert (
        client.post(
            f"/api/v1/privacy/workspaces/{team}/delete", headers=bearer(jwks, owner)
        ).status_code
        == 200
    )

    def notices(user: User, kind: str) -> list[dict[str, Any]]:
        with acting_as(conn, user):
            rows = conn.execute(
                "select workspace_id, title, link from public.notifications where kind = %s",
                (kind,),
            ).fetchall()
        return [dict(row) for row in rows]

    for user in (owner, viewer):
        [notice] = notices(user, "workspace.deleted")
        assert notice["workspace_id"] == user.workspace_id
        assert notice["title"] == 'Workspace "Team" was deleted'
        assert notice["link"]["workspace_id"] == str(team)
    client.post(f"/api/v1/privacy/workspaces/{team}/restore", headers=bearer(jwks, owner))
    [restored] = notices(viewer, "workspace.restored")
    assert restored["workspace_id"] == team
