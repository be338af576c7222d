"""Order webhooks from Shopify and WooCommerce, one URL per project:
/api/v1/webhooks/{shopify|woocommerce}/{project_id}.

Each is verified with the project's webhook secret (base64 HMAC-SHA256 of the raw body,
compared in constant time), stored raw under the provider's delivery id, then mapped onto an
order and upserted. A re-delivery is acknowledged and changes nothing.
"""

import base64
import hashlib
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from psycopg.types.json import Jsonb

from api.core.db import Database
from api.core.deps import ServiceDatabase
from api.core.envelope import ok
from api.core.errors import ApiError
from api.core.secrets_box import SecretBox
from api.shops.deps import OptionalBox
from api.shops.integration_secrets import integration_secrets
from api.shops.orders import (
    MalformedOrderError,
    UnsupportedOrderError,
    from_shopify,
    from_woocommerce,
)
from api.webhooks.body import documented_webhook, parse_json, raw_body
from api.webhooks.intake import Intake

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("growthbase.webhooks")


@dataclass(frozen=True)
class ShopWebhook:
    signature_header: str
    delivery_header: str
    topic_header: str
    order_topics: frozenset[str]
    to_order: Callable[[dict[str, Any]], dict[str, Any]]


SHOPS = {
    "shopify": ShopWebhook(
        signature_header="X-Shopify-Hmac-Sha256",
        delivery_header="X-Shopify-Webhook-Id",
        topic_header="X-Shopify-Topic",
        order_topics=frozenset(
            {
                "orders/create",
                "orders/updated",
                "orders/paid",
                "orders/cancelled",
                "orders/fulfilled",
                "orders/partially_fulfilled",
            }
        ),
        to_order=from_shopify,
    ),
    "woocommerce": ShopWebhook(
        signature_header="X-WC-Webhook-Signature",
        delivery_header="X-WC-Webhook-Delivery-ID",
        topic_header="X-WC-Webhook-Topic",
        order_topics=frozenset({"order.created", "order.updated", "order.restored"}),
        to_order=from_woocommerce,
    ),
}


def unauthorized() -> ApiError:
    """One answer for an unknown project, a missing secret and a bad signature."""
    return ApiError(401, "signature_invalid", "The webhook signature does not verify")


def webhook_secret(database: Database, box: SecretBox | None, project_id: UUID, source: str) -> str:
    secret = integration_secrets(database, box, project_id, source).webhook_secret
    if secret is None:
        raise unauthorized()
    return secret


def verify(secret: str, body: bytes, sent: str | None) -> None:
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    if not sent or not hmac.compare_digest(expected, sent.encode()):
        raise unauthorized()


def mapped_order(
    shop: ShopWebhook, topic: str, payload: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The order to upsert and the outcome to store; a payload of the wrong shape is a 422
    before anything is stored, one that is no order we can map is kept as unmappable."""
    if topic not in shop.order_topics:
        return None, "ignored"
    try:
        return shop.to_order(payload), "applied"
    except MalformedOrderError as error:
        raise ApiError(
            422, "invalid_input", "The order has fields of the wrong type", error.fields
        ) from error
    except (UnsupportedOrderError, KeyError) as error:
        log.warning("order webhook not mappable: %s", type(error).__name__)
        return None, "unmappable"


@router.post(
    "/api/v1/webhooks/{source}/{project_id}",
    openapi_extra=documented_webhook(
        *(
            header
            for shop in SHOPS.values()
            for header in (shop.signature_header, shop.delivery_header, shop.topic_header)
        )
    ),
)
def shop_webhook(
    source: Literal["shopify", "woocommerce"],
    project_id: UUID,
    request: Request,
    body: Annotated[bytes, Depends(raw_body)],
    database: ServiceDatabase,
    box: OptionalBox,
    intake: Intake,
) -> dict[str, Any]:
    shop = SHOPS[source]
    headers = request.headers
    if source == "woocommerce" and body.startswith(b"webhook_id="):
        # WooCommerce pings a new webhook with a form body; acknowledging it changes nothing.
        return ok({"outcome": "ping"})
    verify(
        webhook_secret(database, box, project_id, source), body, headers.get(shop.signature_header)
    )
    topic = headers.get(shop.topic_header, "")
    delivery = headers.get(shop.delivery_header) or hashlib.sha256(body).hexdigest()
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_input", "The webhook body is not a JSON object")
    order, outcome = mapped_order(shop, topic, payload)
    recorded = intake.record(source, f"{project_id}:{delivery}", body)
    if recorded.duplicate:
        return ok({"outcome": "duplicate"})
    if order is not None:
        with database.as_service() as conn:
            conn.execute(
                "select private.upsert_order(%s, %s, %s)", (project_id, source, Jsonb(order))
            )
    intake.finish(recorded.event, outcome)
    return ok({"outcome": outcome})
