"""Shopify's Admin GraphQL API for a backfill through bulk operations: start a bulk query
(`bulkOperationRunQuery`), ask how it stands (`node(id:)` on the BulkOperation), and stream its
JSONL result from the signed URL Shopify answers, from a byte offset (HTTP Range), so a backfill
resumes where it stopped without holding the file.

The shop is `<name>.myshopify.com` and the token its Admin API access token (`shpat_…`, sent as
`X-Shopify-Access-Token`); the result URL is a signed storage link, fetched without the token.
Calls are throttled by query cost (a leaky bucket per app and shop): a `THROTTLED` answer is
waited out from `extensions.cost.throttleStatus`, an HTTP 429 per Retry-After, a bounded number
of times.
"""

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from api.core.retry_after import retry_after_seconds

API_VERSION = "2026-01"
SHOP_DOMAIN_PATTERN = r"^[a-z0-9][a-z0-9-]{0,61}\.myshopify\.com$"
ACCESS_TOKEN_PATTERN = r"^[!-~]{8,500}$"  # noqa: S105 - a header value: visible ASCII
OPERATION_ID = re.compile(r"gid://shopify/BulkOperation/[0-9]{1,20}")
MAX_THROTTLE_WAITS = 5
MAX_WAIT_SECONDS = 60.0
READ_CHUNK_BYTES = 1 << 20
MAX_LINE_BYTES = 16 << 20

RUN_BULK_QUERY = """
mutation RunBulkQuery($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: true) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""
BULK_OPERATION = """
query BulkOperation($id: ID!) {
  node(id: $id) {
    ... on BulkOperation {
      id status errorCode objectCount rootObjectCount url partialDataUrl
    }
  }
}
"""
SHOP_CURRENCY = "query ShopCurrency { shop { currencyCode } }"


class ShopifyError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


NOT_CONNECTED = ShopifyError(
    409, "integration_not_connected", "Connect the Shopify Admin API first"
)


@dataclass(frozen=True)
class ShopCredentials:
    """What the edge seals as the project's Shopify API token."""

    shop_domain: str
    access_token: str

    def sealed_form(self) -> str:
        return json.dumps({"shop": self.shop_domain, "token": self.access_token})

    @classmethod
    def from_sealed_form(cls, value: str) -> "ShopCredentials":
        try:
            data = json.loads(value)
            credentials = cls(str(data["shop"]), str(data["token"]))
        except (ValueError, KeyError, TypeError) as error:
            raise NOT_CONNECTED from error
        if not re.fullmatch(ACCESS_TOKEN_PATTERN, credentials.access_token):
            raise NOT_CONNECTED
        return credentials


@dataclass(frozen=True)
class BulkOperation:
    id: str
    status: str  # Shopify's BulkOperationStatus: CREATED, RUNNING, COMPLETED, FAILED, ...
    error_code: str | None
    object_count: int | None
    url: str | None
    partial_data_url: str | None = None  # what a failed operation read before it failed


def shop_domain(value: str) -> str:
    """The shop's myshopify.com domain, lower-cased, from the domain or its admin URL."""
    domain = value.strip().lower().removeprefix("https://").rstrip("/")
    if not re.fullmatch(SHOP_DOMAIN_PATTERN, domain):
        raise ShopifyError(
            422,
            "shop_domain_invalid",
            "The shop must be its myshopify.com domain, such as my-shop.myshopify.com",
        )
    return domain


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def unavailable(message: str) -> ShopifyError:
    return ShopifyError(502, "shopify_unavailable", message)


def throttle_wait(body: dict[str, Any]) -> float:
    """Seconds until the bucket holds the refused query's cost again."""
    cost = (body.get("extensions") or {}).get("cost") or {}
    status = cost.get("throttleStatus") or {}
    try:
        needed = float(cost.get("requestedQueryCost") or 0) - float(
            status.get("currentlyAvailable") or 0
        )
        rate = float(status.get("restoreRate") or 0)
    except (TypeError, ValueError):
        return 1.0
    return max(needed / rate, 0.0) if rate > 0 else 1.0


class ShopifyAdmin:
    def __init__(
        self,
        credentials: ShopCredentials,
        *,
        admin_url: str | None = None,
        timeout_seconds: float = 15.0,
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        base = admin_url.rstrip("/") if admin_url else f"https://{credentials.shop_domain}"
        self.http = httpx.Client(
            base_url=f"{base}/admin/api/{API_VERSION}",
            headers={"X-Shopify-Access-Token": credentials.access_token},
            timeout=timeout_seconds,
        )
        # The signed result URL is fetched without the shop's token.
        self.results = httpx.Client(timeout=timeout_seconds)
        self.local_origin = origin(admin_url) if admin_url else None
        self.wait = wait

    def close(self) -> None:
        self.http.close()
        self.results.close()

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of a GraphQL answer, after waiting out throttling."""
        for _ in range(MAX_THROTTLE_WAITS + 1):
            try:
                response = self.http.post(
                    "/graphql.json", json={"query": query, "variables": variables or {}}
                )
            except httpx.TransportError as error:
                raise unavailable(f"Shopify: {type(error).__name__}") from error
            if response.status_code == 429:
                delay = retry_after_seconds(response.headers.get("retry-after"))
                self.wait(min(1.0 if delay is None else delay, MAX_WAIT_SECONDS))
                continue
            if response.status_code in (401, 403):
                raise ShopifyError(
                    422,
                    "shopify_credentials_invalid",
                    "Shopify does not accept the access token; connect again",
                )
            if response.status_code >= 400:
                raise unavailable(f"Shopify answered {response.status_code}")
            try:
                body = response.json()
            except ValueError as error:
                raise unavailable("Shopify answered without JSON") from error
            if not isinstance(body, dict):
                raise unavailable("Shopify answered without an object")
            errors = body.get("errors") or []
            codes = {
                str((error.get("extensions") or {}).get("code"))
                for error in errors
                if isinstance(error, dict)
            }
            if "THROTTLED" in codes:
                self.wait(min(throttle_wait(body), MAX_WAIT_SECONDS))
                continue
            if "ACCESS_DENIED" in codes:
                raise ShopifyError(
                    422,
                    "shopify_scope_missing",
                    "The access token lacks a scope the backfill needs "
                    "(read_customers, read_orders, read_products)",
                )
            data = body.get("data")
            if errors or not isinstance(data, dict):
                raise unavailable("Shopify refused the query")
            return data
        raise unavailable("Shopify kept throttling")

    def shop_currency(self) -> str | None:
        shop = self.graphql(SHOP_CURRENCY).get("shop") or {}
        currency = shop.get("currencyCode") if isinstance(shop, dict) else None
        return currency if isinstance(currency, str) else None

    def run_bulk_query(self, query: str) -> str:
        """Starts a bulk query; its operation's gid."""
        payload = self.graphql(RUN_BULK_QUERY, {"query": query}).get("bulkOperationRunQuery")
        payload = payload if isinstance(payload, dict) else {}
        user_errors = [e for e in payload.get("userErrors") or [] if isinstance(e, dict)]
        if user_errors:
            if any(e.get("code") == "OPERATION_IN_PROGRESS" for e in user_errors):
                raise ShopifyError(
                    409,
                    "shopify_bulk_operation_in_progress",
                    "Another bulk query runs for this app and shop; call again when it ended",
                )
            raise unavailable(f"Shopify refused the bulk query: {user_errors[0].get('code')}")
        operation = payload.get("bulkOperation") or {}
        operation_id = operation.get("id") if isinstance(operation, dict) else None
        if not isinstance(operation_id, str) or not OPERATION_ID.fullmatch(operation_id):
            raise unavailable("Shopify started no bulk operation")
        return operation_id

    def bulk_operation(self, operation_id: str) -> BulkOperation:
        """How the operation stands; one Shopify no longer knows counts as expired."""
        node = self.graphql(BULK_OPERATION, {"id": operation_id}).get("node")
        if not isinstance(node, dict) or not isinstance(node.get("status"), str):
            return BulkOperation(operation_id, "EXPIRED", None, None, None)
        count = node.get("objectCount")
        url = node.get("url")
        partial = node.get("partialDataUrl")
        code = node.get("errorCode")
        return BulkOperation(
            operation_id,
            node["status"],
            code if isinstance(code, str) else None,
            int(count) if isinstance(count, (int, str)) and str(count).isdigit() else None,
            url if isinstance(url, str) else None,
            partial if isinstance(partial, str) else None,
        )

    def result_lines(self, url: str, start: int) -> Iterator[tuple[bytes, int]]:
        """The result's lines from byte `start`, each with the offset just after it; read a
        chunk at a time, never the whole file."""
        if not (url.startswith("https://") or origin(url) == self.local_origin):
            raise unavailable("Shopify's result URL is not https")
        headers = {"Range": f"bytes={start}-"} if start else {}
        try:
            with self.results.stream("GET", url, headers=headers) as response:
                if response.status_code == 416:
                    return
                if response.status_code not in (200, 206):
                    raise unavailable(f"Shopify's result answered {response.status_code}")
                skip = start if response.status_code == 200 else 0
                position = start
                pending = b""
                for chunk in response.iter_bytes(READ_CHUNK_BYTES):
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        position += len(line) + 1
                        yield line, position
                    if len(pending) > MAX_LINE_BYTES:
                        raise unavailable("Shopify's result has a line over 16 MiB")
                if pending:
                    yield pending, position + len(pending)
        except httpx.TransportError as error:
            raise unavailable(f"Shopify's result: {type(error).__name__}") from error
