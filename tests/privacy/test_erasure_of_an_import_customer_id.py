"""Erasing a contact drops the staged rows of running orders imports that name one of its
customer ids only in that id's project (20270227090000_erasure_of_import_rows_per_project.sql):
an orders import's `customer_id` is its project's (two stores' customer C1 are two people), so
erasing store A's C1 must not drop store B's C1 from an import that B is running at that moment.
Rows naming the person's address still go in every project. A part staged and not yet written
(its working rows keyed by the part, not the job) loses the person's order and customer too:
erasure used to miss it, and the part's writer wrote their order."""

import uuid
from typing import Any

import psycopg
from psycopg.rows import DictRow

from api.core.db import Database
from api.imports.jobs import Runner, run_job
from tests.factories.imports import importing_job
from tests.factories.workspaces import User, acting_as, create_user, fund, make_project, one

Conn = psycopg.Connection[DictRow]
HEADER = "order_id,placed_at,status,total,currency,email,first_name,customer_id\n"


def start_import(database: Database, user: User, project: uuid.UUID, text: str) -> uuid.UUID:
    """An orders import of `text` into `project`, committed and read into staging (its rows in
    private.import_order_rows, status `importing`), not merged yet: an import in progress."""
    job: uuid.UUID = importing_job(database, user, "orders", project, text.encode())["id"]
    return job


def import_now(database: Database, user: User, project: uuid.UUID, text: str) -> None:
    job_id = start_import(database, user, project, text)
    run_job(Runner(database, None), job_id, 60)


def staged(conn: Conn, job_id: uuid.UUID) -> list[str]:
    """The orders of the job's staged rows it will still import: an erased person's row stays,
    blank and refused (20270230090000_erasure_blanks_staged_import_rows.sql)."""
    rows = conn.execute(
        "select order_id from private.import_order_rows where job_id = %s and problem is null"
        " order by record",
        (job_id,),
    ).fetchall()
    return [row["order_id"] for row in rows]


def orders(conn: Conn, project: uuid.UUID) -> list[tuple[Any, ...]]:
    """The project's orders with their contact's email and its ids in the project."""
    rows = conn.execute(
        "select o.external_id, c.email,"
        " array(select x.external_id from public.contact_external_ids x"
        "  where x.contact_id = c.id and x.project_id = o.project_id order by 1) as ids"
        " from public.orders o left join public.contacts c on c.id = o.contact_id"
        " where o.project_id = %s order by o.external_id",
        (project,),
    ).fetchall()
    return [tuple(row.values()) for row in rows]


def test_erasing_one_stores_customer_keeps_another_stores_customer_of_the_id_in_its_import(
    conn: Conn, database: Database
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 100, "team")
    first = make_project(conn, owner, "First shop")
    second = make_project(conn, owner, "Second shop")
    ann = f"ann-{uuid.uuid4().hex[:8]}@example.test"
    ben = f"ben-{uuid.uuid4().hex[:8]}@example.test"
    cleo = f"cleo-{uuid.uuid4().hex[:8]}@example.test"
    # Each store's customer C1, other people: Ann in the first project, Ben in the second.
    import_now(database, owner, first, HEADER + f"A-1,2026-06-01,paid,100,EUR,{ann},Ann,C1\n")
    import_now(database, owner, second, HEADER + f"B-1,2026-06-02,paid,50,EUR,{ben},Ben,C1\n")

    # Both stores import more while Ann is erased: rows naming C1 only by id, one naming Ann's
    # address in the second project, and another customer's rows. (An erased last row is
    # tests/privacy/test_erasure_of_a_chunks_last_staged_row.py's matter.)
    first_file = [
        "A-2,2026-06-03,paid,10,EUR,,,C1",
        f"A-3,2026-06-04,paid,20,EUR,{cleo},Cleo,C2",
    ]
    second_file = [
        "B-2,2026-06-05,paid,30,EUR,,,C1",
        f"B-3,2026-06-06,paid,40,EUR,{ann.upper()},Ann,",
        f"B-4,2026-06-07,paid,60,EUR,{cleo},Cleo,",
    ]
    first_job = start_import(database, owner, first, HEADER + "\n".join(first_file) + "\n")
    second_job = start_import(database, owner, second, HEADER + "\n".join(second_file) + "\n")
    assert (staged(conn, first_job), staged(conn, second_job)) == (
        ["A-2", "A-3"],
        ["B-2", "B-3", "B-4"],
    )
    ann_id = one(
        conn,
        "select contact_id from public.contact_external_ids"
        " where project_id = %s and source = 'manual' and external_id = 'C1'",
        (first,),
    )["contact_id"]
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (ann_id,))

    # The first project's C1 row (Ann's) and Ann's address anywhere are gone; Ben's C1 stays.
    assert (staged(conn, first_job), staged(conn, second_job)) == (["A-3"], ["B-2", "B-4"])

    run_job(Runner(database, None), first_job, 60)
    run_job(Runner(database, None), second_job, 60)
    assert orders(conn, first) == [("A-1", None, []), ("A-3", cleo, ["C2"])]
    assert orders(conn, second) == [
        ("B-1", ben, ["C1"]),
        ("B-2", ben, ["C1"]),
        ("B-4", cleo, []),
    ]


def stage_part(database: Database, job_id: uuid.UUID) -> None:
    """The next part of the job staged and not written, as one merge worker leaves it while the
    other writes the part before (private.stage_orders_chunk, with the job locked)."""
    with database.as_service() as conn:
        conn.execute("select * from private.lock_import_job(%s)", (job_id,))
        job = conn.execute("select * from private.stage_orders_chunk(%s, 1000)", (job_id,))
        assert job.fetchone() is not None


def staged_part(conn: Conn, job_id: uuid.UUID) -> list[tuple[Any, ...]]:
    """The job's staged orders, each with what its part's working rows hold of its customer:
    (order, email, customer_id) of its order row, of its first line and of its customer row."""
    rows = conn.execute(
        "select h.order_id, h.email, h.customer_id, l.email as line_email,"
        " l.customer_id as line_customer_id, k.email as customer_email,"
        " k.customer_id as customer_customer_id"
        " from private.import_order_chunks c"
        " join private.import_order_lines l on l.job_id = c.work_id and l.first_in_order"
        " left join private.import_order_heads h"
        "  on h.job_id = c.work_id and h.order_id = l.order_id and h.order_key = l.order_key"
        " left join private.import_order_customers k"
        "  on k.job_id = c.work_id and k.customer_key = coalesce('id:' || l.customer_id,"
        "   'email:' || l.email)"
        " where c.job_id = %s and not c.written order by l.record",
        (job_id,),
    ).fetchall()
    return [tuple(row.values()) for row in rows]


def test_erasure_reaches_a_staged_part_in_the_ids_project_only(
    conn: Conn, database: Database
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 100, "team")
    first = make_project(conn, owner, "First shop")
    second = make_project(conn, owner, "Second shop")
    ann = f"ann-{uuid.uuid4().hex[:8]}@example.test"
    ben = f"ben-{uuid.uuid4().hex[:8]}@example.test"
    cleo = f"cleo-{uuid.uuid4().hex[:8]}@example.test"
    import_now(database, owner, first, HEADER + f"A-1,2026-06-01,paid,100,EUR,{ann},Ann,C1\n")
    import_now(database, owner, second, HEADER + f"B-1,2026-06-02,paid,50,EUR,{ben},Ben,C1\n")

    # A part of each store's next import is staged (its customers found) and waits to be written
    # while Ann is erased.
    first_job = start_import(
        database,
        owner,
        first,
        HEADER + f"A-2,2026-06-03,paid,10,EUR,{ann},Ann,C1\nA-3,2026-06-04,paid,20,EUR,{cleo},,\n",
    )
    second_job = start_import(database, owner, second, HEADER + "B-2,2026-06-05,paid,30,EUR,,,C1\n")
    stage_part(database, first_job)
    stage_part(database, second_job)
    assert staged_part(conn, first_job) == [
        ("A-2", ann, "C1", ann, "C1", ann, "C1"),
        ("A-3", cleo, None, cleo, None, cleo, None),
    ]
    assert staged_part(conn, second_job) == [("B-2", None, "C1", None, "C1", None, "C1")]
    ann_id = one(
        conn,
        "select contact_id from public.contact_external_ids"
        " where project_id = %s and source = 'manual' and external_id = 'C1'",
        (first,),
    )["contact_id"]
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (ann_id,))

    # Ann's order and customer leave the first project's part, and her line keeps nothing of
    # her; Ben's C1 stays in the second project's.
    assert staged_part(conn, first_job) == [
        (None, None, None, None, None, None, None),
        ("A-3", cleo, None, cleo, None, cleo, None),
    ]
    assert staged_part(conn, second_job) == [("B-2", None, "C1", None, "C1", None, "C1")]

    run_job(Runner(database, None), first_job, 60)
    run_job(Runner(database, None), second_job, 60)
    assert orders(conn, first) == [("A-1", None, []), ("A-3", cleo, [])]
    assert orders(conn, second) == [("B-1", ben, ["C1"]), ("B-2", ben, ["C1"])]
