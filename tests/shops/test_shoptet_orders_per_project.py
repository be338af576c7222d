"""Two Shoptet shops of one workspace, in two projects, both have an order 2026000007: each
project keeps its own, with its own total and customer, and a shop's later event updates only
its own."""

from decimal import Decimal

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from tests.factories.workspaces import create_user, make_project
from tests.fakes.jwks import JwksServer
from tests.fakes.shoptet_server import TOKEN, ShoptetServer, shoptet_order
from tests.shops.test_shoptet import (  # noqa: F401 (fixtures)
    SIGNATURE_KEY,
    Shop,
    client,
    event,
    shoptet,
)

Conn = psycopg.Connection[DictRow]


def test_two_shoptet_shops_order_of_one_code_are_two_orders(
    client: TestClient,  # noqa: F811
    shoptet: ShoptetServer,  # noqa: F811
    conn: Conn,
    jwks: JwksServer,
) -> None:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set base_currency = 'CZK' where id = %s", (owner.workspace_id,)
    )
    shops = [Shop(client, jwks, owner, make_project(conn, owner)) for _ in range(2)]
    for shop in shops:
        connected = shop.post("connect", api_token=TOKEN, webhook_signature_key=SIGNATURE_KEY)
        assert connected.status_code == 200
    price = shoptet_order(7)["price"]
    other = shoptet_order(
        7,
        email="eva@example.test",
        customerGuid="c0ffee00-0000-4000-8000-999999999999",
        price={**price, "toPay": "300.00", "withVat": "300.00"},
    )

    def stored() -> list[tuple[object, ...]]:
        rows = conn.execute(
            "select o.project_id, o.status, o.total, c.email from public.orders o"
            " left join public.contacts c on c.id = o.contact_id"
            " where o.workspace_id = %s and o.external_id = '2026000007' order by o.total",
            (owner.workspace_id,),
        ).fetchall()
        return [tuple(row.values()) for row in rows]

    shoptet.orders = [shoptet_order(7)]
    assert shops[0].webhook(event("order:create", "2026000007")).status_code == 200
    shoptet.orders = [other]
    assert shops[1].webhook(event("order:create", "2026000007")).status_code == 200
    first = (shops[0].project, "paid", Decimal("1210.00"), "customer0@example.test")
    assert stored() == [(shops[1].project, "paid", Decimal("300.00"), "eva@example.test"), first]

    # The second shop's order is unpaid since: its event updates its own order only.
    shoptet.orders = [{**other, "paid": False}]
    update = event("order:update", "2026000007", created="2026-06-01T11:00:00+0200")
    assert shops[1].webhook(update).status_code == 200
    assert stored() == [
        (shops[1].project, "pending", Decimal("300.00"), "eva@example.test"),
        first,
    ]
