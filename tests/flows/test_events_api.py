"""POST /api/v1/events: a workspace API key, batches recorded whole or not at all, idempotent by
event id, and flows reacting in the same transaction."""

import json
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from api.app import create_app
from api.core.signatures import signature_headers
from tests.factories.edge import authorization, bearer, edge_settings
from tests.factories.email import add_contacts
from tests.factories.flows import create_flow, runs
from tests.factories.workspaces import acting_as, add_member, create_user, one
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[Any]
ENCRYPTION_KEY = Fernet.generate_key().decode()
CRON_SECRET = "cron-events-secret"


@pytest.fixture
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url, jwks, integrations_encryption_key=ENCRYPTION_KEY, cron_secret=CRON_SECRET
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def rotate(client: TestClient, jwks: JwksServer, user: Any, workspace_id: Any) -> Any:
    """POST /api/v1/events/signing-secret as `user`: the answer."""
    return client.post(
        "/api/v1/events/signing-secret",
        json={"workspace_id": str(workspace_id)},
        headers=bearer(jwks, user),
    )


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
    full = {"events": too_many["events"][:1000]}
    answer = client.post("/api/v1/events", json=full, headers=headers)
    assert answer.json()["data"] == {"recorded": 1000, "duplicates": 0}, answer.text

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
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    other = create_user(conn)
    [contact] = add_contacts(conn, owner, 1, prefix="signed")
    answer = rotate(client, jwks, owner, owner.workspace_id)
    assert answer.status_code == 201, answer.text
    secret = answer.json()["data"]["secret"]
    assert len(secret) == 64
    stored = one(
        conn,
        "select secret, secret_sealed from private.event_signing_secrets where workspace_id = %s",
        (owner.workspace_id,),
    )
    assert stored["secret"] is None and secret not in stored["secret_sealed"]  # sealed at rest
    assert Fernet(ENCRYPTION_KEY.encode()).decrypt(stored["secret_sealed"].encode()).decode() == (
        secret
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

    assert rotate(client, jwks, owner, owner.workspace_id).status_code == 201
    answer = client.post(  # rotated: the old secret stops verifying
        "/api/v1/events", content=body, headers=signed(secret, owner.workspace_id, body)
    )
    assert answer.json()["error"]["code"] == "signature_invalid"


def test_only_admins_rotate_the_signing_secret(
    conn: Conn, client: TestClient, jwks: JwksServer, database_url: str
) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    stranger = create_user(conn)
    for user, status, code in (
        (member, 403, "insufficient_role"),
        (stranger, 404, "workspace_not_found"),
    ):
        answer = rotate(client, jwks, user, owner.workspace_id)
        assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
    assert (
        one(
            conn,
            "select count(*) as n from private.event_signing_secrets where workspace_id = %s",
            (owner.workspace_id,),
        )["n"]
        == 0
    )
    unsigned = client.post("/api/v1/events/signing-secret", json={"workspace_id": "x"})
    assert unsigned.status_code == 401
    with TestClient(create_app(edge_settings(database_url, jwks))) as keyless:
        answer = rotate(keyless, jwks, owner, owner.workspace_id)
    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "provider_not_configured")


def test_secrets_stored_before_sealing_verify_until_the_cron_seals_them(
    conn: Conn, client: TestClient
) -> None:
    owner = create_user(conn)
    [contact] = add_contacts(conn, owner, 1, prefix="legacy")
    legacy = "a" * 64
    conn.execute(
        "insert into private.event_signing_secrets (workspace_id, secret) values (%s, %s)",
        (owner.workspace_id, legacy),
    )
    body = json.dumps(
        {"events": [{"id": "l-1", "name": "signed_up", "contact": {"id": str(contact)}}]}
    ).encode()
    headers = signed(legacy, owner.workspace_id, body)
    assert client.post("/api/v1/events", content=body, headers=headers).status_code == 200

    cron = client.get("/api/v1/cron/flows", headers=authorization(CRON_SECRET))
    assert cron.status_code == 200, cron.text
    assert cron.json()["data"]["sealed_secrets"] >= 1
    stored = one(
        conn,
        "select secret, secret_sealed from private.event_signing_secrets where workspace_id = %s",
        (owner.workspace_id,),
    )
    assert stored["secret"] is None and stored["secret_sealed"]
    again = signed(legacy, owner.workspace_id, body)  # the same secret, now opened
    answer = client.post("/api/v1/events", content=body, headers=again)
    assert answer.json()["data"] == {"recorded": 0, "duplicates": 1}
