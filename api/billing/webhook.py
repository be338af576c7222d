"""Razorpay webhooks: verified over the raw body with the webhook secret (hex HMAC-SHA256,
compared as bytes in constant time: the SDK's utility compares str and raises on non-ASCII),
de-duplicated on X-Razorpay-Event-Id, stored, acknowledged at once, then applied in SQL
(private.apply_razorpay_event); anything not applied is replayed by the cron."""

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request

from api.core.db import Database
from api.core.deps import AppSettings
from api.core.envelope import ok
from api.core.errors import ApiError
from api.core.signatures import same_signature
from api.webhooks.body import documented_webhook, parse_json, raw_body
from api.webhooks.intake import Applier, Intake, sql_applier

router = APIRouter(tags=["webhooks"])


@router.post(
    "/api/v1/webhooks/razorpay",
    openapi_extra=documented_webhook("X-Razorpay-Signature", "X-Razorpay-Event-Id"),
)
def razorpay_webhook(
    request: Request,
    background: BackgroundTasks,
    body: Annotated[bytes, Depends(raw_body)],
    settings: AppSettings,
    intake: Intake,
) -> dict[str, Any]:
    if settings.razorpay_webhook_secret is None:
        raise ApiError(503, "provider_not_configured", "RAZORPAY_WEBHOOK_SECRET is not set")
    secret = settings.razorpay_webhook_secret.get_secret_value().encode()
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not same_signature(expected, request.headers.get("X-Razorpay-Signature", "")):
        raise ApiError(401, "signature_invalid", "The webhook signature does not verify")
    parse_json(body)
    event_id = request.headers.get("X-Razorpay-Event-Id") or hashlib.sha256(body).hexdigest()
    recorded = intake.record("razorpay", event_id, body)
    if recorded.duplicate:
        return ok({"outcome": "duplicate"})
    intake.apply_later(background, "razorpay", recorded.event)
    return ok({"outcome": "accepted"})


def applier(database: Database) -> Applier:
    """Razorpay events are applied in SQL: subscription state, payments, credits."""
    return sql_applier(database, "apply_razorpay_event")
