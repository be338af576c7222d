"""Stored webhook events of other tests taken out of the replay's and the drains' reach: they
act on every workspace's due events, a limited number per provider at a time, so leftovers in a
worker's database would count in a test's answer or crowd its own event out."""

from collections.abc import Sequence
from typing import Any

import psycopg


def put_off_due_webhook_events(
    conn: psycopg.Connection[Any], providers: Sequence[str], keep_prefix: str | None = None
) -> None:
    """Every unapplied event of these providers put off for ever, but those whose event id
    starts with `keep_prefix` (a test's own)."""
    conn.execute(
        "update private.webhook_events set next_attempt_at = 'infinity'"
        " where provider = any(%s) and status = 'received'"
        " and (%s::text is null or event_id not like %s || '%%')",
        (list(providers), keep_prefix, keep_prefix),
    )
