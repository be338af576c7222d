"""Every contact written is checked against its workspace's erased people, and a workspace
nobody was erased from skips the keyed hashes. The skip's question is planned once per
connection from the suppression list's statistics; with a few workspaces holding many erasures,
a plan that scanned the list to find the workspace's first one read the whole list for every
contact of a workspace without any (20270223090000_erased_check_probes_its_workspace.sql)."""

from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.factories.statistics import crowd_erased_identities, read_since, reads
from tests.factories.workspaces import create_user

Conn = psycopg.Connection[Any]


def test_contacts_of_a_workspace_without_erasures_read_no_erased_identity(
    conn: Conn, database_url: str
) -> None:
    """Three other workspaces hold 10,000 erased identities each, analyzed (rolled back with
    the transaction); 200 contacts inserted into a workspace nobody was erased from read no
    erased identity (before: the list once per contact, 5,850,195 rows), and an erased
    address of another workspace does not keep this one's contact out."""
    owner = create_user(conn)
    others = [create_user(conn) for _ in range(3)]
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (owner.workspace_id,)
    )
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        for other in others:
            crowd_erased_identities(tx, other.workspace_id, 10000)
        tx.execute(
            "insert into private.erased_identities (workspace_id, identity_key, kind)"
            " values (%s, private.identity_key(%s, 'email', 'kept-1@example.test'), 'email')",
            (others[0].workspace_id, others[0].workspace_id),
        )
        tx.execute("analyze private.erased_identities")
        before = reads(tx)
        tx.execute(
            "insert into public.contacts (workspace_id, email)"
            " select %s, 'kept-' || n || '@example.test' from generate_series(1, 200) as n",
            (owner.workspace_id,),
        )
        read = read_since(tx, before)
        row = tx.execute(
            "select count(*) as n from public.contacts where workspace_id = %s",
            (owner.workspace_id,),
        ).fetchone()
        tx.rollback()
    assert row is not None and row["n"] == 200
    assert read.get("erased_identities", 0) <= 200, read
