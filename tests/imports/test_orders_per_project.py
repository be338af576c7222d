"""Two projects of one workspace import order files that both number an order `#1001` (two
shops, two tools): each project keeps its own `#1001`, with its own total, customer and lines
(linked by its own catalog), and importing one project's file again changes only its own."""

import uuid
from decimal import Decimal
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from tests.factories.workspaces import create_user, make_project
from tests.fakes.jwks import JwksServer
from tests.imports.test_csv_import import client, upload  # noqa: F401 (fixture)

Conn = psycopg.Connection[DictRow]

HEADER = (
    "order_id,placed_at,status,total,currency,email,item_sku,item_name,item_quantity,"
    "item_unit_price,item_product_id\n"
)


def project_orders(conn: Conn, project: uuid.UUID) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        "select o.external_id, o.status, o.total, c.email,"
        " array(select i.name || ' x' || i.quantity::int || coalesce(' ' || p.title, '')"
        "  from public.order_items i left join public.products p on p.id = i.product_id"
        "  where i.order_id = o.id order by i.name) as lines"
        " from public.orders o left join public.contacts c on c.id = o.contact_id"
        " where o.project_id = %s order by o.external_id",
        (project,),
    ).fetchall()
    return [tuple(row.values()) for row in rows]


def test_two_projects_csv_order_1001_are_two_orders(
    client: TestClient,  # noqa: F811
    conn: Conn,
    jwks: JwksServer,
) -> None:
    owner = create_user(conn)
    first = make_project(conn, owner, "First shop")
    second = make_project(conn, owner, "Second shop")
    for project, title in ((first, "Green tea"), (second, "Teapot")):
        conn.execute(
            "insert into public.products (workspace_id, project_id, source, external_id, title)"
            " values (%s, %s, 'csv', 'P-1', %s)",
            (owner.workspace_id, project, title),
        )
    first_file = HEADER + "#1001,2026-05-01,paid,11,EUR,ann@example.test,TEA,Tea,2,5.50,P-1\n"
    second_file = (
        HEADER + "#1001,2026-05-02,pending,80,EUR,bob@example.test,POT,Pot,1,60,P-1\n"
        "#1001,,,,,,CUP,Cup,2,10,\n"
    )
    for project, text in ((first, first_file), (second, second_file)):
        answer = upload(client, jwks, owner, project, text)
        assert answer.status_code == 200, answer.json()
        assert (answer.json()["data"]["imported"], answer.json()["data"]["failed"]) == (1, 0)

    first_order = ("#1001", "paid", Decimal("11.00"), "ann@example.test", ["Tea x2 Green tea"])
    second_order = (
        "#1001",
        "pending",
        Decimal("80.00"),
        "bob@example.test",
        ["Cup x2", "Pot x1 Teapot"],
    )
    assert project_orders(conn, first) == [first_order]
    assert project_orders(conn, second) == [second_order]

    # The second shop's order is paid since: its file again updates its own #1001 only.
    paid = second_file.replace("pending", "paid")
    assert upload(client, jwks, owner, second, paid).status_code == 200
    assert project_orders(conn, first) == [first_order]
    assert project_orders(conn, second) == [("#1001", "paid", *second_order[2:])]
