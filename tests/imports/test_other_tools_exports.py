"""Files as other tools export them, imported through the edge as they are: Shopify's order
export (one row per line item, the statuses in Shopify's words; its orders the very records the
connected store's webhooks and backfill write), contact lists from Mailchimp,
Shopify and the like (their own column names; beside our own column for a field, another
tool's name for it stays an attribute), and a header naming one field twice refused by both its
names."""

import csv
import io
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from api.app import create_app
from api.core.db import Database, become_service
from api.core.settings import Settings
from api.imports.jobs import Runner, step
from api.shops.orders import from_shopify
from tests.factories.commerce import add_product, add_variant
from tests.factories.workspaces import (
    User,
    acting_as,
    create_user,
    fund,
    make_project,
    wait_until_blocked,
)
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = Settings(database_url=SecretStr(database_url), supabase_url=jwks.base_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def owner(conn: Conn) -> User:
    user = create_user(conn)
    fund(conn, user, 0, "team")
    return user


def call(
    client: TestClient, jwks: JwksServer, user: User, method: str, path: str, **kw: Any
) -> Response:
    headers = {"Authorization": f"Bearer {jwks.sign(jwks.claims(user.id))}"}
    return client.request(method, path, headers={**headers, **kw.pop("headers", {})}, **kw)


def upload(
    client: TestClient,
    jwks: JwksServer,
    user: User,
    kind: str,
    data: bytes,
    file_name: str,
    project: uuid.UUID | None = None,
) -> Response:
    """Creates the job and sends the file as part 1: the answer to the part (the header is
    checked there)."""
    created = call(
        client,
        jwks,
        user,
        "POST",
        "/api/v1/imports",
        json={
            "workspace_id": str(user.workspace_id),
            "kind": kind,
            "size_bytes": len(data),
            "file_name": file_name,
            **({"project_id": str(project)} if project else {}),
        },
    )
    assert created.status_code == 201, created.json()
    job = created.json()["data"]["id"]
    return call(
        client,
        jwks,
        user,
        "PUT",
        f"/api/v1/imports/{job}/parts/1",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )


def imported(
    client: TestClient,
    jwks: JwksServer,
    user: User,
    kind: str,
    data: bytes,
    file_name: str,
    project: uuid.UUID | None = None,
) -> dict[str, Any]:
    sent = upload(client, jwks, user, kind, data, file_name, project)
    assert sent.status_code == 200, sent.json()
    job = sent.json()["data"]["id"]
    done = call(client, jwks, user, "POST", f"/api/v1/imports/{job}/commit")
    assert done.status_code == 200, done.json()
    report = dict(done.json()["data"])
    errors = call(client, jwks, user, "GET", f"/api/v1/imports/{job}/errors.csv")
    report["errors"] = list(csv.reader(io.StringIO(errors.text)))[1:]
    return report


# Shopify's order export (Orders → Export → CSV), its columns in its order, cut to the ones
# that matter here plus a few it writes that we skip.
SHOPIFY_COLUMNS = [
    "Name", "Email", "Financial Status", "Paid at", "Fulfillment Status", "Fulfilled at",
    "Accepts Marketing", "Currency", "Subtotal", "Shipping", "Taxes", "Total", "Discount Code",
    "Discount Amount", "Shipping Method", "Created at", "Lineitem quantity", "Lineitem name",
    "Lineitem price", "Lineitem compare at price", "Lineitem sku", "Lineitem requires shipping",
    "Lineitem taxable", "Lineitem fulfillment status", "Billing Name", "Billing Street",
    "Billing City", "Billing Zip", "Billing Province", "Billing Country", "Billing Phone",
    "Shipping Name", "Notes", "Cancelled at", "Payment Method", "Refunded Amount", "Vendor",
    "Id", "Tags", "Risk Level", "Source", "Tax 1 Name", "Tax 1 Value", "Phone",
]  # fmt: skip


def shopify_order(
    name: str,
    email: str,
    financial: str,
    fulfillment: str,
    total: str,
    created: str,
    lines: list[tuple[int, str, str, str]],
    *,
    billing_name: str = "",
    cancelled: str = "",
    phone: str = "",
    repeats_date: bool = True,
) -> list[dict[str, str]]:
    """An order's rows as Shopify writes them: the first with the order, its customer and its
    first line; each further line on a row of its own with the order's name, email and date."""
    first = {
        "Name": name,
        "Email": email,
        "Financial Status": financial,
        "Paid at": created if financial == "paid" else "",
        "Fulfillment Status": fulfillment,
        "Accepts Marketing": "no",
        "Currency": "EUR",
        "Subtotal": total,
        "Shipping": "0.00",
        "Taxes": "0.00",
        "Total": total,
        "Discount Amount": "0.00",
        "Shipping Method": "Standard",
        "Created at": created,
        "Billing Name": billing_name,
        "Billing Street": "Masarykova 1",
        "Billing City": "Brno",
        "Billing Zip": "'60200",
        "Billing Country": "CZ",
        "Cancelled at": cancelled,
        "Payment Method": "Shopify Payments",
        "Refunded Amount": "0.00",
        "Id": str(5000 + int(name[1:])),
        "Risk Level": "Low",
        "Source": "web",
        "Tax 1 Name": "VAT 21%",
        "Tax 1 Value": "0.00",
        "Phone": phone,
    }
    rows = []
    for n, (quantity, title, price, sku) in enumerate(lines):
        row = (
            first
            if n == 0
            else {"Name": name, "Email": email, "Created at": created if repeats_date else ""}
        )
        rows.append(
            {
                **row,
                "Lineitem quantity": str(quantity),
                "Lineitem name": title,
                "Lineitem price": price,
                "Lineitem compare at price": "",
                "Lineitem sku": sku,
                "Lineitem requires shipping": "true",
                "Lineitem taxable": "true",
                "Lineitem fulfillment status": fulfillment or "pending",
                "Vendor": "Kavárna",
            }
        )
    return rows


def shopify_export(without: tuple[str, ...] = ()) -> bytes:
    rows = [
        *shopify_order(
            "#1001", "jana@example.test", "paid", "fulfilled", "45.00",
            "2026-03-01 10:22:33 +0100",
            [(2, "Mug", "10.00", "MUG-1"), (1, "Tee - M", "25.00", "TEE-M")],
            billing_name="Jana Nováková", phone="+420 603 123 456",
        ),
        *shopify_order(
            "#1002", "petr@example.test", "partially_paid", "", "12.50",
            "2026-03-02 09:00:00 +0100", [(1, "Beans 250 g", "12.50", "BEAN-250")],
            billing_name="Petr Svoboda",
        ),
        *shopify_order(
            "#1003", "eva@example.test", "partially_refunded", "", "31.00",
            "2026-03-03 18:30:00 +0100",
            [(1, "Mug", "10.00", "MUG-1"), (1, "Beans 250 g", "12.50", "BEAN-250"),
             (1, "Filter", "8.50", "")],
            billing_name="Eva Dvořák", repeats_date=False,
        ),
        *shopify_order(
            "#1004", "petr@example.test", "voided", "", "10.00", "2026-03-04 08:00:00 +0100",
            [(1, "Mug", "10.00", "MUG-1")], cancelled="2026-03-04 09:00:00 +0100",
        ),
        *shopify_order(
            "#1005", "jana@example.test", "refunded", "", "25.00", "2026-03-05 08:00:00 +0100",
            [(1, "Tee - M", "25.00", "TEE-M")],
        ),
        *shopify_order(
            "#1006", "eva@example.test", "paid", "", "20.00", "2026-03-06 08:00:00 +0100",
            [(2, "Mug", "10.00", "MUG-1")], cancelled="2026-03-06 10:00:00 +0100",
        ),
    ]  # fmt: skip
    out = io.StringIO()
    columns = [name for name in SHOPIFY_COLUMNS if name not in without]
    writer = csv.DictWriter(out, columns, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def orders_and_lines(conn: Conn, project: uuid.UUID) -> dict[str, Any]:
    orders = conn.execute(
        "select o.external_id, o.source, o.status, o.total, o.currency, o.placed_at, c.email,"
        " (select array_agg((i.name, i.sku, i.quantity, i.unit_price, i.id)::text order by i.id)"
        "  from public.order_items i where i.order_id = o.id) as lines, o.updated_at"
        " from public.orders o left join public.contacts c on c.id = o.contact_id"
        " where o.project_id = %s",
        (project,),
    ).fetchall()
    return {row["external_id"]: row for row in orders}


def test_a_shopify_order_export_imports_its_orders_lines_statuses_and_customers(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """Shopify's export as downloaded: dozens of columns (those we do not read are skipped),
    `#1001` as the order, one row per line item, the order's totals and customer on its first
    row only, Shopify's financial status with its fulfilment and cancellation made into ours
    (what counts as revenue: paid and fulfilled). Each order is the store's: source shopify, its
    `Id` (on its first row only) the external id, as the store's webhooks write it. Importing it
    again changes nothing; the export without its `Id` column imports as before (`#1001`, csv),
    and those orders become the store's when the export is imported with its `Id`."""
    project = make_project(conn, owner)
    data = shopify_export()
    report = imported(client, jwks, owner, "orders", data, "orders_export_1.csv", project)
    assert report["errors"] == []
    assert (report["status"], report["rows_total"], report["created"]) == ("done", 9, 6)
    orders = orders_and_lines(conn, project)
    assert {i: (o["source"], o["status"], o["total"], o["email"]) for i, o in orders.items()} == {
        "6001": ("shopify", "fulfilled", Decimal("45.00"), "jana@example.test"),
        "6002": ("shopify", "pending", Decimal("12.50"), "petr@example.test"),
        "6003": ("shopify", "paid", Decimal("31.00"), "eva@example.test"),
        "6004": ("shopify", "cancelled", Decimal("10.00"), "petr@example.test"),
        "6005": ("shopify", "refunded", Decimal("25.00"), "jana@example.test"),
        "6006": ("shopify", "cancelled", Decimal("20.00"), "eva@example.test"),
    }
    assert orders["6001"]["placed_at"] == datetime(2026, 3, 1, 9, 22, 33, tzinfo=UTC)
    assert [line.rsplit(",", 1)[0] for line in orders["6001"]["lines"]] == [
        "(Mug,MUG-1,2.000,10.00",
        '("Tee - M",TEE-M,1.000,25.00',
    ]
    assert [line.rsplit(",", 1)[0] for line in orders["6003"]["lines"]] == [
        "(Mug,MUG-1,1.000,10.00",
        '("Beans 250 g",BEAN-250,1.000,12.50',
        "(Filter,,1.000,8.50",
    ]
    people = conn.execute(
        "select email, first_name, last_name, phone from public.contacts"
        " where workspace_id = %s order by email",
        (owner.workspace_id,),
    ).fetchall()
    assert [tuple(p.values()) for p in people] == [
        ("eva@example.test", "Eva", "Dvořák", None),
        ("jana@example.test", "Jana", "Nováková", "+420603123456"),
        ("petr@example.test", "Petr", "Svoboda", None),
    ]
    again = imported(client, jwks, owner, "orders", data, "orders_export_1.csv", project)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 6)
    assert orders_and_lines(conn, project) == orders

    other = create_user(conn)
    fund(conn, other, 0, "team")
    elsewhere = make_project(conn, other)
    plain = shopify_export(without=("Id",))
    report = imported(client, jwks, other, "orders", plain, "orders_export_1.csv", elsewhere)
    assert (report["status"], report["created"], report["errors"]) == ("done", 6, [])
    plain_orders = orders_and_lines(conn, elsewhere)
    assert {(i, o["source"]) for i, o in plain_orders.items()} == {
        (f"#100{n}", "csv") for n in range(1, 7)
    }
    # The export with its Id, imported again: the same orders, now the store's.
    report = imported(client, jwks, other, "orders", data, "orders_export_1.csv", elsewhere)
    assert (report["created"], report["updated"], report["unchanged"]) == (0, 0, 6)
    assert {(i, o["source"]) for i, o in orders_and_lines(conn, elsewhere).items()} == {
        (f"600{n}", "shopify") for n in range(1, 7)
    }


def test_an_export_with_id_takes_over_only_its_own_projects_orders_by_name(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """Another project's csv orders that happen to share the export's Names (another store's
    `#1001`) are not this store's: they stay as they are, and the export brings its own."""
    other_tool = make_project(conn, owner)
    plain = shopify_export(without=("Id",))
    report = imported(client, jwks, owner, "orders", plain, "other.csv", other_tool)
    assert (report["status"], report["created"], report["errors"]) == ("done", 6, [])
    before = orders_and_lines(conn, other_tool)
    store = make_project(conn, owner)
    report = imported(client, jwks, owner, "orders", shopify_export(), "orders.csv", store)
    assert (report["status"], report["created"], report["errors"]) == ("done", 6, [])
    assert orders_and_lines(conn, other_tool) == before
    assert {(i, o["source"]) for i, o in orders_and_lines(conn, store).items()} == {
        (f"600{n}", "shopify") for n in range(1, 7)
    }


def test_an_order_the_store_writes_while_the_export_takes_over_its_names_is_skipped(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, database_url: str
) -> None:
    """The store's backfill writes order 6001 between the validation's look for it and its
    taking over `#1001`: the validation goes on (the store keeps 6001, the other orders become
    the store's), it does not fail on the store's key."""
    project = make_project(conn, owner)
    plain = shopify_export(without=("Id",))
    report = imported(client, jwks, owner, "orders", plain, "history.csv", project)
    assert (report["status"], report["created"], report["errors"]) == ("done", 6, [])
    sent = upload(client, jwks, owner, "orders", shopify_export(), "o.csv", project)
    assert sent.status_code == 200, sent.json()
    job = uuid.UUID(sent.json()["data"]["id"])
    with acting_as(conn, owner):
        conn.execute("select private.commit_import_job(%s)", (job,))
    database = Database(database_url, pool_mode="session", max_size=1, timeout_seconds=10)
    database.open()
    runner = Runner(database, None)
    loaded = "select load_offset >= size_bytes as done from public.import_jobs where id = %s"
    while not conn.execute(loaded, (job,)).fetchone()["done"]:
        step(runner, job, deadline=float("inf"))
    with (
        psycopg.connect(database_url, row_factory=dict_row) as store,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as validator,
        ThreadPoolExecutor(1) as pool,
    ):
        store.execute(
            "insert into public.orders (workspace_id, project_id, source, external_id, status,"
            " placed_at, total, currency, base_total) values (%s, %s, 'shopify', '6001', 'paid',"
            " '2026-03-01T09:22:33Z', 45, 'EUR', 45)",
            (owner.workspace_id, project),
        )
        pid = validator.info.backend_pid
        validated = pool.submit(
            lambda: validator.execute(
                "select status from private.validate_orders_import(%s)", (job,)
            ).fetchone()
        )
        wait_until_blocked(conn, pid)
        store.commit()
        assert validated.result() == {"status": "importing"}
    try:
        while (stepped := step(runner, job, deadline=float("inf"))) is not None:
            if stepped["status"] == "importing":
                break
        status = "importing"
        while status == "importing":
            with database.as_service() as worker:
                row = worker.execute(
                    "select status from private.import_orders_chunk(%s, 100)", (job,)
                ).fetchone()
                assert row is not None
                status = row["status"]
    finally:
        database.close()
    assert status == "done"
    orders = orders_and_lines(conn, project)
    # `#1001` the store already had stays twice, as any order it wrote first.
    assert {(i, o["source"]) for i, o in orders.items()} == {
        ("#1001", "csv"),
        *((f"600{n}", "shopify") for n in range(1, 7)),
    }


# Shopify's order 6001 (`#1001` in the export) as its webhook (orders/updated) and the Admin
# API's backfill page send it: fulfilled, its second line's title without the variant.
ORDER_6001 = {
    "id": 6001,
    "name": "#1001",
    "created_at": "2026-03-01T10:22:33+01:00",
    "total_price": "45.00",
    "currency": "EUR",
    "financial_status": "paid",
    "fulfillment_status": "fulfilled",
    "customer": {"id": 901, "email": "jana@example.test", "first_name": "Jana"},
    "line_items": [
        {"title": "Mug", "sku": "MUG-1", "quantity": 2, "price": "10.00"},
        {"title": "Tee", "sku": "TEE-M", "quantity": 1, "price": "25.00"},
    ],
}


def from_the_store(conn: Conn, project: uuid.UUID, orders: list[dict[str, Any]]) -> None:
    """What the store's webhook and backfill write: Shopify's orders mapped by the edge, then
    private.upsert_orders for the store's project."""
    with conn.transaction():
        become_service(conn)
        conn.execute(
            "select private.upsert_orders(%s, 'shopify', %s)",
            (project, Jsonb([from_shopify(order) for order in orders])),
        )
    conn.execute("reset role")


def shop_view(conn: Conn, user: User) -> dict[str, Any]:
    """What the shop owner sees of the workspace: each order (its project, status, total and
    lines) and Jana's customer facts."""
    orders = conn.execute(
        "select o.source, o.external_id, o.project_id, o.status, o.total,"
        " (select array_agg((i.sku, i.quantity, i.unit_price)::text order by i.sku)"
        "  from public.order_items i where i.order_id = o.id) as lines"
        " from public.orders o where o.workspace_id = %s order by o.external_id",
        (user.workspace_id,),
    ).fetchall()
    facts = conn.execute(
        "select f.orders_count, f.revenue from public.customer_facts f"
        " join public.contacts c on c.id = f.contact_id"
        " where f.workspace_id = %s and c.email = 'jana@example.test'",
        (user.workspace_id,),
    ).fetchone()
    return {"orders": [dict(o) for o in orders], "jana": dict(facts) if facts else None}


def test_an_imported_export_and_the_connected_store_keep_one_order_in_either_order(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """History imported into the store's project, the store connected there (its webhooks and
    backfill): the store's copy of order 6001 updates the imported order (one order; its lines
    replaced, not added), and a second import changes it back; Jana's facts (RFM) count it once.
    The other way round, a store's order imported later is updated, not stored again. Orders
    are their project's: the export imported into another project is that project's copy."""
    store = make_project(conn, owner, "Store")
    data = shopify_export()
    imported(client, jwks, owner, "orders", data, "orders_export_1.csv", store)
    before = shop_view(conn, owner)
    assert len(before["orders"]) == 6
    assert before["jana"] == {"orders_count": 1, "revenue": Decimal("45.00")}

    from_the_store(conn, store, [ORDER_6001])
    after = shop_view(conn, owner)
    assert after == before
    assert [o["project_id"] for o in after["orders"]] == [store] * 6

    # The store names the line `Tee`, the export `Tee - M`: the import writes its name again.
    again = imported(client, jwks, owner, "orders", data, "orders_export_1.csv", store)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 1, 5)
    assert shop_view(conn, owner) == before

    other = create_user(conn)
    fund(conn, other, 0, "team")
    own_store = make_project(conn, other, "Store")
    from_the_store(conn, own_store, [ORDER_6001, {**ORDER_6001, "id": 6005, "name": "#1005"}])
    report = imported(client, jwks, other, "orders", data, "orders_export_1.csv", own_store)
    # 6001's line name and 6005's status (refunded since) are the export's.
    assert (report["created"], report["updated"], report["unchanged"]) == (4, 2, 0)
    view = shop_view(conn, other)
    assert [(o["external_id"], o["project_id"]) for o in view["orders"]] == [
        (f"600{n}", own_store) for n in range(1, 7)
    ]
    assert view["orders"][4]["status"] == "refunded"
    assert view["jana"] == {"orders_count": 1, "revenue": Decimal("45.00")}

    # Into another project the export brings that project's own orders; the store's stay.
    history = make_project(conn, other, "History")
    report = imported(client, jwks, other, "orders", data, "orders_export_1.csv", history)
    assert (report["created"], report["updated"], report["unchanged"]) == (6, 0, 0)
    stores = [o for o in shop_view(conn, other)["orders"] if o["project_id"] == own_store]
    assert stores == view["orders"]


def store_lines(conn: Conn, user: User) -> dict[str, Any]:
    """Each line of the workspace's order 6001: its name and the product and variant it counts
    for in product analytics."""
    rows = conn.execute(
        "select i.name, i.product_id, i.variant_id from public.order_items i"
        " join public.orders o on o.id = i.order_id"
        " where o.workspace_id = %s and o.source = 'shopify' and o.external_id = '6001'",
        (user.workspace_id,),
    ).fetchall()
    return {r["name"]: (r["product_id"], r["variant_id"]) for r in rows}


def test_the_export_keeps_the_stores_lines_and_links_its_projects_lines(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """An order the store wrote with Shopify's product and variant ids keeps its lines when the
    export (no ids, its own line names) is imported over it: its Tee, which has no SKU, still
    counts for the Tee. An order whose lines the export does replace (no ids) is linked by the
    store's catalog."""
    store = make_project(conn, owner, "Store")
    tee = add_product(conn, owner.workspace_id, store, "7001", "Tee")
    medium = add_variant(conn, owner.workspace_id, tee, "8001")
    line = {"title": "Tee", "quantity": 1, "price": "25.00", "product_id": 7001, "variant_id": 8001}
    from_the_store(conn, store, [{**ORDER_6001, "line_items": [ORDER_6001["line_items"][0], line]}])
    assert store_lines(conn, owner)["Tee"] == (tee, medium)

    imported(client, jwks, owner, "orders", shopify_export(), "orders_export_1.csv", store)
    assert store_lines(conn, owner) == {"Mug": (None, None), "Tee": (tee, medium)}

    # A store without ids on its lines (SKUs only): the export's lines replace them, and they
    # are linked by the store's catalog, not left unlinked.
    other = create_user(conn)
    fund(conn, other, 0, "team")
    own_store = make_project(conn, other, "Store")
    mug = add_product(conn, other.workspace_id, own_store, "7002", "Mug", sku="MUG-1")
    from_the_store(conn, own_store, [ORDER_6001])
    imported(client, jwks, other, "orders", shopify_export(), "orders_export_1.csv", own_store)
    assert store_lines(conn, other) == {"Mug": (mug, None), "Tee - M": (None, None)}


def test_parts_of_one_record_keep_each_shopify_order_whole(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, database_url: str
) -> None:
    """Merged in parts of one record each (a part ends after its last order's last line): an
    order's rows after its first, without the Id, still go to the order of that Id."""
    project = make_project(conn, owner)
    sent = upload(client, jwks, owner, "orders", shopify_export(), "o.csv", project)
    assert sent.status_code == 200, sent.json()
    job = uuid.UUID(sent.json()["data"]["id"])
    with acting_as(conn, owner):
        conn.execute("select private.commit_import_job(%s)", (job,))
    database = Database(database_url, pool_mode="session", max_size=1, timeout_seconds=10)
    database.open()
    try:
        runner = Runner(database, None)
        while (stepped := step(runner, job, deadline=float("inf"))) is not None:
            if stepped["status"] == "importing":
                break
        status = "importing"
        while status == "importing":
            with database.as_service() as worker:
                row = worker.execute(
                    "select status from private.import_orders_chunk(%s, 1)", (job,)
                ).fetchone()
                assert row is not None
                status = row["status"]
    finally:
        database.close()
    orders = orders_and_lines(conn, project)
    assert {i: (o["source"], len(o["lines"])) for i, o in orders.items()} == {
        "6001": ("shopify", 2),
        "6002": ("shopify", 1),
        "6003": ("shopify", 3),
        "6004": ("shopify", 1),
        "6005": ("shopify", 1),
        "6006": ("shopify", 1),
    }


def test_a_shopify_orders_line_that_turns_up_later_is_reported_by_the_orders_id(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """A line of #1001 moved below #1002 (a sorted spreadsheet) has no Id of its own: it is
    reported as a line of order 6001 that is not with the others; 6001 keeps its first line."""
    project = make_project(conn, owner)
    header, *rows = shopify_export().decode().splitlines()
    rows[1], rows[2] = rows[2], rows[1]
    data = "\n".join([header, *rows, ""]).encode()
    report = imported(client, jwks, owner, "orders", data, "o.csv", project)
    assert report["errors"] == [
        ["4", "order_id", "the lines of order 6001 must be consecutive; it started on line 2"]
    ]
    orders = orders_and_lines(conn, project)
    assert (len(orders), len(orders["6001"]["lines"])) == (6, 1)


def test_an_order_whose_first_row_has_no_id_is_reported_not_stored_under_its_name(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """Shopify writes an order's Id on its first row: an order without it there (a row cut from
    the file, an edited Id) is reported on each of its rows, the other orders imported."""
    project = make_project(conn, owner)
    lines = shopify_export().decode().splitlines()
    header = lines[0].split(",")
    rows = list(csv.reader(lines[1:]))
    rows[0][header.index("Id")] = ""
    rows[3][header.index("Id")] = "6.00E+03"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    report = imported(client, jwks, owner, "orders", out.getvalue().encode(), "o.csv", project)
    assert (report["status"], report["created"], report["rows_failed"]) == ("done", 4, 5)
    no_id = "order #1001: Id is empty on its first line (line 2)"
    not_shopify = "order #1003: Id must be Shopify's order id, a whole number (line 5)"
    assert report["errors"] == [
        ["2", "order_id", no_id],
        ["3", "order_id", no_id],
        ["5", "order_id", not_shopify],
        ["6", "order_id", not_shopify],
        ["7", "order_id", not_shopify],
    ]
    assert set(orders_and_lines(conn, project)) == {"6002", "6004", "6005", "6006"}


def file_of(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


CONTACT_EXPORTS = {
    # Mailchimp's audience export: its tags quoted inside the field.
    "mailchimp": (
        [
            ["Email Address", "First Name", "Last Name", "Phone Number", "MEMBER_RATING", "TAGS"],
            ["ann@example.test", "Ann", "Lee", "+420 603 123 456", "2", '"VIP","Customer"'],
        ],
        {
            "first_name": "Ann",
            "last_name": "Lee",
            "phone": "+420603123456",
            "tags": ["Customer", "VIP"],
        },
        {"MEMBER_RATING": "2"},
        "unknown",
    ),
    # Shopify's customer export: a phone behind an apostrophe (for spreadsheets), the country's
    # code for a national number, marketing consent as yes or no.
    "shopify": (
        [
            ["First Name", "Last Name", "Email", "Accepts Email Marketing",
             "Default Address Country Code", "Phone", "Accepts SMS Marketing", "Tags"],
            ["Ann", "Lee", "ann@example.test", "yes", "CZ", "'603 123 456", "no", "vip"],
        ],
        {"first_name": "Ann", "last_name": "Lee", "phone": "+420603123456", "tags": ["vip"]},
        # The country's code reads the phone and is kept, as it was before aliases.
        {"Accepts SMS Marketing": "no", "Default Address Country Code": "CZ"},
        "granted",
    ),
    # What people type, and WooCommerce's one name column.
    "typed": (
        [["E-mail", "Name", "Mobile"], ["ann@example.test", "Ann Marie Lee", "+420603123456"]],
        {"first_name": "Ann", "last_name": "Marie Lee", "phone": "+420603123456", "tags": []},
        {},
        "unknown",
    ),
}  # fmt: skip


@pytest.mark.parametrize("tool", list(CONTACT_EXPORTS))
def test_a_contact_list_from_another_tool_imports_under_its_own_column_names(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, tool: str
) -> None:
    rows, fields, attributes, consent = CONTACT_EXPORTS[tool]
    report = imported(client, jwks, owner, "contacts", file_of(rows), f"{tool}.csv")
    assert (report["status"], report["created"], report["errors"]) == ("done", 1, [])
    ann = conn.execute(
        "select first_name, last_name, phone, tags, attributes, consent_state, consent_source"
        " from public.contacts where workspace_id = %s and email = 'ann@example.test'",
        (owner.workspace_id,),
    ).fetchone()
    assert ann is not None
    assert {name: ann[name] for name in fields} == fields
    assert ann["attributes"] == attributes
    assert (ann["consent_state"], ann["consent_source"]) == (
        consent,
        f"import: {tool}.csv" if consent != "unknown" else None,
    )


# Contact files that imported before aliases: a column another tool names like one of ours is
# still the attribute it was when our own column for that field is there too.
OWN_COLUMN_FIRST: dict[str, tuple[list[list[str]], dict[str, Any], dict[str, str]]] = {
    "a mobile beside the phone": (
        [["email", "first_name", "last_name", "phone", "mobile"],
         ["ann@example.test", "Ann", "Lee", "+420603123456", "+420777000111"]],
        {"first_name": "Ann", "last_name": "Lee", "phone": "+420603123456"},
        {"mobile": "+420777000111"},
    ),
    "a name beside first and last name": (
        [["email", "first_name", "last_name", "name"],
         ["ann@example.test", "Ann", "Lee", "Ann M. Lee"]],
        {"first_name": "Ann", "last_name": "Lee"},
        {"name": "Ann M. Lee"},
    ),
    "a tag beside the tags": (
        [["email", "tags", "tag"], ["ann@example.test", "vip", "gold"]],
        {"tags": ["vip"]},
        {"tag": "gold"},
    ),
    "a mail beside the email": (
        [["email", "Mail"], ["ann@example.test", "ann@work.test"]],
        {"email": "ann@example.test"},
        {"Mail": "ann@work.test"},
    ),
    "a country code beside the phone": (
        [["email", "Country Code", "phone"], ["ann@example.test", "CZ", "+420603123456"]],
        {"phone": "+420603123456"},
        {"Country Code": "CZ"},
    ),
}  # fmt: skip


# Contact files that imported before aliases import still: a full name ranks below first and
# last name (by any name), two aliases tied for a field stay attributes, and an aliased phone
# that is not a phone stays the attribute it was instead of refusing the row.
BEFORE_ALIASES: dict[str, tuple[list[list[str]], dict[str, Any], dict[str, str]]] = {
    "a full name beside First Name and Last Name": (
        [["Email", "First Name", "Last Name", "Full Name"],
         ["ann@example.test", "Ann", "Lee", "Ann M. Lee"]],
        {"first_name": "Ann", "last_name": "Lee"},
        {"Full Name": "Ann M. Lee"},
    ),
    "a full_name beside first_name and last_name": (
        [["email", "first_name", "last_name", "full_name"],
         ["ann@example.test", "Ann", "Lee", "Ann M. Lee"]],
        {"first_name": "Ann", "last_name": "Lee"},
        {"full_name": "Ann M. Lee"},
    ),
    "a Full-Name beside the last name": (
        [["email", "last_name", "Full-Name"], ["ann@example.test", "Lee", "Ann M. Lee"]],
        {"first_name": None, "last_name": "Lee"},
        {"Full-Name": "Ann M. Lee"},
    ),
    "a name beside Firstname and Surname": (
        [["email", "Firstname", "Surname", "Name"],
         ["ann@example.test", "Ann", "Lee", "Ann M. Lee"]],
        {"first_name": "Ann", "last_name": "Lee"},
        {"Name": "Ann M. Lee"},
    ),
    "a phone number and a mobile": (
        [["email", "Phone Number", "Mobile"],
         ["ann@example.test", "+420603123456", "+420777000111"]],
        {"phone": None},
        {"Phone Number": "+420603123456", "Mobile": "+420777000111"},
    ),
    "two aliases of the first name": (
        [["email", "FNAME", "Given Name"], ["ann@example.test", "Ann", "Annie"]],
        {"first_name": None},
        {"FNAME": "Ann", "Given Name": "Annie"},
    ),
    "a mobile that is not a phone": (
        [["email", "Mobile"], ["ann@example.test", "n/a"]],
        {"phone": None},
        {"Mobile": "n/a"},
    ),
    "a national mobile with no country": (
        [["email", "Mobile"], ["ann@example.test", "603 123 456"]],
        {"phone": None},
        {"Mobile": "603 123 456"},
    ),
}  # fmt: skip


# Another tool's name for a field was an attribute before aliases, and its row imported whatever
# the value: a value our checks refuse under that name is kept as the attribute under the
# column's header (the field stays empty) and the row imports; a value they take is not kept.
REFUSED_UNDER_ANOTHER_NAME: dict[str, tuple[list[list[str]], dict[str, Any], dict[str, str]]] = {
    "a Firstname over 200 characters": (
        [["email", "Firstname", "Surname"], ["ann@example.test", "A" * 201, "Lee"]],
        {"first_name": None, "last_name": "Lee"},
        {"Firstname": "A" * 201},
    ),
    "a Surname over 200 characters": (
        [["email", "Firstname", "Surname"], ["ann@example.test", "Ann", "L" * 201]],
        {"first_name": "Ann", "last_name": None},
        {"Surname": "L" * 201},
    ),
    "a Customer Name whose last name is over 200 characters": (
        [["email", "Customer Name"], ["ann@example.test", " Ann  " + "L" * 201]],
        {"first_name": None, "last_name": None},
        {"Customer Name": "Ann  " + "L" * 201},
    ),
    "a Tag over 100 characters": (
        [["email", "Tag"], ["ann@example.test", "vip;" + "t" * 101]],
        {"tags": []},
        {"Tag": "vip;" + "t" * 101},
    ),
    "Accepts Marketing of maybe": (
        [["email", "Accepts Marketing"], ["ann@example.test", "maybe"]],
        {"consent_state": "unknown", "consent_source": None},
        {"Accepts Marketing": "maybe"},
    ),
    # A column of ours as an attribute whose name reads like a kept one's mark is not counted
    # among the kept columns (the kept values stay beside their own headers).
    "an attribute named like a kept column's mark, before a Firstname": (
        [["email", "Notes?attribute:X", "Firstname", "Surname"],
         ["ann@example.test", "note", "A" * 201, "Lee"]],
        {"first_name": None, "last_name": "Lee"},
        {"Notes?attribute:X": "note", "Firstname": "A" * 201},
    ),
    "a Consent Date of last spring": (
        [["email", "Accepts Marketing", "Consent Date"],
         ["ann@example.test", "yes", 'last spring, "or so" {?} \\']],
        {"consent_state": "granted", "consent_source": "import: contacts.csv"},
        {"Consent Date": 'last spring, "or so" {?} \\'},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED_UNDER_ANOTHER_NAME))
def test_a_value_refused_under_another_tools_name_stays_an_attribute(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, case: str
) -> None:
    imports_as(client, jwks, conn, owner, *REFUSED_UNDER_ANOTHER_NAME[case])


# Our own names (also spelt with spaces or capitals, as `First Name` and `Consent Source` were read
# before aliases) refuse such a value as they did, beside another tool's name whose value is kept
# (row 3). So does another tool's name for a value too long for an attribute.
OWN_NAME_REFUSES: dict[str, tuple[list[str], str, str]] = {
    "first_name": (["first_name", "Tag"], "A" * 201, "first_name"),
    "First Name": (["First Name", "Tag"], "A" * 201, "first_name"),
    "last_name": (["last_name", "Tag"], "L" * 201, "last_name"),
    "tags": (["tags", "Firstname"], "vip;" + "t" * 101, "tags"),
    "consent": (["consent", "Tag"], "maybe", "consent"),
    "consent_at": (["consent_at", "Tag"], "last spring", "consent_at"),
    "Consent Source": (["Consent Source", "Tag"], "s" * 101, "consent_source"),
    "a Firstname too long for an attribute": (["Firstname", "Tag"], "A" * 1001, "first_name"),
}
REASONS = {
    "first_name": "first_name may have at most 200 characters",
    "last_name": "last_name may have at most 200 characters",
    "tags": "tags: each at most 100 characters",
    "consent": "consent must be granted, denied, withdrawn or unknown (or yes/no)",
    "consent_at": "consent_at must be an ISO date or date-time",
    "consent_source": "consent_source may have at most 100 characters",
}
REFUSED_BY_ANOTHER_NAME = {"Tag": "t" * 101, "Firstname": "B" * 201}


@pytest.mark.parametrize("case", list(OWN_NAME_REFUSES))
def test_our_own_column_name_still_refuses_the_value(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, case: str
) -> None:
    (ours, other), value, column = OWN_NAME_REFUSES[case]
    kept = REFUSED_BY_ANOTHER_NAME[other]
    rows = [["email", ours, other], ["ann@example.test", value, ""], ["bob@example.test", "", kept]]
    report = imported(client, jwks, owner, "contacts", file_of(rows), "contacts.csv")
    assert (report["status"], report["created"], report["errors"]) == (
        "done",
        1,
        [["2", column, REASONS[column]]],
    )
    stored = conn.execute(
        "select email, attributes from public.contacts where workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert [(row["email"], row["attributes"]) for row in stored] == [
        ("bob@example.test", {other: kept})
    ]


@pytest.mark.parametrize("case", list(BEFORE_ALIASES))
def test_a_contact_file_that_imported_before_aliases_still_imports(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, case: str
) -> None:
    imports_as(client, jwks, conn, owner, *BEFORE_ALIASES[case])


@pytest.mark.parametrize("case", list(OWN_COLUMN_FIRST))
def test_a_column_aliased_to_a_field_our_own_column_gives_stays_an_attribute(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, case: str
) -> None:
    imports_as(client, jwks, conn, owner, *OWN_COLUMN_FIRST[case])


def imports_as(
    client: TestClient,
    jwks: JwksServer,
    conn: Conn,
    owner: User,
    rows: list[list[str]],
    fields: dict[str, Any],
    attributes: dict[str, str],
) -> None:
    report = imported(client, jwks, owner, "contacts", file_of(rows), "contacts.csv")
    assert (report["status"], report["created"], report["errors"]) == ("done", 1, [])
    ann = conn.execute(
        "select email, first_name, last_name, phone, tags, attributes, consent_state,"
        " consent_source from public.contacts"
        " where workspace_id = %s and email = 'ann@example.test'",
        (owner.workspace_id,),
    ).fetchone()
    assert ann is not None
    assert {name: ann[name] for name in fields} == fields
    assert ann["attributes"] == attributes


@pytest.mark.parametrize(
    ("kind", "header", "message"),
    [
        (
            "contacts",
            "E-mail,First Name,Email Address",
            'columns "E-mail" and "Email Address" both give email (skip one with column_map)',
        ),
        (
            "contacts",
            "email,first_name,First-Name",
            'columns "first_name" and "First-Name" both give first_name (skip one with column_map)',
        ),
        (
            "orders",
            "Order ID,Created at,Status,Financial Status,Total,Currency",
            'columns "Status" and "Financial Status" both give status (skip one with column_map)',
        ),
    ],
)
def test_two_columns_for_one_field_are_refused_naming_both(
    client: TestClient,
    jwks: JwksServer,
    conn: Conn,
    owner: User,
    kind: str,
    header: str,
    message: str,
) -> None:
    project = make_project(conn, owner) if kind == "orders" else None
    data = f"{header}\n{','.join('x' * len(header.split(',')))}\n".encode()
    refused = upload(client, jwks, owner, kind, data, "file.csv", project)
    assert refused.status_code == 422
    assert refused.json()["error"] == {
        "code": "invalid_csv",
        "message": message,
        **{k: v for k, v in refused.json()["error"].items() if k not in ("code", "message")},
    }


def test_only_a_pair_of_double_quotes_around_a_tag_goes(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    rows = [["email", "tags"], ["ann@example.test", 'Screen 27";"VIP"; " Gold " ;27" TV;"New']]
    report = imported(client, jwks, owner, "contacts", file_of(rows), "tags.csv")
    assert (report["status"], report["created"], report["errors"]) == ("done", 1, [])
    tags = conn.execute(
        "select tags from public.contacts where workspace_id = %s and email = 'ann@example.test'",
        (owner.workspace_id,),
    ).fetchone()
    assert tags is not None
    assert sorted(tags["tags"]) == sorted(['Screen 27"', "VIP", "Gold", '27" TV', '"New'])
