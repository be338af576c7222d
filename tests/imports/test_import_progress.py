"""Progress of a long import: while a job imports, its workspace's private channel hears of each
merge step (each step commits the job's counts and the trigger on import_jobs broadcasts them),
with counts that only grow, for contacts and for orders (two merge workers). What keeps the
news within 2 s is the steps' sizing: the first is small and each grows at most GROWTH times
(paced to CHUNK_SECONDS from the last one's pace), so a step is never sized before its pace is
known. The test asserts the sizes, not wall time, which a loaded machine would make flaky."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from api.core.settings import Settings
from api.imports.jobs import (
    CHUNK_RECORDS,
    CHUNK_SECONDS,
    GROWTH,
    MAX_CHUNK_RECORDS,
    MIN_CHUNK_RECORDS,
    MergePace,
    paced_chunk,
)
from tests.factories.workspaces import User, acting_as, create_user, fund, make_project
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]
ROWS = 6_000


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = Settings(database_url=SecretStr(database_url), supabase_url=jwks.base_url)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def contacts_file() -> bytes:
    tag = uuid.uuid4().hex[:6]
    rows = "".join(f"p{n}-{tag}@example.test,Name{n},vip\n" for n in range(ROWS))
    return ("email,first_name,tags\n" + rows).encode()


def orders_file() -> bytes:
    tag = uuid.uuid4().hex[:6]
    rows = "".join(
        f"O-{n},2026-05-{1 + n % 28:02d}T10:00:00Z,paid,{n % 90 + 10}.50,EUR,"
        f"c{n % 500}-{tag}@example.test,Name,C{n % 500}\n"
        for n in range(ROWS)
    )
    header = "order_id,placed_at,status,total,currency,email,first_name,customer_id\n"
    return (header + rows).encode()


def broadcasts(conn: Conn, user: User, job: str) -> list[dict[str, Any]]:
    """The job's import_progress messages, as a member of its workspace reads them."""
    topic = f"workspace:{user.workspace_id}:imports"
    with acting_as(conn, user):
        conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
        rows = conn.execute(
            "select payload, inserted_at from realtime.messages where topic = %s"
            " and event = 'import_progress' order by inserted_at",
            (topic,),
        ).fetchall()
    return [{**r["payload"], "at": r["inserted_at"]} for r in rows if r["payload"]["id"] == job]


@pytest.mark.parametrize("kind", ["contacts", "orders"])
def test_a_long_import_reports_progress_at_least_every_2_seconds(
    client: TestClient, jwks: JwksServer, conn: Conn, kind: str
) -> None:
    user = create_user(conn)
    fund(conn, user, 0, "team")
    headers = {"Authorization": f"Bearer {jwks.sign(jwks.claims(user.id))}"}
    data = contacts_file() if kind == "contacts" else orders_file()
    body: dict[str, Any] = {
        "workspace_id": str(user.workspace_id),
        "kind": kind,
        "size_bytes": len(data),
    }
    if kind == "orders":
        body["project_id"] = str(make_project(conn, user))
    created = client.post("/api/v1/imports", json=body, headers=headers)
    assert created.status_code == 201, created.json()
    job = created.json()["data"]["id"]
    sent = client.put(
        f"/api/v1/imports/{job}/parts/1",
        content=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    assert sent.status_code == 200, sent.json()
    done = client.post(f"/api/v1/imports/{job}/commit", headers=headers)
    assert done.status_code == 200, done.json()
    assert (done.json()["data"]["status"], done.json()["data"]["created"]) == ("done", ROWS)

    seen = broadcasts(conn, user, job)
    # A message is stamped with its transaction's start, not its commit, so two order workers'
    # steps can be stamped out of the order a member hears them in (commit order, in which the
    # job row's lock makes the counts grow): they are taken in the order of their counts.
    importing = sorted(
        (s for s in seen if s["status"] in ("importing", "done")),
        key=lambda s: (s["rows_processed"], s["status"] == "done"),
    )
    assert importing[0]["rows_processed"] == 0
    assert [s["status"] for s in importing].count("done") == 1
    assert (importing[-1]["status"], importing[-1]["rows_processed"]) == ("done", ROWS)
    processed = [s["rows_processed"] for s in importing]
    assert len(set(processed)) >= 4, processed
    # The first step's news comes after at most CHUNK_RECORDS rows (each worker's first step).
    assert processed[1] <= CHUNK_RECORDS * (2 if kind == "orders" else 1), processed


def test_a_step_grows_at_most_growth_times_and_follows_the_last_pace() -> None:
    """The next step's rows: what the last step's pace does in CHUNK_SECONDS, never more than
    GROWTH times the last step, within the bounds."""
    fast = paced_chunk(CHUNK_RECORDS, CHUNK_SECONDS / 100)
    assert fast == CHUNK_RECORDS * GROWTH
    slow = paced_chunk(4 * MIN_CHUNK_RECORDS, 4 * CHUNK_SECONDS)
    assert slow == MIN_CHUNK_RECORDS
    steady = paced_chunk(3 * MIN_CHUNK_RECORDS, 2 * CHUNK_SECONDS)
    assert steady == 3 * MIN_CHUNK_RECORDS // 2
    assert paced_chunk(MAX_CHUNK_RECORDS, CHUNK_SECONDS / 100) == MAX_CHUNK_RECORDS


def test_two_order_workers_size_a_part_by_its_slower_half_and_one_alone_by_both() -> None:
    """An orders job's two workers share one part size: while both run, a member hears of the
    job at each part one of them writes while the other stages the next, so a part takes what the
    slower half does in CHUNK_SECONDS; a worker left alone stages and writes each part itself, so
    its parts take what both halves do together. A written part's pace is taken over its own
    rows, and a part grows at most GROWTH times the smaller part either half was measured on."""
    pace = MergePace(2)
    assert pace.chunk_records == CHUNK_RECORDS
    pace.measured("staged", CHUNK_RECORDS, CHUNK_SECONDS / 100)
    # Not sized before a part has been written.
    assert pace.chunk_records == CHUNK_RECORDS
    pace.measured("staged", CHUNK_RECORDS, CHUNK_SECONDS / 100)
    pace.measured("written", CHUNK_RECORDS, CHUNK_SECONDS / 100)
    assert pace.chunk_records == CHUNK_RECORDS * GROWTH

    # Parts of 8,000 rows staged in 0.4 s (50 µs a row), then the first of them written in
    # 0.8 s (100 µs a row): writing is the slower half, 10,000 rows to CHUNK_SECONDS.
    pace = MergePace(2)
    pace.measured("staged", 8_000, 8_000 * 50e-6 * CHUNK_SECONDS)
    pace.measured("staged", 8_000, 8_000 * 50e-6 * CHUNK_SECONDS)
    pace.measured("written", 4_000, 8_000 * 100e-6 * CHUNK_SECONDS)  # the worker asked for 4,000
    assert pace.chunk_records == 10_000
    # The worker left alone: stage plus write, 150 µs a row.
    pace.leave()
    assert pace.chunk_records == int(CHUNK_SECONDS / 150e-6)
    # It writes the other part staged (8,000 rows) at the same pace: the size stays.
    records = pace.chunk_records
    pace.measured("written", records, 8_000 * 100e-6 * CHUNK_SECONDS)
    assert pace.chunk_records == records
