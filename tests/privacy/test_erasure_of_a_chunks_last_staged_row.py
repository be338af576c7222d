"""Erasing a person whose row is the last staged row of a part not yet imported leaves the
running import to finish (20270230090000_erasure_blanks_staged_import_rows.sql).

A chunk tells a staging table a restart emptied from a live one by its part's last staged row
(private.claim_import_chunk for contacts, private.stage_orders_chunk for orders). Erasure deleted
the person's staged rows, so when theirs was that last row (here: the file's last) the job
failed as `staging_lost` and no row after it was imported. Now their row stays, blank and
refused, and a real loss (every staged row gone, as after a restart) still fails the job.
Products' staged rows hold nobody's data and erasure never touches them: no products case."""

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.rows import DictRow

from api.core.db import Database
from api.imports.jobs import Runner, run_job
from tests.factories.imports import importing_job
from tests.factories.workspaces import User, acting_as, create_user, fund, make_project, one

Conn = psycopg.Connection[DictRow]
REASON = "not imported: the person on this line was erased"


def start_import(
    database: Database, user: User, project: uuid.UUID | None, kind: str, text: str
) -> uuid.UUID:
    """An import of `text`, committed and read into staging (status `importing`), nothing of it
    merged yet: an import in progress."""
    job: uuid.UUID = importing_job(database, user, kind, project, text.encode())["id"]
    return job


def ended(conn: Conn, job_id: uuid.UUID) -> dict[str, Any]:
    """The job's end: status, error code, rows failed, and its row errors (line, reason)."""
    job = one(
        conn,
        "select status, error_code, rows_failed from public.import_jobs where id = %s",
        (job_id,),
    )
    errors = conn.execute(
        "select line, reason from public.import_errors where job_id = %s order by line",
        (job_id,),
    ).fetchall()
    return {**job, "errors": [(e["line"], e["reason"]) for e in errors]}


def erase(conn: Conn, owner: User, email: str) -> uuid.UUID:
    """The contact of `email`, made and then erased as its workspace's owner erases it."""
    contact_id: uuid.UUID = one(
        conn,
        "insert into public.contacts (workspace_id, email, first_name) values (%s, %s, 'Ann')"
        " returning id",
        (owner.workspace_id, email),
    )["id"]
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact_id,))
    return contact_id


def emails(names: list[str]) -> list[str]:
    return [f"{name}-{uuid.uuid4().hex[:8]}@example.test" for name in names]


def test_an_orders_import_whose_last_row_is_the_erased_persons_runs_to_done(
    conn: Conn, database: Database
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 100, "team")
    project = make_project(conn, owner)
    ann, cleo, dan = emails(["ann", "cleo", "dan"])
    header = "order_id,placed_at,status,total,currency,email,first_name,customer_id\n"
    rows = [
        f"O-1,2026-06-01,paid,10,EUR,{cleo},Cleo,C2",
        f"O-2,2026-06-02,paid,20,EUR,{dan},Dan,C3",
        f"O-3,2026-06-03,paid,30,EUR,{ann.upper()},Ann,C1",
    ]
    running = start_import(database, owner, project, "orders", header + "\n".join(rows) + "\n")
    lost = start_import(database, owner, project, "orders", header + "\n".join(rows) + "\n")
    ann_id = erase(conn, owner, ann)
    # A restart empties every staged row, the erased person's blank one too.
    conn.execute("delete from private.import_order_rows where job_id = %s", (lost,))

    run_job(Runner(database, None), running, 60)
    run_job(Runner(database, None), lost, 60)
    assert ended(conn, running) == {
        "status": "done",
        "error_code": None,
        "rows_failed": 1,
        "errors": [(4, REASON)],
    }
    assert (ended(conn, lost)["status"], ended(conn, lost)["error_code"]) == (
        "failed",
        "staging_lost",
    )
    imported = conn.execute(
        "select o.external_id, c.email,"
        " array(select x.external_id from public.contact_external_ids x"
        "  where x.contact_id = c.id order by 1) as ids"
        " from public.orders o left join public.contacts c on c.id = o.contact_id"
        " where o.project_id = %s order by o.external_id",
        (project,),
    ).fetchall()
    assert [tuple(row.values()) for row in imported] == [
        ("O-1", cleo, ["C2"]),
        ("O-2", dan, ["C3"]),
    ]
    # Nothing of Ann: no contact of her address, no C1, her tombstone untouched.
    assert one(
        conn,
        "select count(*) filter (where lower(email) = %s) as by_email,"
        " count(*) filter (where id = %s and email is null and first_name is null) as tomb,"
        " (select count(*) from public.contact_external_ids x"
        "  where x.project_id = %s and x.external_id = 'C1') as ids"
        " from public.contacts where workspace_id = %s",
        (ann, ann_id, project, owner.workspace_id),
    ) == {"by_email": 0, "tomb": 1, "ids": 0}


@pytest.mark.parametrize("last", [True, False])
def test_a_contacts_import_whose_last_row_is_the_erased_persons_runs_to_done(
    conn: Conn, database: Database, last: bool
) -> None:
    """The erased row is the file's last (the part's last row: on main the job failed), or a
    middle one (as before, refused with a reason)."""
    owner = create_user(conn)
    fund(conn, owner, 100, "team")
    ann, cleo, dan = emails(["ann", "cleo", "dan"])
    people = [f"{cleo},Cleo", f"{dan},Dan"]
    people.insert(2 if last else 1, f"{ann.upper()},Ann")
    text = "email,first_name\n" + "\n".join(people) + "\n"
    running = start_import(database, owner, None, "contacts", text)
    lost = start_import(database, owner, None, "contacts", text)
    ann_id = erase(conn, owner, ann)
    conn.execute("delete from private.import_contact_rows where job_id = %s", (lost,))

    run_job(Runner(database, None), running, 60)
    run_job(Runner(database, None), lost, 60)
    assert ended(conn, running) == {
        "status": "done",
        "error_code": None,
        "rows_failed": 1,
        "errors": [(4 if last else 3, REASON)],
    }
    assert (ended(conn, lost)["status"], ended(conn, lost)["error_code"]) == (
        "failed",
        "staging_lost",
    )
    contacts = conn.execute(
        "select email, first_name, id = %s as erased from public.contacts"
        " where workspace_id = %s order by email nulls last",
        (ann_id, owner.workspace_id),
    ).fetchall()
    assert [tuple(row.values()) for row in contacts] == [
        *sorted([(cleo, "Cleo", False), (dan, "Dan", False)]),
        (None, None, True),
    ]
