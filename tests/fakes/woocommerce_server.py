"""A real local HTTP server speaking WooCommerce's REST API v3 shape for customers, orders,
products with their variations (`/products/<id>/variations`) and the store's currency setting
(`/settings/general/woocommerce_currency`): HTTP Basic with the consumer key and secret,
`page`/`per_page` paging with the `X-WP-Total` and `X-WP-TotalPages` headers,
`orderby=id&order=asc`, WooCommerce's error body (`{"code", "message", "data": {"status"}}`) and
a 429 with Retry-After when a test asks."""

import base64
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http_server import FakeHandler, serve

CONSUMER_KEY = "ck_4c3b2a190817263544536271aabbccdd"
CONSUMER_SECRET = "cs_9f8e7d6c5b4a39281706f5e4ddccbbaa"


@dataclass
class WooCommerceServer:
    base_url: str = ""
    customers: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)
    products: list[dict[str, Any]] = field(default_factory=list)
    variations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    currency: str | None = "EUR"  # None: the key may not read settings (403)
    # Resources whose next request is answered 429 (once each).
    rate_limited: list[str] = field(default_factory=list)
    retry_after: str = "0"  # the 429's Retry-After
    # Resources whose next request is held this many seconds (or until the server stops), then
    # answered as usual.
    stalled: dict[str, float] = field(default_factory=dict)
    # Resources whose next request is answered with this status (once each), as a store's
    # server in trouble answers.
    failing: dict[str, int] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[str, dict[str, list[str]]]] = field(default_factory=list)

    def pages_requested(self, resource: str) -> list[int]:
        return [
            int(query["page"][0])
            for path, query in self.requests
            if path == f"/wp-json/wc/v3/{resource}"
        ]


@contextmanager
def serve_woocommerce() -> Iterator[WooCommerceServer]:
    state = WooCommerceServer()
    lock = threading.Lock()
    expected = "Basic " + base64.b64encode(f"{CONSUMER_KEY}:{CONSUMER_SECRET}".encode()).decode()

    class Handler(FakeHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            resource = url.path.removeprefix("/wp-json/wc/v3/")
            with lock:
                state.requests.append((url.path, query))
                limited = resource in state.rate_limited
                if limited:
                    state.rate_limited.remove(resource)
                stall = state.stalled.pop(resource, None)
                failure = state.failing.pop(resource, None)
            if stall is not None and state.stopping.wait(stall):
                return  # the server stops: nobody waits for the answer any longer
            if self.headers.get("Authorization") != expected:
                self.reply_json(
                    401,
                    {
                        "code": "woocommerce_rest_cannot_view",
                        "message": "Sorry, you cannot list resources.",
                        "data": {"status": 401},
                    },
                )
                return
            if failure is not None:
                self.reply_json(
                    failure,
                    {
                        "code": "internal_server_error",
                        "message": "Down",
                        "data": {"status": failure},
                    },
                )
                return
            if limited:
                self.reply_json(
                    429,
                    {"code": "too_many_requests", "message": "Slow down", "data": {"status": 429}},
                    headers={"Retry-After": state.retry_after},
                )
                return
            if resource == "settings/general/woocommerce_currency":
                if state.currency is None:
                    self.reply_json(
                        403,
                        {
                            "code": "woocommerce_rest_cannot_view",
                            "message": "Sorry, you cannot view this resource.",
                            "data": {"status": 403},
                        },
                    )
                    return
                self.reply_json(
                    200,
                    {
                        "id": "woocommerce_currency",
                        "label": "Currency",
                        "type": "select",
                        "default": "USD",
                        "value": state.currency,
                    },
                )
                return
            variable = re.fullmatch(r"products/(\d+)/variations", resource)
            records = (
                state.variations.get(int(variable.group(1)), [])
                if variable
                else {
                    "customers": state.customers,
                    "orders": state.orders,
                    "products": state.products,
                }.get(resource)
            )
            if records is None:
                self.reply_json(
                    404,
                    {
                        "code": "rest_no_route",
                        "message": "No route was found matching the URL and request method.",
                        "data": {"status": 404},
                    },
                )
                return
            page = int(query.get("page", ["1"])[0])
            per_page = int(query.get("per_page", ["10"])[0])
            ordered = sorted(records, key=lambda record: int(record["id"]))
            total_pages = (len(ordered) + per_page - 1) // per_page
            chunk = ordered[(page - 1) * per_page : page * per_page]
            self.reply_json(
                200,
                chunk,
                headers={"X-WP-Total": str(len(ordered)), "X-WP-TotalPages": str(total_pages)},
            )

    with serve(Handler) as base_url:
        state.base_url = base_url
        try:
            yield state
        finally:
            state.stopping.set()
