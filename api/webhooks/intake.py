"""The one path of every inbound webhook once its signature has verified: store it raw with the
provider's event id (a repeat is recognised), acknowledge, apply it in the background, and apply
again from the replay cron while it is not applied.

A feature that applies its deliveries in batches (the inbox's channels) stores them itself, in
the request's own transaction (the one that read the secret the signature was checked with),
and applies them after the answer; the replay still finds them here.

Features verify their own signatures (each needs its own keys and headers) and register their
appliers here; this module knows no feature, so replay finds every applier without importing one.

Every event is applied on its own. Whatever a failed apply raises is recorded in the database
(private.webhook_event_failed): the attempt is counted and the event retried later with backoff,
and dead-lettered after the last attempt, so failing events neither stop the replay nor hold its
batch. Failures are logged and recorded by event id and error class, never with the payload or
the error's message (a database error's message can quote the payload's values)."""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

import psycopg
from fastapi import BackgroundTasks, Depends
from psycopg import sql

from api.core.db import Connection, Database
from api.core.deps import Slot
from api.core.errors import ApiError

log = logging.getLogger("growthbase.webhooks")
RECORD_SQL = "select id, duplicate from private.record_webhook_event(%s, %s, %s)"


@dataclass(frozen=True)
class StoredEvent:
    """A row of private.webhook_events: its id, the provider's event id and the raw body."""

    id: UUID
    event_id: str
    body: str


@dataclass(frozen=True)
class Recorded:
    event: StoredEvent
    duplicate: bool  # stored and applied before: nothing more to do


# Applies one stored event and answers its outcome; raises on a failure worth retrying.
Applier = Callable[[StoredEvent], str]


def describe_failure(error: Exception) -> str:
    """The error's class and code: enough to tell failures apart, nothing of the payload."""
    if isinstance(error, psycopg.Error):
        return f"psycopg {type(error).__name__} {error.sqlstate or ''}".rstrip()
    code = getattr(error, "code", None)
    if isinstance(code, str):
        return f"{type(error).__name__} {code}"
    return type(error).__name__


class SqlApplier:
    """An applier that is one private SQL function of the stored event's id."""

    def __init__(self, database: Database, function: str) -> None:
        self.database = database
        self.function = function
        self.query = sql.SQL("select private.{}(%s) as outcome").format(sql.Identifier(function))

    def __call__(self, event: StoredEvent) -> str:
        with self.database.as_service() as conn:
            row = conn.execute(self.query, (event.id,)).fetchone()
        return str(row["outcome"]) if row else "unknown"


def sql_applier(database: Database, function: str) -> Applier:
    return SqlApplier(database, function)


class WebhookIntake:
    def __init__(self, database: Database) -> None:
        self.database = database
        self.appliers: dict[str, Applier] = {}

    def register(self, provider: str, applier: Applier) -> None:
        """Events of `provider` are applied by `applier`, after intake and on replay."""
        self.appliers[provider] = applier

    def record(self, provider: str, event_id: str, body: bytes) -> Recorded:
        with self.database.as_service() as conn:
            return self.store(conn, provider, event_id, body)

    def store(self, conn: Connection, provider: str, event_id: str, body: bytes) -> Recorded:
        """Stores the delivery in the caller's transaction; a repeat of one already processed is
        a duplicate. Applying it is left to the caller's feature (and to the replay)."""
        row = conn.execute(RECORD_SQL, (provider, event_id[:200], body.decode())).fetchone()
        assert row is not None
        return Recorded(StoredEvent(row["id"], event_id, body.decode()), bool(row["duplicate"]))

    def finish(self, event: StoredEvent, outcome: str) -> None:
        """Marks an event applied (for providers applied while the request waits)."""
        with self.database.as_service() as conn:
            conn.execute("select private.finish_webhook_event(%s, %s)", (event.id, outcome))

    def apply_later(self, background: BackgroundTasks, provider: str, event: StoredEvent) -> None:
        """Applies the event after the answer has gone out: providers wait only seconds."""
        background.add_task(self.apply, provider, event)

    def apply(self, provider: str, event: StoredEvent) -> str:
        try:
            return self.appliers[provider](event)
        except Exception as error:
            return self.record_failure(provider, event.id, error)

    def apply_now(self, provider: str, event: StoredEvent) -> str:
        """Applies the event while the request waits (the caller answers with the outcome); a
        failure is counted like any other apply's, for the replay, then raised to the caller."""
        try:
            return self.appliers[provider](event)
        except Exception as error:
            self.record_failure(provider, event.id, error)
            raise

    def record_failure(self, provider: str, event_id: UUID, error: Exception) -> str:
        """Counts the failed apply so the event is retried later or dead-lettered; answers the
        outcome the replay reports (`failed:retrying`, `failed:dead_letter`, ...)."""
        description = describe_failure(error)
        try:
            with self.database.as_service() as conn:
                row = conn.execute(
                    "select private.webhook_event_failed(%s, %s) as state",
                    (event_id, description),
                ).fetchone()
            state = str(row["state"]) if row else "not_pending"
        except (psycopg.Error, ApiError) as recording:
            # Not counted: the event stays due, and the next replay tries it again.
            state = "unrecorded"
            description += f"; recording the failure failed: {describe_failure(recording)}"
        level = logging.ERROR if state == "dead_letter" else logging.WARNING
        log.log(
            level, "%s event %s failed to apply (%s): %s", provider, event_id, description, state
        )
        return f"failed:{state}"

    def replay(self, limit: int) -> dict[str, int]:
        """Every registered provider's due events, provider by provider (none's failures stop
        the next); answers how many ended with each `<provider>:<outcome>`."""
        outcomes: dict[str, int] = {}
        for provider in self.appliers:
            for outcome, count in self.replay_provider(provider, limit).items():
                outcomes[f"{provider}:{outcome}"] = count
        return outcomes

    def replay_provider(self, provider: str, limit: int) -> dict[str, int]:
        outcomes: dict[str, int] = {}
        try:
            with self.database.as_service() as conn:
                rows = conn.execute(
                    "select id, event_id, body from private.unprocessed_webhook_events(%s, %s)",
                    (provider, limit),
                ).fetchall()
        except (psycopg.Error, ApiError) as error:
            log.warning("%s events not replayed: %s", provider, describe_failure(error))
            return {"not_read": 1}
        for row in rows:
            outcome = self.apply(provider, StoredEvent(row["id"], row["event_id"], row["body"]))
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return outcomes


INTAKE = Slot("webhook_intake", WebhookIntake, "The webhook intake is not set up")
Intake = Annotated[WebhookIntake, Depends(INTAKE.required)]
