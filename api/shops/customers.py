"""Mapping Shopify and WooCommerce customer payloads (their customer webhooks' bodies) onto the
customer shape private.apply_shop_customer takes; the fields read are checked for shape first,
as orders' are."""

from typing import Any

from pydantic import StrictBool

from api.core.contacts import e164
from api.shops.orders import Address, Consent, Scalar, Shape, check_shape, require


class ShopifyCustomerBody(Shape):
    """Shopify's customer webhook body (the REST Admin API Customer): the fields the edge reads."""

    id: Scalar | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    default_address: Address | None = None
    email_marketing_consent: Consent | None = None
    accepts_marketing: StrictBool | None = None


class WooCommerceCustomerBilling(Shape):
    email: str | None = None
    phone: str | None = None
    country: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class WooCommerceCustomerBody(Shape):
    """WooCommerce's customer webhook body (the REST API v3 customer): the fields the edge
    reads. `customer.deleted` sends only the id."""

    id: Scalar | None = None
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    billing: WooCommerceCustomerBilling | None = None


# Shopify's email_marketing_consent.state -> an explicit answer that changes a known contact's
# consent; the other states (not_subscribed, pending, invalid, redacted) change nothing.
SHOPIFY_CONSENT = {"subscribed": "granted", "unsubscribed": "withdrawn"}


def shopify_customer(customer: dict[str, Any]) -> dict[str, Any]:
    check_shape(ShopifyCustomerBody, customer)
    require(customer, "id")
    address = customer.get("default_address") or {}
    state = (customer.get("email_marketing_consent") or {}).get("state")
    accepts = state == "subscribed" if state else customer.get("accepts_marketing")
    if state:
        consent = SHOPIFY_CONSENT.get(str(state))
    else:
        consent = "granted" if customer.get("accepts_marketing") else None
    return {
        "external_id": str(customer["id"]),
        "email": customer.get("email") or None,
        "phone": e164(customer.get("phone"), address.get("country_code")),
        "first_name": customer.get("first_name") or None,
        "last_name": customer.get("last_name") or None,
        **({"accepts_marketing": bool(accepts)} if accepts is not None else {}),
        **({"consent": consent} if consent else {}),
    }


def woocommerce_customer(customer: dict[str, Any]) -> dict[str, Any]:
    check_shape(WooCommerceCustomerBody, customer)
    require(customer, "id")
    billing = customer.get("billing") or {}
    return {
        "external_id": str(customer["id"]),
        "email": customer.get("email") or billing.get("email") or None,
        "phone": e164(billing.get("phone"), billing.get("country")),
        "first_name": customer.get("first_name") or billing.get("first_name") or None,
        "last_name": customer.get("last_name") or billing.get("last_name") or None,
    }


def deleted_customer(shape: type[Shape], customer: dict[str, Any]) -> dict[str, Any]:
    """A deleted customer as its shop id (both shops send at least the id)."""
    check_shape(shape, customer)
    require(customer, "id")
    return {"external_id": str(customer["id"])}


def shopify_deleted(customer: dict[str, Any]) -> dict[str, Any]:
    return deleted_customer(ShopifyCustomerBody, customer)


def woocommerce_deleted(customer: dict[str, Any]) -> dict[str, Any]:
    return deleted_customer(WooCommerceCustomerBody, customer)
