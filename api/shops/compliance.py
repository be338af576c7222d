"""Shopify's mandatory compliance webhooks (customers/redact, customers/data_request,
shop/redact), mapped onto what private.redact_shop_customer, private.record_shop_data_request
and private.redact_shop take; the fields read are checked for shape first, as orders' are."""

from typing import Any

from api.shops.orders import Scalar, Shape, UnsupportedOrderError, check_shape


class ComplianceCustomer(Shape):
    id: Scalar | None = None
    email: str | None = None
    phone: str | None = None


class DataRequestRef(Shape):
    id: Scalar | None = None


class ShopRedactBody(Shape):
    """Shopify's shop/redact body: the shop that uninstalled the app 48 hours ago."""

    shop_id: Scalar | None = None
    shop_domain: str | None = None


class CustomerRedactBody(ShopRedactBody):
    """Shopify's customers/redact body."""

    customer: ComplianceCustomer | None = None
    orders_to_redact: list[Scalar] | None = None


class DataRequestBody(ShopRedactBody):
    """Shopify's customers/data_request body."""

    customer: ComplianceCustomer | None = None
    orders_requested: list[Scalar] | None = None
    data_request: DataRequestRef | None = None


def identifier(value: Any) -> str | None:
    """An id as the other Shopify mappers store it (`str`), so a redact finds what they wrote."""
    return None if value is None or value == "" else str(value)


def whose(body: dict[str, Any]) -> dict[str, Any]:
    """The shop's customer as their Shopify id and email (with the shop's domain); one with
    neither is unmappable."""
    customer = body.get("customer") or {}
    found = {
        "external_id": identifier(customer.get("id")),
        "email": customer.get("email") or None,
        "shop_domain": body.get("shop_domain"),
    }
    if found["external_id"] is None and found["email"] is None:
        raise UnsupportedOrderError("missing customer id and email")
    return found


def customer_redact(body: dict[str, Any]) -> dict[str, Any]:
    check_shape(CustomerRedactBody, body)
    orders = [identifier(order) for order in body.get("orders_to_redact") or []]
    return {**whose(body), "order_ids": [order for order in orders if order is not None]}


def data_request(body: dict[str, Any]) -> dict[str, Any]:
    check_shape(DataRequestBody, body)
    request = body.get("data_request") or {}
    return {**whose(body), "data_request_id": identifier(request.get("id"))}


def shop_redact(body: dict[str, Any]) -> dict[str, Any]:
    check_shape(ShopRedactBody, body)
    return {"shop_id": identifier(body.get("shop_id")), "shop_domain": body.get("shop_domain")}
