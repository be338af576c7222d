"""Right after an import job ends, the RFM dashboard reads the workspace's kept scores: the job's
last step refreshed them, so a shop owner who just imported their history and opens the RFM
dashboard first gets the fast read (no customer's facts counted), with the scores counting every
order gives."""

import random
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import DictRow

from api.core.db import Database
from api.imports.jobs import Runner, run_job
from tests.factories.imports import importing_job
from tests.factories.statistics import read_since, reads
from tests.factories.workspaces import User, create_user, fund, make_project
from tests.rfm.test_rfm_from_facts import scored_alike

Conn = psycopg.Connection[DictRow]
HEADER = "order_id,placed_at,status,total,currency,email,first_name,customer_id\n"


def orders_file(rng: random.Random, first: int, count: int, customers: int) -> bytes:
    """`count` orders of `customers` customers (ids as a shop exports them), spread over a year,
    some not paid."""
    rows = []
    for number in range(first, first + count):
        customer = rng.randint(1, customers)
        rows.append(
            f"O-{number},2026-{rng.randint(1, 11):02d}-{rng.randint(1, 28):02d}T10:00:00Z,"
            f"{rng.choice(['paid', 'paid', 'fulfilled', 'refunded'])},"
            f"{rng.choice([10, 20, 20, rng.randint(5, 300)])}.50,EUR,"
            f"c{customer}@example.test,Name{customer},C{customer}\n"
        )
    return (HEADER + "".join(rows)).encode()


def imported(database: Database, owner: User, project: uuid.UUID, data: bytes) -> dict[str, Any]:
    """The edge's job path: uploaded, read, validated, then run as a commit call runs it."""
    job = importing_job(database, owner, "orders", project, data)
    run_job(Runner(database, None), job["id"], 60)
    with database.as_user(owner.claims) as tx:
        row = tx.execute("select * from public.import_jobs where id = %s", (job["id"],)).fetchone()
    assert row is not None
    return row


def dashboard_reads(database: Database, owner: User) -> tuple[int, dict[str, int]]:
    """The owner opens the RFM dashboard (customers and segments, as the Data API runs them):
    how many customers it shows and the rows it read per table."""
    with database.as_user(owner.claims) as tx:
        before = reads(tx)
        customers = tx.execute("select count(*) as n from analytics.customer_rfm").fetchone()
        tx.execute("select * from analytics.rfm_segments").fetchall()
        read = read_since(tx, before)
    assert customers is not None
    return int(customers["n"]), read


def test_rfm_dashboard_reads_kept_scores_right_after_an_orders_import_ends(
    conn: Conn, database: Database
) -> None:
    rng = random.Random(14)
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    project = make_project(conn, owner)
    today = datetime.now(UTC).date()

    # The shop's history, imported into a workspace that had no orders (and no kept scores).
    first = imported(database, owner, project, orders_file(rng, 1, 400, 150))
    assert (first["status"], first["created"]) == ("done", 400)
    customers, read = dashboard_reads(database, owner)
    assert customers > 100
    # Counting reads every customer's facts row (at least once); the kept scores are read instead
    # (a plan made with other workspaces' statistics may probe a few facts rows).
    assert read.get("customer_facts", 0) < customers / 4, read
    assert read.get("rfm_kept_scores", 0) >= customers, read
    assert scored_alike(conn, owner, [today]) == customers

    # More orders later (known customers and new ones), after the kept scores were read.
    second = imported(database, owner, project, orders_file(rng, 401, 300, 220))
    assert (second["status"], second["created"]) == ("done", 300)
    more, read = dashboard_reads(database, owner)
    assert more > customers
    assert read.get("customer_facts", 0) < more / 4, read
    assert scored_alike(conn, owner, [today]) == more
