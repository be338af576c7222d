"""Shoptet's REST API: the private-token client, its rate limits, and mapping its orders and
customers onto the importers' shapes.

Requests are sequential (Shoptet allows 3 concurrent connections per token). A 429 is waited
out as its Retry-After says (an HTTP date), a bounded number of times; other failures raise
ShoptetError with Shoptet's own error code when it sent one.
"""

import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from api.core.contacts import e164
from api.core.retry_after import retry_after_seconds
from api.shops.budget import BudgetSpentError, DeadlineBoundClient

DEFAULT_API_URL = "https://api.myshoptet.com"
ITEMS_PER_PAGE = 50  # the most Shoptet serves for orders
PRODUCTS_PER_PAGE = 20  # each product's detail (its variants) is one more request
MAX_RATE_LIMIT_WAITS = 5
MAX_RETRY_AFTER_SECONDS = 60
# Shoptet's built-in order status ids; shops add their own, which count as in progress.
CANCELLED_STATUS_ID = -4
COMPLETED_STATUS_ID = -3
# The private API token travels as the Shoptet-Private-API-Token header, so it must be a header
# value: visible ASCII, no spaces or control characters (8 to 500 of them).
HEADER_VALUE_PATTERN = r"^[!-~]{8,500}$"
# Ids that go into a URL path: an order code (Shoptet's are digits such as 2018000057; letters,
# `_` and `-` allowed for shops' own numbering) and a customer GUID (a UUID).
ORDER_CODE_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
GUID_PATTERN = re.compile(
    r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
)


class ShoptetError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class ShoptetClient(DeadlineBoundClient):
    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_API_URL,
        timeout_seconds: float = 10.0,
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        if not re.fullmatch(HEADER_VALUE_PATTERN, token):
            # A token stored before connect validated it; sending it would crash the encoder.
            raise ShoptetError(401, "token_malformed", "The stored Shoptet API token is malformed")
        self.http = httpx.Client(
            base_url=base_url,
            timeout=timeout_seconds,
            headers={
                "Shoptet-Private-API-Token": token,
                "Content-Type": "application/vnd.shoptet.v1.0",
            },
        )
        self.wait = wait
        self.timeout_seconds = timeout_seconds

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of Shoptet's envelope, after waiting out any 429s."""
        for _ in range(MAX_RATE_LIMIT_WAITS + 1):
            try:
                timeout = self.request_timeout()
                response = self.http.get(path, params=params, timeout=timeout)
            except httpx.TransportError as error:
                if (
                    isinstance(error, httpx.TimeoutException)
                    and self.deadline is not None
                    and self.deadline.out_of_time(timeout, self.timeout_seconds)
                ):
                    raise BudgetSpentError from error
                raise ShoptetError(
                    502, "shoptet_unreachable", f"Shoptet: {type(error).__name__}"
                ) from error
            if response.status_code != 429:
                break
            delay = retry_after_seconds(response.headers.get("retry-after"))
            pause = min(1.0 if delay is None else delay, MAX_RETRY_AFTER_SECONDS)
            if self.deadline is not None and pause >= self.deadline.left():
                raise BudgetSpentError
            self.wait(pause)
        else:
            raise ShoptetError(429, "shoptet_rate_limited", "Shoptet kept answering 429")
        try:
            envelope = response.json()
        except ValueError as error:
            raise ShoptetError(
                502, "shoptet_bad_response", "Shoptet answered without JSON"
            ) from error
        errors = envelope.get("errors") if isinstance(envelope, dict) else None
        if response.status_code >= 400 or errors:
            first = (errors or [{}])[0]
            raise ShoptetError(
                response.status_code,
                str(first.get("errorCode") or "shoptet_error"),
                str(first.get("message") or f"Shoptet answered {response.status_code}"),
            )
        data = envelope.get("data")
        return data if isinstance(data, dict) else {}

    def eshop(self) -> dict[str, Any]:
        return self.get("/api/eshop")

    def changes_page(
        self, resource: str, page: int, changed_since: datetime | None
    ) -> dict[str, Any]:
        """One page of /api/orders or /api/customers changed since a moment (all when None)."""
        params: dict[str, Any] = {"page": page, "itemsPerPage": ITEMS_PER_PAGE}
        if changed_since is not None:
            params["changeTimeFrom"] = changed_since.isoformat()
        return self.get(f"/api/{resource}", params)

    def products_page(self, page: int, changed_since: datetime | None) -> dict[str, Any]:
        """One page of /api/products changed since a moment (all when None)."""
        params: dict[str, Any] = {"page": page, "itemsPerPage": PRODUCTS_PER_PAGE}
        if changed_since is not None:
            params["changeTimeFrom"] = changed_since.isoformat()
        return self.get("/api/products", params)

    def product(self, guid: str) -> dict[str, Any]:
        """A product's detail with its variants (the envelope's `data` is the product itself,
        unlike an order's detail)."""
        return self.get(product_path(guid))

    def order(self, code: str) -> dict[str, Any]:
        return detail(self.get(order_path(code)), "order")

    def customer(self, guid: str) -> dict[str, Any]:
        return detail(self.get(customer_path(guid)), "customer")


def order_path(code: str) -> str:
    """The order's URL, for a code of Shoptet's shape only (a webhook names it, and no other
    path or query may ride along), quoted all the same."""
    if not ORDER_CODE_PATTERN.fullmatch(code):
        raise ShoptetError(422, "order_code_invalid", "Not a Shoptet order code")
    return f"/api/orders/{quote(code, safe='')}"


def customer_path(guid: str) -> str:
    if not GUID_PATTERN.fullmatch(guid):
        raise ShoptetError(422, "customer_guid_invalid", "Not a Shoptet customer GUID")
    return f"/api/customers/{quote(guid, safe='')}"


def product_path(guid: str) -> str:
    if not GUID_PATTERN.fullmatch(guid):
        raise ShoptetError(502, "shoptet_bad_response", "A Shoptet product has no GUID")
    return f"/api/products/{quote(guid, safe='')}"


def check_event_instance(event: str, instance: str) -> None:
    """A webhook's eventInstance is the order code (order:*) or customer GUID (customer:*) its
    apply fetches; one of another shape is refused before it is stored."""
    if event.startswith("order:"):
        order_path(instance)
    elif event.startswith("customer:"):
        customer_path(instance)


def detail(data: dict[str, Any], key: str) -> dict[str, Any]:
    record = data.get(key)
    if not isinstance(record, dict):
        raise ShoptetError(502, "shoptet_bad_response", f"Shoptet's {key} detail holds no {key}")
    return record


def required(record: dict[str, Any], key: str, what: str) -> Any:
    value = record.get(key)
    if value is None or value == "":
        raise ShoptetError(502, "shoptet_bad_response", f"A Shoptet {what} has no {key}")
    return value


def order_status(order: dict[str, Any]) -> str:
    status_id = (order.get("status") or {}).get("id")
    if status_id == CANCELLED_STATUS_ID:
        return "cancelled"
    if not order.get("paid"):
        return "pending"
    return "fulfilled" if status_id == COMPLETED_STATUS_ID else "paid"


def split_name(full_name: str | None) -> tuple[str | None, str | None]:
    if not full_name or not full_name.strip():
        return None, None
    first, _, last = full_name.strip().partition(" ")
    return first, last or None


def to_order(order: dict[str, Any]) -> dict[str, Any]:
    """An order from the list (no items) or the detail (with items)."""
    price = order.get("price") or {}
    billing = order.get("billingAddress") or {}
    first, last = split_name(billing.get("fullName") or order.get("fullName"))
    mapped: dict[str, Any] = {
        "external_id": str(required(order, "code", "order")),
        "status": order_status(order),
        "placed_at": required(order, "creationTime", "order"),
        "total": str(price.get("withVat") or price.get("toPay") or "0"),
        "currency": price.get("currencyCode") or "CZK",
        "exchange_rate": str(price["exchangeRate"]) if price.get("exchangeRate") else None,
        "customer": {
            "external_id": order.get("customerGuid"),
            "email": order.get("email"),
            "phone": e164(order.get("phone"), billing.get("countryCode")),
            "first_name": first,
            "last_name": last,
        },
    }
    if "items" in order:
        mapped["items"] = [
            {
                "sku": item.get("code"),
                "name": item.get("name") or item.get("code") or "item",
                "quantity": str(item.get("amount") or 1),
                "unit_price": str((item.get("itemPrice") or {}).get("withVat") or "0"),
            }
            for item in order["items"]
            if item.get("itemType") == "product"
        ]
    return mapped


def to_customer(customer: dict[str, Any]) -> dict[str, Any]:
    billing = customer.get("billingAddress") or {}
    first, last = split_name(billing.get("fullName"))
    return {
        "external_id": customer.get("guid"),
        "email": customer.get("email"),
        "phone": e164(customer.get("phone"), billing.get("countryCode")),
        "first_name": first,
        "last_name": last,
    }


# Shoptet's product visibility -> our status: shown is active, blocked is archived, the rest
# (hidden, shown only on its page or at the cash desk) draft.
PRODUCT_STATUSES = {"visible": "active", "blocked": "archived"}


def stock(value: Any) -> int | None:
    """Shoptet's stock ("12.000") as a whole number; null (not tracked) otherwise."""
    try:
        amount = float(str(value))
    except ValueError:
        return None
    return int(amount) if amount.is_integer() and abs(amount) < 1e9 else None


def to_product(product: dict[str, Any]) -> dict[str, Any]:
    """A product's detail: its variants (each known by its code, which order lines carry as
    their SKU) with their prices in their currency; a product of one variant takes its code
    and price."""
    variants = [
        {
            "external_id": str(variant["code"]),
            "title": variant.get("name") or None,
            "sku": str(variant["code"]),
            "price": str(variant["price"]) if variant.get("price") is not None else None,
            "currency": variant.get("currencyCode"),
            "inventory": stock(variant.get("stock")),
            "status": "draft" if variant.get("visible") is False else "active",
        }
        for variant in product.get("variants") or []
        if isinstance(variant, dict) and variant.get("code")
    ]
    category = product.get("defaultCategory") or {}
    single = variants[0] if len(variants) == 1 else {}
    return {
        "external_id": str(required(product, "guid", "product")),
        "title": required(product, "name", "product"),
        "sku": single.get("sku"),
        "price": single.get("price"),
        "currency": single.get("currency"),
        "url": product.get("url"),
        "category": category.get("name") if isinstance(category, dict) else None,
        "status": PRODUCT_STATUSES.get(str(product.get("visibility")), "draft"),
        "variants": variants,
    }
