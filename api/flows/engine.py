"""The flow tick: the edge only calls the database's set-based engine, a batch per
transaction, until nothing is due or the budget is spent. Each batch commits on its own, so a
crash loses at most the batch in flight, which the next tick repeats (the engine is idempotent
per run and step)."""

import time

from api.core.db import Database

# Steps executed per transaction: small enough to commit well within a second.
TICK_LIMIT = 20_000
# Contact events older than this are pruned (flows enrol only on events at most two days old).
EVENT_RETENTION_DAYS = 180


def advance(database: Database, budget_seconds: float) -> dict[str, int]:
    """Records the time-based trigger events due now (dates, days after the last order, emails
    not opened), moves due runs until none is due or `budget_seconds` have passed, and prunes
    old events."""
    deadline = time.monotonic() + budget_seconds
    steps = ticks = 0
    with database.as_service() as conn:
        row = conn.execute("select private.record_flow_trigger_events() as n").fetchone()
    triggered = int(row["n"]) if row else 0
    while time.monotonic() < deadline:
        with database.as_service() as conn:
            row = conn.execute("select private.advance_flows(%s) as n", (TICK_LIMIT,)).fetchone()
        moved = int(row["n"]) if row else 0
        ticks += 1
        steps += moved
        if moved < TICK_LIMIT:
            break
    with database.as_service() as conn:
        row = conn.execute(
            "select private.prune_contact_events(%s) as n", (EVENT_RETENTION_DAYS,)
        ).fetchone()
    return {
        "triggered": triggered,
        "steps": steps,
        "ticks": ticks,
        "pruned_events": int(row["n"]) if row else 0,
    }
