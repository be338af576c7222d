"""Files as other tools export them, imported through the edge as they are: Shopify's order
export (one row per line item, the statuses in Shopify's words), contact lists from Mailchimp,
Shopify and the like (their own column names), and a header naming one field twice refused by
both its names."""

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from api.core.settings import Settings
from tests.factories.workspaces import User, create_user, fund, make_project
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


def shopify_export() -> bytes:
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
    writer = csv.DictWriter(out, SHOPIFY_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def orders_and_lines(conn: Conn, project: uuid.UUID) -> dict[str, Any]:
    orders = conn.execute(
        "select o.external_id, o.status, o.total, o.currency, o.placed_at, c.email,"
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
    (what counts as revenue: paid and fulfilled). Importing it again changes nothing."""
    project = make_project(conn, owner)
    data = shopify_export()
    report = imported(client, jwks, owner, "orders", data, "orders_export_1.csv", project)
    assert report["errors"] == []
    assert (report["status"], report["rows_total"], report["created"]) == ("done", 9, 6)
    orders = orders_and_lines(conn, project)
    assert {name: (o["status"], o["total"], o["email"]) for name, o in orders.items()} == {
        "#1001": ("fulfilled", Decimal("45.00"), "jana@example.test"),
        "#1002": ("pending", Decimal("12.50"), "petr@example.test"),
        "#1003": ("paid", Decimal("31.00"), "eva@example.test"),
        "#1004": ("cancelled", Decimal("10.00"), "petr@example.test"),
        "#1005": ("refunded", Decimal("25.00"), "jana@example.test"),
        "#1006": ("cancelled", Decimal("20.00"), "eva@example.test"),
    }
    assert orders["#1001"]["placed_at"] == datetime(2026, 3, 1, 9, 22, 33, tzinfo=UTC)
    assert [line.rsplit(",", 1)[0] for line in orders["#1001"]["lines"]] == [
        "(Mug,MUG-1,2.000,10.00",
        '("Tee - M",TEE-M,1.000,25.00',
    ]
    assert [line.rsplit(",", 1)[0] for line in orders["#1003"]["lines"]] == [
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
        {"Accepts SMS Marketing": "no"},
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


@pytest.mark.parametrize(
    ("kind", "header", "message"),
    [
        (
            "contacts",
            "Email,First Name,E-mail Address",
            'columns "Email" and "E-mail Address" both give email (skip one with column_map)',
        ),
        (
            "contacts",
            "email,Name,First Name",
            'columns "Name" and "First Name" both give first_name (skip one with column_map)',
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
