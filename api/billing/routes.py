"""Subscriptions: owners and admins start, cancel and change them; Razorpay's webhooks then
move their state (see the billing migrations). The edge asks the database as the user whether
they may act, talks to Razorpay, and writes what Razorpay answered as the service."""

from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict

from api.billing.deps import Billing
from api.core.action_quotas import take_workspace_quota
from api.core.auth_tokens import VerifiedUser
from api.core.db import Database
from api.core.deps import CurrentUser
from api.core.envelope import ok
from api.core.errors import ApiError

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])
PaidTier = Literal["solo", "team"]


class NewSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    tier: PaidTier


class Cancellation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_period_end: bool = True


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: PaidTier


def managed_subscription(
    request: Request, user: VerifiedUser, subscription_id: UUID, new_tier: str | None = None
) -> dict[str, Any]:
    """The subscription, if the user is an owner or admin of its workspace, with the Razorpay
    plan id of `new_tier` when one is asked for. Razorpay is not called yet."""
    database: Database = request.app.state.database
    with database.as_user(user.claims) as conn:
        row = conn.execute(
            "select id, workspace_id, razorpay_subscription_id, status from public.subscriptions"
            " where id = %s",
            (subscription_id,),
        ).fetchone()
        if row is None:
            raise ApiError(404, "subscription_not_found", "Subscription not found")
        conn.execute("select public.assert_billing_manager(%s)", (row["workspace_id"],))
        take_workspace_quota(conn, row["workspace_id"], "billing")
        plan = (
            conn.execute("select public.purchasable_plan_id(%s) as id", (new_tier,)).fetchone()
            if new_tier
            else None
        )
    return {**row, "new_plan_id": plan["id"] if plan else None}


@router.post("/subscriptions", status_code=201)
def create_subscription(
    body: NewSubscription, request: Request, user: CurrentUser, client: Billing
) -> dict[str, Any]:
    database: Database = request.app.state.database
    with database.as_user(user.claims) as conn:
        take_workspace_quota(conn, body.workspace_id, "billing")
        prepared = conn.execute(
            "select public.prepare_subscription(%s, %s) as plan_id", (body.workspace_id, body.tier)
        ).fetchone()
    assert prepared is not None
    created = client.create_subscription(prepared["plan_id"], str(body.workspace_id))
    with database.as_service() as conn:
        row = conn.execute(
            "select id, status from private.record_subscription(%s, %s, %s)",
            (body.workspace_id, user.user_id, Jsonb(created)),
        ).fetchone()
    assert row is not None
    return ok(
        {
            "id": str(row["id"]),
            "status": row["status"],
            "tier": body.tier,
            "checkout": {
                "key": client.key_id,
                "subscription_id": created["id"],
                "short_url": created.get("short_url"),
            },
        }
    )


@router.post("/subscriptions/{subscription_id}/cancel")
def cancel_subscription(
    subscription_id: UUID, body: Cancellation, request: Request, user: CurrentUser, client: Billing
) -> dict[str, Any]:
    subscription = managed_subscription(request, user, subscription_id)
    client.fetch_for_workspace(
        subscription["razorpay_subscription_id"], subscription["workspace_id"]
    )
    result = client.cancel(subscription["razorpay_subscription_id"], body.at_period_end)
    if body.at_period_end:
        database: Database = request.app.state.database
        with database.as_service() as conn:
            conn.execute("select private.mark_cancel_at_period_end(%s)", (subscription_id,))
    return ok(
        {
            "id": str(subscription_id),
            "razorpay_status": result.get("status"),
            "at_period_end": body.at_period_end,
        }
    )


@router.post("/subscriptions/{subscription_id}/change-plan")
def change_plan(
    subscription_id: UUID, body: PlanChange, request: Request, user: CurrentUser, client: Billing
) -> dict[str, Any]:
    subscription = managed_subscription(request, user, subscription_id, body.tier)
    client.fetch_for_workspace(
        subscription["razorpay_subscription_id"], subscription["workspace_id"]
    )
    result = client.change_plan(
        subscription["razorpay_subscription_id"], subscription["new_plan_id"]
    )
    return ok(
        {
            "id": str(subscription_id),
            "tier": body.tier,
            "scheduled_at_period_end": bool(result.get("has_scheduled_changes", True)),
        }
    )
