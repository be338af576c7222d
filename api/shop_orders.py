"""Mapping Shopify and WooCommerce order payloads onto the one order shape the database's
private.upsert_order takes (see the migration's comment)."""

from typing import Any

from api.contacts import e164

# Shopify financial_status -> our status; cancelled_at and fulfilment refine it below.
SHOPIFY_STATUSES = {
    "paid": "paid",
    "partially_refunded": "paid",
    "pending": "pending",
    "authorized": "pending",
    "partially_paid": "pending",
    "refunded": "refunded",
    "voided": "cancelled",
}

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


def require(payload: dict[str, Any], *keys: str) -> None:
    missing = [key for key in keys if payload.get(key) in (None, "")]
    if missing:
        raise UnsupportedOrderError(f"missing {', '.join(missing)}")


def from_shopify(order: dict[str, Any]) -> dict[str, Any]:
    require(order, "id", "created_at", "total_price", "currency")
    status = SHOPIFY_STATUSES.get(str(order.get("financial_status")), "pending")
    if order.get("cancelled_at"):
        status = "cancelled"
    elif status == "paid" and order.get("fulfillment_status") == "fulfilled":
        status = "fulfilled"
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
            }
            for item in order.get("line_items") or []
            if item.get("quantity")
        ],
    }


def from_woocommerce(order: dict[str, Any]) -> dict[str, Any]:
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
            }
            for item in order.get("line_items") or []
            if item.get("quantity")
        ],
    }
