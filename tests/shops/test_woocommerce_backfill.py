"""WooCommerce backfill: the store's REST API key stored encrypted, customers, orders and
products (variable ones with their variations as variants) read a page at a time and upserted,
resumed where a call stopped, 429s waited out, progress broadcast; all against a local server
speaking WooCommerce's REST v3 shape."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from api.app import create_app
from api.core.db import Database
from api.core.secrets_box import SecretBox
from api.shops import budget
from api.shops.integration_secrets import integration_secrets
from api.shops.woocommerce import (
    StoreCredentials,
    WooCommerceClient,
    WooCommerceError,
    backfill,
)
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    make_project,
    one,
)
from tests.fakes.jwks import JwksServer
from tests.fakes.woocommerce_server import (
    CONSUMER_KEY,
    CONSUMER_SECRET,
    WooCommerceServer,
    serve_woocommerce,
)
from tests.shops.test_customer_webhooks import woocommerce_customer_body
from tests.shops.test_product_webhooks import woocommerce_product_body
from tests.shops.test_shop_webhooks import woocommerce_order

Conn = psycopg.Connection[DictRow]
ENCRYPTION_KEY = Fernet.generate_key().decode()


@pytest.fixture
def woo() -> Iterator[WooCommerceServer]:
    with serve_woocommerce() as server:
        yield server


@pytest.fixture
def client(database_url: str, jwks: JwksServer, woo: WooCommerceServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        integrations_encryption_key=ENCRYPTION_KEY,
        woocommerce_allowed_origins=[woo.base_url],
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def stock(woo: WooCommerceServer, customers: int, orders: int) -> None:
    woo.customers = [
        woocommerce_customer_body(n, email=f"buyer{n}@example.test")
        for n in range(1, customers + 1)
    ]
    woo.orders = [
        woocommerce_order(
            1000 + n,
            customer_id=1 + n % customers,
            billing={"email": f"buyer{1 + n % customers}@example.test", "country": "SK"},
        )
        for n in range(1, orders + 1)
    ]


def connect_api(
    client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID, **body: Any
) -> Any:
    return client.post(
        f"/api/v1/projects/{project}/integrations/woocommerce/api",
        headers=bearer(jwks, user),
        json=body,
    )


def call_backfill(client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID) -> Any:
    return client.post(
        f"/api/v1/projects/{project}/integrations/woocommerce/backfill", headers=bearer(jwks, user)
    )


def begin_job(conn: Conn, user: User, project: uuid.UUID, source: str) -> uuid.UUID:
    """The project's running backfill job of `source`, or a new one, as the user starts it."""
    with acting_as(conn, user):
        job = one(
            conn,
            "select id from private.begin_shop_backfill(%s, %s, 'backfill')",
            (project, source),
        )
    return uuid.UUID(str(job["id"]))


def job_row(conn: Conn, job: uuid.UUID | str) -> dict[str, Any]:
    return one(
        conn,
        "select status, stream, rows_processed, rows_failed, stream_records, error_code"
        " from public.import_jobs where id = %s",
        (job,),
    )


@pytest.fixture
def shop(
    conn: Conn, client: TestClient, jwks: JwksServer, woo: WooCommerceServer
) -> tuple[User, uuid.UUID]:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (owner.workspace_id,)
    )
    project = make_project(conn, owner)
    answer = connect_api(
        client,
        jwks,
        owner,
        project,
        store_url=woo.base_url + "/",
        consumer_key=CONSUMER_KEY,
        consumer_secret=CONSUMER_SECRET,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["store_url"] == woo.base_url
    return owner, project


def counts(conn: Conn, project: uuid.UUID) -> tuple[int, int]:
    row = one(
        conn,
        "select (select count(*) from public.orders where project_id = %(p)s) as orders,"
        " (select count(*) from public.contacts c join public.projects p"
        "  on p.workspace_id = c.workspace_id where p.id = %(p)s) as contacts",
        {"p": project},
    )
    return row["contacts"], row["orders"]


def test_the_api_key_is_stored_encrypted_and_the_store_must_be_public_https(
    conn: Conn, client: TestClient, jwks: JwksServer, shop: tuple[User, uuid.UUID]
) -> None:
    owner, project = shop
    stored = one(
        conn,
        "select api_token_encrypted from private.integrations"
        " where project_id = %s and source = 'woocommerce'",
        (project,),
    )["api_token_encrypted"]
    assert CONSUMER_SECRET not in stored and CONSUMER_KEY not in stored
    for url in ("http://shop.example", "https://127.0.0.1", "https://10.1.2.3", "https://a@b.c"):
        refused = connect_api(
            client,
            jwks,
            owner,
            project,
            store_url=url,
            consumer_key=CONSUMER_KEY,
            consumer_secret=CONSUMER_SECRET,
        )
        assert refused.status_code == 422, url
        assert refused.json()["error"]["code"] == "store_url_not_allowed"
    viewer = add_member(conn, owner, "viewer")
    assert call_backfill(client, jwks, viewer, project).status_code == 403


def test_customers_then_orders_are_read_page_by_page_and_upserted(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    woo: WooCommerceServer,
    shop: tuple[User, uuid.UUID],
) -> None:
    owner, project = shop
    stock(woo, customers=150, orders=250)
    woo.rate_limited = ["orders"]  # waited out per Retry-After
    answer = call_backfill(client, jwks, owner, project)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    job = data.pop("job_id")
    assert data == {
        "pages": 6,
        "customers": 150,
        "orders": 250,
        "products": 0,
        "skipped": 0,
        "finished": True,
    }
    assert counts(conn, project) == (150, 250)
    linked = one(
        conn,
        "select count(*) as n from public.orders o join public.contact_external_ids x"
        " on x.contact_id = o.contact_id and x.source = 'woocommerce'"
        " where o.project_id = %s",
        (project,),
    )
    assert linked["n"] == 250
    progress = conn.execute(
        "select payload from realtime.messages where topic = %s and event = %s"
        " order by inserted_at",
        (f"workspace:{owner.workspace_id}:imports", "shop_backfill_progress"),
    ).fetchall()
    assert [(p["payload"]["stream"], p["payload"]["page"]) for p in progress] == [
        ("customers", 1),
        ("customers", 2),
        ("orders", 1),
        ("orders", 2),
        ("orders", 3),
        ("products", 1),
    ]
    # It ran as an import job, which its workspace's members read as any import.
    viewer = add_member(conn, owner, "viewer")
    seen = client.get(f"/api/v1/imports/{job}", headers=bearer(jwks, viewer))
    assert seen.status_code == 200, seen.text
    read = {name: seen.json()["data"][name] for name in ("kind", "source", "status", "size_bytes")}
    assert read == {
        "kind": "backfill",
        "source": "woocommerce",
        "status": "done",
        "size_bytes": None,
    }
    assert job_row(conn, job) == {
        "status": "done",
        "stream": None,
        "rows_processed": 400,
        "rows_failed": 0,
        "stream_records": {"customers": 150, "orders": 250, "products": 0},
        "error_code": None,
    }
    # Called again, it reads everything again, as a new job, and changes nothing.
    again = call_backfill(client, jwks, owner, project).json()["data"]
    assert (again["finished"], counts(conn, project)) == (True, (150, 250))
    assert again["job_id"] != job and job_row(conn, again["job_id"])["status"] == "done"


def test_a_backfill_stopped_by_its_budget_resumes_at_its_page(
    conn: Conn, database_url: str, woo: WooCommerceServer, shop: tuple[User, uuid.UUID]
) -> None:
    owner, project = shop
    stock(woo, customers=120, orders=330)
    woo.orders.append({"id": 9999, "status": "processing"})  # no total: skipped, not written
    job = begin_job(conn, owner, project, "woocommerce")
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        token = integration_secrets(database, SecretBox(ENCRYPTION_KEY), project, "woocommerce")
        assert token.api_token is not None
        store = WooCommerceClient(StoreCredentials.from_sealed_form(token.api_token))
        reports = []
        for _ in range(4):
            report = backfill(database, store, project, job, max_pages=2)
            reports.append((report.customers, report.orders, report.skipped, report.finished))
            if report.finished:
                break
        store.close()
    finally:
        database.close()
    assert reports == [(120, 0, 0, False), (0, 200, 0, False), (0, 130, 1, False), (0, 0, 0, True)]
    assert woo.pages_requested("customers") == [1, 2]
    assert woo.pages_requested("orders") == [1, 2, 3, 4]
    assert woo.pages_requested("products") == [1]
    assert counts(conn, project) == (120, 330)
    assert job_row(conn, job) == {
        "status": "done",
        "stream": None,
        "rows_processed": 451,
        "rows_failed": 1,
        "stream_records": {"customers": 120, "orders": 330, "products": 0},
        "error_code": None,
    }


def store_client(
    database: Database, project: uuid.UUID, timeout_seconds: float = 15.0
) -> WooCommerceClient:
    token = integration_secrets(database, SecretBox(ENCRYPTION_KEY), project, "woocommerce")
    assert token.api_token is not None
    return WooCommerceClient(
        StoreCredentials.from_sealed_form(token.api_token), timeout_seconds=timeout_seconds
    )


def test_a_backfill_whose_time_is_spent_stops_before_a_page_it_could_not_finish(
    conn: Conn, database_url: str, woo: WooCommerceServer, shop: tuple[User, uuid.UUID]
) -> None:
    """Each request the store answers moves the injected clock a second on: with 1.5 s a call
    has room for one page (a second, as slow as the first, would end past its deadline). Each
    call writes its page, answers not finished, and the next goes on at the next page, nothing
    read, written or counted twice."""
    owner, project = shop
    stock(woo, customers=120, orders=130)
    job = begin_job(conn, owner, project, "woocommerce")

    def clock() -> float:
        return float(len(woo.requests))

    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        store = store_client(database, project)
        reports, stored = [], []
        for _ in range(7):
            report = backfill(database, store, project, job, 20, budget_seconds=1.5, clock=clock)
            reports.append((report.pages, report.customers, report.orders, report.finished))
            stored.append(counts(conn, project))
            if report.finished:
                break
        store.close()
    finally:
        database.close()
    assert reports == [
        (1, 100, 0, False),
        (1, 20, 0, False),
        (1, 0, 100, False),
        (1, 0, 30, False),
        (1, 0, 0, True),
    ]
    assert stored == [(100, 0), (120, 0), (120, 100), (120, 130), (120, 130)]
    assert woo.pages_requested("customers") == [1, 2]
    assert woo.pages_requested("orders") == [1, 2]
    assert job_row(conn, job)["stream_records"] == {
        "customers": 120,
        "orders": 130,
        "products": 0,
    }


def test_each_request_to_the_store_waits_at_most_the_time_left(
    conn: Conn, database_url: str, woo: WooCommerceServer, shop: tuple[User, uuid.UUID]
) -> None:
    """The injected clock stands still with 2.5 s left: every request is given 2.5 s, not the
    client's own 15 s."""
    owner, project = shop
    stock(woo, customers=1, orders=1)
    job = begin_job(conn, owner, project, "woocommerce")
    given: list[dict[str, float]] = []
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        store = store_client(database, project)
        store.http.event_hooks["request"].append(
            lambda request: given.append(request.extensions["timeout"])
        )
        report = backfill(database, store, project, job, 20, budget_seconds=2.5, clock=lambda: 0.0)
        store.close()
    finally:
        database.close()
    assert report.finished
    assert given == [{"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}] * 3


def test_a_retry_after_longer_than_the_time_left_ends_the_call_unfinished(
    conn: Conn, database_url: str, woo: WooCommerceServer, shop: tuple[User, uuid.UUID]
) -> None:
    """A 429 asking for 30 s with 10 s left is not waited out: the call answers not finished,
    having written nothing, and the next reads the page."""
    owner, project = shop
    stock(woo, customers=2, orders=1)
    woo.rate_limited, woo.retry_after = ["customers"], "30"
    job = begin_job(conn, owner, project, "woocommerce")
    waits: list[float] = []
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        token = integration_secrets(database, SecretBox(ENCRYPTION_KEY), project, "woocommerce")
        assert token.api_token is not None
        credentials = StoreCredentials.from_sealed_form(token.api_token)
        store = WooCommerceClient(credentials, wait=waits.append)
        first = backfill(database, store, project, job, 20, budget_seconds=10, clock=lambda: 0.0)
        second = backfill(database, store, project, job, 20, budget_seconds=10, clock=lambda: 0.0)
        store.close()
    finally:
        database.close()
    assert (first.pages, first.finished, waits) == (0, False, [])
    assert (second.customers, second.orders, second.finished) == (2, 1, True)
    assert woo.pages_requested("customers") == [1, 1]


def test_a_store_whose_currency_does_not_come_in_time_writes_no_products_without_it(
    conn: Conn, database_url: str, woo: WooCommerceServer, shop: tuple[User, uuid.UUID]
) -> None:
    """The currency setting held past the request's time is the store not answering, not a key
    that may not read settings: the products page is not written with prices of no currency.
    Held past the time left after the call wrote a page (the empty customers' and orders'), the
    call is out of time and answers unfinished; held past the client's own timeout (0.5 s here)
    on the next call's first page, it is a 502; neither writes the products."""
    owner, project = shop
    woo.products = [woocommerce_product_body(7001)]
    woo.stalled["settings/general/woocommerce_currency"] = 5.0
    job = begin_job(conn, owner, project, "woocommerce")
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        store = store_client(database, project)
        cut = backfill(database, store, project, job, 20, budget_seconds=0.5, clock=lambda: 0.0)
        store.close()
        woo.stalled["settings/general/woocommerce_currency"] = 5.0
        store = store_client(database, project, timeout_seconds=0.5)
        with pytest.raises(WooCommerceError) as failed:
            backfill(database, store, project, job, 20, budget_seconds=10, clock=lambda: 0.0)
        store.close()
    finally:
        database.close()
    assert (failed.value.status, failed.value.code) == (502, "woocommerce_unavailable")
    assert (cut.products, cut.finished) == (0, False)
    written = one(
        conn, "select count(*) as n from public.products where project_id = %s", (project,)
    )
    assert written["n"] == 0


@pytest.mark.parametrize("answered", [500, 503])
def test_a_store_failing_to_answer_its_currency_writes_no_products_without_it(
    conn: Conn,
    database_url: str,
    woo: WooCommerceServer,
    shop: tuple[User, uuid.UUID],
    answered: int,
) -> None:
    """A store whose server fails the currency setting (a 5xx) is a store in trouble, as one
    that does not answer at all, not a key that may not read settings (403): the products page
    is not written with prices of no currency, and the next call reads it again."""
    owner, project = shop
    woo.products = [woocommerce_product_body(7001)]
    woo.failing["settings/general/woocommerce_currency"] = answered
    job = begin_job(conn, owner, project, "woocommerce")
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        store = store_client(database, project)
        with pytest.raises(WooCommerceError) as failed:
            backfill(database, store, project, job, 20)
        store.close()
        written = one(
            conn,
            "select count(*) as n from public.products where project_id = %s",
            (project,),
        )
        store = store_client(database, project)
        again = backfill(database, store, project, job, 20)
        store.close()
    finally:
        database.close()
    assert (failed.value.status, failed.value.code) == (502, "woocommerce_unavailable")
    assert written["n"] == 0
    assert (again.products, again.finished) == (1, True)
    priced = one(conn, "select currency from public.products where project_id = %s", (project,))
    assert priced["currency"] == "EUR"


def test_a_stalled_store_is_cut_at_the_budget_and_the_job_waits_for_the_next_call(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    woo: WooCommerceServer,
    shop: tuple[User, uuid.UUID],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The store holds its first page of customers 5 s (the client's own timeout is 15 s); a
    call with a 1 s budget gives up on it when its time is spent, as on any store that does not
    answer (502), having written nothing and leaving its job to the next call."""
    owner, project = shop
    stock(woo, customers=3, orders=2)
    monkeypatch.setattr(budget, "BUDGET_SECONDS", 1.0)
    woo.stalled["customers"] = 5.0
    stalled = call_backfill(client, jwks, owner, project)
    assert (stalled.status_code, stalled.json()["error"]["code"]) == (
        502,
        "woocommerce_unavailable",
    )
    assert counts(conn, project) == (0, 0)
    monkeypatch.setattr(budget, "BUDGET_SECONDS", 40.0)
    resumed = call_backfill(client, jwks, owner, project).json()["data"]
    assert (resumed["customers"], resumed["orders"], resumed["finished"]) == (3, 2, True)
    assert woo.pages_requested("customers") == [1, 1]
    # One job: the stalled call's, not failed, carried on by the next.
    jobs = conn.execute(
        "select id, status, rows_processed from public.import_jobs where project_id = %s",
        (project,),
    ).fetchall()
    assert jobs == [{"id": uuid.UUID(resumed["job_id"]), "status": "done", "rows_processed": 5}]


def test_a_cancelled_backfill_takes_no_more_pages_and_the_next_job_carries_on(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    database_url: str,
    woo: WooCommerceServer,
    shop: tuple[User, uuid.UUID],
) -> None:
    owner, project = shop
    stock(woo, customers=120, orders=30)
    job = begin_job(conn, owner, project, "woocommerce")
    assert begin_job(conn, owner, project, "woocommerce") == job  # one running job a shop
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        token = integration_secrets(database, SecretBox(ENCRYPTION_KEY), project, "woocommerce")
        assert token.api_token is not None
        store = WooCommerceClient(StoreCredentials.from_sealed_form(token.api_token))
        first = backfill(database, store, project, job, max_pages=1)
        assert (first.customers, job_row(conn, job)["stream"]) == (100, "customers")
        # The import workers never take a backfill job.
        running = conn.execute("select id from private.running_import_jobs(1000)").fetchall()
        assert job not in {row["id"] for row in running}
        stranger, viewer = create_user(conn), add_member(conn, owner, "viewer")
        for user, status in ((stranger, 404), (viewer, 403)):
            refused = client.post(f"/api/v1/imports/{job}/cancel", headers=bearer(jwks, user))
            assert refused.status_code == status, refused.text
        assert client.get(f"/api/v1/imports/{job}", headers=bearer(jwks, stranger)).json()["error"][
            "code"
        ] == ("import_job_not_found")
        cancelled = client.post(f"/api/v1/imports/{job}/cancel", headers=bearer(jwks, owner))
        assert cancelled.json()["data"]["status"] == "cancelled", cancelled.text
        # A call already under way writes no page after the cancel.
        stopped = backfill(database, store, project, job, max_pages=5)
        assert (stopped.pages, stopped.customers, counts(conn, project)) == (0, 0, (100, 0))
        store.close()
    finally:
        database.close()
    assert job_row(conn, job) == {
        "status": "cancelled",
        "stream": "customers",
        "rows_processed": 100,
        "rows_failed": 0,
        "stream_records": {"customers": 100},
        "error_code": None,
    }
    # Called again: a new job carries on at the page the cancelled one stopped at.
    answer = call_backfill(client, jwks, owner, project).json()["data"]
    assert (answer["customers"], answer["orders"], answer["finished"]) == (20, 30, True)
    assert woo.pages_requested("customers") == [1, 2, 2]  # page 2 read, but not written, at once
    assert counts(conn, project) == (120, 30)
    assert job_row(conn, answer["job_id"])["stream_records"] == {
        "customers": 20,
        "orders": 30,
        "products": 0,
    }
    progress = conn.execute(
        "select payload from realtime.messages where topic = %s and event = 'import_progress'"
        " and payload ->> 'id' = %s order by inserted_at, id",
        (f"workspace:{owner.workspace_id}:imports", str(job)),
    ).fetchall()
    assert [(p["payload"]["source"], p["payload"]["status"]) for p in progress][-1] == (
        "woocommerce",
        "cancelled",
    )
    # Disconnecting the shop fails its running backfill (its positions go with it).
    running_job = begin_job(conn, owner, project, "woocommerce")
    disconnected = client.post(
        f"/api/v1/projects/{project}/integrations/woocommerce/disconnect",
        headers=bearer(jwks, owner),
    )
    assert disconnected.json()["data"]["removed"] is True
    gone = job_row(conn, running_job)
    assert (gone["status"], gone["error_code"]) == ("failed", "integration_disconnected")


def test_a_key_the_store_refuses_and_a_missing_connection_are_client_errors(
    conn: Conn, client: TestClient, jwks: JwksServer, woo: WooCommerceServer
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
        store_url=woo.base_url,
        consumer_key="ck_wrong_wrong_wrong",
        consumer_secret=CONSUMER_SECRET,
    )
    refused = call_backfill(client, jwks, owner, project)
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        422,
        "woocommerce_credentials_invalid",
    )
    # The owner must connect again: the one job (none for the missing connection) failed.
    jobs = conn.execute(
        "select status, error_code from public.import_jobs where project_id = %s", (project,)
    ).fetchall()
    assert [tuple(job.values()) for job in jobs] == [("failed", "woocommerce_credentials_invalid")]


def variable_mug(product_id: int) -> dict[str, Any]:
    return woocommerce_product_body(
        product_id, type="variable", sku="", price="15.30", variations=[product_id + 1]
    )


def variation(variation_id: int, colour: str, **changes: Any) -> dict[str, Any]:
    body = {
        "id": variation_id,
        "sku": f"MUG-{colour.upper()}",
        "price": "17.50",
        "regular_price": "17.50",
        "status": "publish",
        "stock_quantity": 4,
        "image": {"id": 8, "src": f"https://shop.example/wp-content/uploads/mug-{colour}.jpg"},
        "attributes": [{"id": 1, "name": "Colour", "option": colour.title()}],
    }
    body.update(changes)
    return body


def test_products_arrive_with_their_variations_as_variants(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    woo: WooCommerceServer,
    shop: tuple[User, uuid.UUID],
) -> None:
    owner, project = shop
    stock(woo, customers=1, orders=1)
    woo.orders[0]["line_items"] = [
        {"id": 5, "name": "Mug - Red", "sku": "MUG-RED", "quantity": 1, "price": 17.5}
    ]
    woo.products = [woocommerce_product_body(70), variable_mug(80)]
    woo.variations = {
        80: [variation(81, "red"), variation(82, "blue", status="private"), {"id": 83, "sku": 5}]
    }
    answer = call_backfill(client, jwks, owner, project)
    assert answer.json()["data"]["products"] == 2, answer.text
    rows = conn.execute(
        "select p.external_id, p.price, p.currency, v.external_id as variant, v.title,"
        " v.sku, v.price as variant_price, v.currency as variant_currency, v.inventory,"
        " v.status from public.products p"
        " left join public.product_variants v on v.product_id = p.id"
        " where p.project_id = %s order by p.external_id, v.external_id",
        (project,),
    ).fetchall()
    assert [
        (
            r["external_id"],
            str(r["price"]),
            r["currency"],
            r["variant"],
            r["title"],
            r["sku"],
            str(r["variant_price"]),
            r["variant_currency"],
            r["status"],
        )
        for r in rows
    ] == [
        ("70", "15.30", "EUR", None, None, None, "None", None, None),
        ("80", "15.30", "EUR", "81", "Red", "MUG-RED", "17.50", "EUR", "active"),
        ("80", "15.30", "EUR", "82", "Blue", "MUG-BLUE", "17.50", "EUR", "draft"),
    ]
    line = one(
        conn,
        "select v.external_id from public.order_items i join public.orders o on o.id = i.order_id"
        " join public.product_variants v on v.id = i.variant_id where o.project_id = %s",
        (project,),
    )
    assert line["external_id"] == "81"  # the order's line found its variant by SKU
    # A variation the shop no longer lists goes; a store whose key may not read settings names
    # no currency, so its prices are unknown: the price stored in the currency named before stays
    # (it used to be blanked until the next backfill that could read the currency).
    woo.variations[80] = [variation(81, "red")]
    woo.currency = None
    call_backfill(client, jwks, owner, project)
    variants = conn.execute(
        "select v.external_id, v.price::text, v.currency from public.product_variants v"
        " join public.products p on p.id = v.product_id where p.project_id = %s",
        (project,),
    ).fetchall()
    assert [(v["external_id"], v["price"], v["currency"]) for v in variants] == [
        ("81", "17.50", "EUR")
    ]


def test_a_page_with_one_over_long_customer_imports_every_order(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    woo: WooCommerceServer,
    shop: tuple[User, uuid.UUID],
) -> None:
    """A name longer than the contacts keep (WooCommerce sets no limit) is cut to 200
    characters; the customers' and orders' pages it is on are written whole, not failed."""
    owner, project = shop
    stock(woo, customers=3, orders=6)
    name = "Ľ" + "o" * 299
    woo.customers[1]["first_name"] = name
    for order in woo.orders:
        if order["customer_id"] == 2:
            order["billing"]["first_name"] = name
    answer = call_backfill(client, jwks, owner, project)
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert (data["customers"], data["orders"], data["finished"]) == (3, 6, True)
    assert counts(conn, project) == (3, 6)
    rows = conn.execute(
        "select k.first_name, count(o.id) as orders from public.orders o"
        " join public.contacts k on k.id = o.contact_id"
        " where o.project_id = %s group by k.id order by k.email",
        (project,),
    ).fetchall()
    assert [(row["first_name"], row["orders"]) for row in rows] == [
        ("Marek", 2),
        (name[:200], 2),
        ("Marek", 2),
    ]


def test_orders_that_break_a_rule_are_left_out_and_counted_as_skipped(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    woo: WooCommerceServer,
    shop: tuple[User, uuid.UUID],
) -> None:
    """One bad order does not cost its page: a currency that is not a code, a date that does
    not exist and an id too long to store are left out, counted in the job's skipped rows and
    the answer's `skipped`; the page's other orders are written."""
    owner, project = shop
    stock(woo, customers=2, orders=6)
    woo.orders[1]["currency"] = "EURO"
    woo.orders[2]["date_created_gmt"] = "2026-02-30T07:00:00"
    woo.orders[3]["id"] = "9" * 201
    data = call_backfill(client, jwks, owner, project).json()["data"]
    job = data.pop("job_id")
    assert (data["orders"], data["skipped"], data["finished"]) == (3, 3, True)
    assert counts(conn, project) == (2, 3)
    row = job_row(conn, job)
    assert (row["status"], row["rows_processed"], row["rows_failed"]) == ("done", 8, 3)
    assert row["stream_records"] == {"customers": 2, "orders": 3, "products": 0}


def test_a_nul_character_a_store_sends_does_not_fail_its_page(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    woo: WooCommerceServer,
    shop: tuple[User, uuid.UUID],
) -> None:
    """JSON allows `\\u0000` in a string and Postgres's jsonb refuses it: a store's record with
    one failed its whole page at every call. It is written without the character."""
    owner, project = shop
    stock(woo, customers=2, orders=3)
    woo.customers[0]["first_name"] = "Ma\x00rek"
    woo.orders[0]["billing"]["first_name"] = "Ma\x00rek"
    woo.orders[0]["line_items"][0]["name"] = "Mu\x00g"
    data = call_backfill(client, jwks, owner, project).json()["data"]
    assert (data["customers"], data["orders"], data["skipped"], data["finished"]) == (2, 3, 0, True)
    names = conn.execute(
        "select distinct i.name from public.order_items i join public.orders o"
        " on o.id = i.order_id where o.project_id = %s",
        (project,),
    ).fetchall()
    assert [row["name"] for row in names] == ["Mug"]
    first = one(
        conn,
        "select count(*) filter (where first_name = 'Marek') as n from public.contacts c"
        " join public.projects p on p.workspace_id = c.workspace_id where p.id = %s",
        (project,),
    )
    assert first["n"] == 2
