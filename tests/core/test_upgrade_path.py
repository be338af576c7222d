"""Databases deployed from an earlier landed main upgrade to exactly what a fresh one gets.

`supabase db push` applies only versions a database has not recorded, so a landed migration
that is edited later never reaches the databases that already ran it. These tests read the
landed mains from git history (CI runs on a full clone).
"""

import io
import subprocess
import tarfile
from pathlib import Path

import psycopg

from scripts.migrate import REPO, migrate
from tests.conftest import Databases

# The main that landed at stop 20: six of its migrations were later edited in place and its
# version 20261130093000 names another file; 20261220090000_upgrade_from_stop_20 mends that.
STOP_20 = "a49882178cccb1e019d37645525add85413a279b"
# Files added later that sort before stop 20's last one and whose work such a database already
# has: the README's upgrade step marks them applied (`supabase migration repair`).
ALREADY_IN_STOP_20 = ("20261130091500",)
# The newest landed main: every migration it holds must stay byte for byte as it landed.
NEWEST_LANDED = "620f2076184d060af034f943e1850fcab920262f"


def git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(REPO), *args], check=True, capture_output=True).stdout


def landed_migrations(commit: str) -> dict[str, str]:
    """File name → blob id of each migration in `commit`."""
    listing = git("ls-tree", commit, "supabase/migrations/").decode()
    return {line.split("\t")[1].rsplit("/", 1)[1]: line.split()[2] for line in listing.splitlines()}


def checkout_sql(commit: str, into: Path) -> Path:
    """The SQL of `commit` (sql/local and the migrations) as a project root to migrate from."""
    archive = git("archive", "--format=tar", commit, "sql/local", "supabase/migrations")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def schema_dump(url: str) -> str:
    """pg_dump's schema of everything but the migration history, from the server's own pg_dump."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select setting from pg_catalog.pg_config where name = 'BINDIR'"
        ).fetchone()
    assert row is not None
    dumped = subprocess.run(
        [f"{row[0]}/pg_dump", "--schema-only", "--no-owner", "-N", "supabase_migrations", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    # pg_dump wraps its output in \restrict lines with a random key.
    return "\n".join(line for line in dumped.splitlines() if not line.startswith("\\"))


def test_landed_migrations_are_never_edited() -> None:
    landed = landed_migrations(NEWEST_LANDED)
    here = {
        path.name: git("hash-object", str(path)).decode().strip()
        for path in (REPO / "supabase" / "migrations").glob("*.sql")
    }
    missing = sorted(set(landed) - set(here))
    changed = sorted(name for name, blob in landed.items() if name in here and here[name] != blob)
    assert missing == [], "landed migrations were removed"
    assert changed == [], "landed migrations were edited: fix forward with a new file"


def test_new_migrations_sort_after_the_newest_landed_one() -> None:
    """What `supabase db push` applies without --include-all, and in the order a fresh one gets."""
    landed = landed_migrations(NEWEST_LANDED)
    new = sorted(
        p.name for p in (REPO / "supabase" / "migrations").glob("*.sql") if p.name not in landed
    )
    assert [name for name in new if name < max(landed)] == []


def test_a_database_from_stop_20_upgrades_to_the_fresh_schema(
    databases: Databases, tmp_path: Path
) -> None:
    upgraded = databases.create()
    migrate(upgraded, root=checkout_sql(STOP_20, tmp_path))
    with psycopg.connect(upgraded, autocommit=True) as conn:
        for version in ALREADY_IN_STOP_20:
            conn.execute(
                "insert into supabase_migrations.schema_migrations (version) values (%s)",
                (version,),
            )
    migrate(upgraded)
    fresh = databases.create()
    migrate(fresh)
    assert schema_dump(upgraded) == schema_dump(fresh)
