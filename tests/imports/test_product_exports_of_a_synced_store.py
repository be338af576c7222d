"""A shop's products export and the same shop's connected store keep one catalog: the store's
sync stores the project's products under the shop's ids, and the export (stored as source `csv`)
would be a second copy of each, its SKUs then naming two products, so order lines found by SKU
would stay unlinked. An export into the project whose store has synced its products is refused
(409 store_keeps_catalog) at part 1, or at commit when the store synced in between; the store's
catalog stays one and a line naming a SKU still links to the store's product."""

import uuid
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from tests.factories.workspaces import User, fund
from tests.fakes.jwks import JwksServer
from tests.imports.test_other_tools_exports import call, imported, upload
from tests.imports.test_product_exports import (
    SHOPIFY_COLUMNS,
    WOO_COLUMNS,
    shopify_variant,
    woo_row,
    write_csv,
)
from tests.shops.test_customer_webhooks import post_to_woocommerce
from tests.shops.test_product_webhooks import shopify_product_body, woocommerce_product_body
from tests.shops.test_shop_webhooks import (
    client,  # noqa: F401 (fixture)
    post_shopify,
    shop,  # noqa: F401 (fixture)
)

Conn = psycopg.Connection[DictRow]

ORDERS = (
    "order_id,placed_at,status,total,currency,email,item_sku,item_name,item_quantity,"
    "item_unit_price\r\n{id},2026-05-01,paid,15.30,EUR,ann@example.test,MUG,Mug,1,15.30\r\n"
)


def woo_export() -> bytes:
    """The store's mug (its ID 794, SKU MUG) as WooCommerce's products export writes it."""
    rows = [{**woo_row(ID="794", Type="simple", SKU="MUG", Name="Mug"), "Regular price": "15.30"}]
    return write_csv(WOO_COLUMNS, rows, {"Currency": "EUR"})


def catalog(conn: Conn, project: uuid.UUID) -> list[tuple[str, str, str | None]]:
    rows = conn.execute(
        "select source, external_id, sku from public.products where project_id = %s"
        " order by source, external_id",
        (project,),
    ).fetchall()
    return [(row["source"], row["external_id"], row["sku"]) for row in rows]


def line_product(conn: Conn, project: uuid.UUID, order: str) -> tuple[str, str] | None:
    row = conn.execute(
        "select p.source, p.external_id from public.order_items i"
        " join public.orders o on o.id = i.order_id"
        " left join public.products p on p.id = i.product_id"
        " where o.project_id = %s and o.external_id = %s",
        (project, order),
    ).fetchone()
    assert row is not None
    return (row["source"], row["external_id"]) if row["source"] else None


def refused(answer: Any) -> str:
    assert answer.status_code == 409, answer.json()
    error = answer.json()["error"]
    assert error["code"] == "store_keeps_catalog"
    return str(error["message"])


def test_a_woocommerce_export_into_the_project_its_store_synced_is_refused_and_links_stay(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    owner, project = shop
    fund(conn, owner, 0, "team")
    synced = post_to_woocommerce(client, project, woocommerce_product_body(794), "product.created")
    assert synced.status_code == 200
    imported(client, jwks, owner, "orders", ORDERS.format(id="#1").encode(), "o1.csv", project)
    assert line_product(conn, project, "#1") == ("woocommerce", "794")

    message = refused(upload(client, jwks, owner, "products", woo_export(), "wc.csv", project))

    assert message.startswith(
        "This project's products come from its connected WooCommerce store, whose sync keeps"
        " them: importing WooCommerce's products export here would store each product a second"
        " time."
    )
    assert catalog(conn, project) == [("woocommerce", "794", "MUG")]
    # The SKU still names one product: a line imported later links to the store's mug too.
    imported(client, jwks, owner, "orders", ORDERS.format(id="#2").encode(), "o2.csv", project)
    assert line_product(conn, project, "#1") == ("woocommerce", "794")
    assert line_product(conn, project, "#2") == ("woocommerce", "794")


def test_an_export_whose_store_syncs_before_the_commit_fails_whole_and_stores_nothing(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    owner, project = shop
    fund(conn, owner, 0, "team")
    # Part 1 is accepted while the store has not synced a product yet.
    sent = upload(client, jwks, owner, "products", woo_export(), "wc.csv", project)
    assert sent.status_code == 200, sent.json()
    post_to_woocommerce(client, project, woocommerce_product_body(794), "product.created")

    job = sent.json()["data"]["id"]
    message = refused(call(client, jwks, owner, "POST", f"/api/v1/imports/{job}/commit"))

    assert "WooCommerce store, whose sync keeps them" in message
    read = call(client, jwks, owner, "GET", f"/api/v1/imports/{job}").json()["data"]
    assert (read["status"], read["error_code"]) == ("failed", "store_keeps_catalog")
    assert catalog(conn, project) == [("woocommerce", "794", "MUG")]


def test_a_shopify_export_into_the_project_its_store_synced_is_refused(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    owner, project = shop
    fund(conn, owner, 0, "team")
    synced = post_shopify(client, project, shopify_product_body(632910392), "products/create")
    assert synced.status_code == 200
    # The export names the product by its Handle only, not the store's id 632910392.
    export = write_csv(SHOPIFY_COLUMNS, [
        {**shopify_variant("running-shoes", "42", "", "RS-42", "1099.00", "4"),
         "Title": "Running shoes", "Option1 Name": "Size", "Status": "active"},
        shopify_variant("running-shoes", "43", "", "RS-43", "1099.00", "0"),
    ], {"Currency": "CZK"})  # fmt: skip

    message = refused(upload(client, jwks, owner, "products", export, "products.csv", project))

    assert "connected Shopify store, whose sync keeps them" in message
    assert catalog(conn, project) == [("shopify", "632910392", None)]
