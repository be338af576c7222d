"""Orders and checkouts are keyed per project (20270214090000_orders_keyed_per_project.sql), and
the old key's columns stay indexed for the workspace's reads: an order found by its number across
the workspace (the Data API's `orders?workspace_id=eq.W&source=eq.shopify&external_id=eq.1001`,
an analyst's look-up) is one index probe, not a read of every order of the workspace, and the
workspace's wide reads under the members' policy still start from an index."""

import json
from typing import Any

import psycopg
from psycopg.rows import DictRow

from tests.factories.workspaces import acting_as, create_user, make_project

Conn = psycopg.Connection[DictRow]
ORDERS_IN_THE_WORKSPACE = 2000


def scans_of(plan: dict[str, Any], table: str) -> list[dict[str, Any]]:
    """The plan's nodes that read `table`."""
    found = [plan] if plan.get("Relation Name") == table else []
    for child in plan.get("Plans", []):
        found += scans_of(child, table)
    return found


def explained(conn: Conn, query: str, params: Any) -> dict[str, Any]:
    row = conn.execute(f"explain (analyze, format json) {query}", params).fetchone()
    assert row is not None
    document = row["QUERY PLAN"]
    document = json.loads(document) if isinstance(document, str) else document
    return dict(document[0]["Plan"])


def test_the_workspace_lookup_indexes_have_the_old_keys_columns(conn: Conn) -> None:
    for table in ("orders", "checkouts"):
        definitions = [
            row["indexdef"]
            for row in conn.execute(
                "select indexdef from pg_catalog.pg_indexes"
                " where schemaname = 'public' and tablename = %s",
                (table,),
            ).fetchall()
        ]
        assert any(
            definition.endswith("USING btree (workspace_id, source, external_id)")
            for definition in definitions
        ), definitions
        # The key itself is per project.
        assert any(
            definition.startswith("CREATE UNIQUE INDEX")
            and definition.endswith("USING btree (project_id, workspace_id, source, external_id)")
            for definition in definitions
        ), definitions


def test_an_order_found_by_its_number_across_the_workspace_reads_one_order(conn: Conn) -> None:
    owner = create_user(conn)
    projects = [make_project(conn, owner, "Old"), make_project(conn, owner, "New")]
    with conn.transaction(force_rollback=True):
        conn.execute(
            "insert into public.orders (workspace_id, project_id, source, external_id, status,"
            " placed_at, total, currency, base_total)"
            " select %s, (%s::uuid[])[1 + g %% 2], 'shopify', (5550000 + g)::text, 'paid',"
            " '2026-11-01T10:00:00Z'::timestamptz - g * interval '1 hour', 10, 'EUR', 10"
            " from generate_series(1, %s) g",
            (owner.workspace_id, projects, ORDERS_IN_THE_WORKSPACE),
        )
        with acting_as(conn, owner):
            lookup = explained(
                conn,
                "select id, project_id, status, total from public.orders"
                " where workspace_id = %s and source = 'shopify' and external_id = '5551234'",
                (owner.workspace_id,),
            )
            wide = explained(
                conn,
                "select count(*), sum(base_total) from public.orders"
                " where workspace_id = %s and placed_at >= '2026-10-01'",
                (owner.workspace_id,),
            )

    [scan] = scans_of(lookup, "orders")
    assert scan["Node Type"] == "Index Scan", scan
    assert "external_id" in scan["Index Cond"], scan
    assert scan["Actual Rows"] == 1
    assert scan.get("Rows Removed by Filter", 0) == 0, scan  # no other order of it was read

    [read] = scans_of(wide, "orders")
    index_scans = [read, *read.get("Plans", [])]
    assert any("Index" in node["Node Type"] for node in index_scans), read
