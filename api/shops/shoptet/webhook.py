"""Shoptet webhooks: /api/v1/webhooks/shoptet/{project_id}.

Verified by `Shoptet-Webhook-Signature` (hex HMAC-SHA1 of the raw body with the project's
signature key), stored raw and de-duplicated on (event, eventInstance, eventCreated) since
Shoptet sends no event id, then acknowledged at once (Shoptet waits 4 s). The event names only
the order code or customer guid, so applying it fetches the detail from Shoptet; that runs
after the answer, and events whose apply did not finish are replayed by the cron.
"""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Depends, Security
from fastapi.security import APIKeyHeader
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from api.core.db import Database
from api.core.deps import ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import JSON, documented, raw_request_body
from api.core.secrets_box import SecretBox
from api.core.signatures import verify_webhook_hmac
from api.shops.backfill_jobs import without_nul
from api.shops.deps import Box
from api.shops.errors import WEBHOOK_REFUSALS
from api.shops.integration_secrets import NoEncryptionKeyError, integration_secrets
from api.shops.shoptet.client import ShoptetError, check_event_instance
from api.shops.shoptet.sync import CUSTOMERS, ORDERS, UNMAPPABLE, Stream, shoptet_client_for
from api.webhooks.body import parse_json, raw_body
from api.webhooks.intake import Applier, Intake, StoredEvent

router = APIRouter(tags=["webhooks"])
ORDER_EVENTS = frozenset({"order:create", "order:update", "order:paid", "order:cancel"})
CUSTOMER_EVENTS = frozenset({"customer:create", "customer:update"})
SHOPTET_SIGNATURE = APIKeyHeader(
    name="Shoptet-Webhook-Signature",
    scheme_name="shoptetSignature",
    auto_error=False,
    description="Shoptet's signature of a webhook: hex HMAC-SHA1 of the raw body keyed with the "
    "e-shop's signature key (POST /api/webhooks/renew-signature-key; given at connect).",
)


class ShoptetEvent(BaseModel):
    """Shoptet's webhook body: what happened and the id of what it happened to, whose detail
    the edge then fetches."""

    model_config = ConfigDict(extra="allow")

    eshop_id: int | None = Field(default=None, alias="eshopId")
    event: str = Field(
        description="order:create, order:update, order:paid, order:cancel, customer:create and "
        "customer:update are applied; other events are acknowledged and ignored"
    )
    event_created: str = Field(
        alias="eventCreated", description="When it happened, e.g. 2019-01-08T15:13:39+0100"
    )
    event_instance: str = Field(
        alias="eventInstance",
        description="The order code (order:*, [A-Za-z0-9_-]{1,64}) or customer GUID "
        "(customer:*, a UUID)",
    )


class ShoptetWebhookOutcome(BaseModel):
    outcome: Literal["accepted", "duplicate"] = Field(
        description="`accepted`: stored, applied right after the answer (and by the replay cron "
        "until it is); `duplicate`: a re-delivery, nothing changed"
    )


def apply_record(database: Database, project_id: UUID, stream: Stream, record: Any) -> str:
    """Upserts the fetched record: `applied`; `unmappable` when it lacks what it needs (an
    order's code or time) and `skipped` when the database leaves the order out (it breaks a
    rule of its table), both final: the same record would fail the same way on every replay."""
    try:
        document = stream.to_document(record)
    except UNMAPPABLE:
        return "unmappable"
    with database.as_service() as conn:
        row = conn.execute(stream.query, (project_id, Jsonb(without_nul([document])))).fetchone()
    written = next(iter(row.values())) if row else None
    return "skipped" if stream is ORDERS and written == 0 else "applied"


def apply_event(
    database: Database,
    box: SecretBox,
    api_url: str,
    project_id: UUID,
    event_id: UUID,
    event: dict[str, Any],
) -> str:
    """Fetch what the event names and upsert it; returns the outcome it was stored with."""
    name, instance = event.get("event"), str(event.get("eventInstance") or "")
    if name in ORDER_EVENTS or name in CUSTOMER_EVENTS:
        stream = ORDERS if name in ORDER_EVENTS else CUSTOMERS
        client = shoptet_client_for(database, box, api_url, project_id)
        try:
            record = client.order(instance) if stream is ORDERS else client.customer(instance)
        finally:
            client.close()
        outcome = apply_record(database, project_id, stream, record)
    else:
        outcome = "ignored"
    with database.as_service() as conn:
        conn.execute("select private.finish_webhook_event(%s, %s)", (event_id, outcome))
    return outcome


def applier(database: Database, box: SecretBox | None, api_url: str) -> Applier:
    """Applies a stored Shoptet event (its id starts with the project's id)."""

    def apply(stored: StoredEvent) -> str:
        if box is None:
            raise NoEncryptionKeyError("INTEGRATIONS_ENCRYPTION_KEY is not configured")
        project_id = UUID(stored.event_id.split(":", 1)[0])
        return apply_event(database, box, api_url, project_id, stored.id, parse_json(stored.body))

    return apply


@router.post(
    "/api/v1/webhooks/shoptet/{project_id}",
    response_model=Envelope[ShoptetWebhookOutcome],
    summary="Receive a Shoptet webhook",
    responses=documented({"outcome": "accepted"}, errors=WEBHOOK_REFUSALS),
    openapi_extra=raw_request_body(
        JSON,
        ShoptetEvent.model_json_schema(),
        {
            "eshopId": 222651,
            "event": "order:create",
            "eventCreated": "2026-06-01T10:06:00+0200",
            "eventInstance": "2026000057",
        },
    ),
)
def shoptet_webhook(
    project_id: UUID,
    background: BackgroundTasks,
    body: Annotated[bytes, Depends(raw_body)],
    signature: Annotated[str | None, Security(SHOPTET_SIGNATURE)],
    database: ServiceDatabase,
    box: Box,
    intake: Intake,
) -> dict[str, Any]:
    """The URL `connect` answered for the project, registered with Shoptet's `POST
    /api/webhooks`. Verified with the project's signature key (an unknown project, a missing
    key and a bad signature are one 401), stored and de-duplicated on (event, eventInstance,
    eventCreated), acknowledged at once (Shoptet waits 4 s); the detail is fetched and applied
    after the answer. An eventInstance that is no order code or customer GUID is a 422 and is
    not stored."""
    key = integration_secrets(database, box, project_id, "shoptet").webhook_secret
    verify_webhook_hmac(key, body, signature, digest="sha1", encoding="hex")
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
