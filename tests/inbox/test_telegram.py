"""Telegram end to end: connecting a bot registers its webhook with a fresh secret token,
updates are accepted only with that token and stored once per update_id, edits keep the text
they replace as revisions, and replies go out with sendMessage through the outbox. Payloads
follow core.telegram.org/bots/api (tests/fakes/telegram_server.py)."""

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
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import User, add_member, create_user, one
from tests.fakes.jwks import JwksServer
from tests.fakes.storage_server import SERVICE_KEY, serve_storage
from tests.fakes.telegram_server import (
    BOT_ID,
    TOKEN,
    TelegramServer,
    message_update,
    photo_update,
    serve_telegram,
)

Conn = psycopg.Connection[DictRow]
KEY = Fernet.generate_key().decode()
CRON = "cron-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def telegram() -> Iterator[TelegramServer]:
    with serve_telegram() as server:
        yield server


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer, telegram: TelegramServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        integrations_encryption_key=SecretStr(KEY),
        public_base_url="https://edge.example.test",
        telegram_api_url=telegram.base_url,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def connect(
    client: TestClient, jwks: JwksServer, user: User, telegram: TelegramServer
) -> tuple[str, str]:
    """Connects the fake's bot to the user's workspace; answers the channel id and the secret
    token Telegram was given."""
    answer = client.post(
        "/api/v1/inbox/channels/telegram",
        json={"workspace_id": str(user.workspace_id), "name": "Shop bot", "bot_token": TOKEN},
        headers=bearer(jwks, user),
    )
    assert answer.status_code == 201, answer.text
    registered = telegram.called("setWebhook")[-1]
    channel = answer.json()["data"]["channel"]["id"]
    assert registered["url"] == f"https://edge.example.test/api/v1/webhooks/telegram/{channel}"
    return channel, registered["secret_token"]


@pytest.fixture
def bot_free(conn: Conn) -> None:
    """One bot belongs to one workspace: free it from the previous test's."""
    conn.execute(
        "delete from public.channels where kind = 'telegram' and account_id = %s", (str(BOT_ID),)
    )


def post_update(
    client: TestClient, channel: str, secret: str | None, update: dict[str, Any]
) -> Any:
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret else {}
    return client.post(
        f"/api/v1/webhooks/telegram/{channel}", content=json.dumps(update), headers=headers
    )


def test_updates_need_the_secret_and_arrive_once_with_edits_as_revisions(
    conn: Conn, client: TestClient, jwks: JwksServer, telegram: TelegramServer, bot_free: None
) -> None:
    owner = create_user(conn)
    channel, secret = connect(client, jwks, owner, telegram)
    assert 1 <= len(secret) <= 256
    chat = random.randrange(10**8, 10**9)
    first = message_update(9000, chat, 77, "Where is my order 1001?")
    assert post_update(client, channel, "wrong", first).status_code == 401
    assert post_update(client, channel, None, first).status_code == 401
    assert post_update(client, str(uuid.uuid4()), secret, first).status_code == 401
    assert post_update(client, channel, secret, first).json()["data"] == {"outcome": "accepted"}
    assert post_update(client, channel, secret, first).json()["data"] == {"outcome": "duplicate"}
    edit = message_update(9001, chat, 77, "Where is my order 1002?", edited=True)
    assert post_update(client, channel, secret, edit).status_code == 200
    assert post_update(client, channel, secret, photo_update(9002, chat, 78)).status_code == 200
    assert (
        post_update(client, channel, secret, {"update_id": 9003, "poll": {"id": "1"}}).status_code
        == 200
    )
    assert post_update(client, channel, secret, {"message": {}}).status_code == 422

    rows = conn.execute(
        "select m.* from public.messages m where m.channel_id = %s"
        " order by provider_timestamp, provider_message_id",
        (channel,),
    ).fetchall()
    assert [(r["provider_message_id"], r["text"]) for r in rows] == [
        (f"{chat}:77", "Where is my order 1002?"),
        (f"{chat}:78", "The box arrived damaged"),
    ]
    assert rows[0]["edited_at"] is not None
    assert rows[1]["attachments"][0]["provider_media_id"] == "AgACAgQAAxkBAAIBsmZ-large"
    revisions = conn.execute(
        "select text from public.message_revisions where message_id = %s", (rows[0]["id"],)
    ).fetchall()
    assert [r["text"] for r in revisions] == ["Where is my order 1001?"]
    identity = one(
        conn,
        "select i.address, i.display_name from public.contact_identities i"
        " join public.conversations c on c.identity_id = i.id where c.channel_id = %s",
        (channel,),
    )
    assert identity == {"address": str(chat), "display_name": "Jana Nováková"}


def test_a_later_sent_message_delivered_first_lists_after_the_earlier_one(
    conn: Conn, client: TestClient, jwks: JwksServer, telegram: TelegramServer, bot_free: None
) -> None:
    """Telegram retries and parallel deliveries do not keep order: the conversation lists by
    the message's own date, keeps when each delivery arrived beside it, and its last message
    is the latest sent, whatever arrived last."""
    owner = create_user(conn)
    channel, secret = connect(client, jwks, owner, telegram)
    chat = random.randrange(10**8, 10**9)
    now = int(time.time())
    later = message_update(9101, chat, 82, "sent second", date=now - 60)
    earlier = message_update(9100, chat, 81, "sent first", date=now - 120)
    for update in (later, earlier):
        answer = post_update(client, channel, secret, update)
        assert answer.json()["data"] == {"outcome": "accepted"}, answer.text
    conn.execute("select private.apply_inbox_queue(500)")
    listed = conn.execute(
        "select text, provider_timestamp, received_at from public.messages where channel_id = %s"
        " order by provider_timestamp, id",
        (channel,),
    ).fetchall()
    assert [(r["text"], r["provider_timestamp"].timestamp()) for r in listed] == [
        ("sent first", now - 120),
        ("sent second", now - 60),
    ]
    assert listed[1]["received_at"] < listed[0]["received_at"]
    conversation = one(
        conn, "select last_message_at from public.conversations where channel_id = %s", (channel,)
    )
    assert conversation["last_message_at"].timestamp() == now - 60


def test_stop_in_a_chat_suppresses_that_chat_on_telegram_with_its_source(
    conn: Conn, client: TestClient, jwks: JwksServer, telegram: TelegramServer, bot_free: None
) -> None:
    """A verified update that is only an opt-out word ("STOP") lists the chat in the channel
    suppressions of kind telegram, with the message it came in and the word, and records the
    contact's telegram consent as withdrawn by that keyword; Telegram again delivering the
    same message keeps one record, a sentence with "stop" in it is a question, not an
    opt-out, and a message edited into "Stop." opts out as a new one does."""
    owner = create_user(conn)
    channel, secret = connect(client, jwks, owner, telegram)
    chat, asker = random.randrange(10**8, 10**9), random.randrange(10**8, 10**9)
    editor = random.randrange(10**8, 10**9)
    for update in (
        message_update(9200, chat, 31, "STOP"),
        message_update(9201, chat, 31, "STOP"),  # the same message in a second update
        message_update(9202, asker, 32, "Please stop the order"),
        message_update(9203, editor, 33, "Hello"),
    ):
        answer = post_update(client, channel, secret, update)
        assert answer.json()["data"] == {"outcome": "accepted"}, answer.text
    conn.execute("select private.apply_inbox_queue(500)")
    opted_out = conn.execute(
        "select s.kind, s.address, s.keyword, s.contact_id, m.text, m.provider_message_id"
        " from public.channel_suppressions s join public.messages m on m.id = s.source_message_id"
        " where s.workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert [dict(r) for r in opted_out] == [
        {
            "kind": "telegram",
            "address": str(chat),
            "keyword": "stop",
            "contact_id": opted_out[0]["contact_id"],
            "text": "STOP",
            "provider_message_id": f"{chat}:31",
        }
    ]
    identity = one(
        conn,
        "select contact_id from public.contact_identities"
        " where workspace_id = %s and kind = 'telegram' and address = %s",
        (owner.workspace_id, str(chat)),
    )
    assert opted_out[0]["contact_id"] == identity["contact_id"] is not None
    consents = conn.execute(
        "select purpose, status, source, source_detail from public.consents"
        " where workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert [dict(r) for r in consents] == [
        {
            "purpose": "telegram",
            "status": "withdrawn",
            "source": "inbox_keyword",
            "source_detail": "stop",
        }
    ]
    # "Hello" edited into "Stop.": an opt-out too, from that message.
    edited = message_update(9204, editor, 33, "Stop.", edited=True)
    assert post_update(client, channel, secret, edited).status_code == 200
    conn.execute("select private.apply_inbox_queue(500)")
    by_edit = one(
        conn,
        "select s.keyword, m.provider_message_id, m.text from public.channel_suppressions s"
        " join public.messages m on m.id = s.source_message_id"
        " where s.workspace_id = %s and s.kind = 'telegram' and s.address = %s",
        (owner.workspace_id, str(editor)),
    )
    assert by_edit == {"keyword": "stop", "provider_message_id": f"{editor}:33", "text": "Stop."}


def test_updates_of_other_kinds_are_stored_and_skipped_never_refused(
    conn: Conn, client: TestClient, jwks: JwksServer, telegram: TelegramServer, bot_free: None
) -> None:
    """Telegram retries any update it gets no 2xx for: a button press, a membership change, a
    bot's own message or a service message without content is acknowledged, stored and
    skipped, and no message or conversation comes of it."""
    owner = create_user(conn)
    channel, secret = connect(client, jwks, owner, telegram)
    chat = random.randrange(10**8, 10**9)
    from_bot = message_update(9301, chat, 31, "I am a bot")
    from_bot["message"]["from"]["is_bot"] = True
    service = message_update(9302, chat, 32, "")
    del service["message"]["text"]
    service["message"]["new_chat_title"] = "Renamed"
    updates = [
        {
            "update_id": 9300,
            "callback_query": {
                "id": "4382bfdwdsb323b2d9",
                "from": {"id": chat, "is_bot": False, "first_name": "Jana"},
                "data": "size:M",
                "chat_instance": "-1234",
            },
        },
        from_bot,
        service,
        {
            "update_id": 9303,
            "my_chat_member": {
                "chat": {"id": chat, "type": "private"},
                "from": {"id": chat, "is_bot": False, "first_name": "Jana"},
                "date": 1441645532,
                "old_chat_member": {"status": "member", "user": {"id": 1, "is_bot": True}},
                "new_chat_member": {"status": "kicked", "user": {"id": 1, "is_bot": True}},
            },
        },
    ]
    for update in updates:
        answer = post_update(client, channel, secret, update)
        assert answer.status_code == 200, answer.text
        assert answer.json()["data"] == {"outcome": "accepted"}
    outcomes = conn.execute(
        "select status, outcome from private.webhook_events where event_id like %s"
        " order by event_id",
        (f"{channel}:%",),
    ).fetchall()
    assert [(r["status"], r["outcome"]) for r in outcomes] == [
        ("ignored", "ignored:not_a_message"),
        ("ignored", "ignored:bot"),
        ("ignored", "ignored:no_content"),
        ("ignored", "ignored:not_a_message"),
    ]
    assert not conn.execute(
        "select 1 from public.conversations where channel_id = %s", (channel,)
    ).fetchall()


def test_replies_go_out_with_send_message_in_the_thread(
    conn: Conn, client: TestClient, jwks: JwksServer, telegram: TelegramServer, bot_free: None
) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    channel, secret = connect(client, jwks, owner, telegram)
    chat = random.randrange(10**8, 10**9)
    post_update(client, channel, secret, message_update(9100, chat, 12, "Hello?"))
    conversation = one(
        conn, "select id from public.conversations where channel_id = %s", (channel,)
    )["id"]
    url = f"/api/v1/inbox/conversations/{conversation}/messages"
    assert client.post(url, json={"text": "Hi!"}, headers=bearer(jwks, viewer)).status_code == 403
    answer = client.post(
        url, json={"text": "Hi Jana, it ships today."}, headers=bearer(jwks, owner)
    )
    assert answer.status_code == 201, answer.text
    data = answer.json()["data"]
    assert data["status"] == "sent" and data["provider_message_id"].startswith(f"{chat}:")
    assert telegram.called("sendMessage")[-1] == {
        "chat_id": chat,
        "text": "Hi Jana, it ships today.",
        "reply_parameters": {"message_id": 12, "allow_sending_without_reply": True},
    }
    telegram.failures[:] = [429]
    throttled = client.post(url, json={"text": "again"}, headers=bearer(jwks, owner)).json()["data"]
    assert throttled["status"] == "queued"
    waits = one(
        conn,
        "select next_attempt_at - now() as wait from private.inbox_outbox where message_id = %s",
        (throttled["id"],),
    )
    assert waits["wait"].total_seconds() >= 4
    telegram.failures[:] = [403]
    blocked = client.post(url, json={"text": "hello?"}, headers=bearer(jwks, owner)).json()["data"]
    assert (blocked["status"], blocked["error_code"]) == ("failed", "403")
    assert blocked["error_text"] == "Forbidden: bot was blocked by the user"
    # The bot's token revoked at BotFather: the reply fails with Telegram's reason, the channel
    # is marked revoked, and further replies are a clear 409 until it is reconnected.
    telegram.failures[:] = [401]
    refused_reply = client.post(url, json={"text": "still there?"}, headers=bearer(jwks, owner))
    assert refused_reply.status_code == 201, refused_reply.text
    revoked = refused_reply.json()["data"]
    assert (revoked["status"], revoked["error_code"]) == ("failed", "401")
    assert revoked["error_text"] == "Unauthorized"
    state = one(conn, "select status from public.channels where id = %s", (channel,))
    assert state["status"] == "revoked"
    closed = client.post(url, json={"text": "hello?"}, headers=bearer(jwks, owner))
    assert closed.status_code == 409, closed.text
    assert closed.json()["error"]["code"] == "channel_not_active"


def test_a_refused_token_is_a_422_and_the_same_bot_cannot_join_two_workspaces(
    conn: Conn, client: TestClient, jwks: JwksServer, telegram: TelegramServer, bot_free: None
) -> None:
    owner, other = create_user(conn), create_user(conn)
    bad = client.post(
        "/api/v1/inbox/channels/telegram",
        json={
            "workspace_id": str(owner.workspace_id),
            "name": "Bot",
            "bot_token": f"{BOT_ID}:AAH{'x' * 32}",
        },
        headers=bearer(jwks, owner),
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "telegram_token_invalid"
    connect(client, jwks, owner, telegram)
    taken = client.post(
        "/api/v1/inbox/channels/telegram",
        json={"workspace_id": str(other.workspace_id), "name": "Bot", "bot_token": TOKEN},
        headers=bearer(jwks, other),
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "channel_taken"


def media_cron(
    conn: Conn, database_url: str, jwks: JwksServer, telegram: TelegramServer
) -> dict[str, bytes]:
    """Runs cron/inbox against a local Storage until no attachment is due (each run takes 20,
    and other tests' may be queued first); answers the files stored in the bucket."""
    with serve_storage() as storage:
        settings = edge_settings(
            database_url,
            jwks,
            integrations_encryption_key=SecretStr(KEY),
            cron_secret=SecretStr(CRON),
            telegram_api_url=telegram.base_url,
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
        return {path: data for (bucket, path), data in storage.objects.items() if bucket == "inbox"}


def test_files_are_fetched_into_the_inbox_bucket_within_size_and_type_limits(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    telegram: TelegramServer,
    bot_free: None,
    database_url: str,
) -> None:
    owner = create_user(conn)
    channel, secret = connect(client, jwks, owner, telegram)
    chat = random.randrange(10**8, 10**9)
    photo, page, film = (f"BAAC{uuid.uuid4().hex}" for _ in range(3))
    telegram.files[photo] = b"\xff\xd8\xff\xe0 the damaged box"
    telegram.files[page] = b"<html><script>alert(1)</script></html>"
    telegram.files[film] = b"\x00\x00\x00\x18ftypmp42 pretend 30 MB"
    telegram.announced_sizes[film] = 30 * 1024 * 1024
    update = photo_update(9100, chat, 90)
    update["message"]["photo"][-1]["file_id"] = photo
    document = message_update(9101, chat, 91, "")
    del document["message"]["text"]
    document["message"]["document"] = {
        "file_id": page,
        "file_unique_id": "AgADpage",
        "file_name": "invoice.html",
        "mime_type": "text/html",
        "file_size": 38,
    }
    video = message_update(9102, chat, 92, "")
    del video["message"]["text"]
    video["message"]["video"] = {
        "file_id": film,
        "file_unique_id": "AgADfilm",
        "width": 1920,
        "height": 1080,
        "duration": 600,
        "mime_type": "video/mp4",
        "file_size": 30 * 1024 * 1024,
    }
    for each in (update, document, video):
        assert post_update(client, channel, secret, each).status_code == 200
    stored = media_cron(conn, database_url, jwks, telegram)
    rows = {
        r["attachments"][0]["provider_media_id"]: r
        for r in conn.execute(
            "select id, conversation_id, attachments from public.messages where channel_id = %s",
            (channel,),
        ).fetchall()
    }
    kept = rows[photo]
    path = f"{owner.workspace_id}/{kept['conversation_id']}/{kept['id']}/0-photo"
    assert kept["attachments"][0]["status"] == "stored"
    assert kept["attachments"][0]["storage_path"] == path
    assert stored[path] == b"\xff\xd8\xff\xe0 the damaged box"
    assert rows[page]["attachments"][0]["status"] == "refused"
    assert rows[film]["attachments"][0]["status"] == "too_large"
    mine = [p for p in stored if p.startswith(f"{owner.workspace_id}/")]
    assert mine == [path]
    refusal = one(
        conn,
        "select q.last_error from private.inbox_media_queue q where q.message_id = %s",
        (rows[page]["id"],),
    )
    assert refusal["last_error"] == "content type text/html is not kept"
