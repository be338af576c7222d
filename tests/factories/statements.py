"""Counting the statements that write a table: a statement-level trigger per table and action
records each INSERT, UPDATE or DELETE statement (not its rows), for as long as the context lasts.
It proves a writer is set-based (one statement per page, not per record) whoever ran it: the
edge's pool, a security-definer function or a trigger."""

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

SCHEMA = "statement_counts"


@contextmanager
def counting_statements(conn: psycopg.Connection[Any], *tables: str) -> Iterator[Counter[str]]:
    """Yields a Counter of `table:ACTION`, filled in when the context ends. `conn` commits each
    statement (the superuser test connection)."""
    conn.execute(f"create schema {SCHEMA}")
    conn.execute(f"create table {SCHEMA}.seen (name text not null)")
    conn.execute(
        f"create function {SCHEMA}.count() returns trigger language plpgsql security definer"
        f" set search_path = '' as $$ begin insert into {SCHEMA}.seen values"
        " (tg_table_name || ':' || tg_op); return null; end $$"
    )
    counts: Counter[str] = Counter()
    try:
        for table in tables:
            for action in ("insert", "update", "delete"):
                conn.execute(
                    f"create trigger count_{action} after {action} on {table}"
                    f" for each statement execute function {SCHEMA}.count()"
                )
        yield counts
        rows = conn.execute(f"select name from {SCHEMA}.seen").fetchall()
        counts.update(row["name"] if isinstance(row, dict) else row[0] for row in rows)
    finally:
        for table in tables:
            for action in ("insert", "update", "delete"):
                conn.execute(f"drop trigger if exists count_{action} on {table}")
        conn.execute(f"drop schema {SCHEMA} cascade")
