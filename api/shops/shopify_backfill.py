"""Shopify backfill: a shop's customers, then orders, then products, each read by one bulk
query whose JSONL result is streamed a page at a time into the same page upserts the webhooks
and the WooCommerce backfill use. Each page's upsert and its byte offset commit together
(`private.save_shop_bulk_page`), so a call that dies resumes at its page; each call works within
a time budget and answers where the backfill stands (call again until `finished`, or wait for
the `shop_backfill_progress` broadcast the `bulk_operations/finish` webhook causes).

Every query sorts its root objects by id, and the largest root id written is kept with each
page: a query that failed has what it read before failing (its partial data) written first,
then it is started again only for the ids after that (`query: "id:>N"`), as is one canceled or
expired before it was read to its end.

Shopify's GraphQL objects are turned into the REST shapes its webhooks send, so a backfilled
order, customer or product is the same document (same ids) a webhook would write.

A backfill runs as an import job (`api.shops.backfill_jobs`): each page is counted on it in the
page's transaction, the last page ends it, and a job cancelled meanwhile takes no further page
and starts no further query; the cron carries on only backfills whose job runs.
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

import psycopg
from pydantic import BaseModel, Field

from api.core.db import Database
from api.core.errors import ApiError, from_database_error
from api.core.secrets_box import KeyMismatchError, SecretBox
from api.shops.backfill_jobs import (
    JOB_ID_DESCRIPTION,
    JobNotRunningError,
    count_page,
    fail_if_owner_must_act,
    finish,
    running,
    upsert_page,
)
from api.shops.budget import BUDGET_SECONDS
from api.shops.customers import shopify_customer
from api.shops.integration_secrets import NotConnectedError, integration_secrets
from api.shops.orders import (
    MalformedOrderError,
    Shape,
    UnsupportedOrderError,
    check_shape,
    from_shopify,
    require,
)
from api.shops.products import shopify_product
from api.shops.shopify_admin import (
    OPERATION_ID,
    BulkOperation,
    ShopCredentials,
    ShopifyAdmin,
    ShopifyError,
)

log = logging.getLogger("growthbase.shops")
StreamName = Literal["customers", "orders", "products"]
CRON_PROJECTS = 20  # backfills a cron tick looks at
PAGE_SIZE = 1000  # root objects (customers, orders, products) per page
RESTARTED = ("failed", "canceled", "expired")
ROOTS = "sortKey: ID"  # a restart's filter is added to this

CUSTOMERS_QUERY = """
{
  customers(%s) {
    edges {
      node {
        id email phone firstName lastName
        defaultAddress { countryCodeV2 }
        emailMarketingConsent { marketingState }
      }
    }
  }
}
"""
ORDERS_QUERY = """
{
  orders(%s) {
    edges {
      node {
        id createdAt cancelledAt email phone
        displayFinancialStatus displayFulfillmentStatus
        totalPriceSet { shopMoney { amount currencyCode } }
        customer { id email phone firstName lastName }
        billingAddress { countryCodeV2 }
        lineItems {
          edges {
            node {
              id sku title quantity originalUnitPriceSet { shopMoney { amount } }
              product { id } variant { id }
            }
          }
        }
      }
    }
  }
}
"""
PRODUCTS_QUERY = """
{
  products(%s) {
    edges {
      node {
        id title productType status onlineStoreUrl
        featuredImage { url }
        variants {
          edges { node { id title sku price inventoryQuantity } }
        }
      }
    }
  }
}
"""


def legacy_id(gid: Any) -> str:
    """`gid://shopify/Order/450789469` -> `450789469`, the id Shopify's webhooks carry."""
    if not isinstance(gid, str) or not gid.startswith("gid://shopify/"):
        raise UnsupportedOrderError("no gid")
    tail = gid.rsplit("/", 1)[-1]
    if not tail.isdigit():
        raise UnsupportedOrderError("not a numeric gid")
    return tail


def catalog_id(reference: Any) -> str | None:
    """A line item's `product { id }` or `variant { id }` as the numeric id the catalog stores
    (the product webhooks' and this backfill's); None when the line has none (a custom line, a
    deleted product)."""
    try:
        return legacy_id(mapping(reference).get("id"))
    except UnsupportedOrderError:
        return None


BIGINT_MAX = 2**63 - 1  # the largest root id a stream's progress keeps (resume_after)


def root_id(root: dict[str, Any]) -> int | None:
    """The root's numeric id; None without one, or for one too large to resume after (its
    object is left out by the page upsert anyway: its id does not fit the column)."""
    try:
        number = int(legacy_id(root.get("id")))
    except UnsupportedOrderError:
        return None
    return number if number <= BIGINT_MAX else None


def query_after(stream: "Stream", resume_after: int | None) -> str:
    """The stream's bulk query, its roots by id, only those after `resume_after` if given."""
    after = f', query: "id:>{resume_after}"' if resume_after else ""
    return stream.bulk_query % (ROOTS + after)


def mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def customer_rest(node: dict[str, Any], _: str | None) -> dict[str, Any]:
    """A GraphQL Customer as the REST Customer its webhooks send."""
    consent = mapping(node.get("emailMarketingConsent")).get("marketingState")
    return shopify_customer(
        {
            "id": legacy_id(node.get("id")),
            "email": node.get("email"),
            "phone": node.get("phone"),
            "first_name": node.get("firstName"),
            "last_name": node.get("lastName"),
            "default_address": {
                "country_code": mapping(node.get("defaultAddress")).get("countryCodeV2")
            },
            **({"email_marketing_consent": {"state": consent.lower()}} if consent else {}),
        }
    )


def order_rest(node: dict[str, Any], _: str | None) -> dict[str, Any]:
    """A GraphQL Order (its line items as grouped children) as the REST Order."""
    money = mapping(mapping(node.get("totalPriceSet")).get("shopMoney"))
    customer = mapping(node.get("customer"))
    fulfilled = node.get("displayFulfillmentStatus") == "FULFILLED"
    return from_shopify(
        {
            "id": legacy_id(node.get("id")),
            "created_at": node.get("createdAt"),
            "cancelled_at": node.get("cancelledAt"),
            "email": node.get("email"),
            "phone": node.get("phone"),
            "total_price": money.get("amount"),
            "currency": money.get("currencyCode"),
            "financial_status": str(node.get("displayFinancialStatus") or "").lower(),
            "fulfillment_status": "fulfilled" if fulfilled else None,
            "customer": {
                "id": legacy_id(customer["id"]),
                "email": customer.get("email"),
                "phone": customer.get("phone"),
                "first_name": customer.get("firstName"),
                "last_name": customer.get("lastName"),
            }
            if customer.get("id")
            else None,
            "billing_address": {
                "country_code": mapping(node.get("billingAddress")).get("countryCodeV2")
            },
            "line_items": [
                {
                    "sku": item.get("sku"),
                    "title": item.get("title"),
                    "quantity": item.get("quantity"),
                    "price": mapping(
                        mapping(item.get("originalUnitPriceSet")).get("shopMoney")
                    ).get("amount"),
                    "product_id": catalog_id(item.get("product")),
                    "variant_id": catalog_id(item.get("variant")),
                }
                for item in node.get("__children") or []
                if "/LineItem/" in str(item.get("id"))
            ],
        }
    )


def product_rest(node: dict[str, Any], currency: str | None) -> dict[str, Any]:
    """A GraphQL Product (its variants as grouped children) as the REST Product; a variant's
    price is in the shop's currency, which the REST payload names in presentment prices."""
    document = shopify_product(
        {
            "id": legacy_id(node.get("id")),
            "title": node.get("title"),
            "product_type": node.get("productType"),
            "status": str(node.get("status") or "").lower(),
            "image": {"src": mapping(node.get("featuredImage")).get("url")},
            "variants": [
                {
                    "id": legacy_id(variant.get("id")),
                    "title": variant.get("title"),
                    "sku": variant.get("sku"),
                    "inventory_quantity": variant.get("inventoryQuantity"),
                    "price": variant.get("price"),
                    "presentment_prices": [
                        {"price": {"amount": variant.get("price"), "currency_code": currency}}
                    ]
                    if currency and variant.get("price") is not None
                    else [],
                }
                for variant in node.get("__children") or []
                if "/ProductVariant/" in str(variant.get("id"))
            ],
        }
    )
    # The bulk query asks for `onlineStoreUrl`, null for a product not on the online store: the
    # shop states it has no URL. A node without the key states nothing (the stored URL stays).
    if "onlineStoreUrl" not in node:
        return document
    url = node["onlineStoreUrl"]
    return {**document, "url": url if isinstance(url, str) else None}


@dataclass(frozen=True)
class Stream:
    name: StreamName
    bulk_query: str
    statement: str
    to_document: Callable[[dict[str, Any], str | None], dict[str, Any]]


# Customers first, so each order finds its customer by their shop id; one statement per page.
STREAMS = (
    Stream(
        "customers",
        CUSTOMERS_QUERY,
        "select private.upsert_shop_customers(%s, 'shopify', %s)",
        customer_rest,
    ),
    Stream("orders", ORDERS_QUERY, "select private.upsert_orders(%s, 'shopify', %s)", order_rest),
    Stream(
        "products",
        PRODUCTS_QUERY,
        "select private.upsert_products(%s, 'shopify', %s)",
        product_rest,
    ),
)


class ShopifyBackfillReport(BaseModel):
    """What one call did and where the backfill stands."""

    job_id: UUID | None = Field(default=None, description=JOB_ID_DESCRIPTION)
    stream: StreamName | None = Field(
        default=None, description="The stream the call stopped at; null once finished"
    )
    status: str | None = Field(
        default=None,
        description="That stream's bulk operation as Shopify last said: created, running, "
        "completed (being read), failed, canceled or expired (the next call reads what a failed "
        "one had read, then starts the query again for the rest, as for a canceled or expired "
        "one)",
    )
    error_code: str | None = Field(default=None, description="Shopify's errorCode of a failure")
    customers: int = Field(default=0, description="Customers upserted in this call")
    orders: int = Field(default=0, description="Orders upserted in this call")
    products: int = Field(default=0, description="Products upserted in this call")
    skipped: int = Field(
        default=0,
        description="Result lines without what they need (an id, a total), and orders that "
        "break a rule of their table (a negative total, a currency that is not a code, a date "
        "that cannot be read), not written",
    )
    finished: bool = Field(
        default=False,
        description="Every customer, order and product has been read; false: call again",
    )


class SupersededError(Exception):
    """The stream's operation was replaced while a page was written: the page rolls back."""


@dataclass
class Page:
    """Root objects of the result with their grouped children, up to the page's size."""

    roots: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0

    def add(self, line: bytes) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            self.skipped += 1
            return
        if not isinstance(record, dict):
            self.skipped += 1
        elif "__parentId" in record:
            parent = self.roots[-1] if self.roots else None
            if parent is None or parent.get("id") != record["__parentId"]:
                # Shopify groups children under their parent (groupObjects); one that is not
                # right after its parent cannot be placed.
                self.skipped += 1
            else:
                parent.setdefault("__children", []).append(record)
        else:
            self.roots.append(record)


def documents(stream: Stream, roots: list[dict[str, Any]], currency: str | None) -> list[Any]:
    mapped = []
    for root in roots:
        try:
            mapped.append(stream.to_document(root, currency))
        except (MalformedOrderError, UnsupportedOrderError, KeyError, TypeError, ValueError):
            continue
    return mapped


@dataclass(frozen=True)
class StreamState:
    operation_id: str
    status: str
    bytes_read: int
    read: bool
    resume_after: int | None = None

    @property
    def done(self) -> bool:
        return self.read and self.status == "completed"


def states(database: Database, project_id: UUID) -> dict[str, StreamState]:
    with database.as_service() as conn:
        rows = conn.execute(
            "select stream, operation_id, status, bytes_read, read_at is not null as read,"
            " resume_after from private.shop_bulk_operations"
            " where project_id = %s and source = 'shopify'",
            (project_id,),
        ).fetchall()
    return {
        row["stream"]: StreamState(
            row["operation_id"], row["status"], row["bytes_read"], row["read"], row["resume_after"]
        )
        for row in rows
    }


def start(
    database: Database,
    admin: ShopifyAdmin,
    project_id: UUID,
    stream: Stream,
    resume_after: int | None,
) -> StreamState:
    operation_id = admin.run_bulk_query(query_after(stream, resume_after))
    with database.as_service() as conn:
        conn.execute(
            "select private.start_shop_bulk_operation(%s, %s, %s, %s)",
            (project_id, stream.name, operation_id, resume_after),
        )
    return StreamState(operation_id, "created", 0, False, resume_after)


def note(database: Database, project_id: UUID, operation: BulkOperation) -> None:
    with database.as_service() as conn:
        conn.execute(
            "select private.note_shop_bulk_operation(%s, %s, %s, %s, %s)",
            (
                project_id,
                operation.id,
                operation.status,
                operation.error_code,
                operation.object_count,
            ),
        )


@dataclass(frozen=True)
class Target:
    """Where a stream's pages go: the project, and the import job they are counted on."""

    project_id: UUID
    job_id: UUID


def write_page(
    database: Database,
    target: Target,
    stream: Stream,
    operation_id: str,
    page: Page,
    currency: str | None,
    span: tuple[int, int],
    read: bool,
) -> tuple[int, bool]:
    """The page (the result's bytes `span`) upserted, its end offset saved and the job's counts
    moved, in one transaction; (records written, saved). Not saved (rolled back) when a newer
    call replaced the stream's operation, another reader wrote past the page's start (the cron
    and the owner's call reading one result at once), or the job no longer runs. The last
    stream read to its end ends the job."""
    project_id = target.project_id
    start, offset = span
    written = documents(stream, page.roots, currency)
    skipped = page.skipped + len(page.roots) - len(written)
    last_id = max((n for n in map(root_id, page.roots) if n is not None), default=None)
    try:
        with database.as_service() as conn:
            count_page(conn, target.job_id, stream.name, len(written), skipped)
            claimed = conn.execute(
                "select private.claim_shop_bulk_page(%s, %s, %s, %s) as claimed",
                (project_id, stream.name, operation_id, start),
            ).fetchone()
            if not (claimed and claimed["claimed"]):
                raise SupersededError
            left_out = upsert_page(
                conn, target.job_id, stream.name, stream.statement, project_id, written
            )
            row = conn.execute(
                "select private.save_shop_bulk_page(%s, %s, %s, %s, %s, %s, %s, %s) as saved",
                (
                    project_id,
                    stream.name,
                    operation_id,
                    offset,
                    len(written) - left_out,
                    skipped + left_out,
                    read,
                    last_id,
                ),
            ).fetchone()
            if not (row and row["saved"]):
                raise SupersededError
            if read and stream is STREAMS[-1]:
                finish(conn, target.job_id)
    except (SupersededError, JobNotRunningError):
        return 0, False
    return len(written) - left_out, True


def read_result(
    database: Database,
    admin: ShopifyAdmin,
    target: Target,
    stream: Stream,
    state: StreamState,
    url: str | None,
    report: ShopifyBackfillReport,
    deadline: float,
    page_size: int,
    partial: bool = False,
) -> bool:
    """Writes the result from the stored offset a page at a time; whether it was read to its
    end (an operation that found nothing has no result). Of partial data (a failed operation's)
    the last root is left to the restarted query: its children may have been cut off."""
    currency = admin.shop_currency() if stream.name == "products" else None
    if currency is not None:
        # Kept on the connection: the product webhooks' prices name no currency.
        with database.as_service() as conn:
            conn.execute(
                "select private.note_shop_currency(%s, 'shopify', %s)",
                (target.project_id, currency),
            )
    page, start, offset, cut = Page(), state.bytes_read, state.bytes_read, False
    lines = admin.result_lines(url, state.bytes_read) if url else iter(())
    for line, end in lines:
        if not line.strip():
            offset = end
            continue
        if b'"__parentId"' not in line and len(page.roots) >= page_size:
            records, saved = write_page(
                database, target, stream, state.operation_id, page, currency, (start, offset), False
            )
            if not saved:
                return False
            add(report, stream, records, page)
            page, start = Page(), offset
            if time.monotonic() >= deadline:
                return False
        skipped = page.skipped
        page.add(line)
        offset, cut = end, page.skipped > skipped
    if partial:
        # Its last line may have been cut off mid-object (not a malformed record), and its last
        # root may miss children: both are read again by the restarted query.
        page.skipped -= cut
        if page.roots:
            page.roots.pop()
    records, saved = write_page(
        database, target, stream, state.operation_id, page, currency, (start, offset), True
    )
    if saved:
        add(report, stream, records, page)
    return saved


def add(report: ShopifyBackfillReport, stream: Stream, records: int, page: Page) -> None:
    setattr(report, stream.name, getattr(report, stream.name) + records)
    report.skipped += page.skipped + len(page.roots) - records


def backfill(
    database: Database,
    admin: ShopifyAdmin,
    project_id: UUID,
    job_id: UUID,
    *,
    budget_seconds: float = BUDGET_SECONDS,
    page_size: int = PAGE_SIZE,
) -> ShopifyBackfillReport:
    """Customers, then orders, then products, as the import job `job_id`: starts each
    stream's bulk query when it has none (or its last one failed, was canceled or expired), asks
    Shopify how it stands, and reads a completed one's result until the budget is spent. A
    backfill that finished starts over when called again, every stream from its first object
    (re-reading only re-upserts). A job that no longer runs stops the call."""
    deadline = time.monotonic() + budget_seconds
    report = ShopifyBackfillReport(job_id=job_id)
    target = Target(project_id, job_id)
    known = states(database, project_id)
    if len(known) == len(STREAMS) and all(state.done for state in known.values()):
        with database.as_service() as conn:
            conn.execute("select private.restart_shopify_backfill(%s)", (project_id,))
        known = {}
    for stream in STREAMS:
        state = known.get(stream.name)
        if state is not None and state.done:
            continue
        if report.stream is not None and time.monotonic() >= deadline:
            report.stream, report.status = stream.name, state.status if state else None
            return report
        if not running(database, job_id):
            return report
        report.stream = stream.name
        if state is not None and state.status == "failed" and not state.read:
            failed = admin.bulk_operation(state.operation_id)
            if failed.partial_data_url and not read_result(
                database,
                admin,
                target,
                stream,
                state,
                failed.partial_data_url,
                report,
                deadline,
                page_size,
                partial=True,
            ):
                report.status, report.error_code = "failed", failed.error_code
                return report
            state = states(database, project_id)[stream.name]
        if state is None or state.status in RESTARTED:
            state = start(
                database, admin, project_id, stream, state.resume_after if state else None
            )
        operation = admin.bulk_operation(state.operation_id)
        note(database, project_id, operation)
        report.status = operation.status.lower()
        report.error_code = operation.error_code
        if operation.status != "COMPLETED":
            return report
        if not read_result(
            database, admin, target, stream, state, operation.url, report, deadline, page_size
        ):
            return report
    # Every stream is read: the last page ended the job, unless the streams after the one
    # this call read were read by an earlier job (a backfill under way when jobs came).
    with database.as_service() as conn:
        finish(conn, job_id)
    report.stream, report.status, report.error_code, report.finished = None, None, None, True
    return report


class BulkOperationFinished(Shape):
    """Shopify's `bulk_operations/finish` webhook body: the fields the edge reads."""

    admin_graphql_api_id: str | None = None
    status: str | None = None
    error_code: str | None = None


def bulk_operation_finished(payload: dict[str, Any]) -> dict[str, Any]:
    check_shape(BulkOperationFinished, payload)
    require(payload, "admin_graphql_api_id", "status")
    if not OPERATION_ID.fullmatch(payload["admin_graphql_api_id"]):
        raise UnsupportedOrderError("not a bulk operation id")
    return {
        "operation_id": payload["admin_graphql_api_id"],
        "status": payload["status"],
        "error_code": payload.get("error_code"),
    }


def shopify_api_error(error: Exception) -> ApiError | None:
    """Shopify's failure as the edge answers it; None for anything else."""
    if isinstance(error, ShopifyError):
        return ApiError(error.status, error.code, error.message)
    return None


class BackfillsProgress(BaseModel):
    """What a cron tick carried on."""

    projects: int = Field(description="Projects whose backfill was carried on")
    customers: int
    orders: int
    products: int
    failed: int = Field(description="Projects Shopify or the stored credentials failed for")


def continue_shopify_backfills(
    database: Database, box: SecretBox, admin_url: str | None, budget_seconds: float
) -> BackfillsProgress:
    """Carries on backfills whose job runs and whose bulk query runs or waits to be read, the
    longest waiting first, within the budget; one project's failure (a refused token, Shopify
    down, credentials sealed with another key, a page the database refuses) is logged and the
    next goes on. A failure the owner must act on (a refused token, the plan's contacts full)
    fails the job, so the cron stops carrying it on."""
    deadline = time.monotonic() + budget_seconds
    progress = BackfillsProgress(projects=0, customers=0, orders=0, products=0, failed=0)
    with database.as_service() as conn:
        due = conn.execute(
            "select project_id, job_id from private.shopify_backfills_due(%s)", (CRON_PROJECTS,)
        ).fetchall()
    for row in due:
        project_id, job_id = row["project_id"], row["job_id"]
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            token = integration_secrets(database, box, project_id, "shopify").api_token
            if token is None:
                continue
            admin = ShopifyAdmin(ShopCredentials.from_sealed_form(token), admin_url=admin_url)
            try:
                report = backfill(database, admin, project_id, job_id, budget_seconds=left)
            finally:
                admin.close()
        except (ShopifyError, KeyMismatchError, NotConnectedError, psycopg.Error) as error:
            log.warning("shopify backfill of %s: %s", project_id, type(error).__name__)
            if isinstance(error, psycopg.Error):
                mapped = from_database_error(error)
            else:
                mapped = shopify_api_error(error)
            if mapped is not None:
                fail_if_owner_must_act(database, job_id, mapped)
            progress.failed += 1
            continue
        progress.projects += 1
        progress.customers += report.customers
        progress.orders += report.orders
        progress.products += report.products
    return progress
