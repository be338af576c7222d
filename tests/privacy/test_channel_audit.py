"""Inbox channel changes through the edge are in the audit log with the admin who made them:
a re-connection that replaces an active channel's credentials, and a name or settings change,
never the secret or the values."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import User, acting_as, add_member, create_user, fund
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        integrations_encryption_key=SecretStr(Fernet.generate_key().decode()),
        public_base_url="https://edge.example.test",
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def audit(conn: Conn, reader: User, channel: str) -> list[dict[str, Any]]:
    with acting_as(conn, reader):
        rows = conn.execute(
            "select action, actor_id, details, request_id, to_jsonb(a)::text as everything"
            " from public.audit_log a where target_type = 'channel' and target_id = %s"
            " order by id",
            (channel,),
        ).fetchall()
    return [dict(r) for r in rows]


def test_recredentialing_an_active_whatsapp_channel_is_audited_with_its_admin(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    admin = add_member(conn, owner, "admin")
    number = str(uuid.uuid4().int % 10**15)
    body = {
        "workspace_id": str(owner.workspace_id),
        "name": "Support",
        "phone_number_id": number,
        "business_account_id": "102290129340398",
        "access_token": "EAAJB-first-" + uuid.uuid4().hex,
        "app_secret": "app-secret-first",
        "verify_token": "verify-token-first",
    }
    first = client.post("/api/v1/inbox/channels/whatsapp", json=body, headers=bearer(jwks, admin))
    assert first.status_code == 201, first.text
    channel = first.json()["data"]["channel"]["id"]
    rotated = {
        **body,
        "name": "Orders",
        "access_token": "EAAJB-second-" + uuid.uuid4().hex,
        "app_secret": "app-secret-second",
    }
    again = client.post(
        "/api/v1/inbox/channels/whatsapp", json=rotated, headers=bearer(jwks, owner)
    )
    assert again.status_code == 201, again.text
    assert again.json()["data"]["channel"]["id"] == channel

    log = audit(conn, owner, channel)
    assert [(e["action"], e["actor_id"], e["details"]) for e in log] == [
        ("channel.connected", admin.id, {"kind": "whatsapp"}),
        ("channel.updated", owner.id, {"kind": "whatsapp", "changed": ["name"]}),
        ("channel.credentials_changed", owner.id, {"kind": "whatsapp", "status": "active"}),
    ]
    assert all(e["request_id"] for e in log)
    # Never the secret, the old or the new one, nor the names.
    for secret in (*body.values(), *rotated.values()):
        if secret not in (str(owner.workspace_id), number, "102290129340398"):
            assert not any(secret in e["everything"] for e in log), secret


def test_an_email_channels_settings_change_names_the_fields_not_their_values(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    address = f"support@in-{uuid.uuid4().hex[:8]}.shop.example"

    def connect(**extra: Any) -> str:
        answer = client.post(
            "/api/v1/inbox/channels/email",
            json={
                "workspace_id": str(owner.workspace_id),
                "name": "Support",
                "address": address,
                **extra,
            },
            headers=bearer(jwks, owner),
        )
        assert answer.status_code == 201, answer.text
        return str(answer.json()["data"]["channel"]["id"])

    channel = connect()
    assert connect() == channel  # the same again: nothing changed, nothing recorded
    connect(join_window_hours=24, from_name="Jana from the shop")
    log = audit(conn, owner, channel)
    assert [(e["action"], e["actor_id"], e["details"]) for e in log] == [
        ("channel.connected", owner.id, {"kind": "email"}),
        (
            "channel.updated",
            owner.id,
            {"kind": "email", "changed": ["settings.from_name", "settings.join_window_hours"]},
        ),
    ]
    assert not any("Jana" in e["everything"] or address in e["everything"] for e in log)
