"""Benchmark: a 1M-order CSV imported through the edge's upload + commit path (parts of 4 MiB,
commit calls until the job is done) against a plain COPY of the same file into an unindexed
table, in one run on a throwaway database; and the edge's memory growth while it imports.

    scripts/bench_import [--orders N] [--customers N] [--baseline PATH] [--fault-in-mib N]

With --baseline (a checkout such as /work/main), the same file is first imported into a database
migrated from that checkout's migrations (through this checkout's edge), so a change of the SQL
is measured against its baseline in the same run.

The edge runs as its own process (uvicorn), so its resident memory is measured alone: the
growth is its peak (VmHWM) during the import minus its size after a small warm-up import.

Beside each import it prints what the server and the machine did in the timed span (WAL and its
full-page images, checkpoints, WAL segment files, free memory and page cache), server-wide: the
first of two back-to-back runs is slower, and these say whether a run paid for something else.
"""

import argparse
import mmap
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import psycopg

from scripts import postgres
from scripts.migrate import migrate

REPO = Path(__file__).resolve().parents[1]
SUPABASE_URL = "http://127.0.0.1:54321"
SECRET = "bench-secret-with-at-least-thirty-two-characters"  # noqa: S105 (a throwaway database's)
PART_BYTES = 4 * 1024 * 1024
HEADER = "order_id,placed_at,status,total,currency,email,first_name,last_name,customer_id\n"


def write_orders(path: Path, orders: int, customers: int, prefix: str = "O") -> None:
    """Orders over three years for `customers` customers, skewed like a real shop's (a few buy
    often); one in ten cancelled or refunded."""
    rng = random.Random(14)  # noqa: S311 (test data)
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER)
        lines = []
        for n in range(1, orders + 1):
            who = 1 + int(rng.random() ** 2 * customers)
            roll = rng.random()
            status = "paid" if roll < 0.9 else "cancelled" if roll < 0.95 else "refunded"
            day = rng.randrange(1095)
            lines.append(
                f"{prefix}-{n},{2023 + day // 365}-{1 + day % 365 // 31:02d}-{1 + day % 28:02d}"
                f"T{rng.randrange(24):02d}:{rng.randrange(60):02d}:00Z,{status},"
                f"{rng.randrange(500, 30000) / 100:.2f},EUR,customer{who}@example.test,"
                f"Name{who},Surname{who},C{who}\n"
            )
            if len(lines) == 10000:
                out.writelines(lines)
                lines.clear()
        out.writelines(lines)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used (it stays comparable when other work shares
    the machine, which wall time does not)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def edge_backends(database_url: str) -> dict[int, float]:
    """CPU seconds so far of each Postgres backend serving the edge."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        pids = conn.execute(
            "select pid from pg_stat_activity where datname = current_database()"
            " and application_name = 'growthbase-edge'"
        ).fetchall()
    return {pid: cpu_seconds(pid) for (pid,) in pids if Path(f"/proc/{pid}").exists()}


def plain_copy(database_url: str, path: Path) -> tuple[float, float]:
    """The baseline: the same file into an unindexed table with the same columns, typed; its wall
    and server CPU seconds."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        backend = conn.info.backend_pid
        conn.execute(
            "create table bench_plain_copy (order_id text, placed_at timestamptz, status text,"
            " total numeric(14, 2), currency text, email text, first_name text, last_name text,"
            " customer_id text)"
        )
        started, cpu = time.perf_counter(), cpu_seconds(backend)
        with (
            conn.cursor() as cursor,
            cursor.copy("copy bench_plain_copy from stdin with (format csv, header true)") as copy,
            path.open("rb") as file,
        ):
            while block := file.read(1 << 20):
                copy.write(block)
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(backend) - cpu
        conn.execute("drop table bench_plain_copy")
    return elapsed, cpu


def orders_floor(database_url: str, path: Path, project: str) -> tuple[float, float]:
    """A lower bound for any import that keeps orders as they are: the file COPYed into an
    unindexed table, then written in one statement into a table shaped like public.orders with
    its indexes, checks and project key, but without customers (so neither the contact key nor
    the two contact indexes are written) and without triggers (no facts, sales or events). Its
    wall and server CPU seconds."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        backend = conn.info.backend_pid
        conn.execute(
            "create table bench_floor_rows (order_id text, placed_at timestamptz, status text,"
            " total numeric(14, 2), currency text, email text, first_name text, last_name text,"
            " customer_id text)"
        )
        conn.execute(
            "create table bench_floor_orders (like public.orders including defaults"
            " including constraints including indexes,"
            " foreign key (project_id, workspace_id) references public.projects (id, workspace_id))"
        )
        started, cpu = time.perf_counter(), cpu_seconds(backend)
        with (
            conn.cursor() as cursor,
            cursor.copy("copy bench_floor_rows from stdin with (format csv, header true)") as copy,
            path.open("rb") as file,
        ):
            while block := file.read(1 << 20):
                copy.write(block)
        conn.execute(
            "insert into bench_floor_orders (id, workspace_id, project_id, source, external_id,"
            " status, placed_at, total, currency, base_total)"
            " select encode(overlay(uuid_send(gen_random_uuid()) placing substring(int8send("
            "(extract(epoch from clock_timestamp()) * 1000)::bigint) from 3) from 1 for 6),"
            " 'hex')::uuid, p.workspace_id, p.id, 'csv', r.order_id, r.status, r.placed_at,"
            " r.total, r.currency, r.total"
            " from bench_floor_rows r cross join public.projects p where p.id = %s",
            (project,),
        )
        elapsed, cpu = time.perf_counter() - started, cpu_seconds(backend) - cpu
        conn.execute("drop table bench_floor_orders, bench_floor_rows")
    return elapsed, cpu


def prepare(database_url: str) -> tuple[str, str, str]:
    """A team workspace with a project, room for every customer, and an access token."""
    user_id = uuid.uuid4()
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, aud, role, email) values (%s, 'authenticated',"
            " 'authenticated', %s)",
            (user_id, f"bench-{user_id.hex[:8]}@example.test"),
        )
        conn.execute(
            "update public.workspaces set plan_tier = 'team' where created_by = %s", (user_id,)
        )
        # A throwaway database: lift the plan's limits rather than count against them.
        conn.execute("update public.plans set contact_limit = 100000000")
        conn.execute("update public.plan_rate_limits set max_requests = 1000000000")
        row = conn.execute(
            "insert into public.projects (workspace_id, name, type)"
            " select id, 'Bench shop', 'eshop' from public.workspaces where created_by = %s"
            " returning id, workspace_id",
            (user_id,),
        ).fetchone()
    assert row is not None
    now = int(time.time())
    token = jwt.encode(
        {
            "iss": f"{SUPABASE_URL}/auth/v1",
            "sub": str(user_id),
            "aud": "authenticated",
            "role": "authenticated",
            "exp": now + 7200,
            "iat": now,
        },
        SECRET,
        algorithm="HS256",
    )
    return token, str(row[1]), str(row[0])


@dataclass
class ServerState:
    """Counters that explain a slow run, all server- or machine-wide (another session's work in
    the same span counts too): WAL written and its full-page images, checkpoints, WAL segment
    files, and the machine's free and cached memory."""

    wal_bytes: int
    wal_fpi: int
    checkpoints: int
    wal_files: int
    free_kib: int
    cached_kib: int


def server_state(database_url: str) -> ServerState:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "select w.wal_bytes::bigint, w.wal_fpi, b.checkpoints_timed + b.checkpoints_req,"
            " (select count(*) from pg_ls_waldir())"
            " from pg_stat_wal w cross join pg_stat_bgwriter b"
        ).fetchone()
    assert row is not None
    meminfo = {
        line.split(":")[0]: int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
    }
    return ServerState(row[0], row[1], row[2], row[3], meminfo["MemFree"], meminfo["Cached"])


def fault_in_memory(mib: int) -> float:
    """Touches `mib` MiB of fresh memory and frees it; answers its seconds. This machine is a VM
    whose host takes back memory the guest leaves free (virtio-balloon free page reporting, and
    DAMON pages out page cache unread for a minute), so after a quiet spell every page an import
    newly takes may cost the host a fault: the suspect for the first of two runs being slower.
    Session 29's pair (README) did not bear it out, so this runs only when asked."""
    available = next(
        int(line.split()[1]) // 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemAvailable:")
    )
    mib = min(mib, available // 2)
    started = time.perf_counter()
    if mib <= 0:
        return 0.0
    with mmap.mmap(-1, mib << 20) as memory:
        for offset in range(0, mib << 20, mmap.PAGESIZE):
            memory[offset] = 1
    return time.perf_counter() - started


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def import_file(
    edge: httpx.Client, workspace: str, project: str, path: Path
) -> tuple[dict[str, Any], float, float, int]:
    """Create, upload every part, commit until done; answers the job, the upload and commit
    seconds, and the number of commit calls."""
    size = path.stat().st_size
    created = edge.post(
        "/api/v1/imports",
        json={
            "workspace_id": workspace,
            "kind": "orders",
            "project_id": project,
            "size_bytes": size,
            "file_name": path.name,
        },
    )
    created.raise_for_status()
    job = created.json()["data"]["id"]
    started = time.perf_counter()
    with path.open("rb") as file:
        number = 1
        while block := file.read(PART_BYTES):
            edge.put(f"/api/v1/imports/{job}/parts/{number}", content=block).raise_for_status()
            number += 1
    uploaded = time.perf_counter()
    calls = 0
    while True:
        calls += 1
        answer = edge.post(f"/api/v1/imports/{job}/commit")
        answer.raise_for_status()
        state = answer.json()["data"]
        if state["status"] in ("done", "failed", "cancelled"):
            break
    return state, uploaded - started, time.perf_counter() - uploaded, calls


@dataclass
class Measured:
    """One import of the file through the edge beside a plain COPY of it, in one database."""

    copy_seconds: float
    copy_cpu: float
    floor_seconds: float
    floor_cpu: float
    upload_seconds: float
    commit_seconds: float
    calls: int
    server_cpu: float
    edge_cpu: float
    memory_growth_kib: int
    state: dict[str, Any]
    imported: int
    before: ServerState
    after: ServerState
    fault_in_seconds: float

    @property
    def seconds(self) -> float:
        return self.upload_seconds + self.commit_seconds


def measure(root: Path, path: Path, warmup: Path, port: int, fault_in_mib: int) -> Measured:
    """A throwaway database migrated from the checkout at `root`; the plain COPY, then the
    edge (this checkout's code) importing the warm-up file and the file."""
    with postgres.throwaway_database("growthbase_bench") as database_url:
        migrate(database_url, root=root)
        token, workspace, project = prepare(database_url)
        copy_seconds, copy_cpu = plain_copy(database_url, path)
        floor_seconds, floor_cpu = orders_floor(database_url, path, project)
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "SUPABASE_URL": SUPABASE_URL,
            "SUPABASE_JWT_SECRET": SECRET,
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        server = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.index:app",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env=env,
            cwd=path.parent,
        )
        try:
            with httpx.Client(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=600,  # a call ends after its 40 s budget and its last step
            ) as edge:
                deadline = time.monotonic() + 120  # a loaded machine starts it slowly
                while True:
                    try:
                        if edge.get("/health").status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the edge did not start")
                    time.sleep(0.2)
                import_file(edge, workspace, project, warmup)
                fault_in_seconds = fault_in_memory(fault_in_mib)
                before_kib = memory_kib(server.pid, "VmRSS")
                before = server_state(database_url)
                backends_before, edge_before = edge_backends(database_url), cpu_seconds(server.pid)
                state, upload_seconds, commit_seconds, calls = import_file(
                    edge, workspace, project, path
                )
                after = server_state(database_url)
                peak_kib = memory_kib(server.pid, "VmHWM")
                edge_cpu = cpu_seconds(server.pid) - edge_before
                server_cpu = sum(
                    used - backends_before.get(pid, 0.0)
                    for pid, used in edge_backends(database_url).items()
                )
        finally:
            server.kill()
            server.wait()
        with psycopg.connect(database_url) as conn:
            # The file's orders (O-…), not the warm-up file's (W-…).
            row = conn.execute(
                "select count(*) from public.orders where project_id = %s"
                " and external_id like 'O-%%'",
                (project,),
            ).fetchone()
    return Measured(
        copy_seconds,
        copy_cpu,
        floor_seconds,
        floor_cpu,
        upload_seconds,
        commit_seconds,
        calls,
        server_cpu,
        edge_cpu,
        peak_kib - before_kib,
        state,
        row[0] if row else 0,
        before,
        after,
        fault_in_seconds,
    )


def report(name: str, orders: int, size: int, run: Measured) -> None:
    print(f"== {name}")
    print(
        f"plain COPY into an unindexed table       {run.copy_seconds:7.2f} s"
        f"   {orders / run.copy_seconds:9.0f} rows/s"
    )
    print(
        f"floor: COPY + orders' indexes and key    {run.floor_seconds:7.2f} s"
        f"   {orders / run.floor_seconds:9.0f} rows/s   (ratio to the COPY: wall"
        f" {run.floor_seconds / run.copy_seconds:.2f},"
        f" CPU {run.floor_cpu / max(run.copy_cpu, 0.01):.2f})"
    )
    print(f"memory faulted in before the timed span   {run.fault_in_seconds:7.2f} s")
    print(
        f"import through the edge (upload+commit)  {run.seconds:7.2f} s"
        f"   {orders / run.seconds:9.0f} rows/s"
    )
    parts = -(-size // PART_BYTES)
    print(f"  upload ({parts} parts)                      {run.upload_seconds:7.2f} s")
    print(f"  commit ({run.calls} calls)                      {run.commit_seconds:7.2f} s")
    print(f"ratio import / plain COPY (wall)         {run.seconds / run.copy_seconds:7.2f}")
    print(
        f"server CPU: plain COPY {run.copy_cpu:.2f} s, import {run.server_cpu:.2f} s"
        f" (ratio {run.server_cpu / max(run.copy_cpu, 0.01):.2f}),"
        f" {run.server_cpu / orders * 1e6:.1f} µs per order; edge CPU {run.edge_cpu:.2f} s"
    )
    print(f"edge memory growth (peak - after warm-up) {run.memory_growth_kib / 1024:6.1f} MiB")
    before, after = run.before, run.after
    wal_mib = (after.wal_bytes - before.wal_bytes) / 2**20
    print(
        f"server-wide in the timed span: WAL {wal_mib:.0f} MiB,"
        f" {after.wal_fpi - before.wal_fpi} full-page images,"
        f" {after.checkpoints - before.checkpoints} checkpoints,"
        f" WAL files {before.wal_files} -> {after.wal_files};"
        f" machine memory free {(after.free_kib - before.free_kib) / 1024:+.0f} MiB,"
        f" page cache {(after.cached_kib - before.cached_kib) / 1024:+.0f} MiB"
    )
    print(
        f"job: {run.state['status']}, created {run.state['created']},"
        f" failed rows {run.state['rows_failed']}; orders in the database: {run.imported}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--fault-in-mib",
        type=int,
        default=0,
        help="fresh memory touched and freed right before the timed span (see"
        " fault_in_memory; an import takes about 2 GiB of new page cache); 0, none",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="also import into a database migrated from this checkout (e.g. main), first",
    )
    args = parser.parse_args(argv)
    runs: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "orders.csv"
        warmup = Path(folder) / "warmup.csv"
        write_orders(path, args.orders, args.customers)
        size = path.stat().st_size
        write_orders(warmup, 2000, 500, prefix="W")
        if args.baseline is not None:
            runs[f"baseline migrations ({args.baseline})"] = measure(
                args.baseline, path, warmup, args.port, args.fault_in_mib
            )
        runs["this checkout"] = measure(REPO, path, warmup, args.port, args.fault_in_mib)
    print(f"file: {args.orders} orders of {args.customers} customers, {size / 1024 / 1024:.0f} MiB")
    for name, run in runs.items():
        report(name, args.orders, size, run)
    if len(runs) == 2:
        base, this = runs.values()
        print(
            f"this checkout / baseline: wall {this.seconds / base.seconds:.2f},"
            f" server CPU {this.server_cpu / base.server_cpu:.2f}"
        )
    with open("/proc/loadavg") as load:
        print(f"machine load average (1, 5, 15 min): {' '.join(load.read().split()[:3])}")
    return (
        0
        if all(
            run.state["status"] == "done" and run.imported == args.orders for run in runs.values()
        )
        else 1
    )


if __name__ == "__main__":
    sys.exit(main())
