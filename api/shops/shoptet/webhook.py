"""Shoptet webhooks: /api/v1/webhooks/shoptet/{project_id}.

Verified by `Shoptet-Webhook-Signature` (hex HMAC-SHA1 of the raw body with the project's
signature key), stored raw and de-duplicated on (event, eventInstance, eventCreated) since
Shoptet sends no event id, then acknowledged at once (Shoptet waits 4 s). The event names only
the order code or customer guid, so applying it fetches the detail from Shoptet; that runs
after the answer, and events whose apply did not finish are replayed by the cron.
"""

import hashlib
import hmac
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from psycopg.types.json import Jsonb

from api.core.db import Database
from api.core.deps import ServiceDatabase
from api.core.envelope import ok
from api.core.errors import ApiError
from api.core.secrets_box import SecretBox
from api.core.signatures import same_signature
from api.shops.deps import OptionalBox
from api.shops.integration_secrets import integration_secrets
from api.shops.shoptet.client import ShoptetError, check_event_instance, to_customer, to_order
from api.shops.shoptet.sync import shoptet_client_for
from api.webhooks.body import documented_webhook, parse_json, raw_body
from api.webhooks.intake import Applier, Intake, StoredEvent

router = APIRouter(tags=["webhooks"])
ORDER_EVENTS = frozenset({"order:create", "order:update", "order:paid", "order:cancel"})
CUSTOMER_EVENTS = frozenset({"customer:create", "customer:update"})


def unauthorized() -> ApiError:
    return ApiError(401, "signature_invalid", "The webhook signature does not verify")


def signature_key(database: Database, box: SecretBox | None, project_id: UUID) -> str:
    key = integration_secrets(database, box, project_id, "shoptet").webhook_secret
    if key is None:
        raise unauthorized()
    return key


def apply_event(
    database: Database,
    box: SecretBox | None,
    api_url: str,
    project_id: UUID,
    event_id: UUID,
    event: dict[str, Any],
) -> str:
    """Fetch what the event names and upsert it; returns the outcome it was stored with."""
    name, instance = event.get("event"), str(event.get("eventInstance") or "")
    if name in ORDER_EVENTS or name in CUSTOMER_EVENTS:
        client = shoptet_client_for(database, box, api_url, project_id)
        try:
            if name in ORDER_EVENTS:
                document = Jsonb(to_order(client.order(instance)))
                query = "select private.upsert_order(%s, 'shoptet', %s)"
            else:
                document = Jsonb(to_customer(client.customer(instance)))
                query = "select private.upsert_shop_customer(%s, 'shoptet', %s)"
        finally:
            client.close()
        with database.as_service() as conn:
            conn.execute(query, (project_id, document))
        outcome = "applied"
    else:
        outcome = "ignored"
    with database.as_service() as conn:
        conn.execute("select private.finish_webhook_event(%s, %s)", (event_id, outcome))
    return outcome


def applier(database: Database, box: SecretBox | None, api_url: str) -> Applier:
    """Applies a stored Shoptet event (its id starts with the project's id)."""

    def apply(stored: StoredEvent) -> str:
        project_id = UUID(stored.event_id.split(":", 1)[0])
        return apply_event(database, box, api_url, project_id, stored.id, parse_json(stored.body))

    return apply


@router.post(
    "/api/v1/webhooks/shoptet/{project_id}",
    openapi_extra=documented_webhook("Shoptet-Webhook-Signature"),
)
def shoptet_webhook(
    project_id: UUID,
    request: Request,
    background: BackgroundTasks,
    body: Annotated[bytes, Depends(raw_body)],
    database: ServiceDatabase,
    box: OptionalBox,
    intake: Intake,
) -> dict[str, Any]:
    key = signature_key(database, box, project_id)
    expected = hmac.new(key.encode(), body, hashlib.sha1).hexdigest()
    sent = request.headers.get("Shoptet-Webhook-Signature", "")
    if not same_signature(expected, sent.lower()):
        raise unauthorized()
    event = parse_json(body)
    if not isinstance(event, dict) or not all(
        isinstance(event.get(field), str) for field in ("event", "eventInstance", "eventCreated")
    ):
        raise ApiError(422, "invalid_input", "Not a Shoptet webhook body")
    try:
        check_event_instance(event["event"], event["eventInstance"])
    except ShoptetError as error:
        field = {"field": "body.eventInstance", "message": str(error), "type": error.code}
        raise ApiError(422, "invalid_input", str(error), [field]) from error
    dedupe = f"{project_id}:{event['event']}:{event['eventInstance']}:{event['eventCreated']}"
    recorded = intake.record("shoptet", dedupe, body)
    if recorded.duplicate:
        return ok({"outcome": "duplicate"})
    intake.apply_later(background, "shoptet", recorded.event)
    return ok({"outcome": "accepted"})
