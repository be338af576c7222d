"""Shopify backfill through bulk operations: the Admin API token stored encrypted, a bulk query
per stream (customers, orders, products) started, polled and finished by Shopify's
`bulk_operations/finish` webhook, its JSONL result streamed a page at a time into the webhooks'
page upserts, resumed at its byte offset, progress broadcast; failures as clear 4xx/502. All
against a local server speaking Shopify's Admin GraphQL shapes."""

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.app import create_app
from api.core.db import Database
from api.core.secrets_box import SecretBox
from api.shops.integration_secrets import integration_secrets
from api.shops.shopify_admin import (
    MAX_THROTTLE_WAITS,
    MAX_WAIT_SECONDS,
    ShopCredentials,
    ShopifyAdmin,
    ShopifyError,
)
from api.shops.shopify_backfill import (
    STREAMS,
    ShopifyBackfillReport,
    Target,
    backfill,
    read_result,
    states,
)
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import User, add_member, create_user, make_project, one
from tests.fakes.jwks import JwksServer
from tests.fakes.shopify_server import (
    ACCESS_TOKEN,
    ShopifyServer,
    customer_node,
    line_item_node,
    order_node,
    product_node,
    serve_shopify,
    variant_node,
)
from tests.shops.test_product_webhooks import shopify_product_body
from tests.shops.test_woocommerce_backfill import begin_job, job_row

Conn = psycopg.Connection[DictRow]
ENCRYPTION_KEY = Fernet.generate_key().decode()
WEBHOOK_SECRET = "shpss_" + uuid.uuid4().hex
CRON = "cron-" + uuid.uuid4().hex


@pytest.fixture
def shopify() -> Iterator[ShopifyServer]:
    with serve_shopify() as server:
        yield server


@pytest.fixture
def client(database_url: str, jwks: JwksServer, shopify: ShopifyServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        integrations_encryption_key=ENCRYPTION_KEY,
        public_base_url="https://edge.example.test",
        shopify_admin_url=shopify.base_url,
        cron_secret=CRON,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def stock(shopify: ShopifyServer, customers: int, orders: int, products: int) -> None:
    shopify.customers = [customer_node(n) for n in range(1, customers + 1)]
    shopify.orders = [
        (
            order_node(n, 1 + n % customers),
            [line_item_node(2 * n, sku="RS-1"), line_item_node(2 * n + 1, sku="RS-1")],
        )
        for n in range(1, orders + 1)
    ]
    shopify.products = [
        (product_node(n), [variant_node(10 * n, sku=f"RS-{n}"), variant_node(10 * n + 1)])
        for n in range(1, products + 1)
    ]


def connect_api(
    client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID, **body: Any
) -> Any:
    return client.post(
        f"/api/v1/projects/{project}/integrations/shopify/api",
        headers=bearer(jwks, user),
        json=body,
    )


def call_backfill(client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID) -> Any:
    answer = client.post(
        f"/api/v1/projects/{project}/integrations/shopify/backfill", headers=bearer(jwks, user)
    )
    return answer


def finish_webhook(client: TestClient, project: uuid.UUID, payload: dict[str, Any]) -> Any:
    body = json.dumps(payload).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).digest()
    return client.post(
        f"/api/v1/webhooks/shopify/{project}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": "bulk_operations/finish",
            "X-Shopify-Shop-Domain": "demo.myshopify.com",
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Hmac-Sha256": base64.b64encode(signature).decode(),
        },
    )


@pytest.fixture
def shop(conn: Conn, client: TestClient, jwks: JwksServer) -> tuple[User, uuid.UUID]:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (owner.workspace_id,)
    )
    project = make_project(conn, owner)
    connected = client.post(
        f"/api/v1/projects/{project}/integrations/shopify/connect",
        headers=bearer(jwks, owner),
        json={"webhook_secret": WEBHOOK_SECRET},
    )
    assert connected.status_code == 200, connected.text
    answer = connect_api(
        client,
        jwks,
        owner,
        project,
        shop_domain="https://Demo-Shop.myshopify.com/",
        access_token=ACCESS_TOKEN,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["shop_domain"] == "demo-shop.myshopify.com"
    return owner, project


@pytest.fixture
def sole_due_backfill(conn: Conn, shop: tuple[User, uuid.UUID]) -> tuple[User, uuid.UUID]:
    """The shop, with every other project's running Shopify backfill in the worker's database
    cancelled: the cron carries on every due backfill against this test's Shopify, so another
    test's unfinished one would start or poll operations here and count in the tick's answer."""
    conn.execute(
        "update public.import_jobs set status = 'cancelled', finished_at = now()"
        " where kind = 'backfill' and source = 'shopify' and status = 'importing'"
        " and project_id <> %s",
        (shop[1],),
    )
    return shop


def counts(conn: Conn, project: uuid.UUID) -> dict[str, int]:
    return dict(
        one(
            conn,
            "select (select count(*) from public.orders where project_id = %(p)s) as orders,"
            " (select count(*) from public.order_items i join public.orders o on o.id = i.order_id"
            "  where o.project_id = %(p)s) as items,"
            " (select count(*) from public.contacts c join public.projects p"
            "  on p.workspace_id = c.workspace_id where p.id = %(p)s) as contacts,"
            " (select count(*) from public.products where project_id = %(p)s) as products,"
            " (select count(*) from public.product_variants v join public.products p"
            "  on p.id = v.product_id where p.project_id = %(p)s) as variants",
            {"p": project},
        )
    )


def test_the_token_is_stored_encrypted_and_the_shop_must_be_a_myshopify_domain(
    conn: Conn, client: TestClient, jwks: JwksServer, shop: tuple[User, uuid.UUID]
) -> None:
    owner, project = shop
    stored = one(
        conn,
        "select api_token_encrypted, webhook_secret_encrypted from private.integrations"
        " where project_id = %s and source = 'shopify'",
        (project,),
    )
    assert ACCESS_TOKEN not in stored["api_token_encrypted"]
    assert stored["webhook_secret_encrypted"] is not None  # the webhook secret stays
    for domain in ("shop.example", "https://127.0.0.1", "evil.com/.myshopify.com", "a b"):
        refused = connect_api(
            client, jwks, owner, project, shop_domain=domain, access_token=ACCESS_TOKEN
        )
        assert refused.status_code == 422, domain
        assert refused.json()["error"]["code"] == "shop_domain_invalid"
    viewer = add_member(conn, owner, "viewer")
    assert call_backfill(client, jwks, viewer, project).status_code == 403


def test_customers_orders_and_products_arrive_through_bulk_operations(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    shopify: ShopifyServer,
    shop: tuple[User, uuid.UUID],
) -> None:
    owner, project = shop
    stock(shopify, customers=3, orders=5, products=2)
    shopify.throttled = 1  # waited out per the cost extension
    first = call_backfill(client, jwks, owner, project)
    assert first.status_code == 200, first.text
    data = first.json()["data"]
    job = data.pop("job_id")
    assert data == {
        "stream": "customers",
        "status": "running",
        "error_code": None,
        "customers": 0,
        "orders": 0,
        "products": 0,
        "skipped": 0,
        "finished": False,
    }
    reports = []
    for _ in range(3):
        # Shopify finishes the query and says so with its webhook; the next call reads it.
        operation = shopify.finish()
        finished = finish_webhook(client, project, shopify.finish_payload(operation))
        assert finished.json()["data"]["outcome"] == "accepted"
        noted = one(
            conn,
            "select status from private.shop_bulk_operations where operation_id = %s",
            (operation.id,),
        )
        assert noted["status"] == "completed"
        answer = call_backfill(client, jwks, owner, project)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        reports.append((data["stream"], data["status"], data["finished"]))
    assert reports == [
        ("orders", "running", False),
        ("products", "running", False),
        (None, None, True),
    ]
    assert counts(conn, project) == {
        "orders": 5,
        "items": 10,
        "contacts": 3,
        "products": 2,
        "variants": 4,
    }
    # The same documents (ids) the webhooks write, customers linked by their shop id.
    order = one(
        conn,
        "select o.external_id, o.status, o.total, o.currency, c.email, x.external_id as shop_id"
        " from public.orders o join public.contacts c on c.id = o.contact_id"
        " join public.contact_external_ids x on x.contact_id = c.id and x.source = 'shopify'"
        " where o.project_id = %s and o.external_id = '450001'",
        (project,),
    )
    assert (order["status"], str(order["total"]), order["currency"], order["shop_id"]) == (
        "paid",
        "1299.00",
        "CZK",
        "7002",
    )
    variant = one(
        conn,
        "select v.sku, v.price, v.currency, v.inventory, p.category, p.url from"
        " public.product_variants v join public.products p on p.id = v.product_id"
        " where p.project_id = %s and v.external_id = '808950010'",
        (project,),
    )
    assert (variant["sku"], str(variant["price"]), variant["currency"]) == (
        "RS-1",
        "1299.00",
        "CZK",
    )
    assert (variant["inventory"], variant["category"]) == (7, "Shoes")
    linked = one(
        conn,
        "select count(*) filter (where i.variant_id is not null) as n from public.order_items i"
        " join public.orders o on o.id = i.order_id where o.project_id = %s",
        (project,),
    )
    assert linked["n"] == 10  # the lines' SKU names one variant: linked when products arrive
    progress = conn.execute(
        "select payload from realtime.messages where topic = %s and event = %s"
        " order by inserted_at, id",
        (f"workspace:{owner.workspace_id}:imports", "shop_backfill_progress"),
    ).fetchall()
    read = [
        (p["payload"]["stream"], p["payload"]["records"]) for p in progress if p["payload"]["read"]
    ]
    assert read == [("customers", 3), ("orders", 5), ("products", 2)]
    assert job_row(conn, job) == {
        "status": "done",
        "stream": None,
        "rows_processed": 10,
        "rows_failed": 0,
        "stream_records": {"customers": 3, "orders": 5, "products": 2},
        "error_code": None,
    }
    # Called again, it starts over with a new bulk query and changes nothing once read.
    again = call_backfill(client, jwks, owner, project).json()["data"]
    assert (again["stream"], again["status"]) == ("customers", "running")
    assert counts(conn, project)["orders"] == 5


def test_a_backfill_stopped_by_its_budget_resumes_at_its_byte(
    conn: Conn, database_url: str, shopify: ShopifyServer, shop: tuple[User, uuid.UUID]
) -> None:
    owner, project = shop
    stock(shopify, customers=4, orders=7, products=1)
    job = begin_job(conn, owner, project, "shopify")
    shopify.orders.append(({"id": "gid://shopify/Order/999", "createdAt": None}, []))
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        token = integration_secrets(database, SecretBox(ENCRYPTION_KEY), project, "shopify")
        assert token.api_token is not None
        credentials = ShopCredentials.from_sealed_form(token.api_token)
        admin = ShopifyAdmin(credentials, admin_url=shopify.base_url, wait=lambda _: None)
        reports = []
        for _ in range(20):
            # No budget: each call writes one page (three orders) and stops.
            report = backfill(database, admin, project, job, budget_seconds=0, page_size=3)
            reports.append((report.stream, report.orders, report.skipped, report.finished))
            if report.finished:
                break
            if report.status == "running":
                shopify.finish()
        admin.close()
    finally:
        database.close()
    assert [r for r in reports if r[1] or r[2]] == [
        ("orders", 3, 0, False),
        ("orders", 3, 0, False),
        ("products", 1, 1, False),  # the last order, one line without a date skipped
    ]
    assert reports[-1] == (None, 0, 0, True)
    customers = shopify.result("customers").split(b"\n")
    orders = shopify.result("orders").split(b"\n")
    # Each call after the first of a result asks for it from the byte after its last page.
    assert shopify.range_requests == [
        sum(len(line) + 1 for line in customers[:3]),
        sum(len(line) + 1 for line in orders[:9]),
        sum(len(line) + 1 for line in orders[:18]),
    ]
    assert counts(conn, project) == {
        "orders": 7,
        "items": 14,
        "contacts": 4,
        "products": 1,
        "variants": 2,
    }


def test_two_readers_of_one_result_write_and_count_each_page_once(
    conn: Conn, database_url: str, shopify: ShopifyServer, shop: tuple[User, uuid.UUID]
) -> None:
    """The cron and the owner's call may read one result at once: a page another reader wrote
    since this one looked is neither written nor counted again."""
    owner, project = shop
    stock(shopify, customers=5, orders=0, products=0)
    job = begin_job(conn, owner, project, "shopify")
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        token = integration_secrets(database, SecretBox(ENCRYPTION_KEY), project, "shopify")
        assert token.api_token is not None
        credentials = ShopCredentials.from_sealed_form(token.api_token)
        admin = ShopifyAdmin(credentials, admin_url=shopify.base_url, wait=lambda _: None)
        backfill(database, admin, project, job, budget_seconds=0, page_size=2)
        shopify.finish()
        stale = states(database, project)["customers"]  # what the slower reader saw
        first = backfill(database, admin, project, job, budget_seconds=0, page_size=2)
        assert first.customers == 2  # one page, then out of time
        late = ShopifyBackfillReport()
        url = admin.bulk_operation(stale.operation_id).url
        target, customers = Target(project, job), STREAMS[0]
        assert not read_result(
            database, admin, target, customers, stale, url, late, float("inf"), 2
        )
        assert late.customers == 0
        assert job_row(conn, job)["stream_records"] == {"customers": 2}
        while not backfill(database, admin, project, job, page_size=2).finished:
            shopify.finish()
        admin.close()
    finally:
        database.close()
    assert job_row(conn, job)["stream_records"] == {"customers": 5, "orders": 0, "products": 0}
    assert counts(conn, project)["contacts"] == 5


def test_a_failed_query_keeps_its_partial_data_and_restarts_after_it(
    conn: Conn, database_url: str, shopify: ShopifyServer, shop: tuple[User, uuid.UUID]
) -> None:
    """Shopify's orders query times out after reading two orders and part of the third (its
    partial data ends mid-line): the two are written, from the committed byte when a call runs
    out of time, and the query starts again for the orders after them only."""
    owner, project = shop
    stock(shopify, customers=2, orders=4, products=0)
    job = begin_job(conn, owner, project, "shopify")
    orders = shopify.result("orders")
    lines = orders.split(b"\n")
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        token = integration_secrets(database, SecretBox(ENCRYPTION_KEY), project, "shopify")
        assert token.api_token is not None
        credentials = ShopCredentials.from_sealed_form(token.api_token)
        admin = ShopifyAdmin(credentials, admin_url=shopify.base_url, wait=lambda _: None)
        reports = []
        for _ in range(12):
            # No budget: each call writes one page (one order) and stops.
            report = backfill(database, admin, project, job, budget_seconds=0, page_size=1)
            reports.append((report.stream, report.status, report.orders, report.skipped))
            if report.finished:
                break
            if report.status == "running":
                if report.stream == "orders" and len(shopify.operations) == 2:
                    # The third order's second line item is cut off by the failure.
                    shopify.fail_next = "TIMEOUT"
                    shopify.partial_bytes = sum(len(line) + 1 for line in lines[:8]) - 20
                shopify.finish()
        admin.close()
    finally:
        database.close()
    assert [r for r in reports if r[0] == "orders" or r[2]] == [
        ("orders", None, 0, 0),  # the customers took the call
        ("orders", "running", 0, 0),
        ("orders", "failed", 0, 0),  # Shopify says it failed
        ("orders", "failed", 1, 0),  # its partial data, a page per call
        ("orders", "failed", 1, 0),
        ("orders", "running", 0, 0),  # read to its end; the query restarted for the rest
        ("orders", "completed", 1, 0),
        ("products", None, 1, 0),
    ]
    failed, restarted = shopify.operations[1:3]
    assert (failed.error_code, restarted.stream, restarted.after) == ("TIMEOUT", "orders", 450002)
    # The partial data was read on from the byte after its first page.
    # Its second and third calls asked from the byte after the pages written before (the first
    # range asked is the customers' second page).
    assert shopify.range_requests[1:3] == [sum(len(line) + 1 for line in lines[:n]) for n in (3, 6)]
    assert counts(conn, project) == {
        "orders": 4,
        "items": 8,
        "contacts": 2,
        "products": 0,
        "variants": 0,
    }


def test_failures_are_reported_and_a_failed_query_is_started_again(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    shopify: ShopifyServer,
    shop: tuple[User, uuid.UUID],
) -> None:
    owner, project = shop
    stock(shopify, customers=2, orders=0, products=0)
    assert call_backfill(client, jwks, owner, project).json()["data"]["status"] == "running"
    # Another bulk query of the app (started elsewhere) holds the shop: a 409.
    one_running = shopify.operations[0]
    conn.execute(
        "update private.shop_bulk_operations set status = 'failed' where operation_id = %s",
        (one_running.id,),
    )
    busy = call_backfill(client, jwks, owner, project)
    assert (busy.status_code, busy.json()["error"]["code"]) == (
        409,
        "shopify_bulk_operation_in_progress",
    )
    shopify.fail_next = "ACCESS_DENIED"
    operation = shopify.finish()
    conn.execute(
        "update private.shop_bulk_operations set status = 'running' where operation_id = %s",
        (operation.id,),
    )
    failed = call_backfill(client, jwks, owner, project).json()["data"]
    assert (failed["stream"], failed["status"], failed["error_code"]) == (
        "customers",
        "failed",
        "ACCESS_DENIED",
    )
    # The next call starts the stream's query again.
    restarted = call_backfill(client, jwks, owner, project).json()["data"]
    assert (restarted["status"], len(shopify.operations)) == ("running", 2)
    # A webhook naming another shop's operation changes nothing.
    other = finish_webhook(
        client,
        project,
        {"admin_graphql_api_id": "gid://shopify/BulkOperation/1", "status": "completed"},
    )
    assert other.status_code == 200
    malformed = finish_webhook(client, project, {"admin_graphql_api_id": 5, "status": "x"})
    assert malformed.status_code == 422


def test_a_token_shopify_refuses_and_a_missing_connection_are_client_errors(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    missing = call_backfill(client, jwks, owner, project)
    assert (missing.status_code, missing.json()["error"]["code"]) == (
        409,
        "integration_not_connected",
    )
    connect_api(
        client,
        jwks,
        owner,
        project,
        shop_domain="demo.myshopify.com",
        access_token="shpat_wrong_wrong_wrong",
    )
    refused = call_backfill(client, jwks, owner, project)
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        422,
        "shopify_credentials_invalid",
    )
    # The owner must connect again: the one job (none for the missing connection) failed.
    jobs = conn.execute(
        "select status, error_code from public.import_jobs where project_id = %s", (project,)
    ).fetchall()
    assert [tuple(job.values()) for job in jobs] == [("failed", "shopify_credentials_invalid")]


def test_the_cron_carries_a_backfill_on_and_leaves_failed_ones_to_their_owner(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    shopify: ShopifyServer,
    sole_due_backfill: tuple[User, uuid.UUID],
) -> None:
    owner, project = sole_due_backfill
    stock(shopify, customers=3, orders=2, products=1)
    assert call_backfill(client, jwks, owner, project).json()["data"]["status"] == "running"

    def tick() -> None:
        answer = client.get(
            "/api/v1/cron/shop-backfills", headers={"Authorization": f"Bearer {CRON}"}
        )
        assert answer.status_code == 200, answer.text

    def due() -> bool:
        rows = conn.execute("select project_id from private.shopify_backfills_due(1000)")
        return project in {row["project_id"] for row in rows.fetchall()}

    # Still running at Shopify: asked, nothing read.
    tick()
    assert (due(), counts(conn, project)["contacts"], len(shopify.operations)) == (True, 0, 1)
    for _ in range(3):
        shopify.finish()  # no webhook: the cron's poll finds it completed
        tick()
    assert counts(conn, project) == {
        "orders": 2,
        "items": 4,
        "contacts": 3,
        "products": 1,
        "variants": 2,
    }
    # Read to its end: no longer the cron's; nor is a failed query.
    assert not due()
    assert call_backfill(client, jwks, owner, project).json()["data"]["status"] == "running"
    shopify.fail_next = "INTERNAL_SERVER_ERROR"
    shopify.finish()
    tick()  # the poll sees the failure
    assert not due()
    tick()
    assert len(shopify.operations) == 4  # the cron started no query again
    unauthorised = client.get("/api/v1/cron/shop-backfills")
    assert unauthorised.status_code == 401


def test_a_cancelled_backfill_leaves_the_cron_and_a_new_round_reads_every_stream(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    shopify: ShopifyServer,
    sole_due_backfill: tuple[User, uuid.UUID],
) -> None:
    owner, project = sole_due_backfill
    stock(shopify, customers=3, orders=2, products=1)
    first = call_backfill(client, jwks, owner, project).json()["data"]
    assert first["status"] == "running"

    def tick() -> int:
        answer = client.get(
            "/api/v1/cron/shop-backfills", headers={"Authorization": f"Bearer {CRON}"}
        )
        assert answer.status_code == 200, answer.text
        return int(answer.json()["data"]["projects"])

    cancelled = client.post(
        f"/api/v1/imports/{first['job_id']}/cancel", headers=bearer(jwks, owner)
    )
    assert cancelled.json()["data"]["status"] == "cancelled"
    shopify.finish()
    assert tick() == 0  # the cron carries on only a backfill whose job runs
    assert counts(conn, project)["contacts"] == 0
    # Called again: a new job reads the query the cancelled one had started.
    second = call_backfill(client, jwks, owner, project).json()["data"]
    assert second["job_id"] != first["job_id"]
    assert (second["customers"], second["stream"], second["status"]) == (3, "orders", "running")
    for _ in range(2):
        shopify.finish()
        assert tick() == 1
    assert job_row(conn, second["job_id"])["status"] == "done"
    # A finished backfill called again reads every stream again, not only the first.
    third = call_backfill(client, jwks, owner, project).json()["data"]
    for _ in range(3):
        shopify.finish()
        tick()
    assert len(shopify.operations) == 6
    assert job_row(conn, third["job_id"])["stream_records"] == {
        "customers": 3,
        "orders": 2,
        "products": 1,
    }
    assert counts(conn, project)["orders"] == 2


def test_the_admin_client_waits_out_a_429_and_throttling_and_gives_up_after_a_bound(
    shopify: ShopifyServer,
) -> None:
    """Shopify's two rate limits: an HTTP 429 waited out per its Retry-After, a THROTTLED answer
    per the cost extension (the refused query's cost less what the bucket holds, over its
    restore rate); past MAX_THROTTLE_WAITS waits a 502 `shopify_unavailable`, never a loop."""
    waits: list[float] = []
    credentials = ShopCredentials("demo.myshopify.com", ACCESS_TOKEN)
    admin = ShopifyAdmin(credentials, admin_url=shopify.base_url, wait=waits.append)
    try:
        shopify.rate_limited, shopify.throttled = 1, 1
        assert admin.shop_currency() == "CZK"
        # A 429's Retry-After of 2 s, then THROTTLED: (10 - 9.9) / 100 points per second.
        assert waits == [2.0, pytest.approx(0.001)]
        waits.clear()
        shopify.rate_limited, shopify.retry_after = 20, "3600"
        with pytest.raises(ShopifyError) as caught:
            admin.shop_currency()
        assert (caught.value.status, caught.value.code) == (502, "shopify_unavailable")
        assert waits == [MAX_WAIT_SECONDS] * (MAX_THROTTLE_WAITS + 1)  # an hour is capped
    finally:
        shopify.rate_limited, shopify.retry_after = 0, "2"
        admin.close()


def post_product(client: TestClient, project: uuid.UUID, product: dict[str, Any]) -> Any:
    body = json.dumps(product).encode()
    signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).digest()
    return client.post(
        f"/api/v1/webhooks/shopify/{project}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": "products/update",
            "X-Shopify-Shop-Domain": "demo.myshopify.com",
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Hmac-Sha256": base64.b64encode(signature).decode(),
        },
    )


def variant_prices(conn: Conn, project: uuid.UUID, product_id: str) -> list[tuple[Any, Any]]:
    rows = conn.execute(
        "select v.price::text, v.currency from public.product_variants v"
        " join public.products p on p.id = v.product_id"
        " where p.project_id = %s and p.external_id = %s order by v.external_id",
        (project, product_id),
    ).fetchall()
    return [(row["price"], row["currency"]) for row in rows]


def test_left_out_orders_are_counted_and_the_shops_currency_prices_its_products(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    shopify: ShopifyServer,
    shop: tuple[User, uuid.UUID],
) -> None:
    """Orders the database leaves out (an id too long to store, a currency that is not a code)
    are counted as skipped; the shop's currency (its shop query) is kept on the connection, so a
    product webhook's variant prices, which name no currency, are kept in it."""
    owner, project = shop
    # Before the shop's currency is known, a variant price without one is dropped.
    product = shopify_product_body(700)
    for variant in product["variants"]:
        variant.pop("presentment_prices", None)
    assert post_product(client, project, product).json()["data"] == {"outcome": "accepted"}
    assert variant_prices(conn, project, "700") == [(None, None), (None, None)]

    stock(shopify, customers=2, orders=4, products=1)
    shopify.currency = "EUR"
    long_id = "gid://shopify/Order/" + "9" * 201
    shopify.orders[1] = (order_node(2, 1, id=long_id), shopify.orders[1][1])
    bad_money = {"shopMoney": {"amount": "1299.0", "currencyCode": "EURO"}}
    shopify.orders[2] = (order_node(3, 1, totalPriceSet=bad_money), shopify.orders[2][1])
    job = call_backfill(client, jwks, owner, project).json()["data"]["job_id"]
    skipped = 0
    for _ in range(3):
        shopify.finish()
        answer = call_backfill(client, jwks, owner, project)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        skipped += data["skipped"]
    assert (data["finished"], skipped, counts(conn, project)["orders"]) == (True, 2, 2)
    row = job_row(conn, job)
    assert (row["status"], row["rows_processed"], row["rows_failed"]) == ("done", 7, 2)
    assert row["stream_records"] == {"customers": 2, "orders": 2, "products": 1}

    assert post_product(client, project, product).json()["data"] == {"outcome": "accepted"}
    assert variant_prices(conn, project, "700") == [("1099.00", "EUR"), ("1099.00", "EUR")]


def test_a_backfilled_order_line_without_a_sku_is_linked_by_its_product_and_variant(
    conn: Conn,
) -> None:
    """The bulk query's line items name their product and variant by gid: stored as the numeric
    ids the products stream (and the product webhooks) keep, so a line without a SKU links."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    streams = {stream.name: stream for stream in STREAMS}
    product = {
        **product_node(1),
        "__children": [variant_node(10, sku=""), variant_node(11, sku="")],
    }
    line = {
        **line_item_node(1, sku=""),
        "product": {"id": product["id"]},
        "variant": {"id": variant_node(11)["id"]},
    }
    order = {**order_node(1, 1), "__children": [line]}
    for name, node in (("products", product), ("orders", order)):
        stream = streams[name]
        conn.execute(stream.statement, (project, Jsonb([stream.to_document(node, "CZK")])))
    linked = one(
        conn,
        "select i.external_product_id, i.external_variant_id, p.external_id as product,"
        " v.external_id as variant from public.order_items i"
        " join public.orders o on o.id = i.order_id"
        " left join public.products p on p.id = i.product_id"
        " left join public.product_variants v on v.id = i.variant_id where o.project_id = %s",
        (project,),
    )
    assert tuple(linked.values()) == ("632910001", "808950011", "632910001", "808950011")
