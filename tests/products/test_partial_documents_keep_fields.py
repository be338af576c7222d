"""A product writer changes only the fields its document carries (README, Customers, orders and
shops). A project's products are written by writers that each know some fields: WooCommerce's
product webhook carries no price we keep, its products export no URL, Shopify's product webhook
no URL and variant prices that may name no currency. A field a document lacks keeps the stored
value; a field it states (a new value, or none) is written. They used to be blanked: every sale's
stock webhook blanked the price the backfill stored, every export import the store's URL."""

import uuid
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.core.db import become_service
from api.shops.products import (
    shopify_product,
    woocommerce_catalog_product,
    woocommerce_product,
)
from tests.factories.workspaces import User, create_user, fund, make_project
from tests.fakes.jwks import JwksServer
from tests.imports.test_other_tools_exports import imported
from tests.imports.test_product_exports_of_a_synced_store import woo_export
from tests.shops.test_customer_webhooks import post_to_woocommerce
from tests.shops.test_product_webhooks import shopify_product_body, woocommerce_product_body
from tests.shops.test_shop_webhooks import (
    client,  # noqa: F401 (fixture)
    shop,  # noqa: F401 (fixture)
)

Conn = psycopg.Connection[DictRow]

URL = "https://shop.example/product/mug/"
IMAGE = "https://shop.example/wp-content/uploads/mug.jpg"
SHOES = "https://demo.example/products/running-shoes"


def page(conn: Conn, project: uuid.UUID, source: str, documents: list[dict[str, Any]]) -> None:
    """A shop's page of products, as its writers send it (private.upsert_products)."""
    with conn.transaction():
        become_service(conn)
        conn.execute(
            "select private.upsert_products(%s, %s, %s)", (project, source, Jsonb(documents))
        )


def product(conn: Conn, project: uuid.UUID, source: str, external_id: str) -> dict[str, Any]:
    row = conn.execute(
        "select title, sku, price::text, currency, inventory, url, image_url, category, status"
        " from public.products where project_id = %s and source = %s and external_id = %s",
        (project, source, external_id),
    ).fetchone()
    assert row is not None
    return dict(row)


def variants(conn: Conn, project: uuid.UUID, source: str) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        "select v.external_id, v.title, v.sku, v.price::text as price, v.currency, v.inventory,"
        " v.image_url from public.product_variants v join public.products p on p.id = v.product_id"
        " where p.project_id = %s and p.source = %s order by v.external_id",
        (project, source),
    ).fetchall()
    return [tuple(row.values()) for row in rows]


def test_a_woocommerce_stock_webhook_keeps_the_price_its_backfill_stored(conn: Conn) -> None:
    project = make_project(conn, create_user(conn))
    page(
        conn,
        project,
        "woocommerce",
        [woocommerce_catalog_product(woocommerce_product_body(794), None, "EUR")],
    )
    assert product(conn, project, "woocommerce", "794")["price"] == "15.30"

    # A sale: WooCommerce sends the product webhook, its stock one less and no price we keep.
    page(
        conn,
        project,
        "woocommerce",
        [woocommerce_product(woocommerce_product_body(794, stock_quantity=6))],
    )

    mug = product(conn, project, "woocommerce", "794")
    assert (mug["price"], mug["currency"], mug["inventory"]) == ("15.30", "EUR", 6)
    assert (mug["url"], mug["image_url"], mug["category"]) == (URL, IMAGE, "Kitchen")


def test_a_document_that_states_a_value_overwrites_it_and_one_that_states_none_clears_it(
    conn: Conn,
) -> None:
    project = make_project(conn, create_user(conn))
    page(
        conn,
        project,
        "woocommerce",
        [woocommerce_catalog_product(woocommerce_product_body(794), None, "EUR")],
    )

    changed = woocommerce_product_body(
        794, price="16.00", sku="MUG-2", permalink="https://shop.example/product/mug-2/",
        categories=[{"id": 1, "name": "Cups"}], stock_quantity=5,
    )  # fmt: skip
    page(conn, project, "woocommerce", [woocommerce_catalog_product(changed, None, "EUR")])
    mug = product(conn, project, "woocommerce", "794")
    assert (mug["price"], mug["sku"], mug["url"], mug["category"], mug["inventory"]) == (
        "16.00", "MUG-2", "https://shop.example/product/mug-2/", "Cups", 5,
    )  # fmt: skip

    # The store states the product has no price, no image, no category and no tracked stock.
    cleared = woocommerce_product_body(
        794, price="", images=[], categories=[], stock_quantity=None, sku="MUG-2",
        permalink="https://shop.example/product/mug-2/",
    )  # fmt: skip
    page(conn, project, "woocommerce", [woocommerce_catalog_product(cleared, None, "EUR")])
    mug = product(conn, project, "woocommerce", "794")
    assert (mug["price"], mug["currency"], mug["image_url"], mug["category"], mug["inventory"]) == (
        None, None, None, None, None,
    )  # fmt: skip
    assert (mug["sku"], mug["url"]) == ("MUG-2", "https://shop.example/product/mug-2/")


def test_a_document_without_a_sku_keeps_the_sku_and_its_lines_link(conn: Conn) -> None:
    project = make_project(conn, create_user(conn))
    page(
        conn,
        project,
        "woocommerce",
        [woocommerce_catalog_product(woocommerce_product_body(794), None, "EUR")],
    )
    body = woocommerce_product_body(794, stock_quantity=2)
    del body["sku"]
    page(conn, project, "woocommerce", [woocommerce_product(body)])
    assert product(conn, project, "woocommerce", "794")["sku"] == "MUG"

    # A CSV order naming the mug by its SKU only still finds it by that SKU.
    with conn.transaction():
        become_service(conn)
        conn.execute(
            "select private.upsert_orders(%s, 'shoptet', %s)",
            (project, Jsonb([{
                "external_id": "S-1", "status": "paid", "placed_at": "2026-06-01T10:00:00+00:00",
                "total": "15.30", "currency": "EUR", "customer": {"email": "ann@example.test"},
                "items": [{"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "15.30"}],
            }])),
        )  # fmt: skip
    linked = conn.execute(
        "select p.external_id from public.order_items i join public.orders o on o.id = i.order_id"
        " join public.products p on p.id = i.product_id where o.project_id = %s",
        (project,),
    ).fetchall()
    assert [row["external_id"] for row in linked] == ["794"]


def shoes(price: str = "1099.00", currency: str | None = "CZK") -> dict[str, Any]:
    """Shopify's shoes, each variant priced at `price`, in `currency` by its presentment prices
    (none: the price alone, in the shop's currency)."""
    body = shopify_product_body(5)
    for variant in body["variants"]:
        variant["price"] = price
        variant["presentment_prices"] = (
            [{"price": {"amount": price, "currency_code": currency}}] if currency else []
        )
    return body


def test_variants_keep_what_a_document_lacks_and_take_what_it_states(conn: Conn) -> None:
    project = make_project(conn, create_user(conn))
    # The backfill's page: its bulk query names the product's URL and the prices' currency.
    page(conn, project, "shopify", [{**shopify_product(shoes()), "url": SHOES}])
    before = variants(conn, project, "shopify")
    assert [v[3:5] for v in before] == [("1099.00", "CZK"), ("1099.00", "CZK")]

    # A products/update webhook: no presentment prices, and the connection knows no currency
    # yet (the price is unknown); the first variant's body has no SKU key; the stock changed.
    body = shoes(currency=None)
    for variant in body["variants"]:
        variant["inventory_quantity"] = 1
    del body["variants"][0]["sku"]
    page(conn, project, "shopify", [shopify_product(body)])
    assert variants(conn, project, "shopify") == [
        (*v[:3], "1099.00", "CZK", 1, v[6]) for v in before
    ]
    # Shopify's REST product names no URL: the backfill's stays.
    assert product(conn, project, "shopify", "5")["url"] == SHOES

    # A webhook that names a new price in its currency, and a new SKU, writes them.
    body = shoes("1199.00")
    body["variants"][0]["sku"] = "RS-42-B"
    page(conn, project, "shopify", [shopify_product(body)])
    assert [v[2:5] for v in variants(conn, project, "shopify")] == [
        ("RS-42-B", "1199.00", "CZK"), (before[1][2], "1199.00", "CZK"),
    ]  # fmt: skip


def test_a_woocommerce_variation_without_an_image_keeps_its_image(conn: Conn) -> None:
    project = make_project(conn, create_user(conn))
    body = woocommerce_product_body(80, type="variable")
    variation = {
        "id": 81, "sku": "MUG-RED", "price": "17.50", "stock_quantity": 3, "status": "publish",
        "image": {"src": "https://shop.example/red.jpg"},
        "attributes": [{"name": "Color", "option": "Red"}],
    }  # fmt: skip
    page(conn, project, "woocommerce", [woocommerce_catalog_product(body, [variation], "EUR")])
    # The next backfill's variation has no image key, and the store's currency is unreadable.
    later = {k: v for k, v in variation.items() if k != "image"} | {"stock_quantity": 2}
    page(conn, project, "woocommerce", [woocommerce_catalog_product(body, [later], None)])
    assert variants(conn, project, "woocommerce") == [
        ("81", "Red", "MUG-RED", "17.50", "EUR", 2, "https://shop.example/red.jpg"),
    ]


def test_a_woocommerce_export_keeps_the_url_its_store_synced_and_the_webhook_its_price(
    client: TestClient,  # noqa: F811
    jwks: JwksServer,
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    owner, project = shop
    fund(conn, owner, 0, "team")
    synced = post_to_woocommerce(client, project, woocommerce_product_body(794), "product.created")
    assert synced.status_code == 200
    mug = product(conn, project, "woocommerce", "794")
    assert (mug["url"], mug["price"]) == (URL, None)

    # The export names the price (and its currency), but no URL and no image.
    report = imported(client, jwks, owner, "products", woo_export("Mug 350 ml"), "wc.csv", project)
    assert (report["status"], report["updated"]) == ("done", 1)
    mug = product(conn, project, "woocommerce", "794")
    assert (mug["title"], mug["price"], mug["currency"]) == ("Mug 350 ml", "15.30", "EUR")
    assert (mug["url"], mug["image_url"]) == (URL, IMAGE)

    # The next sale's stock webhook keeps the export's price.
    body = woocommerce_product_body(794, name="Mug 350 ml", stock_quantity=6)
    assert post_to_woocommerce(client, project, body, "product.updated").status_code == 200
    mug = product(conn, project, "woocommerce", "794")
    assert (mug["price"], mug["currency"], mug["inventory"], mug["url"]) == ("15.30", "EUR", 6, URL)
