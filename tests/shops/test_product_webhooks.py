"""Shopify and WooCommerce product webhooks: verified and stored like the order webhooks, then
applied to the project's catalog (Shopify's variants with it), a deleted product archived, and
order lines that name the product linked. Payloads follow the providers' documented shapes
(Shopify's REST Admin Product, WooCommerce's REST v3 product)."""

import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.shops.products import woocommerce_catalog_product
from tests.factories.workspaces import User, one
from tests.fakes.jwks import JwksServer
from tests.imports.test_import_jobs import Api
from tests.shops.test_customer_webhooks import post_to_woocommerce
from tests.shops.test_shop_webhooks import (
    client,  # noqa: F401 (fixture)
    post_shopify,
    post_woocommerce,
    shop,  # noqa: F401 (fixture)
    shopify_order,
    woocommerce_order,
)

Conn = psycopg.Connection[DictRow]


def shopify_product_body(product_id: int, **changes: Any) -> dict[str, Any]:
    product = {
        "id": product_id,
        "title": "Running shoes",
        "body_html": "<p>Light and fast.</p>",
        "vendor": "Acme",
        "product_type": "Shoes",
        "handle": "running-shoes",
        "status": "active",
        "tags": "running",
        "image": {"id": 1, "src": "https://cdn.shopify.com/s/files/1/shoe.png"},
        "variants": [
            {
                "id": 11,
                "product_id": product_id,
                "title": "42",
                "price": "1099.00",
                "sku": "RS-42",
                "inventory_quantity": 4,
                "presentment_prices": [
                    {
                        "price": {"amount": "1099.00", "currency_code": "CZK"},
                        "compare_at_price": None,
                    }
                ],
            },
            {
                "id": 12,
                "product_id": product_id,
                "title": "43",
                "price": "1099.00",
                "sku": "RS-43",
                "inventory_quantity": 0,
            },
        ],
        "admin_graphql_api_id": f"gid://shopify/Product/{product_id}",
    }
    product.update(changes)
    return product


def woocommerce_product_body(product_id: int, **changes: Any) -> dict[str, Any]:
    product = {
        "id": product_id,
        "name": "Mug",
        "slug": "mug",
        "permalink": "https://shop.example/product/mug/",
        "type": "simple",
        "status": "publish",
        "sku": "MUG",
        "price": "15.30",
        "regular_price": "15.30",
        "manage_stock": True,
        "stock_quantity": 7,
        "categories": [{"id": 9, "name": "Kitchen", "slug": "kitchen"}],
        "images": [{"id": 3, "src": "https://shop.example/wp-content/uploads/mug.jpg"}],
        "variations": [],
    }
    product.update(changes)
    return product


def catalog(conn: Conn, project: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "select p.source, p.external_id, p.title, p.category, p.status, p.price, p.inventory,"
        " coalesce(array_agg(v.external_id || ':' || coalesce(v.price::text, '-') || ':'"
        " || coalesce(v.currency, '-') order by v.external_id)"
        " filter (where v.id is not null), '{}') as variants"
        " from public.products p left join public.product_variants v on v.product_id = p.id"
        " where p.project_id = %s group by p.id order by p.source, p.external_id",
        (project,),
    ).fetchall()


def test_a_shopify_product_and_its_variants_are_synced_and_a_deleted_one_archived(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    # An order sold variant 11 before the catalog arrived.
    order = shopify_order(8001)
    order["line_items"] = [
        {
            "id": 1,
            "title": "Running shoes - 42",
            "sku": "RS-42",
            "quantity": 1,
            "price": "1099.00",
            "product_id": 500,
            "variant_id": 11,
        }
    ]
    assert post_shopify(client, project, order).status_code == 200
    created = post_shopify(client, project, shopify_product_body(500), topic="products/create")
    assert created.json()["data"] == {"outcome": "accepted"}
    assert [dict(p) for p in catalog(conn, project)] == [
        {
            "source": "shopify",
            "external_id": "500",
            "title": "Running shoes",
            "category": "Shoes",
            "status": "active",
            "price": None,
            "inventory": None,
            # Variant 12 names no currency: its price is in the shop's, which its order named.
            "variants": ["11:1099.00:CZK", "12:1099.00:CZK"],
        }
    ]
    line = one(
        conn,
        "select v.external_id from public.order_items i"
        " join public.product_variants v on v.id = i.variant_id"
        " join public.orders o on o.id = i.order_id where o.project_id = %s",
        (project,),
    )
    assert line["external_id"] == "11"

    # Variant 12 is gone from the shop and the product is renamed.
    changed = shopify_product_body(500, title="Trail shoes")
    changed["variants"] = changed["variants"][:1]
    post_shopify(client, project, changed, topic="products/update")
    after = catalog(conn, project)
    assert (after[0]["title"], after[0]["variants"]) == ("Trail shoes", ["11:1099.00:CZK"])

    gone = post_shopify(client, project, {"id": 500}, topic="products/delete")
    assert gone.json()["data"] == {"outcome": "accepted"}
    assert catalog(conn, project)[0]["status"] == "archived"


def test_a_woocommerce_product_is_synced_trashed_and_restored(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    created = post_to_woocommerce(client, project, woocommerce_product_body(794), "product.created")
    assert created.json()["data"] == {"outcome": "accepted"}
    [product] = catalog(conn, project)
    assert (product["title"], product["category"], product["inventory"], product["status"]) == (
        "Mug",
        "Kitchen",
        7,
        "active",
    )
    post_to_woocommerce(client, project, {"id": 794}, "product.deleted")
    assert catalog(conn, project)[0]["status"] == "archived"
    post_to_woocommerce(
        client, project, woocommerce_product_body(794, status="publish"), "product.restored"
    )
    assert catalog(conn, project)[0]["status"] == "active"


def stored_products(conn: Conn, project: uuid.UUID, source: str) -> list[dict[str, Any]]:
    """Every field a user sees of a source's products and their variants."""
    return conn.execute(
        "select p.external_id, p.title, p.sku, p.price, p.currency, p.inventory, p.url,"
        " p.image_url, p.category, p.status, coalesce(jsonb_agg(jsonb_build_array(v.external_id,"
        " v.title, v.sku, v.price, v.currency, v.inventory, v.image_url, v.status)"
        " order by v.external_id) filter (where v.id is not null), '[]') as variants"
        " from public.products p left join public.product_variants v on v.product_id = p.id"
        " where p.project_id = %s and p.source = %s group by p.id order by p.external_id",
        (project, source),
    ).fetchall()


def test_a_csv_catalog_stores_the_same_products_as_the_webhooks(
    client: TestClient,  # noqa: F811
    conn: Conn,
    jwks: JwksServer,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    """The CSV import writes through the shops' page upsert: the same products, described by a
    Shopify and a WooCommerce webhook and by a shop's CSV export, are stored alike (a variant's
    price with its currency, a product's currency only with its price)."""
    owner, project = shop
    post_shopify(client, project, shopify_product_body(500), topic="products/create")
    post_to_woocommerce(client, project, woocommerce_product_body(794), "product.created")
    catalog_csv = (
        b"product_id,title,sku,price,currency,inventory,url,image_url,category,status,"
        b"variant_id,variant_title,variant_sku,variant_price,variant_inventory\n"
        b"500,Running shoes,,,CZK,,,https://cdn.shopify.com/s/files/1/shoe.png,Shoes,active,"
        b"11,42,RS-42,1099,4\n"
        b"500,,,,,,,,,,12,43,RS-43,,0\n"
        b"794,Mug,MUG,,,7,https://shop.example/product/mug/,"
        b"https://shop.example/wp-content/uploads/mug.jpg,Kitchen,,,,,,\n"
    )
    api = Api(client, jwks, owner)
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind="products",
        project_id=str(project),
        size_bytes=len(catalog_csv),
    ).json()["data"]["id"]
    assert api.part(job, 1, catalog_csv).status_code == 200
    report = api.commit(job).json()["data"]
    assert (report["status"], report["created"], report["rows_failed"]) == (
        "done",
        3,
        0,
    )  # per row: two variants and a product
    from_csv = stored_products(conn, project, "csv")
    assert from_csv == stored_products(conn, project, "shopify") + stored_products(
        conn, project, "woocommerce"
    )
    assert [p["variants"] for p in from_csv] == [
        [
            ["11", "42", "RS-42", 1099, "CZK", 4, None, "active"],
            ["12", "43", "RS-43", None, None, 0, None, "active"],
        ],
        [],
    ]


@pytest.mark.parametrize("body", [{"id": 5, "variants": {"id": 1}}, {"id": 5, "title": 7}])
def test_signed_products_of_the_wrong_shape_are_a_422(
    client: TestClient,  # noqa: F811
    shop: tuple[User, uuid.UUID],  # noqa: F811
    body: dict[str, Any],
) -> None:
    _, project = shop
    answer = post_shopify(client, project, body, topic="products/update")
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_input"


def linked_lines(conn: Conn, project: uuid.UUID, source: str) -> list[tuple[Any, ...]]:
    """The project's lines of the source: their shop ids and the catalog ids they link to."""
    return [
        tuple(r.values())
        for r in conn.execute(
            "select i.name, i.external_product_id, i.external_variant_id, p.external_id as product,"
            " v.external_id as variant from public.order_items i"
            " join public.orders o on o.id = i.order_id"
            " left join public.products p on p.id = i.product_id"
            " left join public.product_variants v on v.id = i.variant_id"
            " where o.project_id = %s and o.source = %s order by i.name",
            (project, source),
        ).fetchall()
    ]


def test_a_shopify_order_line_without_a_sku_is_linked_by_its_product_and_variant_ids(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    post_shopify(client, project, shopify_product_body(600), topic="products/create")
    order = shopify_order(8101)
    order["line_items"] = [
        {
            "id": 1,
            "title": "Shoes 43",
            "sku": None,
            "quantity": 1,
            "price": "1099.00",
            "product_id": 600,
            "variant_id": 12,
        },
        {
            "id": 2,
            "title": "Gift wrap",
            "sku": "",
            "quantity": 1,
            "price": "200.00",
            "product_id": None,
            "variant_id": None,
        },
    ]
    assert post_shopify(client, project, order).status_code == 200
    assert linked_lines(conn, project, "shopify") == [
        ("Gift wrap", None, None, None, None),
        ("Shoes 43", "600", "12", "600", "12"),
    ]


def test_a_woocommerce_order_line_without_a_sku_is_linked_by_its_product_and_variation_ids(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    # A variable product with its variations, as the backfill stores it, and a simple product.
    shirt = woocommerce_catalog_product(
        woocommerce_product_body(900, name="Shirt", sku="", type="variable"),
        [
            {"id": 901, "sku": "", "attributes": [{"name": "Size", "option": "M"}]},
            {"id": 902, "sku": "", "attributes": [{"name": "Size", "option": "L"}]},
        ],
        "EUR",
    )
    mug = woocommerce_catalog_product(woocommerce_product_body(910, sku=""), None, "EUR")
    conn.execute(
        "select private.upsert_products(%s, 'woocommerce', %s)", (project, Jsonb([shirt, mug]))
    )
    order = woocommerce_order(
        9101,
        line_items=[
            {
                "id": 1,
                "name": "Shirt - L",
                "sku": "",
                "quantity": 1,
                "price": 30,
                "product_id": 900,
                "variation_id": 902,
            },
            {
                "id": 2,
                "name": "Mug",
                "sku": "",
                "quantity": 1,
                "price": 15.9,
                "product_id": 910,
                "variation_id": 0,
            },
        ],
    )
    assert post_woocommerce(client, project, order).status_code == 200
    assert linked_lines(conn, project, "woocommerce") == [
        ("Mug", "910", None, "910", None),
        ("Shirt - L", "900", "902", "900", "902"),
    ]
