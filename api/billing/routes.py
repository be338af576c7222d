"""Subscriptions: owners and admins start, cancel and change them; Razorpay's webhooks then
move their state (see the billing migrations). The edge asks the database as the user whether
they may act, talks to Razorpay, and writes what Razorpay answered as the service."""

from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from api.billing.deps import Billing
from api.billing.errors import razorpay_errors
from api.billing.razorpay_billing import RazorpayBilling
from api.core.action_quotas import take_workspace_quota
from api.core.deps import ActingUser, ServiceDatabase, UserScope
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import (
    RATE_LIMITED,
    WORKSPACE_NOT_FOUND,
    documented,
    insufficient_role,
    json_body_example,
    merged_errors,
)

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])
PaidTier = Literal["solo", "team"]


class NewSubscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    tier: PaidTier


class Cancellation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_period_end: bool = Field(
        True, description="Cancel when the paid period ends (true) or at once (false)"
    )


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tier: PaidTier


class Checkout(BaseModel):
    """What Razorpay Checkout is opened with to pay for the subscription."""

    key: str = Field(description="The Razorpay key id (public) Checkout is opened with")
    subscription_id: str = Field(description="Razorpay's id of the subscription (`sub_…`)")
    short_url: str | None = Field(description="Razorpay's hosted payment page, when it sent one")


class CreatedSubscription(BaseModel):
    id: UUID
    status: Literal["created"] = Field(
        description="A new subscription is `created`; Razorpay's webhooks move it on"
    )
    tier: PaidTier
    checkout: Checkout


class CancelledSubscription(BaseModel):
    id: UUID
    razorpay_status: str | None = Field(
        description="The subscription's status as Razorpay answered the cancellation: "
        "`active` until the period ends, `cancelled` when cancelled at once"
    )
    at_period_end: bool


class ScheduledPlanChange(BaseModel):
    id: UUID
    tier: PaidTier
    scheduled_at_period_end: bool = Field(
        description="Razorpay has scheduled the change for the end of the paid period"
    )


@dataclass(frozen=True)
class ManagedSubscription:
    workspace_id: UUID
    razorpay_subscription_id: str
    new_plan_id: str | None


MANAGERS_ONLY = insufficient_role("admin")
NOT_PURCHASABLE = {422: {"plan_not_purchasable": "The team plan cannot be bought"}}
# The subscription is read under RLS first, so an outsider is told it is not found; the
# workspace's own 404 cannot follow for someone who could read its subscription.
MANAGING_ERRORS = merged_errors(
    MANAGERS_ONLY,
    {404: {"subscription_not_found": "Subscription not found"}},
    RATE_LIMITED,
    razorpay_errors("id_invalid", "not_in_workspace", "refused", "failed"),
)
SUBSCRIPTION_ID_EXAMPLE = "0b6f2c8e-3d1a-4e5b-9f7c-2a8d4e6b1c3f"


def managed_subscription(
    acting: UserScope,
    client: RazorpayBilling,
    subscription_id: UUID,
    new_tier: PaidTier | None = None,
) -> ManagedSubscription:
    """The subscription, if the user is an owner or admin of its workspace and Razorpay holds
    it for that workspace, with the Razorpay plan id of `new_tier` when one is asked for. The
    billing limit is spent before Razorpay is called."""
    with acting.connection() as conn:
        row = conn.execute(
            "select workspace_id, razorpay_subscription_id from public.subscriptions where id = %s",
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
    client.fetch_for_workspace(row["razorpay_subscription_id"], row["workspace_id"])
    return ManagedSubscription(
        row["workspace_id"], row["razorpay_subscription_id"], plan["id"] if plan else None
    )


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=Envelope[CreatedSubscription],
    summary="Start a paid subscription for a workspace",
    responses=documented(
        {
            "id": SUBSCRIPTION_ID_EXAMPLE,
            "status": "created",
            "tier": "solo",
            "checkout": {
                "key": "rzp_live_ILgsfZCZoFIKMb",
                "subscription_id": "sub_00A00000000001",
                "short_url": "https://rzp.io/i/z3b1R61A9",
            },
        },
        status=201,
        errors=merged_errors(
            MANAGERS_ONLY,
            WORKSPACE_NOT_FOUND,
            {409: {"subscription_exists": "This workspace already has a live subscription"}},
            NOT_PURCHASABLE,
            RATE_LIMITED,
            razorpay_errors("refused", "failed"),
        ),
    ),
    openapi_extra=json_body_example(
        {"workspace_id": "3f2a9d4e-8b1c-4e7f-a6d5-0c9b8e7f6a5d", "tier": "solo"}
    ),
)
def create_subscription(
    body: NewSubscription, acting: ActingUser, database: ServiceDatabase, client: Billing
) -> dict[str, Any]:
    """Owners and admins only, for a workspace without a live subscription. Creates the
    subscription at Razorpay and answers what Razorpay Checkout needs; the subscription becomes
    active (and the workspace's tier changes) only when Razorpay's webhooks say so."""
    with acting.connection() as conn:
        take_workspace_quota(conn, body.workspace_id, "billing")
        prepared = conn.execute(
            "select public.prepare_subscription(%s, %s) as plan_id", (body.workspace_id, body.tier)
        ).fetchone()
    assert prepared is not None
    created = client.create_subscription(prepared["plan_id"], str(body.workspace_id))
    with database.as_service() as conn:
        row = conn.execute(
            "select id, status from private.record_subscription(%s, %s, %s)",
            (body.workspace_id, acting.user.user_id, Jsonb(created)),
        ).fetchone()
    assert row is not None
    return ok(
        CreatedSubscription(
            id=row["id"],
            status=row["status"],
            tier=body.tier,
            checkout=Checkout(
                key=client.key_id,
                subscription_id=created["id"],
                short_url=created.get("short_url"),
            ),
        )
    )


@router.post(
    "/subscriptions/{subscription_id}/cancel",
    response_model=Envelope[CancelledSubscription],
    summary="Cancel a subscription now or at the end of its paid period",
    responses=documented(
        {"id": SUBSCRIPTION_ID_EXAMPLE, "razorpay_status": "active", "at_period_end": True},
        errors=MANAGING_ERRORS,
    ),
    openapi_extra=json_body_example({"at_period_end": True}),
)
def cancel_subscription(
    subscription_id: UUID,
    body: Cancellation,
    acting: ActingUser,
    database: ServiceDatabase,
    client: Billing,
) -> dict[str, Any]:
    """Owners and admins only. Cancelling at the period end keeps the paid tier until Razorpay
    reports the cancellation when the period ends; cancelling at once ends it when Razorpay's
    webhook arrives."""
    subscription = managed_subscription(acting, client, subscription_id)
    result = client.cancel(subscription.razorpay_subscription_id, body.at_period_end)
    if body.at_period_end:
        with database.as_service() as conn:
            conn.execute("select private.mark_cancel_at_period_end(%s)", (subscription_id,))
    return ok(
        CancelledSubscription(
            id=subscription_id,
            razorpay_status=result.get("status"),
            at_period_end=body.at_period_end,
        )
    )


@router.post(
    "/subscriptions/{subscription_id}/change-plan",
    response_model=Envelope[ScheduledPlanChange],
    summary="Move a subscription to another paid tier from its next period",
    responses=documented(
        {"id": SUBSCRIPTION_ID_EXAMPLE, "tier": "team", "scheduled_at_period_end": True},
        errors=merged_errors(MANAGING_ERRORS, NOT_PURCHASABLE),
    ),
    openapi_extra=json_body_example({"tier": "team"}),
)
def change_plan(
    subscription_id: UUID, body: PlanChange, acting: ActingUser, client: Billing
) -> dict[str, Any]:
    """Owners and admins only. Razorpay schedules the change for the end of the paid period;
    the workspace's tier follows when Razorpay's webhook reports it."""
    subscription = managed_subscription(acting, client, subscription_id, body.tier)
    assert subscription.new_plan_id is not None
    result = client.change_plan(subscription.razorpay_subscription_id, subscription.new_plan_id)
    return ok(
        ScheduledPlanChange(
            id=subscription_id,
            tier=body.tier,
            scheduled_at_period_end=bool(result.get("has_scheduled_changes", True)),
        )
    )
