"""X direct messages: off until a workspace connects an account; the CRC is answered with the
consumer-secret HMAC only for X's token shape; deliveries are verified, stored once and
applied (the account's own DMs skipped); replies go out as DMs. Payloads follow X's docs
(tests/fakes/x_server.py)."""

import base64
import hashlib
import hmac
import json
import random
import time
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
from api.inbox.x.client import XClient, XError
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import User, acting_as, create_user, one
from tests.fakes.jwks import JwksServer
from tests.fakes.storage_server import SERVICE_KEY, serve_storage
from tests.fakes.x_server import TOKEN, XServer, dm_delivery, serve_x, x_signature

Conn = psycopg.Connection[DictRow]
KEY = Fernet.generate_key().decode()
CRON = "cron-" + uuid.uuid4().hex
CONSUMER_SECRET = "consumer-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def x_api() -> Iterator[XServer]:
    with serve_x() as server:
        yield server


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer, x_api: XServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        integrations_encryption_key=SecretStr(KEY),
        public_base_url="https://edge.example.test",
        x_api_url=x_api.base_url,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def account(conn: Conn, x_api: XServer) -> str:
    """A fresh account id for the fake, so each test connects its own."""
    x_api.account_id = str(random.randrange(10**9, 10**10))
    return x_api.account_id


def connect(client: TestClient, jwks: JwksServer, user: User) -> str:
    answer = client.post(
        "/api/v1/inbox/channels/x",
        json={
            "workspace_id": str(user.workspace_id),
            "name": "@shop",
            "access_token": TOKEN,
            "consumer_secret": CONSUMER_SECRET,
        },
        headers=bearer(jwks, user),
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["channel"]["id"])


def deliver(
    client: TestClient, channel: str, body: dict[str, Any], secret: str = CONSUMER_SECRET
) -> Any:
    raw = json.dumps(body).encode()
    return client.post(
        f"/api/v1/webhooks/x/{channel}",
        content=raw,
        headers={"x-twitter-webhooks-signature": x_signature(secret, raw)},
    )


def test_off_until_connected_then_crc_and_signed_dms(
    conn: Conn, client: TestClient, jwks: JwksServer, account: str
) -> None:
    unknown = uuid.uuid4()
    assert (
        client.get(
            f"/api/v1/webhooks/x/{unknown}", params={"crc_token": "abcdefgh1234"}
        ).status_code
        == 401
    )
    assert (
        deliver(
            client, str(unknown), dm_delivery("3001969357", "hi", for_user_id=account)
        ).status_code
        == 401
    )
    owner = create_user(conn)
    channel = connect(client, jwks, owner)
    crc = client.get(f"/api/v1/webhooks/x/{channel}", params={"crc_token": "9b4507b0-crc_Token"})
    expected = base64.b64encode(
        hmac.new(CONSUMER_SECRET.encode(), b"9b4507b0-crc_Token", hashlib.sha256).digest()
    ).decode()
    assert crc.json() == {"response_token": f"sha256={expected}"}
    # A body as crc_token would let anyone sign deliveries through the CRC: refused.
    body = json.dumps(dm_delivery("3001969357", "forged", for_user_id=account))
    assert (
        client.get(f"/api/v1/webhooks/x/{channel}", params={"crc_token": body}).status_code == 422
    )

    delivery = dm_delivery("3001969357", "Do you ship to Brno?", for_user_id=account)
    assert deliver(client, channel, delivery, secret="wrong").status_code == 401
    assert deliver(client, channel, delivery).json()["data"] == {"outcome": "accepted"}
    assert deliver(client, channel, delivery).json()["data"] == {"outcome": "duplicate"}
    own = dm_delivery(account, "Our own DM", for_user_id=account)
    assert deliver(client, channel, own).status_code == 200
    follow = {"for_user_id": account, "follow_events": [{"type": "follow"}]}
    assert deliver(client, channel, follow).json()["data"] == {"outcome": "ignored"}
    rows = conn.execute(
        "select m.text, i.address, i.display_name from public.messages m"
        " join public.conversations c on c.id = m.conversation_id"
        " join public.contact_identities i on i.id = c.identity_id where m.channel_id = %s",
        (channel,),
    ).fetchall()
    assert [dict(r) for r in rows] == [
        {"text": "Do you ship to Brno?", "address": "3001969357", "display_name": "Jordan Brinks"}
    ]


def test_dms_list_by_their_own_time_whatever_the_arrival_order(
    conn: Conn, client: TestClient, jwks: JwksServer, account: str
) -> None:
    """A DM sent later but delivered first lists after the earlier one, and the conversation's
    last message is the latest sent; a DM stamped by a broken clock (year 5138) is kept, timed
    by when it arrived."""
    owner = create_user(conn)
    channel = connect(client, jwks, owner)
    now_ms = int(time.time()) * 1000
    sent = {"sent second": now_ms - 60_000, "sent first": now_ms - 120_000}
    for text, at in [*sent.items(), ("year 5138", 99_999_999_999_000)]:
        delivery = dm_delivery("3001969357", text, for_user_id=account)
        delivery["direct_message_events"][0]["created_timestamp"] = str(at)
        assert deliver(client, channel, delivery).json()["data"] == {"outcome": "accepted"}
    conn.execute("select private.apply_inbox_queue(500)")
    with acting_as(conn, owner):
        listed = conn.execute(
            "select text, provider_timestamp, received_at from public.messages"
            " where channel_id = %s order by provider_timestamp, id",
            (channel,),
        ).fetchall()
        conversation = one(
            conn,
            "select last_message_at from public.conversations where channel_id = %s",
            (channel,),
        )
    assert [r["text"] for r in listed] == ["sent first", "sent second", "year 5138"]
    assert [r["provider_timestamp"].timestamp() * 1000 for r in listed[:2]] == [
        now_ms - 120_000,
        now_ms - 60_000,
    ]
    assert listed[1]["received_at"] < listed[0]["received_at"]
    assert listed[2]["provider_timestamp"] == listed[2]["received_at"]
    assert conversation["last_message_at"] == listed[2]["received_at"]


def test_unsubscribe_in_a_dm_suppresses_that_sender_on_x_with_its_source(
    conn: Conn, client: TestClient, jwks: JwksServer, account: str
) -> None:
    """A signed delivery whose DM is only an opt-out word ("Unsubscribe.") lists the sender in
    the channel suppressions of kind x, with the DM it came in and the word, and records the
    contact's x consent as withdrawn by that keyword; X redelivering it keeps one record, and
    a sentence with "unsubscribe" in it is a question, not an opt-out."""
    owner = create_user(conn)
    channel = connect(client, jwks, owner)
    sender, asker = str(random.randrange(10**9, 10**10)), str(random.randrange(10**9, 10**10))
    opt_out = dm_delivery(sender, "Unsubscribe.", for_user_id=account)
    question = dm_delivery(asker, "How do I unsubscribe from the newsletter?", for_user_id=account)
    for body in (opt_out, opt_out, question):
        assert deliver(client, channel, body).status_code == 200
    conn.execute("select private.apply_inbox_queue(500)")
    opted_out = conn.execute(
        "select s.kind, s.address, s.keyword, s.contact_id, m.text, m.provider_message_id"
        " from public.channel_suppressions s join public.messages m on m.id = s.source_message_id"
        " where s.workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert [dict(r) for r in opted_out] == [
        {
            "kind": "x",
            "address": sender,
            "keyword": "unsubscribe",
            "contact_id": opted_out[0]["contact_id"],
            "text": "Unsubscribe.",
            "provider_message_id": opt_out["direct_message_events"][0]["id"],
        }
    ]
    identity = one(
        conn,
        "select contact_id from public.contact_identities"
        " where workspace_id = %s and kind = 'x' and address = %s",
        (owner.workspace_id, sender),
    )
    assert opted_out[0]["contact_id"] == identity["contact_id"] is not None
    consents = conn.execute(
        "select purpose, status, source, source_detail from public.consents"
        " where workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert [dict(r) for r in consents] == [
        {
            "purpose": "x",
            "status": "withdrawn",
            "source": "inbox_keyword",
            "source_detail": "unsubscribe",
        }
    ]


def test_replies_go_out_as_dms_and_errors_are_kept(
    conn: Conn, client: TestClient, jwks: JwksServer, x_api: XServer, account: str
) -> None:
    owner = create_user(conn)
    channel = connect(client, jwks, owner)
    deliver(client, channel, dm_delivery("3001969357", "Hello?", for_user_id=account))
    conversation = one(
        conn, "select id from public.conversations where channel_id = %s", (channel,)
    )["id"]
    url = f"/api/v1/inbox/conversations/{conversation}/messages"
    sent = client.post(url, json={"text": "Yes, we do."}, headers=bearer(jwks, owner)).json()[
        "data"
    ]
    assert sent["status"] == "sent" and sent["provider_message_id"]
    assert x_api.sent[-1] == ("3001969357", {"text": "Yes, we do."})
    x_api.failures[:] = [429]
    throttled = client.post(url, json={"text": "again"}, headers=bearer(jwks, owner)).json()["data"]
    assert throttled["status"] == "queued"
    x_api.failures[:] = [403]
    refused = client.post(url, json={"text": "hello"}, headers=bearer(jwks, owner)).json()["data"]
    assert (refused["status"], refused["error_code"]) == ("failed", "403")
    assert "not permitted" in refused["error_text"]
    x_api.failures[:] = [401]
    client.post(url, json={"text": "hello"}, headers=bearer(jwks, owner))
    assert (
        one(conn, "select status from public.channels where id = %s", (channel,))["status"]
        == "revoked"
    )


def test_erasing_a_sender_with_a_long_x_id_removes_their_stored_deliveries(
    conn: Conn, client: TestClient, jwks: JwksServer, account: str
) -> None:
    owner = create_user(conn)
    channel = connect(client, jwks, owner)
    sender = "1605219383841071104"  # 19 digits, as X's newer user ids are
    delivery = dm_delivery(sender, "Please forget me", for_user_id=account)
    assert deliver(client, channel, delivery).json()["data"] == {"outcome": "accepted"}
    stored = "select count(*) as n from private.webhook_events where body like %s"
    assert one(conn, stored, (f"%{sender}%",))["n"] == 1
    contact = one(
        conn,
        "select contact_id from public.contact_identities where kind = 'x' and address = %s",
        (sender,),
    )["contact_id"]
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact,))
    assert one(conn, stored, (f"%{sender}%",))["n"] == 0


def test_dm_media_is_fetched_into_the_inbox_bucket_and_pages_are_refused(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    x_api: XServer,
    account: str,
    database_url: str,
) -> None:
    owner = create_user(conn)
    channel = connect(client, jwks, owner)
    sent: dict[str, str] = {}
    for name, data, content_type in (
        ("photo.jpg", b"\xff\xd8\xff\xe0 a receipt", "image/jpeg"),
        ("photo.png", b"<svg onload='alert(1)'/>", "image/png"),
    ):
        path = f"/1.1/ton/data/dm/{uuid.uuid4().int % 10**18}/{uuid.uuid4().hex[:8]}/{name}"
        x_api.media[path] = (data, content_type)
        media_id = str(uuid.uuid4().int % 10**18)
        delivery = dm_delivery("3001969357", "", for_user_id=account)
        delivery["direct_message_events"][0]["message_create"]["message_data"]["attachment"] = {
            "type": "media",
            "media": {
                "id": int(media_id),
                "id_str": media_id,
                "media_url_https": f"{x_api.base_url}{path}",
                "type": "photo",
            },
        }
        assert deliver(client, channel, delivery).status_code == 200
        sent[name] = media_id
    with serve_storage() as storage:
        settings = edge_settings(
            database_url,
            jwks,
            integrations_encryption_key=SecretStr(KEY),
            cron_secret=SecretStr(CRON),
            x_api_url=x_api.base_url,
            supabase_service_key=SecretStr(SERVICE_KEY),
            supabase_storage_url=storage.base_url,
        )
        with TestClient(create_app(settings)) as edge:
            while one(
                conn,
                "select count(*) as n from private.inbox_media_queue"
                " where status = 'pending' and next_attempt_at <= now()",
            )["n"]:
                answer = edge.get("/api/v1/cron/inbox", headers={"Authorization": f"Bearer {CRON}"})
                assert answer.status_code == 200, answer.text
        stored = {p: d for (bucket, p), d in storage.objects.items() if bucket == "inbox"}
    rows = {
        r["attachments"][0]["provider_media_id"]: r
        for r in conn.execute(
            "select id, conversation_id, attachments from public.messages where channel_id = %s",
            (channel,),
        ).fetchall()
    }
    kept = rows[sent["photo.jpg"]]
    path = f"{owner.workspace_id}/{kept['conversation_id']}/{kept['id']}/0-photo"
    assert kept["attachments"][0]["status"] == "stored"
    assert stored[path] == b"\xff\xd8\xff\xe0 a receipt"
    # Served as a PNG, but no PNG: never stored.
    assert rows[sent["photo.png"]]["attachments"][0]["status"] == "refused"
    assert [p for p in stored if p.startswith(f"{owner.workspace_id}/")] == [path]


def test_media_is_asked_only_of_xs_media_host() -> None:
    """The account's token goes to ton.twitter.com (or the configured API), never to a host a
    delivery names."""
    api = XClient("https://api.x.com", timeout_seconds=1)
    for url in ("https://evil.example/ton/photo.jpg", "https://ton.twitter.com.evil.example/a.jpg"):
        with pytest.raises(XError) as refused_url:
            api.media(url, TOKEN, 1024)
        assert refused_url.value.status == 400
