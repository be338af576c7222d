"""Connecting a project's shop: the database decides, as the user, whether they may (members
and above of the project's workspace); then the edge stores the credentials it encrypted itself,
as the service, so nothing but a sealed secret is ever stored as one. The webhook URL to
register with the shop is absolute, from PUBLIC_BASE_URL."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal, LiteralString
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.core.action_quotas import take_project_quota
from api.core.db import Database, become_service
from api.core.deps import ActingUser, AppSettings, ServiceDatabase, UserScope
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import documented, json_body_example, merged_errors
from api.core.public_urls import PublicUrls, require_public_urls
from api.core.secrets_box import SecretBox
from api.shops import budget
from api.shops.backfill_jobs import begin_backfill, failing_the_job
from api.shops.deps import Box
from api.shops.errors import (
    MEMBERS,
    MEMBERS_WITH_QUOTA,
    OPENING_CREDENTIALS,
    SEALING_CREDENTIALS,
    SHOPIFY_FAILURES,
    SHOPIFY_SHOP_DOMAIN,
    SHOPTET_FAILURES,
    STORE_CONNECTED_ELSEWHERE,
    WOOCOMMERCE_FAILURES,
    WOOCOMMERCE_STORE_URL,
    WRITING_ORDERS,
    shop_failure,
)
from api.shops.integration_secrets import NotConnectedError, integration_secrets
from api.shops.shopify_admin import (
    ACCESS_TOKEN_PATTERN,
    NOT_CONNECTED,
    ShopCredentials,
    ShopifyAdmin,
    ShopifyError,
    shop_domain,
)
from api.shops.shopify_backfill import ShopifyBackfillReport, shopify_api_error
from api.shops.shopify_backfill import backfill as shopify_backfill
from api.shops.shoptet.catalog import CatalogReport, sync_catalog
from api.shops.shoptet.client import HEADER_VALUE_PATTERN, ShoptetClient, ShoptetError
from api.shops.shoptet.sync import SyncReport, shoptet_client_for, sync_shop
from api.shops.woocommerce import (
    BackfillReport,
    StoreCredentials,
    WooCommerceClient,
    WooCommerceError,
    backfill,
    store_url,
)

router = APIRouter(prefix="/api/v1/projects/{project_id}/integrations", tags=["integrations"])

Secret = Annotated[str, Field(min_length=8, max_length=500)]
Source = Literal["shoptet", "shopify", "woocommerce"]
SYNC_PAGES_PER_CALL = 20  # and at most budget.BUDGET_SECONDS of work a call
EXAMPLE_PROJECT = UUID("5b7c1f3e-2d4a-4e8b-9f6c-0a1b2c3d4e5f")
EXAMPLE_URLS = PublicUrls("https://edge.example.com")
NO_PUBLIC_URL = {
    503: {
        "public_base_url_not_configured": "PUBLIC_BASE_URL is not set, so no callback or "
        "webhook URL can be given out"
    }
}

CONNECT_ERRORS = merged_errors(MEMBERS_WITH_QUOTA, SEALING_CREDENTIALS, NO_PUBLIC_URL)


class ShoptetConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_token: Annotated[str, Field(pattern=HEADER_VALUE_PATTERN)] = Field(
        description="The e-shop's private API token (Shoptet-Private-API-Token): 8 to 500 "
        "visible ASCII characters, since it is sent as a header"
    )
    webhook_signature_key: Secret | None = Field(
        default=None,
        description="The key Shoptet signs webhooks with (POST /api/webhooks/renew-signature-key);"
        " omitted keeps the stored one",
    )


class ShopConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_secret: Secret = Field(
        description="The secret the shop signs its webhooks with: Shopify's app client secret, "
        "or the WooCommerce webhook's own secret"
    )


class WooCommerceApiConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store_url: str = Field(
        min_length=8,
        max_length=2048,
        description="The store's public https address (WordPress's site address)",
    )
    consumer_key: Secret = Field(description="The REST API consumer key (ck_…), read access")
    consumer_secret: Secret = Field(description="The REST API consumer secret (cs_…)")


class ApiConnected(BaseModel):
    project_id: UUID
    source: Literal["woocommerce"]
    store_url: str = Field(description="The store's address as stored")


class ShopifyApiConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shop_domain: str = Field(
        min_length=3,
        max_length=300,
        description="The shop's myshopify.com domain (my-shop.myshopify.com)",
    )
    access_token: Annotated[str, Field(pattern=ACCESS_TOKEN_PATTERN)] = Field(
        description="The app's Admin API access token (shpat_…) with read_customers, "
        "read_orders and read_products"
    )


class ShopifyApiConnected(BaseModel):
    project_id: UUID
    source: Literal["shopify"]
    shop_domain: str = Field(description="The shop's domain as stored")


class Connected(BaseModel):
    project_id: UUID
    source: Source
    webhook_url: str = Field(description="Register this URL in the shop for its webhooks")


class Eshop(BaseModel):
    name: str | None
    url: str | None


class ShoptetTest(BaseModel):
    ok: Literal[True]
    eshop: Eshop = Field(description="The e-shop the token belongs to, as Shoptet names it")


class Disconnected(BaseModel):
    project_id: UUID
    source: Source
    removed: bool = Field(description="Whether a connection existed")


def spend_shop_quota(acting: UserScope, project_id: UUID) -> None:
    """The database decides: members and above of the project's workspace (404 / 403 else).
    Each check spends one request of the plan's shop limit (429 once spent)."""
    with acting.connection() as conn:
        take_project_quota(conn, project_id, "shop_sync")


def write_as_service(
    acting: UserScope, project_id: UUID, statement: LiteralString, params: tuple[Any, ...]
) -> None:
    """One transaction: the membership check as the user (spending one request of the plan's
    shop limit), then the write as the service."""
    with acting.connection() as conn:
        take_project_quota(conn, project_id, "shop_sync")
        become_service(conn)
        conn.execute(statement, params)


def store_credentials(
    acting: UserScope,
    project_id: UUID,
    source: Source,
    api_token_sealed: str | None,
    webhook_secret_sealed: str | None,
) -> None:
    write_as_service(
        acting,
        project_id,
        "select private.connect_integration(%s, %s, %s, %s)",
        (project_id, source, api_token_sealed, webhook_secret_sealed),
    )


def store_api_access(
    acting: UserScope, project_id: UUID, source: Source, store: str, api_token_sealed: str
) -> None:
    """As store_credentials, for a Shopify or WooCommerce store's API access: the database
    also keeps the store's address and refuses one another project of the workspace stores
    (409 store_connected_elsewhere), so one store's orders reach one project."""
    write_as_service(
        acting,
        project_id,
        "select private.connect_store_api(%s, %s, %s, %s)",
        (project_id, source, store, api_token_sealed),
    )


@contextmanager
def shoptet_client(
    database: Database, box: SecretBox, api_url: str, project_id: UUID
) -> Iterator[ShoptetClient]:
    """The project's Shoptet client, closed afterwards; Shoptet's failures (a stored token it
    cannot use included) leave as 4xx/502 in the envelope."""
    try:
        client = shoptet_client_for(database, box, api_url, project_id)
        try:
            yield client
        finally:
            client.close()
    except (ShoptetError, NotConnectedError) as error:
        raise shop_failure(error) from error


def shoptet_api_error(error: Exception) -> ApiError | None:
    """Shoptet's failure as the edge answers it; None for anything else."""
    if isinstance(error, ShoptetError | NotConnectedError):
        return shop_failure(error)
    return None


def woocommerce_failure(error: WooCommerceError) -> ApiError:
    return ApiError(error.status, error.code, error.message)


def woocommerce_api_error(error: Exception) -> ApiError | None:
    """WooCommerce's failure as the edge answers it; None for anything else."""
    return woocommerce_failure(error) if isinstance(error, WooCommerceError) else None


def connected(urls: PublicUrls, project_id: UUID, source: Source) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "source": source,
        "webhook_url": urls.shop_webhook(source, project_id),
    }


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@router.post(
    "/shoptet/connect",
    response_model=Envelope[Connected],
    summary="Connect a Shoptet e-shop to the project",
    responses=documented(
        connected(EXAMPLE_URLS, EXAMPLE_PROJECT, "shoptet"), errors=CONNECT_ERRORS
    ),
    openapi_extra=json_body_example(
        {
            "api_token": "123456-p-987654-abcdefghijklmnopqrstuvwxyz",
            "webhook_signature_key": "f3b1c2d4e5a6978877665544332211aa",
        }
    ),
)
def connect_shoptet(
    project_id: UUID, body: ShoptetConnection, acting: ActingUser, box: Box, settings: AppSettings
) -> dict[str, Any]:
    """Members and above store the private API token and, optionally, the webhook signature key,
    both encrypted by the edge; connecting again replaces them. Answers the URL to register for
    Shoptet's webhooks. Spends one request of the plan's shop limit."""
    urls = require_public_urls(settings)
    token = box.seal(body.api_token)
    key = box.seal(body.webhook_signature_key) if body.webhook_signature_key else None
    store_credentials(acting, project_id, "shoptet", token, key)
    return ok(connected(urls, project_id, "shoptet"))


@router.post(
    "/shoptet/test",
    response_model=Envelope[ShoptetTest],
    summary="Check the stored Shoptet token against Shoptet",
    responses=documented(
        {"ok": True, "eshop": {"name": "Demo obchod", "url": "https://demo.myshoptet.com/"}},
        errors=merged_errors(MEMBERS_WITH_QUOTA, OPENING_CREDENTIALS, SHOPTET_FAILURES),
    ),
)
def test_shoptet(
    project_id: UUID, acting: ActingUser, box: Box, database: ServiceDatabase, settings: AppSettings
) -> dict[str, Any]:
    """Calls Shoptet's `GET /api/eshop` with the project's token, so a user sees at once whether
    the token they pasted works (422 `shoptet_token_invalid` when Shoptet refuses it). Spends
    one request of the plan's shop limit."""
    spend_shop_quota(acting, project_id)
    with shoptet_client(database, box, settings.shoptet_api_url, project_id) as client:
        eshop = client.eshop()
    info = eshop.get("contactInformation")
    info = info if isinstance(info, dict) else {}
    return ok(
        {
            "ok": True,
            "eshop": {
                "name": text_or_none(info.get("eshopName")),
                "url": text_or_none(info.get("url")),
            },
        }
    )


@router.post(
    "/shoptet/sync",
    response_model=Envelope[SyncReport],
    summary="Sync the next pages of changed Shoptet orders and customers",
    responses=documented(
        {"pages": 3, "orders": 120, "customers": 14, "finished": True},
        errors=merged_errors(
            MEMBERS_WITH_QUOTA, OPENING_CREDENTIALS, SHOPTET_FAILURES, WRITING_ORDERS
        ),
    ),
)
def sync_shoptet(
    project_id: UUID, acting: ActingUser, box: Box, database: ServiceDatabase, settings: AppSettings
) -> dict[str, Any]:
    """Reads up to 20 pages of orders, then customers, changed since the last finished run, for
    about 40 s at most (no page is started that would end past it, and no Shoptet request waits past
    it), and upserts them with their contacts; each page commits with its progress, so a failed or
    stopped call resumes where it stopped. Call again until `finished`. The sync runs as an import
    job (kind `backfill`, source `shoptet`: `job_id`), which this call carries on or starts. Spends
    one request of the plan's shop limit."""
    spend_shop_quota(acting, project_id)
    with shoptet_client(database, box, settings.shoptet_api_url, project_id) as client:
        job_id = begin_backfill(acting, project_id, "shoptet", "backfill")
        with failing_the_job(database, job_id, shoptet_api_error):
            report = sync_shop(
                database,
                client,
                project_id,
                job_id,
                SYNC_PAGES_PER_CALL,
                budget_seconds=budget.BUDGET_SECONDS,
            )
    return ok(report)


@router.post(
    "/shoptet/catalog",
    response_model=Envelope[CatalogReport],
    summary="Sync the next pages of changed Shoptet products with their variants",
    responses=documented(
        {"pages": 3, "products": 60, "skipped": 0, "finished": True},
        errors=merged_errors(MEMBERS_WITH_QUOTA, OPENING_CREDENTIALS, SHOPTET_FAILURES),
    ),
)
def sync_shoptet_catalog(
    project_id: UUID, acting: ActingUser, box: Box, database: ServiceDatabase, settings: AppSettings
) -> dict[str, Any]:
    """Reads up to 20 pages (20 products each, with each product's detail for its variants) of the
    products changed since the last finished run, for about 40 s at most (no page is started that
    would end past it, and no Shoptet request waits past it), and upserts each page into the
    project's catalog; each page commits with its progress and is broadcast as
    `shop_backfill_progress` on `workspace:<id>:imports`, so a failed call resumes where it stopped.
    Call again until `finished`. The sync runs as an import job (kind `products`, source `shoptet`:
    `job_id`), which this call carries on or starts. Spends one request of the plan's shop limit."""
    spend_shop_quota(acting, project_id)
    with shoptet_client(database, box, settings.shoptet_api_url, project_id) as client:
        job_id = begin_backfill(acting, project_id, "shoptet", "products")
        with failing_the_job(database, job_id, shoptet_api_error):
            report = sync_catalog(
                database,
                client,
                project_id,
                job_id,
                SYNC_PAGES_PER_CALL,
                budget_seconds=budget.BUDGET_SECONDS,
            )
    return ok(report)


@router.post(
    "/woocommerce/api",
    response_model=Envelope[ApiConnected],
    summary="Store the WooCommerce REST API key a backfill reads the store with",
    responses=documented(
        {
            "project_id": EXAMPLE_PROJECT,
            "source": "woocommerce",
            "store_url": "https://shop.example",
        },
        errors=merged_errors(
            MEMBERS_WITH_QUOTA,
            SEALING_CREDENTIALS,
            WOOCOMMERCE_STORE_URL,
            STORE_CONNECTED_ELSEWHERE,
        ),
    ),
    openapi_extra=json_body_example(
        {
            "store_url": "https://shop.example",
            "consumer_key": "ck_4c3b2a190817263544536271",
            "consumer_secret": "cs_9f8e7d6c5b4a39281706f5e4",
        }
    ),
)
def connect_woocommerce_api(
    project_id: UUID,
    body: WooCommerceApiConnection,
    acting: ActingUser,
    box: Box,
    settings: AppSettings,
) -> dict[str, Any]:
    """Members and above store the store's address and REST API key (encrypted by the edge;
    the webhook secret stays as it was). The address must be https and resolve to public
    addresses only (`422 store_url_not_allowed`). A store another project of the workspace
    stores is refused (`409 store_connected_elsewhere`, naming that project): disconnect it there
    first. Spends one request of the plan's shop limit."""
    try:
        url = store_url(body.store_url, settings.woocommerce_allowed_origins)
    except WooCommerceError as error:
        raise ApiError(error.status, error.code, error.message) from error
    sealed = box.seal(StoreCredentials(url, body.consumer_key, body.consumer_secret).sealed_form())
    store_api_access(acting, project_id, "woocommerce", url, sealed)
    return ok({"project_id": project_id, "source": "woocommerce", "store_url": url})


@router.post(
    "/woocommerce/backfill",
    response_model=Envelope[BackfillReport],
    summary="Read the next pages of the WooCommerce store's customers and orders",
    responses=documented(
        {"pages": 20, "customers": 1200, "orders": 800, "skipped": 0, "finished": False},
        errors=merged_errors(
            MEMBERS_WITH_QUOTA, OPENING_CREDENTIALS, WOOCOMMERCE_FAILURES, WRITING_ORDERS
        ),
    ),
)
def backfill_woocommerce(
    project_id: UUID, acting: ActingUser, box: Box, database: ServiceDatabase, settings: AppSettings
) -> dict[str, Any]:
    """Reads up to 20 pages (100 records each) of the store's customers, then its orders, then its
    products, oldest first, for about 40 s at most (no page is started that would end past it, and
    no request to the store waits past it), and upserts them with their contacts as the webhooks do;
    each page commits with its progress and is broadcast as `shop_backfill_progress` on
    `workspace:<id>:imports`, so a failed call resumes where it stopped. Call again until
    `finished`; a backfill that finished starts over when called again (re-reading only re-upserts).
    The backfill runs as an import job (kind `backfill`, source `woocommerce`: `job_id`), which this
    call carries on or starts. Spends one request of the plan's shop limit."""
    spend_shop_quota(acting, project_id)
    token = integration_secrets(database, box, project_id, "woocommerce").api_token
    try:
        if token is None:
            raise WooCommerceError(
                409, "integration_not_connected", "Connect the WooCommerce REST API first"
            )
        credentials = StoreCredentials.from_sealed_form(token)
        store_url(credentials.store_url, settings.woocommerce_allowed_origins)
    except WooCommerceError as error:
        raise woocommerce_failure(error) from error
    job_id = begin_backfill(acting, project_id, "woocommerce", "backfill")
    client = WooCommerceClient(credentials)
    try:
        with failing_the_job(database, job_id, woocommerce_api_error):
            report = backfill(
                database,
                client,
                project_id,
                job_id,
                SYNC_PAGES_PER_CALL,
                budget_seconds=budget.BUDGET_SECONDS,
            )
    except WooCommerceError as error:
        raise woocommerce_failure(error) from error
    finally:
        client.close()
    return ok(report)


@router.post(
    "/shopify/api",
    response_model=Envelope[ShopifyApiConnected],
    summary="Store the Shopify Admin API token a backfill reads the shop with",
    responses=documented(
        {"project_id": EXAMPLE_PROJECT, "source": "shopify", "shop_domain": "demo.myshopify.com"},
        errors=merged_errors(
            MEMBERS_WITH_QUOTA,
            SEALING_CREDENTIALS,
            SHOPIFY_SHOP_DOMAIN,
            STORE_CONNECTED_ELSEWHERE,
        ),
    ),
    openapi_extra=json_body_example(
        {"shop_domain": "demo.myshopify.com", "access_token": "shpat_0f1e2d3c4b5a69788796a5b4"}
    ),
)
def connect_shopify_api(
    project_id: UUID, body: ShopifyApiConnection, acting: ActingUser, box: Box
) -> dict[str, Any]:
    """Members and above store the shop's domain and Admin API access token (encrypted by the
    edge; the webhook secret stays as it was). A shop another project of the workspace stores is
    refused (`409 store_connected_elsewhere`, naming that project): disconnect it there first.
    Spends one request of the plan's shop limit."""
    try:
        domain = shop_domain(body.shop_domain)
    except ShopifyError as error:
        raise ApiError(error.status, error.code, error.message) from error
    sealed = box.seal(ShopCredentials(domain, body.access_token).sealed_form())
    store_api_access(acting, project_id, "shopify", domain, sealed)
    return ok({"project_id": project_id, "source": "shopify", "shop_domain": domain})


@router.post(
    "/shopify/backfill",
    response_model=Envelope[ShopifyBackfillReport],
    summary="Carry the Shopify shop's bulk backfill of customers, orders and products on",
    responses=documented(
        {
            "stream": "orders",
            "status": "completed",
            "error_code": None,
            "customers": 0,
            "orders": 48000,
            "products": 0,
            "skipped": 0,
            "finished": False,
        },
        errors=merged_errors(
            MEMBERS_WITH_QUOTA, OPENING_CREDENTIALS, SHOPIFY_FAILURES, WRITING_ORDERS
        ),
    ),
)
def backfill_shopify(
    project_id: UUID, acting: ActingUser, box: Box, database: ServiceDatabase, settings: AppSettings
) -> dict[str, Any]:
    """Starts a bulk query of the shop's customers (then orders, then products) and, once
    Shopify finished it, streams its result into the project a page at a time, as the webhooks
    write, for about 40 s. Each page commits with its position and is broadcast as
    `shop_backfill_progress` on `workspace:<id>:imports`; Shopify's `bulk_operations/finish`
    webhook is broadcast too. A query that failed has what it read written (Shopify's partial
    data), then is started again for the objects after it. Call again until `finished`; a
    backfill that finished starts over when called again (re-reading only re-upserts). The
    backfill runs as an import job (kind `backfill`, source `shopify`: `job_id`), which this
    call carries on or starts, and which the cron carries on while it runs. Spends one request
    of the plan's shop limit."""
    spend_shop_quota(acting, project_id)
    token = integration_secrets(database, box, project_id, "shopify").api_token
    try:
        if token is None:
            raise NOT_CONNECTED
        credentials = ShopCredentials.from_sealed_form(token)
    except ShopifyError as error:
        raise ApiError(error.status, error.code, error.message) from error
    job_id = begin_backfill(acting, project_id, "shopify", "backfill")
    admin = ShopifyAdmin(credentials, admin_url=settings.shopify_admin_url)
    try:
        with failing_the_job(database, job_id, shopify_api_error):
            report = shopify_backfill(
                database, admin, project_id, job_id, budget_seconds=budget.BUDGET_SECONDS
            )
    except ShopifyError as error:
        raise ApiError(error.status, error.code, error.message) from error
    finally:
        admin.close()
    return ok(report)


# Declared after the Shoptet routes: a path parameter would otherwise capture /shoptet/...
@router.post(
    "/{source}/connect",
    response_model=Envelope[Connected],
    summary="Connect a Shopify or WooCommerce shop to the project",
    responses=documented(
        connected(EXAMPLE_URLS, EXAMPLE_PROJECT, "shopify"), errors=CONNECT_ERRORS
    ),
    openapi_extra=json_body_example({"webhook_secret": "shpss_3e9a1c0b7d2f4a6e8c5b"}),
)
def connect_shop(
    project_id: UUID,
    source: Literal["shopify", "woocommerce"],
    body: ShopConnection,
    acting: ActingUser,
    box: Box,
    settings: AppSettings,
) -> dict[str, Any]:
    """Members and above store the secret the shop signs its order webhooks with, encrypted by
    the edge; connecting again replaces it. Answers the URL to register in the shop. Spends one
    request of the plan's shop limit."""
    urls = require_public_urls(settings)
    sealed = box.seal(body.webhook_secret)
    store_credentials(acting, project_id, source, None, sealed)
    return ok(connected(urls, project_id, source))


@router.post(
    "/{source}/disconnect",
    response_model=Envelope[Disconnected],
    summary="Disconnect the project's shop and delete its stored credentials",
    responses=documented(
        {"project_id": EXAMPLE_PROJECT, "source": "shoptet", "removed": True},
        errors=MEMBERS,
    ),
)
def disconnect_shop(project_id: UUID, source: Source, acting: ActingUser) -> dict[str, Any]:
    """Members and above remove the connection with its credentials and sync progress; the
    shop's webhooks are refused from then on (401). Answers whether one existed."""
    with acting.connection() as conn:
        row = conn.execute(
            "select public.disconnect_integration(%s, %s) as removed", (project_id, source)
        ).fetchone()
    return ok({"project_id": project_id, "source": source, "removed": bool(row and row["removed"])})
