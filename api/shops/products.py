"""Mapping Shopify and WooCommerce product payloads (their product webhooks' bodies) onto the
product shape private.upsert_shop_product takes; the fields read are checked for shape first,
as orders' are."""

from typing import Any

from pydantic import StrictInt

from api.shops.orders import Scalar, Shape, check_shape, require


class Money(Shape):
    amount: Scalar | None = None
    currency_code: str | None = None


class PresentmentPrice(Shape):
    price: Money | None = None


class ShopifyVariant(Shape):
    id: Scalar | None = None
    title: str | None = None
    sku: str | None = None
    price: Scalar | None = None
    inventory_quantity: StrictInt | None = None
    presentment_prices: list[PresentmentPrice] | None = None


class Image(Shape):
    src: str | None = None


class ShopifyProductBody(Shape):
    """Shopify's product webhook body (the REST Admin API Product): the fields the edge reads."""

    id: Scalar | None = None
    title: str | None = None
    product_type: str | None = None
    status: str | None = None
    image: Image | None = None
    variants: list[ShopifyVariant] | None = None


class Category(Shape):
    name: str | None = None


class WooCommerceProductBody(Shape):
    """WooCommerce's product webhook body (the REST API v3 product): the fields the edge reads.
    `product.deleted` sends only the id."""

    id: Scalar | None = None
    name: str | None = None
    sku: str | None = None
    price: Scalar | None = None
    stock_quantity: StrictInt | None = None
    permalink: str | None = None
    status: str | None = None
    categories: list[Category] | None = None
    images: list[Image] | None = None


SHOPIFY_STATUSES = {"active": "active", "draft": "draft", "archived": "archived"}
WOOCOMMERCE_STATUSES = {
    "publish": "active",
    "draft": "draft",
    "pending": "draft",
    "private": "draft",
    "future": "draft",
    "trash": "archived",
}


def priced(variant: dict[str, Any]) -> dict[str, Any]:
    """A Shopify variant's price with its currency, which only its presentment prices name (a
    price without a currency is not kept)."""
    for presentment in variant.get("presentment_prices") or []:
        money = presentment.get("price") or {}
        if money.get("amount") is not None and money.get("currency_code"):
            return {"price": str(money["amount"]), "currency": money["currency_code"]}
    return {}


def shopify_product(product: dict[str, Any]) -> dict[str, Any]:
    check_shape(ShopifyProductBody, product)
    require(product, "id", "title")
    return {
        "external_id": str(product["id"]),
        "title": product["title"],
        "category": product.get("product_type") or None,
        "status": SHOPIFY_STATUSES.get(str(product.get("status")), "active"),
        "image_url": (product.get("image") or {}).get("src"),
        "variants": [
            {
                "external_id": str(variant["id"]),
                "title": variant.get("title") or None,
                "sku": variant.get("sku") or None,
                "inventory": variant.get("inventory_quantity"),
                **priced(variant),
            }
            for variant in product.get("variants") or []
            if variant.get("id") is not None
        ],
    }


def woocommerce_product(product: dict[str, Any]) -> dict[str, Any]:
    check_shape(WooCommerceProductBody, product)
    require(product, "id", "name")
    categories = product.get("categories") or []
    images = product.get("images") or []
    return {
        "external_id": str(product["id"]),
        "title": product["name"],
        "sku": product.get("sku") or None,
        "inventory": product.get("stock_quantity"),
        "url": product.get("permalink") or None,
        "image_url": images[0].get("src") if images else None,
        "category": categories[0].get("name") if categories else None,
        "status": WOOCOMMERCE_STATUSES.get(str(product.get("status")), "active"),
    }


def deleted_product(shape: type[Shape], product: dict[str, Any]) -> dict[str, Any]:
    """A deleted product as its shop id (both shops send at least the id)."""
    check_shape(shape, product)
    require(product, "id")
    return {"external_id": str(product["id"])}


def shopify_deleted_product(product: dict[str, Any]) -> dict[str, Any]:
    return deleted_product(ShopifyProductBody, product)


def woocommerce_deleted_product(product: dict[str, Any]) -> dict[str, Any]:
    return deleted_product(WooCommerceProductBody, product)
