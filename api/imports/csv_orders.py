"""Parsing an order CSV for shops without an integration: every bad row is reported with its
line number and reason, and only valid rows go on to the database."""

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from api.core.contacts import e164

REQUIRED = ("order_id", "placed_at", "status", "total", "currency")
OPTIONAL = ("email", "phone", "country", "first_name", "last_name", "customer_id", "exchange_rate")
STATUSES = ("pending", "paid", "fulfilled", "cancelled", "refunded")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str


@dataclass
class ParsedCsv:
    orders: list[tuple[int, dict[str, Any]]]
    errors: list[RowError]


class CsvHeaderError(ValueError):
    """The file cannot be read as an order CSV at all."""


def parse_time(value: str) -> str:
    """ISO date or date-time; a date or a time without offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        moment = datetime.combine(date.fromisoformat(value), datetime.min.time())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def money(value: str, field: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation as error:
        raise ValueError(f"{field} is not a number") from error
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"{field} must be zero or more")
    if amount != amount.quantize(Decimal("0.01")):
        raise ValueError(f"{field} has more than two decimals")
    return amount


def to_order(row: dict[str, str]) -> dict[str, Any]:
    for field in REQUIRED:
        if not row.get(field):
            raise ValueError(f"{field} is empty")
    status = row["status"].lower()
    if status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}")
    currency = row["currency"].upper()
    if not CURRENCY.match(currency):
        raise ValueError("currency must be a three-letter ISO code")
    try:
        placed_at = parse_time(row["placed_at"])
    except ValueError as error:
        raise ValueError("placed_at must be an ISO date or date-time") from error
    email = (row.get("email") or "").strip().lower()
    if email and not EMAIL.match(email):
        raise ValueError("email is not an email address")
    order: dict[str, Any] = {
        "external_id": row["order_id"],
        "status": status,
        "placed_at": placed_at,
        "total": str(money(row["total"], "total")),
        "currency": currency,
    }
    if row.get("exchange_rate"):
        rate = money(row["exchange_rate"], "exchange_rate")
        if rate == 0:
            raise ValueError("exchange_rate must be more than zero")
        order["exchange_rate"] = str(rate)
    if email or row.get("customer_id"):
        order["customer"] = {
            "external_id": row.get("customer_id") or None,
            "email": email or None,
            "phone": e164(row.get("phone"), row.get("country")),
            "first_name": row.get("first_name") or None,
            "last_name": row.get("last_name") or None,
        }
    return order


def parse_orders(text: str) -> ParsedCsv:
    reader = csv.DictReader(io.StringIO(text))
    columns = [name.strip() for name in reader.fieldnames or []]
    missing = [name for name in REQUIRED if name not in columns]
    unknown = [name for name in columns if name not in REQUIRED + OPTIONAL]
    if missing or unknown:
        problems = [f"missing columns: {', '.join(missing)}"] if missing else []
        problems += [f"unknown columns: {', '.join(unknown)}"] if unknown else []
        raise CsvHeaderError("; ".join(problems))
    reader.fieldnames = columns
    parsed = ParsedCsv([], [])
    first_seen: dict[str, int] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            parsed.errors.append(RowError(reader.line_num, f"unreadable row: {error}"))
            continue
        line = reader.line_num
        if None in row:
            parsed.errors.append(RowError(line, "more fields than columns"))
            continue
        cleaned = {key: (value or "").strip() for key, value in row.items()}
        try:
            order = to_order(cleaned)
        except ValueError as error:
            parsed.errors.append(RowError(line, str(error)))
            continue
        if order["external_id"] in first_seen:
            reason = f"order_id repeats line {first_seen[order['external_id']]}"
            parsed.errors.append(RowError(line, reason))
            continue
        first_seen[order["external_id"]] = line
        parsed.orders.append((line, order))
    return parsed
