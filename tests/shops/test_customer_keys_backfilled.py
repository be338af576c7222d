"""The customer ids a database held before they were keyed per project each get the project the
migration's header names (20270222090000_shop_customers_keyed_per_project.sql): the project of
the contact's newest order of that source (for an import's `manual` id its newest `csv` or
`manual` order, else of any source), else of the workspace's only integration of that source,
else the workspace's oldest project; an id of a workspace without a project is deleted. Checked
on a database migrated up to the file before, then upgraded."""

import shutil
import uuid
from pathlib import Path

import psycopg
from psycopg.rows import DictRow, dict_row

from scripts.migrate import REPO, migrate
from tests.conftest import Databases
from tests.factories.workspaces import create_user, make_project, one

Conn = psycopg.Connection[DictRow]
MIGRATION = "20270222090000_shop_customers_keyed_per_project.sql"


def sql_before(into: Path) -> Path:
    """This repository's SQL without the migration and those after it, as a root to migrate."""
    shutil.copytree(REPO / "sql" / "local", into / "sql" / "local")
    migrations = into / "supabase" / "migrations"
    migrations.mkdir(parents=True)
    for path in (REPO / "supabase" / "migrations").glob("*.sql"):
        if path.name < MIGRATION:
            shutil.copy(path, migrations / path.name)
    return into


def contact_with_id(conn: Conn, workspace: uuid.UUID, source: str, external_id: str) -> uuid.UUID:
    contact = one(
        conn,
        "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
        (workspace, f"{uuid.uuid4().hex[:10]}@example.test"),
    )["id"]
    conn.execute(
        "insert into public.contact_external_ids (workspace_id, contact_id, source, external_id)"
        " values (%s, %s, %s, %s)",
        (workspace, contact, source, external_id),
    )
    return uuid.UUID(str(contact))


def order(
    conn: Conn, project: uuid.UUID, contact: uuid.UUID, source: str, number: str, placed: str
) -> None:
    conn.execute(
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency)"
        " select p.workspace_id, p.id, %s, %s, %s, 'paid', %s, 10, 'EUR'"
        " from public.projects p where p.id = %s",
        (contact, source, number, placed, project),
    )


def test_stored_customer_ids_get_the_project_the_header_names(
    databases: Databases, tmp_path: Path
) -> None:
    url = databases.create()
    migrate(url, root=sql_before(tmp_path))
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        owner = create_user(conn)
        workspace = owner.workspace_id
        first, second, third = (make_project(conn, owner, name) for name in ("1st", "2nd", "3rd"))
        oldest = one(
            conn,
            "select id from public.projects where workspace_id = %s order by created_at, id"
            " limit 1",
            (workspace,),
        )["id"]
        for project, source in (
            (second, "shoptet"),
            (first, "woocommerce"),
            (third, "woocommerce"),
        ):
            conn.execute(
                "insert into private.integrations (project_id, source, workspace_id)"
                " values (%s, %s, %s)",
                (project, source, workspace),
            )
        # Newest order of the id's source: the second project's (the third's is another source).
        by_order = contact_with_id(conn, workspace, "woocommerce", "5")
        order(conn, first, by_order, "woocommerce", "1", "2026-01-01")
        order(conn, second, by_order, "woocommerce", "1", "2026-02-01")
        order(conn, third, by_order, "shopify", "1", "2026-03-01")
        # An import's id: its contact's newest order of any source (a Shopify export's).
        imported = contact_with_id(conn, workspace, "manual", "C1")
        order(conn, third, imported, "shopify", "2", "2026-01-01")
        # An import's id of a customer who later bought in a connected store of another project:
        # the project of the import's order (source csv), not the store's newer order.
        historical = contact_with_id(conn, workspace, "manual", "C2")
        order(conn, first, historical, "csv", "3", "2025-06-01")
        order(conn, second, historical, "shoptet", "3", "2026-04-01")
        # No order: the workspace's only Shoptet integration.
        by_integration = contact_with_id(conn, workspace, "shoptet", "guid-1")
        # No order and two WooCommerce stores: the workspace's oldest project.
        by_age = contact_with_id(conn, workspace, "woocommerce", "9")
        # A workspace without a project: its id can no longer be reached.
        alone = create_user(conn)
        conn.execute("delete from public.projects where workspace_id = %s", (alone.workspace_id,))
        unreachable = contact_with_id(conn, alone.workspace_id, "shopify", "7001")

    migrate(url)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        kept = {
            row["contact_id"]: row["project_id"]
            for row in conn.execute(
                "select contact_id, project_id from public.contact_external_ids"
                " where contact_id = any(%s)",
                ([by_order, imported, historical, by_integration, by_age, unreachable],),
            )
        }
        left = one(conn, "select count(*) as n from public.contacts where id = %s", (unreachable,))
    assert kept == {
        by_order: second,
        imported: third,
        historical: first,
        by_integration: second,
        by_age: oldest,
    }
    assert left["n"] == 1
