"""Mapping Shopify's checkout webhooks (checkouts/create, checkouts/update: the REST Admin
Abandoned checkout resource) onto the one checkout shape private.upsert_checkout takes. The
checkout starts flows (abandoned cart) once it names a customer; an order ends them."""

import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from api.core.contacts import e164
from api.shops.orders import (
    Address,
    LineItem,
    Scalar,
    Shape,
    ShopifyCustomer,
    UnsupportedOrderError,
    check_shape,
)


class ShopifyCheckoutLine(LineItem):
    product_id: Scalar | None = None
    variant_id: Scalar | None = None


class ShopifyCheckout(Shape):
    """Shopify's checkout webhook body: the fields the edge reads."""

    id: Scalar | None = None
    token: str | None = None
    email: str | None = None
    phone: str | None = None
    created_at: str | None = None
    completed_at: str | None = None
    total_price: Scalar | None = None
    currency: str | None = None
    abandoned_checkout_url: str | None = None
    customer: ShopifyCustomer | None = None
    billing_address: Address | None = None
    line_items: list[ShopifyCheckoutLine] | None = None
    buyer_accepts_marketing: bool | None = None


def amount(value: Any) -> str | None:
    """A non-negative amount with at most two decimals, else None (the cart still counts)."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite() or number < 0 or number >= Decimal("1e12"):
        return None
    return str(number.quantize(Decimal("0.01")))


def moment(value: Any) -> str | None:
    """An ISO 8601 time with its offset, else None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return value if parsed.tzinfo is not None else None


def from_shopify_checkout(checkout: dict[str, Any]) -> dict[str, Any]:
    check_shape(ShopifyCheckout, checkout)
    checkout_id = checkout.get("id") or checkout.get("token")
    if checkout_id in (None, ""):
        raise UnsupportedOrderError("missing id")
    customer = checkout.get("customer") or {}
    address = customer.get("default_address") or checkout.get("billing_address") or {}
    url = checkout.get("abandoned_checkout_url")
    currency = checkout.get("currency")
    return {
        "external_id": str(checkout_id),
        "customer": {
            "external_id": str(customer["id"]) if customer.get("id") else None,
            "email": customer.get("email") or checkout.get("email") or None,
            "phone": e164(
                customer.get("phone") or checkout.get("phone"), address.get("country_code")
            ),
            "first_name": customer.get("first_name"),
            "last_name": customer.get("last_name"),
        },
        "items": [
            {
                "name": item.get("title") or item.get("name") or "item",
                "sku": item.get("sku") or None,
                "quantity": item["quantity"],
                "price": amount(item.get("price")),
                "product_id": str(item["product_id"]) if item.get("product_id") else None,
            }
            for item in checkout.get("line_items") or []
            if isinstance(item.get("quantity"), int) and item["quantity"] > 0
        ][:100],
        "total": amount(checkout.get("total_price")),
        "currency": currency
        if isinstance(currency, str) and re.fullmatch("[A-Z]{3}", currency)
        else None,
        "recovery_url": url
        if isinstance(url, str) and url.startswith("https://") and len(url) <= 2000
        else None,
        "started_at": moment(checkout.get("created_at")),
        "completed_at": moment(checkout.get("completed_at")),
    }
