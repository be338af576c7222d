"""Writing a file's records into the job's staging table with COPY, as text: the database checks
every value afterwards, set-based. Here a record only gets what the database cannot do itself:
its fields put under our column names, a phone number in E.164, and a contact's other columns
gathered as custom attributes."""

import json
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql

from api.core.contacts import e164
from api.core.orders import SHOPIFY_FINANCIAL_STATUSES, shopify_status
from api.imports.columns import ImportKind, kept_if_refused, read_as
from api.imports.csv_stream import Record
from api.imports.product_exports import EXPORTS, ProductExport, product_export_of

MAX_ATTRIBUTE_CHARACTERS = 1000
# The longest address SMTP carries (RFC 5321). A longer one cannot be a customer's, and one of a
# few kilobytes is more than the contacts' unique (workspace, email) index takes: the chunk that
# met it failed whole (too_large), on every call, and the job never ended.
MAX_EMAIL_CHARACTERS = 254
# Shopify's order export writes `2026-06-01 10:22:33 +0200`: ISO 8601 but for the space before
# the offset, which the database's date check (rightly strict) refuses. That one space goes.
# Amounts as a spreadsheet in most of Europe writes them, `1250,50`: with one or two digits
# after the comma it cannot be a thousands separator, so it is read as a decimal point. Anything
# else with a comma (`1,250`, `1.250,50`) stays as written, for the database to refuse.
DECIMAL_COMMA = re.compile(r"[0-9]+,[0-9]{1,2}")
AMOUNT_COLUMNS = ("total", "item_unit_price", "price", "variant_price")
SPACED_OFFSET = re.compile(
    r"([0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?) ([+-][0-9]{2}:?[0-9]{2})$"
)


@lru_cache(maxsize=65536)
def phone_in_e164(raw: str, country: str) -> str | None:
    """Customers repeat across an order history: each distinct number is parsed once."""
    return e164(raw, country or None)


def fits_an_attribute(value: str) -> bool:
    return 0 < len(value) <= MAX_ATTRIBUTE_CHARACTERS


def text_array(values: Iterable[str | None]) -> str:
    """A text array's literal, for COPY: written at once, cheaper than a list adapted per row."""
    return (
        "{" + ",".join("NULL" if value is None else array_element(value) for value in values) + "}"
    )


def array_element(value: str) -> str:
    if "\\" in value or '"' in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


class StagedRows:
    """Turns a record into its staging row for one job and one header."""

    def __init__(
        self, kind: ImportKind, job_id: UUID, targets: list[str], currency: str | None = None
    ) -> None:
        self.kind = kind
        self.job_id = job_id
        self.width = len(targets)
        read = [read_as(target) for target in targets]
        position = {name: i for i, (name, _) in enumerate(read) if name}
        # An export's own columns (Shopify's Id) are staged only from a file that has them.
        self.staged = (*kind.columns, *(name for name in kind.export_columns if name in position))
        # A shop's product export: each row reshaped as ours (api.imports.product_exports),
        # its prices in `currency` when it names none.
        tool = product_export_of(set(position)) if kind.name == "products" else None
        self.export: ProductExport | None = None
        if tool is not None:
            self.export = EXPORTS[tool](position, currency)
            self.staged = (*kind.columns, "parent_sku", "skipped")
        self.positions = [position.get(name) for name in self.staged]
        self.phone = position.get("phone")
        self.country = position.get("country")
        self.phone_slot = kind.columns.index("phone") if "phone" in kind.columns else None
        self.email_slot = kind.columns.index("email") if "email" in kind.columns else None
        self.placed_at_slot = (
            kind.columns.index("placed_at") if "placed_at" in kind.columns else None
        )
        self.amount_slots = [
            slot for slot, name in enumerate(kind.columns) if name in AMOUNT_COLUMNS
        ]
        # Another tool's columns that fill ours (columns.FOREIGN_COLUMNS): looked at per row only
        # in a file that has them.
        self.financial = position.get("financial_status")
        self.fulfillment = position.get("fulfillment_status")
        self.cancelled = position.get("cancelled_at")
        self.full_name = position.get("full_name")
        self.foreign = self.financial is not None or self.full_name is not None
        self.status_slot = kind.columns.index("status") if "status" in kind.columns else 0
        self.first_name_slot = kind.columns.index("first_name") if self.full_name is not None else 0
        self.last_name_slot = kind.columns.index("last_name") if self.full_name is not None else 0
        self.attributes = [(i, name) for i, (_, name) in enumerate(read) if name is not None]
        # Columns read as ours that were attributes before aliases (`Firstname`, `Mobile`): each
        # value is staged in its field and, in the order of the job's columns, as written in
        # kept_if_refused; the database adds it to the attributes, under the header, only where
        # its checks refuse it (private.import_contacts_chunk).
        self.fallbacks = [i for i, target in enumerate(targets) if kept_if_refused(target)]
        # The phone is checked here (parsed): an aliased one that is not a phone is staged as
        # none, so the database keeps it as the attribute, instead of refusing the row.
        self.phone_else = any(read[i][0] == "phone" for i in self.fallbacks)

    @property
    def copy_statement(self) -> sql.Composed:
        names = ["job_id", "record", "line", *self.staged]
        if self.kind.extra_columns_are_attributes:
            names.append("attributes")
        if self.fallbacks:
            names.append("kept_if_refused")
        names += ["problem", "problem_column"]
        return sql.SQL("copy {} ({}) from stdin").format(
            sql.Identifier("private", self.kind.staging_table),
            sql.SQL(", ").join(map(sql.Identifier, names)),
        )

    def row(self, number: int, record: Record) -> tuple[Any, ...]:
        fields = record.fields
        problem: str | None = None
        column: str | None = None
        if len(fields) > self.width:
            problem = f"the row has {len(fields)} fields; the header names {self.width} columns"
        elif any("\x00" in field for field in fields):
            problem, fields = "the row contains a NUL character", []
        if self.export is not None:
            return self.export_row(number, record, fields, problem)
        count = len(fields)
        values: list[str | None] = [
            fields[i] if i is not None and i < count else None for i in self.positions
        ]
        if self.foreign:
            self.fill_from_foreign(fields, values)
        email = values[self.email_slot] if self.email_slot is not None else None
        # Stripped only when long: the row's hot path (a million rows) copies no string.
        if (
            email is not None
            and len(email) > MAX_EMAIL_CHARACTERS
            and len(email.strip()) > MAX_EMAIL_CHARACTERS
        ):
            problem = problem or f"email may have at most {MAX_EMAIL_CHARACTERS} characters"
            column = column or "email"
        for amount_slot in self.amount_slots:
            amount = values[amount_slot]
            if amount is not None and "," in amount and DECIMAL_COMMA.fullmatch(amount.strip()):
                values[amount_slot] = amount.strip().replace(",", ".")
        slot = self.placed_at_slot
        placed_at = values[slot] if slot is not None else None
        if slot is not None and placed_at is not None and (" +" in placed_at or " -" in placed_at):
            values[slot] = SPACED_OFFSET.sub(r"\1\2", placed_at.strip())
        raw_phone = values[self.phone_slot] if self.phone_slot is not None else None
        if self.phone_slot is not None and raw_phone is not None and not raw_phone.strip():
            # No phone: staged as none, not as the blank text the contacts' check refuses.
            values[self.phone_slot] = None
        elif self.phone_slot is not None and raw_phone is not None:
            has_country = self.country is not None and self.country < count
            country = fields[self.country] if has_country and self.country is not None else ""
            values[self.phone_slot] = phone_in_e164(raw_phone.strip(), country.strip())
            if (
                values[self.phone_slot] is None
                and self.kind.phone_is_required_valid
                and not (self.phone_else and fits_an_attribute(raw_phone.strip()))
            ):
                problem = problem or (
                    "phone is not a valid phone number (write it with its country code,"
                    " or add a country column)"
                )
                column = column or "phone"
        row: list[Any] = [self.job_id, number, record.line, *values]
        if self.kind.extra_columns_are_attributes:
            attributes = {
                name: fields[i].strip()
                for i, name in self.attributes
                if i < count and fields[i].strip()
            }
            if any(len(value) > MAX_ATTRIBUTE_CHARACTERS for value in attributes.values()):
                limit = MAX_ATTRIBUTE_CHARACTERS
                problem = problem or f"an attribute may have at most {limit} characters"
            row.append(json.dumps(attributes) if attributes else None)
        if self.fallbacks:
            # Staged only when it could be kept: one that could not is its field's alone.
            kept = [fields[i].strip() if i < count else "" for i in self.fallbacks]
            row.append(text_array(value if fits_an_attribute(value) else None for value in kept))
        row += [problem, column]
        return tuple(row)

    def export_row(
        self, number: int, record: Record, fields: list[str], problem: str | None
    ) -> tuple[Any, ...]:
        """A product export's row as ours, with the SKU naming its product (a WooCommerce
        variation's) and whether it is skipped (a row of a further image)."""
        assert self.export is not None
        shaped = self.export.row(fields)
        values = [shaped.values.get(name) for name in self.kind.columns]
        for amount_slot in self.amount_slots:
            amount = values[amount_slot]
            if amount is not None and "," in amount and DECIMAL_COMMA.fullmatch(amount):
                values[amount_slot] = amount.replace(",", ".")
        column = None
        if problem is None and shaped.problem is not None:
            problem, column = shaped.problem, shaped.column
        skipped = shaped.skipped and problem is None
        return (
            self.job_id,
            number,
            record.line,
            *values,
            shaped.parent_sku,
            skipped,
            problem,
            column,
        )

    def fill_from_foreign(self, fields: list[str], values: list[str | None]) -> None:
        """Shopify's financial status, fulfilment status and cancellation make the order's
        status (on the rows that carry a financial status: an order's first; a value Shopify
        does not write is staged as written, for the database to refuse); a full name fills
        first and last name (the first word and the rest)."""
        count = len(fields)
        if self.financial is not None and self.financial < count:
            financial = fields[self.financial].strip().lower()
            if financial:
                fulfillment = self.fulfillment
                cancelled = self.cancelled
                values[self.status_slot] = (
                    shopify_status(
                        financial,
                        fields[fulfillment].strip().lower()
                        if fulfillment is not None and fulfillment < count
                        else None,
                        cancelled is not None
                        and cancelled < count
                        and bool(fields[cancelled].strip()),
                    )
                    if financial in SHOPIFY_FINANCIAL_STATUSES
                    else financial
                )
        if self.full_name is not None and self.full_name < count:
            first, _, last = fields[self.full_name].strip().partition(" ")
            values[self.first_name_slot] = first or None
            values[self.last_name_slot] = last.strip() or None

    def copy(self, conn: psycopg.Connection[Any], first: int, records: Iterable[Record]) -> int:
        """Copies `records` in, numbered from `first`; returns how many."""
        number = first
        with conn.cursor() as cursor, cursor.copy(self.copy_statement) as copy:
            for record in records:
                copy.write_row(self.row(number, record))
                number += 1
        return number - first
