"""What each kind of import reads from a file's header: the columns we know, the ones a file
must have, and where a row is staged. The database checks the values; this only maps names."""

import re
from dataclasses import dataclass

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
    helper_columns=("country",),
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
    helper_columns=("country",),
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
)

KINDS = {kind.name: kind for kind in (ORDERS, CONTACTS, PRODUCTS)}


class HeaderError(ValueError):
    """The header cannot be used: columns missing, unknown or repeated."""


def normalise_name(name: str) -> str:
    """`Order ID`, `order-id` and `order_id` are one column."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


ATTRIBUTE = "attribute:"


def map_header(kind: ImportKind, header: list[str], column_map: dict[str, str | None]) -> list[str]:
    """For each of the file's columns, in order: our column, `attribute:<name>` (a contact's
    custom attribute) or "" (skipped). `column_map` renames a file's column (by its name as
    written) to ours, or skips it with None."""
    known = set(kind.columns) | set(kind.helper_columns)
    targets: list[str] = []
    unknown: list[str] = []
    for raw in header:
        name = raw.strip()
        if name in column_map:
            mapped = column_map[name]
            target = normalise_name(mapped) if mapped else ""
        else:
            target = normalise_name(name)
        if target and target not in known:
            if kind.extra_columns_are_attributes:
                target = ATTRIBUTE + name[:100]
            else:
                unknown.append(name if len(name) <= 100 else f"{name[:100]}…")
        targets.append(target)
    present = [target for target in targets if target]
    missing = [name for name in kind.required_for(present) if name not in present]
    repeated = sorted({name for name in present if present.count(name) > 1})
    problems = []
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown columns: {', '.join(unknown)}")
    if repeated:
        problems.append(f"repeated columns: {', '.join(repeated)}")
    if problems:
        raise HeaderError("; ".join(problems))
    return targets
