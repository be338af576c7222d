"""The other half of "a writer changes only the fields its document carries"
(20270226090000_partial_product_documents_keep_fields.sql): a key the shop sends as null states
none and clears the stored value, and a new product from a partial document gets the defaults
a full one without those values gets (status active, nothing else). Review guards (review32c):
they pass on the keep-fields change and fail against a writer that keeps every null."""

import psycopg
from psycopg.rows import DictRow

from api.shops.products import shopify_product
from tests.factories.workspaces import create_user, make_project
from tests.products.test_partial_documents_keep_fields import page, product
from tests.shops.test_product_webhooks import shopify_product_body

Conn = psycopg.Connection[DictRow]


def test_a_shopify_product_webhook_without_its_image_clears_it(conn: Conn) -> None:
    project = make_project(conn, create_user(conn))
    page(conn, project, "shopify", [shopify_product(shopify_product_body(501))])
    assert product(conn, project, "shopify", "501")["image_url"] == (
        "https://cdn.shopify.com/s/files/1/shoe.png"
    )

    # The merchant removed the product's image: Shopify sends `image: null`.
    page(conn, project, "shopify", [shopify_product(shopify_product_body(501, image=None))])
    shoes = product(conn, project, "shopify", "501")
    assert (shoes["image_url"], shoes["category"], shoes["status"]) == (None, "Shoes", "active")


def test_a_new_product_from_a_partial_document_gets_the_defaults(conn: Conn) -> None:
    project = make_project(conn, create_user(conn))
    body = {"id": 502, "title": "Socks", "variants": []}
    page(conn, project, "shopify", [shopify_product(body), {"external_id": "503"}])
    socks = product(conn, project, "shopify", "502")
    assert socks == {
        "title": "Socks",
        "sku": None,
        "price": None,
        "currency": None,
        "inventory": None,
        "url": None,
        "image_url": None,
        "category": None,
        "status": "active",
    }
    # A document without a title names no product: nothing is written for it.
    assert (
        conn.execute(
            "select 1 from public.products where project_id = %s and external_id = '503'",
            (project,),
        ).fetchone()
        is None
    )
