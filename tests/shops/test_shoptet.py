"""Shoptet: connect and test the token, sync orders page by page (429s, a crash and a resume,
increments), sync the catalog (products with their variants), and verified webhooks applied by
fetching the detail — all against a local server speaking Shoptet's API shape."""

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from api.core.db import Database
from api.core.secrets_box import KeyMismatchError, SecretBox
from api.core.settings import Settings
from api.shops import budget, routes
from api.shops.shoptet.catalog import sync_catalog
from api.shops.shoptet.client import ShoptetClient, ShoptetError
from api.shops.shoptet.sync import sync_shop
from tests.factories.edge import bearer, documented_codes, edge_settings
from tests.factories.statements import counting_statements
from tests.factories.webhook_events import put_off_due_webhook_events
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    make_project,
    one,
)
from tests.fakes.jwks import JwksServer
from tests.fakes.shoptet_server import (
    TOKEN,
    Failure,
    ShoptetServer,
    Stall,
    serve_shoptet,
    shoptet_order,
    shoptet_product,
)

Conn = psycopg.Connection[DictRow]
SIGNATURE_KEY = "shoptet-signature-" + uuid.uuid4().hex
CRON = "cron-" + uuid.uuid4().hex
ENCRYPTION_KEY = Fernet.generate_key().decode()
EDGE = "https://edge.example.test"


@pytest.fixture
def shoptet() -> Iterator[ShoptetServer]:
    with serve_shoptet() as server:
        yield server


def shoptet_settings(
    database_url: str, jwks: JwksServer, shoptet: ShoptetServer, public_base_url: str | None = EDGE
) -> Settings:
    return edge_settings(
        database_url,
        jwks,
        integrations_encryption_key=ENCRYPTION_KEY,
        shoptet_api_url=shoptet.base_url,
        cron_secret=CRON,
        public_base_url=public_base_url,
    )


@pytest.fixture
def client(database_url: str, jwks: JwksServer, shoptet: ShoptetServer) -> Iterator[TestClient]:
    with TestClient(create_app(shoptet_settings(database_url, jwks, shoptet))) as test_client:
        yield test_client


class Shop:
    def __init__(
        self, client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID
    ) -> None:
        self.client, self.user, self.project = client, user, project
        self.headers = bearer(jwks, user)

    def post(self, action: str, **body: Any) -> Any:
        return self.client.post(
            f"/api/v1/projects/{self.project}/integrations/shoptet/{action}",
            headers=self.headers,
            json=body or None,
        )

    def webhook(
        self, event: dict[str, Any], key: str = SIGNATURE_KEY, body: bytes | None = None
    ) -> Any:
        raw = body or json.dumps(event).encode()
        return self.client.post(
            f"/api/v1/webhooks/shoptet/{self.project}",
            content=raw,
            headers={
                "Content-Type": "application/json",
                "Shoptet-Webhook-Signature": hmac.new(
                    key.encode(), json.dumps(event).encode(), hashlib.sha1
                ).hexdigest(),
            },
        )


@pytest.fixture
def shop(conn: Conn, client: TestClient, jwks: JwksServer) -> Shop:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set base_currency = 'CZK' where id = %s", (owner.workspace_id,)
    )
    shop = Shop(client, jwks, owner, make_project(conn, owner))
    connected = shop.post("connect", api_token=TOKEN, webhook_signature_key=SIGNATURE_KEY)
    assert connected.status_code == 200
    return shop


def stored_orders(conn: Conn, project: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "select external_id, status, total from public.orders where project_id = %s"
        " order by external_id",
        (project,),
    ).fetchall()


def test_the_token_is_tested_against_shoptet(shop: Shop, conn: Conn) -> None:
    good = shop.post("test")
    assert good.json()["data"] == {
        "ok": True,
        "eshop": {"name": "Demo obchod", "url": "https://demo.myshoptet.com/"},
    }
    shop.post("connect", api_token="wrong-token-000")
    bad = shop.post("test")
    assert (bad.status_code, bad.json()["error"]["code"]) == (422, "shoptet_token_invalid")
    sealed = one(
        conn,
        "select api_token_encrypted from private.integrations where project_id = %s",
        (shop.project,),
    )["api_token_encrypted"]
    assert "wrong-token" not in sealed


def backfill_job(conn: Conn, project: uuid.UUID) -> dict[str, Any]:
    """The project's one backfill job as its members read it."""
    return one(
        conn,
        "select id, kind, source, status, stream, rows_processed, rows_failed, stream_records,"
        " error_code from public.import_jobs where project_id = %s",
        (project,),
    )


def without_job(report: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in report.items() if name != "job_id"}


def test_sync_pages_through_orders_and_waits_out_a_429(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    shoptet.orders = [
        shoptet_order(n, changed=f"2026-06-01T10:{n % 60:02d}:00+0200") for n in range(1, 121)
    ]
    shoptet.failures.append(Failure("/api/orders", 429, retry_after_now=True))
    response = shop.post("sync")
    report = response.json()["data"]
    assert without_job(report) == {
        "pages": 4,
        "orders": 120,
        "customers": 0,
        "skipped": 0,
        "finished": True,
    }
    assert shoptet.order_pages_requested() == [1, 1, 2, 3]
    # The sync ran as an import job, done with its counts.
    job = backfill_job(conn, shop.project)
    assert job == {
        "id": uuid.UUID(report["job_id"]),
        "kind": "backfill",
        "source": "shoptet",
        "status": "done",
        "stream": None,
        "rows_processed": 120,
        "rows_failed": 0,
        "stream_records": {"orders": 120, "customers": 0},
        "error_code": None,
    }
    rows = stored_orders(conn, shop.project)
    assert len(rows) == 120
    assert {r["status"] for r in rows} == {"paid"}
    contacts = one(
        conn,
        "select count(*) from public.contacts where workspace_id = %s",
        (shop.user.workspace_id,),
    )
    assert contacts["count"] == 7
    state = one(
        conn,
        "select cursor, page from private.sync_streams where project_id = %s and stream = 'orders'",
        (shop.project,),
    )
    assert state["page"] is None
    assert state["cursor"].isoformat() == "2026-06-01T08:59:00+00:00"


def test_a_sync_writes_each_page_with_one_statement_per_table(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    """120 orders of 7 customers in 3 pages of 50: each page is one upsert of its contacts and
    one of its orders, never a statement per order."""
    shoptet.orders = [shoptet_order(n) for n in range(1, 121)]
    with counting_statements(conn, "public.orders", "public.contacts") as counts:
        report = shop.post("sync").json()["data"]
    assert without_job(report) == {
        "pages": 4,
        "orders": 120,
        "customers": 0,
        "skipped": 0,
        "finished": True,
    }
    assert len(stored_orders(conn, shop.project)) == 120
    # Three pages of orders and the empty page of customers: at most one statement each.
    assert counts["orders:INSERT"] == 3, counts
    assert counts["orders:UPDATE"] <= 3 and counts["orders:DELETE"] == 0, counts
    assert counts["contacts:INSERT"] <= 3 and counts["contacts:UPDATE"] <= 3, counts
    # A second sync of the same pages changes nothing and still writes per page.
    with counting_statements(conn, "public.orders") as again:
        shop.post("sync")
    assert again["orders:INSERT"] <= 3, again


def test_a_sync_that_fails_mid_way_resumes_without_duplicates(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    shoptet.orders = [shoptet_order(n) for n in range(1, 121)]
    shoptet.failures.append(Failure("/api/orders", 500, page=2))
    crashed = shop.post("sync")
    assert (crashed.status_code, crashed.json()["error"]["code"]) == (502, "shoptet_unavailable")
    assert len(stored_orders(conn, shop.project)) == 50
    state = one(
        conn,
        "select page from private.sync_streams where project_id = %s and stream = 'orders'",
        (shop.project,),
    )
    assert state["page"] == 2
    # Shoptet failing is not the owner's to fix: the job waits, importing, for the next call.
    waiting = backfill_job(conn, shop.project)
    assert (waiting["status"], waiting["stream"], waiting["rows_processed"]) == (
        "importing",
        "orders",
        50,
    )
    resumed = shop.post("sync")
    report = resumed.json()["data"]
    assert without_job(report) == {
        "pages": 3,
        "orders": 70,
        "customers": 0,
        "skipped": 0,
        "finished": True,
    }
    done = backfill_job(conn, shop.project)  # the same job, carried on
    assert (done["id"], done["status"], done["rows_processed"]) == (waiting["id"], "done", 120)
    assert shoptet.order_pages_requested() == [1, 2, 2, 3]
    rows = stored_orders(conn, shop.project)
    assert len(rows) == len({r["external_id"] for r in rows}) == 120


def test_a_sync_past_the_plans_contacts_is_402_and_documented(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    conn.execute(
        "insert into public.contacts (workspace_id, email)"
        " select %s, 'existing-' || n || '@example.test' from generate_series(1, 1000) n",
        (shop.user.workspace_id,),
    )
    shoptet.orders = [shoptet_order(1)]
    refused = shop.post("sync")
    assert (refused.status_code, refused.json()["error"]["code"]) == (402, "plan_limit_reached")
    assert refused.json()["error"]["details"] == {"limit": "contacts", "max": 1000}
    assert "plan_limit_reached" in documented_codes(shop.client, "sync_shoptet", 402)
    assert stored_orders(conn, shop.project) == []
    # The owner must upgrade first: the job fails with the reason, having counted nothing.
    job = backfill_job(conn, shop.project)
    assert (job["status"], job["error_code"], job["rows_processed"]) == (
        "failed",
        "plan_limit_reached",
        0,
    )


def test_later_syncs_ask_only_for_changes(shop: Shop, shoptet: ShoptetServer, conn: Conn) -> None:
    shoptet.orders = [
        shoptet_order(1, changed="2026-06-01T10:00:00+0200"),
        shoptet_order(2, changed="2026-06-02T10:00:00+0200"),
    ]
    shop.post("sync")
    shoptet.orders[0] = shoptet_order(
        1, changed="2026-06-03T09:00:00+0200", status={"id": -4, "name": "Stornována"}
    )
    shoptet.requests.clear()
    second = shop.post("sync")
    assert second.json()["data"]["orders"] == 2  # the changed one and the last one seen (>=)
    asked = shoptet.requests[0][1]["changeTimeFrom"][0]
    assert asked.startswith("2026-06-02T08:00:00")
    assert [(r["external_id"], r["status"]) for r in stored_orders(conn, shop.project)] == [
        ("2026000001", "cancelled"),
        ("2026000002", "paid"),
    ]


def test_sync_pages_through_customers_after_orders(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    shoptet.customers = {
        f"guid-{n}": {
            "guid": f"guid-{n}",
            "email": f"buyer{n}@example.test",
            "phone": None,
            "changeTime": "2026-06-01T10:00:00+0200",
            "billingAddress": {"fullName": f"Buyer {n}", "countryCode": "CZ"},
        }
        for n in range(60)
    }
    report = shop.post("sync").json()["data"]
    assert without_job(report) == {
        "pages": 3,
        "orders": 0,
        "customers": 60,
        "skipped": 0,
        "finished": True,
    }
    count = one(
        conn,
        "select count(*) from public.contact_external_ids where source = 'shoptet'"
        " and workspace_id = %s",
        (shop.user.workspace_id,),
    )
    assert count["count"] == 60


def event(kind: str, instance: str, created: str = "2026-06-01T10:06:00+0200") -> dict[str, Any]:
    return {"eshopId": 222651, "event": kind, "eventCreated": created, "eventInstance": instance}


def test_webhooks_are_verified_stored_and_applied_from_the_detail(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    shoptet.orders = [shoptet_order(7)]
    created = event("order:create", "2026000007")
    accepted = shop.webhook(created)
    replayed = shop.webhook(created)
    tampered = shop.webhook(
        created, body=json.dumps({**created, "eventInstance": "2026000008"}).encode()
    )
    forged = shop.webhook(created | {"eventCreated": "2026-06-01T11:00:00+0200"}, key="not-the-key")
    assert [accepted.json()["data"], replayed.json()["data"]] == [
        {"outcome": "accepted"},
        {"outcome": "duplicate"},
    ]
    assert [tampered.status_code, forged.status_code] == [401, 401]
    order = one(
        conn,
        "select o.total, o.status, c.email, c.phone, c.first_name,"
        " (select count(*) from public.order_items i where i.order_id = o.id) as items"
        " from public.orders o join public.contacts c on c.id = o.contact_id"
        " where o.project_id = %s",
        (shop.project,),
    )
    assert order == {
        "total": 1210,
        "status": "paid",
        "email": "customer0@example.test",
        "phone": "+420777123456",
        "first_name": "Jan",
        "items": 1,
    }
    assert shoptet.requests[-1][0] == "/api/orders/2026000007"


def test_customer_events_update_contacts(shop: Shop, shoptet: ShoptetServer, conn: Conn) -> None:
    guid = "c0ffee00-0000-4000-8000-000000000042"
    shoptet.customers[guid] = {
        "guid": guid,
        "email": "Eva@Example.TEST",
        "phone": "777 888 999",
        "billingAddress": {"fullName": "Eva Svobodová", "countryCode": "CZ"},
    }
    assert shop.webhook(event("customer:create", guid)).json()["data"]["outcome"] == "accepted"
    contact = one(
        conn,
        "select c.email, c.phone, c.last_name from public.contacts c"
        " join public.contact_external_ids x on x.contact_id = c.id"
        " where x.source = 'shoptet' and x.external_id = %s and c.workspace_id = %s",
        (guid, shop.user.workspace_id),
    )
    assert contact == {
        "email": "eva@example.test",
        "phone": "+420777888999",
        "last_name": "Svobodová",
    }


@pytest.mark.usefixtures("sole_due_events")
def test_events_that_could_not_be_applied_are_replayed_by_the_cron(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    shoptet.orders = [shoptet_order(9)]
    shoptet.failures.append(Failure("/api/orders/2026000009", 500))
    assert shop.webhook(event("order:paid", "2026000009")).json()["data"]["outcome"] == "accepted"
    assert stored_orders(conn, shop.project) == []
    # The failed first apply set the next attempt a few minutes out; let that time pass.
    conn.execute(
        "update private.webhook_events"
        " set received_at = now() - interval '10 minutes', next_attempt_at = now()"
        " where provider = 'shoptet' and event_id like %s",
        (f"{shop.project}:%",),
    )
    replay = shop.client.get(
        "/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"}
    )
    # At least: the replay applies every project's due events, other tests' left ones too.
    assert replay.json()["data"]["outcomes"].get("shoptet:applied", 0) >= 1
    assert [r["external_id"] for r in stored_orders(conn, shop.project)] == ["2026000009"]


def stored_events(conn: Conn, project: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "select status, attempts, last_error from private.webhook_events"
        " where provider = 'shoptet' and event_id like %s",
        (f"{project}:%",),
    ).fetchall()


@pytest.mark.parametrize(
    ("kind", "instance"),
    [
        ("order:create", "2026000007?page=2"),
        ("order:paid", "../eshop"),
        ("order:update", "2026000007/../../eshop"),
        ("order:create", "2026000007#"),
        ("order:create", "x" * 65),
        ("order:create", ""),
        ("customer:update", "not-a-guid"),
        ("customer:create", "c0ffee00-0000-4000-8000-000000000042/../../eshop"),
    ],
)
def test_a_signed_event_naming_no_valid_shoptet_id_is_a_422_and_never_reaches_shoptet(
    shop: Shop, shoptet: ShoptetServer, conn: Conn, kind: str, instance: str
) -> None:
    refused = shop.webhook(event(kind, instance))
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_input")
    assert [d["field"] for d in refused.json()["error"]["details"]] == ["body.eventInstance"]
    assert shoptet.requests == []
    assert stored_events(conn, shop.project) == []


def test_the_client_sends_shoptet_only_ids_of_shoptets_shape(shoptet: ShoptetServer) -> None:
    client = ShoptetClient(TOKEN, base_url=shoptet.base_url)
    refused = []
    for fetch, bad_id in (
        (client.order, "../eshop"),
        (client.order, "2026?page=2"),
        (client.order, "2026%2F..%2Feshop"),
        (client.customer, "guid-1"),
        (client.customer, "c0ffee00-0000-4000-8000-000000000042/x"),
    ):
        with pytest.raises(ShoptetError) as error:
            fetch(bad_id)
        refused.append((error.value.status, error.value.code))
    assert refused == [(422, "order_code_invalid")] * 3 + [(422, "customer_guid_invalid")] * 2
    assert shoptet.requests == []
    shoptet.orders = [shoptet_order(1, code="AB-12_x")]
    assert client.order("AB-12_x")["code"] == "AB-12_x"
    assert shoptet.requests == [("/api/orders/AB-12_x", {})]


def test_a_detail_without_its_order_is_a_typed_error_and_a_counted_attempt(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    shoptet.orders = [shoptet_order(5)]
    shoptet.hollow_orders.add("2026000005")
    with pytest.raises(ShoptetError) as malformed:
        ShoptetClient(TOKEN, base_url=shoptet.base_url).order("2026000005")
    assert (malformed.value.status, malformed.value.code) == (502, "shoptet_bad_response")
    assert shop.webhook(event("order:paid", "2026000005")).json()["data"]["outcome"] == "accepted"
    assert stored_events(conn, shop.project) == [
        {"status": "received", "attempts": 1, "last_error": "ShoptetError shoptet_bad_response"}
    ]


def store_unapplied(conn: Conn, project: uuid.UUID, body: dict[str, Any]) -> None:
    """An event stored at intake whose apply never ran (the instance stopped), due for replay."""
    key = f"{project}:{body['event']}:{body['eventInstance']}:{body['eventCreated']}"
    conn.execute("select private.record_webhook_event('shoptet', %s, %s)", (key, json.dumps(body)))
    conn.execute(
        "update private.webhook_events set received_at = now() - interval '2 minutes'"
        " where provider = 'shoptet' and event_id = %s",
        (key,),
    )


@pytest.fixture
def sole_due_events(conn: Conn, shop: Shop) -> Shop:
    """The shop, with every other project's Shoptet event in the worker's database that waits
    for the replay put off for ever: the replay applies every project's due events against this
    test's Shoptet stand-in, so another test's unapplied one would ask it for its order and
    count in the replay's answer; and it takes the 50 due longest ago, so fifty such leftovers
    ahead of this test's event left it unreplayed (proven with 51 run first)."""
    put_off_due_webhook_events(conn, ["shoptet"], f"{shop.project}:")
    return shop


def test_an_event_stored_with_a_bad_id_before_intake_checked_never_reaches_shoptet(
    sole_due_events: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    shop = sole_due_events
    store_unapplied(conn, shop.project, event("order:create", "../eshop"))
    replay = shop.client.get(
        "/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"}
    )
    assert replay.status_code == 200, replay.text
    assert replay.json()["data"]["outcomes"].get("shoptet:failed:retrying") == 1
    assert shoptet.requests == []
    assert stored_events(conn, shop.project) == [
        {"status": "received", "attempts": 1, "last_error": "ShoptetError order_code_invalid"}
    ]


def test_only_members_may_test_or_sync(
    shop: Shop, conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    viewer = add_member(conn, shop.user, "viewer")
    stranger = create_user(conn)
    codes = []
    for user in (viewer, stranger):
        other = Shop(client, jwks, user, shop.project)
        codes += [
            other.post("test").json()["error"]["code"],
            other.post("sync").json()["error"]["code"],
        ]
    assert codes == ["insufficient_role"] * 2 + ["project_not_found"] * 2


def test_the_webhook_url_is_absolute_and_never_from_the_host_header(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    headers = {**bearer(jwks, owner), "Host": "attacker.example"}
    urls = [
        client.post(
            f"/api/v1/projects/{project}/integrations/{source}/connect",
            headers=headers,
            json=body,
        ).json()["data"]["webhook_url"]
        for source, body in (
            ("shoptet", {"api_token": TOKEN}),
            ("shopify", {"webhook_secret": "shopify-secret-123"}),
        )
    ]
    assert urls == [
        f"{EDGE}/api/v1/webhooks/shoptet/{project}",
        f"{EDGE}/api/v1/webhooks/shopify/{project}",
    ]


def test_without_public_base_url_connecting_is_503_and_stores_nothing(
    conn: Conn, database_url: str, jwks: JwksServer, shoptet: ShoptetServer
) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    settings = shoptet_settings(database_url, jwks, shoptet, public_base_url=None)
    with TestClient(create_app(settings)) as unconfigured:
        answer = Shop(unconfigured, jwks, owner, project).post("connect", api_token=TOKEN)
    assert (answer.status_code, answer.json()["error"]["code"]) == (
        503,
        "public_base_url_not_configured",
    )
    stored = conn.execute(
        "select 1 from private.integrations where project_id = %s", (project,)
    ).fetchall()
    assert stored == []


@pytest.mark.parametrize(
    "token", ["123456-p-987654-tokén", "123456-p 987654", "123456-p-987654\r\nX-Evil: 1", "short"]
)
def test_a_token_that_cannot_be_a_header_is_refused_at_connect(shop: Shop, token: str) -> None:
    refused = shop.post("connect", api_token=token)
    assert refused.status_code == 422
    assert [d["field"] for d in refused.json()["error"]["details"]] == ["body.api_token"]
    assert shop.post("test").status_code == 200


def test_a_malformed_token_stored_earlier_is_a_422_not_a_crash(shop: Shop, conn: Conn) -> None:
    conn.execute(
        "update private.integrations set api_token_encrypted = %s where project_id = %s",
        (Fernet(ENCRYPTION_KEY.encode()).encrypt("tokén-ünïcode".encode()).decode(), shop.project),
    )
    answers = [shop.post("test"), shop.post("sync")]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (422, "shoptet_token_invalid")
    ] * 2


def test_credentials_the_edge_never_sealed_count_as_none(shop: Shop, conn: Conn) -> None:
    """Values members could once store through the Data API: a 401 or 409, never a 503."""
    conn.execute(
        "update private.integrations"
        " set api_token_encrypted = 'plaintext-token', webhook_secret_encrypted = %s"
        " where project_id = %s",
        (SIGNATURE_KEY, shop.project),
    )
    event = {"event": "order:create", "eventInstance": "1", "eventCreated": "2026-01-01"}
    answers = [shop.webhook(event), shop.post("test")]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (401, "signature_invalid"),
        (409, "integration_not_connected"),
    ]


def test_credentials_sealed_with_another_key_are_a_503_key_mismatch(
    shop: Shop, conn: Conn, database_url: str, jwks: JwksServer, shoptet: ShoptetServer
) -> None:
    """INTEGRATIONS_ENCRYPTION_KEY changed since connecting: every route that opens the stored
    credentials answers 503 integration_key_mismatch (the user cannot fix it; we can)."""
    settings = shoptet_settings(database_url, jwks, shoptet).model_copy(
        update={"integrations_encryption_key": SecretStr(Fernet.generate_key().decode())}
    )
    with TestClient(create_app(settings)) as rekeyed:
        moved = Shop(rekeyed, jwks, shop.user, shop.project)
        created = event("order:create", "2026000001")
        answers = [moved.post("test"), moved.post("sync"), moved.webhook(created)]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (503, "integration_key_mismatch")
    ] * 3
    assert shoptet.requests == []
    with pytest.raises(KeyMismatchError):
        SecretBox(Fernet.generate_key().decode()).open(SecretBox(ENCRYPTION_KEY).seal("token"))


def test_an_eshop_answer_of_another_shape_is_shown_as_unnamed_not_a_500(
    shop: Shop, shoptet: ShoptetServer
) -> None:
    answers = []
    for eshop in (
        {"contactInformation": ["Demo obchod"]},
        {"contactInformation": {"eshopName": 42, "url": {"href": "https://demo.example/"}}},
    ):
        shoptet.eshop = eshop
        answers.append(shop.post("test").json()["data"])
    assert answers == [{"ok": True, "eshop": {"name": None, "url": None}}] * 2


def test_a_sync_that_runs_out_of_pages_counts_both_streams_and_is_not_finished(
    shop: Shop, shoptet: ShoptetServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "SYNC_PAGES_PER_CALL", 1)
    shoptet.orders = [shoptet_order(n) for n in range(1, 61)]
    reports = [shop.post("sync").json()["data"] for _ in range(2)]
    assert reports[0]["job_id"] == reports[1]["job_id"]  # one job, carried on
    assert [without_job(report) for report in reports] == [
        {"pages": 1, "orders": 50, "customers": 0, "skipped": 0, "finished": False},
        {"pages": 1, "orders": 10, "customers": 0, "skipped": 0, "finished": False},
    ]


@contextmanager
def service_database(database_url: str) -> Iterator[Database]:
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=5)
    database.open()
    try:
        yield database
    finally:
        database.close()


def begin_job(conn: Conn, shop: Shop, kind: str) -> uuid.UUID:
    """The project's running Shoptet job of `kind`, or a new one, as its owner starts it."""
    with acting_as(conn, shop.user):
        job = one(
            conn,
            "select id from private.begin_shop_backfill(%s, 'shoptet', %s)",
            (shop.project, kind),
        )
    return uuid.UUID(str(job["id"]))


def test_a_sync_whose_time_is_spent_stops_before_a_page_it_could_not_finish_and_goes_on(
    shop: Shop, shoptet: ShoptetServer, conn: Conn, database_url: str
) -> None:
    """Each request Shoptet answers moves the injected clock a second on: with 1.5 s a call has
    room for one page (a second, as slow as the first, would end past its deadline). Each call
    writes its page, answers not finished, and the next one goes on at the next page (the
    customers after the orders' last page), nothing read, written or counted twice."""
    shoptet.orders = [shoptet_order(n) for n in range(1, 121)]
    shoptet.customers = {
        f"guid-{n}": {
            "guid": f"guid-{n}",
            "email": f"buyer{n}@example.test",
            "changeTime": "2026-06-01T10:00:00+0200",
        }
        for n in range(2)
    }
    job = begin_job(conn, shop, "backfill")

    def clock() -> float:
        return float(len(shoptet.requests))

    reports, stored = [], []
    with service_database(database_url) as database:
        client = ShoptetClient(TOKEN, base_url=shoptet.base_url)
        for _ in range(6):
            report = sync_shop(
                database, client, shop.project, job, 20, budget_seconds=1.5, clock=clock
            )
            reports.append(without_job(report.model_dump(mode="json")))
            stored.append(len(stored_orders(conn, shop.project)))
            if report.finished:
                break
        client.close()
    assert reports == [
        {"pages": 1, "orders": 50, "customers": 0, "skipped": 0, "finished": False},
        {"pages": 1, "orders": 50, "customers": 0, "skipped": 0, "finished": False},
        {"pages": 1, "orders": 20, "customers": 0, "skipped": 0, "finished": False},
        {"pages": 1, "orders": 0, "customers": 2, "skipped": 0, "finished": True},
    ]
    assert stored == [50, 100, 120, 120]
    assert shoptet.order_pages_requested() == [1, 2, 3]
    assert [path for path, _ in shoptet.requests].count("/api/customers") == 1
    job_now = backfill_job(conn, shop.project)
    assert (job_now["status"], job_now["rows_processed"], job_now["stream_records"]) == (
        "done",
        122,
        {"orders": 120, "customers": 2},
    )


def test_a_catalog_sync_whose_time_is_spent_stops_before_a_page_it_could_not_finish(
    shop: Shop, shoptet: ShoptetServer, conn: Conn, database_url: str
) -> None:
    """A catalog page is the list and a detail per product (21 requests, 21 s of the injected
    clock): with 30 s a call writes one page and leaves the next, which would end past its
    deadline, to the next call."""
    shoptet.products = [shoptet_product(n) for n in range(1, 45)]
    job = begin_job(conn, shop, "products")

    def clock() -> float:
        return float(len(shoptet.requests))

    reports = []
    with service_database(database_url) as database:
        client = ShoptetClient(TOKEN, base_url=shoptet.base_url)
        for _ in range(5):
            report = sync_catalog(
                database, client, shop.project, job, 20, budget_seconds=30, clock=clock
            )
            reports.append((report.pages, report.products, report.finished))
            if report.finished:
                break
        client.close()
    assert reports == [(1, 20, False), (1, 20, False), (1, 4, True)]
    pages = [int(q["page"][0]) for path, q in shoptet.requests if path == "/api/products"]
    assert pages == [1, 2, 3]
    assert len(shoptet_catalog(conn, shop)) == 44
    job_now = backfill_job(conn, shop.project)
    assert (job_now["status"], job_now["rows_processed"]) == ("done", 44)


def test_a_catalog_page_that_would_wait_past_its_time_for_the_catalog_lock_rolls_back(
    shop: Shop,
    shoptet: ShoptetServer,
    conn: Conn,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An import's chunk holds the project's catalog lock (released by a timer after 5 s, so a
    write that waits for it ends): a page whose call has 0.3 s left (no grace) gives up on the
    lock, writes and counts nothing, and answers not finished; the next call writes the page."""
    monkeypatch.setattr(budget, "LOCK_GRACE_SECONDS", 0.0)
    shoptet.products = [shoptet_product(n) for n in range(1, 4)]
    job = begin_job(conn, shop, "products")
    with psycopg.connect(database_url, autocommit=False) as holder:
        holder.execute(
            "select pg_advisory_xact_lock(hashtext('growthbase.project_catalog'), hashtext(%s))",
            (str(shop.project),),
        )
        timer = threading.Timer(5.0, holder.rollback)
        timer.start()
        try:
            with service_database(database_url) as database:
                client = ShoptetClient(TOKEN, base_url=shoptet.base_url)
                waited = sync_catalog(
                    database, client, shop.project, job, 20, budget_seconds=0.3, clock=lambda: 0.0
                )
                timer.cancel()
                holder.rollback()
                monkeypatch.setattr(budget, "LOCK_GRACE_SECONDS", 10.0)
                written = sync_catalog(database, client, shop.project, job, 20)
                client.close()
        finally:
            timer.cancel()
    assert (waited.pages, waited.products, waited.finished) == (0, 0, False)
    assert (written.pages, written.products, written.finished) == (1, 3, True)
    assert len(shoptet_catalog(conn, shop)) == 3
    assert backfill_job(conn, shop.project)["rows_processed"] == 3


def test_each_shoptet_request_waits_at_most_the_time_left(
    shop: Shop, shoptet: ShoptetServer, database_url: str, conn: Conn
) -> None:
    """The injected clock stands still with 3.5 s left: every request (the list's and each
    product's detail) is given 3.5 s, not the client's own 10 s."""
    shoptet.products = [shoptet_product(1)]
    job = begin_job(conn, shop, "products")
    given: list[dict[str, float]] = []
    with service_database(database_url) as database:
        client = ShoptetClient(TOKEN, base_url=shoptet.base_url)
        client.http.event_hooks["request"].append(
            lambda request: given.append(request.extensions["timeout"])
        )
        report = sync_catalog(
            database, client, shop.project, job, 20, budget_seconds=3.5, clock=lambda: 0.0
        )
        client.close()
    assert report.finished
    assert given == [{"connect": 3.5, "read": 3.5, "write": 3.5, "pool": 3.5}] * 2


def test_a_stalled_shoptet_is_cut_at_the_budget_and_the_job_waits_for_the_next_call(
    shop: Shop, shoptet: ShoptetServer, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shoptet holds its first page 5 s (the client's own timeout is 10 s); a call with a 1 s
    budget gives up on it when its time is spent, as on any unreachable Shoptet (502), having
    written nothing and leaving its job to the next call, which reads the page again."""
    monkeypatch.setattr(budget, "BUDGET_SECONDS", 1.0)
    shoptet.orders = [shoptet_order(n) for n in range(1, 61)]
    shoptet.stalls.append(Stall("/api/orders", 5.0, page=1))
    stalled = shop.post("sync")
    assert (stalled.status_code, stalled.json()["error"]["code"]) == (502, "shoptet_unavailable")
    assert stored_orders(conn, shop.project) == []
    waiting = backfill_job(conn, shop.project)
    assert (waiting["status"], waiting["rows_processed"]) == ("importing", 0)
    monkeypatch.setattr(budget, "BUDGET_SECONDS", 40.0)
    resumed = shop.post("sync").json()["data"]
    assert (resumed["job_id"], resumed["orders"], resumed["finished"]) == (
        str(waiting["id"]),
        60,
        True,
    )
    assert shoptet.order_pages_requested() == [1, 1, 2]
    assert len(stored_orders(conn, shop.project)) == 60


def test_a_page_cut_short_by_the_time_left_after_progress_answers_unfinished_not_502(
    shop: Shop, shoptet: ShoptetServer, conn: Conn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that wrote a page and then ran out of time inside the next one (its request given
    only the time left, less than the client's own 10 s) is a call out of time, not an
    unreachable Shoptet: it answers where it stands (200, `finished: false`), and the next call
    reads the page again. A Shoptet that is only slower than the time left is no error."""
    monkeypatch.setattr(budget, "BUDGET_SECONDS", 1.0)
    shoptet.orders = [shoptet_order(n) for n in range(1, 61)]
    shoptet.stalls.append(Stall("/api/orders", 5.0, page=2))
    cut = shop.post("sync")
    assert cut.status_code == 200, cut.text
    assert (cut.json()["data"]["orders"], cut.json()["data"]["finished"]) == (50, False)
    assert len(stored_orders(conn, shop.project)) == 50
    monkeypatch.setattr(budget, "BUDGET_SECONDS", 40.0)
    resumed = shop.post("sync").json()["data"]
    assert (resumed["job_id"], resumed["orders"], resumed["finished"]) == (
        cut.json()["data"]["job_id"],
        10,
        True,
    )
    assert shoptet.order_pages_requested() == [1, 2, 2]
    assert len(stored_orders(conn, shop.project)) == 60


def test_without_the_encryption_key_shops_answer_503_and_spend_no_limit(
    conn: Conn, database_url: str, jwks: JwksServer, shoptet: ShoptetServer
) -> None:
    """Nothing that needs a credential is tried (nor the plan's limit spent) without
    INTEGRATIONS_ENCRYPTION_KEY; WooCommerce's unsigned ping is still acknowledged, and a stored
    Shoptet event's apply fails with a recorded reason, to be retried."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    settings = shoptet_settings(database_url, jwks, shoptet).model_copy(
        update={"integrations_encryption_key": None}
    )
    created = event("order:create", "2026000001")
    store_unapplied(conn, project, created)
    with TestClient(create_app(settings)) as keyless:
        shop = Shop(keyless, jwks, owner, project)
        refused = [
            shop.post("connect", api_token=TOKEN),
            shop.post("test"),
            shop.post("sync"),
            keyless.post(
                f"/api/v1/projects/{project}/integrations/shopify/connect",
                headers=shop.headers,
                json={"webhook_secret": "shopify-secret-123"},
            ),
            shop.webhook(created),
        ]
        ping = keyless.post(
            f"/api/v1/webhooks/woocommerce/{project}",
            content=b"webhook_id=3",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        keyless.get("/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"})
    assert [(r.status_code, r.json()["error"]["code"]) for r in refused] == [
        (503, "provider_not_configured")
    ] * 5
    assert ping.json()["data"] == {"outcome": "ping"}
    spent = conn.execute(
        "select bucket from private.rate_limit_windows where bucket like %s", (f"%{owner.id}%",)
    ).fetchall()
    assert spent == []
    assert shoptet.requests == []
    assert stored_events(conn, project) == [
        {
            "status": "received",
            "attempts": 1,
            "last_error": "NoEncryptionKeyError provider_not_configured",
        }
    ]


def shoptet_catalog(conn: Conn, shop: Shop) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        "select p.title, p.status, p.category, p.sku, p.price, p.currency,"
        " count(v.id) as variants, sum(v.inventory) as inventory"
        " from public.products p left join public.product_variants v on v.product_id = p.id"
        " where p.project_id = %s and p.source = 'shoptet' group by p.id order by p.title",
        (shop.project,),
    ).fetchall()
    return [tuple(row.values()) for row in rows]


def test_the_catalog_is_synced_with_its_variants_and_resumes_after_a_failure(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    shoptet.products = [shoptet_product(n) for n in range(1, 45)]
    shoptet.products[0] = shoptet_product(1, variants=1, visibility="hidden")
    shoptet.products.append(shoptet_product(45, name=""))  # no name: skipped
    shoptet.failures.append(Failure("/api/products", 500, page=2))
    failed = shop.post("catalog")
    assert (failed.status_code, failed.json()["error"]["code"]) == (502, "shoptet_unavailable")
    resumed = shop.post("catalog")
    assert resumed.status_code == 200, resumed.text
    report = resumed.json()["data"]
    assert without_job(report) == {"pages": 2, "products": 24, "skipped": 1, "finished": True}
    job = backfill_job(conn, shop.project)
    assert (job["id"], job["kind"], job["source"], job["status"]) == (
        uuid.UUID(report["job_id"]),
        "products",
        "shoptet",
        "done",
    )
    assert (job["rows_processed"], job["rows_failed"], job["stream_records"]) == (
        45,
        1,
        {"products": 44},
    )
    pages = [int(q["page"][0]) for path, q in shoptet.requests if path == "/api/products"]
    assert pages == [1, 2, 2, 3]  # page 1 was written before page 2 failed
    rows = shoptet_catalog(conn, shop)
    assert len(rows) == 44
    assert rows[0] == ("Boty 1", "draft", "Obuv", "BOOT-1-42", 1100, "CZK", 1, 3)
    assert rows[1][3:] == (None, None, None, 2, 3)  # two variants: their own codes and prices
    variant = one(
        conn,
        "select v.title, v.sku, v.price, v.currency, v.status from public.product_variants v"
        " where v.external_id = 'BOOT-2-43' and v.workspace_id = %s",
        (shop.user.workspace_id,),
    )
    assert tuple(variant.values()) == ("Velikost: 43", "BOOT-2-43", 1100, "CZK", "active")
    progress = conn.execute(
        "select payload from realtime.messages where topic = %s and event = %s"
        " order by inserted_at, id",
        (f"workspace:{shop.user.workspace_id}:imports", "shop_backfill_progress"),
    ).fetchall()
    assert [p["payload"]["page"] for p in progress] == [1, 2, 3]


def test_later_runs_ask_only_for_changes_and_link_order_lines(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    shoptet.orders = [shoptet_order(1)]
    assert (
        shop.webhook(
            {
                "eshopId": 470000,
                "event": "order:create",
                "eventCreated": "2026-06-01T10:06:00+0200",
                "eventInstance": "2026000001",
            }
        ).status_code
        == 200
    )
    shoptet.products = [shoptet_product(1, changed="2026-06-01T10:00:00+0200", variants=1)]
    shoptet.products[0]["variants"][0]["code"] = "BOOT-42"  # the order's line's code
    assert shop.post("catalog").json()["data"]["products"] == 1
    linked = one(
        conn,
        "select count(i.variant_id) as n from public.order_items i join public.orders o"
        " on o.id = i.order_id where o.project_id = %s and i.sku = 'BOOT-42'",
        (shop.project,),
    )
    assert linked["n"] == 1
    shoptet.products.append(shoptet_product(2, changed="2026-06-02T10:00:00+0200"))
    shoptet.requests.clear()
    second = shop.post("catalog").json()["data"]
    assert second["products"] == 2  # the new one and the last one seen (>=)
    asked = shoptet.requests[0][1]["changeTimeFrom"][0]
    assert asked.startswith("2026-06-01T08:00:00")
    assert len(shoptet_catalog(conn, shop)) == 2


def test_a_sync_page_with_bad_orders_writes_the_others_and_counts_them_skipped(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    """An order without its code, and one whose total is negative, are left out and counted;
    the page's other orders are written and the sync finishes."""
    shoptet.orders = [shoptet_order(n) for n in range(1, 6)]
    del shoptet.orders[1]["code"]
    shoptet.orders[3]["price"] = {**shoptet.orders[3]["price"], "withVat": "-1210.00"}
    report = shop.post("sync").json()["data"]
    assert without_job(report) == {
        "pages": 2,
        "orders": 3,
        "customers": 0,
        "skipped": 2,
        "finished": True,
    }
    assert [o["external_id"] for o in stored_orders(conn, shop.project)] == [
        "2026000001",
        "2026000003",
        "2026000005",
    ]
    job = backfill_job(conn, shop.project)
    assert (job["status"], job["rows_processed"], job["rows_failed"]) == ("done", 5, 2)
    assert job["stream_records"] == {"orders": 3, "customers": 0}


def test_a_webhook_order_that_cannot_be_stored_is_recorded_once_not_retried(
    shop: Shop, shoptet: ShoptetServer, conn: Conn
) -> None:
    """An order without its creation time, or with a negative total, would fail the same way
    on every replay: its event is finished (`unmappable`, `skipped`), not retried."""
    shoptet.orders = [shoptet_order(11), shoptet_order(12)]
    del shoptet.orders[0]["creationTime"]
    shoptet.orders[1]["price"] = {**shoptet.orders[1]["price"], "withVat": "-1210.00"}
    for code in ("2026000011", "2026000012"):
        answer = shop.webhook(event("order:create", code))
        assert answer.json()["data"] == {"outcome": "accepted"}
    events = conn.execute(
        "select outcome, attempts from private.webhook_events"
        " where provider = 'shoptet' and event_id like %s order by outcome",
        (f"{shop.project}:%",),
    ).fetchall()
    assert [tuple(e.values()) for e in events] == [("skipped", 0), ("unmappable", 0)]
    assert stored_orders(conn, shop.project) == []
