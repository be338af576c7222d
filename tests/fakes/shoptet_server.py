"""A real local HTTP server speaking Shoptet's REST API shape (envelope, paginator, errors,
429 with an HTTP-date Retry-After), serving the orders, customers and products (the list, and
each product's detail with its variants) a test puts in it."""

import email.utils
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http_server import FakeHandler, serve

TOKEN = "123456-p-987654-abcdefghijklmnopqrstuvwxyz"


def shoptet_order(
    number: int, changed: str = "2026-06-01T10:05:00+0200", **changes: Any
) -> dict[str, Any]:
    order: dict[str, Any] = {
        "code": f"2026{number:06d}",
        "guid": f"8d2b7c1e-0000-4000-8000-{number:012d}",
        "creationTime": "2026-06-01T10:00:00+0200",
        "changeTime": changed,
        "email": f"customer{number % 7}@example.test",
        "phone": "+420 777 123 456",
        "customerGuid": f"c0ffee00-0000-4000-8000-{number % 7:012d}",
        "cashDeskOrder": False,
        "status": {"id": -2, "name": "Vyřizuje se"},
        "paid": True,
        "price": {
            "vat": "210.00",
            "toPay": "1210.00",
            "currencyCode": "CZK",
            "withoutVat": "1000.00",
            "withVat": "1210.00",
            "exchangeRate": "1.00000000",
        },
        "paymentMethod": {"guid": "p-1", "name": "Kartou"},
        "shipping": {"guid": "s-1", "name": "Zásilkovna"},
        "fullName": "Jan Novák",
        "company": None,
    }
    order.update(changes)
    return order


def order_detail(order: dict[str, Any]) -> dict[str, Any]:
    return {
        **order,
        "billingAddress": {"fullName": order["fullName"], "countryCode": "CZ", "city": "Brno"},
        "items": [
            {
                "itemType": "product",
                "code": "BOOT-42",
                "name": "Boots",
                "amount": "1.000",
                "itemPrice": {"withVat": "1100.00", "withoutVat": "909.09", "vatRate": "21.00"},
            },
            {
                "itemType": "shipping",
                "code": "SHIP",
                "name": "Zásilkovna",
                "amount": "1.000",
                "itemPrice": {"withVat": "110.00", "withoutVat": "90.91", "vatRate": "21.00"},
            },
        ],
    }


def shoptet_product(
    number: int, changed: str = "2026-06-01T10:05:00+0200", variants: int = 2, **changes: Any
) -> dict[str, Any]:
    """A product's detail; the list serves it without its variants."""
    product: dict[str, Any] = {
        "guid": f"9a1b2c3d-0000-4000-8000-{number:012d}",
        "type": "product",
        "visibility": "visible",
        "creationTime": "2026-05-01T09:00:00+0200",
        "changeTime": changed,
        "name": f"Boty {number}",
        "url": f"https://demo.myshoptet.com/boty-{number}/",
        "brand": {"code": "acme", "name": "Acme"},
        "defaultCategory": {"guid": "c-1", "name": "Obuv"},
        "variants": [
            {
                "code": f"BOOT-{number}-{size}",
                "ean": None,
                "stock": "3.000" if size == 42 else "0.000",
                "unit": "ks",
                "visible": True,
                "price": "1100.00",
                "includingVat": True,
                "vatRate": "21.00",
                "currencyCode": "CZK",
                "name": f"Velikost: {size}",
            }
            for size in range(42, 42 + variants)
        ],
    }
    product.update(changes)
    return product


@dataclass(frozen=True)
class Failure:
    """The next request whose path starts with `path` (and asks for `page`, if given) fails."""

    path: str
    status: int
    retry_after_now: bool = False
    page: int | None = None

    def matches(self, path: str, query: dict[str, list[str]]) -> bool:
        return path.startswith(self.path) and (
            self.page is None or query.get("page") == [str(self.page)]
        )


@dataclass(frozen=True)
class Stall:
    """The next request whose path starts with `path` (and asks for `page`, if given) is held
    for `seconds` (or until the server stops), then answered as usual."""

    path: str
    seconds: float
    page: int | None = None

    def matches(self, path: str, query: dict[str, list[str]]) -> bool:
        return Failure(self.path, 0, page=self.page).matches(path, query)


@dataclass
class ShoptetServer:
    base_url: str = ""
    orders: list[dict[str, Any]] = field(default_factory=list)
    customers: dict[str, dict[str, Any]] = field(default_factory=dict)
    products: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    # Codes whose detail Shoptet answers with a `data` that holds no order (a malformed answer).
    hollow_orders: set[str] = field(default_factory=set)
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)
    token: str | None = TOKEN  # the API token it accepts; None accepts any (the edge fuzz's)
    eshop: dict[str, Any] = field(
        default_factory=lambda: {
            "contactInformation": {"eshopName": "Demo obchod", "url": "https://demo.myshoptet.com/"}
        }
    )

    def order_pages_requested(self) -> list[int]:
        return [int(q["page"][0]) for path, q in self.requests if path == "/api/orders"]


def envelope(data: Any, errors: list[dict[str, str]] | None = None) -> bytes:
    return json.dumps(
        {"data": data, "errors": errors, "metadata": {"requestId": f"req-{time.time_ns()}"}}
    ).encode()


@contextmanager
def serve_shoptet() -> Iterator[ShoptetServer]:
    state = ShoptetServer()
    lock = threading.Lock()

    class Handler(FakeHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            with lock:
                state.requests.append((url.path, query))
                failure = next((f for f in state.failures if f.matches(url.path, query)), None)
                if failure:
                    state.failures.remove(failure)
                stall = next((s for s in state.stalls if s.matches(url.path, query)), None)
                if stall:
                    state.stalls.remove(stall)
            if stall and state.stopping.wait(stall.seconds):
                return  # the server stops: nobody waits for the answer any longer
            sent_token = self.headers.get("Shoptet-Private-API-Token")
            if state.token is not None and sent_token != state.token:
                error = {
                    "errorCode": "invalid-token",
                    "message": "Invalid access token.",
                    "instance": "token",
                }
                self.reply(401, envelope(None, [error]))
                return
            if failure:
                headers = (
                    {"Retry-After": email.utils.formatdate(time.time(), usegmt=True)}
                    if (failure.retry_after_now)
                    else {}
                )
                error = {
                    "errorCode": "too-many-requests" if failure.status == 429 else "internal-error",
                    "message": "Try later.",
                    "instance": url.path,
                }
                self.reply(failure.status, envelope(None, [error]), headers=headers)
                return
            if url.path == "/api/eshop":
                self.reply(200, envelope(state.eshop))
            elif url.path == "/api/orders":
                self.reply(200, envelope(self.page(query, state.orders, "orders")))
            elif url.path.startswith("/api/orders/"):
                code = url.path.rsplit("/", 1)[1]
                found = [o for o in state.orders if o["code"] == code]
                if code in state.hollow_orders:
                    self.reply(200, envelope({}))
                elif found:
                    self.reply(200, envelope({"order": order_detail(found[0])}))
                else:
                    self.reply(
                        404,
                        envelope(
                            None,
                            [
                                {
                                    "errorCode": "order-not-found",
                                    "message": "Order not found.",
                                    "instance": code,
                                }
                            ],
                        ),
                    )
            elif url.path == "/api/products":
                listed = [
                    {key: value for key, value in p.items() if key != "variants"}
                    for p in state.products
                ]
                self.reply(200, envelope(self.page(query, listed, "products")))
            elif url.path.startswith("/api/products/"):
                guid = url.path.rsplit("/", 1)[1]
                found = [p for p in state.products if p["guid"] == guid]
                if found:
                    self.reply(200, envelope(found[0]))
                else:
                    self.reply(
                        404,
                        envelope(
                            None,
                            [
                                {
                                    "errorCode": "product-not-found",
                                    "message": f"Product with guid '{guid}' not found.",
                                    "instance": guid,
                                }
                            ],
                        ),
                    )
            elif url.path == "/api/customers":
                self.reply(
                    200, envelope(self.page(query, list(state.customers.values()), "customers"))
                )
            elif url.path.startswith("/api/customers/"):
                guid = url.path.rsplit("/", 1)[1]
                self.reply(200, envelope({"customer": state.customers[guid]}))
            else:
                self.reply(
                    404,
                    envelope(
                        None, [{"errorCode": "not-found", "message": "No.", "instance": url.path}]
                    ),
                )

        def page(
            self, query: dict[str, list[str]], records: list[dict[str, Any]], key: str
        ) -> dict[str, Any]:
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("itemsPerPage", ["20"])[0])
            since = query.get("changeTimeFrom", [None])[0]
            matching = [
                r
                for r in records
                if since is None
                or datetime.fromisoformat(r["changeTime"]) >= datetime.fromisoformat(since)
            ]
            chunk = matching[(page - 1) * per_page : page * per_page]
            page_count = max(1, -(-len(matching) // per_page))
            return {
                key: chunk,
                "paginator": {
                    "totalCount": len(matching),
                    "page": page,
                    "pageCount": page_count,
                    "itemsOnPage": len(chunk),
                    "itemsPerPage": per_page,
                },
            }

    with serve(Handler) as base_url:
        state.base_url = base_url
        try:
            yield state
        finally:
            state.stopping.set()
