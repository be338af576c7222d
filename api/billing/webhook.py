"""Razorpay webhooks: verified over the raw body with the webhook secret (hex HMAC-SHA256,
compared as bytes in constant time: the SDK's utility compares str and raises on non-ASCII),
de-duplicated on X-Razorpay-Event-Id, stored, acknowledged at once, then applied in SQL
(private.apply_razorpay_event); anything not applied is replayed by the cron."""

import hashlib
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from api.billing.deps import WEBHOOK_SECRET, WebhookSecret
from api.billing.razorpay_event import EVENT_EXAMPLE, EVENT_SCHEMA
from api.core.db import Database
from api.core.envelope import Envelope, ok
from api.core.openapi import documented, merged_errors, raw_request_body
from api.core.signatures import WEBHOOK_SIGNATURE_ERRORS, verify_webhook_hmac
from api.webhooks.body import parse_json, raw_body
from api.webhooks.intake import Applier, Intake, sql_applier

router = APIRouter(tags=["webhooks"])

RAZORPAY_SIGNATURE = APIKeyHeader(
    name="X-Razorpay-Signature",
    scheme_name="razorpaySignature",
    description="Hex HMAC-SHA256 of the raw request body, keyed with the webhook's secret "
    "(`RAZORPAY_WEBHOOK_SECRET`, not the API key secret).",
    auto_error=False,
)


class WebhookReceipt(BaseModel):
    outcome: Literal["accepted", "duplicate"] = Field(
        description="`accepted`: stored, and applied after this answer; `duplicate`: an event "
        "with this X-Razorpay-Event-Id was stored and applied before"
    )


WEBHOOK_ERRORS = merged_errors(
    WEBHOOK_SIGNATURE_ERRORS, {503: {"provider_not_configured": WEBHOOK_SECRET.unconfigured}}
)


@router.post(
    "/api/v1/webhooks/razorpay",
    response_model=Envelope[WebhookReceipt],
    summary="Receive a Razorpay webhook event",
    responses=documented({"outcome": "accepted"}, errors=WEBHOOK_ERRORS),
    openapi_extra=raw_request_body("application/json", EVENT_SCHEMA, EVENT_EXAMPLE),
)
def razorpay_webhook(
    background: BackgroundTasks,
    body: Annotated[bytes, Depends(raw_body)],
    secret: WebhookSecret,
    signature: Annotated[str | None, Security(RAZORPAY_SIGNATURE)],
    intake: Intake,
    event_id: Annotated[
        str,
        Header(
            alias="X-Razorpay-Event-Id",
            description="Razorpay's id of the event, the same on every redelivery (the body "
            "has none); without it the body's SHA-256 stands in",
        ),
    ] = "",
) -> dict[str, Any]:
    """Razorpay calls this for the events the webhook subscribes to (subscriptions and their
    payments). It is answered at once, before the event is applied, so Razorpay never times out
    and retries; any 2xx stops Razorpay's retries, and an event applied with a failure is
    retried by the replay cron."""
    verify_webhook_hmac(secret, body, signature, digest="sha256", encoding="hex")
    parse_json(body)
    recorded = intake.record("razorpay", event_id or hashlib.sha256(body).hexdigest(), body)
    if recorded.duplicate:
        return ok(WebhookReceipt(outcome="duplicate"))
    intake.apply_later(background, "razorpay", recorded.event)
    return ok(WebhookReceipt(outcome="accepted"))


def applier(database: Database) -> Applier:
    """Razorpay events are applied in SQL: subscription state, payments, credits."""
    return sql_applier(database, "apply_razorpay_event")
