"""A real local HTTP server speaking Shopify's Admin GraphQL API for bulk queries, as its docs
describe: `POST /admin/api/<version>/graphql.json` with `X-Shopify-Access-Token`,
`bulkOperationRunQuery` answering `{bulkOperation {id status}, userErrors}` (one bulk query at a
time: OPERATION_IN_PROGRESS), `node(id:)` answering the BulkOperation (`status`, `errorCode`,
`objectCount` as an UnsignedInt64 string, `url`, and a failed one's `partialDataUrl`: its result
up to the failure, possibly cut mid-line), `shop {currencyCode}`, cost extensions and `THROTTLED`
errors, and the result as JSONL (children after their parent with `__parentId`, as
`groupObjects` asks; roots by id, only those after `query: "id:>N"` when the bulk query says so)
served with HTTP Range support like the signed storage URL."""

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http_server import FakeHandler, serve

ACCESS_TOKEN = "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"
COST: dict[str, Any] = {
    "requestedQueryCost": 10,
    "actualQueryCost": 10,
    "throttleStatus": {
        "maximumAvailable": 2000.0,
        "currentlyAvailable": 1990,
        "restoreRate": 100.0,
    },
}


def customer_node(number: int, **changes: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": f"gid://shopify/Customer/{7000 + number}",
        "email": f"buyer{number}@example.test",
        "phone": None,
        "firstName": "Jana",
        "lastName": f"Nováková {number}",
        "defaultAddress": {"countryCodeV2": "CZ"},
        "emailMarketingConsent": {"marketingState": "NOT_SUBSCRIBED"},
    }
    node.update(changes)
    return node


def order_node(number: int, customer: int, **changes: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": f"gid://shopify/Order/{450000 + number}",
        "createdAt": f"2026-03-{1 + number % 28:02d}T10:15:00Z",
        "cancelledAt": None,
        "email": f"buyer{customer}@example.test",
        "phone": None,
        "displayFinancialStatus": "PAID",
        "displayFulfillmentStatus": "UNFULFILLED",
        "totalPriceSet": {"shopMoney": {"amount": "1299.0", "currencyCode": "CZK"}},
        "customer": {
            "id": f"gid://shopify/Customer/{7000 + customer}",
            "email": f"buyer{customer}@example.test",
            "phone": None,
            "firstName": "Jana",
            "lastName": f"Nováková {customer}",
        },
        "billingAddress": {"countryCodeV2": "CZ"},
    }
    node.update(changes)
    return node


def line_item_node(number: int, sku: str = "RS-42") -> dict[str, Any]:
    return {
        "id": f"gid://shopify/LineItem/{900000 + number}",
        "sku": sku,
        "title": "Running shoes",
        "quantity": 1,
        "originalUnitPriceSet": {"shopMoney": {"amount": "1299.0"}},
    }


def product_node(number: int, **changes: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": f"gid://shopify/Product/{632910000 + number}",
        "title": f"Running shoes {number}",
        "productType": "Shoes",
        "status": "ACTIVE",
        "onlineStoreUrl": f"https://demo.example/products/shoes-{number}",
        "featuredImage": {"url": f"https://cdn.shopify.com/s/files/1/shoes-{number}.png"},
    }
    node.update(changes)
    return node


def variant_node(number: int, sku: str = "RS-42") -> dict[str, Any]:
    return {
        "id": f"gid://shopify/ProductVariant/{808950000 + number}",
        "title": "42",
        "sku": sku,
        "price": "1299.00",
        "inventoryQuantity": 7,
    }


@dataclass
class Operation:
    id: str
    stream: str
    status: str = "RUNNING"
    error_code: str | None = None
    body: bytes = b""  # the result, or a failed operation's partial data
    after: int = 0  # the bulk query's `id:>N`


@dataclass
class ShopifyServer:
    base_url: str = ""
    currency: str = "CZK"
    # Each stream's result: root objects, each with its children (line items, variants).
    customers: list[dict[str, Any]] = field(default_factory=list)
    orders: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)
    products: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)
    operations: list[Operation] = field(default_factory=list)
    throttled: int = 0  # the next n GraphQL calls answer THROTTLED
    # The next n calls answer HTTP 429 with this Retry-After (seconds), as Shopify's edge does
    # past its request-rate limit.
    rate_limited: int = 0
    retry_after: str = "2"
    fail_next: str | None = None  # the next operation fails with this errorCode
    partial_bytes: int = 0  # ... having read this many bytes of its result (its partial data)
    range_requests: list[int] = field(default_factory=list)
    token: str | None = ACCESS_TOKEN  # the access token it accepts; None accepts any (the fuzz's)

    def result(self, stream: str, after: int = 0) -> bytes:
        def later(root: dict[str, Any]) -> bool:
            return int(str(root["id"]).rsplit("/", 1)[1]) > after

        lines: list[dict[str, Any]] = []
        if stream == "customers":
            lines.extend(c for c in self.customers if later(c))
        for root, children in {"orders": self.orders, "products": self.products}.get(stream, []):
            if not later(root):
                continue
            lines.append(root)
            lines.extend({**child, "__parentId": root["id"]} for child in children)
        return b"".join(json.dumps(line).encode() + b"\n" for line in lines)

    def finish(self) -> Operation:
        """Completes the running operation, as Shopify does when the query is done."""
        [operation] = [o for o in self.operations if o.status == "RUNNING"]
        if self.fail_next:
            operation.status, operation.error_code = "FAILED", self.fail_next
            operation.body = self.result(operation.stream, operation.after)[: self.partial_bytes]
            self.fail_next, self.partial_bytes = None, 0
        else:
            operation.status = "COMPLETED"
            operation.body = self.result(operation.stream, operation.after)
        return operation

    def finish_payload(self, operation: Operation) -> dict[str, Any]:
        """The `bulk_operations/finish` webhook body for an operation."""
        return {
            "admin_graphql_api_id": operation.id,
            "completed_at": "2026-06-01T07:05:00-04:00",
            "created_at": "2026-06-01T07:00:00-04:00",
            "error_code": operation.error_code and operation.error_code.lower(),
            "status": operation.status.lower(),
            "type": "query",
        }


@contextmanager
def serve_shopify() -> Iterator[ShopifyServer]:
    state = ShopifyServer()
    lock = threading.Lock()

    class Handler(FakeHandler):
        def graphql(self, status: int, payload: dict[str, Any]) -> None:
            self.reply_json(status, {**payload, "extensions": {"cost": COST}})

        def do_POST(self) -> None:
            if not re.fullmatch(r"/admin/api/\d{4}-\d{2}/graphql\.json", self.path):
                self.reply_json(404, {"errors": "Not Found"})
                return
            sent = self.headers.get("X-Shopify-Access-Token")
            if state.token is not None and sent != state.token:
                self.reply_json(
                    401,
                    {
                        "errors": "[API] Invalid API key or access token "
                        "(unrecognized login or wrong password)"
                    },
                )
                return
            request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            query, variables = request["query"], request.get("variables") or {}
            with lock:
                if state.rate_limited:
                    state.rate_limited -= 1
                    self.reply_json(
                        429,
                        {
                            "errors": "Exceeded 2 calls per second for api client."
                            " Reduce request rates"
                        },
                        headers={"Retry-After": state.retry_after},
                    )
                    return
                if state.throttled:
                    state.throttled -= 1
                    cost = {**COST, "throttleStatus": {**COST["throttleStatus"]}}
                    cost["throttleStatus"]["currentlyAvailable"] = 9.9
                    self.reply_json(
                        200,
                        {
                            "errors": [
                                {
                                    "message": "Throttled",
                                    "extensions": {
                                        "code": "THROTTLED",
                                        "documentation": "https://shopify.dev/api/usage/rate-limits",
                                    },
                                }
                            ],
                            "extensions": {"cost": cost},
                        },
                    )
                    return
                if "bulkOperationRunQuery" in query:
                    self.run(variables["query"])
                elif "node(id:" in query:
                    self.node(variables["id"])
                elif "shop {" in query:
                    self.graphql(200, {"data": {"shop": {"currencyCode": state.currency}}})
                else:
                    self.graphql(200, {"errors": [{"message": "Unknown query"}]})

        def run(self, bulk_query: str) -> None:
            running = [o for o in state.operations if o.status in ("CREATED", "RUNNING")]
            payload: dict[str, Any]
            if running:
                errors = [
                    {
                        "field": None,
                        "message": "A bulk query operation for this app and shop is already "
                        f"in progress: {running[0].id}.",
                        "code": "OPERATION_IN_PROGRESS",
                    }
                ]
                payload = {"bulkOperation": None, "userErrors": errors}
            else:
                stream = re.search(r"\{\s*(customers|orders|products)", bulk_query)
                after = re.search(r'query: "id:>(\d+)"', bulk_query)
                operation = Operation(
                    f"gid://shopify/BulkOperation/{720918 + len(state.operations)}",
                    stream.group(1) if stream else "unknown",
                    after=int(after.group(1)) if after else 0,
                )
                state.operations.append(operation)
                payload = {
                    "bulkOperation": {"id": operation.id, "status": "CREATED"},
                    "userErrors": [],
                }
            self.graphql(200, {"data": {"bulkOperationRunQuery": payload}})

        def node(self, operation_id: str) -> None:
            found = [o for o in state.operations if o.id == operation_id]
            if not found:
                self.graphql(200, {"data": {"node": None}})
                return
            operation = found[0]
            completed = operation.status == "COMPLETED"
            failed = operation.status == "FAILED"
            objects = operation.body.count(b"\n")
            number = operation.id.rsplit("/", 1)[1]
            url = f"{state.base_url}/results/{number}.jsonl?X-Goog-Signature=abc"
            self.graphql(
                200,
                {
                    "data": {
                        "node": {
                            "id": operation.id,
                            "status": operation.status,
                            "errorCode": operation.error_code,
                            "objectCount": str(objects),
                            "rootObjectCount": str(objects),
                            "url": url if completed and operation.body else None,
                            "partialDataUrl": url if failed and operation.body else None,
                        }
                    }
                },
            )

        def do_GET(self) -> None:
            match = re.fullmatch(r"/results/(\d+)\.jsonl\?.*", self.path)
            found = [
                o
                for o in state.operations
                if match and o.id == f"gid://shopify/BulkOperation/{match.group(1)}"
            ]
            if not found or self.headers.get("X-Shopify-Access-Token"):
                self.reply(
                    403, b"<Error><Code>AccessDenied</Code></Error>", content_type="text/xml"
                )
                return
            body = found[0].body
            wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if wanted is None:
                self.reply(200, body, content_type="application/jsonl")
                return
            start = int(wanted.group(1))
            state.range_requests.append(start)
            if start >= len(body):
                self.reply(416, b"", content_type=None)
                return
            self.reply(
                206,
                body[start:],
                content_type="application/jsonl",
                headers={"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}"},
            )

    with serve(Handler) as base_url:
        state.base_url = base_url
        yield state
