"""Applying a stored webhook whose whole processing is one SQL function (Razorpay, SES): right
after the acknowledgement, in the background, and again from the replay cron if that failed."""

import logging
from uuid import UUID

import psycopg
from psycopg import sql

from api.db import Database
from api.errors import ApiError

log = logging.getLogger("growthbase.webhooks")
APPLIERS = {"razorpay": "apply_razorpay_event", "ses": "apply_ses_event"}


def apply_stored(database: Database, provider: str, event_id: UUID) -> str:
    query = sql.SQL("select private.{}(%s) as outcome").format(sql.Identifier(APPLIERS[provider]))
    with database.as_service() as conn:
        row = conn.execute(query, (event_id,)).fetchone()
    return str(row["outcome"]) if row else "unknown"


def apply_in_background(database: Database, provider: str, event_id: UUID) -> None:
    try:
        apply_stored(database, provider, event_id)
    except (psycopg.Error, ApiError) as error:
        log.warning(
            "%s event %s not applied yet (%s); the cron retries",
            provider,
            event_id,
            type(error).__name__,
        )
