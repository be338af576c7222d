"""The migration runner against fresh databases."""

import shutil
from pathlib import Path

import psycopg
import pytest

from scripts.migrate import REPO, MigrationError, migrate
from tests.conftest import Databases


def history(url: str) -> list[tuple[str, str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select version, name, cardinality(statements)"
            " from supabase_migrations.schema_migrations order by version"
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def copy_project(tmp_path: Path) -> Path:
    """A copy of the project's SQL that a test may add files to."""
    for part in ("sql/local", "supabase/migrations"):
        shutil.copytree(REPO / part, tmp_path / part)
    shutil.copy(REPO / "supabase" / "seed.sql", tmp_path / "supabase" / "seed.sql")
    return tmp_path


def test_fresh_database_gets_everything_recorded_and_a_second_run_applies_nothing(
    databases: Databases,
) -> None:
    url = databases.create()
    migrations = sorted(p.name for p in (REPO / "supabase" / "migrations").glob("*.sql"))
    first = migrate(url, seed=True)
    assert first.local_interface_applied
    assert first.applied == migrations
    assert first.seeded
    recorded = history(url)
    assert [f"{v}_{n}.sql" for v, n, _ in recorded] == migrations
    assert all(count > 0 for _, _, count in recorded)
    second = migrate(url, seed=True)
    assert second.applied == []
    assert history(url) == recorded
    with psycopg.connect(url) as conn:
        demo_workspaces = conn.execute(
            "select count(*) from public.workspace_members m join auth.users u on u.id = m.user_id"
            " where u.email = 'demo@growthbase.local'"
        ).fetchone()
    assert demo_workspaces == (1,)


def test_a_broken_migration_stops_with_its_name_and_keeps_earlier_ones(
    databases: Databases, tmp_path: Path
) -> None:
    root = copy_project(tmp_path)
    migrations = root / "supabase" / "migrations"
    (migrations / "29990101000000_good.sql").write_text("create table public.good_one (id int);\n")
    (migrations / "29990102000000_broken.sql").write_text(
        "create table public.half_done (id int);\n\nselect * from public.no_such_table;\n"
    )
    (migrations / "29990103000000_later.sql").write_text("create table public.later (id int);\n")
    url = databases.create()
    with pytest.raises(MigrationError) as failure:
        migrate(url, root=root)
    assert failure.value.path.name == "29990102000000_broken.sql"
    assert failure.value.line == 3
    assert 'relation "public.no_such_table" does not exist' in str(failure.value)
    with psycopg.connect(url) as conn:
        exists = conn.execute(
            "select to_regclass('public.good_one') is not null,"
            " to_regclass('public.half_done') is not null,"
            " to_regclass('public.later') is not null"
        ).fetchone()
    assert exists == (True, False, False)
    assert [v for v, _, _ in history(url)][-1] == "29990101000000"


def test_a_misnamed_migration_is_refused_before_anything_runs(
    databases: Databases, tmp_path: Path
) -> None:
    root = copy_project(tmp_path)
    (root / "supabase" / "migrations" / "add_things.sql").write_text("select 1;\n")
    url = databases.create()
    with pytest.raises(MigrationError, match="YYYYMMDDHHMMSS"):
        migrate(url, root=root)
    with psycopg.connect(url) as conn:
        assert conn.execute("select to_regclass('public.workspaces')").fetchone() == (None,)


@pytest.mark.server_wide
def test_on_supabase_the_local_interface_is_never_applied(
    databases: Databases, tmp_path: Path
) -> None:
    """A database that has Supabase's own roles gets migrations only."""
    root = copy_project(tmp_path)
    (root / "sql" / "local" / "99_marker.sql").write_text("create table public.local_marker ();\n")
    url = databases.create()
    migrate(url, root=REPO)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "do $$ begin if not exists (select from pg_roles where rolname = 'supabase_admin')"
            " then create role supabase_admin nologin; end if; end $$"
        )
    try:
        report = migrate(url, root=root)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("drop role supabase_admin")
    assert not report.local_interface_applied
    with psycopg.connect(url) as conn:
        assert conn.execute("select to_regclass('public.local_marker')").fetchone() == (None,)


def test_a_syntax_error_names_the_file_and_line(databases: Databases, tmp_path: Path) -> None:
    root = copy_project(tmp_path)
    (root / "supabase" / "migrations" / "29990101000000_typo.sql").write_text(
        "create table public.fine (id int);\n\ncreate tabel public.oops (id int);\n"
    )
    with pytest.raises(MigrationError) as failure:
        migrate(databases.create(), root=root)
    assert failure.value.path.name == "29990101000000_typo.sql"
    assert failure.value.line == 3
    assert "syntax error" in str(failure.value)
