"""POST /api/v1/events: a workspace API key, batches recorded whole or not at all, idempotent by
event id, and flows reacting in the same transaction."""

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.core.signatures import signature_headers
from tests.factories.edge import edge_settings
from tests.factories.email import add_contacts
from tests.factories.flows import create_flow, runs
from tests.factories.workspaces import acting_as, add_member, create_user, one, refused
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[Any]


@pytest.fixture
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    with TestClient(create_app(edge_settings(database_url, jwks))) as test_client:
        yield test_client


def api_key(conn: Conn, user: Any, role: str = "member") -> str:
    with acting_as(conn, user):
        return str(
            one(
                conn,
                "select secret from public.create_api_key(%s, 'Make', %s, null)",
                (user.workspace_id, role),
            )["secret"]
        )


def event(event_id: str, email: str, **extra: Any) -> dict[str, Any]:
    return {"id": event_id, "name": "viewed_product", "contact": {"email": email}, **extra}


def test_a_batch_is_recorded_once_and_enrols_contacts_in_flows(
    conn: Conn, client: TestClient
) -> None:
    conn.execute("update public.flows set status = 'paused' where status = 'active'")
    owner = create_user(conn)
    [first, second] = add_contacts(conn, owner, 2, prefix="viewer")
    emails = [
        one(conn, "select email from public.contacts where id = %s", (c,))["email"]
        for c in (first, second)
    ]
    flow = create_flow(
        conn,
        owner,
        "custom",
        [{"key": "w", "kind": "wait", "config": {"days": 1}}],
        trigger_config={"name": "viewed_product"},
    )
    headers = {"X-Api-Key": api_key(conn, owner)}
    batch = {"events": [event("e-1", emails[0]), event("e-2", emails[1].upper())]}
    answer = client.post("/api/v1/events", json=batch, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"recorded": 2, "duplicates": 0}
    again = client.post("/api/v1/events", json=batch, headers=headers)
    assert again.json()["data"] == {"recorded": 0, "duplicates": 2}
    assert {r["contact_id"] for r in runs(conn, flow)} == {first, second}
    stored = one(
        conn,
        "select count(*) as n from public.contact_events"
        " where workspace_id = %s and type = 'custom'",
        (owner.workspace_id,),
    )
    assert stored["n"] == 2


def test_bad_batches_are_refused_whole_with_a_clear_4xx(conn: Conn, client: TestClient) -> None:
    owner = create_user(conn)
    other = create_user(conn)
    [contact] = add_contacts(conn, owner, 1, prefix="known")
    [theirs] = add_contacts(conn, other, 1, prefix="theirs")
    email = one(conn, "select email from public.contacts where id = %s", (contact,))["email"]
    headers = {"X-Api-Key": api_key(conn, owner)}

    unknown = {
        "events": [
            event("k-1", email),
            {"id": "k-2", "name": "x", "contact": {"id": str(theirs)}},
            event("k-3", "nobody@example.org"),
        ]
    }
    answer = client.post("/api/v1/events", json=unknown, headers=headers)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "unknown_contact"
    assert answer.json()["error"]["details"] == {"positions": [1, 2]}
    recorded = one(
        conn, "select count(*) as n from public.contact_events where event_key like 'k-%%'"
    )
    assert recorded["n"] == 0

    huge = {"events": [event("big", email, properties={"blob": "x" * 1_000_000})]}
    answer = client.post("/api/v1/events", json=huge, headers=headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (413, "event_too_large")

    too_many = {"events": [event(f"m-{n}", email) for n in range(1001)]}
    assert client.post("/api/v1/events", json=too_many, headers=headers).status_code == 422

    for bad, code in (
        ({"X-Api-Key": "gbk_" + "0" * 64}, "api_key_invalid"),
        ({}, "api_key_required"),
    ):
        answer = client.post("/api/v1/events", json={"events": [event("a", email)]}, headers=bad)
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, code)

    with acting_as(conn, owner):
        key_id = one(
            conn,
            "select id from public.api_keys where workspace_id = %s",
            (owner.workspace_id,),
        )["id"]
        conn.execute("select public.revoke_api_key(%s)", (key_id,))
    answer = client.post("/api/v1/events", json={"events": [event("a", email)]}, headers=headers)
    assert answer.status_code == 401


def test_a_viewer_key_cannot_record_events(conn: Conn, client: TestClient) -> None:
    owner = create_user(conn)
    [contact] = add_contacts(conn, owner, 1, prefix="seen")
    headers = {"X-Api-Key": api_key(conn, owner, "viewer")}
    batch = {"events": [{"id": "v-1", "name": "x", "contact": {"id": str(contact)}}]}
    answer = client.post("/api/v1/events", json=batch, headers=headers)
    assert (answer.status_code, answer.json()["error"]["code"]) == (403, "insufficient_role")


def signed(secret: str, workspace_id: Any, body: bytes, at: float | None = None) -> dict[str, str]:
    return {
        "X-Growthbase-Workspace": str(workspace_id),
        "Content-Type": "application/json",
        **signature_headers(secret, body, at),
    }


def test_events_signed_with_the_workspace_secret_are_recorded(
    conn: Conn, client: TestClient
) -> None:
    owner = create_user(conn)
    other = create_user(conn)
    [contact] = add_contacts(conn, owner, 1, prefix="signed")
    with acting_as(conn, owner):
        secret = str(
            one(conn, "select public.rotate_event_signing_secret(%s) as s", (owner.workspace_id,))[
                "s"
            ]
        )
    body = json.dumps(
        {"events": [{"id": "s-1", "name": "signed_up", "contact": {"id": str(contact)}}]}
    ).encode()
    answer = client.post(
        "/api/v1/events", content=body, headers=signed(secret, owner.workspace_id, body)
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"recorded": 1, "duplicates": 0}

    tampered = body.replace(b"s-1", b"s-2")
    stale = time.time() - 600
    for headers, content, code in (
        (signed(secret, owner.workspace_id, body), tampered, "signature_invalid"),
        (signed(secret, owner.workspace_id, body, stale), body, "signature_stale"),
        (signed(secret, other.workspace_id, body), body, "signature_invalid"),  # no secret there
        (signed("f" * 64, owner.workspace_id, body), body, "signature_invalid"),
        ({"X-Growthbase-Workspace": "not-a-uuid"}, body, "signature_invalid"),
        ({"X-Growthbase-Workspace": str(owner.workspace_id)}, body, "signature_missing"),
    ):
        answer = client.post("/api/v1/events", content=content, headers=headers)
        assert (answer.status_code, answer.json()["error"]["code"]) == (401, code), headers

    with acting_as(conn, owner):  # rotating: the old secret stops verifying
        conn.execute("select public.rotate_event_signing_secret(%s)", (owner.workspace_id,))
    answer = client.post(
        "/api/v1/events", content=body, headers=signed(secret, owner.workspace_id, body)
    )
    assert answer.json()["error"]["code"] == "signature_invalid"


def test_only_admins_rotate_the_signing_secret(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    stranger = create_user(conn)
    with refused(403, "insufficient_role"), acting_as(conn, member):
        conn.execute("select public.rotate_event_signing_secret(%s)", (owner.workspace_id,))
    with refused(404, "workspace_not_found"), acting_as(conn, stranger):
        conn.execute("select public.rotate_event_signing_secret(%s)", (owner.workspace_id,))
