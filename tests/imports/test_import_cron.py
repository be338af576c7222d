"""The cron's part of imports: jobs a commit call left running are carried on, and uploads
nobody committed expire and free their staged parts."""

from collections.abc import Iterator

import psycopg
import pytest
from psycopg.rows import DictRow

from api.core.db import Database
from api.imports.jobs import continue_import_jobs
from api.imports.parts import store_part
from tests.factories.workspaces import create_user, one

Conn = psycopg.Connection[DictRow]


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url, pool_mode="session", max_size=3, timeout_seconds=10)
    db.open()
    yield db
    db.close()


def test_the_cron_finishes_committed_jobs_and_expires_abandoned_uploads(
    database: Database, conn: Conn
) -> None:
    user = create_user(conn)
    data = b"email,first_name\nann@example.test,Ann\nbob@example.test,Bob\n"
    jobs = []
    for _ in range(2):
        with database.as_user(user.claims) as c:
            job = c.execute(
                "select id from private.create_import_job(%s, null, 'contacts', %s, 'list.csv',"
                " 'utf-8', '{}', null)",
                (user.workspace_id, len(data)),
            ).fetchone()
            assert job is not None
            store_part(c, job["id"], 1, data)
        jobs.append(job["id"])
    committed, abandoned = jobs
    with database.as_user(user.claims) as c:
        c.execute("select private.commit_import_job(%s)", (committed,))
    conn.execute(
        "update public.import_jobs set created_at = now() - interval '25 hours' where id = %s",
        (abandoned,),
    )
    report = continue_import_jobs(database, None, budget_seconds=60)
    assert report["expired"] >= 1 and report["advanced"] >= 1
    done = one(conn, "select status, created from public.import_jobs where id = %s", (committed,))
    assert (done["status"], done["created"]) == ("done", 2)
    expired = one(
        conn, "select status, error_code from public.import_jobs where id = %s", (abandoned,)
    )
    assert (expired["status"], expired["error_code"]) == ("failed", "upload_expired")
    parts = one(
        conn, "select count(*) as n from private.import_parts where job_id = %s", (abandoned,)
    )
    assert parts["n"] == 0
