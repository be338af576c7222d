"""Benchmark of the inbox, each figure beside a baseline measured in the same run, on a
throwaway database with Meta played by nothing (inbound only) and the edge in process:

1. Inbound messages through the signed WhatsApp webhook (signature check, stored, applied into
   conversations: identities, contacts, counters, broadcasts; one transaction) against the same
   kind of FastAPI endpoint doing one plain insert per request, and beside both the same work
   done as before 20261223090000 (three transactions: secret read, store, apply after the
   answer). The sides take turns in rounds. Target: at least 60 % of the baseline.
2. The inbox list: a page of a workspace's open conversations (100k conversations, 1M
   messages by default), newest first, with the member's unread counts, read as the member
   under RLS through `inbox_conversations`, against the same page read from the table alone
   by the superuser. Target: at most 20 ms a page.
3. Redelivery: statuses of sent messages, every webhook delivered three times in shuffled
   order: each message must end as one row in its furthest state.
"""

import argparse
import hashlib
import hmac
import json
import random
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import psycopg
from cryptography.fernet import Fernet
from fastapi import BackgroundTasks, Depends, FastAPI, Header, Request
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from api.app import create_app
from api.core.db import Database, become_user
from api.core.secrets_box import SecretBox
from api.core.settings import Settings
from api.core.signatures import verify_webhook_hmac
from api.inbox.secrets import stored_channel
from api.inbox.whatsapp.webhook import WhatsAppWebhook
from api.webhooks.body import parse_json, raw_body
from api.webhooks.intake import WebhookIntake, sql_applier
from scripts import postgres
from scripts.migrate import migrate

SECRET = "bench-" + uuid.uuid4().hex
APP_SECRET = "app-" + uuid.uuid4().hex
SUPABASE_URL = "http://127.0.0.1:54321"
KEY = Fernet.generate_key().decode()
NUMBER = "106540352242922"


def baseline_app(database_url: str) -> FastAPI:
    """The same edge framework doing, per request, one plain insert (`/baseline`) or the
    WhatsApp webhook's work the way it was done before 20261223090000 (`/three-transactions`):
    the channel's secret read, the delivery stored, then applied, each its own transaction."""
    database = Database(database_url, pool_mode="session", max_size=5, timeout_seconds=5)
    box = SecretBox(KEY)
    intake = WebhookIntake(database)
    intake.register("whatsapp", sql_applier(database, "apply_whatsapp_event"))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        database.open()
        yield
        database.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/baseline")
    async def insert(request: Request) -> dict[str, Any]:
        payload = await request.body()
        with database.connection() as conn:
            conn.execute("insert into bench_baseline (payload) values (%s)", (payload.decode(),))
        return {"data": {"outcome": "accepted"}, "error": None}

    @app.post("/three-transactions/{channel_id}")
    def three(
        channel_id: uuid.UUID,
        background: BackgroundTasks,
        body: Annotated[bytes, Depends(raw_body)],
        signature: Annotated[str, Header(alias="X-Hub-Signature-256")],
    ) -> dict[str, Any]:
        channel = stored_channel(database, box, channel_id)
        assert channel is not None
        verify_webhook_hmac(
            channel.secrets["app_secret"],
            body,
            signature.removeprefix("sha256="),
            digest="sha256",
            encoding="hex",
        )
        WhatsAppWebhook.model_validate(parse_json(body))
        event_id = f"{channel_id}:{hashlib.sha256(body).hexdigest()}"
        recorded = intake.record("whatsapp", event_id, body)
        if not recorded.duplicate:
            intake.apply_later(background, "whatsapp", recorded.event)
        return {"data": {"outcome": "accepted"}, "error": None}

    return app


def timed(calls: list[Callable[[], int]]) -> list[float]:
    """Each request's latency (s), one request after another."""
    latencies = []
    for call in calls:
        before = time.perf_counter()
        status = call()
        latencies.append(time.perf_counter() - before)
        if status >= 400:
            raise SystemExit(f"request failed with {status}")
    return latencies


def envelope(value: dict[str, Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": NUMBER,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def inbound(sender: str, index: int) -> bytes:
    return json.dumps(
        envelope(
            {
                "contacts": [{"profile": {"name": f"Customer {sender[-4:]}"}, "wa_id": sender}],
                "messages": [
                    {
                        "from": sender,
                        "id": f"wamid.BENCH{index:010d}",
                        "timestamp": str(int(time.time())),
                        "type": "text",
                        "text": {"body": f"Question number {index}"},
                    }
                ],
            }
        )
    ).encode()


def signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(APP_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def prepare(database_url: str) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID]:
    """A team-plan owner with a WhatsApp channel; answers (user, workspace, channel)."""
    user_id = uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, aud, role, email) values (%s, 'authenticated',"
            " 'authenticated', %s)",
            (user_id, f"bench-{user_id.hex[:8]}@example.test"),
        )
        workspace = conn.execute(
            "update public.workspaces set plan_tier = 'team' where created_by = %s returning id",
            (user_id,),
        ).fetchone()
        assert workspace is not None
        conn.execute("update public.plans set contact_limit = 100000000")
        sealed = Fernet(KEY.encode()).encrypt(
            json.dumps(
                {"access_token": "t", "app_secret": APP_SECRET, "verify_token": "v"}
            ).encode()
        )
        channel = conn.execute(
            "select id from private.connect_channel(%s, 'whatsapp', 'Bench', %s, %s, %s)",
            (workspace[0], NUMBER, Jsonb({"business_account_id": "1"}), sealed.decode()),
        ).fetchone()
        assert channel is not None
        conn.execute("create table bench_baseline (id bigserial primary key, payload text)")
    return user_id, workspace[0], channel[0]


def throughput(
    edge: TestClient, bare: TestClient, channel: uuid.UUID, messages: int, rounds: int
) -> None:
    """The three sides take turns, a slice of the messages each per round, so a change in the
    machine's load (other suites run beside this) weighs on all three alike."""
    senders = [f"4207{n:08d}" for n in range(max(messages // 10, 1))]
    url = f"/api/v1/webhooks/whatsapp/{channel}"
    old_url = f"/three-transactions/{channel}"
    # Distinct messages for each side (and the warm-up), so none is a duplicate of another's.
    bodies = [inbound(senders[i % len(senders)], i) for i in range(3 * messages + 150)]
    warm_up, bodies = bodies[:150], bodies[150:]

    def to_edge(body: bytes) -> Callable[[], int]:
        return lambda: edge.post(url, content=body, headers=signed(body)).status_code

    def to_old(body: bytes) -> Callable[[], int]:
        return lambda: bare.post(old_url, content=body, headers=signed(body)).status_code

    def to_baseline(body: bytes) -> Callable[[], int]:
        return lambda: bare.post("/baseline", content=body).status_code

    timed([to_edge(body) for body in warm_up[:50]])
    timed([to_old(body) for body in warm_up[50:100]])
    timed([to_baseline(body) for body in warm_up[100:]])
    sides: dict[str, list[float]] = {"baseline": [], "old": [], "edge": []}
    size = max(messages // rounds, 1)
    for start in range(0, messages, size):
        sides["baseline"] += timed([to_baseline(b) for b in bodies[start : start + size]])
        part = bodies[messages + start : messages + start + size]
        sides["old"] += timed([to_old(b) for b in part])
        part = bodies[2 * messages + start : 2 * messages + start + size]
        sides["edge"] += timed([to_edge(b) for b in part])
    rate = {side: len(times) / sum(times) for side, times in sides.items()}
    median = {side: statistics.median(times) * 1000 for side, times in sides.items()}
    print(f"inbound messages per side          {messages} (in {rounds} alternating rounds)")
    print(f"baseline (one insert per request)  {rate['baseline']:8.1f} req/s", end="")
    print(f"   median {median['baseline']:6.2f} ms")
    print(f"before: three transactions         {rate['old']:8.1f} req/s", end="")
    print(f"   median {median['old']:6.2f} ms   ratio {rate['old'] / rate['baseline']:5.2f}")
    print(f"signed webhook, one transaction    {rate['edge']:8.1f} req/s", end="")
    print(f"   median {median['edge']:6.2f} ms   ratio {rate['edge'] / rate['baseline']:5.2f}")
    print(f"ratio webhook / baseline           {rate['edge'] / rate['baseline']:8.2f}", end="")
    print("   (target >= 0.60)")


def fill(
    database_url: str, workspace: uuid.UUID, channel: uuid.UUID, conversations: int, messages: int
) -> None:
    """Conversations and messages written set-based, a chunk per statement, as an import would."""
    chunk = 20_000
    with psycopg.connect(database_url, autocommit=True) as conn:
        for start in range(0, conversations, chunk):
            size = min(chunk, conversations - start)
            conn.execute(
                "insert into public.contact_identities (workspace_id, kind, address)"
                " select %s, 'whatsapp', (5000000000 + g)::text"
                " from generate_series(%s::integer, %s::integer) g",
                (workspace, start, start + size - 1),
            )
            conn.execute(
                "insert into public.conversations (workspace_id, channel_id, identity_id, status,"
                " last_message_at)"
                " select %s, %s, i.id,"
                " (array['open', 'open', 'pending', 'resolved'])[1 + (g %% 4)],"
                " now() - make_interval(secs => g)"
                " from generate_series(%s::integer, %s::integer) g"
                " join public.contact_identities i on i.workspace_id = %s and i.kind = 'whatsapp'"
                "  and i.address = (5000000000 + g)::text",
                (workspace, channel, start, start + size - 1, workspace),
            )
        per = max(messages // max(conversations, 1), 1)
        ids = [
            r[0]
            for r in conn.execute(
                "select id from public.conversations where channel_id = %s", (channel,)
            )
        ]
        for start in range(0, len(ids), chunk // per):
            part = ids[start : start + chunk // per]
            conn.execute(
                "insert into public.messages (workspace_id, conversation_id, channel_id, direction,"
                " text, provider_message_id, status, provider_timestamp)"
                " select %s, c, %s, 'inbound', 'Hello, is it in stock?',"
                " 'wamid.FILL' || c::text || '.' || n, 'received', now() - make_interval(secs => n)"
                " from unnest(%s::uuid[]) c, generate_series(1, %s::integer) n",
                (workspace, channel, part, per),
            )
        conn.execute("analyze public.conversations")
        conn.execute("analyze public.conversation_reads")


def list_latency(database_url: str, user: uuid.UUID, workspace: uuid.UUID, pages: int) -> None:
    claims = {"sub": str(user), "role": "authenticated", "aud": "authenticated"}
    member_query = (
        "select id, status, last_message_at, unread_count, priority, labels"
        " from public.inbox_conversations where workspace_id = %s and status = 'open'"
        " order by last_message_at desc, id desc limit 25"
    )
    plain_query = (
        "select id, status, last_message_at, inbound_count, priority, labels"
        " from public.conversations where workspace_id = %s and status = 'open'"
        " order by last_message_at desc, id desc limit 25"
    )
    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            # A few conversations read, so the unread counts differ.
            become_user(conn, claims)
            for row in conn.execute(member_query, (workspace,)).fetchall()[:5]:
                conn.execute("select public.mark_conversation_read(%s)", (row[0],))

        def run(query: str, as_member: bool) -> float:
            times = []
            for _ in range(pages):
                with conn.transaction():
                    if as_member:
                        become_user(conn, claims)
                    started = time.perf_counter()
                    rows = conn.execute(query, (workspace,)).fetchall()
                    times.append((time.perf_counter() - started) * 1000)
                    assert len(rows) == 25
            return statistics.median(times)

        baseline = run(plain_query, False)
        member = run(member_query, True)
        counts = conn.execute(
            "select (select count(*) from public.conversations where workspace_id = %s),"
            " (select count(*) from public.messages where workspace_id = %s)",
            (workspace, workspace),
        ).fetchone()
    assert counts is not None
    print(f"workspace size                     {counts[0]} conversations, {counts[1]} messages")
    print(f"baseline (table, no RLS) page      median {baseline:6.2f} ms")
    print(f"inbox page as member (RLS, unread) median {member:6.2f} ms   (target <= 20 ms)")


def redelivery(
    edge: TestClient, database_url: str, channel: uuid.UUID, workspace: uuid.UUID, count: int
) -> None:
    """Outbound messages with provider ids, then their statuses: each message gets a random
    furthest state; every status webhook is delivered three times, all shuffled together."""
    states = ["sent", "delivered", "read", "failed"]
    rng = random.Random(42)  # noqa: S311 - a reproducible shuffle, no secret
    wanted: dict[str, str] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        conversation = conn.execute(
            "select id from public.conversations where channel_id = %s limit 1", (channel,)
        ).fetchone()
        assert conversation is not None
        for n in range(count):
            wamid = f"wamid.OUT{n:08d}"
            conn.execute(
                "insert into public.messages (workspace_id, conversation_id, channel_id, direction,"
                " text, provider_message_id, status)"
                " values (%s, %s, %s, 'outbound', 'Hi', %s, 'queued')",
                (workspace, conversation[0], channel, wamid),
            )
            final = rng.choice(states)
            wanted[wamid] = final
    deliveries = []
    for wamid, final in wanted.items():
        path = ["sent", "delivered", "read"] if final != "failed" else ["sent", "failed"]
        path = path[: path.index(final) + 1]
        for state in path:
            item: dict[str, Any] = {
                "id": wamid,
                "status": state,
                "timestamp": "1749416383",
                "recipient_id": "420777000111",
            }
            if state == "failed":
                item["errors"] = [{"code": 131026, "title": "Message undeliverable"}]
            deliveries.extend([json.dumps(envelope({"statuses": [item]})).encode()] * 3)
    rng.shuffle(deliveries)
    url = f"/api/v1/webhooks/whatsapp/{channel}"
    for body in deliveries:
        edge.post(url, content=body, headers=signed(body))
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "select provider_message_id, status,"
            " count(*) over (partition by provider_message_id) as copies from public.messages"
            " where channel_id = %s and provider_message_id like 'wamid.OUT%%'",
            (channel,),
        ).fetchall()
    wrong = [r for r in rows if r[1] != wanted[r[0]] or r[2] != 1]
    print(f"status webhooks (3x each, shuffled) {len(deliveries)} for {count} messages")
    right = len(rows) - len(wrong)
    print(
        f"messages in the right state        {right} of {count}   (wrong or doubled: {len(wrong)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--list-messages", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--redelivered", type=int, default=300)
    args = parser.parse_args(argv)
    with postgres.throwaway_database("growthbase_bench") as database_url:
        migrate(database_url)
        user, workspace, channel = prepare(database_url)
        settings = Settings(
            database_url=SecretStr(database_url),
            supabase_url=SUPABASE_URL,
            supabase_jwt_secret=SecretStr(SECRET),
            integrations_encryption_key=SecretStr(KEY),
            log_level="WARNING",
        )
        with (
            TestClient(create_app(settings)) as edge,
            TestClient(baseline_app(database_url)) as bare,
        ):
            throughput(edge, bare, channel, args.messages, args.rounds)
            redelivery(edge, database_url, channel, workspace, args.redelivered)
        started = time.perf_counter()
        fill(database_url, workspace, channel, args.conversations, args.list_messages)
        print(f"filled the inbox in                {time.perf_counter() - started:6.1f} s")
        list_latency(database_url, user, workspace, args.pages)
    return 0


if __name__ == "__main__":
    sys.exit(main())
