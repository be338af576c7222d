"""A webhook event applied is checked against its workspace's erased people (is its payload
about one of them?), and a workspace nobody was erased from skips the keyed hashes. As for
contacts (tests/privacy/test_erased_check_reads.py), the skip's question, planned from the
suppression list's statistics, must probe the workspace's first erasure by key: a scan for it
reads the whole list for every event of a workspace without any
(20270228090000_webhook_erased_checks_probe_their_workspace.sql)."""

from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.factories.statistics import crowd_erased_identities, read_since, reads
from tests.factories.workspaces import create_user

Conn = psycopg.Connection[Any]

TOKENS = ["ann@example.test", "420777123456"]


def test_webhooks_of_a_workspace_without_erasures_read_no_erased_identity(
    conn: Conn, database_url: str
) -> None:
    """Three other workspaces hold 10,000 erased identities each, analyzed (rolled back with
    the transaction); twenty events of a workspace nobody was erased from (enough for the check's
    kept, generic plan) read no erased identity, and an erased address is still found in the
    workspace that erased it."""
    owner = create_user(conn)
    others = [create_user(conn) for _ in range(3)]
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        for other in others:
            crowd_erased_identities(tx, other.workspace_id, 10000)
        tx.execute(
            "insert into private.erased_identities (workspace_id, identity_key, kind)"
            " values (%s, private.identity_key(%s, 'email', %s), 'email')",
            (others[0].workspace_id, others[0].workspace_id, TOKENS[0]),
        )
        tx.execute("analyze private.erased_identities")
        before = reads(tx)
        named = [
            tx.execute(
                "select private.webhook_names_erased_person(%s, %s) as named",
                (owner.workspace_id, TOKENS),
            ).fetchone()
            for _ in range(20)
        ]
        read = read_since(tx, before)
        erased = tx.execute(
            "select private.webhook_names_erased_person(%s, %s) as named",
            (others[0].workspace_id, TOKENS),
        ).fetchone()
        tx.rollback()
    assert [row["named"] for row in named if row] == [False] * 20
    assert erased is not None and erased["named"] is True
    assert read.get("erased_identities", 0) <= 20, read
