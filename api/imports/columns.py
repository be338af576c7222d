"""What each kind of import reads from a file's header: the columns we know, the names other
tools give them, the ones a file must have, and where a row is staged. The database checks the
values; this only maps names."""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

ORDER_STATUSES = ("pending", "paid", "fulfilled", "cancelled", "refunded")
ITEM_COLUMNS = (
    "item_sku",
    "item_name",
    "item_quantity",
    "item_unit_price",
    "item_product_id",
    "item_variant_id",
)
VARIANT_COLUMNS = (
    "variant_id",
    "variant_title",
    "variant_sku",
    "variant_price",
    "variant_inventory",
    "variant_image_url",
    "variant_status",
)


def alias_key(name: str) -> str:
    """`Email Address`, `e-mail address` and `EMAIL_ADDRESS` are one name: case, spaces and
    punctuation do not count."""
    return re.sub(r"[\W_]+", "", name.lower())


@dataclass(frozen=True)
class Export:
    """A tool's export, recognised by column names only it writes together. Its names are read
    as ours, and its other columns (it writes dozens) are skipped rather than refused."""

    tool: str
    signature: frozenset[str]
    names: Mapping[str, str]
    # The columns the file must give, when not the kind's (a product export's rows say
    # themselves whether they are a product's or a variant's).
    required: tuple[str, ...] | None = None


# Read to fill our columns, not staged: Shopify's three status columns make an order's status
# (api.core.orders.shopify_status), a full name is cut into first and last name.
FOREIGN_COLUMNS = ("financial_status", "fulfillment_status", "cancelled_at", "full_name")
# Which of our fields a column fills: two columns filling one field make a header ambiguous.
FILLS = {"financial_status": ("status",), "full_name": ("first_name", "last_name")}


def aliases(names: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    return {alias_key(alias): ours for ours, spelt in names.items() for alias in spelt}


# Mailchimp (`Email Address`, `First Name`, `Last Name`, `Phone Number`, `TAGS`), Klaviyo
# (`Email`, `Phone Number`), Shopify's customers (`Email`, `Phone`, `Accepts Email Marketing`,
# `Default Address Country Code`, `Tags`), WooCommerce's (`Email`, `Name`) and what people type.
CONTACT_ALIASES = aliases(
    {
        "email": ("E-mail", "Email Address", "E-mail address", "Mail", "Customer Email"),
        "first_name": ("First Name", "Firstname", "FNAME", "Given Name", "Forename"),
        "last_name": ("Last Name", "Lastname", "LNAME", "Surname", "Family Name"),
        "full_name": ("Name", "Full Name", "Customer Name"),
        "phone": (
            "Phone Number",
            "Mobile",
            "Mobile Phone",
            "Mobile Number",
            "Cell",
            "Cell Phone",
            "Telephone",
            "Tel",
        ),
        "tags": ("Tag",),
        "consent": ("Accepts Email Marketing", "Accepts Marketing"),
        "consent_source": ("Consent Source",),
        "consent_at": ("Consent At", "Consent Date", "Consented At"),
        "country": ("Country Code", "Default Address Country Code"),
    }
)

ORDER_ALIASES = aliases(
    {
        "order_id": ("Order Number", "Order No", "Order #"),
        "placed_at": ("Order Date", "Created At", "Date Created"),
        "status": ("Order Status",),
        "total": ("Order Total",),
        "email": ("E-mail", "Email Address", "Customer Email"),
        "financial_status": ("Financial Status",),
    }
)

# Shopify's order export (Orders → Export): one row per line item, the order's first row with
# its totals and customer, its other rows with the line only. `Name` is the order number
# (`#1001`) and ties an order's rows; the numeric `Id` (on the first row only) is the id Shopify's
# webhooks and Admin API know the order by: staged as shop_order_id, it makes the order the
# store's (source shopify, external id the Id; private.validate_orders_import).
SHOPIFY_ORDERS = Export(
    tool="Shopify",
    signature=frozenset(alias_key(name) for name in ("Name", "Financial Status", "Lineitem name")),
    names=aliases(
        {
            "order_id": ("Name",),
            "shop_order_id": ("Id",),
            "email": ("Email",),
            "financial_status": ("Financial Status",),
            "fulfillment_status": ("Fulfillment Status",),
            "cancelled_at": ("Cancelled at",),
            "placed_at": ("Created at",),
            "total": ("Total",),
            "currency": ("Currency",),
            "item_quantity": ("Lineitem quantity",),
            "item_name": ("Lineitem name",),
            "item_unit_price": ("Lineitem price",),
            "item_sku": ("Lineitem sku",),
            "full_name": ("Billing Name",),
            "phone": ("Phone",),
            "country": ("Billing Country",),
        }
    ),
)


# Shopify's products export (Products → Export): one row per variant, a product's first row with
# its title, type and status, its other rows with the variant's columns only, and a row with only
# the Handle and an image for each further image. The Handle is the product's id; a variant is
# keyed by its option values (Shopify keeps them unique within a product). Its columns that are
# not ours are read per row (api.imports.product_exports), never staged.
SHOPIFY_PRODUCT_HELPERS = (
    "shopify_handle",
    "shopify_option1_value",
    "shopify_option2_value",
    "shopify_option3_value",
    "shopify_inventory_tracker",
    "shopify_product_category",
    "shopify_published",
)
SHOPIFY_PRODUCTS = Export(
    tool="Shopify",
    signature=frozenset(alias_key(name) for name in ("Handle", "Title", "Variant Price")),
    # A file of products without options (`Handle,Title,Variant Price`) names no variant.
    required=("product_id", "title"),
    names=aliases(
        {
            "shopify_handle": ("Handle",),
            "title": ("Title",),
            "category": ("Type",),
            "status": ("Status",),
            "image_url": ("Image Src",),
            "variant_sku": ("Variant SKU",),
            "variant_price": ("Variant Price",),
            "variant_inventory": ("Variant Inventory Qty",),
            "variant_image_url": ("Variant Image",),
            "currency": ("Currency",),
            "shopify_option1_value": ("Option1 Value",),
            "shopify_option2_value": ("Option2 Value",),
            "shopify_option3_value": ("Option3 Value",),
            "shopify_inventory_tracker": ("Variant Inventory Tracker",),
            "shopify_product_category": ("Product Category",),
            "shopify_published": ("Published",),
        }
    ),
)
# WooCommerce's products export (Products → Export): a row per product and per variation, a
# variation naming its product in `Parent` (`id:123`, or the product's SKU when it has one).
WOOCOMMERCE_ATTRIBUTES = 5
WOOCOMMERCE_PRODUCT_HELPERS = (
    "woocommerce_id",
    "woocommerce_type",
    "woocommerce_parent",
    "woocommerce_published",
    "woocommerce_sale_price",
    "woocommerce_categories",
    "woocommerce_images",
    *(f"woocommerce_attribute{n}_value" for n in range(1, WOOCOMMERCE_ATTRIBUTES + 1)),
)
WOOCOMMERCE_PRODUCTS = Export(
    tool="WooCommerce",
    signature=frozenset(alias_key(name) for name in ("ID", "Type", "Name", "Regular price")),
    required=("product_id", "title"),
    names=aliases(
        {
            "woocommerce_id": ("ID",),
            "woocommerce_type": ("Type",),
            "sku": ("SKU",),
            "title": ("Name",),
            "woocommerce_published": ("Published",),
            "woocommerce_sale_price": ("Sale price",),
            "price": ("Regular price",),
            "inventory": ("Stock",),
            "woocommerce_categories": ("Categories",),
            "woocommerce_images": ("Images",),
            "woocommerce_parent": ("Parent",),
            "currency": ("Currency",),
            **{
                f"woocommerce_attribute{n}_value": (f"Attribute {n} value(s)",)
                for n in range(1, WOOCOMMERCE_ATTRIBUTES + 1)
            },
        }
    ),
)
# What those columns give: the Handle a product's id (and marks the file as Shopify's export
# even when it has no other column of Shopify's own, `Handle,Title,Variant Price`); Option1
# Value a variant's id and title; ID a product's id, or a variation's (with its product's from
# `Parent`).
FILLS.update(
    {
        "shopify_handle": ("product_id",),
        "shopify_option1_value": ("variant_id", "variant_title"),
        "woocommerce_id": ("product_id", "variant_id"),
    }
)


@dataclass(frozen=True)
class ImportKind:
    name: str
    staging_table: str
    # Staged columns, in the staging table's order (after job_id, record, line).
    columns: tuple[str, ...]
    required: tuple[str, ...]
    # Read to normalise the phone but not staged.
    helper_columns: tuple[str, ...] = ()
    # Columns we do not know become custom attributes (contacts); otherwise they refuse the file.
    extra_columns_are_attributes: bool = False
    # An invalid phone is the row's problem (contacts) or is dropped (an order's customer).
    phone_is_required_valid: bool = False
    # Other tools' names for our columns, by alias_key (ours are read the same way).
    aliases: Mapping[str, str] = field(default_factory=dict)
    exports: tuple[Export, ...] = ()
    # Staged after `columns` when a file has them, filled only by an export's names.
    export_columns: tuple[str, ...] = ()
    # Read (not staged) only from an export, by its names: its columns that fill ours.
    export_helpers: tuple[str, ...] = ()

    def name_of(self, key: str) -> str | None:
        """Our column for a header name's alias_key, or None."""
        own = {alias_key(name): name for name in (*self.columns, *self.helper_columns)}
        return self.aliases.get(key) or own.get(key)

    def required_for(self, columns: list[str]) -> tuple[str, ...]:
        """An order file with line items may leave totals out (the lines add up); a catalog
        with variant columns names each row's variant, and its variant rows may leave the
        product's title to the product's first row."""
        if self.name == "orders" and set(columns) & set(ITEM_COLUMNS):
            return tuple(name for name in self.required if name != "total")
        if self.name == "products" and set(columns) & set(VARIANT_COLUMNS):
            return ("product_id", "variant_id")
        return self.required


ORDERS = ImportKind(
    name="orders",
    staging_table="import_order_rows",
    columns=(
        "order_id",
        "placed_at",
        "status",
        "total",
        "currency",
        "email",
        "phone",
        "first_name",
        "last_name",
        "customer_id",
        "exchange_rate",
        *ITEM_COLUMNS,
    ),
    required=("order_id", "placed_at", "status", "total", "currency"),
    helper_columns=("country", *FOREIGN_COLUMNS),
    aliases=ORDER_ALIASES,
    exports=(SHOPIFY_ORDERS,),
    export_columns=("shop_order_id",),
)

CONTACTS = ImportKind(
    name="contacts",
    staging_table="import_contact_rows",
    columns=(
        "email",
        "first_name",
        "last_name",
        "phone",
        "tags",
        "consent",
        "consent_source",
        "consent_at",
    ),
    required=("email",),
    helper_columns=("country", "full_name"),
    aliases=CONTACT_ALIASES,
    extra_columns_are_attributes=True,
    phone_is_required_valid=True,
)

PRODUCTS = ImportKind(
    name="products",
    staging_table="import_product_rows",
    columns=(
        "product_id",
        "title",
        "sku",
        "price",
        "currency",
        "inventory",
        "url",
        "image_url",
        "category",
        "status",
        *VARIANT_COLUMNS,
    ),
    required=("product_id", "title"),
    exports=(SHOPIFY_PRODUCTS, WOOCOMMERCE_PRODUCTS),
    export_helpers=(*SHOPIFY_PRODUCT_HELPERS, *WOOCOMMERCE_PRODUCT_HELPERS),
)

KINDS = {kind.name: kind for kind in (ORDERS, CONTACTS, PRODUCTS)}


class HeaderError(ValueError):
    """The header cannot be used: columns missing, unknown or repeated."""


def normalise_name(name: str) -> str:
    """`Order ID`, `order-id` and `order_id` are one column."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


ATTRIBUTE = "attribute:"


def quoted(name: str) -> str:
    return f'"{name}"' if len(name) <= 100 else f'"{name[:100]}…"'


# Read only to parse a phone, never stored: a contacts column that gives it under another tool's
# name (`Country Code`) is also kept as the custom attribute it was before aliases.
HINTS = ("country",)
# A target that is read as ours and also kept as an attribute: `country|attribute:Country Code`.
AND = "|"
# A target read as ours whose value, when our checks refuse it, is kept as an attribute instead
# of refusing the row: a column that was an attribute before aliases (`phone?attribute:Mobile`,
# `first_name?attribute:Firstname`, `consent?attribute:Accepts Marketing`). The edge stages its
# value in the field and beside it (kept_if_refused); the database's checks, which alone judge
# the value, keep it in the one or the other (private.import_contacts_chunk, reading the job's
# columns; for the phone, the edge's parse).
ELSE = "?"
# A column that fills several of our fields (a full name) gives them only when no other column
# gives one of them: it ranks below every alias.
LAST_RESORT = 3


def read_as(target: str) -> tuple[str, str | None]:
    """A target's column of ours ("" for none) and the attribute it is also kept as, if any."""
    if target.startswith(ATTRIBUTE):
        return "", target.removeprefix(ATTRIBUTE)
    target = target.partition(ELSE + ATTRIBUTE)[0]
    ours, _, attribute = target.partition(AND + ATTRIBUTE)
    return ours, attribute or None


def kept_if_refused(target: str) -> str | None:
    """The attribute a column read as ours is kept as when its value is refused (`ELSE`)."""
    if target.startswith(ATTRIBUTE):
        return None
    return target.partition(ELSE + ATTRIBUTE)[2] or None


def map_header(kind: ImportKind, header: list[str], column_map: dict[str, str | None]) -> list[str]:
    """For each of the file's columns, in order: our column, `attribute:<name>` (a contact's
    custom attribute), both (`read_as`) or "" (skipped). A column is ours by its name or an
    alias (`alias_key`: case, spaces and punctuation aside), or, in an export `kind.exports`
    recognises, by the tool's name (its other columns are skipped). In contacts (whose unknown
    columns are attributes) an alias gives a field only when no column gives it by our own
    name: `email,phone,Mobile` keeps `Mobile` as an attribute, as before aliases (`demoted`).
    Columns that give a field equally are ambiguous: refused when they are our own names or the
    field is required (`E-mail,Email Address`), otherwise kept as attributes. `column_map`
    renames a file's column (by its name as written) to ours, or skips it with None."""
    keys = [alias_key(raw) for raw in header]
    export = next((e for e in kind.exports if e.signature <= set(keys)), None)
    known = set(kind.columns) | set(kind.helper_columns)
    if export is not None:
        known |= set(kind.export_columns) | set(kind.export_helpers)
    targets: list[str] = []
    # How a column was named ours: 0 by our name (or column_map), 1 by it spelt otherwise
    # (`FIRST.NAME`), 2 by an alias.
    ranks: list[int] = []
    unknown: list[str] = []
    for raw, key in zip(header, keys, strict=True):
        name = raw.strip()
        target: str | None
        rank = 0
        if name in column_map:
            mapped = column_map[name]
            target = (kind.name_of(alias_key(mapped)) or normalise_name(mapped)) if mapped else ""
        elif not name:
            target = ""
        elif export is not None:
            target = export.names.get(key, "")
        else:
            target = kind.name_of(key)
            if target is not None and normalise_name(name) != target:
                rank = 2 if key in kind.aliases else 1
        if target is None or (target and target not in known):
            if kind.extra_columns_are_attributes:
                target = ATTRIBUTE + name[:100]
            else:
                unknown.append(name if len(name) <= 100 else f"{name[:100]}…")
                target = ""
        targets.append(target)
        ranks.append(rank)
    if kind.extra_columns_are_attributes:
        targets = demoted(kind, header, targets, ranks)
    filled: dict[str, list[str]] = {}
    for raw, target in zip(header, targets, strict=True):
        ours = read_as(target)[0]
        if ours:
            for one in FILLS.get(ours, (ours,)):
                filled.setdefault(one, []).append(raw.strip())
    required = export.required if export is not None and export.required else None
    missing = [name for name in required or kind.required_for(list(filled)) if name not in filled]
    problems = []
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown columns: {', '.join(unknown)}")
    told: set[tuple[str, ...]] = set()
    for ours, names in filled.items():
        if len(names) > 1 and tuple(names) not in told:
            told.add(tuple(names))
            both = "both" if len(names) == 2 else "all"
            listed = ", ".join(map(quoted, names[:-1])) + " and " + quoted(names[-1])
            problems.append(f"columns {listed} {both} give {ours} (skip one with column_map)")
    if problems:
        raise HeaderError("; ".join(problems))
    return targets


def demoted(kind: ImportKind, header: list[str], targets: list[str], ranks: list[int]) -> list[str]:
    """Contacts: a column named ours less directly than another column giving one of its fields
    is kept as an attribute, as it was before aliases; so are columns tied for a field that none
    of our own names gives, unless the field is required (then the header is refused). A full
    name ranks last (`LAST_RESORT`). A hint (`HINTS`) not by our own name is kept as an
    attribute too; any other field not by our own name (an attribute before aliases) is kept as
    one when its value is refused (`ELSE`), unless the row needs it (the email)."""
    ranks = [
        LAST_RESORT if len(FILLS.get(target, ())) > 1 and rank < LAST_RESORT else rank
        for target, rank in zip(targets, ranks, strict=True)
    ]
    best: dict[str, int] = {}
    tied: dict[str, int] = {}
    for target, rank in zip(targets, ranks, strict=True):
        if target and not target.startswith(ATTRIBUTE):
            for one in FILLS.get(target, (target,)):
                if rank < best.get(one, rank + 1):
                    best[one], tied[one] = rank, 1
                elif rank == best[one]:
                    tied[one] += 1
    kept: list[str] = []
    for raw, target, rank in zip(header, targets, ranks, strict=True):
        attribute = ATTRIBUTE + raw.strip()[:100]
        fills = FILLS.get(target, (target,))
        if not target or target.startswith(ATTRIBUTE) or rank == 0:
            kept.append(target)
        elif any(best[one] < rank for one in fills):
            kept.append(attribute)
        elif any(tied[one] > 1 and one not in kind.required for one in fills):
            # `Phone Number,Mobile`, `FNAME,Given Name`: neither is read, as before aliases.
            kept.append(attribute)
        elif target in HINTS:
            kept.append(target + AND + attribute)
        elif target not in kind.required:
            kept.append(target + ELSE + attribute)
        else:
            kept.append(target)
    return kept
