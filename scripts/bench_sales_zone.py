"""Benchmark: sales trends in the workspace's time zone, over bench_rfm's data (200k contacts,
1M orders over three years, one workspace) on a throwaway database, in a few minutes rather than
bench_rfm's twenty:

- analytics.sales_trend for a year by day, as the analyst (bench_rfm's figure) and as the
  workspace's owner acting through the Data API (its 8 s statement timeout applies);
- where the workspace has a time zone (`workspaces.time_zone`): changing it to Asia/Kolkata as
  the owner (the recount of the workspace's sales days), the same year by day in that zone, and
  the drift `private.verify_sales_daily()` finds (expected: 0);
- the write arms' cost with the sales triggers as they are: 100k orders in 10 statements (an
  import) and 2,000 orders one by one (webhooks), medians of `--rounds`.

    .venv/bin/python -m scripts.bench_sales_zone [--contacts N] [--orders N] [--repeat N]

Run it in a checkout of main as well (with that checkout on PYTHONPATH) to compare.
"""

import argparse
import sys
import uuid
from functools import partial
from typing import Any

import psycopg

from api.core.db import become_user
from scripts import postgres
from scripts.bench_rfm import (
    Timing,
    generate,
    import_batch,
    measured,
    median,
    median_of,
    one_value,
    remove,
    show,
    webhook_orders,
)
from scripts.migrate import migrate

Conn = psycopg.Connection[Any]

YEAR_BY_DAY = "select * from analytics.sales_trend('2025-07-01', '2026-06-30', 'day', %s)"


def as_owner(conn: Conn, owner: uuid.UUID, query: str, params: Any) -> list[Any]:
    """One transaction as the workspace's owner, set up as PostgREST sets it up."""
    with conn.transaction():
        become_user(conn, {"sub": str(owner), "role": "authenticated", "aud": "authenticated"})
        return conn.execute(query, params).fetchall()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=200_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    with postgres.throwaway_database("growthbase_bench") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            workspace = generate(conn, args.contacts, args.orders)
            conn.execute("select private.compact_sales_daily()")
            owner = uuid.UUID(
                str(
                    one_value(
                        conn.execute(
                            "select created_by from public.workspaces where id = %s", (workspace,)
                        ).fetchone()
                    )
                )
            )
            has_zone = bool(
                one_value(
                    conn.execute(
                        "select count(*) from information_schema.columns where table_schema ="
                        " 'public' and table_name = 'workspaces' and column_name = 'time_zone'"
                    ).fetchone()
                )
            )

            def trend(as_user: bool) -> Timing:
                if as_user:
                    action = partial(as_owner, conn, owner, YEAR_BY_DAY, (workspace,))
                else:
                    action = partial(lambda: conn.execute(YEAR_BY_DAY, (workspace,)).fetchall())
                action()  # warm
                return median_of(conn, args.repeat, action)

            analyst, user = trend(False), trend(True)
            rows = len(as_owner(conn, owner, YEAR_BY_DAY, (workspace,)))
            zoned: dict[str, Timing] = {}
            drift = None
            if has_zone:
                change = "update public.workspaces set time_zone = %s where id = %s returning id"
                zoned["change to Asia/Kolkata"] = measured(
                    conn, partial(as_owner, conn, owner, change, ("Asia/Kolkata", workspace))
                )
                zoned["year by day in Asia/Kolkata, as the owner"] = trend(True)
                drift = one_value(
                    conn.execute("select count(*) from private.verify_sales_daily()").fetchone()
                )
                zoned["change back to UTC"] = measured(
                    conn, partial(as_owner, conn, owner, change, ("UTC", workspace))
                )
            writes: dict[str, list[Timing]] = {"import": [], "webhook": []}
            for number in range(args.rounds):
                conn.execute("checkpoint")
                label = f"z{number}"
                writes["import"].append(
                    measured(conn, partial(import_batch, conn, workspace, label, 100_000, 10))
                )
                remove(conn, label)
                conn.execute("checkpoint")
                writes["webhook"].append(
                    measured(conn, partial(webhook_orders, conn, workspace, label + "u", 2_000))
                )
                remove(conn, label + "u")
                conn.execute("vacuum analyze public.orders, public.customer_facts")
            verified = one_value(
                conn.execute("select count(*) from private.verify_sales_daily()").fetchone()
            )
    print(f"data: {args.contacts} contacts, {args.orders} orders; medians of {args.repeat}")
    show("analytics.sales_trend, a year by day (analyst)", analyst, "target <= 0.1 s")
    show(f"  the same as the owner ({rows} rows)", user, "target <= 0.1 s")
    for label, timing in zoned.items():
        note = "(8 s statement timeout)" if label.startswith("change") else "target <= 0.1 s"
        show(f"  {label}", timing, note)
    if drift is not None:
        print(f"  drift in Asia/Kolkata: {drift}")
    show("100k orders in 10 statements (facts and sales kept)", median(writes["import"]))
    show("2,000 orders one by one (facts and sales kept)", median(writes["webhook"]))
    print(f"drift after the writes: {verified}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
