"""The send worker: drains the campaign send ledger through SES at the configured rate.

Rows are claimed in the database (skip-locked, leased, limited by the shared token bucket),
rendered and sent outside any transaction, and each outcome is recorded on its row as soon as
SES answers, so a crash leaves at most the in-flight rows to be claimed again when their lease
runs out. Retry policy, backoff and the rate live in SQL; this module only moves messages.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from api.core.db import Database
from api.email import unsubscribe_tokens
from api.email.message import build_message
from api.email.ses import SesClient, SesError
from api.email.templates import EmailContent, RenderedEmail, RenderError, render

log = logging.getLogger("growthbase.email")
UNSUBSCRIBE_PATH = "/api/v1/unsubscribe"
# Rows claimed per round, per send thread: two waves of SES calls, each at worst one connect
# plus one read timeout (25 s), fit well inside the lease, so no row outlives its claim.
ROWS_PER_THREAD = 2
# A claimed row stays invisible to other workers this long.
LEASE_SECONDS = 120
# Rounds in a row that found due rows but claimed none (all skipped, or held by another
# worker's open claim) before this run gives up.
IDLE_ROUNDS = 20
AMBIGUOUS_RETRY_SECONDS = 600


@dataclass(frozen=True)
class SendPolicy:
    link_secret: str
    link_days: int
    max_per_second: float
    concurrency: int
    base_url: str


@dataclass
class SendReport:
    started_campaigns: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    finished_campaigns: int = 0

    def count(self, outcome: str) -> None:
        if outcome == "sent":
            self.sent += 1
        elif outcome == "retrying":
            self.retrying += 1
        elif outcome == "failed":
            self.failed += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_campaigns": self.started_campaigns,
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "finished_campaigns": self.finished_campaigns,
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


def record_failure(
    database: Database,
    row: dict[str, Any],
    error: str,
    retryable: bool,
    min_delay_seconds: int | None = None,
) -> str:
    with database.as_service() as conn:
        outcome = conn.execute(
            "select private.email_failed(%s, %s, %s, %s, %s) as outcome",
            (row["recipient_id"], error, retryable, min_delay_seconds, row["attempts"]),
        ).fetchone()
    return str(outcome["outcome"]) if outcome else "unknown"


def render_row(row: dict[str, Any], link: str) -> RenderedEmail:
    """The claimed row's variant rendered for its contact (raises RenderError)."""
    return render(EmailContent(row["subject"], row["html"], row["text_body"]), row["contact"], link)


def message_for(row: dict[str, Any], content: RenderedEmail, link: str) -> bytes:
    return build_message(
        sender_name=row["from_name"],
        sender_email=row["from_email"],
        reply_to=row["reply_to"],
        recipient=row["email"],
        content=content,
        unsubscribe_url=link,
    )


def send_one(database: Database, ses: SesClient, policy: SendPolicy, row: dict[str, Any]) -> str:
    link = unsubscribe_url(policy, row)
    try:
        content = render_row(row, link)
    except RenderError as error:
        # The budget is CPU time and sizes, so a template over it for this contact stays over:
        # retrying would only spend another budget.
        return record_failure(database, row, f"{error.code}: {error}", retryable=False)
    raw = message_for(row, content, link)
    try:
        message_id = ses.send_raw(
            raw,
            row["from_email"],
            row["email"],
            {"campaign_id": str(row["campaign_id"]), "recipient_id": str(row["recipient_id"])},
        )
    except SesError as failure:
        return record_failure(
            database,
            row,
            str(failure),
            failure.retryable,
            # Long enough for SES's Send event to mark the row sent if SES did accept it.
            AMBIGUOUS_RETRY_SECONDS if failure.outcome_unknown else None,
        )
    with database.as_service() as conn:
        conn.execute(
            "select private.email_sent(%s, %s, %s)",
            (row["recipient_id"], message_id, row["attempts"]),
        )
    return "sent"


def send_due_emails(
    database: Database, ses: SesClient, policy: SendPolicy, budget_seconds: float
) -> SendReport:
    """Starts due scheduled campaigns, then sends until nothing is due or the budget is spent."""
    report = SendReport()
    deadline = time.monotonic() + budget_seconds
    with database.as_service() as conn:
        started = conn.execute("select private.start_due_campaigns() as n").fetchone()
    report.started_campaigns = started["n"] if started else 0
    idle_rounds = 0
    with ThreadPoolExecutor(max_workers=policy.concurrency) as pool:
        while time.monotonic() < deadline:
            with database.as_service() as conn:
                rows = conn.execute(
                    "select * from private.claim_email_batch(%s, %s, %s)",
                    (policy.concurrency * ROWS_PER_THREAD, LEASE_SECONDS, policy.max_per_second),
                ).fetchall()
            if rows:
                idle_rounds = 0
                for outcome in pool.map(lambda row: send_one(database, ses, policy, row), rows):
                    report.count(outcome)
                continue
            with database.as_service() as conn:
                due = conn.execute(
                    "select private.email_send_wait(%s) as wait", (policy.max_per_second,)
                ).fetchone()
            wait = due["wait"] if due else None
            if wait is None or time.monotonic() + wait >= deadline:
                break
            if wait > 0:
                # The shared bucket is empty: wait for the next token rather than spin.
                time.sleep(wait)
                continue
            idle_rounds += 1
            if idle_rounds > IDLE_ROUNDS:
                break
    with database.as_service() as conn:
        finished = conn.execute("select private.finish_sent_campaigns() as n").fetchone()
    report.finished_campaigns = finished["n"] if finished else 0
    log.info("email drain %s", report.as_dict())
    return report
