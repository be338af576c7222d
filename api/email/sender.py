"""The send worker: drains the campaign send ledger through SES as fast as the account allows.

Rows are claimed in the database (skip-locked, leased, each with the send slot of the SES
account's shared pacing state), rendered and sent by a pool of threads outside any
transaction, and their outcomes come back to the database a batch at a time, in the same call
as the next claim (private.send_round): one statement per batch, whose one jsonb answer carries
the claimed rows, each template and each campaign's sender, inbox reply domains and SES tenant
once. The pooled connection is held for that statement alone (sent in one round trip with the
role switch and the commit), never while SES is called. Retry policy, backoff, the rate (AIMD)
and the breaker live in SQL; this module only moves messages.

A crash loses the outcomes not yet recorded (at most about two seconds' worth): those rows are
claimed again when their lease runs out, and SES's `Send` event for each message it accepted
marks the row sent before then (any event does), so it does not go twice.
"""

import dataclasses
import json
import logging
import math
import re
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import psycopg
from psycopg.types.json import Jsonb

from api.core.db import Database
from api.core.errors import ApiError
from api.email import unsubscribe_tokens
from api.email.message import build_message
from api.email.ses import SesClient, SesError
from api.email.templates import EmailContent, RenderedEmail, RenderError, render
from api.email.tenants import prepare, refresh_tenancy

log = logging.getLogger("growthbase.email")
UNSUBSCRIBE_PATH = "/api/v1/unsubscribe"
# Rows claimed per batch, per send thread; a new batch is claimed when half are done, and
# every round that records outcomes tops the batch up (issue 18: each round has a fixed cost, in
# the database and in waiting for the GIL while eight send threads render, so fewer, larger
# rounds cost less per recipient).
ROWS_PER_THREAD = 128
# A claimed row stays invisible to other workers this long...
LEASE_SECONDS = 120
# ...and is given back unsent if its send could not start this long before the lease ends (an
# SES call takes at most a connect plus a read timeout, 25 s), so no row outlives its claim.
LEASE_MARGIN_SECONDS = 35
# Outcomes wait at most this long before they are recorded (the ledger, the deliverability
# counts and realtime see a sent row this late at most).
FLUSH_SECONDS = 2.0
# Rounds in a row that found due rows but claimed none (all skipped, or held by another
# worker's open claim) before this run gives up.
IDLE_ROUNDS = 20
# How long to wait before trying the database again when the pool had no connection for us.
DATABASE_RETRY_SECONDS = 1.0
AMBIGUOUS_RETRY_SECONDS = 600
# Audiences still being frozen go on a chunk of this many contacts per transaction, for up to
# this share of a run's budget, before sending.
FREEZE_CHUNK_ROWS = 50_000
FREEZE_SHARE = 0.5
# An SES message id as SESv2 answers it (`010701…-…-000000`); anything else never reaches a header.
SES_MESSAGE_ID = re.compile(r"[A-Za-z0-9-]{1,200}")
# A subject that is already a reply's gets no second `Re: `.
REPLY_PREFIX = re.compile(r"re\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class SendPolicy:
    link_secret: str
    link_days: int
    max_per_second: float
    concurrency: int
    base_url: str
    # The SES account whose pacing state (private.ses_accounts) the workers share.
    account: str = "default"


@dataclass
class SendReport:
    started_campaigns: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    finished_campaigns: int = 0
    platform_brake: bool = False
    released_first_sends: int = 0

    def add(self, counts: dict[str, Any]) -> None:
        """Adds the row states a batch of outcomes led to (cancelled rows count as failed)."""
        self.sent += int(counts.get("sent", 0))
        self.retrying += int(counts.get("retrying", 0))
        self.failed += int(counts.get("failed", 0)) + int(counts.get("cancelled", 0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_campaigns": self.started_campaigns,
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "finished_campaigns": self.finished_campaigns,
            "platform_brake": self.platform_brake,
            "released_first_sends": self.released_first_sends,
        }


def unsubscribe_url(policy: SendPolicy, row: dict[str, Any]) -> str:
    token = unsubscribe_tokens.issue(
        policy.link_secret,
        workspace_id=row["workspace_id"],
        contact_id=row["contact_id"],
        recipient_id=row["recipient_id"],
        valid_days=policy.link_days,
    )
    return f"{policy.base_url.rstrip('/')}{UNSUBSCRIBE_PATH}?{urlencode({'token': token})}"


def render_row(row: dict[str, Any], link: str) -> RenderedEmail:
    """The claimed row's variant rendered for its contact (raises RenderError)."""
    return render(EmailContent(row["subject"], row["html"], row["text_body"]), row["contact"], link)


def feedback_id(row: dict[str, Any]) -> str:
    """Gmail's Feedback-ID (campaign : workspace : mail type : sender), so Postmaster Tools
    attributes complaints, which Gmail never reports to SES."""
    return f"{row['campaign_id']}:{row['workspace_id']}:campaign:growthbase"


def reply_address(row: dict[str, Any], inbox_domains: list[str]) -> str | None:
    """A campaign email's Reply-To. When the workspace's inbox receives mail on a domain (an
    active email channel), it is the recipient's own `reply+r<recipient id>@<domain>`, so a
    reply threads into the inbox, linked to the recipient, even from a client that drops the
    thread headers: on the campaign's Reply-To domain, else the sender's, else the oldest
    channel's. A campaign Reply-To on a domain the inbox does not receive stays as it is (the
    workspace chose where those replies go), and so does everything without an inbox."""
    chosen: str | None = row["reply_to"]
    if not inbox_domains:
        return chosen
    if chosen:
        domain = chosen.rsplit("@", 1)[-1].lower()
        if domain not in inbox_domains:
            return chosen
    else:
        sender = str(row["from_email"]).rsplit("@", 1)[-1].lower()
        domain = sender if sender in inbox_domains else inbox_domains[0]
    return f"reply+r{uuid.UUID(str(row['recipient_id'])).hex}@{domain}"


def claimed_rows(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of private.send_round's answer, each with its template, sender, Reply-To (see
    reply_address) and what is known of its SES tenant."""
    variants: dict[str, list[str]] = answer["variants"]
    campaigns: dict[str, dict[str, Any]] = answer["campaigns"]
    threads: dict[str, list[str]] = answer.get("threads") or {}
    rows: list[dict[str, Any]] = []
    for (
        recipient_id,
        campaign_id,
        variant_id,
        contact_id,
        email,
        attempts,
        contact,
        send_in,
    ) in answer["rows"]:
        campaign = campaigns[campaign_id]
        subject, html, text_body = variants[variant_id]
        row = {
            "recipient_id": uuid.UUID(recipient_id),
            "campaign_id": uuid.UUID(campaign_id),
            "workspace_id": uuid.UUID(campaign["workspace_id"]),
            "contact_id": uuid.UUID(contact_id),
            "email": email,
            "attempts": attempts,
            "subject": subject,
            "html": html,
            "text_body": text_body,
            "from_name": campaign["from_name"],
            "from_email": campaign["from_email"],
            "reply_to": campaign["reply_to"],
            "contact": contact,
            "send_in": send_in,
            "tenant": campaign["tenant"],
            # An in-thread flow step's parent: [its SES message id, its variant's subject].
            "thread": threads.get(recipient_id),
        }
        row["reply_address"] = reply_address(row, campaign["reply_domains"])
        rows.append(row)
    return rows


def thread_of(row: dict[str, Any], link: str, message_id_domain: str) -> tuple[str, str] | None:
    """For a row of an in-thread flow step whose run's first mail went out: that mail's
    Message-ID as its recipient saw it (SES's, made from its SES message id) and the subject
    `Re: <its subject>`, rendered for the contact as the first mail's was (the rendered subject
    is not stored). None otherwise, or when the subject no longer renders for the contact: the
    row then goes as a plain mail."""
    thread = row.get("thread")
    if not thread:
        return None
    ses_id, subject = thread
    if not SES_MESSAGE_ID.fullmatch(str(ses_id)):
        return None
    try:
        first = render(EmailContent(str(subject), "", None), row["contact"], link).subject
    except RenderError:
        return None
    return f"<{ses_id}@{message_id_domain}>", first if REPLY_PREFIX.match(first) else f"Re: {first}"


def message_for(
    row: dict[str, Any], content: RenderedEmail, link: str, in_reply_to: str | None = None
) -> bytes:
    return build_message(
        sender_name=row["from_name"],
        sender_email=row["from_email"],
        reply_to=row.get("reply_address", row["reply_to"]),
        recipient=row["email"],
        content=content,
        unsubscribe_url=link,
        feedback_id=feedback_id(row),
        in_reply_to=in_reply_to,
    )


def outcome(row: dict[str, Any], kind: str, **details: Any) -> dict[str, Any]:
    """One entry for private.record_email_outcomes, answering the row's claim."""
    return {"id": str(row["recipient_id"]), "attempt": row["attempts"], "kind": kind, **details}


def send_one(ses: SesClient, policy: SendPolicy, row: dict[str, Any]) -> dict[str, Any]:
    """Renders and sends one claimed row; answers its outcome (nothing touches the database)."""
    link = unsubscribe_url(policy, row)
    try:
        content = render_row(row, link)
    except RenderError as error:
        # The budget is CPU time and sizes, so a template over it for this contact stays over:
        # retrying would only spend another budget.
        return outcome(row, "failed", error=f"{error.code}: {error}")
    thread = thread_of(row, link, ses.message_id_domain)
    if thread:
        content = dataclasses.replace(content, subject=thread[1])
    raw = message_for(row, content, link, thread[0] if thread else None)
    try:
        message_id = ses.send_raw(
            raw,
            row["from_email"],
            row["email"],
            {"campaign_id": str(row["campaign_id"]), "recipient_id": str(row["recipient_id"])},
            tenant=row.get("tenant_name"),
        )
    except SesError as failure:
        tenant = row.get("tenant_name")
        if tenant and failure.code == "NotFoundException":
            # SES lost the workspace's tenant: the claim goes back at no cost, and the round
            # that records this forgets the tenant, so the next batch makes it again.
            return outcome(row, "released", tenant_gone=tenant)
        return outcome(
            row,
            failure.kind,
            error=str(failure),
            # Long enough for SES's Send event to mark the row sent if SES did accept it.
            min_delay=AMBIGUOUS_RETRY_SECONDS if failure.outcome_unknown else None,
        )
    return outcome(row, "sent", message_id=message_id)


@dataclass
class Claimed:
    """A claimed row and, on this process's clock, when its send slot opens and when it may no
    longer start (its lease would run out mid-send)."""

    row: dict[str, Any]
    send_at: float
    last_start: float


def deliver(ses: SesClient, policy: SendPolicy, claimed: Claimed) -> dict[str, Any]:
    """Waits for the row's send slot, then sends it, or gives the claim back if too late."""
    pause = claimed.send_at - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    if time.monotonic() > claimed.last_start:
        return outcome(claimed.row, "released")
    try:
        return send_one(ses, policy, claimed.row)
    except Exception as error:
        # A bug for this row's data must not stop the others: it retries with backoff, and
        # fails after eight attempts.
        log.exception("sending recipient %s failed", claimed.row["recipient_id"])
        return outcome(claimed.row, "retry", error=f"{type(error).__name__}: {error}")


@dataclass
class Outbox:
    """Outcomes waiting to be recorded, filled by the send threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    pending: list[dict[str, Any]] = field(default_factory=list)

    def put(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.pending.append(entry)

    def take(self) -> list[dict[str, Any]]:
        with self.lock:
            taken, self.pending = self.pending, []
        return taken

    def give_back(self, entries: list[dict[str, Any]]) -> None:
        with self.lock:
            self.pending[:0] = entries

    def __len__(self) -> int:
        with self.lock:
            return len(self.pending)


# As text: the answer is parsed once the connection is back in the pool.
ROUND_SQL = "select private.send_round(%s::jsonb, %s, %s, %s, %s, %s, %s)::text as answer"


def send_round(
    database: Database,
    policy: SendPolicy,
    entries: list[dict[str, Any]],
    room: int,
    tenants: bool,
) -> dict[str, Any]:
    """Records `entries` and claims up to `room` rows in one statement (private.send_round),
    sent with the role switch and the commit in one round trip. The outcomes are serialized
    before a connection is taken and the answer parsed after it is back in the pool, so the
    connection is held for the round trip alone (with eight send threads busy, any Python work
    while holding it waits for the GIL)."""
    gone = sorted({str(entry["tenant_gone"]) for entry in entries if entry.get("tenant_gone")})
    params = (
        json.dumps(entries) if entries else None,
        room,
        LEASE_SECONDS,
        policy.max_per_second,
        policy.account,
        tenants,
        gone,
    )
    row = database.one_as_service(ROUND_SQL, params)
    answer: dict[str, Any] = json.loads(str(row["answer"])) if row else {}
    return answer


def refresh_account(database: Database, ses: SesClient, policy: SendPolicy) -> None:
    """Reads the SES account's quota (GetAccount) when the stored one is stale. Without it the
    configured rate is the ceiling, so a failure here never stops sending."""
    with database.as_service() as conn:
        row = conn.execute(
            "select private.ses_account_stale(%s) as stale", (policy.account,)
        ).fetchone()
    if not row or not row["stale"]:
        return
    try:
        quota = ses.account_quota()
    except SesError as failure:
        log.warning("GetAccount failed (%s): sending at the configured rate", failure)
        return
    with database.as_service() as conn:
        conn.execute(
            "select private.save_ses_account(%s, %s, %s)",
            (policy.account, policy.max_per_second, Jsonb(quota)),
        )


class Drain:
    """One run of the worker: claims, sends and records until nothing is due or time is up."""

    def __init__(
        self, database: Database, ses: SesClient, policy: SendPolicy, budget_seconds: float
    ) -> None:
        self.database = database
        self.ses = ses
        self.policy = policy
        # Whether each workspace sends as its own SES tenant (the account has tenants).
        self.tenants = False
        self.deadline = time.monotonic() + budget_seconds
        self.batch = policy.concurrency * ROWS_PER_THREAD
        self.outbox = Outbox()
        self.in_flight: set[Future[dict[str, Any]]] = set()
        # Sends not yet answered, counted by the send threads; they set `wake` for the main loop.
        self.lock = threading.Lock()
        self.unanswered = 0
        self.wake = threading.Event()
        self.report = SendReport()
        self.last_flush = time.monotonic()
        # When a claim may find something (monotonic; infinite: nothing left to send).
        self.next_claim = 0.0
        self.idle_rounds = 0

    def round(self, claim: bool) -> list[dict[str, Any]] | None:
        """Records the waiting outcomes and, when `claim`, claims what the room allows; one
        connection for both. None when the database could not be reached (the outcomes stay
        waiting, the claimed rows stay leased: neither counts as a failure)."""
        entries = self.outbox.take()
        room = self.batch - len(self.in_flight) if claim else 0
        try:
            answer = send_round(self.database, self.policy, entries, room, self.tenants)
        except (ApiError, psycopg.OperationalError) as error:
            if isinstance(error, ApiError) and error.code != "database_unavailable":
                raise
            log.warning("the database is unavailable for the send worker: %s", error)
            self.outbox.give_back(entries)
            time.sleep(DATABASE_RETRY_SECONDS)
            return None
        self.report.add(answer.get("counts") or {})
        now = time.monotonic()
        self.last_flush = now
        if entries and not claim:
            # The last claim's wait counted these rows as leased; answered, they are final or
            # back in the queue, due sooner.
            self.next_claim = min(self.next_claim, now)
        if not claim:
            return []
        rows = claimed_rows(answer)
        self.next_claim = now
        if len(rows) < room:
            wait_seconds = answer.get("wait")
            self.next_claim = math.inf if wait_seconds is None else now + wait_seconds
            self.idle_rounds = self.idle_rounds + 1 if not rows and wait_seconds == 0 else 0
        else:
            self.idle_rounds = 0
        return rows

    def dispatch(self, pool: ThreadPoolExecutor, rows: list[dict[str, Any]]) -> None:
        if self.tenants:
            # A workspace whose tenant SES would not make ready sends nothing now: its rows
            # retry with backoff (throttling costs no attempt), whatever SES said. An account
            # that lost the tenant API sends this batch and the next without tenants.
            try:
                failed, self.tenants = prepare(self.database, self.ses, self.policy.account, rows)
            except (ApiError, psycopg.OperationalError) as error:
                if isinstance(error, ApiError) and error.code != "database_unavailable":
                    raise
                # The database went away while a new tenant was being stored: the batch goes
                # back at no cost (SES's tenant is found again by the next claim), and the run
                # goes on, keeping the outcomes it holds until the database is back.
                log.warning("the database is unavailable for the send worker: %s", error)
                for row in rows:
                    self.outbox.put(outcome(row, "released"))
                return
            for row in rows:
                failure = failed.get(str(row["workspace_id"]))
                if failure:
                    kind = "throttled" if failure.kind == "throttled" else "retry"
                    self.outbox.put(outcome(row, kind, error=f"SES tenant not ready: {failure}"))
            rows = [row for row in rows if str(row["workspace_id"]) not in failed]
        claimed_at = time.monotonic()
        for row in rows:
            item = Claimed(
                row,
                send_at=claimed_at + float(row["send_in"] or 0),
                last_start=claimed_at + LEASE_SECONDS - LEASE_MARGIN_SECONDS,
            )
            with self.lock:
                self.unanswered += 1
            future = pool.submit(deliver, self.ses, self.policy, item)
            self.in_flight.add(future)
            future.add_done_callback(self.collect)

    def collect(self, future: Future[dict[str, Any]]) -> None:
        """In the send thread: queues the outcome, and wakes the main loop when a batch's worth
        is waiting, nothing is left in flight, or the send died."""
        died = future.cancelled() or future.exception() is not None
        if not died:
            self.outbox.put(future.result())
        with self.lock:
            self.unanswered -= 1
            idle = self.unanswered == 0
        if died or idle or len(self.outbox) >= self.batch // 2:
            self.wake.set()

    def settle(self, timeout: float) -> None:
        """Sleeps until woken or `timeout`; a crash in a send thread surfaces here."""
        self.wake.wait(max(0.0, timeout))
        self.wake.clear()
        done = {future for future in self.in_flight if future.done()}
        self.in_flight -= done
        for future in done:
            future.result()

    def run(self, pool: ThreadPoolExecutor) -> None:
        while True:
            now = time.monotonic()
            room = len(self.in_flight) <= self.batch // 2
            waiting = len(self.outbox)
            flush = waiting > 0 and (
                not self.in_flight
                or waiting >= self.batch // 2
                or now - self.last_flush >= FLUSH_SECONDS
            )
            # A round that records outcomes also tops the batch up, so no round only records.
            claim = (
                now < self.deadline
                and now >= self.next_claim
                and (room or (flush and len(self.in_flight) < self.batch))
            )
            if claim or flush:
                rows = self.round(claim)
                if rows:
                    self.dispatch(pool, rows)
                if rows is None or rows or flush:
                    continue
            settled = not self.in_flight and not waiting
            if settled and (
                now >= self.deadline
                or self.next_claim >= self.deadline
                or self.idle_rounds > IDLE_ROUNDS
            ):
                return
            timeout = min(FLUSH_SECONDS, self.deadline - now)
            if waiting:
                timeout = min(timeout, self.last_flush + FLUSH_SECONDS - now)
            if room:
                timeout = min(timeout, self.next_claim - now)
            self.settle(timeout)

    def finish(self) -> None:
        """Waits for the sends in flight, records what is left and marks campaigns with no row
        left to send as sent."""
        while self.in_flight:
            self.settle(FLUSH_SECONDS)
        entries = self.outbox.take()
        if entries:
            self.report.add(
                send_round(self.database, self.policy, entries, 0, self.tenants)["counts"]
            )
        with self.database.as_service() as conn:
            finished = conn.execute("select private.finish_sent_campaigns() as n").fetchone()
        self.report.finished_campaigns = finished["n"] if finished else 0


def freeze_audiences(database: Database, deadline: float) -> int:
    """Freezes started campaigns' audiences further, a chunk per transaction, until done or the
    deadline; answers the rows frozen. The rows frozen already are being sent meanwhile."""
    frozen = 0
    with database.as_service() as conn:
        campaigns = [
            row["id"] for row in conn.execute("select * from private.freezing_campaigns() id")
        ]
    for campaign in campaigns:
        while time.monotonic() < deadline:
            with database.as_service() as conn:
                row = conn.execute(
                    "select private.freeze_campaign_chunk(%s, %s) as n",
                    (campaign, FREEZE_CHUNK_ROWS),
                ).fetchone()
            chunk = int(row["n"]) if row else 0
            frozen += chunk
            if chunk == 0:
                break
    return frozen


def send_due_emails(
    database: Database, ses: SesClient, policy: SendPolicy, budget_seconds: float
) -> SendReport:
    """Starts due scheduled campaigns and releases first sends whose probe went well, then
    sends until nothing is due or the budget is spent."""
    drain = Drain(database, ses, policy, budget_seconds)
    with database.as_service() as conn:
        started = conn.execute(
            "select private.start_due_campaigns() as n, private.release_first_sends() as released,"
            " private.check_platform_brake() as brake"
        ).fetchone()
    drain.report.started_campaigns = started["n"] if started else 0
    drain.report.released_first_sends = started["released"] if started else 0
    drain.report.platform_brake = bool(started and started["brake"])
    freeze_audiences(database, time.monotonic() + budget_seconds * FREEZE_SHARE)
    refresh_account(database, ses, policy)
    drain.tenants = refresh_tenancy(database, ses, policy.account)
    with ThreadPoolExecutor(max_workers=policy.concurrency) as pool:
        drain.run(pool)
        drain.finish()
    log.info("email drain %s", drain.report.as_dict())
    return drain.report
