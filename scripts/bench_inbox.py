"""Benchmark of the inbox, each figure beside a baseline measured in the same run, on a
throwaway database with Meta played by nothing (inbound only) and the edge served by uvicorn on
127.0.0.1 (a real server, so a webhook's answer goes out before its background work):

1. Inbound messages through the signed WhatsApp webhook (signature check, the delivery stored;
   applied into conversations right after the answer, in batches: identities, contacts,
   counters, broadcasts) against a route of the same edge doing one plain insert per request.
   The sides take turns in rounds; after each webhook round the bench waits for the queue to be
   applied and counts that wait too. Target: answers at least 60 % of the baseline's rate.
   Printed beside it: the rate with the apply's wait included, the wait after the last answer,
   how many deliveries a drain applied at once, and each delivery's time from stored to
   applied (end to end in the database).
2. The apply alone, in SQL: stored deliveries drained in sets against the same number applied
   one at a time (a transaction each): what batching saves when deliveries arrive together.
3. Redelivery: statuses of sent messages, every webhook delivered three times in shuffled
   order: each message must end as one row in its furthest state.
4. The inbox list: a page of a workspace's open conversations (100k conversations, 1M
   messages by default, written set-based with generate_series), newest first, with the
   member's unread counts, read as the member under RLS through `inbox_conversations`, against
   the same page read from the table alone by the superuser; its plan is checked for index
   use (no sequential scan of conversations or messages). Target: at most 20 ms a page.
"""

import argparse
import hashlib
import hmac
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import psycopg
import uvicorn
from cryptography.fernet import Fernet
from fastapi import Depends, FastAPI
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from api.app import create_app
from api.core.db import become_user
from api.core.deps import ServiceDatabase
from api.core.settings import Settings
from api.webhooks.body import raw_body
from scripts import postgres
from scripts.migrate import migrate

SECRET = "bench-" + uuid.uuid4().hex
APP_SECRET = "app-" + uuid.uuid4().hex
SUPABASE_URL = "http://127.0.0.1:54321"
KEY = Fernet.generate_key().decode()
NUMBER = "106540352242922"


def edge_with_baseline(settings: Settings) -> FastAPI:
    """The edge as deployed, plus `/bench/baseline`: a route of the same edge (same middleware,
    dependencies, pool and threads) doing one plain insert per request."""
    app = create_app(settings)

    @app.post("/bench/baseline")
    def baseline(
        body: Annotated[bytes, Depends(raw_body)], database: ServiceDatabase
    ) -> dict[str, Any]:
        with database.connection() as conn:
            conn.execute("insert into bench_baseline (payload) values (%s)", (body.decode(),))
        return {"data": {"outcome": "accepted"}, "error": None}

    return app


@contextmanager
def serve(app: FastAPI) -> Iterator[httpx.Client]:
    """uvicorn on a free loopback port in a thread; a keep-alive client to it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise SystemExit("the edge did not start")
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(timeout=60)


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


PENDING = (
    "select count(*) filter (where attempts = 0), count(*) filter (where attempts > 0)"
    " from private.webhook_events where provider = 'whatsapp' and status = 'received'"
)


def wait_applied(conn: psycopg.Connection[Any], limit_seconds: float = 600) -> float:
    """Seconds until no WhatsApp delivery waits for its first apply (polled every 2 ms)."""
    started = time.perf_counter()
    while True:
        row = conn.execute(PENDING).fetchone()
        assert row is not None
        if row[0] == 0:
            return time.perf_counter() - started
        if time.perf_counter() - started > limit_seconds:
            raise SystemExit(f"{row[0]} deliveries still not applied after {limit_seconds} s")
        time.sleep(0.002)


def edge_backends_cpu(conn: psycopg.Connection[Any]) -> float | None:
    """CPU seconds (user + system) the Postgres backends of the edge's pool (in this run's
    database) have used so far, from /proc (the server runs on this machine); None when they
    cannot be read there."""
    total = 0
    pids = conn.execute(
        "select pid from pg_stat_activity"
        " where application_name = 'growthbase-edge' and datname = current_database()"
    ).fetchall()
    try:
        for (pid,) in pids:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None
    return total / os.sysconf("SC_CLK_TCK")


def throughput(
    client: httpx.Client, database_url: str, channel: uuid.UUID, messages: int, rounds: int
) -> float:
    """The two sides take turns, a slice of the messages each per round, so a change in the
    machine's load (other suites run beside this) weighs on both alike. Answers the ratio."""
    senders = [f"4207{n:08d}" for n in range(max(messages // 10, 1))]
    url = f"/api/v1/webhooks/whatsapp/{channel}"
    # Distinct messages for each side (and the warm-up), so none is a duplicate of another's.
    bodies = [inbound(senders[i % len(senders)], i) for i in range(2 * messages + 100)]
    warm_up, bodies = bodies[:100], bodies[100:]

    def to_edge(body: bytes) -> Callable[[], int]:
        return lambda: client.post(url, content=body, headers=signed(body)).status_code

    def to_baseline(body: bytes) -> Callable[[], int]:
        return lambda: client.post("/bench/baseline", content=body).status_code

    with psycopg.connect(database_url, autocommit=True) as conn:
        timed([to_edge(body) for body in warm_up[:50]])
        timed([to_baseline(body) for body in warm_up[50:]])
        wait_applied(conn)
        started_at = conn.execute("select clock_timestamp()").fetchone()
        sides: dict[str, list[float]] = {"baseline": [], "edge": []}
        # Postgres CPU of the edge's backends and this process's CPU (the edge, and the client
        # alike on both sides), per side; the edge's includes applying its deliveries.
        server = {"baseline": 0.0, "edge": 0.0}
        process = {"baseline": 0.0, "edge": 0.0}
        readable = [True]
        waits: list[float] = []
        last_delivery: list[float] = []
        size = max(messages // rounds, 1)

        def side(name: str, calls: list[Callable[[], int]], wait: bool) -> None:
            before, cpu = edge_backends_cpu(conn), time.process_time()
            sides[name] += timed(calls)
            if wait:
                waits.append(wait_applied(conn))
                last_delivery.append(sides[name][-1] + waits[-1])
            after = edge_backends_cpu(conn)
            process[name] += time.process_time() - cpu
            if before is None or after is None:
                readable[0] = False
            else:
                server[name] += after - before

        for start in range(0, messages, size):
            side("baseline", [to_baseline(b) for b in bodies[start : start + size]], False)
            part = bodies[messages + start : messages + start + size]
            side("edge", [to_edge(b) for b in part], True)
        assert started_at is not None
        applied = conn.execute(
            "select count(*), count(distinct processed_at),"
            " percentile_cont(array[0.5, 0.95]) within group"
            "  (order by extract(epoch from processed_at - received_at)),"
            " max(extract(epoch from processed_at - received_at)),"
            " count(*) filter (where status <> 'applied')"
            " from private.webhook_events where provider = 'whatsapp' and received_at >= %s",
            (started_at[0],),
        ).fetchone()
        failed = conn.execute(PENDING).fetchone()
    assert applied is not None and failed is not None
    rate = {side: len(times) / sum(times) for side, times in sides.items()}
    median = {side: statistics.median(times) * 1000 for side, times in sides.items()}
    with_apply = len(sides["edge"]) / (sum(sides["edge"]) + sum(waits))
    ratio = rate["edge"] / rate["baseline"]
    print(f"inbound messages per side           {messages} (in {rounds} alternating rounds)")
    print(f"baseline: one plain insert/request  {rate['baseline']:8.1f} req/s", end="")
    print(f"   median {median['baseline']:6.2f} ms")
    print(f"signed webhook (stored, answered)   {rate['edge']:8.1f} req/s", end="")
    print(f"   median {median['edge']:6.2f} ms   ratio {ratio:5.2f}   (target >= 0.60)")
    print(f"  with the wait for the apply       {with_apply:8.1f} msg/s", end="")
    print(f"                     ratio {with_apply / rate['baseline']:5.2f}")
    wait, last = statistics.median(waits) * 1000, statistics.median(last_delivery) * 1000
    print(f"  queue applied after last answer   median {wait:7.1f} ms", end="")
    print(f"   max {max(waits) * 1000:7.1f} ms")
    print(f"  a round's last delivery, sent -> applied   median {last:7.1f} ms", end="")
    print(f"   max {max(last_delivery) * 1000:7.1f} ms")
    print(f"  deliveries applied                {applied[0]} in {applied[1]} drains", end="")
    print(f" ({applied[0] / max(applied[1], 1):.1f} a drain); not applied: {applied[4]};", end="")
    print(f" failed applies: {failed[1]}")
    print(f"  stored -> its drain began (db)    p50 {applied[2][0] * 1000:7.1f} ms", end="")
    print(f"   p95 {applied[2][1] * 1000:7.1f} ms   max {applied[3] * 1000:7.1f} ms")
    for name in ("baseline", "edge"):
        pg = f"{server[name] / len(sides[name]) * 1000:6.2f} ms" if readable[0] else "unknown"
        print(f"  CPU per request, {name:8s}         Postgres {pg}", end="")
        print(f"   edge and client {process[name] / len(sides[name]) * 1000:6.2f} ms")
    return ratio


def drain_rate(database_url: str, channel: uuid.UUID, count: int) -> None:
    """The apply alone, in SQL, with no edge: `count` deliveries stored at once, then applied
    by the drain (batches of 500, one set each), against as many applied one at a time (each
    its own transaction), the two taking turns in halves."""
    senders = [f"4208{n:08d}" for n in range(max(count // 10, 1))]

    def stored(conn: psycopg.Connection[Any], offset: int, size: int) -> list[uuid.UUID]:
        ids = []
        for n in range(offset, offset + size):
            body = inbound(senders[n % len(senders)], 10**9 + n).decode()
            row = conn.execute(
                "select id from private.record_webhook_event('whatsapp', %s, %s)",
                (f"{channel}:{hashlib.sha256(body.encode()).hexdigest()}", body),
            ).fetchone()
            assert row is not None
            ids.append(row[0])
        return ids

    half = max(count // 2, 1)
    batched = single = 0.0
    with psycopg.connect(database_url, autocommit=True) as conn:
        for part in range(2):
            with conn.transaction():
                stored(conn, 2 * part * half, half)
            started = time.perf_counter()
            while True:
                taken = conn.execute("select private.apply_inbox_queue(500)").fetchone()
                if taken is None or taken[0] == 0:
                    break
            batched += time.perf_counter() - started
            with conn.transaction():
                ids = stored(conn, (2 * part + 1) * half, half)
            started = time.perf_counter()
            for event in ids:
                conn.execute("select private.apply_inbox_event('whatsapp', %s)", (event,))
            single += time.perf_counter() - started
        left = conn.execute(PENDING).fetchone()
    assert left is not None
    print(f"the apply alone (SQL), {2 * half} stored deliveries a side, in two turns")
    print(f"  one at a time, a transaction each {2 * half / single:8.1f} deliveries/s", end="")
    print(f"   {single / (2 * half) * 1000:6.2f} ms each")
    print(f"  drained in sets of up to 500      {2 * half / batched:8.1f} deliveries/s", end="")
    print(f"   {batched / (2 * half) * 1000:6.2f} ms each   ({single / batched:.1f}x);", end="")
    print(f" left unapplied: {left[0] + left[1]}")


def fill(
    database_url: str,
    user: uuid.UUID,
    workspace: uuid.UUID,
    channel: uuid.UUID,
    conversations: int,
    messages: int,
) -> None:
    """Conversations and messages written set-based with generate_series, a chunk per
    statement; the member has read a third of the conversations (all or all but a few of their
    messages)."""
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
        # Seed data: the messages' triggers (counters, broadcasts, replies, media) are skipped
        # and the conversations' counters written once below, as the triggers would keep them.
        conn.execute("set session_replication_role = replica")
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
        conn.execute(
            "update public.conversations c set message_count = d.n, inbound_count = d.n,"
            " last_inbound_at = c.last_message_at"
            " from (select conversation_id, count(*)::integer as n from public.messages"
            "       where channel_id = %s and provider_message_id like 'wamid.FILL%%'"
            "       group by conversation_id) as d"
            " where c.id = d.conversation_id",
            (channel,),
        )
        conn.execute("reset session_replication_role")
        conn.execute(
            "insert into public.conversation_reads (conversation_id, user_id, workspace_id,"
            " read_inbound_count)"
            " select c.id, %s, c.workspace_id,"
            "  greatest(c.inbound_count - abs(hashtext(c.id::text)) %% 3, 0)"
            " from public.conversations c"
            " where c.channel_id = %s and abs(hashtext(c.id::text)) %% 3 = 0"
            " on conflict do nothing",
            (user, channel),
        )
        conn.execute("analyze public.conversations")
        conn.execute("analyze public.messages")
        conn.execute("analyze public.conversation_reads")


def page_query(source: str, unread: str, after: bool) -> sql.Composed:
    """A page of open conversations newest first; with `after`, the page after the row
    (`after_at`, `after_id`): the last of the page before (keyset pagination)."""
    return sql.SQL(
        "select id, status, last_message_at, {unread}, priority, labels from {source}"
        " where workspace_id = %(workspace)s and status = 'open' {after}"
        " order by last_message_at desc, id desc limit 25"
    ).format(
        unread=sql.Identifier(unread),
        source=sql.Identifier("public", source),
        after=sql.SQL("and (last_message_at, id) < (%(after_at)s, %(after_id)s)" if after else ""),
    )


WATCHED = {"conversations", "messages", "conversation_reads"}


def scans(plan: dict[str, Any]) -> list[str]:
    """Every scan of the plan as `<node> on <relation> [using <index>]`."""
    found = []
    if "Relation Name" in plan:
        index = f" using {plan['Index Name']}" if "Index Name" in plan else ""
        found.append(f"{plan['Node Type']} on {plan['Relation Name']}{index}")
    for child in plan.get("Plans", []):
        found += scans(child)
    return found


def list_latency(
    database_url: str, user: uuid.UUID, workspace: uuid.UUID, pages: int
) -> tuple[float, bool]:
    """Walks `pages` pages newest first (keyset: each page after the last row of the one
    before), as the member and from the table; answers the member's median and whether its
    plan used indexes only on the inbox's tables."""
    claims = {"sub": str(user), "role": "authenticated", "aud": "authenticated"}
    first: dict[str, Any] = {"workspace": workspace}
    member_query = (
        page_query("inbox_conversations", "unread_count", False),
        page_query("inbox_conversations", "unread_count", True),
    )
    table_query = (
        page_query("conversations", "inbound_count", False),
        page_query("conversations", "inbound_count", True),
    )
    with psycopg.connect(database_url) as conn:
        with conn.transaction():
            # A few conversations read, so the unread counts differ.
            become_user(conn, claims)
            for row in conn.execute(member_query[0], first).fetchall()[:5]:
                conn.execute("select public.mark_conversation_read(%s)", (row[0],))

        def walk(query: tuple[sql.Composed, sql.Composed], as_member: bool) -> list[float]:
            times = []
            params: dict[str, Any] = dict(first)
            for _ in range(pages):
                with conn.transaction():
                    if as_member:
                        become_user(conn, claims)
                    started = time.perf_counter()
                    rows = conn.execute(query[len(params) > 1], params).fetchall()
                    times.append((time.perf_counter() - started) * 1000)
                assert len(rows) == 25
                params = {"workspace": workspace, "after_at": rows[-1][2], "after_id": rows[-1][0]}
            return times

        baseline = walk(table_query, False)
        member = walk(member_query, True)
        plans = []
        later: dict[str, Any] = {
            "workspace": workspace,
            "after_at": datetime.now(UTC),
            "after_id": uuid.UUID(int=0),
        }
        for query, params in zip(member_query, (first, later), strict=True):
            with conn.transaction():
                become_user(conn, claims)
                explained = conn.execute(
                    sql.SQL("explain (format json) ") + query, params
                ).fetchone()
                assert explained is not None
                plans.append(scans(explained[0][0]["Plan"]))
        counts = conn.execute(
            "select (select count(*) from public.conversations where workspace_id = %s),"
            " (select count(*) from public.messages where workspace_id = %s)",
            (workspace, workspace),
        ).fetchone()
    assert counts is not None
    seq = [
        scan
        for plan in plans
        for scan in plan
        if scan.startswith("Seq Scan") and scan.split(" on ")[1] in WATCHED
    ]
    print(f"workspace size                      {counts[0]} conversations, {counts[1]} messages")
    print(f"{pages} pages of 25 open conversations, newest first, each after the one before")
    table, mine = statistics.median(baseline), statistics.median(member)
    print(f"baseline (table, no RLS) page       median {table:6.2f} ms", end="")
    print(f"   max {max(baseline):6.2f} ms")
    print(f"inbox page as member (RLS, unread)  median {mine:6.2f} ms", end="")
    print(f"   max {max(member):6.2f} ms   (target <= 20 ms)")
    print(f"plan of the member's page           {'; '.join(sorted(set(plans[0] + plans[1])))}")
    print(
        f"sequential scans of inbox tables    {len(seq)}" + (f": {', '.join(seq)}" if seq else "")
    )
    return statistics.median(member), not seq


def redelivery(
    edge: httpx.Client, database_url: str, channel: uuid.UUID, workspace: uuid.UUID, count: int
) -> bool:
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
        answer = edge.post(url, content=body, headers=signed(body))
        if answer.status_code >= 400:
            raise SystemExit(f"a status webhook failed with {answer.status_code}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        wait_applied(conn)
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
    return right == count and not wrong


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--list-messages", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--redelivered", type=int, default=300)
    parser.add_argument("--drained", type=int, default=2_000)
    args = parser.parse_args(argv)
    print("load average at start               {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
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
        with serve(edge_with_baseline(settings)) as client:
            ratio = throughput(client, database_url, channel, args.messages, args.rounds)
            redelivered = redelivery(client, database_url, channel, workspace, args.redelivered)
        drain_rate(database_url, channel, args.drained)
        started = time.perf_counter()
        fill(database_url, user, workspace, channel, args.conversations, args.list_messages)
        print(f"filled the inbox in                 {time.perf_counter() - started:6.1f} s")
        page, indexed = list_latency(database_url, user, workspace, args.pages)
    print("load average at end                 {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print(
        "summary: webhook/baseline {:.2f} (>= 0.60: {}); page {:.2f} ms (<= 20: {}, indexed: {});"
        " triple shuffled statuses right: {}".format(
            ratio,
            "met" if ratio >= 0.6 else "NOT met",
            page,
            "met" if page <= 20 else "NOT met",
            "yes" if indexed else "no",
            "yes" if redelivered else "NO",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
