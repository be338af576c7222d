"""The retention job: calls private.prune_retention a batch at a time (each call its own short
transaction, at most 10,000 rows of each kind) until nothing is left or the time budget is
spent, so a large backlog never holds a long lock."""

import time
from typing import Any

from api.core.db import Database

BATCH_ROWS = 10_000
KINDS = ("webhook_events", "campaign_recipients", "audit_log", "invitations", "dead_letters")


def prune(
    database: Database, budget_seconds: float, batch_rows: int = BATCH_ROWS
) -> dict[str, Any]:
    """Totals per kind, the number of calls, and whether more was left when the budget ran out.
    Then purges deleted workspaces whose 30 days are over, one per transaction."""
    totals = dict.fromkeys(KINDS, 0)
    deadline = time.monotonic() + budget_seconds
    calls = 0
    more = True
    while more and time.monotonic() < deadline:
        with database.as_service() as conn:
            row = conn.execute(
                "select private.prune_retention(%s) as report", (batch_rows,)
            ).fetchone()
        assert row is not None
        report = row["report"]
        calls += 1
        for kind in KINDS:
            totals[kind] += int(report[kind])
        more = bool(report["more"])
    purged = 0
    workspaces_left = True
    while time.monotonic() < deadline:
        with database.as_service() as conn:
            row = conn.execute("select private.purge_deleted_workspaces(1) as purged").fetchone()
        assert row is not None
        if not row["purged"]:
            workspaces_left = False
            break
        purged += int(row["purged"])
    return {
        "removed": {**totals, "workspaces": purged},
        "calls": calls,
        "finished": not more and not workspaces_left,
    }
