"""Applying stored webhooks: right after the acknowledgement, in the background, and again from
the replay cron while they are not applied.

Every event is applied on its own. Whatever a failed apply raises is recorded in the database
(private.webhook_event_failed): the attempt is counted and the event retried later with backoff,
and dead-lettered after the last attempt, so failing events neither stop the replay nor hold its
batch. Failures are logged and recorded by event id and error class, never with the payload or
the error's message (a database error's message can quote the payload's values)."""

import logging
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from api.core.db import Database
from api.core.errors import ApiError
from api.shops.shoptet.client import ShoptetError

log = logging.getLogger("growthbase.webhooks")
APPLIERS = {"razorpay": "apply_razorpay_event", "ses": "apply_ses_event"}

# Applies one stored event (a row of private.webhook_events) and answers its outcome.
Applier = Callable[[dict[str, Any]], str]


def apply_stored(database: Database, provider: str, event_id: UUID) -> str:
    query = sql.SQL("select private.{}(%s) as outcome").format(sql.Identifier(APPLIERS[provider]))
    with database.as_service() as conn:
        row = conn.execute(query, (event_id,)).fetchone()
    return str(row["outcome"]) if row else "unknown"


def describe_failure(error: Exception) -> str:
    """The error's class and code: enough to tell failures apart, nothing of the payload."""
    if isinstance(error, psycopg.Error):
        return f"psycopg {type(error).__name__} {error.sqlstate or ''}".rstrip()
    if isinstance(error, ShoptetError | ApiError):
        return f"{type(error).__name__} {error.code}"
    return type(error).__name__


def record_failure(database: Database, provider: str, event_id: UUID, error: Exception) -> str:
    """Counts the failed apply so the event is retried later or dead-lettered; answers the
    outcome the replay reports (`failed:retrying`, `failed:dead_letter`, ...)."""
    description = describe_failure(error)
    try:
        with database.as_service() as conn:
            row = conn.execute(
                "select private.webhook_event_failed(%s, %s) as state", (event_id, description)
            ).fetchone()
        state = str(row["state"]) if row else "not_pending"
    except (psycopg.Error, ApiError) as recording:
        # Not counted: the event stays due, and the next replay tries it again.
        state = "unrecorded"
        description += f"; recording the failure failed: {describe_failure(recording)}"
    level = logging.ERROR if state == "dead_letter" else logging.WARNING
    log.log(level, "%s event %s failed to apply (%s): %s", provider, event_id, description, state)
    return f"failed:{state}"


def apply_in_background(database: Database, provider: str, event_id: UUID) -> None:
    try:
        apply_stored(database, provider, event_id)
    except Exception as error:
        record_failure(database, provider, event_id, error)


def replay_provider(
    database: Database, provider: str, apply: Applier, limit: int
) -> dict[str, int]:
    """Applies up to `limit` of the provider's due events, each on its own; answers how many
    ended with each outcome."""
    outcomes: dict[str, int] = {}
    try:
        with database.as_service() as conn:
            events = conn.execute(
                "select id, event_id, body from private.unprocessed_webhook_events(%s, %s)",
                (provider, limit),
            ).fetchall()
    except (psycopg.Error, ApiError) as error:
        log.warning("%s events not replayed: %s", provider, describe_failure(error))
        return {"not_read": 1}
    for stored in events:
        try:
            outcome = apply(stored)
        except Exception as error:
            outcome = record_failure(database, provider, stored["id"], error)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def replay_due_events(
    database: Database, appliers: Mapping[str, Applier], limit: int
) -> dict[str, int]:
    """Every provider's due events, provider by provider: none's failures stop the next."""
    outcomes: dict[str, int] = {}
    for provider, apply in appliers.items():
        for outcome, count in replay_provider(database, provider, apply, limit).items():
            outcomes[f"{provider}:{outcome}"] = count
    return outcomes
