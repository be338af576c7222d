"""Tables as a new project has them (never analyzed: no planner statistics), and the rows a
transaction has read from each table, for tests that bound what a writer reads per row written
whatever the planner knows."""

import uuid
from typing import Any

import psycopg

# The tables the commerce writers (imports, shop pages) read and write.
COMMERCE_TABLES = [
    "public.contacts",
    "public.contact_events",
    "public.contact_external_ids",
    "public.consents",
    "public.orders",
    "public.order_items",
    "public.customer_facts",
    "public.products",
    "public.product_variants",
]


def forget_statistics(tx: psycopg.Connection[Any], tables: list[str]) -> None:
    """The tables as never analyzed (rolled back with the caller's transaction)."""
    for table in tables:
        tx.execute("delete from pg_catalog.pg_statistic where starelid = %s::regclass", (table,))
        tx.execute(
            "update pg_catalog.pg_class set reltuples = -1, relpages = 0 where oid = %s::regclass",
            (table,),
        )


def crowd_erased_identities(
    tx: psycopg.Connection[Any], workspace_id: uuid.UUID, count: int
) -> None:
    """`count` erased identities of another workspace (rolled back with the caller's
    transaction): every contact written checks this table, and a few dozen rows (what earlier
    tests leave in a worker's database) fit in a page the planner scans once per contact."""
    tx.execute(
        "insert into private.erased_identities (workspace_id, identity_key, kind)"
        " select %s, sha256(convert_to(%s || n, 'utf8')), 'email'"
        " from generate_series(1, %s) as n",
        (workspace_id, str(workspace_id), count),
    )


def reads(tx: psycopg.Connection[Any]) -> dict[str, int]:
    """Rows read so far in this transaction, per table (public and private)."""
    rows = tx.execute(
        "select relname, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) as tuples"
        " from pg_catalog.pg_stat_xact_user_tables where schemaname in ('public', 'private')"
    ).fetchall()
    return {
        (r["relname"] if isinstance(r, dict) else r[0]): int(
            r["tuples"] if isinstance(r, dict) else r[1]
        )
        for r in rows
    }


def read_since(tx: psycopg.Connection[Any], before: dict[str, int]) -> dict[str, int]:
    """Rows read per table since `before` (tables read at all)."""
    now = reads(tx)
    return {t: n - before.get(t, 0) for t, n in now.items() if n - before.get(t, 0) > 0}


def crowd_order_lines(
    tx: psycopg.Connection[Any], project_id: uuid.UUID, count: int, prefix: str
) -> None:
    """`count` Shopify orders of a project with a line each, naming by shop id and SKU
    (`prefix` and its number) a product the catalog lacks, so unlinked (rolled back with the
    caller's transaction): a writer that reads a workspace's or the table's order lines per
    page reads them all."""
    tx.execute(
        "insert into public.orders (workspace_id, project_id, source, external_id, status,"
        " placed_at, total, currency)"
        " select p.workspace_id, p.id, 'shopify', %s || n, 'paid', '2025-01-01', 10, 'EUR'"
        " from public.projects p cross join generate_series(1, %s) as n where p.id = %s",
        (prefix, count, project_id),
    )
    tx.execute(
        "insert into public.order_items (order_id, workspace_id, sku, name, quantity, unit_price,"
        " total, external_product_id)"
        " select o.id, o.workspace_id, o.external_id, 'Item', 1, 10, 10, o.external_id"
        " from public.projects p cross join generate_series(1, %s) as n"
        " join public.orders o on o.workspace_id = p.workspace_id and o.source = 'shopify'"
        "  and o.external_id = %s || n"
        " where p.id = %s",
        (count, prefix, project_id),
    )
