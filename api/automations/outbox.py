"""The outbox worker: delivers queued automations to Make.com, at least once.

Messages are claimed in the database (skip-locked, leased), sent outside any transaction, and
their outcome recorded back; the backoff, attempt limit and dead-lettering live in SQL
(private.outbox_failed), so every edge instance and cron run applies the same policy.
"""

import logging
from dataclasses import dataclass, field
from typing import Any

from api.automations.make import MakeClient
from api.core.db import Database
from api.core.public_urls import PublicUrls
from api.core.settings import Settings
from api.core.signatures import callback_token

log = logging.getLogger("growthbase.outbox")
MAKE_DISPATCH = "make.dispatch"
# A claimed message stays invisible to other workers this long past the HTTP timeout.
LEASE_MARGIN_SECONDS = 30


@dataclass
class DrainReport:
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    skipped: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "delivered": self.delivered,
            "retrying": self.retrying,
            "dead": self.dead,
            "skipped": self.skipped,
        }


def drain_make_outbox(
    database: Database, make: MakeClient, settings: Settings, urls: PublicUrls, limit: int
) -> DrainReport:
    """Sends up to `limit` due jobs of any workspace; each calls back at `urls`, which come
    from PUBLIC_BASE_URL, never from the request that triggered the drain."""
    report = DrainReport()
    lease = int(settings.make_timeout_seconds) + LEASE_MARGIN_SECONDS
    with database.as_service() as conn:
        messages = conn.execute(
            "select m.id, m.automation_id,"
            " private.make_dispatch_payload(m.automation_id) as payload"
            " from private.claim_outbox(%s, %s, %s) as m",
            (MAKE_DISPATCH, limit, lease),
        ).fetchall()
    for message in messages:
        payload: dict[str, Any] = message["payload"] or {}
        automation_type = payload.get("automation", {}).get("type", "")
        url = settings.make_webhook_url(automation_type)
        if url is None:
            outcome = record_failure(
                database, message["id"], f"no Make.com webhook configured for {automation_type}"
            )
        else:
            job_id = str(message["automation_id"])
            payload["callback"] = {
                "url": urls.make_callback(),
                "token": callback_token(make.signing_secret, job_id),
            }
            delivery = make.deliver(url, payload)
            if delivery.delivered:
                with database.as_service() as conn:
                    conn.execute("select private.outbox_delivered(%s)", (message["id"],))
                outcome = "delivered"
            else:
                outcome = record_failure(
                    database,
                    message["id"],
                    delivery.error,
                    retryable=delivery.retryable,
                    retry_after_seconds=delivery.retry_after_seconds,
                )
        log.info("outbox message=%s outcome=%s", message["id"], outcome)
        if outcome == "delivered":
            report.delivered += 1
        elif outcome == "retrying":
            report.retrying += 1
        elif outcome == "dead":
            report.dead += 1
        else:
            report.skipped.append(str(message["id"]))
    return report


def record_failure(
    database: Database,
    message_id: object,
    error: str,
    *,
    retryable: bool = False,
    retry_after_seconds: int | None = None,
) -> str:
    with database.as_service() as conn:
        row = conn.execute(
            "select private.outbox_failed(%s, %s, %s, %s) as outcome",
            (message_id, error, retryable, retry_after_seconds),
        ).fetchone()
    return str(row["outcome"]) if row else "unknown"
