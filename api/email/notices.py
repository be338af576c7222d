"""Emails to a workspace's owner and admins about its sending (a guardrail pause), sent from the
platform's own address. The database queues them with the pause; the send cron delivers them."""

import logging
from typing import Any

from psycopg.types.json import Jsonb

from api.core.db import Database
from api.email.ses import SesClient, SesError

log = logging.getLogger("growthbase.email")
NOTICES_PER_RUN = 50


def send_pause_emails(database: Database, ses: SesClient, from_email: str) -> int:
    """Sends up to NOTICES_PER_RUN queued pause emails; answers how many went out. A failure is
    retried on the next run, three times in all."""
    with database.as_service() as conn:
        queued = conn.execute(
            "select * from private.claim_deliverability_emails(%s)", (NOTICES_PER_RUN,)
        ).fetchall()
    outcomes: list[dict[str, Any]] = []
    for notice in queued:
        try:
            ses.send_simple(from_email, notice["email"], notice["subject"], notice["body"])
        except SesError as failure:
            log.warning("pause email %s failed: %s", notice["id"], failure)
            outcomes.append({"id": str(notice["id"]), "sent": False, "error": str(failure)})
        else:
            outcomes.append({"id": str(notice["id"]), "sent": True})
    if outcomes:
        with database.as_service() as conn:
            conn.execute("select private.record_deliverability_emails(%s)", (Jsonb(outcomes),))
    return sum(1 for outcome in outcomes if outcome["sent"])
