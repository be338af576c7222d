"""Shopify's and WooCommerce's product exports, a row at a time, as the rows of our own products
file (README, Products): which product a row belongs to, whether it is the product's row or a
variant's, and the values each of our columns takes. Rows are read one by one as they stream
in; the one fact that needs another row, a WooCommerce variation whose `Parent` is its product's
SKU, is staged as that SKU (`parent_sku`) and found in the staged file by the database
(private.validate_products_import). The database checks every value afterwards, as it does our
own file's."""

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api.core.db import Connection
from api.imports.columns import WOOCOMMERCE_ATTRIBUTES, read_as

# Shopify's one variant of a product without options (`Option1 Name` Title).
DEFAULT_TITLE = "Default Title"
# A category path (`Clothing > Shirts`): its last part is the product's category.
PATH_STEP = re.compile(r"\s*>\s*")
# WooCommerce separates a list's items with commas and writes a comma inside one as `\,`.
LIST_ITEM = re.compile(r"(?<!\\),")
WOOCOMMERCE_PUBLISHED = {"1": "active", "0": "draft", "-1": "draft"}
SHOPIFY_PUBLISHED = {"true": "active", "false": "draft"}
# Shopify's `unlisted` product is sold, only hidden from the store's search and collections.
SHOPIFY_STATUSES = {"unlisted": "active"}


@dataclass
class ProductRow:
    """A row as ours: values by our column names (absent: empty), and what the row needs beside
    them."""

    values: dict[str, str | None] = field(default_factory=dict)
    # A WooCommerce variation's product named by its SKU, for the database to find.
    parent_sku: str | None = None
    # A row holding nothing we keep (Shopify's row of a further image): staged, never checked.
    skipped: bool = False
    problem: str | None = None
    column: str | None = None

    def refuse(self, problem: str, column: str) -> None:
        if self.problem is None:
            self.problem, self.column = problem, column


def first_item(value: str) -> str:
    """A WooCommerce list's first item (`a.jpg, b.jpg` → `a.jpg`), its `\\,` read as a comma."""
    return LIST_ITEM.split(value, 1)[0].replace("\\,", ",").strip()


def last_step(path: str) -> str:
    """`Apparel & Accessories > Clothing > Shirts` → `Shirts`."""
    return PATH_STEP.split(path.strip())[-1]


class ProductExport(ABC):
    """Reads one tool's export rows by the positions of its columns (`position`: our column or
    the export's helper name → the column's index). `currency` is the prices' currency when a
    row names none (the export has no currency column): the one the export's own store's
    connection keeps, else the one its synced products' prices are in, if any."""

    tool = ""

    def __init__(self, position: dict[str, int], currency: str | None) -> None:
        self.position = position
        self.currency = currency

    def reader(self, fields: list[str]) -> Callable[[str], str]:
        count = len(fields)

        def value(name: str) -> str:
            at = self.position.get(name)
            return fields[at].strip() if at is not None and at < count else ""

        return value

    @abstractmethod
    def row(self, fields: list[str]) -> ProductRow:
        """One export row as a row of our products file."""

    def priced(self, row: ProductRow, value: Callable[[str], str]) -> None:
        """The row's currency: its own (a `Currency` column added to the file), else the
        store connection's; a price without either is the row's problem."""
        currency = value("currency") or self.currency
        row.values["currency"] = currency or None
        price = row.values.get("price") or row.values.get("variant_price")
        if price and not currency:
            column = "price" if row.values.get("price") else "variant_price"
            row.refuse(
                f"{column} has no currency: {self.tool}'s export names none. Add a Currency"
                " column to the file with the prices' currency on each row (EUR, CZK, …)",
                column,
            )


class ShopifyProducts(ProductExport):
    """A row with a Title is the product's (its Type the category, else the last part of its
    Product Category; Status, `unlisted` read as active, else Published; Image Src its image).
    A row with option values is a variant: its id and title the values joined (`Red / M`), its
    SKU, price, inventory (when Shopify tracks it) and image. A product without options (its
    one variant `Default Title`, or a file without option columns) keeps that variant's SKU,
    price and inventory itself. A row with neither (a further image) is skipped."""

    tool = "Shopify"

    def row(self, fields: list[str]) -> ProductRow:
        value = self.reader(fields)
        row = ProductRow()
        handle, title = value("shopify_handle"), value("title")
        options = [
            value(f"shopify_option{n}_value")
            for n in (1, 2, 3)
            if value(f"shopify_option{n}_value")
        ]
        sku, price = value("variant_sku"), value("variant_price")
        tracked = "shopify_inventory_tracker" not in self.position or bool(
            value("shopify_inventory_tracker")
        )
        inventory = value("variant_inventory") if tracked else ""
        row.values["product_id"] = handle or None
        if not title and not options and not sku and not price:
            row.skipped = bool(handle)
            return row
        if title:
            published = SHOPIFY_PUBLISHED.get(value("shopify_published").lower(), "active")
            row.values.update(
                title=title,
                category=value("category") or last_step(value("shopify_product_category")) or None,
                status=SHOPIFY_STATUSES.get(value("status").lower(), value("status")) or published,
                image_url=value("image_url") or None,
            )
        if options == [DEFAULT_TITLE] or (title and not options):
            row.values.update(sku=sku or None, price=price or None, inventory=inventory or None)
        elif options:
            named = " / ".join(options)
            row.values.update(
                variant_id=named,
                variant_title=named,
                variant_sku=sku or None,
                variant_price=price or None,
                variant_inventory=inventory or None,
                variant_image_url=value("variant_image_url") or None,
            )
        else:
            row.refuse("Option1 Value is empty: a variant's row names its options", "variant_id")
        self.priced(row, value)
        return row


class WooCommerceProducts(ProductExport):
    """A row is a product (ID its id, Name, SKU, Stock, the first path of Categories its last
    part, the first of Images; Published 1 active, 0 or -1 draft) or, with Type `variation`, a
    variant of the product its `Parent` names (`id:123`, or that product's SKU), keyed by its
    own ID, its title its attribute values (`Red / XL`, else its Name). The price is the Sale
    price when there is one (its dates are not read), else the Regular price."""

    tool = "WooCommerce"

    def row(self, fields: list[str]) -> ProductRow:
        value = self.reader(fields)
        row = ProductRow()
        kind = value("woocommerce_type").partition(",")[0].strip().lower()
        own_id = value("woocommerce_id")
        price = value("woocommerce_sale_price") or value("price")
        published = value("woocommerce_published")
        status = WOOCOMMERCE_PUBLISHED.get(published) if published else "active"
        if status is None:
            row.refuse("Published must be 1, 0 or -1", "status")
        images = first_item(value("woocommerce_images")) or None
        if kind != "variation":
            categories = first_item(value("woocommerce_categories"))
            row.values.update(
                product_id=own_id or None,
                title=value("title") or None,
                sku=value("sku") or None,
                price=price or None,
                inventory=value("inventory") or None,
                category=last_step(categories) or None,
                image_url=images,
                status=status,
            )
            if not own_id:
                row.refuse("ID is empty: a product's row names its ID", "product_id")
        else:
            parent = value("woocommerce_parent")
            if parent.lower().startswith("id:"):
                row.values["product_id"] = parent[3:].strip() or None
            elif parent:
                row.parent_sku = parent
            else:
                row.refuse("Parent is empty: a variation names its product", "product_id")
            attributes = [
                value(f"woocommerce_attribute{n}_value")
                for n in range(1, WOOCOMMERCE_ATTRIBUTES + 1)
                if value(f"woocommerce_attribute{n}_value")
            ]
            row.values.update(
                variant_id=own_id or None,
                variant_title=" / ".join(attributes) or value("title") or None,
                variant_sku=value("sku") or None,
                variant_price=price or None,
                variant_inventory=value("inventory") or None,
                variant_image_url=images,
                variant_status=status,
            )
            if not own_id:
                row.refuse("ID is empty: a variation's row names its ID", "variant_id")
        self.priced(row, value)
        return row


EXPORTS: dict[str, type[ProductExport]] = {
    "shopify": ShopifyProducts,
    "woocommerce": WooCommerceProducts,
}


def product_export_of(names: set[str]) -> str | None:
    """Which tool's export a products file is, from the names its columns are read as."""
    for tool in EXPORTS:
        if any(name.startswith(tool + "_") for name in names):
            return tool
    return None


# A product export imported into the project whose store's sync keeps the same catalog.
STORE_KEEPS_CATALOG = "store_keeps_catalog"
# The exports keyed by the store's own ids, stored as the store's sync stores its catalog
# (private.import_product_source): WooCommerce's `ID` is the id its REST API and webhooks name a
# product or a variation by, so the export and the store's sync update one catalog in either
# order. Shopify's export names a product by its Handle only, which the store's sync never
# stores.
KEYED_AS_THE_STORE = frozenset({"woocommerce"})


def store_catalog_refusal(conn: Connection, job: dict[str, Any], targets: list[str]) -> str | None:
    """Why a products job reading a shop's export is refused, or None: its project holds
    products its own shop's sync stored (private.import_store_keeps_catalog) and the export
    does not name them by the store's ids (Shopify's). The export would be a second copy of
    that catalog (source `csv`, beside the store's), and order lines found by a SKU that two
    products then share would stay unlinked. WooCommerce's export is never refused: it updates
    the store's products."""
    if job["kind"] != "products" or job["project_id"] is None:
        return None
    tool = product_export_of({read_as(target)[0] for target in targets})
    if tool is None or tool in KEYED_AS_THE_STORE:
        return None
    row = conn.execute(
        "select private.import_store_keeps_catalog(%s, %s) as kept", (job["project_id"], tool)
    ).fetchone()
    if not (row and row["kept"]):
        return None
    name = EXPORTS[tool].tool
    return (
        f"This project's products come from its connected {name} store, whose sync keeps them:"
        f" importing {name}'s products export here would store each product a second time."
        " The store's catalog needs no import; import the export into a project without the"
        " store"
    )
