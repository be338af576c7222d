"""WhatsApp end to end: Meta's verification handshake, signed webhooks stored once and applied
into conversations, statuses that only move forward however they arrive, replies through the
outbox inside the 24-hour window (templates outside it), and Meta's errors kept and shown.
Payloads follow Meta's documented shapes (tests/fakes/whatsapp_server.py)."""

import hashlib
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg.rows import DictRow, dict_row
from pydantic import SecretStr

from api.app import create_app
from tests.factories.edge import bearer, edge_settings
from tests.factories.inbox import (
    APP_SECRET,
    VERIFY_TOKEN,
    account_id,
    apply_whatsapp,
    whatsapp_channel,
    whatsapp_conversation,
)
from tests.factories.webhook_events import put_off_due_webhook_events
from tests.factories.workspaces import (
    acting_as,
    add_member,
    create_user,
    fund,
    one,
    refused,
    wait_until_blocked,
)
from tests.fakes.jwks import JwksServer
from tests.fakes.storage_server import SERVICE_KEY, serve_storage
from tests.fakes.whatsapp_server import (
    GraphServer,
    hub_signature,
    image_message,
    inbound,
    serve_whatsapp,
    status,
    statuses,
    template,
    text_message,
)

Conn = psycopg.Connection[DictRow]
KEY = Fernet.generate_key().decode()
CRON = "cron-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def graph() -> Iterator[GraphServer]:
    with serve_whatsapp() as server:
        yield server


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer, graph: GraphServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        integrations_encryption_key=SecretStr(KEY),
        public_base_url="https://edge.example.test",
        cron_secret=SecretStr(CRON),
        whatsapp_graph_url=graph.base_url,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def post_webhook(
    client: TestClient, channel: uuid.UUID, body: dict[str, Any], secret: str = APP_SECRET
) -> Any:
    raw = json.dumps(body).encode()
    return client.post(
        f"/api/v1/webhooks/whatsapp/{channel}",
        content=raw,
        headers={
            "X-Hub-Signature-256": hub_signature(secret, raw),
            "Content-Type": "application/json",
        },
    )


def wa_id() -> str:
    return "4206" + str(random.randrange(10**8)).zfill(8)


def messages_of(conn: Conn, conversation: uuid.UUID) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            "select * from public.messages where conversation_id = %s"
            " order by provider_timestamp, id",
            (conversation,),
        ).fetchall()
    ]


# verification and intake -------------------------------------------------------------------


def test_meta_verification_echoes_the_challenge_only_for_the_channels_token(
    conn: Conn, client: TestClient
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    url = f"/api/v1/webhooks/whatsapp/{channel}"
    query = {
        "hub.mode": "subscribe",
        "hub.verify_token": VERIFY_TOKEN,
        "hub.challenge": "1158201444",
    }
    answer = client.get(url, params=query)
    assert answer.status_code == 200
    assert answer.text == "1158201444" and answer.headers["content-type"].startswith("text/plain")
    for wrong in ({"hub.verify_token": "guess"}, {"hub.mode": "unsubscribe"}):
        refused_answer = client.get(url, params={**query, **wrong})
        assert refused_answer.status_code == 403
        assert refused_answer.json()["error"]["code"] == "verify_token_invalid"
    unknown = client.get(f"/api/v1/webhooks/whatsapp/{uuid.uuid4()}", params=query)
    assert unknown.status_code == 403


def test_a_signed_message_opens_a_conversation_once_however_often_it_comes(
    conn: Conn, client: TestClient
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    first = text_message(sender, "Does it come in another color?", timestamp=1749416383)
    body = inbound(sender, [first], phone_number_id=account_id(conn, channel))
    first_answer = post_webhook(client, channel, body)
    assert first_answer.json()["data"] == {"outcome": "accepted"}, first_answer.text
    assert post_webhook(client, channel, body).json()["data"] == {"outcome": "duplicate"}
    # The same message again in another delivery (with a new one beside it): still one row.
    second = image_message(sender, timestamp=1749416390)
    again = inbound(sender, [second, first], phone_number_id=account_id(conn, channel))
    assert post_webhook(client, channel, again).json()["data"] == {"outcome": "accepted"}

    conversation = one(
        conn,
        "select c.*, i.address, i.display_name, i.contact_id as identity_contact"
        " from public.conversations c join public.contact_identities i on i.id = c.identity_id"
        " where c.channel_id = %s",
        (channel,),
    )
    assert conversation["address"] == sender and conversation["display_name"] == "Sheena Nelson"
    contact = one(
        conn, "select * from public.contacts where id = %s", (conversation["contact_id"],)
    )
    assert contact["phone"] == "+" + sender and contact["first_name"] == "Sheena Nelson"
    rows = messages_of(conn, conversation["id"])
    assert [r["text"] for r in rows] == ["Does it come in another color?", "Like this one"]
    assert all(r["direction"] == "inbound" and r["status"] == "received" for r in rows)
    assert rows[1]["attachments"] == [
        {
            "kind": "image",
            "provider_media_id": "1003383421387256",
            "mime_type": "image/jpeg",
            "sha256": "u3N6nB5Pqv1xD0l9ZbKk5Hn7vG1jTq2q5X4iYq2YpLw=",
        }
    ]
    assert rows[0]["provider_timestamp"].timestamp() == 1749416383
    assert (conversation["message_count"], conversation["inbound_count"]) == (2, 2)
    assert conversation["status"] == "open"
    # Broadcast on the workspace's inbox channel: ids and states, never the text.
    broadcasts = conn.execute(
        "select payload from realtime.messages where topic = %s and event = 'message_created'",
        (f"workspace:{owner.workspace_id}:inbox",),
    ).fetchall()
    assert len(broadcasts) == 2
    assert all("text" not in b["payload"] for b in broadcasts)


def store_whatsapp(conn: Conn, channel: uuid.UUID, body: dict[str, Any]) -> uuid.UUID:
    """Stores a delivery as the webhook does before it answers (not applied yet)."""
    raw = json.dumps(body)
    return uuid.UUID(
        str(
            one(
                conn,
                "select id from private.record_webhook_event('whatsapp', %s, %s)",
                (f"{channel}:{hashlib.sha256(raw.encode()).hexdigest()}", raw),
            )["id"]
        )
    )


@pytest.fixture
def no_other_deliveries(conn: Conn) -> None:
    """Every WhatsApp, Telegram and X delivery other tests left stored and unapplied in the
    worker's database is put off for ever: the drain applies every workspace's due deliveries
    and answers how many, so another test's would count in it and join this test's set; and the
    replay takes each provider's 50 due longest ago, so fifty such leftovers ahead of this
    test's delivery left it unreplayed (proven with 51 run first)."""
    put_off_due_webhook_events(conn, ["whatsapp", "telegram", "x"])


def test_deliveries_stored_together_are_applied_together_and_a_bad_one_alone(
    conn: Conn, client: TestClient, database_url: str, no_other_deliveries: None
) -> None:
    """The answer only stores; the drain after it applies everything stored as one set (one
    transaction, no subtransaction: the same xmin on every message), a message repeated across
    deliveries once, the counters and broadcasts as if each came alone. When a delivery fails
    the set, each is applied on its own: the bad one is counted, the others go through. One
    drain runs at a time: another finds it busy and leaves its deliveries to it."""
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    number = account_id(conn, channel)
    first, second = wa_id(), wa_id()
    repeated = text_message(first, "Is it in stock?", timestamp=1749416383)
    together = [
        inbound(first, [repeated], phone_number_id=number),
        inbound(first, [repeated, text_message(first, "In blue?", 1749416390)], "S", number),
        inbound(second, [text_message(second, "Hello?", 1749416400)], "T", number),
    ]
    events = [store_whatsapp(conn, channel, body) for body in together]
    assert one(conn, "select private.apply_inbox_queue(500) as n")["n"] == 3
    rows = conn.execute(
        "select m.text, i.address, c.inbound_count, m.xmin::text as tx from public.messages m"
        " join public.conversations c on c.id = m.conversation_id"
        " join public.contact_identities i on i.id = c.identity_id"
        " where m.channel_id = %s order by m.provider_timestamp",
        (channel,),
    ).fetchall()
    assert [(r["address"], r["text"], r["inbound_count"]) for r in rows] == [
        (first, "Is it in stock?", 2),
        (first, "In blue?", 2),
        (second, "Hello?", 1),
    ]
    assert len({r["tx"] for r in rows}) == 1
    broadcasts = one(
        conn,
        "select count(*) as n from realtime.messages"
        " where topic = %s and event = 'message_created'",
        (f"workspace:{owner.workspace_id}:inbox",),
    )
    assert broadcasts["n"] == 3

    bad = store_whatsapp(
        conn, channel, inbound(second, [text_message(second, "refuse-me")], "T", number)
    )
    good = store_whatsapp(
        conn, channel, inbound(second, [text_message(second, "Still there?")], "T", number)
    )
    conn.execute(
        "create function public.test_refuse_marker() returns trigger language plpgsql as"
        " $$begin if new.text = 'refuse-me' then raise exception 'refused'; end if;"
        " return new; end$$"
    )
    conn.execute(
        "create trigger test_refuse_marker before insert on public.messages"
        " for each row execute function public.test_refuse_marker()"
    )
    try:
        assert one(conn, "select private.apply_inbox_queue(500) as n")["n"] == 2
    finally:
        conn.execute("drop trigger test_refuse_marker on public.messages")
        conn.execute("drop function public.test_refuse_marker()")
    states = {
        r["id"]: (r["status"], r["attempts"])
        for r in conn.execute(
            "select id, status, attempts from private.webhook_events where id = any(%s)",
            ([*events, bad, good],),
        ).fetchall()
    }
    assert [states[e] for e in [*events, bad, good]] == [("applied", 0)] * 3 + [
        ("received", 1),
        ("applied", 0),
    ]
    with psycopg.connect(database_url) as running:
        running.execute("select private.apply_inbox_queue(1)")
        assert one(conn, "select private.apply_inbox_queue(500) as n")["n"] == -1
    # Through the webhook: stored before the answer, applied by the drain that follows it.
    body = inbound(first, [text_message(first, "Any news?")], phone_number_id=number)
    assert post_webhook(client, channel, body).json()["data"] == {"outcome": "accepted"}
    written = one(
        conn,
        "select c.inbound_count from public.messages m"
        " join public.conversations c on c.id = m.conversation_id"
        " where m.channel_id = %s and m.text = 'Any news?'",
        (channel,),
    )
    assert written["inbound_count"] == 3


def test_an_apply_that_fails_keeps_the_delivery_for_the_replay(
    conn: Conn, client: TestClient
) -> None:
    """A failing apply is rolled back on its own: the delivery stays stored, its failure is
    counted (the error's code only), Meta gets its 200, and the replay applies it later."""
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    marker = f"fail-{uuid.uuid4().hex}"
    body = inbound(
        sender, [text_message(sender, marker)], phone_number_id=account_id(conn, channel)
    )
    conn.execute(
        "create function public.test_refuse_marker() returns trigger language plpgsql as"
        f" $$begin if new.text = '{marker}' then raise exception 'refused'; end if;"
        " return new; end$$"
    )
    conn.execute(
        "create trigger test_refuse_marker before insert on public.messages"
        " for each row execute function public.test_refuse_marker()"
    )
    try:
        answer = post_webhook(client, channel, body)
    finally:
        conn.execute("drop trigger test_refuse_marker on public.messages")
        conn.execute("drop function public.test_refuse_marker()")
    assert answer.status_code == 200 and answer.json()["data"] == {"outcome": "accepted"}
    stored = one(
        conn,
        "select id, status, attempts, last_error from private.webhook_events"
        " where event_id like %s",
        (f"{channel}:%",),
    )
    assert (stored["status"], stored["attempts"], stored["last_error"]) == (
        "received",
        1,
        "sql P0001",
    )
    assert not conn.execute(
        "select 1 from public.messages where channel_id = %s", (channel,)
    ).fetchall()
    conn.execute(
        "update private.webhook_events set received_at = now() - interval '10 minutes',"
        " next_attempt_at = now() - interval '1 minute' where id = %s",
        (stored["id"],),
    )
    replay = client.get("/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"})
    assert replay.status_code == 200, replay.text
    applied = one(conn, "select text from public.messages where channel_id = %s", (channel,))
    assert applied["text"] == marker
    # Meta's retry of the same bytes is a duplicate now.
    assert post_webhook(client, channel, body).json()["data"] == {"outcome": "duplicate"}


@pytest.mark.usefixtures("no_other_deliveries")
def test_one_drain_is_scheduled_at_a_time_and_the_replay_applies_what_a_dead_edge_left(
    conn: Conn, client: TestClient
) -> None:
    """The store answers whether its request runs the next drain: the first delivery once the
    scheduled drain is due schedules the next one; deliveries stored before it is due are left
    to it, and a duplicate schedules nothing. When the edge that scheduled it stops after
    answering, its drain never runs, and nothing is lost: Meta had its 200, the delivery stays
    stored, and the replay cron applies it."""
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    number = account_id(conn, channel)
    body = inbound(sender, [text_message(sender, "Hello?")], phone_number_id=number)
    store = "select duplicate, drain from private.store_inbox_delivery('whatsapp', %s, %s, %s, %s)"
    try:
        conn.execute("update private.inbox_drain_schedule set due_at = 'epoch'")
        first, second = (
            one(conn, store, (f"{channel}:{n}", json.dumps(body), owner.workspace_id, 3600))
            for n in ("first", "second")
        )
        assert (first["duplicate"], first["drain"]) == (False, True)
        assert (second["duplicate"], second["drain"]) == (False, False)
        conn.execute(
            "update private.webhook_events set status = 'ignored' where event_id = any(%s)",
            ([f"{channel}:first", f"{channel}:second"],),
        )
        conn.execute("update private.inbox_drain_schedule set due_at = 'epoch'")
        again = one(conn, store, (f"{channel}:first", json.dumps(body), owner.workspace_id, 3600))
        assert (again["duplicate"], again["drain"]) == (True, False)
        conn.execute("update private.inbox_drain_schedule set due_at = now() + interval '1 hour'")
        # The edge that scheduled that drain stops here, before running it.
        assert post_webhook(client, channel, body).json()["data"] == {"outcome": "accepted"}
        assert not conn.execute(
            "select 1 from public.messages where channel_id = %s", (channel,)
        ).fetchall()
    finally:
        conn.execute("update private.inbox_drain_schedule set due_at = 'epoch'")
    conn.execute(
        "update private.webhook_events set received_at = now() - interval '2 minutes'"
        " where event_id like %s",
        (f"{channel}:%",),
    )
    replay = client.get("/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"})
    assert replay.status_code == 200, replay.text
    applied = one(conn, "select text from public.messages where channel_id = %s", (channel,))
    assert applied["text"] == "Hello?"
    assert post_webhook(client, channel, body).json()["data"] == {"outcome": "duplicate"}


def test_a_drain_waits_for_the_stores_that_left_their_delivery_to_it(
    conn: Conn, database_url: str
) -> None:
    """A store decides before it commits; a delivery left to the scheduled drain may still be
    committing when that drain claims. The drain waits for such stores, so it takes their
    deliveries instead of leaving them to the replay cron."""
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    body = inbound(
        sender, [text_message(sender, "Late?")], phone_number_id=account_id(conn, channel)
    )
    taken: list[int] = []
    with psycopg.connect(database_url) as storing:
        conn.execute("update private.inbox_drain_schedule set due_at = now() + interval '1 hour'")
        try:
            row = storing.execute(
                "select drain from private.store_inbox_delivery('whatsapp', %s, %s, %s, 0)",
                (f"{channel}:late", json.dumps(body), owner.workspace_id),
            ).fetchone()
            assert row is not None and row[0] is False
        finally:
            conn.execute("update private.inbox_drain_schedule set due_at = 'epoch'")

        draining = psycopg.connect(database_url, autocommit=True)

        def drain() -> None:
            row = draining.execute("select private.apply_inbox_queue(500)").fetchone()
            taken.append(row[0] if row else 0)

        thread = threading.Thread(target=drain)
        thread.start()
        # The drain is waiting for this store's transaction, not done without its delivery.
        wait_until_blocked(conn, draining.info.backend_pid)
        storing.commit()
        thread.join(timeout=30)
        draining.close()
    assert taken and taken[0] >= 1
    applied = one(conn, "select text from public.messages where channel_id = %s", (channel,))
    assert applied["text"] == "Late?"


def test_messages_list_by_the_providers_timestamp_with_their_arrival_kept_beside_it(
    conn: Conn, client: TestClient
) -> None:
    """Meta does not promise order: a message sent later can arrive first. The conversation
    lists by the provider's timestamp (the earlier-sent message first) and keeps when each
    arrived beside it, also when both are applied in one set and when the replay cron applies
    one later; the conversation's last inbound message is the latest sent, whatever arrived
    last."""
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    number = account_id(conn, channel)
    sender = wa_id()
    sent = {"earlier": 1749416383, "between": 1749416400, "later": 1749416450}
    bodies = {
        name: inbound(sender, [text_message(sender, name, timestamp=at)], phone_number_id=number)
        for name, at in sent.items()
    }
    # A drain is scheduled and not due yet: what arrives meanwhile waits for it, as one set.
    conn.execute("update private.inbox_drain_schedule set due_at = now() + interval '1 hour'")
    try:
        for name in ("later", "earlier", "between"):
            answer = post_webhook(client, channel, bodies[name])
            assert answer.json()["data"] == {"outcome": "accepted"}, answer.text
    finally:
        conn.execute("update private.inbox_drain_schedule set due_at = 'epoch'")
    arrived = {
        json.loads(r["body"])["entry"][0]["changes"][0]["value"]["messages"][0]["text"]["body"]: r
        for r in conn.execute(
            "select id, body, received_at from private.webhook_events where event_id like %s",
            (f"{channel}:%",),
        ).fetchall()
    }
    # The one sent in between is left to the replay cron (as when its drain's edge stopped):
    # not due for the drain, then a few minutes old.
    between = arrived["between"]["id"]
    conn.execute(
        "update private.webhook_events set next_attempt_at = now() + interval '1 hour'"
        " where id = %s",
        (between,),
    )
    conn.execute("select private.apply_inbox_queue(500)")
    replayed_at = one(
        conn,
        "update private.webhook_events set next_attempt_at = null,"
        " received_at = received_at - interval '2 minutes' where id = %s returning received_at",
        (between,),
    )["received_at"]
    replay = client.get("/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"})
    assert replay.status_code == 200, replay.text
    with acting_as(conn, owner):
        listed = conn.execute(
            "select m.text, m.provider_timestamp, m.received_at from public.messages m"
            " join public.conversations c on c.id = m.conversation_id"
            " where c.channel_id = %s order by m.provider_timestamp, m.id",
            (channel,),
        ).fetchall()
        conversation = one(
            conn,
            "select last_inbound_at, inbound_count from public.conversations where channel_id = %s",
            (channel,),
        )
    assert [(r["text"], r["provider_timestamp"].timestamp()) for r in listed] == [
        (name, float(at)) for name, at in sent.items()
    ]
    received = {r["text"]: r["received_at"] for r in listed}
    assert received["later"] == arrived["later"]["received_at"]
    assert received["earlier"] == arrived["earlier"]["received_at"]
    assert received["later"] < received["earlier"]
    assert received["between"] == replayed_at
    assert conversation["last_inbound_at"].timestamp() == sent["later"]
    assert conversation["inbound_count"] == 3


def test_a_message_is_timed_by_its_provider_bounded_by_its_arrival(
    conn: Conn, client: TestClient
) -> None:
    """A delivery delayed by hours opens its conversation at its message's time, so it sorts
    below a conversation that is really newer, and a still older message never moves it back.
    A message without a timestamp, or with one from a broken clock (year 5138), is kept and
    timed by when its delivery arrived, not pinned to the top of the inbox for ever."""
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    number = account_id(conn, channel)
    now = int(time.time())
    fresh, delayed, undated, broken = wa_id(), wa_id(), wa_id(), wa_id()

    def deliver(sender: str, message: dict[str, Any]) -> None:
        answer = post_webhook(client, channel, inbound(sender, [message], phone_number_id=number))
        assert answer.json()["data"] == {"outcome": "accepted"}, answer.text

    deliver(fresh, text_message(fresh, "just now", timestamp=now - 60))
    deliver(delayed, text_message(delayed, "two hours ago", timestamp=now - 7200))
    deliver(delayed, text_message(delayed, "three hours ago", timestamp=now - 10800))
    no_time = text_message(undated, "no time")
    del no_time["timestamp"]
    deliver(undated, no_time)
    deliver(broken, text_message(broken, "year 5138", timestamp=99999999999))
    conn.execute("select private.apply_inbox_queue(500)")
    arrival = {
        r["sender"]: r["received_at"]
        for r in conn.execute(
            "select body::jsonb #>> '{entry,0,changes,0,value,messages,0,from}' as sender,"
            " received_at from private.webhook_events where event_id like %s",
            (f"{channel}:%",),
        ).fetchall()
    }
    with acting_as(conn, owner):
        inbox = conn.execute(
            "select i.address, c.last_message_at, c.last_inbound_at from public.conversations c"
            " join public.contact_identities i on i.id = c.identity_id where c.channel_id = %s"
            " order by c.last_message_at desc, c.id desc",
            (channel,),
        ).fetchall()
        times = {
            r["text"]: r["provider_timestamp"]
            for r in conn.execute(
                "select text, provider_timestamp from public.messages where channel_id = %s",
                (channel,),
            ).fetchall()
        }
    assert [r["address"] for r in inbox][-2:] == [fresh, delayed]
    opened = {r["address"]: r for r in inbox}
    assert opened[delayed]["last_message_at"].timestamp() == now - 7200
    assert opened[delayed]["last_inbound_at"].timestamp() == now - 7200
    assert times["no time"] == arrival[undated]
    assert times["year 5138"] == arrival[broken]
    assert opened[broken]["last_message_at"] == arrival[broken]


def test_forged_unknown_and_malformed_deliveries_store_nothing(
    conn: Conn, client: TestClient
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    body = inbound(sender, [text_message(sender, "hi")], phone_number_id=account_id(conn, channel))
    raw = json.dumps(body).encode()
    for headers in (
        {"X-Hub-Signature-256": hub_signature("wrong-secret", raw)},
        {"X-Hub-Signature-256": hub_signature(APP_SECRET, raw)[7:]},  # no sha256= prefix
        {},
    ):
        answer = client.post(f"/api/v1/webhooks/whatsapp/{channel}", content=raw, headers=headers)
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "signature_invalid"
    assert post_webhook(client, uuid.uuid4(), body).status_code == 401
    # Tampered after signing.
    tampered = raw.replace(b"hi", b"ho")
    answer = client.post(
        f"/api/v1/webhooks/whatsapp/{channel}",
        content=tampered,
        headers={"X-Hub-Signature-256": hub_signature(APP_SECRET, raw)},
    )
    assert answer.status_code == 401
    malformed = post_webhook(client, channel, {"object": "page", "entry": []})
    assert malformed.status_code == 422
    # Credentials sealed with another key: our fault, not Meta's, and said so (Meta retries).
    resealed = whatsapp_channel(conn, owner, Fernet.generate_key().decode())
    unopened = post_webhook(client, resealed, body)
    assert unopened.status_code == 503
    assert unopened.json()["error"]["code"] == "channel_key_mismatch"
    stored = one(
        conn,
        "select count(*) as n from private.webhook_events where event_id like %s"
        " or event_id like %s",
        (f"{channel}:%", f"{resealed}:%"),
    )["n"]
    assert stored == 0


# statuses ----------------------------------------------------------------------------------


def test_statuses_move_forward_only_in_any_order_and_keep_metas_error(
    conn: Conn, client: TestClient, jwks: JwksServer, graph: GraphServer
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    conversation = whatsapp_conversation(conn, channel, sender)
    sent = []
    for text in ("First", "Second"):
        answer = client.post(
            f"/api/v1/inbox/conversations/{conversation}/messages",
            json={"text": text},
            headers=bearer(jwks, owner),
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["data"]["status"] == "sent"
        sent.append(answer.json()["data"]["provider_message_id"])
    number = account_id(conn, channel)
    delivered = [
        status(sent[0], "sent", sender, 100),
        status(sent[0], "delivered", sender, 101),
        status(sent[0], "read", sender, 102),
        status(sent[1], "sent", sender, 100),
        status(sent[1], "failed", sender, 103, error=131026),
    ]
    rng = random.Random(7)
    for _ in range(3):
        for item in rng.sample(delivered, len(delivered)):
            assert post_webhook(client, channel, statuses([item], number)).status_code == 200
    post_webhook(client, channel, statuses(list(reversed(delivered)), number))
    rows = {r["provider_message_id"]: r for r in messages_of(conn, conversation)}
    assert rows[sent[0]]["status"] == "read"
    assert rows[sent[1]]["status"] == "failed"
    assert rows[sent[1]]["error_code"] == "131026"
    assert rows[sent[1]]["error_text"] == "Unable to deliver message."
    # The database itself refuses a step back.
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(
            "update public.messages set status = 'delivered' where provider_message_id = %s",
            (sent[0],),
        )
    assert caught.value.diag.message_hint == "illegal_transition"


def test_a_status_that_outruns_the_send_waits_for_it(conn: Conn) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    conversation = whatsapp_conversation(conn, channel, sender)
    with acting_as(conn, owner):
        message = one(
            conn, "select id from public.reply_to_conversation(%s, 'Hi', null)", (conversation,)
        )["id"]
    wamid = "wamid.EARLY" + uuid.uuid4().hex.upper()
    apply_whatsapp(
        conn, channel, statuses([status(wamid, "delivered", sender, 50)], account_id(conn, channel))
    )
    conn.execute("select private.claim_inbox_outbox(1, 60, %s)", (message,))
    conn.execute("select private.inbox_message_sent(%s, %s)", (message, wamid))
    row = one(
        conn, "select status, provider_message_id from public.messages where id = %s", (message,)
    )
    assert row == {"status": "delivered", "provider_message_id": wamid}


def test_a_status_is_timed_by_meta_bounded_by_its_deliverys_arrival(
    conn: Conn, client: TestClient
) -> None:
    """A status callback without a timestamp, or with one from a broken clock (year 5138), is
    timed by when its delivery arrived, not by when it was applied (a replay can be much later)
    nor in the far future; a sane timestamp is kept. Both appliers: the drain's set and the
    replay's one delivery at a time."""
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    number = account_id(conn, channel)
    sender = wa_id()
    conversation = whatsapp_conversation(conn, channel, sender)
    wamids = {}
    for name in ("drain_undated", "drain_broken", "drain_sane", "replay_undated", "replay_broken"):
        with acting_as(conn, owner):
            message = one(
                conn,
                "select id from public.reply_to_conversation(%s, %s, null)",
                (conversation, name),
            )["id"]
        wamids[name] = "wamid.T" + uuid.uuid4().hex.upper()
        conn.execute("select private.claim_inbox_outbox(1, 60, %s)", (message,))
        conn.execute("select private.inbox_message_sent(%s, %s)", (message, wamids[name]))
    sane_at = int(time.time()) - 3600

    def callback(name: str, at: int | None) -> dict[str, Any]:
        item = status(wamids[name], "delivered", sender, at or 0)
        if at is None:
            del item["timestamp"]
        return item

    drained = statuses(
        [
            callback("drain_undated", None),
            callback("drain_broken", 99999999999),
            callback("drain_sane", sane_at),
        ],
        number,
    )
    replayed = statuses(
        [callback("replay_undated", None), callback("replay_broken", 99999999999)], number
    )
    # Both wait for a drain not due yet; then they are ten minutes old when applied.
    conn.execute("update private.inbox_drain_schedule set due_at = now() + interval '1 hour'")
    try:
        for body in (drained, replayed):
            answer = post_webhook(client, channel, body)
            assert answer.json()["data"] == {"outcome": "accepted"}, answer.text
    finally:
        conn.execute("update private.inbox_drain_schedule set due_at = 'epoch'")
    arrival = {
        r["first"]: r
        for r in conn.execute(
            "update private.webhook_events set received_at = received_at - interval '10 minutes'"
            " where event_id like %s returning id, received_at,"
            " body::jsonb #>> '{entry,0,changes,0,value,statuses,0,id}' as first",
            (f"{channel}:%",),
        ).fetchall()
    }
    drain_arrival = arrival[wamids["drain_undated"]]["received_at"]
    replay_event = arrival[wamids["replay_undated"]]
    conn.execute(
        "update private.webhook_events set next_attempt_at = now() + interval '1 hour'"
        " where id = %s",
        (replay_event["id"],),
    )
    conn.execute("select private.apply_inbox_queue(500)")
    conn.execute(
        "update private.webhook_events set next_attempt_at = null where id = %s",
        (replay_event["id"],),
    )
    replay = client.get("/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"})
    assert replay.status_code == 200, replay.text
    rows = {r["provider_message_id"]: r for r in messages_of(conn, conversation)}
    timed = {name: rows[wamid]["status_at"] for name, wamid in wamids.items()}
    assert {rows[wamid]["status"] for wamid in wamids.values()} == {"delivered"}
    assert timed["drain_undated"] == drain_arrival
    assert timed["drain_broken"] == drain_arrival
    assert timed["drain_sane"].timestamp() == sane_at
    assert timed["replay_undated"] == replay_event["received_at"]
    assert timed["replay_broken"] == replay_event["received_at"]
    retired = one(conn, "select to_regprocedure('private.unix_time_or_now(text)') is null as gone")[
        "gone"
    ]
    assert retired


# replies -----------------------------------------------------------------------------------


def test_a_reply_inside_the_window_threads_on_the_last_message(
    conn: Conn, client: TestClient, jwks: JwksServer, graph: GraphServer
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    conversation = whatsapp_conversation(conn, channel, sender, "Where is my parcel?")
    last = one(
        conn,
        "select provider_message_id from public.messages where conversation_id = %s",
        (conversation,),
    )
    answer = client.post(
        f"/api/v1/inbox/conversations/{conversation}/messages",
        json={"text": "On its way, arriving tomorrow."},
        headers=bearer(jwks, owner),
    )
    assert answer.status_code == 201, answer.text
    data = answer.json()["data"]
    assert data["status"] == "sent" and data["provider_message_id"].startswith("wamid.")
    request = graph.sends()[-1]
    assert request == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": sender,
        "type": "text",
        "text": {"preview_url": False, "body": "On its way, arriving tomorrow."},
        "context": {"message_id": last["provider_message_id"]},
    }
    row = one(conn, "select * from public.conversations where id = %s", (conversation,))
    assert row["first_response_at"] is not None and row["message_count"] == 2


def test_outside_the_window_only_an_approved_template_goes(
    conn: Conn, client: TestClient, jwks: JwksServer, graph: GraphServer
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    conversation = whatsapp_conversation(conn, channel, sender)
    conn.execute(
        "update public.conversations set last_inbound_at = now() - interval '25 hours'"
        " where id = %s",
        (conversation,),
    )
    url = f"/api/v1/inbox/conversations/{conversation}/messages"
    closed = client.post(url, json={"text": "Still there?"}, headers=bearer(jwks, owner))
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "whatsapp_window_closed"
    choice = {"name": "order_update", "language": "en_US", "parameters": ["Sheena", "#1001"]}
    unknown = client.post(url, json={"template": choice}, headers=bearer(jwks, owner))
    assert unknown.status_code == 409 and unknown.json()["error"]["code"] == "template_not_approved"

    graph.templates[:] = [
        template("order_update"),
        template("welcome", body="Welcome!"),
        template("promo", status="REJECTED"),
    ]
    synced = client.post(
        f"/api/v1/inbox/channels/{channel}/whatsapp-templates/sync", headers=bearer(jwks, owner)
    )
    assert synced.status_code == 200, synced.text
    assert synced.json()["data"] == {"templates": 3}
    catalog = {
        r["name"]: (r["status"], r["variables"], r["category"])
        for r in conn.execute(
            "select * from public.whatsapp_templates where channel_id = %s", (channel,)
        ).fetchall()
    }
    assert catalog == {
        "order_update": ("APPROVED", 2, "UTILITY"),
        "welcome": ("APPROVED", 0, "UTILITY"),
        "promo": ("REJECTED", 2, "UTILITY"),
    }
    wrong_count = client.post(
        url, json={"template": {**choice, "parameters": ["x"]}}, headers=bearer(jwks, owner)
    )
    assert wrong_count.status_code == 422
    rejected = client.post(
        url, json={"template": {**choice, "name": "promo"}}, headers=bearer(jwks, owner)
    )
    assert rejected.status_code == 409
    sent = client.post(url, json={"template": choice}, headers=bearer(jwks, owner))
    assert sent.status_code == 201, sent.text
    assert sent.json()["data"]["status"] == "sent"
    assert graph.sends()[-1]["template"] == {
        "name": "order_update",
        "language": {"code": "en_US", "policy": "deterministic"},
        "components": [
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "Sheena"},
                    {"type": "text", "text": "#1001"},
                ],
            }
        ],
    }
    # Meta no longer lists one: it leaves the catalog.
    graph.templates[:] = [template("order_update")]
    client.post(
        f"/api/v1/inbox/channels/{channel}/whatsapp-templates/sync", headers=bearer(jwks, owner)
    )
    names = conn.execute(
        "select name from public.whatsapp_templates where channel_id = %s", (channel,)
    ).fetchall()
    assert [r["name"] for r in names] == ["order_update"]


def test_the_window_is_the_contacts_on_the_number_whichever_conversation_answers(
    conn: Conn, client: TestClient, jwks: JwksServer, graph: GraphServer
) -> None:
    """Meta's 24 hours run from the contact's last message to the number: a member answering
    in the contact's earlier, resolved conversation may write freely while the contact's new
    conversation is inside the window, and not once it is closed there too."""
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    earlier = whatsapp_conversation(conn, channel, sender, "My last order")
    conn.execute(
        "update public.conversations set status = 'resolved', resolved_at = now(),"
        " last_inbound_at = now() - interval '2 days' where id = %s",
        (earlier,),
    )
    apply_whatsapp(
        conn,
        channel,
        inbound(
            sender,
            [text_message(sender, "A new question", timestamp=int(time.time()))],
            phone_number_id=account_id(conn, channel),
        ),
    )
    newer = one(
        conn,
        "select id from public.conversations where channel_id = %s and id <> %s",
        (channel, earlier),
    )["id"]
    url = f"/api/v1/inbox/conversations/{earlier}/messages"
    answered = client.post(url, json={"text": "About that order: ..."}, headers=bearer(jwks, owner))
    assert answered.status_code == 201, answered.text
    assert answered.json()["data"]["status"] == "sent"
    assert graph.sends()[-1]["to"] == sender
    conn.execute(
        "update public.conversations set last_inbound_at = now() - interval '25 hours'"
        " where id = %s",
        (newer,),
    )
    closed = client.post(url, json={"text": "Still there?"}, headers=bearer(jwks, owner))
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "whatsapp_window_closed"


def test_viewers_read_but_do_not_answer_and_others_see_nothing(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    outsider = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    conversation = whatsapp_conversation(conn, channel)
    url = f"/api/v1/inbox/conversations/{conversation}/messages"
    answer = client.post(url, json={"text": "hi"}, headers=bearer(jwks, viewer))
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "insufficient_role"
    answer = client.post(url, json={"text": "hi"}, headers=bearer(jwks, outsider))
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "conversation_not_found"
    with acting_as(conn, viewer):
        assert (
            one(
                conn,
                "select count(*) as n from public.messages where conversation_id = %s",
                (conversation,),
            )["n"]
            == 1
        )
        assert (
            one(conn, "select count(*) as n from public.channels where id = %s", (channel,))["n"]
            == 1
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("select * from private.channel_secrets")
    with acting_as(conn, outsider):
        hidden = one(
            conn, "select count(*) as n from public.conversations where id = %s", (conversation,)
        )
        assert hidden["n"] == 0
    for call in (
        "select public.mark_conversation_read(%s)",
        "select public.reply_to_conversation(%s, 'hi', null)",
    ):
        with refused(404, "conversation_not_found"), acting_as(conn, outsider):
            conn.execute(call, (conversation,))
    with refused(403, "insufficient_role"), acting_as(conn, viewer):
        conn.execute("select public.reply_to_conversation(%s, 'hi', null)", (conversation,))
    with acting_as(conn, viewer):
        conn.execute("select public.mark_conversation_read(%s)", (conversation,))
    with acting_as(conn, owner), pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "insert into public.messages (workspace_id, conversation_id, channel_id, direction,"
            " status)"
            " values (%s, %s, %s, 'inbound', 'received')",
            (owner.workspace_id, conversation, channel),
        )


def test_metas_errors_retry_fail_or_revoke_as_they_should(
    conn: Conn, client: TestClient, jwks: JwksServer, graph: GraphServer
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    conversation = whatsapp_conversation(conn, channel)
    url = f"/api/v1/inbox/conversations/{conversation}/messages"

    graph.failures[:] = [130429]
    throttled = client.post(url, json={"text": "One"}, headers=bearer(jwks, owner))
    assert throttled.status_code == 201 and throttled.json()["data"]["status"] == "queued"
    message = throttled.json()["data"]["id"]
    outbox = one(conn, "select * from private.inbox_outbox where message_id = %s", (message,))
    assert outbox["status"] == "pending" and outbox["attempts"] == 1
    assert outbox["next_attempt_at"] > outbox["created_at"]
    conn.execute(
        "update private.inbox_outbox set next_attempt_at = now() where message_id = %s", (message,)
    )
    cron = client.get("/api/v1/cron/inbox", headers={"Authorization": f"Bearer {CRON}"})
    assert cron.status_code == 200 and cron.json()["data"]["inbox"]["sent"] >= 1
    assert (
        one(conn, "select status from public.messages where id = %s", (message,))["status"]
        == "sent"
    )

    graph.failures[:] = [131049]
    capped = client.post(url, json={"text": "Two"}, headers=bearer(jwks, owner))
    data = capped.json()["data"]
    assert (data["status"], data["error_code"]) == ("failed", "131049")
    assert "healthy ecosystem" in data["error_text"]

    graph.failures[:] = [190]
    revoked = client.post(url, json={"text": "Three"}, headers=bearer(jwks, owner))
    assert revoked.json()["data"]["status"] == "failed"
    assert revoked.json()["data"]["error_code"] == "190"
    row = one(conn, "select status, status_reason from public.channels where id = %s", (channel,))
    assert row["status"] == "revoked" and "190" in row["status_reason"]
    after = client.post(url, json={"text": "Four"}, headers=bearer(jwks, owner))
    assert after.status_code == 409 and after.json()["error"]["code"] == "channel_not_active"


def sends_to(graph: GraphServer, recipient: str) -> int:
    return sum(1 for sent in graph.sends() if sent.get("to") == recipient)


def test_a_closed_window_fails_the_message_with_metas_reason_and_no_retry(
    conn: Conn, client: TestClient, jwks: JwksServer, graph: GraphServer
) -> None:
    """Meta's 131047 (more than 24 hours since the customer last wrote), whether Meta refuses
    the send at once or fails the message later in a status callback: the member sees the
    message failed with Meta's code and reason, and the cron never sends it again."""
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    conversation = whatsapp_conversation(conn, channel, sender)
    url = f"/api/v1/inbox/conversations/{conversation}/messages"
    reason = "more than 24 hours have passed since the customer last replied"

    graph.failures[:] = [131047]
    refused_now = client.post(url, json={"text": "Still interested?"}, headers=bearer(jwks, owner))
    assert refused_now.status_code == 201, refused_now.text
    first = refused_now.json()["data"]
    assert (first["status"], first["error_code"]) == ("failed", "131047")
    assert reason in first["error_text"]
    later = client.post(url, json={"text": "One more thing"}, headers=bearer(jwks, owner))
    second = later.json()["data"]
    assert second["status"] == "sent"
    callback = status(second["provider_message_id"], "failed", sender, 1749416500, error=131047)
    answer = post_webhook(client, channel, statuses([callback], account_id(conn, channel)))
    assert answer.status_code == 200

    # Sends to this contact only: the cron sends every workspace's due replies through this
    # module's Graph stand-in, other tests' left ones too.
    sends = sends_to(graph, sender)
    conn.execute(
        "update private.inbox_outbox set next_attempt_at = now() - interval '1 day'"
        " where message_id = any(%s)",
        ([uuid.UUID(first["id"]), uuid.UUID(second["id"])],),
    )
    cron = client.get("/api/v1/cron/inbox", headers={"Authorization": f"Bearer {CRON}"})
    assert cron.status_code == 200 and sends_to(graph, sender) == sends
    with acting_as(conn, member):
        seen = {
            r["id"]: (r["status"], r["error_code"], reason in r["error_text"])
            for r in conn.execute(
                "select id, status, error_code, error_text from public.messages"
                " where conversation_id = %s and direction = 'outbound'",
                (conversation,),
            ).fetchall()
        }
    assert seen == {
        uuid.UUID(first["id"]): ("failed", "131047", True),
        uuid.UUID(second["id"]): ("failed", "131047", True),
    }
    # The SPA hears of both failures live: ids, states and Meta's code, never the text.
    failures = conn.execute(
        "select payload from realtime.messages where topic = %s and event = 'message_status'"
        " and payload ->> 'status' = 'failed' and payload ->> 'conversation_id' = %s",
        (f"workspace:{owner.workspace_id}:inbox", str(conversation)),
    ).fetchall()
    assert sorted((f["payload"]["id"], f["payload"]["error_code"]) for f in failures) == sorted(
        [(first["id"], "131047"), (second["id"], "131047")]
    )


def test_after_metas_marketing_limit_no_marketing_template_goes_to_that_contact_for_a_day(
    conn: Conn, client: TestClient, jwks: JwksServer, graph: GraphServer
) -> None:
    """Meta's 131049 (the user's marketing limit, reached): the template fails with Meta's
    code and reason and is never sent again; for 24 hours another marketing template to that
    contact on that number is a clear 409 before it reaches Meta, while a utility template
    still goes, and so does a marketing template to someone else."""
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender, other = wa_id(), wa_id()
    conversation = whatsapp_conversation(conn, channel, sender)
    elsewhere = whatsapp_conversation(conn, channel, other)
    graph.templates[:] = [
        template("spring_sale", body="Spring sale: {{1}}% off, {{2}}", category="MARKETING"),
        template("order_update"),
    ]
    synced = client.post(
        f"/api/v1/inbox/channels/{channel}/whatsapp-templates/sync", headers=bearer(jwks, owner)
    )
    assert synced.status_code == 200, synced.text
    sale = {"template": {"name": "spring_sale", "language": "en_US", "parameters": ["20", "x"]}}
    update = {"template": {"name": "order_update", "language": "en_US", "parameters": ["a", "b"]}}
    url = f"/api/v1/inbox/conversations/{conversation}/messages"

    graph.failures[:] = [131049]
    capped = client.post(url, json=sale, headers=bearer(jwks, owner))
    assert capped.status_code == 201, capped.text
    first = capped.json()["data"]
    assert (first["status"], first["error_code"]) == ("failed", "131049")
    assert "healthy ecosystem" in first["error_text"]
    assert (
        one(conn, "select status from private.inbox_outbox where message_id = %s", (first["id"],))[
            "status"
        ]
        == "dead"
    )
    sends = len(graph.sends())
    again = client.post(url, json=sale, headers=bearer(jwks, owner))
    assert again.status_code == 409, again.text
    assert again.json()["error"]["code"] == "whatsapp_marketing_capped"
    assert len(graph.sends()) == sends
    utility = client.post(url, json=update, headers=bearer(jwks, owner))
    assert utility.status_code == 201 and utility.json()["data"]["status"] == "sent"
    someone_else = client.post(
        f"/api/v1/inbox/conversations/{elsewhere}/messages", json=sale, headers=bearer(jwks, owner)
    )
    assert someone_else.status_code == 201 and someone_else.json()["data"]["status"] == "sent"
    # A day later the contact may get marketing templates again.
    conn.execute(
        "update public.messages set status_at = now() - interval '25 hours' where id = %s",
        (first["id"],),
    )
    later = client.post(url, json=sale, headers=bearer(jwks, owner))
    assert later.status_code == 201 and later.json()["data"]["status"] == "sent", later.text


# read state ----------------------------------------------------------------------------------


def test_unread_counts_are_kept_per_member_without_counting_messages(conn: Conn) -> None:
    owner = create_user(conn)
    teammate = add_member(conn, owner, "member")
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    conversation = whatsapp_conversation(conn, channel, sender)
    number = account_id(conn, channel)
    apply_whatsapp(
        conn,
        channel,
        inbound(
            sender,
            [text_message(sender, "two"), text_message(sender, "three")],
            phone_number_id=number,
        ),
    )

    def unread(user: Any) -> tuple[int, int]:
        with acting_as(conn, user):
            row = one(
                conn,
                "select unread_count from public.inbox_conversations where id = %s",
                (conversation,),
            )
            total = one(
                conn,
                "select unread_messages from public.inbox_unread where workspace_id = %s",
                (owner.workspace_id,),
            )
        return row["unread_count"], total["unread_messages"]

    assert unread(owner) == (3, 3) and unread(teammate) == (3, 3)
    with acting_as(conn, owner):
        assert one(conn, "select public.mark_conversation_read(%s) as n", (conversation,))["n"] == 3
    assert unread(owner) == (0, 0) and unread(teammate) == (3, 3)
    apply_whatsapp(
        conn, channel, inbound(sender, [text_message(sender, "four")], phone_number_id=number)
    )
    assert unread(owner) == (1, 1)
    with acting_as(conn, owner):
        conn.execute("select public.mark_conversation_read(%s)", (conversation,))
        conn.execute("select public.mark_conversation_read(%s)", (conversation,))
    assert unread(owner) == (0, 0)

    # Both counts come from counters kept on write: neither read touches a message.
    def relations(plan: Any) -> set[str]:
        if isinstance(plan, dict):
            found = {plan["Relation Name"]} if "Relation Name" in plan else set()
            return found.union(*(relations(v) for v in plan.values()))
        if isinstance(plan, list):
            return set().union(*(relations(v) for v in plan))
        return set()

    with acting_as(conn, teammate):
        for query in (
            "select id, unread_count from public.inbox_conversations where workspace_id = %s"
            " and status = 'open' order by last_message_at desc, id desc limit 20",
            "select unread_messages from public.inbox_unread where workspace_id = %s",
        ):
            plan = one(conn, "explain (format json) " + query, (owner.workspace_id,))
            read = relations(plan["QUERY PLAN"])
            assert read and "messages" not in read, (query, read)


def test_unread_counts_per_channel_are_kept_per_member_without_counting_messages(
    conn: Conn, database_url: str
) -> None:
    """Each member's unread inbound messages per channel (Chatwoot's inbox) come from counters
    kept on write: reading a conversation lowers only its channel's count and only for the
    reader; two first reads of one conversation at once count it once; an erased
    conversation leaves its channel's counts; the read touches no message."""
    owner = create_user(conn)
    teammate = add_member(conn, owner, "member")
    sales, support = whatsapp_channel(conn, owner, KEY), whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    first = whatsapp_conversation(conn, sales, sender)
    apply_whatsapp(
        conn,
        sales,
        inbound(sender, [text_message(sender, "two")], phone_number_id=account_id(conn, sales)),
    )
    second = whatsapp_conversation(conn, sales)
    whatsapp_conversation(conn, support)

    def unread(user: Any) -> tuple[int, int, int]:
        with acting_as(conn, user):
            rows = {
                r["channel_id"]: r["unread_messages"]
                for r in conn.execute(
                    "select channel_id, unread_messages from public.inbox_channel_unread"
                    " where workspace_id = %s",
                    (owner.workspace_id,),
                ).fetchall()
            }
            total = one(
                conn,
                "select unread_messages from public.inbox_unread where workspace_id = %s",
                (owner.workspace_id,),
            )["unread_messages"]
        return rows[sales], rows[support], total

    assert unread(owner) == (3, 1, 4) and unread(teammate) == (3, 1, 4)
    with acting_as(conn, owner):
        assert one(conn, "select public.mark_conversation_read(%s) as n", (first,))["n"] == 2
    assert unread(owner) == (1, 1, 2) and unread(teammate) == (3, 1, 4)
    # A member reads only their own read totals.
    with acting_as(conn, teammate):
        mine = conn.execute("select user_id from public.inbox_channel_member_reads").fetchall()
        assert mine == []
    # Two first reads by one member at once (two tabs): the second waits and adds nothing.
    with (
        psycopg.connect(database_url) as tab,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as watcher,
    ):
        with acting_as(conn, teammate):
            conn.execute("select public.mark_conversation_read(%s)", (second,))
            done: list[int] = []

            def other_tab() -> None:
                with acting_as(tab, teammate):
                    row = tab.execute(
                        "select public.mark_conversation_read(%s)", (second,)
                    ).fetchone()
                    assert row is not None
                    done.append(row[0])

            thread = threading.Thread(target=other_tab)
            thread.start()
            wait_until_blocked(watcher, tab.info.backend_pid)
        thread.join(timeout=30)
    assert done == [1]
    assert unread(teammate) == (2, 1, 3)
    # An erased conversation (deleted with its identity) leaves its channel's counts.
    conn.execute("delete from public.conversations where id = %s", (first,))
    assert unread(owner) == (1, 1, 2) and unread(teammate) == (0, 1, 1)
    counts = one(
        conn,
        "select (select inbound_count from public.inbox_channel_counters where channel_id = %s)"
        " as inbound, (select read_inbound_count from public.inbox_channel_member_reads"
        " where channel_id = %s and user_id = %s) as read",
        (sales, sales, owner.id),
    )
    assert counts == {"inbound": 1, "read": 0}

    def relations(plan: Any) -> set[str]:
        if isinstance(plan, dict):
            found = {plan["Relation Name"]} if "Relation Name" in plan else set()
            return found.union(*(relations(v) for v in plan.values()))
        if isinstance(plan, list):
            return set().union(*(relations(v) for v in plan))
        return set()

    with acting_as(conn, owner):
        plan = one(
            conn,
            "explain (format json) select channel_id, unread_messages"
            " from public.inbox_channel_unread where workspace_id = %s",
            (owner.workspace_id,),
        )
    read = relations(plan["QUERY PLAN"])
    assert read and "messages" not in read and "conversations" not in read, read


def test_over_the_contact_limit_the_message_is_kept_without_a_contact(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 0, "free")
    conn.execute(
        "insert into private.workspace_contact_counts (workspace_id, contacts)"
        " select %s, contact_limit from public.plans where tier = 'free'"
        " on conflict (workspace_id) do update set contacts = excluded.contacts",
        (owner.workspace_id,),
    )
    channel = whatsapp_channel(conn, owner, KEY)
    conversation = whatsapp_conversation(conn, channel, text="Anyone?")
    row = one(conn, "select contact_id from public.conversations where id = %s", (conversation,))
    assert row["contact_id"] is None
    assert [m["text"] for m in messages_of(conn, conversation)] == ["Anyone?"]
    # The workspace's real count back, so the counters verify again.
    conn.execute(
        "update private.workspace_contact_counts set contacts = (select count(*)"
        " from public.contacts where workspace_id = %(w)s and erased_at is null)"
        " where workspace_id = %(w)s",
        {"w": owner.workspace_id},
    )


def test_an_inbound_message_reopens_a_snoozed_conversation_and_a_resolved_one_starts_anew(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    conversation = whatsapp_conversation(conn, channel, sender)
    number = account_id(conn, channel)
    conn.execute(
        "update public.conversations set status = 'snoozed',"
        " snoozed_until = now() + interval '1 day' where id = %s",
        (conversation,),
    )
    apply_whatsapp(
        conn, channel, inbound(sender, [text_message(sender, "hello?")], phone_number_id=number)
    )
    row = one(
        conn,
        "select status, snoozed_until from public.conversations where id = %s",
        (conversation,),
    )
    assert row == {"status": "open", "snoozed_until": None}
    conn.execute(
        "update public.conversations set status = 'resolved' where id = %s", (conversation,)
    )
    apply_whatsapp(
        conn,
        channel,
        inbound(sender, [text_message(sender, "new question")], phone_number_id=number),
    )
    rows = conn.execute(
        "select status from public.conversations where channel_id = %s order by created_at",
        (channel,),
    ).fetchall()
    assert [r["status"] for r in rows] == ["resolved", "open"]


def test_connecting_is_for_admins_and_never_answers_the_secrets(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    number = str(random.randrange(10**14, 10**15))
    body = {
        "workspace_id": str(owner.workspace_id),
        "name": "Support",
        "phone_number_id": number,
        "business_account_id": "102290129340398",
        "access_token": "EAAJB-secret-token",
        "app_secret": "app-secret-value",
        "verify_token": "verify-token-value",
    }
    answer = client.post("/api/v1/inbox/channels/whatsapp", json=body, headers=bearer(jwks, member))
    assert answer.status_code == 403
    answer = client.post("/api/v1/inbox/channels/whatsapp", json=body, headers=bearer(jwks, owner))
    assert answer.status_code == 201, answer.text
    data = answer.json()["data"]
    assert (
        data["webhook_url"]
        == f"https://edge.example.test/api/v1/webhooks/whatsapp/{data['channel']['id']}"
    )
    assert "EAAJB" not in answer.text and "app-secret" not in answer.text
    stored = one(
        conn,
        "select secrets_encrypted from private.channel_secrets where channel_id = %s",
        (data["channel"]["id"],),
    )
    assert "EAAJB" not in stored["secrets_encrypted"]
    other = create_user(conn)
    taken = client.post(
        "/api/v1/inbox/channels/whatsapp",
        json={**body, "workspace_id": str(other.workspace_id)},
        headers=bearer(jwks, other),
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "channel_taken"
    with refused(404, "channel_not_found"), acting_as(conn, other):
        conn.execute("select public.disconnect_channel(%s)", (data["channel"]["id"],))
    with acting_as(conn, member), refused(403, "insufficient_role"):
        conn.execute("select public.disconnect_channel(%s)", (data["channel"]["id"],))
    with acting_as(conn, owner):
        gone = one(conn, "select * from public.disconnect_channel(%s)", (data["channel"]["id"],))
    assert gone["status"] == "disconnected"
    assert (
        one(
            conn,
            "select count(*) as n from private.channel_secrets where channel_id = %s",
            (data["channel"]["id"],),
        )["n"]
        == 0
    )


def test_erasing_a_contact_erases_their_conversations_and_stored_webhooks(
    conn: Conn, client: TestClient
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    body = inbound(
        sender,
        [text_message(sender, "My address is Dlouhá 5", timestamp=int(time.time()))],
        phone_number_id=account_id(conn, channel),
    )
    assert post_webhook(client, channel, body).status_code == 200
    conversation = one(
        conn, "select id, contact_id from public.conversations where channel_id = %s", (channel,)
    )
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (conversation["contact_id"],))
    for query in (
        "select count(*) as n from public.conversations where channel_id = %s",
        "select count(*) as n from public.messages where channel_id = %s",
        "select count(*) as n from private.webhook_events where event_id like %s::text || ':%%'",
    ):
        assert one(conn, query, (channel,))["n"] == 0, query
    assert (
        one(
            conn,
            "select count(*) as n from public.contact_identities where address = %s",
            (sender,),
        )["n"]
        == 0
    )
    assert (
        one(
            conn,
            "select inbound_count from public.inbox_channel_counters where channel_id = %s",
            (channel,),
        )["inbound_count"]
        == 0
    )


def test_the_assignee_is_notified_when_the_customer_writes(conn: Conn) -> None:
    owner = create_user(conn)
    teammate = add_member(conn, owner, "member")
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    conversation = whatsapp_conversation(conn, channel, sender)
    conn.execute(
        "update public.conversations set assignee_id = %s where id = %s",
        (teammate.id, conversation),
    )
    apply_whatsapp(
        conn,
        channel,
        inbound(
            sender, [text_message(sender, "any news?")], phone_number_id=account_id(conn, channel)
        ),
    )
    with acting_as(conn, teammate):
        rows = conn.execute("select kind, title, body, link from public.notifications").fetchall()
    assert [dict(r) for r in rows] == [
        {
            "kind": "conversation.replied",
            "title": "A customer replied",
            "body": None,
            "link": {"conversation_id": str(conversation)},
        }
    ]
    with acting_as(conn, owner):
        assert conn.execute("select count(*) as n from public.notifications").fetchone()["n"] == 0


def test_stop_suppresses_templates_but_not_answers_in_the_window(
    conn: Conn, client: TestClient, jwks: JwksServer, graph: GraphServer
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    conversation = whatsapp_conversation(conn, channel, sender, "Stop.")
    opt_out = one(
        conn,
        "select kind, keyword, contact_id from public.channel_suppressions"
        " where workspace_id = %s and address = %s",
        (owner.workspace_id, sender),
    )
    assert opt_out["kind"] == "whatsapp" and opt_out["keyword"] == "stop"
    assert opt_out["contact_id"] is not None
    graph.templates[:] = [template("order_update")]
    client.post(
        f"/api/v1/inbox/channels/{channel}/whatsapp-templates/sync", headers=bearer(jwks, owner)
    )
    url = f"/api/v1/inbox/conversations/{conversation}/messages"
    choice = {"name": "order_update", "language": "en_US", "parameters": ["a", "b"]}
    refused_template = client.post(url, json={"template": choice}, headers=bearer(jwks, owner))
    assert refused_template.status_code == 409
    assert refused_template.json()["error"]["code"] == "contact_opted_out"
    answered = client.post(url, json={"text": "You are unsubscribed."}, headers=bearer(jwks, owner))
    assert answered.status_code == 201
    # "Stop the order" is a question, not an opt-out.
    other = wa_id()
    whatsapp_conversation(conn, channel, other, "Please stop the order")
    assert (
        one(
            conn,
            "select count(*) as n from public.channel_suppressions where address = %s",
            (other,),
        )["n"]
        == 0
    )


def fetch_all_media(conn: Conn, edge: TestClient) -> None:
    """Runs cron/inbox as often as every attachment due now needs: each run fetches the 20
    oldest of every workspace, and other tests' may be queued before this test's."""
    due = one(
        conn,
        "select count(*) as n from private.inbox_media_queue"
        " where status = 'pending' and next_attempt_at <= now()",
    )["n"]
    for _ in range(due // 20 + 1):
        answer = edge.get("/api/v1/cron/inbox", headers={"Authorization": f"Bearer {CRON}"})
        assert answer.status_code == 200, answer.text


def test_inbound_media_is_fetched_into_the_inbox_bucket(
    conn: Conn, database_url: str, jwks: JwksServer, graph: GraphServer
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    small, huge = image_message(sender), image_message(sender)
    small["image"]["id"], huge["image"]["id"] = "2001", "2002"
    graph.media["2001"] = b"\xff\xd8\xff\xe0 a small jpeg"
    graph.media["2002"] = b"\xff\xd8 pretend this is 30 MB"
    graph.announced_sizes["2002"] = 30 * 1024 * 1024
    apply_whatsapp(
        conn, channel, inbound(sender, [small, huge], phone_number_id=account_id(conn, channel))
    )
    with serve_storage() as storage:
        settings = edge_settings(
            database_url,
            jwks,
            integrations_encryption_key=SecretStr(KEY),
            cron_secret=SecretStr(CRON),
            whatsapp_graph_url=graph.base_url,
            supabase_service_key=SecretStr(SERVICE_KEY),
            supabase_storage_url=storage.base_url,
        )
        with TestClient(create_app(settings)) as edge:
            fetch_all_media(conn, edge)
        stored = {
            path: data for (bucket, path), data in storage.objects.items() if bucket == "inbox"
        }
    rows = conn.execute(
        "select id, conversation_id, attachments from public.messages where channel_id = %s"
        " order by provider_timestamp, id",
        (channel,),
    ).fetchall()
    by_media = {r["attachments"][0]["provider_media_id"]: r for r in rows}
    kept = by_media["2001"]
    path = f"{owner.workspace_id}/{kept['conversation_id']}/{kept['id']}/0-image"
    assert kept["attachments"][0]["status"] == "stored"
    assert kept["attachments"][0]["storage_path"] == path
    assert stored[path] == b"\xff\xd8\xff\xe0 a small jpeg"
    assert by_media["2002"]["attachments"][0]["status"] == "too_large"
    assert not any(p.endswith(str(by_media["2002"]["id"]) + "/0-image") for p in stored)


def test_an_erased_contacts_stored_media_is_removed_from_the_bucket(
    conn: Conn, database_url: str, jwks: JwksServer, graph: GraphServer
) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender, bystander = wa_id(), wa_id()
    theirs, kept = image_message(sender), image_message(bystander)
    theirs["image"]["id"], kept["image"]["id"] = "3001", "3002"
    graph.media["3001"] = b"\xff\xd8 the person's photo"
    graph.media["3002"] = b"\xff\xd8 someone else's photo"
    for who, message in ((sender, theirs), (bystander, kept)):
        apply_whatsapp(
            conn, channel, inbound(who, [message], phone_number_id=account_id(conn, channel))
        )
    with serve_storage() as storage:
        settings = edge_settings(
            database_url,
            jwks,
            integrations_encryption_key=SecretStr(KEY),
            cron_secret=SecretStr(CRON),
            whatsapp_graph_url=graph.base_url,
            supabase_service_key=SecretStr(SERVICE_KEY),
            supabase_storage_url=storage.base_url,
        )
        cron = {"Authorization": f"Bearer {CRON}"}
        with TestClient(create_app(settings)) as edge:
            fetch_all_media(conn, edge)
            before = {path for (bucket, path) in storage.objects if bucket == "inbox"}
            contact = one(
                conn,
                "select c.contact_id from public.conversations c"
                " join public.contact_identities i on i.id = c.identity_id"
                " where c.channel_id = %s and i.address = %s",
                (channel, sender),
            )["contact_id"]
            with acting_as(conn, owner):
                conn.execute("select public.erase_contact(%s)", (contact,))
            answer = edge.get("/api/v1/cron/inbox", headers=cron)
            assert answer.status_code == 200, answer.text
            assert answer.json()["data"]["inbox"]["media_removed"] == 1
            after = {
                path: data
                for (bucket, path), data in storage.objects.items()
                if bucket == "inbox" and path.startswith(f"{owner.workspace_id}/")
            }
    mine = [p for p in before if p.startswith(f"{owner.workspace_id}/")]
    assert len(mine) == 2
    # Only the bystander's photo is left; the erased person's file is gone.
    assert list(after.values()) == [b"\xff\xd8 someone else's photo"]
    [gone] = [p for p in mine if p not in after]
    queued = one(
        conn, "select count(*) as n from private.inbox_media_removals where path = %s", (gone,)
    )
    assert queued["n"] == 0


def test_the_same_message_applied_concurrently_is_one_row(conn: Conn, database_url: str) -> None:
    owner = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    sender = wa_id()
    number = account_id(conn, channel)
    message = text_message(sender, "Only once, please")
    events = []
    for extra in ([], [text_message(sender, "and this one")]):
        raw = json.dumps(inbound(sender, [message, *extra], phone_number_id=number))
        events.append(
            one(
                conn,
                "select id from private.record_webhook_event('whatsapp', %s, %s)",
                (f"{channel}:{hashlib.sha256(raw.encode()).hexdigest()}", raw),
            )["id"]
        )
    barrier = threading.Barrier(len(events))
    errors: list[BaseException] = []

    def apply(event: uuid.UUID) -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as own:
                barrier.wait()
                own.execute("select private.apply_whatsapp_event(%s)", (event,))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=apply, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    counts = one(
        conn,
        "select count(*) filter (where text = 'Only once, please') as once, count(*) as total,"
        " count(distinct conversation_id) as conversations from public.messages"
        " where channel_id = %s",
        (channel,),
    )
    assert counts == {"once": 1, "total": 2, "conversations": 1}
    contacts = one(
        conn, "select count(*) as n from public.contacts where phone = %s", ("+" + sender,)
    )
    assert contacts["n"] == 1
