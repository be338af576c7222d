"""Cancelling at Razorpay the subscriptions of workspaces that went. The database queues them
when a workspace is deleted or removed (private.subscription_cancellations, written by
triggers, so no deletion path forgets it); this cancels them at once, and ends them for good
(no charge at the period's end), right after a deletion and again from the cron, which retries
with backoff what Razorpay did not answer. A subscription Razorpay does not hold for that
workspace is never touched."""

from collections.abc import Sequence
from typing import Literal
from uuid import UUID

from api.billing.razorpay_billing import RazorpayBilling, RazorpayError
from api.core.db import Database

# Razorpay statuses after which there is nothing left to cancel.
ENDED = frozenset({"cancelled", "completed", "expired"})
CRON_LIMIT = 20
# The queue's status after an attempt, as the report counts it.
COUNTED = {"cancelled": "cancelled", "pending": "retrying", "failed": "failed"}

Outcome = Literal["cancelled", "retry", "failed"]


def cancel_at_razorpay(
    client: RazorpayBilling, subscription_id: str, workspace_id: UUID
) -> tuple[Outcome, str | None, str | None]:
    """What happened at Razorpay: the outcome, Razorpay's status, and why it did not work."""
    try:
        held = client.fetch_for_workspace(subscription_id, workspace_id)
        status = held.get("status")
        if status in ENDED:
            return "cancelled", str(status), None
        result = client.cancel(subscription_id, at_period_end=False)
    except RazorpayError as error:
        if error.reason == "failed":
            return "retry", None, "Razorpay could not be reached or failed"
        return "failed", None, str(error)
    return "cancelled", result.get("status"), None


def cancel_due(
    database: Database,
    client: RazorpayBilling,
    limit: int,
    workspace_ids: Sequence[UUID] | None = None,
) -> dict[str, int]:
    """Cancels due queued subscriptions (of `workspace_ids` only, when given), at most `limit`;
    answers how many were cancelled, will be retried, and failed for good."""
    with database.as_service() as conn:
        rows = conn.execute(
            "select razorpay_subscription_id, workspace_id"
            " from private.claim_subscription_cancellations(%s, %s)",
            (limit, list(workspace_ids) if workspace_ids is not None else None),
        ).fetchall()
    counts = {"cancelled": 0, "retrying": 0, "failed": 0}
    for row in rows:
        outcome, status, error = cancel_at_razorpay(
            client, row["razorpay_subscription_id"], row["workspace_id"]
        )
        with database.as_service() as conn:
            recorded = conn.execute(
                "select status from private.record_subscription_cancellation(%s, %s, %s, %s)",
                (row["razorpay_subscription_id"], outcome, status, error),
            ).fetchone()
        state = recorded["status"] if recorded else None
        if state in COUNTED:
            counts[COUNTED[state]] += 1
    return counts
