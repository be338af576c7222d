"""WooCommerce's REST API (v3) for a backfill: a store's customers, then its orders, then its
products (a variable product with its variations), read page by page (100 a page, oldest id
first) with the store's consumer key and secret (HTTP Basic over HTTPS), each page upserted
set-based with its progress, so a call that dies resumes at its page.

The store's URL is the shop owner's input, so the edge calls it only over HTTPS and only when
its host resolves to public addresses (checked when it is stored and before every backfill
call; a resolver answering differently a moment later, DNS rebinding, is not covered, as for the
AI's page reading). A 429 is waited out per Retry-After, a bounded number of times.

A backfill call works within a time budget (`api.shops.budget`): it starts no page that would
end past its deadline, and each request (a page's, a variable product's variations', the
store's currency) waits at most the time left; a page whose requests found no time left is not
written, and the next call reads it again.
"""

import ipaddress
import json
import re
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import httpx
import idna
import psycopg
from pydantic import BaseModel, Field

from api.core.db import Database
from api.core.retry_after import retry_after_seconds
from api.shops.backfill_jobs import (
    JOB_ID_DESCRIPTION,
    JobNotRunningError,
    count_page,
    finish,
    upsert_page,
)
from api.shops.budget import (
    BUDGET_SECONDS,
    BudgetSpentError,
    Clock,
    Deadline,
    DeadlineBoundClient,
    bound_lock_waits,
)
from api.shops.customers import woocommerce_customer
from api.shops.orders import MalformedOrderError, UnsupportedOrderError, from_woocommerce
from api.shops.products import woocommerce_catalog_product

PER_PAGE = 100
MAX_RATE_LIMIT_WAITS = 5
MAX_RETRY_AFTER_SECONDS = 60
# The store's answers to the currency setting that mean the key may not read settings (or the
# route is not served): the products are written without a currency, as before it was asked.
SETTINGS_REFUSED = frozenset({401, 403, 404})
MAX_VARIATION_PAGES = 10  # a product's variations read: at most 1,000
SOURCE = "woocommerce"


class WooCommerceError(Exception):
    """`status` is the edge's answer; `answered` the store's own HTTP status (None when the
    store did not answer), which tells a key refused a resource from a store in trouble."""

    def __init__(self, status: int, code: str, message: str, answered: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.answered = answered


@dataclass(frozen=True)
class StoreCredentials:
    """What the edge seals as the project's WooCommerce API token."""

    store_url: str
    consumer_key: str
    consumer_secret: str

    def sealed_form(self) -> str:
        return json.dumps(
            {"store_url": self.store_url, "key": self.consumer_key, "secret": self.consumer_secret}
        )

    @classmethod
    def from_sealed_form(cls, value: str) -> "StoreCredentials":
        try:
            data = json.loads(value)
            return cls(str(data["store_url"]), str(data["key"]), str(data["secret"]))
        except (ValueError, KeyError, TypeError) as error:
            raise WooCommerceError(
                409, "integration_not_connected", "Connect the WooCommerce REST API first"
            ) from error


def ascii_host(hostname: str) -> str:
    """A host as one spelling: lower case, an internationalised one in IDNA 2008 with UTS 46
    mapping as httpx and browsers send it (`straße-shop.de` is `xn--strae-shop-83a.de`, never
    `strasse-shop.de`), without the root's trailing dot; an address literal as it is. One store
    spelt two ways would otherwise pass for two stores (private.connect_store_api)."""
    try:
        return str(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    host = hostname.lower() if hostname.isascii() else idna.encode(hostname, uts46=True).decode()
    return host.rstrip(".")


def store_url(url: str, allowed_origins: Collection[str]) -> str:
    """The store's URL without a trailing slash, its host in one spelling (`ascii_host`), when
    it may be called: https, a host, no credentials, query or fragment, and a host that
    resolves to public addresses only (origins in `allowed_origins`, a test's local stand-in,
    skip the address check)."""
    refusal = WooCommerceError(
        422,
        "store_url_not_allowed",
        "The store URL must be the shop's public https address, such as https://shop.example",
    )
    try:
        parts = urlsplit(url.strip())
        hostname, port = parts.hostname, parts.port
    except ValueError as error:
        raise refusal from error
    origin = f"{parts.scheme}://{parts.netloc}"
    if not hostname or parts.username or parts.password or parts.query or parts.fragment:
        raise refusal
    if origin in allowed_origins:
        return f"{origin}{parts.path}".rstrip("/")
    if parts.scheme != "https":
        raise refusal
    try:
        host = ascii_host(hostname)
    except UnicodeError as error:
        raise refusal from error
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, ValueError) as error:
        raise refusal from error
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global or address.is_multicast:
            raise refusal
    netloc = f"[{host}]" if ":" in host else host
    return f"https://{netloc}{f':{port}' if port else ''}{parts.path}".rstrip("/")


class WooCommerceClient(DeadlineBoundClient):
    def __init__(
        self,
        credentials: StoreCredentials,
        *,
        timeout_seconds: float = 15.0,
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self.http = httpx.Client(
            base_url=f"{credentials.store_url}/wp-json/wc/v3",
            auth=(credentials.consumer_key, credentials.consumer_secret),
            timeout=timeout_seconds,
        )
        self.wait = wait
        self.timeout_seconds = timeout_seconds

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, params: dict[str, str | int]) -> httpx.Response:
        """A GET after waiting out 429s; a refused key and other failures raised."""
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
                raise WooCommerceError(
                    502, "woocommerce_unavailable", f"WooCommerce: {type(error).__name__}"
                ) from error
            if response.status_code != 429:
                break
            delay = retry_after_seconds(response.headers.get("retry-after"))
            pause = min(1.0 if delay is None else delay, MAX_RETRY_AFTER_SECONDS)
            if self.deadline is not None and pause >= self.deadline.left():
                raise BudgetSpentError
            self.wait(pause)
        else:
            raise WooCommerceError(
                502, "woocommerce_unavailable", "WooCommerce kept answering 429", 429
            )
        if response.status_code in (401, 403):
            raise WooCommerceError(
                422,
                "woocommerce_credentials_invalid",
                "WooCommerce does not accept the consumer key and secret; connect again",
                response.status_code,
            )
        if response.status_code >= 400:
            raise WooCommerceError(
                502,
                "woocommerce_unavailable",
                f"WooCommerce answered {response.status_code}",
                response.status_code,
            )
        return response

    def page(
        self, resource: str, number: int, per_page: int = PER_PAGE
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of /customers, /orders, /products or a product's variations, oldest id
        first, and the number of pages."""
        params: dict[str, str | int] = {
            "page": number,
            "per_page": per_page,
            "orderby": "id",
            "order": "asc",
        }
        response = self.get(f"/{resource}", params)
        try:
            items = response.json()
            pages = int(response.headers.get("x-wp-totalpages") or 0)
        except ValueError as error:
            raise WooCommerceError(
                502, "woocommerce_unavailable", "WooCommerce answered without a page"
            ) from error
        if not isinstance(items, list):
            raise WooCommerceError(502, "woocommerce_unavailable", "WooCommerce sent no list")
        return [item for item in items if isinstance(item, dict)], pages

    def variations(self, product_id: str) -> list[dict[str, Any]]:
        """A variable product's variations, every page (at most MAX_VARIATION_PAGES)."""
        found: list[dict[str, Any]] = []
        for number in range(1, MAX_VARIATION_PAGES + 1):
            items, pages = self.page(f"products/{product_id}/variations", number)
            found.extend(items)
            if number >= pages or not items:
                break
        return found

    @cached_property
    def store_currency(self) -> str | None:
        """The store's currency, asked once per client."""
        return self.currency()

    def currency(self) -> str | None:
        """The store's currency (general settings), which product prices are in; None when the
        key may not read settings (the store answers 401, 403, or 404 where the route is not
        served). A store that did not answer in time, or answered a 5xx or kept answering 429,
        is raised, not taken for one without a currency: the page would be written without its
        prices' currency."""
        try:
            response = self.get("/settings/general/woocommerce_currency", {})
            value = response.json().get("value")
        except WooCommerceError as error:
            if error.answered in SETTINGS_REFUSED:
                return None
            raise
        except (ValueError, AttributeError):
            return None
        return value if isinstance(value, str) and re.fullmatch(r"[A-Z]{3}", value) else None


Mapper = Callable[["WooCommerceClient", dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Stream:
    name: str  # WooCommerce's resource and BackfillReport's count
    query: str
    to_document: Mapper


def catalog_product(client: "WooCommerceClient", product: dict[str, Any]) -> dict[str, Any]:
    """A product with its variations (a variable product's), prices in the store's currency."""
    variations = None
    if product.get("type") == "variable" and product.get("id") is not None:
        variations = client.variations(str(product["id"]))
    return woocommerce_catalog_product(product, variations, client.store_currency)


# Customers first, so each order finds its customer by their shop id; one statement per page.
STREAMS = (
    Stream(
        "customers",
        "select private.upsert_shop_customers(%s, 'woocommerce', %s)",
        lambda _, customer: woocommerce_customer(customer),
    ),
    Stream(
        "orders",
        "select private.upsert_orders(%s, 'woocommerce', %s)",
        lambda _, order: from_woocommerce(order),
    ),
    Stream("products", "select private.upsert_products(%s, 'woocommerce', %s)", catalog_product),
)


class BackfillReport(BaseModel):
    """What one call did; a stream it did not reach counts 0."""

    job_id: UUID | None = Field(default=None, description=JOB_ID_DESCRIPTION)
    pages: int = Field(default=0, description="Pages read from WooCommerce in this call")
    customers: int = Field(default=0, description="Customers upserted in this call")
    orders: int = Field(default=0, description="Orders upserted in this call")
    products: int = Field(
        default=0, description="Products upserted in this call (with their variations)"
    )
    skipped: int = Field(
        default=0,
        description="Records without what they need (an id, a total), and orders that break a "
        "rule of their table (a negative total, a currency that is not a code, a date that "
        "cannot be read), not written",
    )
    finished: bool = Field(
        default=False,
        description="Every customer, order and product has been read; false: call again to "
        "carry on",
    )


def mapped(
    stream: Stream, client: "WooCommerceClient", items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    documents = []
    for item in items:
        try:
            documents.append(stream.to_document(client, item))
        except (MalformedOrderError, UnsupportedOrderError, KeyError):
            continue
    return documents


def positions(database: Database, project_id: UUID) -> dict[str, int | None]:
    """Each stream's next page; a stream the current round finished is None. A round that
    finished every stream starts again from the first page (re-reading only re-upserts)."""
    with database.as_service() as conn:
        found = {
            stream.name: conn.execute(
                "select page from private.sync_position(%s, %s, %s)",
                (project_id, SOURCE, stream.name),
            ).fetchone()
            for stream in STREAMS
        }
        if all(row is not None and row["page"] is None for row in found.values()):
            for stream in STREAMS:
                conn.execute(
                    "select private.save_sync_progress(%s, %s, %s, 1, null)",
                    (project_id, SOURCE, stream.name),
                )
            return {stream.name: 1 for stream in STREAMS}
    return {name: 1 if row is None else row["page"] for name, row in found.items()}


def backfill(
    database: Database,
    client: WooCommerceClient,
    project_id: UUID,
    job_id: UUID,
    max_pages: int,
    *,
    budget_seconds: float = BUDGET_SECONDS,
    clock: Clock = time.monotonic,
) -> BackfillReport:
    """Customers, then orders, then products, within `max_pages` pages and `budget_seconds` in
    all, as the import job `job_id`. Each page's upsert, its progress, the job's counts and the
    page's broadcast commit together; a job cancelled meanwhile stops the call before its next
    page."""
    deadline = Deadline.after(budget_seconds, clock)
    with client.within(deadline):
        return backfill_pages(database, client, project_id, job_id, max_pages, deadline)


def backfill_pages(
    database: Database,
    client: WooCommerceClient,
    project_id: UUID,
    job_id: UUID,
    max_pages: int,
    deadline: Deadline,
) -> BackfillReport:
    """The pages from each stream's saved position while pages and time are left; a page is
    read whole (with its products' variations) before its one transaction, so one cut short by
    the deadline writes nothing."""
    report = BackfillReport(job_id=job_id)
    for stream in STREAMS:
        page = positions(database, project_id)[stream.name]
        while page is not None:
            if report.pages >= max_pages or not deadline.room_for_page():
                return report
            started = deadline.page_started()
            try:
                items, page_count = client.page(stream.name, page)
                documents = mapped(stream, client, items)
            except BudgetSpentError:
                return report
            last = page >= page_count or not items
            try:
                with database.as_service() as conn:
                    bound_lock_waits(conn, deadline)
                    count_page(
                        conn, job_id, stream.name, len(documents), len(items) - len(documents)
                    )
                    left_out = upsert_page(
                        conn, job_id, stream.name, stream.query, project_id, documents
                    )
                    conn.execute(
                        "select private.save_sync_progress(%s, %s, %s, %s, null)",
                        (project_id, SOURCE, stream.name, page + 1),
                    )
                    if last:
                        conn.execute(
                            "select private.finish_sync(%s, %s, %s)",
                            (project_id, SOURCE, stream.name),
                        )
                        if stream is STREAMS[-1]:
                            finish(conn, job_id)
                    conn.execute(
                        "select private.broadcast_shop_backfill(%s, %s, %s, %s, %s, %s)",
                        (
                            project_id,
                            SOURCE,
                            stream.name,
                            page,
                            page_count,
                            len(documents) - left_out,
                        ),
                    )
            except (JobNotRunningError, psycopg.errors.LockNotAvailable):
                return report
            deadline.page_ended(started)
            report.pages += 1
            report.skipped += len(items) - len(documents) + left_out
            setattr(report, stream.name, getattr(report, stream.name) + len(documents) - left_out)
            page = None if last else page + 1
    report.finished = True
    return report
