"""Benchmark of the flow engine on a throwaway database, each figure beside a baseline measured
in the same run:

- entry: N contacts each get a custom event in one statement, and the database enrols them in
  a flow `wait 1 h → branch on a segment rule → send_email` in the same transaction (target
  <= 5 s for 100k), beside inserting the same events into a table without triggers;
- advancing: the N runs, made due, move one step in one tick (target >= 20,000 transitions/s
  and <= 5x a bare UPDATE of the same rows, timed in the same run), then the branch and the
  send steps (emails queued in the campaign ledger) in the next;
- empty ticks: with nothing due (target <= 10 ms), and with --waiting runs (default 1M)
  waiting and none due (target <= 50 ms), the median of 20;
- three ticks at once over fresh due runs queue each email exactly once, and a suppressed
  contact in a batch is recorded as such while the rest of the batch is queued;
- before/after: each of the three steps is also run (and rolled back) by the tick as an earlier
  migration defined it (`--before`, default the tick before the lean one: claim, grouping by
  kind and record each reading the runs again; it calls the kinds as defined now) and by the
  current one, in the order before, now, now, before, so a refactor's cost is measured against
  the same rows in the same run (wall time and the server's CPU time, which a loaded machine
  disturbs less).

    scripts/bench_flows [--contacts N] [--waiting N] [--before MIGRATION]
"""

import argparse
import json
import os
import statistics
import sys
import threading
import time
import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from scripts import postgres
from scripts.migrate import REPO, migrate

Conn = psycopg.Connection[Any]

# The tick before it claimed and grouped by kind in one statement (the kinds as defined now).
BEFORE = "20261222090000_flow_step_kinds.sql"


def value(conn: Conn, query: str, params: Any = None) -> Any:
    """The first column of the one row a query answers."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row[0]


def backend_cpu(conn: Conn) -> float | None:
    """CPU seconds the connection's server process has used (user and system), read from
    /proc when the server runs on this machine, else None. On a loaded machine a statement's
    CPU time is steadier than its wall time, which includes waiting for a core."""
    try:
        with open(f"/proc/{conn.info.backend_pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_since(conn: Conn, start: float | None) -> float | None:
    end = backend_cpu(conn)
    return None if start is None or end is None else end - start


def timed(conn: Conn, query: str, params: Any = None) -> tuple[float, Any]:
    started = time.perf_counter()
    row = conn.execute(query, params).fetchone()
    return time.perf_counter() - started, row[0] if row else None


def setup(conn: Conn, contacts: int) -> tuple[uuid.UUID, uuid.UUID]:
    """A team workspace with `contacts` contacts (every tenth is gold), a verified sender, a
    template and the flow; answers (workspace, flow)."""
    user_id = uuid.uuid4()
    conn.execute(
        "insert into auth.users (id, aud, role, email) values (%s, 'authenticated',"
        " 'authenticated', 'bench@example.test')",
        (user_id,),
    )
    workspace_id = value(conn, "select id from public.workspaces where created_by = %s", (user_id,))
    conn.execute("update public.plans set contact_limit = 10000000, monthly_email_limit = 10000000")
    conn.execute("update public.workspaces set plan_tier = 'team' where id = %s", (workspace_id,))
    conn.execute(
        "insert into public.contacts (workspace_id, email, first_name, consent_state, attributes)"
        " select %s, 'c' || n || '@example.test', 'First' || n, 'granted',"
        " jsonb_build_object('tier', case when n %% 10 = 0 then 'gold' else 'silver' end)"
        " from generate_series(1, %s) as n",
        (workspace_id, contacts),
    )
    sender = value(
        conn,
        "insert into public.sender_identities"
        " (workspace_id, identity, verified, dkim_status, warmup)"
        " values (%s, 'bench.example.com', true, 'SUCCESS', false) returning id",
        (workspace_id,),
    )
    template = value(
        conn,
        "insert into public.email_templates (workspace_id, name, subject, html)"
        " values (%s, 'Bench', 'Hi {{ first_name }}', '<p>Hi</p>') returning id",
        (workspace_id,),
    )
    flow = value(
        conn,
        "insert into public.flows (workspace_id, name, trigger_type, trigger_config,"
        " entry_policy) values (%s, 'Bench', 'custom', '{\"name\": \"bench\"}', 'every_time')"
        " returning id",
        (workspace_id,),
    )
    send = {
        "template_id": str(template),
        "sender_identity_id": str(sender),
        "from_email": "hello@bench.example.com",
    }
    steps = [
        {"key": "wait", "kind": "wait", "config": {"hours": 1}, "next": "gold"},
        {
            "key": "gold",
            "kind": "branch",
            "config": {"rule": {"attribute": "tier", "op": "eq", "value": "gold"}},
            "next": "vip",
            "alt": "news",
        },
        {"key": "vip", "kind": "send_email", "config": send},
        {"key": "news", "kind": "send_email", "config": send},
    ]
    with conn.transaction():
        # save_flow and activate_flow act for a member, as the Data API would call them.
        conn.execute(
            "select set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": str(user_id), "role": "authenticated"}),),
        )
        conn.execute("select public.save_flow(%s, %s)", (flow, Jsonb(steps)))
        conn.execute("select public.activate_flow(%s)", (flow,))
    return workspace_id, flow


def install_before(conn: Conn, migration: str) -> None:
    """The tick as `migration` defined it, as private.advance_flows_before."""
    sql = (REPO / "supabase" / "migrations" / migration).read_text()
    start = sql.index("create or replace function private.advance_flows(")
    end = sql.index("\n$$;", start) + len("\n$$;")
    conn.execute(
        sql[start:end].replace("private.advance_flows(", "private.advance_flows_before(", 1)
    )


def step_before_after(
    conn: Conn, n: int
) -> tuple[float, float, float, int, float | None, float | None, float | None]:
    """One step for every due run, over the same rows: by the earlier tick and by this one in
    the order before, now, now, before (each rolled back, so neither gains from going second),
    then by this one for good. Answers the mean seconds before and now, the seconds of the last
    run, the runs it moved and its server CPU seconds, then the mean server CPU seconds before
    and now (steadier than wall time on a loaded machine; None when not measured)."""
    times: dict[str, list[float]] = {"advance_flows_before": [], "advance_flows": []}
    cpus: dict[str, list[float]] = {"advance_flows_before": [], "advance_flows": []}
    for tick in ("advance_flows_before", "advance_flows", "advance_flows", "advance_flows_before"):
        with conn.transaction():
            cpu = backend_cpu(conn)
            seconds, moved = timed(conn, f"select private.{tick}(%s, %s)", (n, n))
            used = cpu_since(conn, cpu)
            assert moved == n, (tick, moved)
            times[tick].append(seconds)
            if used is not None:
                cpus[tick].append(used)
            raise psycopg.Rollback()
    cpu = backend_cpu(conn)
    seconds, moved = timed(conn, "select private.advance_flows(%s, %s)", (n, n))
    return (
        statistics.mean(times["advance_flows_before"]),
        statistics.mean(times["advance_flows"]),
        seconds,
        moved,
        cpu_since(conn, cpu),
        statistics.mean(cpus["advance_flows_before"]) if cpus["advance_flows_before"] else None,
        statistics.mean(cpus["advance_flows"]) if cpus["advance_flows"] else None,
    )


def enter(
    conn: Conn, workspace_id: uuid.UUID, contacts: int
) -> tuple[float, float, float | None, float | None]:
    """Seconds to record one event per contact with enrolment, and the baseline: the same
    rows into a table of the same shape without triggers; then the server CPU seconds of each."""
    conn.execute(
        "create table bench_events"
        " (like public.contact_events including defaults including identity)"
    )
    insert = (
        "insert into {table} (workspace_id, contact_id, type, name, event_key)"
        " select workspace_id, id, 'custom', 'bench', 'e-' || id from public.contacts"
        " where workspace_id = %s"
    )
    cpu = backend_cpu(conn)
    started = time.perf_counter()
    conn.execute(insert.format(table="bench_events"), (workspace_id,))
    baseline = time.perf_counter() - started
    baseline_cpu = cpu_since(conn, cpu)
    cpu = backend_cpu(conn)
    started = time.perf_counter()
    conn.execute(insert.format(table="public.contact_events"), (workspace_id,))
    seconds = time.perf_counter() - started
    seconds_cpu = cpu_since(conn, cpu)
    runs = value(conn, "select count(*) from public.flow_runs")
    assert runs == contacts, (runs, contacts)
    return seconds, baseline, seconds_cpu, baseline_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--waiting", type=int, default=1_000_000)
    parser.add_argument("--before", default=BEFORE)
    args = parser.parse_args(argv)
    n = args.contacts
    with postgres.throwaway_database("growthbase_bench_flows") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            install_before(conn, args.before)
            workspace_id, flow = setup(conn, n)
            conn.execute("vacuum analyze")
            entry, entry_base, entry_cpu, entry_base_cpu = enter(conn, workspace_id, n)
            conn.execute("vacuum analyze public.flow_runs")

            empty = [timed(conn, "select private.advance_flows()")[0] for _ in range(20)]

            # One step for every run, in one tick, beside a bare update of the same rows.
            conn.execute("update public.flow_runs set due_at = now() - interval '1 minute'")
            conn.execute("vacuum analyze public.flow_runs")
            with conn.transaction():
                cpu = backend_cpu(conn)
                bare, _ = timed(
                    conn,
                    "with u as (update public.flow_runs set step_seq = step_seq + 1,"
                    " due_at = due_at, moved_at = now() where flow_id = %s returning 1)"
                    " select count(*) from u",
                    (flow,),
                )
                bare_cpu = cpu_since(conn, cpu)
                raise psycopg.Rollback()
            conn.execute("vacuum analyze public.flow_runs")
            compared = []
            for _ in range(3):
                compared.append(step_before_after(conn, n))
                conn.execute("vacuum analyze public.flow_runs")
            one_step, moved, one_step_cpu = compared[0][2], compared[0][3], compared[0][4]
            assert moved == n, moved
            branch, moved_branch = compared[1][2], compared[1][3]
            send, moved_send = compared[2][2], compared[2][3]
            queued = value(
                conn,
                "select count(*) from public.campaign_recipients where workspace_id = %s",
                (workspace_id,),
            )

            # Runs waiting, none due.
            started = time.perf_counter()
            conn.execute(
                "insert into public.flow_runs (workspace_id, flow_id, version, contact_id,"
                " entry_key, step_id, due_at)"
                " select r.workspace_id, r.flow_id, r.version, r.contact_id, 'w' || g, s.id,"
                " now() + interval '1 day'"
                " from (select * from public.flow_runs limit 1000) r"
                " join public.flow_steps s on s.flow_id = r.flow_id and s.key = 'wait',"
                " generate_series(1, %s / 1000) g",
                (args.waiting,),
            )
            filled = time.perf_counter() - started
            conn.execute("vacuum analyze public.flow_runs")
            waiting = [timed(conn, "select private.advance_flows()")[0] for _ in range(20)]

            twice, suppressed_ok = concurrent_ticks(conn, url, workspace_id, flow)

    print(f"contacts {n:,}; flow: wait 1 h -> branch on a segment rule -> send_email")
    print(
        f"entry of {n:,} events with enrolment   {entry:8.2f} s   (target <= 5 s)"
        f"   baseline insert without triggers {entry_base:6.2f} s"
        f"   ratio {entry / entry_base:5.1f}x"
    )
    print(f"  server CPU: {cpu_ratio(entry_cpu, entry_base_cpu)}")
    rate = n / one_step
    print(
        f"advance {n:,} due runs one step      {one_step:8.2f} s = {rate:,.0f} transitions/s"
        f" (target >= 20,000)   bare UPDATE {bare:6.2f} s   ratio {one_step / bare:5.1f}x"
        " (target <= 5x)"
    )
    print(f"  server CPU: {cpu_ratio(one_step_cpu, bare_cpu, n)}")
    print(
        f"  then the branch step ({moved_branch:,}) {branch:6.2f} s and the send step"
        f" ({moved_send:,}, {queued:,} emails queued) {send:6.2f} s"
    )
    for name, (before, after, _, _, _, before_cpu, after_cpu) in zip(
        ("wait", "branch", "send_email"), compared, strict=True
    ):
        print(
            f"  before/after, {name} step (mean of 2 each, rolled back): {args.before}"
            f" {before:6.2f} s"
            f" = {n / before:,.0f}/s; now {after:6.2f} s = {n / after:,.0f}/s"
            f"   ratio now/before {after / before:4.2f}"
        )
        if before_cpu and after_cpu:
            print(
                f"    server CPU: before {before_cpu:6.2f} s, now {after_cpu:6.2f} s"
                f"   ratio now/before {after_cpu / before_cpu:4.2f}"
            )
    print(
        f"tick with nothing due (median of 20)   {statistics.median(empty) * 1000:8.2f} ms"
        "  (target <= 10 ms)"
    )
    print(
        f"tick with {args.waiting:,} runs waiting, none due"
        f" {statistics.median(waiting) * 1000:8.2f} ms"
        f"  (target <= 50 ms; filled in {filled:.1f} s)"
    )
    print(
        f"three ticks at once: emails queued twice {twice}; a suppressed contact recorded "
        f"while the rest of its batch queued: {suppressed_ok}"
    )
    return 0


def cpu_ratio(cpu: float | None, baseline: float | None, n: int | None = None) -> str:
    """The server CPU seconds of a figure beside its baseline's (what a quiet machine's wall
    time would be near), or why they are missing."""
    if cpu is None or baseline is None or baseline <= 0:
        return "not measured (the server is not on this machine)"
    rate = f" = {n / cpu:,.0f} per CPU second" if n and cpu > 0 else ""
    return f"{cpu:6.2f} s{rate}   baseline {baseline:6.2f} s   ratio {cpu / baseline:5.1f}x"


def concurrent_ticks(
    conn: Conn, url: str, workspace_id: uuid.UUID, flow: uuid.UUID
) -> tuple[int, bool]:
    """Up to 30,000 fresh runs (one per contact) due at the send step, one of them suppressed,
    advanced by three ticks at once: answers how many runs got two emails and whether the
    suppressed one was recorded while the rest were queued."""
    conn.execute("update public.flow_runs set status = 'completed' where status = 'active'")
    conn.execute(
        "insert into public.flow_runs (workspace_id, flow_id, version, contact_id, entry_key,"
        " step_id, due_at)"
        " select c.workspace_id, %s, 1, c.id, 'again', s.id, now() - interval '1 second'"
        " from public.contacts c join public.flow_steps s on s.flow_id = %s and s.key = 'news'"
        " where c.workspace_id = %s limit 30000",
        (flow, flow, workspace_id),
    )
    victim = value(
        conn,
        "select email from public.contacts c join public.flow_runs r on r.contact_id = c.id"
        " where r.entry_key = 'again' limit 1",
    )
    conn.execute(
        "insert into public.email_suppressions (workspace_id, email, reason)"
        " values (%s, %s, 'manual')",
        (workspace_id, victim),
    )
    barrier = threading.Barrier(3)

    def tick() -> None:
        with psycopg.connect(url, autocommit=True) as own:
            barrier.wait()
            own.execute("select private.advance_flows(30000, 2000)")

    threads = [threading.Thread(target=tick) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    twice = value(
        conn,
        "select count(*) from (select h.run_id from public.campaign_recipients q"
        " join public.flow_run_steps h on h.id = q.flow_run_step_id"
        " join public.flow_runs r on r.id = h.run_id where r.entry_key = 'again'"
        " group by h.run_id having count(*) > 1) as x",
    )
    outcomes = dict(
        conn.execute(
            "select h.outcome, count(*) from public.flow_run_steps h join public.flow_runs r"
            " on r.id = h.run_id where r.entry_key = 'again' group by h.outcome"
        ).fetchall()
    )
    fresh = sum(outcomes.values())
    return twice, outcomes.get("suppressed") == 1 and outcomes.get("queued") == fresh - 1


if __name__ == "__main__":
    sys.exit(main())
