"""Product catalogs as Shopify and WooCommerce export them (Products → Export), imported through
the edge as downloaded: products, their variants, prices in the connected store's currency,
inventory and category stored; a further image's row skipped; a WooCommerce variation found
under the product its `Parent` names; a bad row reported on its line; the same file again
changes nothing."""

import csv
import io
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from api.core.settings import Settings
from tests.factories.workspaces import User, create_user, fund, make_project
from tests.fakes.jwks import JwksServer
from tests.imports.test_other_tools_exports import imported

Conn = psycopg.Connection[DictRow]


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = Settings(database_url=SecretStr(database_url), supabase_url=jwks.base_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def owner(conn: Conn) -> User:
    user = create_user(conn)
    fund(conn, user, 0, "team")
    return user


# Shopify's products export, its columns in Shopify's order (help.shopify.com, Using CSV files
# to import and export products).
SHOPIFY_COLUMNS = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Published",
    "Option1 Name", "Option1 Value", "Option1 Linked To", "Option2 Name", "Option2 Value",
    "Option2 Linked To", "Option3 Name", "Option3 Value", "Option3 Linked To", "Variant SKU",
    "Variant Grams", "Variant Inventory Tracker", "Variant Inventory Qty",
    "Variant Inventory Policy", "Variant Fulfillment Service", "Variant Price",
    "Variant Compare At Price", "Variant Requires Shipping", "Variant Taxable", "Variant Barcode",
    "Image Src", "Image Position", "Image Alt Text", "Gift Card", "SEO Title", "SEO Description",
    "Google Shopping / Google Product Category", "Variant Image", "Variant Weight Unit",
    "Variant Tax Code", "Cost per item", "Status",
]  # fmt: skip
IMG = "https://cdn.shopify.com/s/files/1/0001/products"


def shopify_variant(
    handle: str, color: str, size: str, sku: str, price: str, qty: str
) -> dict[str, str]:
    return {
        "Handle": handle, "Option1 Value": color, "Option2 Value": size, "Variant SKU": sku,
        "Variant Grams": "200", "Variant Inventory Tracker": "shopify",
        "Variant Inventory Qty": qty, "Variant Inventory Policy": "deny",
        "Variant Fulfillment Service": "manual", "Variant Price": price,
        "Variant Requires Shipping": "true", "Variant Taxable": "true",
        "Variant Weight Unit": "kg",
    }  # fmt: skip


def shopify_file(extra_columns: dict[str, str] | None = None) -> bytes:
    tee = {
        "Title": "Classic Tee",
        "Body (HTML)": "<p>Soft <b>cotton</b>, two colours</p>",
        "Vendor": "Kavárna",
        "Product Category": "Apparel & Accessories > Clothing > Shirts & Tops",
        "Type": "Shirts",
        "Tags": "cotton, summer",
        "Published": "true",
        "Option1 Name": "Color",
        "Option2 Name": "Size",
        "Image Src": f"{IMG}/tee-1.jpg",
        "Image Position": "1",
        "Gift Card": "false",
        "Status": "active",
    }
    single = {
        "Option1 Name": "Title",
        "Option1 Value": "Default Title",
        "Published": "true",
        "Image Position": "1",
        "Gift Card": "false",
    }
    rows = [
        {**shopify_variant("classic-tee", "Black", "M", "TEE-BLK-M", "25.00", "10"), **tee},
        shopify_variant("classic-tee", "Black", "L", "TEE-BLK-L", "25.00", "4"),
        {**shopify_variant("classic-tee", "White", "M", "", "22.50", "0"),
         "Variant Image": f"{IMG}/tee-white.jpg"},
        # A further image of the tee: the Handle, the image and its position only.
        {"Handle": "classic-tee", "Image Src": f"{IMG}/tee-2.jpg", "Image Position": "2"},
        {**shopify_variant("ceramic-mug", "Default Title", "", "MUG-1", "12.00", "30"), **single,
         "Title": "Ceramic Mug", "Type": "",
         "Product Category": "Home & Garden > Kitchen & Dining > Tableware > Drinkware > Mugs",
         "Image Src": f"{IMG}/mug.jpg", "Status": "draft"},
        {**shopify_variant("gift-card", "Default Title", "", "", "50.00", "0"), **single,
         "Title": "Gift Card", "Type": "Gift Cards", "Variant Inventory Tracker": "",
         "Gift Card": "true", "Status": "active"},
        # A price Shopify would never write: this row is reported, the others import.
        {**shopify_variant("canvas-bag", "Default Title", "", "BAG-1", "twelve", "3"), **single,
         "Title": "Canvas Bag", "Type": "Bags", "Status": "active"},
    ]  # fmt: skip
    return write_csv(SHOPIFY_COLUMNS, rows, extra_columns)


def write_csv(
    columns: list[str], rows: list[dict[str, str]], extra: dict[str, str] | None = None
) -> bytes:
    out = io.StringIO()
    header = [*columns, *(extra or {})]
    writer = csv.DictWriter(out, header, restval="", lineterminator="\r\n")
    writer.writeheader()
    writer.writerows({**row, **(extra or {})} for row in rows)
    return out.getvalue().encode()


# WooCommerce's products export (WooCommerce 9, all columns), written with a byte-order mark.
WOO_COLUMNS = [
    "ID", "Type", "SKU", "GTIN, UPC, EAN, or ISBN", "Name", "Published", "Is featured?",
    "Visibility in catalog", "Short description", "Description", "Date sale price starts",
    "Date sale price ends", "Tax status", "Tax class", "In stock?", "Stock", "Low stock amount",
    "Backorders allowed?", "Sold individually?", "Weight (kg)", "Length (cm)", "Width (cm)",
    "Height (cm)", "Allow customer reviews?", "Purchase note", "Sale price", "Regular price",
    "Categories", "Tags", "Shipping class", "Images", "Download limit", "Download expiry days",
    "Parent", "Grouped products", "Upsells", "Cross-sells", "External URL", "Button text",
    "Position", "Brands", "Attribute 1 name", "Attribute 1 value(s)", "Attribute 1 visible",
    "Attribute 1 global", "Attribute 2 name", "Attribute 2 value(s)", "Attribute 2 visible",
    "Attribute 2 global",
]  # fmt: skip
WOO = "https://shop.example/wp-content/uploads"


def woo_row(**values: str) -> dict[str, str]:
    base = {
        "Published": "1", "Is featured?": "0", "Visibility in catalog": "visible",
        "Tax status": "taxable", "In stock?": "1", "Backorders allowed?": "0",
        "Sold individually?": "0", "Allow customer reviews?": "1", "Position": "0",
    }  # fmt: skip
    return {**base, **{name.replace("_", " "): value for name, value in values.items()}}


def woo_file(extra_columns: dict[str, str] | None = None) -> bytes:
    rows = [
        {**woo_row(ID="101", Type="variable", SKU="HOODIE", Name="Hoodie"),
         "Categories": "Clothing > Hoodies, Sale", "Tags": "warm",
         "Images": f"{WOO}/hoodie.jpg, {WOO}/hoodie-back.jpg",
         "Attribute 1 name": "Color", "Attribute 1 value(s)": "Red, Blue",
         "Attribute 1 visible": "1", "Attribute 1 global": "1",
         "Attribute 2 name": "Size", "Attribute 2 value(s)": "M, L",
         "Attribute 2 visible": "1", "Attribute 2 global": "1"},
        # Its variations, named by the product's SKU (WooCommerce writes `id:101` only for a
        # product without one).
        {**woo_row(ID="102", Type="variation", SKU="HOODIE-RED-M", Name="Hoodie - Red, M"),
         "Stock": "5", "Sale price": "39.90", "Regular price": "45", "Parent": "HOODIE",
         "Images": f"{WOO}/hoodie-red.jpg", "Attribute 1 name": "Color",
         "Attribute 1 value(s)": "Red", "Attribute 2 name": "Size", "Attribute 2 value(s)": "M"},
        {**woo_row(ID="103", Type="variation", SKU="", Name="Hoodie - Blue, L", Published="-1"),
         "Stock": "0", "Regular price": "45", "Parent": "HOODIE", "Attribute 1 name": "Color",
         "Attribute 1 value(s)": "Blue", "Attribute 2 name": "Size", "Attribute 2 value(s)": "L"},
        {**woo_row(ID="104", Type="simple", SKU="BEAN-250", Name="Coffee beans 250 g"),
         "Stock": "40", "Regular price": "12.50", "Categories": "Coffee",
         "Images": f"{WOO}/beans.jpg"},
        {**woo_row(ID="105", Type="variable", SKU="", Name="Cap", Published="0"),
         "Categories": "Accessories > Hats\\, caps and more", "Attribute 1 name": "Size",
         "Attribute 1 value(s)": "One size"},
        {**woo_row(ID="106", Type="variation", SKU="CAP-1", Name="Cap - One size"),
         "Regular price": "15", "Parent": "id:105", "Attribute 1 name": "Size",
         "Attribute 1 value(s)": "One size"},
        # Two bad rows: stock that is not a number, a variation of a product not in the file.
        {**woo_row(ID="107", Type="simple", SKU="MUG-2", Name="Mug"), "Stock": "lots",
         "Regular price": "9"},
        {**woo_row(ID="108", Type="variation", SKU="GONE-1", Name="Gone - S"),
         "Regular price": "9", "Parent": "NOPE"},
    ]  # fmt: skip
    return b"\xef\xbb\xbf" + write_csv(WOO_COLUMNS, rows, extra_columns)


def connect_store(
    conn: Conn, user: User, project: uuid.UUID, source: str, currency: str | None
) -> None:
    """The project's store connected; Shopify's currency known as its orders name it."""
    conn.execute(
        "insert into private.integrations (project_id, source, workspace_id, currency)"
        " values (%s, %s, %s, %s)",
        (project, source, user.workspace_id, currency),
    )


def catalog(conn: Conn, project: uuid.UUID, source: str = "csv") -> dict[str, Any]:
    """The project's products of the source by id: their fields and their variants by id."""
    products = conn.execute(
        "select p.external_id, p.source, p.title, p.sku, p.price::text, p.currency, p.inventory,"
        " p.image_url, p.category, p.status, p.updated_at,"
        " coalesce((select jsonb_object_agg(v.external_id, jsonb_build_array(v.title, v.sku,"
        "   v.price::text, v.currency, v.inventory, v.image_url, v.status, v.updated_at))"
        "  from public.product_variants v where v.product_id = p.id), '{}') as variants"
        " from public.products p where p.project_id = %s and p.source = %s",
        (project, source),
    ).fetchall()
    return {row["external_id"]: row for row in products}


def fields(product: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(
        product[name]
        for name in ("title", "sku", "price", "currency", "inventory", "image_url", "category",
                     "status")
    )  # fmt: skip


def variants(product: dict[str, Any]) -> dict[str, list[Any]]:
    """Each variant's title, SKU, price, currency, inventory, image and status."""
    return {key: value[:7] for key, value in product["variants"].items()}


def test_a_shopify_products_export_imports_as_downloaded_and_again_changes_nothing(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    project = make_project(conn, owner)
    connect_store(conn, owner, project, "shopify", "EUR")
    data = shopify_file()

    report = imported(client, jwks, owner, "products", data, "products_export_1.csv", project)

    assert report["status"] == "done"
    assert report["rows_total"] == 7
    # The bag's price is not a number: reported on its line, not stored.
    assert report["rows_failed"] == 1
    assert [(line, reason) for line, _, reason in report["errors"]] == [
        ("8", "price is not a number below 1000000000000")
    ]
    stored = catalog(conn, project)
    assert sorted(stored) == ["ceramic-mug", "classic-tee", "gift-card"]
    tee, mug, card = stored["classic-tee"], stored["ceramic-mug"], stored["gift-card"]
    # The tee's category is its Type; its image the first, not the further image's row.
    assert fields(tee) == (
        "Classic Tee", None, None, None, None, f"{IMG}/tee-1.jpg", "Shirts", "active",
    )  # fmt: skip
    assert variants(tee) == {
        "Black / M": ["Black / M", "TEE-BLK-M", "25.00", "EUR", 10, None, "active"],
        "Black / L": ["Black / L", "TEE-BLK-L", "25.00", "EUR", 4, None, "active"],
        "White / M": ["White / M", None, "22.50", "EUR", 0, f"{IMG}/tee-white.jpg", "active"],
    }
    # A product without options keeps its one variant's SKU, price and inventory; no Type: the
    # last part of its Product Category.
    assert fields(mug) == ("Ceramic Mug", "MUG-1", "12.00", "EUR", 30, f"{IMG}/mug.jpg",
                           "Mugs", "draft")  # fmt: skip
    assert variants(mug) == {}
    # Inventory Shopify does not track is not tracked here either.
    assert fields(card) == ("Gift Card", None, "50.00", "EUR", None, None, "Gift Cards", "active")

    again = imported(client, jwks, owner, "products", data, "products_export_1.csv", project)

    assert (again["status"], again["created"], again["updated"]) == ("done", 0, 0)
    assert again["unchanged"] == 6
    assert catalog(conn, project) == stored


def test_a_shopify_export_without_a_known_currency_says_how_to_give_one(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    project = make_project(conn, owner)

    report = imported(client, jwks, owner, "products", shopify_file(), "export.csv", project)

    assert report["status"] == "done"
    # Every priced row is reported (the bag's too: its missing currency comes first); nothing
    # is stored without its currency.
    reasons = {line: reason for line, _, reason in report["errors"]}
    assert sorted(reasons) == ["2", "3", "4", "6", "7", "8"]
    assert reasons["6"] == (
        "price has no currency: Shopify's export names none. Add a Currency column to the file"
        " with the prices' currency on each row (EUR, CZK, …)"
    )
    assert reasons["2"].startswith("variant_price has no currency")
    assert catalog(conn, project) == {}

    # A Currency column added to the file gives it.
    fixed = shopify_file({"Currency": "CZK"})
    report = imported(client, jwks, owner, "products", fixed, "export.csv", project)

    assert report["rows_failed"] == 1
    stored = catalog(conn, project)
    assert fields(stored["ceramic-mug"])[2:4] == ("12.00", "CZK")
    assert variants(stored["classic-tee"])["White / M"][2:4] == ["22.50", "CZK"]


def test_a_woocommerce_products_export_imports_variable_products_and_their_variations(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    project = make_project(conn, owner)
    # The store is connected but keeps no currency (a WooCommerce connection never does): the
    # Currency column added to the file gives it.
    connect_store(conn, owner, project, "woocommerce", None)
    data = woo_file({"Currency": "EUR"})

    report = imported(client, jwks, owner, "products", data, "wc-product-export.csv", project)

    assert report["status"] == "done"
    assert report["rows_total"] == 8
    assert [(line, column, reason) for line, column, reason in report["errors"]] == [
        ("8", "inventory", "inventory must be a whole number"),
        ("9", "product_id", "Parent NOPE is the SKU of no product in this file"),
    ]
    # Stored as the store's sync stores its catalog: source woocommerce, keyed by the IDs.
    assert catalog(conn, project) == {}
    stored = catalog(conn, project, "woocommerce")
    assert sorted(stored) == ["101", "104", "105"]
    hoodie, beans, cap = stored["101"], stored["104"], stored["105"]
    # The first category path's last part; the first image.
    assert fields(hoodie) == (
        "Hoodie", "HOODIE", None, None, None, f"{WOO}/hoodie.jpg", "Hoodies", "active",
    )  # fmt: skip
    # A variation named by its product's SKU is that product's variant, keyed by its ID; the
    # sale price is its price; Published -1 (a disabled variation) is draft.
    assert variants(hoodie) == {
        "102": ["Red / M", "HOODIE-RED-M", "39.90", "EUR", 5, f"{WOO}/hoodie-red.jpg", "active"],
        "103": ["Blue / L", None, "45.00", "EUR", 0, None, "draft"],
    }
    assert fields(beans) == ("Coffee beans 250 g", "BEAN-250", "12.50", "EUR", 40,
                             f"{WOO}/beans.jpg", "Coffee", "active")  # fmt: skip
    # `id:105` names the product by its ID; a category's escaped comma is a comma.
    assert fields(cap)[6:] == ("Hats, caps and more", "draft")
    assert variants(cap) == {"106": ["One size", "CAP-1", "15.00", "EUR", None, None, "active"]}

    again = imported(client, jwks, owner, "products", data, "wc-product-export.csv", project)

    assert (again["created"], again["updated"], again["rows_failed"]) == (0, 0, 2)
    assert catalog(conn, project, "woocommerce") == stored


def test_a_woocommerce_export_is_not_priced_in_another_stores_currency(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    project = make_project(conn, owner)
    # The project's Shopify connection knows EUR; its WooCommerce connection knows none.
    connect_store(conn, owner, project, "shopify", "EUR")
    connect_store(conn, owner, project, "woocommerce", None)

    report = imported(client, jwks, owner, "products", woo_file(), "wc.csv", project)

    # Every priced row is reported (not priced in Shopify's EUR); the unpriced hoodie and cap
    # are stored.
    reasons = {line: reason for line, _, reason in report["errors"]}
    assert reasons["5"] == (
        "price has no currency: WooCommerce's export names none. Add a Currency column to the"
        " file with the prices' currency on each row (EUR, CZK, …)"
    )
    assert reasons["3"].startswith("variant_price has no currency")
    assert sorted(catalog(conn, project, "woocommerce")) == ["101", "105"]
    assert {p["currency"] for p in catalog(conn, project, "woocommerce").values()} == {None}


def test_a_shopify_file_without_options_and_an_unlisted_product_import(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    project = make_project(conn, owner)
    connect_store(conn, owner, project, "shopify", "EUR")
    # The export's three columns alone: each row a product without variants.
    minimal = b"Handle,Title,Variant Price\r\nceramic-mug,Ceramic Mug,12.00\r\n"

    report = imported(client, jwks, owner, "products", minimal, "products.csv", project)

    assert (report["status"], report["created"], report["errors"]) == ("done", 1, [])
    mug = catalog(conn, project)["ceramic-mug"]
    assert fields(mug) == ("Ceramic Mug", None, "12.00", "EUR", None, None, None, "active")
    assert variants(mug) == {}

    # Shopify's `unlisted` product is sold (hidden from the store's search only): active.
    unlisted = write_csv(SHOPIFY_COLUMNS, [
        {**shopify_variant("secret-tee", "Black", "M", "TEE-S-M", "30.00", "2"),
         "Title": "Secret Tee", "Option1 Name": "Color", "Option2 Name": "Size",
         "Status": "unlisted"},
        shopify_variant("secret-tee", "Black", "L", "TEE-S-L", "30.00", "1"),
    ])  # fmt: skip

    report = imported(client, jwks, owner, "products", unlisted, "products.csv", project)

    assert (report["created"], report["errors"]) == (2, [])
    tee = catalog(conn, project)["secret-tee"]
    assert fields(tee)[7] == "active"
    assert sorted(variants(tee)) == ["Black / L", "Black / M"]
