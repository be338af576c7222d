"""Benchmark: RFM over 200k contacts and 1M orders — the analytics views and one monthly
snapshot in Postgres, against the same per-contact figures computed with pandas from the same
rows, in one run on a throwaway database.

    scripts/bench_rfm [--contacts N] [--orders N]
"""

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import date
from typing import Any

import pandas as pd
import psycopg

from scripts import postgres
from scripts.migrate import migrate

AS_OF = date(2026, 6, 30)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def generate(conn: psycopg.Connection[Any], contacts: int, orders: int) -> None:
    """One workspace, `contacts` customers, `orders` orders over three years; one in ten is
    cancelled or refunded, and the number of orders per customer is skewed like a real shop's."""
    user_id = uuid.uuid4()
    conn.execute(
        "insert into auth.users (id, aud, role, email) values (%s, 'authenticated',"
        " 'authenticated', 'bench@example.test')",
        (user_id,),
    )
    conn.execute(
        "insert into public.projects (workspace_id, name, type)"
        " select id, 'Bench shop', 'eshop' from public.workspaces where created_by = %s",
        (user_id,),
    )
    # A throwaway database: lift the plan's contact limit rather than count against it.
    conn.execute("update public.plans set contact_limit = %s", (contacts * 2,))
    conn.execute(
        "insert into public.contacts (workspace_id, email)"
        " select w.id, 'c' || n || '@example.test'"
        " from public.workspaces w, generate_series(1, %s) as n where w.created_by = %s",
        (contacts, user_id),
    )
    conn.execute(
        """
        with ws as (select w.id as workspace_id, p.id as project_id
                    from public.workspaces w join public.projects p on p.workspace_id = w.id
                    where w.created_by = %(user)s),
             people as (select array_agg(id order by id) as ids from public.contacts
                        where workspace_id = (select workspace_id from ws))
        insert into public.orders (workspace_id, project_id, contact_id, source, external_id,
                                   status, placed_at, total, currency, base_total)
        select ws.workspace_id, ws.project_id,
               people.ids[1 + floor(power(random(), 2) * %(contacts)s)::int],
               'csv', 'o' || n,
               case when random() < 0.9 then 'paid' when random() < 0.5 then 'cancelled'
                    else 'refunded' end,
               timestamptz '2026-06-30' - random() * interval '1095 days',
               t, 'EUR', t
        from ws, people, generate_series(1, %(orders)s) as n,
             lateral (select round((5 + random() * 295)::numeric, 2) as t) as amount
        """,
        {"user": user_id, "contacts": contacts, "orders": orders},
    )
    conn.execute("analyze public.orders")
    conn.execute("analyze public.contacts")


def rfm_with_pandas(frame: pd.DataFrame) -> pd.DataFrame:
    """The migration's rules, in pandas: qualifying orders, then 1 + floor(5 (rank - 1) / n)."""
    paid = frame[frame["status"].isin(["paid", "fulfilled"])]
    per = paid.groupby("contact_id").agg(
        last_order=("placed_at", "max"), frequency=("placed_at", "size"), monetary=("total", "sum")
    )
    per["recency_days"] = (pd.Timestamp(AS_OF, tz="UTC") - per["last_order"].dt.floor("D")).dt.days
    n = len(per)
    for column, score, ascending in (
        ("recency_days", "r", False),
        ("frequency", "f", True),
        ("monetary", "m", True),
    ):
        rank = per[column].rank(method="min", ascending=ascending)
        per[score] = 1 + (5 * (rank - 1) // n).astype(int)
    return per


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    with postgres.throwaway_database("growthbase_bench") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            generated, _ = timed(lambda: generate(conn, args.contacts, args.orders))
            # A session without a user sees every workspace only as an analyst; the bench
            # connects as the superuser, which is a member of every role.
            view_seconds, customers = timed(
                lambda: conn.execute(
                    "select count(*), sum(monetary) from analytics.rfm(%s)", (AS_OF,)
                ).fetchone()
            )
            segments_seconds, _ = timed(
                lambda: conn.execute("select * from analytics.rfm_segments").fetchall()
            )
            snapshot_seconds, snapshot_rows = timed(
                lambda: conn.execute("select analytics.take_rfm_snapshot('2026-06-01')").fetchone()
            )
            load_seconds, frame = timed(
                lambda: pd.DataFrame(
                    conn.execute(
                        "select contact_id, status, placed_at, total::float8 as total"
                        " from public.orders"
                    ).fetchall(),
                    columns=["contact_id", "status", "placed_at", "total"],
                )
            )
            pandas_seconds, computed = timed(lambda: rfm_with_pandas(frame))
            database = conn.execute(
                "select r_score, f_score, m_score, frequency from analytics.rfm(%s)"
                " order by contact_id",
                (AS_OF,),
            ).fetchall()
    assert customers is not None and snapshot_rows is not None
    ordered = computed.sort_index()
    agree = [tuple(row) for row in ordered[["r", "f", "m", "frequency"]].itertuples(index=False)]
    print(f"data: {args.contacts} contacts, {args.orders} orders (generated in {generated:.1f} s)")
    print(f"analytics.rfm, all customers ({customers[0]})   {view_seconds:6.2f} s")
    print(f"analytics.rfm_segments                       {segments_seconds:6.2f} s")
    print(f"take_rfm_snapshot ({snapshot_rows[0]} rows)          {snapshot_seconds:6.2f} s")
    print(f"pandas: load {load_seconds:.2f} s + compute {pandas_seconds:.2f} s")
    whole = load_seconds + pandas_seconds
    print(f"ratio Postgres view / pandas compute         {view_seconds / pandas_seconds:6.2f}")
    print(f"ratio Postgres view / pandas load+compute    {view_seconds / whole:6.2f}")
    print(f"same scores as pandas: {agree == [tuple(r) for r in database]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
