"""Tables as a new project has them (never analyzed: no planner statistics), and the rows a
transaction has read from each table, for tests that bound what a writer reads per row written
whatever the planner knows."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.factories.workspaces import create_user

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

# The tenants every commerce row's foreign keys check, row by row. A test database holds a few
# dozen of them: analyzed (autovacuum, where it runs), they are a page the planner scans for each
# row checked (a part of 1,500 products read 148,501 workspace rows beside 30 other workspaces).
TENANT_TABLES = ["public.workspaces", "public.projects"]

# The lists every contact written is checked against: erased people and disposable domains.
# Analyzed with a few dozen rows (autovacuum, an earlier test's analyze), each is a page the
# planner scans for each contact instead of probing its key (a part of 1,500 orders read
# 14,929,800 erased identities beside another workspace's 20,000 unanalyzed ones).
CONTACT_CHECK_TABLES = ["private.erased_identities", "private.disposable_domains"]


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


def crowd_disposable_domains(tx: psycopg.Connection[Any], count: int) -> None:
    """`count` more disposable domains (rolled back with the caller's transaction), as a
    platform's list grows: every contact written looks its domain up, and the 30 seeded ones,
    analyzed, are a page the planner scans per contact (30 rows read per contact, whatever the
    bound of a test that writes many)."""
    tx.execute(
        "insert into private.disposable_domains (domain)"
        " select 'crowd-' || n || '.' || %s || '.example' from generate_series(1, %s) as n",
        (uuid.uuid4().hex[:8], count),
    )


@contextmanager
def crowded_customer_facts(database_url: str, count: int) -> Iterator[None]:
    """While it lasts, `count` customers of another workspace, each with a facts row, in a
    transaction kept open and then rolled back: the pages they fill count in every other
    connection's plans. Facts of a few hundred customers, analyzed by an earlier test, are a
    table the planner reads whole and hashes to find which workspaces have customers."""
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        try:
            other = create_user(tx)
            tx.execute(
                "update public.workspaces set plan_tier = 'team' where id = %s",
                (other.workspace_id,),
            )
            tx.execute(
                "with c as (insert into public.contacts (workspace_id, email)"
                " select %s, 'crowd-' || n || '@example.test' from generate_series(1, %s) as n"
                " returning id, workspace_id)"
                " insert into public.customer_facts (contact_id, workspace_id, first_order_id,"
                " first_order_at, first_order_project_id, first_order_source, last_order_id,"
                " last_order_at, orders_count, revenue)"
                " select c.id, c.workspace_id, gen_random_uuid(), now(), gen_random_uuid(),"
                " 'csv', gen_random_uuid(), now(), 1, 10 from c",
                (other.workspace_id, count),
            )
            yield
        finally:
            tx.rollback()


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
