"""Mapping Shopify and WooCommerce product payloads (their product webhooks' bodies) onto the
product shape private.upsert_shop_product takes; the fields read are checked for shape first,
as orders' are."""

from collections.abc import Callable
from typing import Any

from pydantic import StrictInt

from api.shops.orders import (
    MalformedOrderError,
    Scalar,
    Shape,
    UnsupportedOrderError,
    check_shape,
    require,
)


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
    type: str | None = None


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
    """A Shopify variant's price with its currency where its presentment prices name one;
    otherwise its `price` alone, which is in the shop's currency: the database keeps it in the
    currency the shop's connection knows (its orders' and the backfill's), else drops it."""
    for presentment in variant.get("presentment_prices") or []:
        money = presentment.get("price") or {}
        if money.get("amount") is not None and money.get("currency_code"):
            return {"price": str(money["amount"]), "currency": money["currency_code"]}
    price = variant.get("price")
    return {} if price is None or price == "" else {"price": str(price)}


def stated(
    body: dict[str, Any], fields: dict[str, tuple[str, Callable[[], Any]]]
) -> dict[str, Any]:
    """The document's fields that the body states: each field (name → the payload key it is
    read from, and its reader) whose key the body carries, None when the shop states it has
    none. A field whose key the body lacks is left out of the document, and the page upsert
    keeps the value stored for it: a writer that knows nothing of a field must not blank what
    another writer stored."""
    return {name: read() for name, (key, read) in fields.items() if key in body}


def shopify_variant(variant: dict[str, Any]) -> dict[str, Any]:
    return {
        "external_id": str(variant["id"]),
        **stated(
            variant,
            {
                "title": ("title", lambda: variant.get("title") or None),
                "sku": ("sku", lambda: variant.get("sku") or None),
                "inventory": ("inventory_quantity", lambda: variant.get("inventory_quantity")),
            },
        ),
        **priced(variant),
    }


def shopify_product(product: dict[str, Any]) -> dict[str, Any]:
    """A Shopify product with its variants; the REST product names no URL (the backfill adds
    its `onlineStoreUrl`), so its document leaves the URL out."""
    check_shape(ShopifyProductBody, product)
    require(product, "id", "title")
    return {
        "external_id": str(product["id"]),
        "title": product["title"],
        **stated(
            product,
            {
                "category": ("product_type", lambda: product.get("product_type") or None),
                "status": (
                    "status",
                    lambda: SHOPIFY_STATUSES.get(str(product.get("status")), "active"),
                ),
                "image_url": ("image", lambda: (product.get("image") or {}).get("src")),
            },
        ),
        "variants": [
            shopify_variant(variant)
            for variant in product.get("variants") or []
            if variant.get("id") is not None
        ],
    }


def woocommerce_product(product: dict[str, Any]) -> dict[str, Any]:
    """A WooCommerce product without its price (a webhook names no currency: the backfill
    prices it) and without the fields its body lacks."""
    check_shape(WooCommerceProductBody, product)
    require(product, "id", "name")
    categories = product.get("categories") or []
    images = product.get("images") or []
    return {
        "external_id": str(product["id"]),
        "title": product["name"],
        **stated(
            product,
            {
                "sku": ("sku", lambda: product.get("sku") or None),
                "inventory": ("stock_quantity", lambda: product.get("stock_quantity")),
                "url": ("permalink", lambda: product.get("permalink") or None),
                "image_url": ("images", lambda: images[0].get("src") if images else None),
                "category": (
                    "categories",
                    lambda: categories[0].get("name") if categories else None,
                ),
                "status": (
                    "status",
                    lambda: WOOCOMMERCE_STATUSES.get(str(product.get("status")), "active"),
                ),
            },
        ),
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


class Attribute(Shape):
    name: str | None = None
    option: str | None = None


class WooCommerceVariation(Shape):
    """A WooCommerce product variation (REST API v3 `/products/<id>/variations`): the fields
    the edge reads."""

    id: Scalar | None = None
    sku: str | None = None
    price: Scalar | None = None
    stock_quantity: StrictInt | None = None
    status: str | None = None
    image: Image | None = None
    attributes: list[Attribute] | None = None


def store_priced(body: dict[str, Any], currency: str | None) -> dict[str, Any]:
    """A WooCommerce product's or variation's price in the store's currency. Unknown (left out,
    the stored price kept) without the store's currency or a `price` key; an empty price is the
    store stating it has none (`price` None clears the stored price)."""
    if not currency or "price" not in body:
        return {}
    price = body["price"]
    if price is None or price == "":
        return {"price": None}
    return {"price": str(price), "currency": currency}


def woocommerce_variant(variation: dict[str, Any], currency: str | None) -> dict[str, Any]:
    """A variation as a variant: its title from its attributes' options (`Red / XL`), its price
    kept with the store's currency; a field its body lacks is left out."""
    check_shape(WooCommerceVariation, variation)
    require(variation, "id")
    options = [a.get("option") for a in variation.get("attributes") or [] if a.get("option")]
    return {
        "external_id": str(variation["id"]),
        **stated(
            variation,
            {
                "title": ("attributes", lambda: " / ".join(options) or None),
                "sku": ("sku", lambda: variation.get("sku") or None),
                "inventory": ("stock_quantity", lambda: variation.get("stock_quantity")),
                "image_url": ("image", lambda: (variation.get("image") or {}).get("src")),
                "status": (
                    "status",
                    lambda: WOOCOMMERCE_STATUSES.get(str(variation.get("status")), "active"),
                ),
            },
        ),
        **store_priced(variation, currency),
    }


def woocommerce_catalog_product(
    product: dict[str, Any], variations: list[dict[str, Any]] | None, currency: str | None
) -> dict[str, Any]:
    """A product read by the backfill: the webhook's mapping, its price with the store's
    currency, and for a variable product its variations as its variants (the variations a
    variation the shop sent malformed left out)."""
    document = {**woocommerce_product(product), **store_priced(product, currency)}
    if variations is not None:
        variants = []
        for variation in variations:
            try:
                variants.append(woocommerce_variant(variation, currency))
            except (MalformedOrderError, UnsupportedOrderError):
                continue
        document["variants"] = variants
    return document
