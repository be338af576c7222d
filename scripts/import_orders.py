"""Import an order CSV into a project from the command line (an operator's tool): the file goes
through the same job as an upload through the edge — parts of 4 MiB, staged with COPY, merged
set-based — as the database's owner, without a signed-in user.

    python -m scripts.import_orders --project-id <uuid> orders.csv

Columns: order_id, placed_at, status, total, currency (required); email, phone, country,
first_name, last_name, customer_id, exchange_rate, and item_sku, item_name, item_quantity,
item_unit_price, item_product_id, item_variant_id for line items (optional). Bad rows are
listed with their line numbers (the first 1000); good rows are imported; the exit status is 1
when any row was bad or the file could not be read.
"""

import argparse
import os
import sys
import uuid
from pathlib import Path

import psycopg

from api.core.db import Database
from api.core.errors import ApiError
from api.imports.jobs import Runner, run_job
from api.imports.parts import MAX_PART_BYTES, store_part


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("csv_file", type=Path)
    parser.add_argument("--project-id", type=uuid.UUID, required=True)
    parser.add_argument("--encoding", default="utf-8")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("set DATABASE_URL or pass --database-url")
    size = args.csv_file.stat().st_size
    with psycopg.connect(args.database_url, autocommit=True) as owner:
        row = owner.execute(
            "insert into public.import_jobs (workspace_id, project_id, kind, source, file_name,"
            " size_bytes, encoding) select p.workspace_id, p.id, 'orders', 'upload', %s, %s, %s"
            " from public.projects p where p.id = %s returning id",
            (args.csv_file.name[:255], size, args.encoding, args.project_id),
        ).fetchone()
        if row is None:
            print(f"no project {args.project_id}", file=sys.stderr)
            return 1
        job_id = row[0]
    database = Database(args.database_url, pool_mode="session", max_size=2, timeout_seconds=10)
    database.open()
    try:
        with args.csv_file.open("rb") as file:
            part = 1
            while block := file.read(MAX_PART_BYTES):
                with database.connection() as conn:
                    store_part(conn, job_id, part, block)
                part += 1
        with database.connection() as conn:
            conn.execute(
                "update public.import_jobs set status = 'validating', started_at = now()"
                " where id = %s",
                (job_id,),
            )
        status = "validating"
        while status not in ("done", "failed", "cancelled"):
            run_job(Runner(database, None), job_id, budget_seconds=3600)
            with database.connection() as conn:
                job = conn.execute(
                    "select * from public.import_jobs where id = %s", (job_id,)
                ).fetchone()
            assert job is not None
            status = job["status"]
        with database.connection() as conn:
            errors = conn.execute(
                "select line, reason from public.import_errors where job_id = %s order by line",
                (job_id,),
            ).fetchall()
    except ApiError as error:
        print(f"{error.code}: {error.message}", file=sys.stderr)
        return 1
    finally:
        database.close()
    assert job is not None
    for bad in errors:
        print(f"line {bad['line']}: {bad['reason']}", file=sys.stderr)
    if job["status"] == "failed":
        print(f"{job['error_code']}: {job['error_message']}", file=sys.stderr)
    imported = job["created"] + job["updated"] + job["unchanged"]
    print(f"imported {imported} order(s), {job['rows_failed']} bad row(s)")
    return 1 if job["rows_failed"] or job["status"] == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
