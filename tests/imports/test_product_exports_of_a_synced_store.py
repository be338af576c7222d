"""A shop's products export and the same shop's connected store keep one catalog.
WooCommerce's export names each product and variation by the store's own id (`ID`), so it is
stored as the store's sync stores its catalog (source `woocommerce`, keyed by that id): the
export and the store's webhooks update one product in either order, and an order line found by
its SKU links to it. Shopify's export names a product by its Handle only, which the store's sync
never stores: it would be a second copy of the catalog, each SKU naming two products, so an
export into the project whose store has synced its products is refused (409
store_keeps_catalog) at part 1, or at commit when the store synced in between."""

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
    post_woocommerce,
    shop,  # noqa: F401 (fixture)
    woocommerce_order,
)

Conn = psycopg.Connection[DictRow]

ORDERS = (
    "order_id,placed_at,status,total,currency,email,item_sku,item_name,item_quantity,"
    "item_unit_price\r\n{id},2026-05-01,paid,15.30,EUR,ann@example.test,MUG,Mug,1,15.30\r\n"
)


def woo_export(name: str = "Mug", currency: str | None = "EUR") -> bytes:
    """The store's mug (its ID 794, SKU MUG) as WooCommerce's products export writes it."""
    rows = [{**woo_row(ID="794", Type="simple", SKU="MUG", Name=name), "Regular price": "15.30"}]
    return write_csv(WOO_COLUMNS, rows, {"Currency": currency} if currency else None)


def catalog(conn: Conn, project: uuid.UUID) -> list[tuple[str, str, str | None]]:
    rows = conn.execute(
        "select source, external_id, sku from public.products where project_id = %s"
        " order by source, external_id",
        (project,),
    ).fetchall()
    return [(row["source"], row["external_id"], row["sku"]) for row in rows]


def mug(conn: Conn, project: uuid.UUID) -> tuple[str, str | None, str | None]:
    """The store's mug's title, price and currency."""
    row = conn.execute(
        "select title, price::text, currency from public.products"
        " where project_id = %s and source = 'woocommerce' and external_id = '794'",
        (project,),
    ).fetchone()
    assert row is not None
    return row["title"], row["price"], row["currency"]


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


def test_a_woocommerce_export_updates_the_products_its_store_synced_and_lines_stay_linked(
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

    report = imported(client, jwks, owner, "products", woo_export("Mug 350 ml"), "wc.csv", project)

    # Not refused: the export's ID 794 is the store's mug, which it updates.
    assert (report["status"], report["created"], report["updated"]) == ("done", 0, 1)
    assert catalog(conn, project) == [("woocommerce", "794", "MUG")]
    assert mug(conn, project) == ("Mug 350 ml", "15.30", "EUR")
    # The SKU still names one product: a line imported later links to the store's mug too.
    imported(client, jwks, owner, "orders", ORDERS.format(id="#2").encode(), "o2.csv", project)
    assert line_product(conn, project, "#1") == ("woocommerce", "794")
    assert line_product(conn, project, "#2") == ("woocommerce", "794")


def test_a_woocommerce_export_then_its_store_sync_keep_one_product(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    owner, project = shop
    fund(conn, owner, 0, "team")
    # The store's order names the mug by the store's id only (no SKU), before any product.
    line = {"id": 5, "name": "Mug", "product_id": 794, "sku": "", "quantity": 3, "price": 15.3}
    sold = post_woocommerce(client, project, woocommerce_order(7941, line_items=[line]))
    assert sold.status_code == 200
    assert line_product(conn, project, "7941") is None

    imported(client, jwks, owner, "products", woo_export(), "wc.csv", project)
    imported(client, jwks, owner, "orders", ORDERS.format(id="#1").encode(), "o1.csv", project)

    assert catalog(conn, project) == [("woocommerce", "794", "MUG")]
    # The export's mug is the store's product 794: the store's line naming it links to it.
    assert line_product(conn, project, "7941") == ("woocommerce", "794")
    assert line_product(conn, project, "#1") == ("woocommerce", "794")

    # The store's webhook for its mug updates the imported one: no second copy.
    synced = post_to_woocommerce(
        client, project, woocommerce_product_body(794, name="Mug 350 ml"), "product.updated"
    )

    assert synced.status_code == 200
    assert catalog(conn, project) == [("woocommerce", "794", "MUG")]
    assert mug(conn, project)[0] == "Mug 350 ml"
    imported(client, jwks, owner, "orders", ORDERS.format(id="#2").encode(), "o2.csv", project)
    assert line_product(conn, project, "#1") == ("woocommerce", "794")
    assert line_product(conn, project, "#2") == ("woocommerce", "794")


def test_a_woocommerce_export_takes_the_currency_of_its_stores_synced_prices(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    owner, project = shop
    fund(conn, owner, 0, "team")
    # The store's backfill wrote its mug priced in the store's currency (a WooCommerce
    # connection keeps none: the backfill asks the store's settings).
    conn.execute(
        "select private.upsert_products(%s, 'woocommerce', %s::jsonb)",
        (project, '[{"external_id": "794", "title": "Mug", "sku": "MUG", "price": "14.00",'
                  ' "currency": "CZK"}]'),
    )  # fmt: skip

    # The export has no Currency column: its prices are in the store's synced currency.
    report = imported(client, jwks, owner, "products", woo_export(currency=None), "wc.csv", project)

    assert (report["status"], report["updated"], report["rows_failed"]) == ("done", 1, 0)
    assert mug(conn, project) == ("Mug", "15.30", "CZK")


def test_a_shopify_export_whose_store_syncs_before_the_commit_fails_whole_and_stores_nothing(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    owner, project = shop
    fund(conn, owner, 0, "team")
    # Part 1 is accepted while the store has not synced a product yet.
    sent = upload(client, jwks, owner, "products", shopify_export(), "products.csv", project)
    assert sent.status_code == 200, sent.json()
    post_shopify(client, project, shopify_product_body(632910392), "products/create")

    job = sent.json()["data"]["id"]
    message = refused(call(client, jwks, owner, "POST", f"/api/v1/imports/{job}/commit"))

    assert "Shopify store, whose sync keeps them" in message
    read = call(client, jwks, owner, "GET", f"/api/v1/imports/{job}").json()["data"]
    assert (read["status"], read["error_code"]) == ("failed", "store_keeps_catalog")
    assert catalog(conn, project) == [("shopify", "632910392", None)]


def shopify_export() -> bytes:
    """The store's running shoes as Shopify's products export writes them: by Handle only,
    not the store's id 632910392."""
    return write_csv(SHOPIFY_COLUMNS, [
        {**shopify_variant("running-shoes", "42", "", "RS-42", "1099.00", "4"),
         "Title": "Running shoes", "Option1 Name": "Size", "Status": "active"},
        shopify_variant("running-shoes", "43", "", "RS-43", "1099.00", "0"),
    ], {"Currency": "CZK"})  # fmt: skip


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
    export = shopify_export()

    message = refused(upload(client, jwks, owner, "products", export, "products.csv", project))

    assert "connected Shopify store, whose sync keeps them" in message
    assert catalog(conn, project) == [("shopify", "632910392", None)]
