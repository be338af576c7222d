"""The cron's part of imports: jobs a commit call left running are carried on, and uploads
nobody committed expire and free their staged parts."""

from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from api.app import create_app
from api.core.db import Database
from api.imports.parts import store_part
from tests.factories.edge import authorization, edge_settings
from tests.factories.workspaces import create_user, one
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]


CRON_SECRET = "cron-imports-secret"


@pytest.fixture
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = edge_settings(database_url, jwks, cron_secret=CRON_SECRET)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def sole_running_jobs(conn: Conn) -> None:
    """Every file import another test left validating or importing in the worker's database is
    cancelled first: the cron advances the ten running jobs updated longest ago, whichever
    workspace's, so ten such leftovers ahead of this test's job left it unadvanced."""
    conn.execute(
        "update public.import_jobs set status = 'cancelled', finished_at = now()"
        " where status in ('validating', 'importing') and source in ('upload', 'storage')"
    )


@pytest.mark.usefixtures("sole_running_jobs")
def test_the_cron_finishes_committed_jobs_and_expires_abandoned_uploads(
    database: Database, conn: Conn, client: TestClient
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
    assert client.get("/api/v1/cron/imports").status_code == 401
    answer = client.get("/api/v1/cron/imports", headers=authorization(CRON_SECRET))
    assert answer.status_code == 200, answer.text
    report = answer.json()["data"]
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
