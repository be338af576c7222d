"""Benchmark: one campaign of 10,000 recipients through the send pipeline into moto's SES server,
against a plain boto3 loop sending the same messages to the same server, in the same run, with
issue 18's targets printed beside each figure.

    scripts/bench_send [--recipients N] [--concurrency N] [--pool-size N] [--warmup N]
    scripts/bench_send --fault [--recipients N]           # SES at 14/s with throttling bursts
    scripts/bench_send --recipients 1000000 --freeze-only  # start_campaign alone

The pipeline is `api.email.sender.send_due_emails`, as the email cron runs it: claim batches
from the send ledger (skip-locked, leased, drawn from the shared token bucket), and for each
recipient an unsubscribe token, the templates rendered, the raw MIME built, one SES SendEmail
call and the outcome recorded on the ledger row. It runs with the edge's defaults (8 send
threads, a pool of 5 connections) on a throwaway database, but with `max_per_second` at
1,000,000: the bucket is still drawn from on every claim, it just never holds anyone back, so
the figure is what the pipeline can do rather than the account's SES quota.

The baselines send exactly the messages the pipeline sent: the raw MIME bytes, sender,
recipient and tags of every SendEmail call the pipeline made are recorded as it makes them (a
list append), and the loops replay those requests with a plain boto3 `sesv2` client, so they do
nothing but SES calls. One loop is sequential; the other uses as many threads as the pipeline,
so the ratio against it compares like with like and shows what the ledger, rendering and MIME
cost on top of SES. The threaded loop runs twice, right before the pipeline (on the same
messages built as the pipeline builds them, before it runs) and after it, and the ratio is
taken against the mean of the two: the phases take half a minute each, and a change of the
machine's load between them would otherwise go into the ratio alone. All runs go to the same
moto server in this process (so SES time competes for the GIL with the sender, on both sides
alike), moto is reset before each timed run (it
keeps every message), every side is warmed up first (the pipeline with a small campaign of its
own, the loops with a few messages), and each run must have delivered exactly N messages to N
distinct recipients, or the benchmark fails.

Database time is counted on the client: a `Database` whose `connection()` adds up, per use,
the time waiting for a pooled connection and the time holding it — from hand-over to its return
to the pool: the round trip (the role switch, one private.send_round statement that records a
batch of outcomes and makes the next claim, and the commit, sent together), fetching its
answer, and the waits for the GIL while eight threads render and build MIME. The send threads
use no connection. Postgres's own time in those functions comes from pg_stat_user_functions
(track_functions = all on the throwaway database); server CPU is the pool's backends' user and
system time from /proc, read before the pool closes. The start time is `start_campaign`, which
freezes the audience into the ledger (and analyzes it, so the first claims already plan with
the new rows counted).

`--fault` runs a campaign (default 600 recipients) through a front before moto that plays SES
at 14 messages/s (GetAccount answers MaxSendRate 14, sends over it are throttled) and throttles
every send for one second in every ten; two workers drain at once, each in cron-sized runs of
20 s, until the campaign is sent. It fails unless moto accepted every recipient exactly once,
no row failed, the campaign became sent only after its last row was final, and our sends
never came faster than the rate (the busiest second of attempts reaching SES, with one send of
slack for network jitter).

`--freeze-only` builds a list of N contacts and times `start_campaign` (which counts the
audience, reserves it and freezes the first chunk) and then the rest of the freeze, a chunk per
transaction as the send cron does it.
"""

import argparse
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3
import psycopg
from botocore.config import Config
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from api.core.db import Connection, Database
from api.core.settings import Settings
from api.email.sender import (
    FREEZE_CHUNK_ROWS,
    SendPolicy,
    SendReport,
    message_for,
    render_row,
    send_due_emails,
    unsubscribe_url,
)
from api.email.ses import SesClient
from scripts import postgres
from scripts.migrate import migrate
from tests.factories.email import (
    SENDER_DOMAIN,
    add_contacts,
    draft_campaign,
    email_list,
    start,
    verified_sender,
)
from tests.factories.workspaces import User, create_user
from tests.fakes.ses_front import SesFront, ses_front
from tests.fakes.ses_server import REGION, moto_ses, reset, sent_raw_messages

if TYPE_CHECKING:
    from mypy_boto3_sesv2 import SESV2Client

EDGE = "https://edge.example.test"
MOTO_KEY = "testing"  # moto accepts any credentials
WARMUP_DOMAIN = "warmup.example.com"
# High enough that the token bucket never makes a claim wait.
UNCAPPED_PER_SECOND = 1_000_000.0
BUDGET_SECONDS = 3600.0
LOOP_WARMUP_MESSAGES = 50
CPU_SAMPLES = 1000
# What the main thread calls (top level only, so nested calls do not count twice), and what
# the send threads call.
MAIN_FUNCTIONS = (
    "start_due_campaigns",
    "release_first_sends",
    "ses_account_stale",
    "save_ses_account",
    "send_round",
    "finish_sent_campaigns",
)
SEND_FUNCTIONS: tuple[str, ...] = ()
# Issue 18's targets.
TARGET_RATIO = 0.9
TARGET_CONNECTION_MS = 0.1
TARGET_RECIPIENTS_PER_USE = 50
TARGET_FREEZE_1M_SECONDS = 20.0
FAULT_RATE = 14.0
FAULT_RECIPIENTS = 600
FAULT_TICK_SECONDS = 20.0


@dataclass
class Tally:
    """Connection use on one side: how many, how long waiting, how long held (seconds)."""

    uses: int = 0
    waited: float = 0.0
    held: float = 0.0


class TimedDatabase(Database):
    """The edge's Database, adding up the time spent waiting for and holding connections."""

    def __init__(self, url: str, *, pool_mode: str, max_size: int, timeout_seconds: float) -> None:
        super().__init__(
            url, pool_mode=pool_mode, max_size=max_size, timeout_seconds=timeout_seconds
        )
        self.lock = threading.Lock()
        self.main = Tally()
        self.workers = Tally()

    @contextmanager
    def connection(self, timeout_seconds: float | None = None) -> Iterator[Connection]:
        asked = time.perf_counter()
        handed = asked
        try:
            with super().connection(timeout_seconds) as conn:
                handed = time.perf_counter()
                yield conn
        finally:
            returned = time.perf_counter()
            with self.lock:
                side = (
                    self.main
                    if threading.current_thread() is threading.main_thread()
                    else self.workers
                )
                side.uses += 1
                side.waited += handed - asked
                side.held += returned - handed


@dataclass(frozen=True)
class Outgoing:
    raw: bytes
    sender: str
    recipient: str
    tags: tuple[tuple[str, str], ...]


class RecordingSes(SesClient):
    """The edge's SES client, remembering each request it sent (for the baselines to replay)."""

    def __init__(self, endpoint: str, connections: int) -> None:
        super().__init__(
            region=REGION,
            access_key_id=MOTO_KEY,
            secret_access_key=MOTO_KEY,
            endpoint_url=endpoint,
            configuration_set=None,
            max_connections=connections,
        )
        self.sent: list[Outgoing] = []

    def send_raw(
        self,
        raw: bytes,
        sender: str,
        recipient: str,
        tags: dict[str, str],
        tenant: str | None = None,
    ) -> str:
        message_id = super().send_raw(raw, sender, recipient, tags, tenant)
        self.sent.append(Outgoing(raw, sender, recipient, tuple(tags.items())))
        return message_id


@dataclass
class Setup:
    owner: User
    warmup_campaign: uuid.UUID | None
    campaign: uuid.UUID
    recipients: set[str]


def plain_client(endpoint: str, connections: int) -> "SESV2Client":
    return boto3.client(
        "sesv2",
        region_name=REGION,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_KEY,
        endpoint_url=endpoint,
        config=Config(max_pool_connections=connections),
    )


def fresh_moto(endpoint: str) -> None:
    """moto emptied (it keeps every message it accepted), with the senders' domains verified."""
    reset(endpoint)
    client = plain_client(endpoint, 1)
    for domain in (SENDER_DOMAIN, WARMUP_DOMAIN):
        client.create_email_identity(EmailIdentity=domain)


def check_delivered(endpoint: str, expected: set[str], label: str) -> None:
    recipients = [message["destinations"][0] for message in sent_raw_messages(endpoint)]
    if len(recipients) != len(expected) or set(recipients) != expected:
        raise SystemExit(
            f"{label}: moto accepted {len(recipients)} messages for {len(set(recipients))}"
            f" recipients ({len(set(recipients) - expected)} unexpected); expected"
            f" {len(expected)} messages to {len(expected)} distinct recipients"
        )


def prepare(conn: psycopg.Connection[DictRow], recipients: int, warmup: int) -> Setup:
    """A team workspace with the campaign's contacts in one list and, when warming up, a small
    campaign of other contacts from another verified domain; both campaigns are drafts."""
    # A throwaway database: lift the plan's limits rather than count against them.
    total = 2 * (recipients + warmup)
    conn.execute(
        "update public.plans set contact_limit = greatest(contact_limit, %s),"
        " monthly_email_limit = greatest(monthly_email_limit, %s)",
        (total, total),
    )
    owner = create_user(conn)
    contacts = add_contacts(conn, owner, recipients)
    campaign = draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, contacts, name="Bench")],
        sender_id=verified_sender(conn, owner),
    )
    warmup_campaign = None
    if warmup:
        warm_contacts = add_contacts(conn, owner, warmup, prefix="warmup")
        warmup_campaign = draft_campaign(
            conn,
            owner,
            list_ids=[email_list(conn, owner, warm_contacts, name="Warm-up")],
            sender_id=verified_sender(conn, owner, WARMUP_DOMAIN),
            from_email=f"hello@{WARMUP_DOMAIN}",
        )
    conn.execute("analyze")
    expected = {f"reader-{n}@mail.example.org" for n in range(1, recipients + 1)}
    return Setup(owner, warmup_campaign, campaign, expected)


def backends_gone(conn: psycopg.Connection[DictRow]) -> None:
    """Waits for the pool's server processes to exit, which flushes their statistics."""
    for _ in range(200):
        row = conn.execute(
            "select count(*) as n from pg_stat_activity where datname = current_database()"
            " and backend_type = 'client backend' and pid <> pg_backend_pid()"
        ).fetchone()
        if row is not None and row["n"] == 0:
            return
        time.sleep(0.05)
    raise SystemExit("the pool's connections did not close")


def pool_cpu_seconds(conn: psycopg.Connection[DictRow]) -> float:
    """CPU seconds (user and system) the pool's server processes have used so far, read from
    /proc (the server runs on this machine): Postgres's own work for the run, whatever the
    machine's load does to wall time."""
    pids = [
        row["pid"]
        for row in conn.execute(
            "select pid from pg_stat_activity where datname = current_database()"
            " and application_name = 'growthbase-edge'"
        )
    ]
    ticks = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def function_ms(conn: psycopg.Connection[DictRow]) -> dict[str, tuple[int, float]]:
    """Calls and total milliseconds per private function since the last statistics reset."""
    conn.execute("select pg_stat_clear_snapshot()")
    rows = conn.execute(
        "select funcname, calls, total_time from pg_stat_user_functions"
        " where schemaname = 'private'"
    ).fetchall()
    return {row["funcname"]: (int(row["calls"]), float(row["total_time"])) for row in rows}


def claimed_rows(
    conn: psycopg.Connection[DictRow], campaign: uuid.UUID, limit: int
) -> list[DictRow]:
    """Up to `limit` of the campaign's ledger rows, shaped as claims return them."""
    return conn.execute(
        "select r.id as recipient_id, r.campaign_id, r.workspace_id, r.contact_id, r.email,"
        " v.subject, v.html, v.text as text_body, c.from_name, c.from_email, c.reply_to,"
        " jsonb_build_object('email', ct.email, 'first_name', ct.first_name,"
        " 'last_name', ct.last_name, 'phone', ct.phone, 'attributes', ct.attributes) as contact"
        " from public.campaign_recipients r"
        " join public.campaign_variants v on v.id = r.variant_id"
        " join public.campaigns c on c.id = r.campaign_id"
        " join public.contacts ct on ct.id = r.contact_id"
        " where r.campaign_id = %s limit %s",
        (campaign, limit),
    ).fetchall()


def messages_before(
    conn: psycopg.Connection[DictRow], campaign: uuid.UUID, policy: SendPolicy, n: int
) -> list[Outgoing]:
    """The campaign's messages built as send_one builds them, before the pipeline runs, so a
    threaded loop can run on both sides of the pipeline's run (the pipeline's own recorded
    requests feed the loops after it)."""
    messages = []
    for row in claimed_rows(conn, campaign, n):
        link = unsubscribe_url(policy, row)
        raw = message_for(row, render_row(row, link), link)
        tags = (
            ("campaign_id", str(row["campaign_id"])),
            ("recipient_id", str(row["recipient_id"])),
        )
        messages.append(Outgoing(raw, row["from_email"], row["email"], tags))
    return messages


def cpu_per_message(
    conn: psycopg.Connection[DictRow], campaign: uuid.UUID, policy: SendPolicy, samples: int
) -> tuple[float, float, float]:
    """Seconds per message, on one thread, of what send_one does besides SES and the database:
    the unsubscribe token, rendering and the MIME message, for rows shaped as claims return
    them."""
    rows = claimed_rows(conn, campaign, samples)
    token = rendering = mime = 0.0
    for row in rows:
        began = time.perf_counter()
        link = unsubscribe_url(policy, row)
        linked = time.perf_counter()
        content = render_row(row, link)
        rendered = time.perf_counter()
        message_for(row, content, link)
        built = time.perf_counter()
        token += linked - began
        rendering += rendered - linked
        mime += built - rendered
    return token / len(rows), rendering / len(rows), mime / len(rows)


def boto3_loop(endpoint: str, messages: list[Outgoing], threads: int) -> float:
    """Wall seconds to send `messages` with a plain boto3 client: one SendEmail call each,
    the same request the edge's SesClient makes, prepared before the clock starts."""
    client = plain_client(endpoint, threads)
    requests: list[dict[str, Any]] = [
        {
            "FromEmailAddress": message.sender,
            "Destination": {"ToAddresses": [message.recipient]},
            "Content": {"Raw": {"Data": message.raw}},
            "EmailTags": [{"Name": name, "Value": value} for name, value in message.tags],
        }
        for message in messages
    ]

    def send(request: dict[str, Any]) -> str:
        return client.send_email(**request)["MessageId"]

    def run(batch: list[dict[str, Any]]) -> float:
        began = time.perf_counter()
        if threads == 1:
            for request in batch:
                send(request)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for _ in pool.map(send, batch):
                    pass
        return time.perf_counter() - began

    fresh_moto(endpoint)
    run(requests[:LOOP_WARMUP_MESSAGES])
    fresh_moto(endpoint)
    return run(requests)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = action()
    return time.perf_counter() - began, result


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def freeze_only(url: str, n: int) -> int:
    """Times start_campaign for a list of n contacts."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute(
            "update public.plans set contact_limit = greatest(contact_limit, %s),"
            " monthly_email_limit = greatest(monthly_email_limit, %s)",
            (2 * n, 2 * n),
        )
        owner = create_user(conn)
        build_seconds, _ = timed(lambda: add_contacts(conn, owner, n))
        # A list of all of them, written directly (a user's statement stops after 8 s).
        row = conn.execute(
            "insert into public.email_lists (workspace_id, name) values (%s, 'Everyone')"
            " returning id",
            (owner.workspace_id,),
        ).fetchone()
        assert row is not None
        conn.execute(
            "insert into public.email_list_members (list_id, workspace_id, contact_id)"
            " select %s, workspace_id, id from public.contacts where workspace_id = %s",
            (row["id"], owner.workspace_id),
        )
        campaign = draft_campaign(
            conn, owner, list_ids=[row["id"]], sender_id=verified_sender(conn, owner)
        )
        conn.execute("analyze")
        start_seconds, started = timed(lambda: start(conn, owner, campaign))
        if started != n:
            raise SystemExit(f"start_campaign counted {started} recipients, expected {n}")

        def freeze_rest() -> int:
            chunks = 0
            while True:
                with conn.transaction():
                    conn.execute("set local role service_role")
                    row = conn.execute(
                        "select private.freeze_campaign_chunk(%s, %s) as n",
                        (campaign, FREEZE_CHUNK_ROWS),
                    ).fetchone()
                if not row or not row["n"]:
                    return chunks
                chunks += 1

        rest_seconds, chunks = timed(freeze_rest)
        frozen = conn.execute(
            "select count(*) as n from public.campaign_recipients where campaign_id = %s",
            (campaign,),
        ).fetchone()
    if frozen is None or frozen["n"] != n:
        raise SystemExit(f"froze {frozen}, expected {n}")
    print(f"{n} contacts in one list (built in {build_seconds:.1f} s)")
    print(f"{'':52}{'measured s':>12}{'target s':>10}")
    target = TARGET_FREEZE_1M_SECONDS * n / 1_000_000
    print(
        f"{'start_campaign (count, reserve, first chunk)':52}{start_seconds:12.2f}{target:10.1f}"
        f"  {verdict(start_seconds <= target)}"
    )
    rest = f"the rest, {chunks} chunks of {FREEZE_CHUNK_ROWS:,} (send cron)"
    print(f"{rest:52}{rest_seconds:12.2f}")
    total = start_seconds + rest_seconds
    print(
        f"{'the whole audience frozen':52}{total:12.2f}{target:10.1f}  {verdict(total <= target)}"
    )
    return 0


def fault_run(url: str, n: int, concurrency: int, pool_size: int) -> int:
    """Two workers in cron-sized runs against SES at 14/s with throttling bursts."""
    front = SesFront(max_send_rate=FAULT_RATE, burst_every=10.0, burst_seconds=1.0)
    logging.getLogger("growthbase.email").setLevel(logging.ERROR)
    with moto_ses() as moto, ses_front(moto, front) as endpoint:
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            setup = prepare(conn, n, 0)
            fresh_moto(moto)
            start(conn, setup.owner, setup.campaign)
            policy = SendPolicy(
                link_secret="bench-" + uuid.uuid4().hex,
                link_days=30,
                # Our ceiling is above SES's: GetAccount's 14/s is what holds.
                max_per_second=1000.0,
                concurrency=concurrency,
                base_url=EDGE,
            )
            limit = time.monotonic() + 3 * n / FAULT_RATE + 120
            reports: list[SendReport] = []
            lock = threading.Lock()

            def status() -> str:
                row = conn.execute(
                    "select status from public.campaigns where id = %s", (setup.campaign,)
                ).fetchone()
                return str(row["status"]) if row else "missing"

            def worker() -> None:
                database = Database(
                    url, pool_mode="session", max_size=pool_size, timeout_seconds=30
                )
                database.open()
                ses = SesClient(
                    region=REGION,
                    access_key_id=MOTO_KEY,
                    secret_access_key=MOTO_KEY,
                    endpoint_url=endpoint,
                    configuration_set=None,
                    max_connections=concurrency,
                )
                try:
                    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as own:
                        while time.monotonic() < limit:
                            report = send_due_emails(database, ses, policy, FAULT_TICK_SECONDS)
                            with lock:
                                reports.append(report)
                            row = own.execute(
                                "select status from public.campaigns where id = %s",
                                (setup.campaign,),
                            ).fetchone()
                            if row and row["status"] == "sent":
                                return
                finally:
                    database.close()

            began = time.perf_counter()
            workers = [threading.Thread(target=worker) for _ in range(2)]
            for thread in workers:
                thread.start()
            for thread in workers:
                thread.join()
            seconds = time.perf_counter() - began
            final = status()
            ledger = conn.execute(
                "select count(*) filter (where r.status = 'sent') as sent,"
                " count(*) filter (where r.status = 'failed') as failed,"
                " count(*) filter (where r.status in ('queued', 'sending')) as open,"
                " max(r.attempts) as most_attempts,"
                " bool_and(c.finished_at >= r.sent_at) filter (where r.status = 'sent') as after"
                " from public.campaign_recipients r join public.campaigns c on c.id = r.campaign_id"
                " where r.campaign_id = %s",
                (setup.campaign,),
            ).fetchone()
            account = conn.execute(
                "select rate, max_send_rate, throttles from private.ses_accounts"
                " where account = 'default'"
            ).fetchone()
        check_delivered(moto, setup.recipients, "fault run")
    assert ledger is not None and account is not None
    busiest = front.busiest_second(front.attempts)
    problems = []
    if final != "sent" or ledger["sent"] != n or ledger["failed"] or ledger["open"]:
        problems.append(f"campaign {final}, ledger {dict(ledger)}")
    if not ledger["after"]:
        problems.append("the campaign was marked sent before its last row was final")
    if busiest > FAULT_RATE + 1:
        problems.append(f"{busiest} sends reached SES within one second (rate {FAULT_RATE:g})")
    print(
        f"fault mode: {n} recipients, SES at {FAULT_RATE:g}/s with every send throttled for 1 s"
        f" in every 10; two workers in {FAULT_TICK_SECONDS:g}-s runs ({len(reports)} runs)"
    )
    print(f"  wall {seconds:.1f} s, {n / seconds:.1f} msgs/s (SES allows {FAULT_RATE:g})")
    print(
        f"  delivered {n} of {n}, each exactly once; failed {ledger['failed']};"
        f" most attempts on a row {ledger['most_attempts']}"
    )
    print(
        f"  throttled by SES {front.throttled} times (recorded {account['throttles']});"
        f" rate in force at the end {account['rate']:.1f}/s,"
        f" GetAccount's {account['max_send_rate']}"
    )
    print(
        f"  busiest second of attempts reaching SES: {busiest} (limit {FAULT_RATE:g} + 1)"
        f"  {verdict(busiest <= FAULT_RATE + 1)}"
    )
    print(f"  campaign {final}, finished after its last send: {bool(ledger['after'])}")
    if problems:
        raise SystemExit("fault run: " + "; ".join(problems))
    return 0


def main(argv: list[str] | None = None) -> int:
    defaults = Settings.model_fields
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=None)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=defaults["ses_send_concurrency"].default,
        help="send threads (default: SES_SEND_CONCURRENCY's default)",
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=defaults["database_pool_max_size"].default,
        help="database connections (default: DATABASE_POOL_MAX_SIZE's default)",
    )
    parser.add_argument(
        "--warmup", type=int, default=200, help="recipients of the warm-up campaign (0: none)"
    )
    parser.add_argument("--fault", action="store_true", help="SES at 14/s with throttling bursts")
    parser.add_argument("--freeze-only", action="store_true", help="time start_campaign alone")
    args = parser.parse_args(argv)
    n: int = args.recipients or (FAULT_RECIPIENTS if args.fault else 10_000)
    if n < 1 or args.concurrency < 1 or args.pool_size < 1 or args.warmup < 0:
        parser.error("--recipients, --concurrency and --pool-size must be positive")
    # moto's server logs every request through werkzeug.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if args.freeze_only or args.fault:
        with postgres.throwaway_database("growthbase_bench") as url:
            migrate(url)
            if args.freeze_only:
                return freeze_only(url, n)
            return fault_run(url, n, args.concurrency, args.pool_size)
    policy = SendPolicy(
        link_secret="bench-" + uuid.uuid4().hex,
        link_days=defaults["unsubscribe_link_days"].default,
        max_per_second=UNCAPPED_PER_SECOND,
        concurrency=args.concurrency,
        base_url=EDGE,
    )

    with (
        postgres.throwaway_database("growthbase_bench") as url,
        moto_ses() as endpoint,
    ):
        migrate(url)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            conn.execute(
                sql.SQL("alter database {} set track_functions = 'all'").format(
                    sql.Identifier(conn.info.dbname)
                )
            )
            setup = prepare(conn, n, args.warmup)
            ses = RecordingSes(endpoint, args.concurrency)

            if setup.warmup_campaign is not None:
                fresh_moto(endpoint)
                start(conn, setup.owner, setup.warmup_campaign)
                warm = Database(
                    url, pool_mode="session", max_size=args.pool_size, timeout_seconds=30
                )
                warm.open()
                try:
                    send_due_emails(warm, ses, policy, BUDGET_SECONDS)
                finally:
                    warm.close()
                backends_gone(conn)
            conn.execute("select pg_stat_reset()")
            ses.sent.clear()

            fresh_moto(endpoint)
            freeze_seconds, started = timed(lambda: start(conn, setup.owner, setup.campaign))
            if started != n:
                raise SystemExit(f"start_campaign froze {started} recipients, expected {n}")
            # The threaded loop runs right before the pipeline and again right after it, so a
            # change of the machine's load during the run weighs on both sides of the ratio.
            threaded_before_seconds = boto3_loop(
                endpoint, messages_before(conn, setup.campaign, policy, n), args.concurrency
            )
            check_delivered(endpoint, setup.recipients, "boto3 loop before the pipeline")
            fresh_moto(endpoint)
            database = TimedDatabase(
                url, pool_mode="session", max_size=args.pool_size, timeout_seconds=30
            )
            database.open()
            try:
                pipeline_seconds, report = timed(
                    lambda: send_due_emails(database, ses, policy, BUDGET_SECONDS)
                )
                server_cpu = pool_cpu_seconds(conn)
            finally:
                database.close()
            if report.sent != n or report.failed or report.retrying:
                raise SystemExit(f"pipeline: {report.as_dict()}, expected {n} sent")
            check_delivered(endpoint, setup.recipients, "pipeline")
            ledger = conn.execute(
                "select count(*) filter (where status = 'sent') as sent,"
                " count(distinct ses_message_id) as ids"
                " from public.campaign_recipients where campaign_id = %s",
                (setup.campaign,),
            ).fetchone()
            if ledger is None or ledger["sent"] != n or ledger["ids"] != n:
                raise SystemExit(f"pipeline: the ledger shows {ledger}, expected {n} sent")
            backends_gone(conn)
            functions = function_ms(conn)
            token_s, render_s, mime_s = cpu_per_message(
                conn, setup.campaign, policy, min(n, CPU_SAMPLES)
            )

        messages = list(ses.sent)
        if len({message.recipient for message in messages}) != n or len(messages) != n:
            raise SystemExit(f"recorded {len(messages)} pipeline requests, expected {n}")
        sequential_seconds = boto3_loop(endpoint, messages, 1)
        check_delivered(endpoint, setup.recipients, "boto3 loop, sequential")
        threaded_after_seconds = boto3_loop(endpoint, messages, args.concurrency)
        check_delivered(endpoint, setup.recipients, f"boto3 loop, {args.concurrency} threads")

    threaded_seconds = (threaded_before_seconds + threaded_after_seconds) / 2
    rate = n / pipeline_seconds
    sequential = n / sequential_seconds
    threaded = n / threaded_seconds
    main_side, workers = database.main, database.workers

    def per(seconds: float) -> float:
        return 1000 * seconds / n

    def inside(names: tuple[str, ...]) -> float:
        return sum(functions.get(name, (0, 0.0))[1] for name in names) / 1000

    defaulted = (
        " (the edge's defaults)"
        if (args.concurrency, args.pool_size)
        == (defaults["ses_send_concurrency"].default, defaults["database_pool_max_size"].default)
        else ""
    )
    print(
        f"{n} recipients; {args.concurrency} send threads and a pool of {args.pool_size}"
        f" connections{defaulted};\nrate limit lifted (max_per_second {UNCAPPED_PER_SECOND:,.0f})"
    )
    print()
    print(f"{'':40}{'msgs/s':>9}{'wall s':>10}")
    for label, per_second, seconds in (
        ("pipeline (send_due_emails)", rate, pipeline_seconds),
        ("boto3 loop, sequential", sequential, sequential_seconds),
        (
            f"boto3 loop, {args.concurrency} threads, before",
            n / threaded_before_seconds,
            threaded_before_seconds,
        ),
        (
            f"boto3 loop, {args.concurrency} threads, after",
            n / threaded_after_seconds,
            threaded_after_seconds,
        ),
        (f"boto3 loop, {args.concurrency} threads, mean", threaded, threaded_seconds),
    ):
        print(f"{label:40}{per_second:9.1f}{seconds:10.2f}")
    print(f"{'start_campaign (freezes the audience)':40}{'':9}{freeze_seconds:10.2f}")
    print()
    uses = main_side.uses + workers.uses
    connection_ms = per(main_side.held + workers.held + main_side.waited + workers.waited)
    print(f"{'against the targets':46}{'measured':>10}{'target':>10}")
    for label, measured, target, met in (
        (
            f"pipeline / {args.concurrency}-thread loop",
            f"{rate / threaded:.2f}",
            f">= {TARGET_RATIO}",
            rate / threaded >= TARGET_RATIO,
        ),
        ("pipeline / sequential loop", f"{rate / sequential:.2f}", "", None),
        (
            "database connection ms per recipient",
            f"{connection_ms:.3f}",
            f"<= {TARGET_CONNECTION_MS}",
            connection_ms <= TARGET_CONNECTION_MS,
        ),
        (
            "recipients per connection use",
            f"{n / uses:.0f}",
            f">= {TARGET_RECIPIENTS_PER_USE}",
            n / uses >= TARGET_RECIPIENTS_PER_USE,
        ),
    ):
        print(
            f"  {label:44}{measured:>10}{target:>10}"
            + (f"  {verdict(met)}" if met is not None else "")
        )
    print()
    print(f"{'database, ms per recipient':32}{'all':>8}{'main thread':>14}{'send threads':>15}")
    rows = (
        ("holding a connection", main_side.held, workers.held),
        ("waiting for the pool", main_side.waited, workers.waited),
        ("inside Postgres's functions", inside(MAIN_FUNCTIONS), inside(SEND_FUNCTIONS)),
    )
    for label, on_main, on_workers in rows:
        print(
            f"  {label:30}{per(on_main + on_workers):8.3f}{per(on_main):14.3f}"
            f"{per(on_workers):15.3f}"
        )
    print(f"  {'connection uses':30}{uses:8}{main_side.uses:14}{workers.uses:15}")
    print(
        f"  {'server CPU (the pool)':30}{per(server_cpu):8.3f}"
        f"   ({server_cpu:.2f} s for the run; wall {pipeline_seconds:.2f} s;"
        f" load average {' '.join(f'{x:.1f}' for x in os.getloadavg())})"
    )
    print(
        "  of which, ms per recipient: "
        + ", ".join(
            f"{name} {per(functions.get(name, (0, 0.0))[1] / 1000):.3f}"
            for name in (
                "send_round",
                "claim_email_rows",
                "may_send_to",
                "record_email_outcomes",
                "count_deliverability",
                "count_warmup_sends",
            )
        )
        + " (the others run inside send_round)"
    )
    print()
    print(
        f"CPU per message besides SES and the database, ms (one thread, {min(n, CPU_SAMPLES)}"
        f" messages):\n  unsubscribe token {1000 * token_s:.3f}, render {1000 * render_s:.3f},"
        f" MIME {1000 * mime_s:.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
