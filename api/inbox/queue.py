"""Inbox deliveries (WhatsApp, Telegram, X) are stored when they arrive and applied in batches
after the answer (private.apply_inbox_queue): each webhook's answer is followed by a drain of
whatever is stored and due, after INBOX_APPLY_DELAY_SECONDS (0.2 s by default). One drain runs
at a time; a drain that finds another running leaves its delivery to it (that one calls again
until a call takes none), so what arrives meanwhile is applied together, as one set. The replay
cron applies anything a drain left (an edge that stopped before its drain ran)."""

import logging
import time

import psycopg
from fastapi import BackgroundTasks

from api.core.db import Database
from api.core.errors import ApiError
from api.core.settings import Settings

log = logging.getLogger("growthbase.inbox")

BATCH = 500


def apply_queued(database: Database, delay_seconds: float = 0) -> int:
    """Applies stored inbox deliveries, a batch per transaction, until a batch takes none or
    another drain is running; answers how many were taken. A delivery that fails is counted for
    a retry inside the database; a drain that cannot run leaves the deliveries stored for the
    next one. It waits `delay_seconds` first (after the answer has gone out) and after each
    short batch, so that deliveries arriving meanwhile are applied together, as one set."""
    if delay_seconds > 0:
        time.sleep(delay_seconds)
    taken = 0
    try:
        while True:
            with database.as_service() as conn:
                row = conn.execute(
                    "select private.apply_inbox_queue(%s) as taken", (BATCH,)
                ).fetchone()
            batch = int(row["taken"]) if row else 0
            if batch <= 0:
                return taken
            taken += batch
            if batch < BATCH and delay_seconds > 0:
                time.sleep(delay_seconds)
    except (psycopg.Error, ApiError) as error:
        log.warning("inbox deliveries left for the next drain: %s", type(error).__name__)
        return taken


def apply_after_answer(background: BackgroundTasks, database: Database, settings: Settings) -> None:
    background.add_task(apply_queued, database, settings.inbox_apply_delay_seconds)
