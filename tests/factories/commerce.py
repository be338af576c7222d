"""Shop data as the importers write it: orders through private.upsert_order, products and
variants as a catalog sync writes them (the service)."""

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.factories.workspaces import one

Conn = psycopg.Connection[Any]


def add_order(
    conn: Conn,
    project: uuid.UUID,
    external_id: str,
    email: str,
    *,
    placed_at: str = "2026-06-01T12:00:00Z",
    total: float = 100,
    status: str = "paid",
    currency: str = "EUR",
    items: list[dict[str, Any]] | None = None,
    source: str = "shopify",
) -> uuid.UUID:
    """One order (and its customer) through the importers' upsert; returns the order's id."""
    order: dict[str, Any] = {
        "external_id": external_id,
        "status": status,
        "placed_at": placed_at,
        "total": str(total),
        "currency": currency,
        "customer": {"email": email},
    }
    if items is not None:
        order["items"] = items
    row = one(
        conn, "select private.upsert_order(%s, %s, %s) as id", (project, source, Jsonb(order))
    )
    return uuid.UUID(str(row["id"]))


def add_product(
    conn: Conn,
    workspace_id: uuid.UUID,
    project: uuid.UUID,
    external_id: str,
    title: str,
    *,
    sku: str | None = None,
    category: str | None = None,
    price: float | None = 10,
    source: str = "shopify",
) -> uuid.UUID:
    row = one(
        conn,
        "insert into public.products (workspace_id, project_id, source, external_id, title, sku,"
        " price, currency, category) values (%s, %s, %s, %s, %s, %s, %s, 'EUR', %s)"
        " returning id",
        (workspace_id, project, source, external_id, title, sku, price, category),
    )
    return uuid.UUID(str(row["id"]))


def add_variant(
    conn: Conn,
    workspace_id: uuid.UUID,
    product: uuid.UUID,
    external_id: str,
    *,
    sku: str | None = None,
) -> uuid.UUID:
    row = one(
        conn,
        "insert into public.product_variants (workspace_id, product_id, external_id, sku)"
        " values (%s, %s, %s, %s) returning id",
        (workspace_id, product, external_id, sku),
    )
    return uuid.UUID(str(row["id"]))


def contact_id(conn: Conn, email: str) -> uuid.UUID:
    return uuid.UUID(
        str(one(conn, "select id from public.contacts where email = %s", (email,))["id"])
    )


def add_line(
    conn: Conn,
    order: uuid.UUID,
    name: str,
    *,
    sku: str | None = None,
    external_product_id: str | None = None,
    external_variant_id: str | None = None,
    product: uuid.UUID | None = None,
    quantity: int = 1,
    unit_price: float = 10,
) -> int:
    """An order line as a set-based importer writes it (with the shop's product ids)."""
    row = one(
        conn,
        "insert into public.order_items (order_id, workspace_id, sku, name, quantity, unit_price,"
        " total, external_product_id, external_variant_id, product_id)"
        " select o.id, o.workspace_id, %s, %s, %s, %s, round(%s::numeric * %s, 2), %s, %s, %s"
        " from public.orders o where o.id = %s returning id",
        (
            sku,
            name,
            quantity,
            unit_price,
            quantity,
            unit_price,
            external_product_id,
            external_variant_id,
            product,
            order,
        ),
    )
    return int(row["id"])
