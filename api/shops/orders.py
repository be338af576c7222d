"""Mapping Shopify and WooCommerce order payloads onto the one order shape the database's
private.upsert_orders takes, in a list (see the migration's comment).

The fields we read are checked for shape first (a signed payload can still carry a string
where an object belongs); unknown fields pass through untouched.
"""

from typing import Any

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, ValidationError

from api.core.contacts import e164
from api.core.orders import shopify_status

Scalar = StrictInt | float | str


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class Address(Shape):
    country_code: str | None = None


class Consent(Shape):
    state: str | None = None


class ShopifyCustomer(Shape):
    id: Scalar | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    default_address: Address | None = None
    email_marketing_consent: Consent | None = None
    accepts_marketing: StrictBool | None = None


class LineItem(Shape):
    sku: str | None = None
    title: str | None = None
    name: str | None = None
    quantity: StrictInt | None = None
    price: Scalar | None = None
    product_id: Scalar | None = None
    variant_id: Scalar | None = None
    variation_id: Scalar | None = None


def shop_id(value: Any) -> str | None:
    """A line's product or variant id as text, as the catalog stores the shop's ids; None
    without one (WooCommerce sends 0 for a line without a variation, Shopify null for a custom
    line)."""
    return None if value in (None, "", 0) else str(value)


class ShopifyOrder(Shape):
    """Shopify's order webhook body (the REST Admin API Order): the fields the edge reads."""

    id: Scalar | None = None
    created_at: str | None = None
    total_price: Scalar | None = None
    currency: str | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None
    cancelled_at: str | None = None
    email: str | None = None
    phone: str | None = None
    customer: ShopifyCustomer | None = None
    billing_address: Address | None = None
    line_items: list[LineItem] | None = None


class WooCommerceBilling(Shape):
    email: str | None = None
    phone: str | None = None
    country: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class WooCommerceOrder(Shape):
    """WooCommerce's order webhook body (the REST API v3 order): the fields the edge reads."""

    id: Scalar | None = None
    status: str | None = None
    date_created_gmt: str | None = None
    total: Scalar | None = None
    currency: str | None = None
    customer_id: StrictInt | None = None
    billing: WooCommerceBilling | None = None
    line_items: list[LineItem] | None = None


WOOCOMMERCE_STATUSES = {
    "completed": "fulfilled",
    "processing": "paid",
    "on-hold": "pending",
    "pending": "pending",
    "checkout-draft": "pending",
    "cancelled": "cancelled",
    "failed": "cancelled",
    "refunded": "refunded",
}


class UnsupportedOrderError(ValueError):
    """The payload is not an order we can map (wrong topic or missing fields)."""


class MalformedOrderError(ValueError):
    """A field we read has the wrong type: the sender's error, answered with a 422."""

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__("the order payload has fields of the wrong type")
        self.fields = fields


def check_shape(shape: type[Shape], order: dict[str, Any]) -> None:
    try:
        shape.model_validate(order)
    except ValidationError as error:
        raise MalformedOrderError(
            [
                {"field": ".".join(str(part) for part in issue["loc"]), "message": issue["msg"]}
                for issue in error.errors()
            ]
        ) from error


def require(payload: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if payload.get(key) in (None, "")]
    if missing:
        raise UnsupportedOrderError(f"missing {', '.join(missing)}")


def from_shopify(order: dict[str, Any]) -> dict[str, Any]:
    check_shape(ShopifyOrder, order)
    require(order, "id", "created_at", "total_price", "currency")
    status = shopify_status(
        str(order.get("financial_status")),
        order.get("fulfillment_status"),
        bool(order.get("cancelled_at")),
    )
    customer = order.get("customer") or {}
    address = customer.get("default_address") or order.get("billing_address") or {}
    consent = (customer.get("email_marketing_consent") or {}).get("state")
    accepts = consent == "subscribed" if consent else customer.get("accepts_marketing")
    return {
        "external_id": str(order["id"]),
        "status": status,
        "placed_at": order["created_at"],
        "total": str(order["total_price"]),
        "currency": order["currency"],
        "customer": {
            "external_id": str(customer["id"]) if customer.get("id") else None,
            "email": customer.get("email") or order.get("email") or None,
            "phone": e164(customer.get("phone") or order.get("phone"), address.get("country_code")),
            "first_name": customer.get("first_name"),
            "last_name": customer.get("last_name"),
            **({"accepts_marketing": bool(accepts)} if accepts is not None else {}),
        },
        "items": [
            {
                "sku": item.get("sku") or None,
                "name": item.get("title") or item.get("name") or "item",
                "quantity": item["quantity"],
                "unit_price": str(item["price"]),
                "product_id": shop_id(item.get("product_id")),
                "variant_id": shop_id(item.get("variant_id")),
            }
            for item in order.get("line_items") or []
            if item.get("quantity")
        ],
    }


def from_woocommerce(order: dict[str, Any]) -> dict[str, Any]:
    check_shape(WooCommerceOrder, order)
    require(order, "id", "status", "date_created_gmt", "total", "currency")
    billing = order.get("billing") or {}
    customer_id = order.get("customer_id") or 0
    return {
        "external_id": str(order["id"]),
        "status": WOOCOMMERCE_STATUSES.get(order["status"], "pending"),
        "placed_at": f"{order['date_created_gmt']}Z",
        "total": str(order["total"]),
        "currency": order["currency"],
        "customer": {
            "external_id": str(customer_id) if customer_id else None,
            "email": billing.get("email") or None,
            "phone": e164(billing.get("phone"), billing.get("country")),
            "first_name": billing.get("first_name") or None,
            "last_name": billing.get("last_name") or None,
        },
        "items": [
            {
                "sku": item.get("sku") or None,
                "name": item.get("name") or "item",
                "quantity": item["quantity"],
                "unit_price": str(item.get("price", 0)),
                "product_id": shop_id(item.get("product_id")),
                "variant_id": shop_id(item.get("variation_id")),
            }
            for item in order.get("line_items") or []
            if item.get("quantity")
        ],
    }
