"""Apply the database: sql/local on plain Postgres, then pending migrations, then the seed.

Each migration runs in its own transaction and is recorded in
supabase_migrations.schema_migrations exactly as the Supabase CLI records it (version, name,
statements), so this runner and `supabase db push` agree on what a database already has.
"""

import argparse
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pglast
import psycopg

REPO = Path(__file__).resolve().parent.parent
MIGRATION_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[A-Za-z0-9_\-]+)\.sql$")
# Serialises concurrent runners against one database; the number is arbitrary but fixed.
RUNNER_LOCK_KEY = 7_406_118_213


class MigrationError(Exception):
    """A file that could not be applied; earlier files stay applied."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    def statements(self) -> list[tuple[int, str]]:
        """The file split into statements the way Postgres parses it, each with its line."""
        sql = self.path.read_text(encoding="utf-8")
        return split_statements(self.path, sql)


@dataclass
class MigrationReport:
    local_interface_applied: bool = False
    applied: list[str] = field(default_factory=list)
    seeded: bool = False


def split_statements(path: Path, sql: str) -> list[tuple[int, str]]:
    try:
        slices = pglast.split(sql, only_slices=True)
    except pglast.parser.ParseError as error:
        message, location = (*error.args, None)[:2]
        line = sql[:location].count("\n") + 1 if isinstance(location, int) else None
        raise MigrationError(path, line, f"syntax error: {message}") from error
    return [(sql[: piece.start].count("\n") + 1, sql[piece]) for piece in slices]


def find_migrations(directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(path, None, "migrations are named <YYYYMMDDHHMMSS>_<name>.sql")
        migrations.append(Migration(match["version"], match["name"], path))
    return migrations


def is_supabase(conn: psycopg.Connection) -> bool:
    """Supabase projects own the platform interface; only plain Postgres gets sql/local."""
    row = conn.execute(
        "select exists (select from pg_catalog.pg_roles where rolname = 'supabase_admin')"
    ).fetchone()
    return bool(row and row[0])


def run_file(conn: psycopg.Connection, path: Path) -> list[str]:
    statements = split_statements(path, path.read_text(encoding="utf-8"))
    return run_statements(conn, path, statements)


def run_statements(
    conn: psycopg.Connection, path: Path, statements: Sequence[tuple[int, str]]
) -> list[str]:
    for line, statement in statements:
        try:
            conn.execute(statement.encode())
        except psycopg.Error as error:
            raise MigrationError(path, line, describe(error)) from error
    return [statement for _, statement in statements]


def describe(error: psycopg.Error) -> str:
    diag = error.diag
    parts = [diag.message_primary or str(error).strip()]
    if diag.message_detail:
        parts.append(f"DETAIL: {diag.message_detail}")
    if diag.message_hint:
        parts.append(f"HINT: {diag.message_hint}")
    return " ".join(parts)


def applied_versions(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute("select version from supabase_migrations.schema_migrations").fetchall()
    return {row[0] for row in rows}


def apply_local_interface(conn: psycopg.Connection, root: Path = REPO) -> None:
    """sql/local in one transaction: the part of Supabase the migrations rely on."""
    with conn.transaction():
        for path in sorted((root / "sql" / "local").glob("*.sql")):
            run_file(conn, path)


def migrate(conninfo: str, *, seed: bool = False, root: Path = REPO) -> MigrationReport:
    """Bring the database at `conninfo` up to date; raise MigrationError on the first failure."""
    report = MigrationReport()
    migrations = find_migrations(root / "supabase" / "migrations")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", (RUNNER_LOCK_KEY,))
        if not is_supabase(conn):
            apply_local_interface(conn, root)
            report.local_interface_applied = True
        done = applied_versions(conn)
        for migration in migrations:
            if migration.version in done:
                continue
            with conn.transaction():
                statements = run_statements(conn, migration.path, migration.statements())
                conn.execute(
                    "insert into supabase_migrations.schema_migrations (version, name, statements)"
                    " values (%s, %s, %s)",
                    (migration.version, migration.name, statements),
                )
            report.applied.append(migration.path.name)
        seed_file = root / "supabase" / "seed.sql"
        if seed and seed_file.exists():
            with conn.transaction():
                run_file(conn, seed_file)
            report.seeded = True
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--seed", action="store_true", help="apply supabase/seed.sql afterwards")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("set DATABASE_URL or pass --database-url")
    try:
        report = migrate(args.database_url, seed=args.seed)
    except MigrationError as error:
        print(f"migration failed: {error}", file=sys.stderr)
        return 1
    for name in report.applied:
        print(f"applied {name}", file=sys.stderr)
    if not report.applied:
        print("no pending migrations", file=sys.stderr)
    if report.seeded:
        print("applied supabase/seed.sql", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
