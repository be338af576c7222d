"""Import an order CSV into a project from the command line (an operator's tool: it writes
through the same upsert as the edge route, as the service role).

    python -m scripts.import_orders --project-id <uuid> orders.csv

Columns: order_id, placed_at, status, total, currency (required); email, phone, country,
first_name, last_name, customer_id, exchange_rate (optional). Bad rows are listed with their
line numbers; good rows are imported; the exit status is 1 when any row was bad.
"""

import argparse
import os
import sys
import uuid
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from api.core.db import become_service
from api.imports.csv_orders import CsvHeaderError, RowError, parse_orders


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("csv_file", type=Path)
    parser.add_argument("--project-id", type=uuid.UUID, required=True)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("set DATABASE_URL or pass --database-url")
    try:
        parsed = parse_orders(args.csv_file.read_text(encoding="utf-8-sig"))
    except CsvHeaderError as error:
        print(f"line 1: {error}", file=sys.stderr)
        return 1
    errors = list(parsed.errors)
    imported = 0
    with psycopg.connect(args.database_url) as conn:
        become_service(conn)
        for line, order in parsed.orders:
            try:
                with conn.transaction():
                    conn.execute(
                        "select private.upsert_order(%s, 'csv', %s)",
                        (args.project_id, Jsonb(order)),
                    )
                imported += 1
            except psycopg.Error as error:
                errors.append(RowError(line, error.diag.message_primary or type(error).__name__))
    for bad in sorted(errors, key=lambda e: e.line):
        print(f"line {bad.line}: {bad.reason}", file=sys.stderr)
    print(f"imported {imported} order(s), {len(errors)} bad row(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
