"""A value a shop allows but a column does not (Shopify's 255-character names against the
contacts' 200, a title over 500, a SKU or URL too long to keep) is fitted to its column, and the
order, customer or product it came in is stored: the shop answered `accepted` and will not send
it again, so failing on it would lose the order from the owner's analytics."""

import uuid
from typing import Any

import psycopg
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from tests.factories.workspaces import User, one
from tests.shops.test_customer_webhooks import (
    contact_of,
    post_to_woocommerce,
    shopify_customer_body,
    woocommerce_customer_body,
)
from tests.shops.test_product_webhooks import shopify_product_body, woocommerce_product_body
from tests.shops.test_shop_webhooks import (
    client,  # noqa: F401 (fixture)
    post_shopify,
    shop,  # noqa: F401 (fixture)
    shopify_order,
    woocommerce_order,
)

Conn = psycopg.Connection[DictRow]
NAME = "Ž" + "a" * 299  # 300 characters: Shopify allows 255, the contacts keep 200
TITLE = "Mug " * 150  # 600 characters: the catalog keeps 500
SKU = "MUG-" + "9" * 296  # an identifier: cut, it would name another product
URL = "https://shop.example/product/" + "x" * 2100  # cut, it would be a broken link
EMAIL = "a" * 250 + "@example.test"  # an address, but over 254 characters


def stored_product(conn: Conn, project: uuid.UUID, source: str, external_id: str) -> Any:
    return one(
        conn,
        "select title, sku, url, image_url, category from public.products"
        " where project_id = %s and source = %s and external_id = %s",
        (project, source, external_id),
    )


def order_contact(conn: Conn, project: uuid.UUID, external_id: str) -> Any:
    return one(
        conn,
        "select c.first_name, c.last_name, c.email,"
        " (select count(*) from public.order_items i where i.order_id = o.id) as items"
        " from public.orders o join public.contacts c on c.id = o.contact_id"
        " where o.project_id = %s and o.external_id = %s",
        (project, external_id),
    )


def accepted(answer: Any) -> None:
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"] == {"outcome": "accepted"}


def test_shopify_orders_customers_and_products_with_over_long_values_are_stored_fitted(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    customer = shopify_order(1)["customer"] | {"id": 7101, "first_name": NAME, "last_name": NAME}
    line = {"id": 1, "title": TITLE, "sku": SKU, "quantity": 1, "price": "1299.00"}
    accepted(
        post_shopify(client, project, shopify_order(5101, customer=customer, line_items=[line]))
    )
    assert order_contact(conn, project, "5101") == {
        "first_name": NAME[:200],
        "last_name": NAME[:200],
        "email": "jana.novak@example.test",
        "items": 1,
    }

    body = shopify_customer_body(7102, first_name=NAME, last_name="Dvořák", email=EMAIL)
    accepted(post_shopify(client, project, body, topic="customers/create"))
    stored = contact_of(conn, project, "shopify", "7102")
    assert (stored["first_name"], stored["last_name"], stored["email"]) == (
        NAME[:200],
        "Dvořák",
        None,
    )

    product = shopify_product_body(
        8101, title=TITLE, product_type=TITLE, image={"id": 1, "src": URL}
    )
    product["variants"][0]["sku"] = SKU
    accepted(post_shopify(client, project, product, topic="products/create"))
    assert stored_product(conn, project, "shopify", "8101") == {
        "title": TITLE[:500],
        "sku": None,
        "url": None,
        "image_url": None,
        "category": TITLE[:500],
    }
    variants = conn.execute(
        "select v.external_id, v.sku from public.product_variants v"
        " join public.products p on p.id = v.product_id"
        " where p.project_id = %s order by v.external_id",
        (project,),
    ).fetchall()
    assert [(v["external_id"], v["sku"]) for v in variants] == [("11", None), ("12", "RS-43")]


def test_woocommerce_orders_customers_and_products_with_over_long_values_are_stored_fitted(
    client: TestClient,  # noqa: F811
    conn: Conn,
    shop: tuple[User, uuid.UUID],  # noqa: F811
) -> None:
    _, project = shop
    billing = {
        "first_name": NAME,
        "last_name": NAME,
        "email": "peter@example.test",
        "country": "SK",
    }
    accepted(
        post_to_woocommerce(
            client, project, woocommerce_order(6101, billing=billing), "order.created"
        )
    )
    assert order_contact(conn, project, "6101") == {
        "first_name": NAME[:200],
        "last_name": NAME[:200],
        "email": "peter@example.test",
        "items": 1,
    }

    customer = woocommerce_customer_body(13, first_name="Marek", last_name=NAME, email=EMAIL)
    accepted(post_to_woocommerce(client, project, customer, "customer.created"))
    stored = contact_of(conn, project, "woocommerce", "13")
    # The address over 254 characters is dropped: the customer is kept by their shop id.
    assert (stored["first_name"], stored["last_name"], stored["email"]) == (
        "Marek",
        NAME[:200],
        None,
    )

    product = woocommerce_product_body(
        9101,
        name=TITLE,
        sku=SKU,
        permalink=URL,
        categories=[{"id": 9, "name": TITLE, "slug": "mugs"}],
    )
    accepted(post_to_woocommerce(client, project, product, "product.created"))
    assert stored_product(conn, project, "woocommerce", "9101") == {
        "title": TITLE[:500],
        "sku": None,
        "url": None,
        "image_url": "https://shop.example/wp-content/uploads/mug.jpg",
        "category": TITLE[:500],
    }
