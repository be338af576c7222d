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

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import APIKeyHeader
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from api.core.deps import ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import JSON, documented, inline_schema, merged_errors
from api.core.signatures import same_signature
from api.shops.deps import SECRET_BOX, OptionalBox
from api.shops.errors import (
    OPENING_CREDENTIALS,
    UPSERT_RACE,
    WEBHOOK_REFUSALS,
    signature_invalid,
)
from api.shops.integration_secrets import integration_secrets
from api.shops.orders import (
    MalformedOrderError,
    ShopifyOrder,
    UnsupportedOrderError,
    WooCommerceOrder,
    from_shopify,
    from_woocommerce,
)
from api.webhooks.body import parse_json, raw_body
from api.webhooks.intake import Intake

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("growthbase.webhooks")


@dataclass(frozen=True)
class ShopWebhook:
    name: str
    signature_header: str
    delivery_header: str
    topic_header: str
    order_topics: frozenset[str]
    to_order: Callable[[dict[str, Any]], dict[str, Any]]


SHOPS = {
    "shopify": ShopWebhook(
        name="Shopify",
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
        name="WooCommerce",
        signature_header="X-WC-Webhook-Signature",
        delivery_header="X-WC-Webhook-Delivery-ID",
        topic_header="X-WC-Webhook-Topic",
        order_topics=frozenset({"order.created", "order.updated", "order.restored"}),
        to_order=from_woocommerce,
    ),
}


def signature_scheme(source: str, scheme_name: str, keyed_with: str) -> APIKeyHeader:
    shop = SHOPS[source]
    return APIKeyHeader(
        name=shop.signature_header,
        scheme_name=scheme_name,
        auto_error=False,
        description=f"{shop.name}'s signature of a webhook: base64 HMAC-SHA256 of the raw body "
        f"keyed with {keyed_with} (the secret given at connect).",
    )


SHOPIFY_SIGNATURE = signature_scheme("shopify", "shopifyHmac", "the app's client secret")
WOOCOMMERCE_SIGNATURE = signature_scheme(
    "woocommerce", "wooCommerceSignature", "the webhook's own secret"
)


class ShopWebhookOutcome(BaseModel):
    outcome: Literal["applied", "ignored", "unmappable", "duplicate", "ping"] = Field(
        description="`applied`: the order was stored; `ignored`: a topic that is no order; "
        "`unmappable`: an order missing what an order needs, kept but not applied; `duplicate`: "
        "a re-delivery, nothing changed; `ping`: WooCommerce's unsigned test when a webhook is "
        "created"
    )


# The providers' own documentation samples, trimmed.
SHOPIFY_ORDER_EXAMPLE = {
    "id": 450789469,
    "admin_graphql_api_id": "gid://shopify/Order/450789469",
    "name": "#1001",
    "email": "bob.norman@mail.example.com",
    "created_at": "2008-01-10T11:00:00-05:00",
    "updated_at": "2008-01-10T11:00:00-05:00",
    "currency": "USD",
    "total_price": "598.94",
    "subtotal_price": "597.00",
    "financial_status": "paid",
    "fulfillment_status": None,
    "cancelled_at": None,
    "customer": {
        "id": 207119551,
        "email": "bob.norman@mail.example.com",
        "first_name": "Bob",
        "last_name": "Norman",
        "phone": "+16136120707",
        "email_marketing_consent": {"state": "not_subscribed", "opt_in_level": None},
        "default_address": {"city": "Ottawa", "country_code": "CA"},
    },
    "line_items": [
        {
            "id": 466157049,
            "title": "IPod Nano - 8gb",
            "sku": "IPOD2008GREEN",
            "quantity": 3,
            "price": "199.00",
        }
    ],
}
WOOCOMMERCE_ORDER_EXAMPLE = {
    "id": 727,
    "parent_id": 0,
    "number": "727",
    "status": "processing",
    "currency": "USD",
    "date_created": "2017-03-22T16:28:02",
    "date_created_gmt": "2017-03-22T19:28:02",
    "total": "29.35",
    "customer_id": 0,
    "billing": {
        "first_name": "John",
        "last_name": "Doe",
        "city": "San Francisco",
        "country": "US",
        "email": "john.doe@example.com",
        "phone": "(555) 555-5555",
    },
    "payment_method": "bacs",
    "line_items": [
        {"id": 315, "name": "Woo Single #1", "product_id": 93, "quantity": 2, "sku": "", "price": 3}
    ],
}
SHOP_WEBHOOK_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The shop's resource as its webhook sends it: an order for the order "
        "topics (Shopify's REST Admin Order, WooCommerce's REST v3 order); other topics' bodies "
        "are acknowledged and ignored. WooCommerce first pings a new webhook with a form body.",
        "content": {
            JSON: {
                "schema": {
                    "anyOf": [
                        inline_schema(ShopifyOrder.model_json_schema()),
                        inline_schema(WooCommerceOrder.model_json_schema()),
                    ]
                },
                "examples": {
                    "shopify": {"summary": "Shopify orders/create", "value": SHOPIFY_ORDER_EXAMPLE},
                    "woocommerce": {
                        "summary": "WooCommerce order.created",
                        "value": WOOCOMMERCE_ORDER_EXAMPLE,
                    },
                },
            },
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {"webhook_id": {"type": "string"}},
                    "required": ["webhook_id"],
                },
                "example": {"webhook_id": "3"},
            },
        },
    },
    "parameters": [
        {
            "name": header,
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": description,
            "example": example,
        }
        for shop, example_topic in (
            (SHOPS["shopify"], "orders/create"),
            (SHOPS["woocommerce"], "order.created"),
        )
        for header, description, example in (
            (
                shop.topic_header,
                f"{shop.name}'s topic: {', '.join(sorted(shop.order_topics))} are applied, "
                "others acknowledged as `ignored`",
                example_topic,
            ),
            (
                shop.delivery_header,
                f"{shop.name}'s delivery id, which a re-delivery repeats (answered `duplicate`)"
                "; without it the body's SHA-256 stands in",
                "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
            ),
        )
    ],
}


def verify(secret: str | None, body: bytes, sent: str | None) -> None:
    if secret is None or not sent:
        raise signature_invalid()
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    if not same_signature(expected.decode(), sent):
        raise signature_invalid()


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
    response_model=Envelope[ShopWebhookOutcome],
    summary="Receive a Shopify or WooCommerce order webhook",
    responses=documented(
        {"outcome": "applied"},
        errors=merged_errors(WEBHOOK_REFUSALS, OPENING_CREDENTIALS, UPSERT_RACE),
    ),
    openapi_extra=SHOP_WEBHOOK_OPENAPI,
)
def shop_webhook(
    source: Literal["shopify", "woocommerce"],
    project_id: UUID,
    request: Request,
    body: Annotated[bytes, Depends(raw_body)],
    shopify_signature: Annotated[str | None, Security(SHOPIFY_SIGNATURE)],
    woocommerce_signature: Annotated[str | None, Security(WOOCOMMERCE_SIGNATURE)],
    database: ServiceDatabase,
    box: OptionalBox,
    intake: Intake,
) -> dict[str, Any]:
    """The URL `connect` answered for the project. Verified with the project's webhook secret
    (an unknown project, a missing secret and a bad signature are one 401), stored under the
    delivery id, then an order topic's order is upserted with its customer while the shop
    waits. A signed order whose fields have the wrong type is a 422 and is not stored."""
    shop = SHOPS[source]
    headers = request.headers
    if source == "woocommerce" and body.startswith(b"webhook_id="):
        # WooCommerce pings a new webhook with a form body; acknowledging it changes nothing.
        return ok({"outcome": "ping"})
    if box is None:
        raise ApiError(503, "provider_not_configured", SECRET_BOX.unconfigured)
    signature = shopify_signature if source == "shopify" else woocommerce_signature
    verify(integration_secrets(database, box, project_id, source).webhook_secret, body, signature)
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
                "select private.upsert_orders(%s, %s, %s)", (project_id, source, Jsonb([order]))
            )
    intake.finish(recorded.event, outcome)
    return ok({"outcome": outcome})
