"""Order, customer and product webhooks from Shopify and WooCommerce, one URL per project:
/api/v1/webhooks/{shopify|woocommerce}/{project_id}.

Each is verified with the project's webhook secret (base64 HMAC-SHA256 of the raw body,
compared in constant time) and mapped by its topic (a malformed body is refused unstored), then
stored raw under the provider's delivery id with its topic, acknowledged, and applied after the
answer: an order upserted with its customer, a created or updated customer upserted
(private.apply_shop_customer), a deleted customer's shop id unlinked
(private.forget_shop_customer), a product upserted with its variants
(private.upsert_shop_product), a deleted one archived (private.archive_shop_product); Shopify's
compliance topics erase a customer (private.redact_shop_customer), record their access request
(private.record_shop_data_request) or remove an uninstalled shop (private.redact_shop). An event
whose apply did not finish is applied again by the replay cron, since the shop stops retrying
once it has been answered. A re-delivery is acknowledged and changes nothing.
"""

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Security
from fastapi.security import APIKeyHeader
from psycopg.types.json import Jsonb
from pydantic import BaseModel, Field

from api.core.db import Connection, Database
from api.core.deps import ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import JSON, documented, inline_schema
from api.core.secrets_box import SecretBox
from api.core.signatures import verify_webhook_hmac
from api.shops.checkouts import ShopifyCheckout, from_shopify_checkout
from api.shops.compliance import (
    CustomerRedactBody,
    DataRequestBody,
    ShopRedactBody,
    customer_redact,
    data_request,
    shop_redact,
)
from api.shops.customers import (
    ShopifyCustomerBody,
    WooCommerceCustomerBody,
    shopify_customer,
    shopify_deleted,
    woocommerce_customer,
    woocommerce_deleted,
)
from api.shops.deps import SECRET_BOX, answering_key_mismatch
from api.shops.errors import WEBHOOK_REFUSALS
from api.shops.integration_secrets import integration_secrets
from api.shops.orders import (
    MalformedOrderError,
    ShopifyOrder,
    UnsupportedOrderError,
    WooCommerceOrder,
    from_shopify,
    from_woocommerce,
)
from api.shops.products import (
    ShopifyProductBody,
    WooCommerceProductBody,
    shopify_deleted_product,
    shopify_product,
    woocommerce_deleted_product,
    woocommerce_product,
)
from api.shops.shopify_admin import ShopCredentials, ShopifyError
from api.shops.shopify_backfill import BulkOperationFinished, bulk_operation_finished
from api.webhooks.body import parse_json, raw_body
from api.webhooks.intake import Applier, Intake, StoredEvent

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("growthbase.webhooks")


# What a topic's body is applied as.
Kind = Literal[
    "order",
    "customer",
    "customer_deleted",
    "product",
    "product_deleted",
    "checkout",
    "bulk_operation",
    "customer_redact",
    "data_request",
    "shop_redact",
]
Mapper = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class ShopWebhook:
    name: str
    signature_header: str
    delivery_header: str
    topic_header: str
    topics: dict[str, Kind]  # the topics applied; any other is acknowledged and ignored
    mappers: dict[Kind, Mapper]

    def kind(self, topic: str) -> Kind | None:
        return self.topics.get(topic)


ShopSource = Literal["shopify", "woocommerce"]
SHOPIFY_ORDER_TOPICS = (
    "orders/create",
    "orders/updated",
    "orders/paid",
    "orders/cancelled",
    "orders/fulfilled",
    "orders/partially_fulfilled",
)
SHOPS = {
    "shopify": ShopWebhook(
        name="Shopify",
        signature_header="X-Shopify-Hmac-Sha256",
        delivery_header="X-Shopify-Webhook-Id",
        topic_header="X-Shopify-Topic",
        topics={
            **dict.fromkeys(SHOPIFY_ORDER_TOPICS, "order"),
            "customers/create": "customer",
            "customers/update": "customer",
            "customers/delete": "customer_deleted",
            "products/create": "product",
            "products/update": "product",
            "products/delete": "product_deleted",
            "checkouts/create": "checkout",
            "checkouts/update": "checkout",
            "bulk_operations/finish": "bulk_operation",
            "customers/redact": "customer_redact",
            "customers/data_request": "data_request",
            "shop/redact": "shop_redact",
        },
        mappers={
            "order": from_shopify,
            "checkout": from_shopify_checkout,
            "customer": shopify_customer,
            "customer_deleted": shopify_deleted,
            "product": shopify_product,
            "product_deleted": shopify_deleted_product,
            "bulk_operation": bulk_operation_finished,
            "customer_redact": customer_redact,
            "data_request": data_request,
            "shop_redact": shop_redact,
        },
    ),
    "woocommerce": ShopWebhook(
        name="WooCommerce",
        signature_header="X-WC-Webhook-Signature",
        delivery_header="X-WC-Webhook-Delivery-ID",
        topic_header="X-WC-Webhook-Topic",
        topics={
            "order.created": "order",
            "order.updated": "order",
            "order.restored": "order",
            "customer.created": "customer",
            "customer.updated": "customer",
            "customer.deleted": "customer_deleted",
            "product.created": "product",
            "product.updated": "product",
            "product.restored": "product",
            "product.deleted": "product_deleted",
        },
        mappers={
            "order": from_woocommerce,
            "customer": woocommerce_customer,
            "customer_deleted": woocommerce_deleted,
            "product": woocommerce_product,
            "product_deleted": woocommerce_deleted_product,
        },
    ),
}
# How each kind is applied, as the service: (statement, whether it takes a list of documents).
APPLY = {
    "order": "select private.upsert_orders(%s, %s, %s)",
    "customer": "select private.apply_shop_customer(%s, %s, %s)",
    "customer_deleted": "select private.forget_shop_customer(%s, %s, %s)",
    "product": "select private.upsert_shop_product(%s, %s, %s)",
    "product_deleted": "select private.archive_shop_product(%s, %s, %s)",
    "checkout": "select private.upsert_checkout(%s, %s, %s)",
    # Shopify's compliance topics (api/shops/compliance.py).
    "customer_redact": "select private.redact_shop_customer(%s, %s, %s)",
    "data_request": "select private.record_shop_data_request(%s, %s, %s)",
    "shop_redact": "select private.redact_shop(%s, %s, %s)",
}
# A backfill's bulk operation Shopify finished: its status noted (the source is Shopify's).
NOTE_BULK_OPERATION = "select private.note_shop_bulk_operation(%s, %s, %s, %s, null)"


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
    outcome: Literal["accepted", "ignored", "unmappable", "duplicate", "ping"] = Field(
        description="`accepted`: an order, customer or product, stored and applied right after the "
        "answer (and by the replay cron until it is); `ignored`: a topic that is neither; "
        "`unmappable`: an order, customer or product missing what it needs (an id), kept but not "
        "applied; `duplicate`: a re-delivery, nothing changed; `ping`: WooCommerce's unsigned "
        "test when a webhook is created"
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
SHOPIFY_CUSTOMER_EXAMPLE = {
    "id": 706405506930370084,
    "email": "bob@biller.com",
    "created_at": "2026-06-01T10:15:00-04:00",
    "updated_at": "2026-06-01T10:15:00-04:00",
    "first_name": "Bob",
    "last_name": "Biller",
    "state": "enabled",
    "phone": "+16136120707",
    "tags": "",
    "currency": "USD",
    "email_marketing_consent": {
        "state": "subscribed",
        "opt_in_level": "single_opt_in",
        "consent_updated_at": "2026-06-01T10:15:00-04:00",
    },
    "default_address": {"city": "Ottawa", "country_code": "CA"},
    "admin_graphql_api_id": "gid://shopify/Customer/706405506930370084",
}
WOOCOMMERCE_CUSTOMER_EXAMPLE = {
    "id": 25,
    "date_created_gmt": "2017-03-21T19:09:28",
    "email": "john.doe@example.com",
    "first_name": "John",
    "last_name": "Doe",
    "role": "customer",
    "username": "john.doe",
    "billing": {
        "first_name": "John",
        "last_name": "Doe",
        "country": "US",
        "email": "john.doe@example.com",
        "phone": "(555) 555-5555",
    },
    "is_paying_customer": False,
}
SHOPIFY_PRODUCT_EXAMPLE = {
    "id": 632910392,
    "title": "IPod Nano - 8GB",
    "handle": "ipod-nano",
    "product_type": "Cult Products",
    "vendor": "Apple",
    "status": "active",
    "image": {"id": 850703190, "src": "https://cdn.shopify.com/s/files/1/ipod-nano.png"},
    "variants": [
        {
            "id": 808950810,
            "product_id": 632910392,
            "title": "Pink",
            "price": "199.00",
            "sku": "IPOD2008PINK",
            "inventory_quantity": 10,
            "presentment_prices": [
                {"price": {"amount": "199.00", "currency_code": "USD"}, "compare_at_price": None}
            ],
        }
    ],
}
WOOCOMMERCE_PRODUCT_EXAMPLE = {
    "id": 794,
    "name": "Premium Quality",
    "slug": "premium-quality-19",
    "permalink": "https://example.com/product/premium-quality-19/",
    "type": "simple",
    "status": "publish",
    "sku": "PQ-19",
    "price": "21.99",
    "regular_price": "21.99",
    "stock_quantity": 12,
    "categories": [{"id": 9, "name": "Clothing", "slug": "clothing"}],
    "images": [{"id": 792, "src": "https://example.com/wp-content/uploads/T_2_front.jpg"}],
}
SHOP_WEBHOOK_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The shop's resource as its webhook sends it: an order for the order "
        "topics (Shopify's REST Admin Order, WooCommerce's REST v3 order), a customer for the "
        "customer topics (Shopify's REST Admin Customer, WooCommerce's REST v3 customer), a "
        "product for the product topics (Shopify's REST Admin Product with its variants, "
        "WooCommerce's REST v3 product), Shopify's checkout for checkouts/create and "
        "checkouts/update (they start abandoned-cart flows), Shopify's bulk operation for "
        "bulk_operations/finish (a backfill's query ended), Shopify's compliance bodies for "
        "customers/redact, customers/data_request and shop/redact; a deletion sends at least "
        "the id. "
        "Other topics' bodies are acknowledged and ignored. "
        "WooCommerce first pings a new webhook with a form body.",
        "content": {
            JSON: {
                "schema": {
                    "anyOf": [
                        inline_schema(ShopifyOrder.model_json_schema()),
                        inline_schema(WooCommerceOrder.model_json_schema()),
                        inline_schema(ShopifyCustomerBody.model_json_schema()),
                        inline_schema(WooCommerceCustomerBody.model_json_schema()),
                        inline_schema(ShopifyProductBody.model_json_schema()),
                        inline_schema(WooCommerceProductBody.model_json_schema()),
                        inline_schema(ShopifyCheckout.model_json_schema()),
                        inline_schema(BulkOperationFinished.model_json_schema()),
                        inline_schema(CustomerRedactBody.model_json_schema()),
                        inline_schema(DataRequestBody.model_json_schema()),
                        inline_schema(ShopRedactBody.model_json_schema()),
                    ]
                },
                "examples": {
                    "shopify": {"summary": "Shopify orders/create", "value": SHOPIFY_ORDER_EXAMPLE},
                    "woocommerce": {
                        "summary": "WooCommerce order.created",
                        "value": WOOCOMMERCE_ORDER_EXAMPLE,
                    },
                    "shopify_customer": {
                        "summary": "Shopify customers/create",
                        "value": SHOPIFY_CUSTOMER_EXAMPLE,
                    },
                    "woocommerce_customer": {
                        "summary": "WooCommerce customer.created",
                        "value": WOOCOMMERCE_CUSTOMER_EXAMPLE,
                    },
                    "shopify_product": {
                        "summary": "Shopify products/create",
                        "value": SHOPIFY_PRODUCT_EXAMPLE,
                    },
                    "woocommerce_product": {
                        "summary": "WooCommerce product.created",
                        "value": WOOCOMMERCE_PRODUCT_EXAMPLE,
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
                f"{shop.name}'s topic: {', '.join(sorted(shop.topics))} are applied, "
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


def is_ping(source: ShopSource, body: bytes) -> bool:
    """WooCommerce pings a new webhook with an unsigned form body."""
    return source == "woocommerce" and body.startswith(b"webhook_id=")


def box_unless_ping(
    source: ShopSource, body: Annotated[bytes, Depends(raw_body)], request: Request
) -> Iterator[SecretBox | None]:
    """The credential box, which every delivery but WooCommerce's ping needs (the ping is
    acknowledged even where no key is configured); None for the ping."""
    box = None if is_ping(source, body) else SECRET_BOX.required(request)
    yield from answering_key_mismatch(box)


def mapped(
    shop: ShopWebhook, kind: Kind | None, payload: dict[str, Any]
) -> tuple[dict[str, Any] | None, str]:
    """The order, customer or product to apply and the outcome to store; a payload of the wrong
    shape is a 422 before anything is stored, one we cannot map (no id) is kept as unmappable."""
    if kind is None:
        return None, "ignored"
    try:
        return shop.mappers[kind](payload), "applied"
    except MalformedOrderError as error:
        thing = kind.removesuffix("_deleted").replace("_", " ")
        raise ApiError(
            422, "invalid_input", f"The {thing} has fields of the wrong type", error.fields
        ) from error
    except (UnsupportedOrderError, KeyError) as error:
        log.warning("%s webhook not mappable: %s", kind, type(error).__name__)
        return None, "unmappable"


def event_id(project_id: UUID, shop: ShopWebhook, topic: str, delivery: str) -> str:
    """`<project>:<topic>:<delivery>`: the replay needs the project and what the topic's body
    is, which only the request's headers say. Any other topic is kept as `other` (it is never
    applied), so the id stays short and splits on its first two colons."""
    return f"{project_id}:{topic if shop.kind(topic) else 'other'}:{delivery}"


def stored_origin(shop: ShopWebhook, stored_id: str) -> tuple[UUID, Kind | None]:
    """The project of a stored event and what it is applied as. Events stored before the
    topic was kept (`<project>:<delivery>`) were left unapplied only when an order's upsert
    failed."""
    project, *rest = stored_id.split(":", 2)
    return UUID(project), "order" if len(rest) < 2 else shop.kind(rest[0])


def apply_document(
    conn: Connection, project_id: UUID, source: ShopSource, kind: Kind, document: dict[str, Any]
) -> str:
    """Writes a mapped order (a page of one), customer or product; unlinks a deleted customer,
    archives a deleted product; notes a finished bulk operation. Answers the outcome to store:
    `applied`, or `skipped` for an order or checkout the database left out (one that breaks a
    rule of its table: retrying it would fail the same way)."""
    if kind == "bulk_operation":
        conn.execute(
            NOTE_BULK_OPERATION,
            (project_id, document["operation_id"], document["status"], document["error_code"]),
        )
        return "applied"
    argument: Any = {
        "order": Jsonb([document]),
        "customer": Jsonb(document),
        "customer_deleted": document.get("external_id"),
        "product": Jsonb(document),
        "product_deleted": document.get("external_id"),
        "checkout": Jsonb(document),
        "customer_redact": Jsonb(document),
        "data_request": Jsonb(document),
        "shop_redact": Jsonb(document),
    }[kind]
    row = conn.execute(APPLY[kind], (project_id, source, argument)).fetchone()
    result = next(iter(row.values())) if row else None
    left_out = (kind == "order" and result == 0) or (kind == "checkout" and result == "skipped")
    return "skipped" if left_out else "applied"


COMPLIANCE_KINDS = ("customer_redact", "data_request", "shop_redact")


def for_this_shop(kind: Kind | None, document: dict[str, Any], api_token: str | None) -> bool:
    """Whether a compliance topic names the project's shop: when the project stored its Admin
    API access (which names the shop's domain), the body's `shop_domain` must be that domain;
    one for another shop (an app secret shared by several shops) is acknowledged and ignored.
    Without a stored domain the project in the URL is the shop."""
    if kind not in COMPLIANCE_KINDS or api_token is None:
        return True
    try:
        stored = ShopCredentials.from_sealed_form(api_token).shop_domain
    except ShopifyError:
        return True
    return str(document.get("shop_domain") or "").strip().lower() == stored


def applier(database: Database, source: ShopSource) -> Applier:
    """Applies a stored event: mapped again from its raw body, applied and finished in one
    transaction."""
    shop = SHOPS[source]

    def apply(stored: StoredEvent) -> str:
        project_id, kind = stored_origin(shop, stored.event_id)
        document, outcome = mapped(shop, kind, parse_json(stored.body))
        with database.as_service() as conn:
            if kind is not None and document is not None:
                outcome = apply_document(conn, project_id, source, kind, document)
            conn.execute("select private.finish_webhook_event(%s, %s)", (stored.id, outcome))
        return outcome

    return apply


@router.post(
    "/api/v1/webhooks/{source}/{project_id}",
    response_model=Envelope[ShopWebhookOutcome],
    summary="Receive a Shopify or WooCommerce order, customer or product webhook",
    responses=documented({"outcome": "accepted"}, errors=WEBHOOK_REFUSALS),
    openapi_extra=SHOP_WEBHOOK_OPENAPI,
)
def shop_webhook(
    source: ShopSource,
    project_id: UUID,
    request: Request,
    background: BackgroundTasks,
    body: Annotated[bytes, Depends(raw_body)],
    shopify_signature: Annotated[str | None, Security(SHOPIFY_SIGNATURE)],
    woocommerce_signature: Annotated[str | None, Security(WOOCOMMERCE_SIGNATURE)],
    database: ServiceDatabase,
    box: Annotated[SecretBox | None, Depends(box_unless_ping)],
    intake: Intake,
) -> dict[str, Any]:
    """The URL `connect` answered for the project. Verified with the project's webhook secret
    (an unknown project, a missing secret and a bad signature are one 401), stored under the
    delivery id and acknowledged; an order topic's order is upserted with its customer, a
    customer topic's customer upserted (or, deleted, unlinked) right after the answer, and by
    the replay cron until that succeeds; a product topic's product (with Shopify's variants) is
    upserted, a deleted one archived. A signed order, customer or product whose fields have the
    wrong type is a 422 and is not stored."""
    shop = SHOPS[source]
    headers = request.headers
    if box is None:
        # WooCommerce's ping (see box_unless_ping): acknowledging it changes nothing.
        return ok({"outcome": "ping"})
    signature = shopify_signature if source == "shopify" else woocommerce_signature
    secrets = integration_secrets(database, box, project_id, source)
    verify_webhook_hmac(secrets.webhook_secret, body, signature, digest="sha256", encoding="base64")
    topic = headers.get(shop.topic_header, "")
    delivery = headers.get(shop.delivery_header) or hashlib.sha256(body).hexdigest()
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise ApiError(422, "invalid_input", "The webhook body is not a JSON object")
    document, outcome = mapped(shop, shop.kind(topic), payload)
    if document is not None and not for_this_shop(shop.kind(topic), document, secrets.api_token):
        document, outcome = None, "ignored"
    recorded = intake.record(source, event_id(project_id, shop, topic, delivery), body)
    if recorded.duplicate:
        return ok({"outcome": "duplicate"})
    if document is None:
        intake.finish(recorded.event, outcome)
        return ok({"outcome": outcome})
    intake.apply_later(background, source, recorded.event)
    return ok({"outcome": "accepted"})
