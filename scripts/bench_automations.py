"""Benchmark: automation triggers per second through the edge, against a bare FastAPI endpoint
doing one insert on the same database, measured in the same run.

Runs on a throwaway database (rate limits lifted there, so the limiter still runs but never
refuses), with Make.com played by a local HTTP server, so each trigger pays for what it pays in
production: token verification, the enqueue transaction and the dispatch after it.
"""

import argparse
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import jwt
import psycopg
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.core.db import Database
from api.core.settings import Settings
from scripts import postgres
from scripts.migrate import migrate
from tests.fakes.make_server import serve_make

SECRET = "bench-" + uuid.uuid4().hex
SUPABASE_URL = "http://127.0.0.1:54321"


def baseline_app(database_url: str) -> FastAPI:
    database = Database(database_url, pool_mode="session", max_size=5, timeout_seconds=5)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        database.open()
        yield
        database.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/baseline")
    async def insert(request: Request) -> dict[str, Any]:
        payload = await request.body()
        with database.connection() as conn:
            conn.execute("insert into bench_baseline (payload) values (%s)", (payload.decode(),))
        return {"data": {"ok": True}, "error": None}

    return app


def timed(calls: int, call: Callable[[], int]) -> tuple[float, float]:
    """Requests per second and median latency (ms) over `calls` sequential requests."""
    latencies = []
    started = time.perf_counter()
    for _ in range(calls):
        before = time.perf_counter()
        status = call()
        latencies.append(time.perf_counter() - before)
        if status >= 400:
            raise SystemExit(f"request failed with {status}")
    elapsed = time.perf_counter() - started
    return calls / elapsed, statistics.median(latencies) * 1000


def prepare(database_url: str) -> tuple[str, str]:
    """A funded user with a project; returns its access token and project id."""
    user_id = uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, aud, role, email) values (%s, 'authenticated',"
            " 'authenticated', %s)",
            (user_id, f"bench-{user_id.hex[:8]}@example.test"),
        )
        conn.execute(
            "update public.workspaces set plan_tier = 'team', credits_remaining = 100000000"
            " where created_by = %s",
            (user_id,),
        )
        conn.execute("update public.plan_rate_limits set max_requests = 1000000000")
        project = conn.execute(
            "insert into public.projects (workspace_id, name, type)"
            " select id, 'Bench', 'eshop' from public.workspaces where created_by = %s"
            " returning id",
            (user_id,),
        ).fetchone()
        conn.execute("create table bench_baseline (id bigserial primary key, payload text)")
    assert project is not None
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": f"{SUPABASE_URL}/auth/v1",
            "sub": str(user_id),
            "aud": "authenticated",
            "role": "authenticated",
            "exp": now + 3600,
            "iat": now,
        },
        SECRET,
        algorithm="HS256",
    )
    return token, str(project[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args(argv)
    with postgres.throwaway_database("growthbase_bench") as database_url:
        migrate(database_url)
        token, project = prepare(database_url)
        body = {"project_id": project, "input": {"keyword": "bench"}}
        with serve_make() as make:
            settings = Settings(
                database_url=SecretStr(database_url),
                supabase_url=SUPABASE_URL,
                supabase_jwt_secret=SecretStr(SECRET),
                make_signing_secret=SecretStr(SECRET),
                make_webhook_url_report=make.url("report"),
                public_base_url="https://edge.bench.test",
                log_level="WARNING",
            )
            with (
                TestClient(create_app(settings)) as edge,
                TestClient(baseline_app(database_url)) as bare,
            ):
                headers = {"Authorization": f"Bearer {token}"}
                for _ in range(20):
                    edge.post("/api/v1/automations/report", headers=headers, json=body)
                    bare.post("/baseline", content=json.dumps(body))
                baseline_rps, baseline_ms = timed(
                    args.requests,
                    lambda: bare.post("/baseline", content=json.dumps(body)).status_code,
                )
                edge_rps, edge_ms = timed(
                    args.requests,
                    lambda: (
                        edge.post(
                            "/api/v1/automations/report", headers=headers, json=body
                        ).status_code
                    ),
                )
            delivered = len(make.received)
    print(f"requests per side        {args.requests}")
    print(f"baseline (one insert)    {baseline_rps:8.1f} req/s   median {baseline_ms:6.2f} ms")
    print(f"edge trigger + dispatch  {edge_rps:8.1f} req/s   median {edge_ms:6.2f} ms")
    print(f"ratio edge / baseline    {edge_rps / baseline_rps:8.2f}")
    print(f"jobs delivered to Make   {delivered}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
