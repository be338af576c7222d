"""Benchmark: one orders-import chunk, run again and again on the same staged rows and rolled
back, in two databases side by side: one migrated from a baseline checkout (main) and one from
this checkout. The runs alternate between the two, so load from other work on the machine falls
on both alike; each figure is the chunk backend's CPU time (and wall) per run.

    scripts/bench_import_chunk [--orders N] [--customers N] [--chunk N] [--done N] [--runs N]
                               [--baseline PATH] [--explain]

`--done` rows are committed first, so the measured chunk meets contacts and orders already
there, as in the middle of a large file. `--explain` prints, for one more rolled-back run in
each database, every statement of at least 5 ms the chunk runs (nested ones and triggers
included, each inside its parent's time) with its wall time, from auto_explain without
per-node instrumentation (which would inflate the per-row foreign-key checks many times).
"""

import argparse
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg

from api.core.db import Database
from api.imports.jobs import Runner, step
from api.imports.parts import store_part
from scripts import postgres
from scripts.bench_import import PART_BYTES, cpu_seconds, write_orders
from scripts.migrate import migrate

REPO = Path(__file__).resolve().parents[1]
CHUNK_SQL = "select status, merge_record from private.import_orders_chunk(%s, %s)"
ANALYZE = (
    "analyze public.contacts, public.orders, public.contact_events, public.customer_facts,"
    " public.contact_external_ids"
)
DURATION = re.compile(r"duration: ([0-9.]+) ms\s+plan:\s*Query Text: (.*?)\n", re.S)


def prepare(url: str) -> tuple[dict[str, Any], str, str]:
    """A team workspace with a project and room for every customer; the user's claims."""
    user_id = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, aud, role, email) values (%s, 'authenticated',"
            " 'authenticated', %s)",
            (user_id, f"bench-{user_id.hex[:8]}@example.test"),
        )
        conn.execute(
            "update public.workspaces set plan_tier = 'team' where created_by = %s", (user_id,)
        )
        conn.execute("update public.plans set contact_limit = 100000000")
        conn.execute("update public.plan_rate_limits set max_requests = 1000000000")
        row = conn.execute(
            "insert into public.projects (workspace_id, name, type)"
            " select id, 'Bench shop', 'eshop' from public.workspaces where created_by = %s"
            " returning id, workspace_id",
            (user_id,),
        ).fetchone()
    assert row is not None
    claims = {"sub": str(user_id), "role": "authenticated", "aud": "authenticated"}
    return claims, str(row[1]), str(row[0])


def stage(url: str, path: Path, done_records: int, chunk: int) -> str:
    """Creates an orders job for the file, uploads and stages it, and commits `done_records`
    rows of it; answers the job's id."""
    claims, workspace, project = prepare(url)
    database = Database(url, pool_mode="session", max_size=2, timeout_seconds=30)
    database.open()
    try:
        with database.as_user(claims) as conn:
            job = conn.execute(
                "select id from private.create_import_job(%s, %s, 'orders', %s, %s, 'utf-8',"
                " '{}', null)",
                (workspace, project, path.stat().st_size, path.name),
            ).fetchone()
        assert job is not None
        job_id = job["id"]
        with path.open("rb") as file:
            number = 1
            while block := file.read(PART_BYTES):
                with database.as_user(claims) as conn:
                    conn.execute("select private.import_job_as(%s, 'member')", (job_id,))
                    store_part(conn, job_id, number, block)
                number += 1
        with database.as_user(claims) as conn:
            conn.execute("select private.commit_import_job(%s)", (job_id,))
        runner = Runner(database, None)
        while True:
            state = step(runner, job_id, time.monotonic() + 600, chunk)
            assert state is not None
            if state["status"] == "importing" and state["merge_record"] < done_records:
                # The edge merges an orders job with its own workers; here one chunk at a time.
                with database.as_service() as conn:
                    state = conn.execute(
                        "select * from private.import_orders_chunk(%s, %s)", (job_id, chunk)
                    ).fetchone()
                assert state is not None
            if state["status"] != "validating" and state["merge_record"] >= done_records:
                break
            if state["status"] == "importing":
                # Fresh statistics as the tables grow, so the chunks' plans (foreign-key
                # checks included) are not those made for near-empty tables.
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(ANALYZE)
    finally:
        database.close()
    # Plans made from fresh statistics, as in the middle of a large import (not the first
    # chunks' plans for near-empty tables).
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze")
    return str(job_id)


def run_chunk(url: str, job_id: str, chunk: int) -> tuple[float, float]:
    """One chunk, rolled back: its backend's CPU seconds and its wall seconds."""
    with psycopg.connect(url) as conn:
        conn.execute("select 1")
        pid = conn.info.backend_pid
        cpu, started = cpu_seconds(pid), time.perf_counter()
        row = conn.execute(CHUNK_SQL, (job_id, chunk)).fetchone()
        wall, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu
        assert row is not None and row[0] == "importing", row
        conn.rollback()
    return cpu, wall


def explain_chunk(url: str, job_id: str, chunk: int) -> list[tuple[float, str]]:
    """The chunk's statements (nested ones and triggers too) with their times, rolled back."""
    notices: list[str] = []
    with psycopg.connect(url) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute("load 'auto_explain'")
        for name, value in (
            # Statements of at least 5 ms, not analyzed: a foreign-key check (one per row)
            # logged or instrumented each time would cost more than the chunk.
            ("log_min_duration", "5"),
            ("log_nested_statements", "on"),
            ("log_analyze", "off"),
            ("log_timing", "off"),
            ("log_triggers", "on"),
            ("log_level", "notice"),
        ):
            conn.execute(f"set auto_explain.{name} = '{value}'")
        conn.execute(CHUNK_SQL, (job_id, chunk))
        conn.rollback()
    timed = []
    for notice in notices:
        found = DURATION.search(notice + "\n")
        if found:
            timed.append((float(found.group(1)), notice))
    return timed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=40_000)
    parser.add_argument("--chunk", type=int, default=20_000)
    parser.add_argument("--done", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--baseline", type=Path, default=Path("/work/main"))
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as folder,
        postgres.throwaway_database("growthbase_chunk_base") as base_url,
        postgres.throwaway_database("growthbase_chunk_new") as new_url,
    ):
        path = Path(folder) / "orders.csv"
        write_orders(path, args.orders, args.customers)
        migrate(base_url, root=args.baseline)
        migrate(new_url, root=REPO)
        dbs = {"baseline": base_url, "this branch": new_url}
        jobs = {name: stage(url, path, args.done, args.chunk) for name, url in dbs.items()}
        for name, url in dbs.items():  # warm caches
            run_chunk(url, jobs[name], args.chunk)
        cpu: dict[str, list[float]] = {name: [] for name in dbs}
        wall: dict[str, list[float]] = {name: [] for name in dbs}
        for run in range(args.runs):
            order = list(dbs) if run % 2 == 0 else list(reversed(dbs))
            for name in order:
                used, took = run_chunk(dbs[name], jobs[name], args.chunk)
                cpu[name].append(used)
                wall[name].append(took)
        if args.explain:
            for name, url in dbs.items():
                print(f"== {name}: statements of one chunk (ms, slowest first)")
                for ms, text in sorted(explain_chunk(url, jobs[name], args.chunk), reverse=True)[
                    :40
                ]:
                    first = " ".join(text.split("Query Text:", 1)[-1].split())[:150]
                    print(f"{ms:9.1f}  {first}")
    print(
        f"chunk of {args.chunk} orders after {args.done} of {args.orders} orders"
        f" ({args.customers} customers), {args.runs} runs each, alternating"
    )
    base_cpu = statistics.median(cpu["baseline"])
    for name in dbs:
        median_cpu, median_wall = statistics.median(cpu[name]), statistics.median(wall[name])
        print(
            f"{name:12} CPU median {median_cpu:6.3f} s (min {min(cpu[name]):.3f},"
            f" max {max(cpu[name]):.3f}), {median_cpu / args.chunk * 1e6:5.1f} µs per order;"
            f" wall median {median_wall:6.3f} s; CPU / baseline {median_cpu / base_cpu:5.2f}"
        )
    with open("/proc/loadavg") as load:
        print(f"machine load average (1, 5, 15 min): {' '.join(load.read().split()[:3])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
