"""Erasure reads only the staging of its workspace's running imports, by their keys
(20270230090000_erasure_blanks_staged_import_rows.sql).

Its staged-row statements joined every staged row to the workspace's jobs, any job ever, so
a workspace that had imported once scanned the whole staging tables of every workspace: the
planner puts the (unindexable) address match first and probes the job per staged row. With
another workspace's large import staged, each erasure read all of it, five times, holding the
person's contact locked. Now only running jobs (the only ones with staging) are found first,
and their rows are probed by job id; no running import, no staging read at all."""

import psycopg
from psycopg.rows import DictRow

from api.core.db import Database
from api.imports.jobs import Runner, run_job
from tests.factories.statistics import read_since, reads
from tests.factories.workspaces import acting_as, create_user, fund, make_project, one
from tests.privacy.test_erasure_of_a_chunks_last_staged_row import emails, start_import

Conn = psycopg.Connection[DictRow]

STAGING = [
    "import_contact_rows",
    "import_contact_work",
    "import_order_rows",
    "import_order_lines",
    "import_order_heads",
    "import_order_customers",
]
CROWD = 20_000


def test_erasure_reads_no_other_workspaces_staging(conn: Conn, database: Database) -> None:
    owner = create_user(conn)
    fund(conn, owner, 100, "team")
    project = make_project(conn, owner)
    other = create_user(conn)
    fund(conn, other, 100, "team")
    other_project = make_project(conn, other)
    ann, cleo = emails(["ann", "cleo"])
    header = "order_id,placed_at,status,total,currency,email,first_name,customer_id\n"
    # The owner's workspace has imported before: a job that ended (its staging dropped).
    done = start_import(
        database, owner, project, "orders", header + f"O-1,2026-06-01,paid,10,EUR,{cleo},Cleo,C2\n"
    )
    run_job(Runner(database, None), done, 60)
    assert one(conn, "select status from public.import_jobs where id = %s", (done,)) == {
        "status": "done"
    }
    # Another workspace's imports are running, staged and large.
    orders = start_import(
        database, other, other_project, "orders", header + "X-1,2026-06-01,paid,1,EUR,x@e.test,X,\n"
    )
    contacts = start_import(database, other, None, "contacts", "email,first_name\nx@e.test,X\n")
    ann_id = one(
        conn,
        "insert into public.contacts (workspace_id, email, first_name) values (%s, %s, 'Ann')"
        " returning id",
        (owner.workspace_id, ann),
    )["id"]

    def crowd() -> None:
        conn.execute(
            "insert into private.import_order_rows (job_id, record, line, order_id, email)"
            " select %s, g, g, 'X-' || g, 'x' || g || '@e.test' from generate_series(10, %s) g",
            (orders, CROWD),
        )
        conn.execute(
            "insert into private.import_contact_rows (job_id, record, line, email)"
            " select %s, g, g, 'x' || g || '@e.test' from generate_series(10, %s) g",
            (contacts, CROWD),
        )
        conn.execute("analyze private.import_order_rows")
        conn.execute("analyze private.import_contact_rows")

    with conn.transaction(force_rollback=True):
        crowd()
        before = reads(conn)
        with acting_as(conn, owner):
            conn.execute("select public.erase_contact(%s)", (ann_id,))
        read = read_since(conn, before)
        assert {t: n for t, n in read.items() if t in STAGING} == {}, read

    # With an import of its own running, it reads that job's staged rows only.
    bob, other_one, other_two = emails(["bob", "one", "two"])
    rows = [
        f"O-{n},2026-06-0{n},paid,10,EUR,{e},X,C{n}"
        for n, e in enumerate([other_one, bob, other_two], 2)
    ]
    mine = start_import(database, owner, project, "orders", header + "\n".join(rows) + "\n")
    bob_id = one(
        conn,
        "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
        (owner.workspace_id, bob),
    )["id"]
    with conn.transaction(force_rollback=True):
        crowd()
        before = reads(conn)
        with acting_as(conn, owner):
            conn.execute("select public.erase_contact(%s)", (bob_id,))
        read = read_since(conn, before)
        conn.execute("reset role")
        assert read.get("import_order_rows", 0) <= 3, read
        assert read.get("import_contact_rows", 0) == 0, read
        assert one(
            conn,
            "select array_agg(email order by record) as emails, count(problem) as refused"
            " from private.import_order_rows where job_id = %s",
            (mine,),
        ) == {"emails": [other_one, None, other_two], "refused": 1}


def test_the_register_says_a_staged_parts_lines_are_cleared(conn: Conn) -> None:
    """Erasure blanks a staged part's line of the person and keeps the row (its writer takes a
    part with no lines for a staging a restart emptied): the register must say so, not
    `row_deleted`."""
    handling = conn.execute(
        "select column_name, handling from private.personal_data_columns"
        " where table_schema = 'private' and table_name = 'import_order_lines'"
        " and handling <> 'not_personal' order by column_name"
    ).fetchall()
    assert [(h["column_name"], h["handling"]) for h in handling] == [
        (column, "cleared")
        for column in ["customer_id", "email", "first_name", "last_name", "phone"]
    ]
