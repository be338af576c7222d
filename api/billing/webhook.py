"""Razorpay webhooks: verified over the raw body with the webhook secret (hex HMAC-SHA256,
compared as bytes in constant time: the SDK's utility compares str and raises on non-ASCII),
de-duplicated on X-Razorpay-Event-Id, stored, acknowledged at once, then applied in SQL
(private.apply_razorpay_event); anything not applied is replayed by the cron."""

import hashlib
import hmac
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Depends, Request

from api.core.db import Database
from api.core.envelope import ok
from api.core.errors import ApiError
from api.core.settings import Settings
from api.core.signatures import same_signature
from api.webhooks.body import documented_webhook, parse_json, raw_body
from api.webhooks.intake import apply_in_background

router = APIRouter(tags=["webhooks"])


@router.post(
    "/api/v1/webhooks/razorpay",
    openapi_extra=documented_webhook("X-Razorpay-Signature", "X-Razorpay-Event-Id"),
)
def razorpay_webhook(
    request: Request, background: BackgroundTasks, body: Annotated[bytes, Depends(raw_body)]
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    if settings.razorpay_webhook_secret is None:
        raise ApiError(503, "provider_not_configured", "RAZORPAY_WEBHOOK_SECRET is not set")
    secret = settings.razorpay_webhook_secret.get_secret_value().encode()
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    if not same_signature(expected, request.headers.get("X-Razorpay-Signature", "")):
        raise ApiError(401, "signature_invalid", "The webhook signature does not verify")
    parse_json(body)
    event_id = request.headers.get("X-Razorpay-Event-Id") or hashlib.sha256(body).hexdigest()
    database: Database = request.app.state.database
    with database.as_service() as conn:
        stored = conn.execute(
            "select id, duplicate from private.record_webhook_event('razorpay', %s, %s)",
            (event_id[:200], body.decode()),
        ).fetchone()
    assert stored is not None
    if stored["duplicate"]:
        return ok({"outcome": "duplicate"})
    background.add_task(apply_in_background, database, "razorpay", stored["id"])
    return ok({"outcome": "accepted"})
