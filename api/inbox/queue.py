"""Inbox deliveries (WhatsApp, Telegram, X) are stored when they arrive and applied in sets
after the answer (private.apply_inbox_queue). One drain is scheduled at a time, in the database,
by the statement that stores the delivery (private.store_inbox_delivery), so the edge stays
stateless and asks nothing after its answer: the first delivery stored after the scheduled
drain became due schedules the next one, INBOX_APPLY_DELAY_SECONDS (0.2 s by default) ahead, and
runs it after its answer; every delivery stored meanwhile is left to that drain, which waits for
their stores to commit and applies them together, as one set. The replay cron applies anything
a drain left (an edge that stopped after its answer)."""

import logging
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import BackgroundTasks
from psycopg.rows import DictRow

from api.core.db import Connection, Database, become_service
from api.core.envelope import ok
from api.core.errors import ApiError
from api.core.settings import Settings
from api.inbox.secrets import StoredChannel

log = logging.getLogger("growthbase.inbox")

BATCH = 500
# While another drain holds the queue, how long to wait before asking again, and for how long
# in all: its current call may have begun before this drain's delivery was committed, so this
# drain takes the queue once that call ends rather than leave the delivery to the replay cron.
BUSY_WAIT_SECONDS = 0.05
BUSY_PATIENCE_SECONDS = 30.0
STORE_SQL = "select duplicate, drain from private.store_inbox_delivery(%s, %s, %s, %s, %s)"


@dataclass(frozen=True)
class Delivery:
    duplicate: bool  # stored and applied before: nothing more to do
    drain: bool  # this request runs the next drain after its answer


def apply_queued(database: Database, delay_seconds: float = 0) -> int:
    """Applies stored inbox deliveries, a set of up to BATCH per transaction, until a call takes
    less than a full set; answers how many were taken. It waits `delay_seconds` first (after the
    answer has gone out), so that the deliveries arriving meanwhile join the set. One call is
    enough otherwise: every delivery left to this drain was committed before it became due, so
    its first call sees them all, and a delivery stored after that schedules a drain of its
    own. A delivery that fails is counted for a retry inside the database; a drain that cannot
    run leaves the deliveries stored, for the next drain or the replay cron."""
    if delay_seconds > 0:
        time.sleep(delay_seconds)
    taken = 0
    patience = time.monotonic() + BUSY_PATIENCE_SECONDS
    try:
        while True:
            row = service_call(database, "select private.apply_inbox_queue(%s) as taken", (BATCH,))
            batch = int(row["taken"]) if row else 0
            if batch >= 0:
                taken += batch
                if batch < BATCH:
                    return taken
            elif time.monotonic() < patience:
                time.sleep(BUSY_WAIT_SECONDS)
            else:
                return taken
    except (psycopg.Error, ApiError) as error:
        log.warning("inbox deliveries left for the next drain: %s", type(error).__name__)
        return taken


def service_call(database: Database, query: str, params: tuple[Any, ...]) -> DictRow | None:
    """One statement as the service in its own transaction, in one round trip: the role
    switch, the statement and the commit go to Postgres together (a pipeline); on a busy
    server every round trip waits for the backend to be scheduled."""
    with database.connection() as conn:
        with conn.pipeline():
            become_service(conn)
            cursor = conn.execute(query, params)
            conn.commit()
        return cursor.fetchone()


def store_delivery(
    conn: Connection,
    provider: str,
    event_id: str,
    body: bytes,
    channel: StoredChannel,
    settings: Settings,
) -> Delivery:
    """Stores the delivery under its channel's workspace and commits, in one round trip (a
    pipeline), in the transaction that read the channel's secret; the same statement answers
    whether this request runs the next drain (private.store_inbox_delivery), so nothing is
    asked after the answer."""
    with conn.pipeline():
        cursor = conn.execute(
            STORE_SQL,
            (
                provider,
                event_id[:200],
                body.decode(),
                channel.workspace_id,
                settings.inbox_apply_delay_seconds,
            ),
        )
        conn.commit()
    row = cursor.fetchone()
    assert row is not None
    return Delivery(duplicate=bool(row["duplicate"]), drain=bool(row["drain"]))


def accept(
    background: BackgroundTasks, database: Database, settings: Settings, delivery: Delivery
) -> dict[str, Any]:
    """The webhook's answer; the drain runs after it when this delivery scheduled one."""
    if delivery.drain:
        background.add_task(apply_queued, database, settings.inbox_apply_delay_seconds)
    return ok({"outcome": "duplicate" if delivery.duplicate else "accepted"})
