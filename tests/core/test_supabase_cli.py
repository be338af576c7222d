"""The real Supabase CLI (`scripts/supabase`, pinned) and our runner agree on the migrations.

Deploys use `supabase db push`, local work and the tests use `scripts.migrate`: each must find
nothing left to do after the other, both must build the same database and history, and
`supabase db lint` (plpgsql_check) must find nothing in the functions.
"""

import json
import subprocess
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from scripts.migrate import REPO, apply_local_interface, find_migrations, migrate
from tests.conftest import Databases

SUPABASE = REPO / "scripts" / "supabase"
MIGRATIONS = find_migrations(REPO / "supabase" / "migrations")

# Every object the migrations and sql/local make, one line each, so two databases built from the
# same files compare line by line (and a difference names the object).
SCHEMA = """
with objects as (
  select c.oid from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where n.nspname not in ('pg_catalog', 'information_schema') and n.nspname !~ '^pg_(toast|temp)'
)
select concat_ws(' ', 'relation', c.oid::regclass, c.relkind, c.relacl, c.relrowsecurity,
                 pg_catalog.obj_description(c.oid, 'pg_class'),
                 case when c.relkind in ('v', 'm') then pg_catalog.pg_get_viewdef(c.oid) end)
from pg_catalog.pg_class c join objects o on o.oid = c.oid
union all
select concat_ws(' ', 'column', a.attrelid::regclass, a.attname,
                 pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull,
                 pg_catalog.pg_get_expr(d.adbin, d.adrelid), a.attacl)
from pg_catalog.pg_attribute a join objects o on o.oid = a.attrelid
left join pg_catalog.pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where a.attnum > 0 and not a.attisdropped
union all
select concat_ws(' ', 'constraint', k.conrelid::regclass, k.conname,
                 pg_catalog.pg_get_constraintdef(k.oid))
from pg_catalog.pg_constraint k join objects o on o.oid = k.conrelid
union all
select pg_catalog.pg_get_indexdef(i.indexrelid)
from pg_catalog.pg_index i join objects o on o.oid = i.indrelid
union all
select pg_catalog.pg_get_triggerdef(t.oid)
from pg_catalog.pg_trigger t join objects o on o.oid = t.tgrelid
where not t.tgisinternal
union all
select concat_ws(' ', 'policy', p.schemaname, p.tablename, p.policyname, p.permissive, p.roles,
                 p.cmd, p.qual, p.with_check)
from pg_catalog.pg_policies p
union all
select concat_ws(' ', 'function', p.oid::regprocedure, p.provolatile, p.prosecdef, p.proconfig,
                 p.proacl, pg_catalog.obj_description(p.oid, 'pg_proc'), p.prosrc)
from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
where n.nspname not in ('pg_catalog', 'information_schema')
union all
select concat_ws(' ', 'schema', n.nspname, n.nspacl) from pg_catalog.pg_namespace n
union all
select concat_ws(' ', 'published', r.pubname, r.schemaname, r.tablename)
from pg_catalog.pg_publication_tables r
order by 1
"""


@dataclass(frozen=True)
class Pushed:
    url: str
    answer: dict[str, Any]


def supabase(*args: str) -> Any:
    """One CLI command on this repository's supabase/ folder; its JSON answer."""
    done = subprocess.run(
        [str(SUPABASE), *args, "--workdir", str(REPO), "--output-format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"supabase {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def cli_url(conninfo: str) -> str:
    """The database as the CLI takes it: a percent-encoded URL, without TLS unless asked for
    (the CLI requires TLS by default; a local server has none)."""
    params = {key: str(value) for key, value in conninfo_to_dict(conninfo).items()}
    params.setdefault("sslmode", "disable")
    credentials = quote(params.pop("user", "postgres"), safe="")
    if "password" in params:
        credentials += ":" + quote(params.pop("password"), safe="")
    host = params.pop("host", "localhost")
    assert not host.startswith("/"), (
        "the Supabase CLI reaches Postgres over TCP only, not the embedded server's unix socket:"
        " run a server on 127.0.0.1:5432 or point DATABASE_URL at one"
    )
    where = quote(host, safe="") + ":" + params.pop("port", "5432")
    dbname = quote(params.pop("dbname"), safe="")
    return f"postgresql://{credentials}@{where}/{dbname}?{urlencode(params)}"


def history(url: str) -> list[tuple[str, str, int]]:
    """What the runner and the CLI record: version, name and how many statements ran."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select version, name, cardinality(statements)"
            " from supabase_migrations.schema_migrations order by version"
        ).fetchall()
    return [(r[0], r[1], r[2]) for r in rows]


def schema(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(SCHEMA)]


def listed_by_cli(url: str) -> list[tuple[str, str]]:
    """`supabase migration list`: each migration as (local file's version, database's version)."""
    answer = supabase("migration", "list", "--db-url", cli_url(url))
    return [(row["local"], row["remote"]) for row in answer["migrations"]]


@pytest.fixture(scope="module")
def pushed_by_cli(databases: Databases) -> Pushed:
    """A new database with only sql/local (what a new user has), then `supabase db push`."""
    url = databases.create()
    with psycopg.connect(url, autocommit=True) as conn:
        apply_local_interface(conn)
    return Pushed(url, supabase("db", "push", "--db-url", cli_url(url), "--yes"))


@pytest.fixture(scope="module")
def migrated_by_runner(databases: Databases) -> str:
    url = databases.create()
    migrate(url)
    return url


def test_cli_push_applies_every_migration_and_the_runner_then_finds_none_pending(
    pushed_by_cli: Pushed, migrated_by_runner: str
) -> None:
    url = pushed_by_cli.url
    assert pushed_by_cli.answer["migrations"] == [m.path.name for m in MIGRATIONS]
    assert migrate(url).applied == []
    versions = [m.version for m in MIGRATIONS]
    assert [version for version, _, _ in history(url)] == versions
    assert listed_by_cli(url) == [(version, version) for version in versions]
    assert history(url) == history(migrated_by_runner)
    assert schema(url) == schema(migrated_by_runner)


def test_after_the_runner_the_cli_finds_nothing_to_push(migrated_by_runner: str) -> None:
    before = history(migrated_by_runner)
    answer = supabase("db", "push", "--db-url", cli_url(migrated_by_runner), "--yes")
    assert (answer["upToDate"], answer["migrations"]) == (True, [])
    assert history(migrated_by_runner) == before
    assert listed_by_cli(migrated_by_runner) == [(version, version) for version, _, _ in before]
    assert [version for version, _, _ in before] == [m.version for m in MIGRATIONS]


def test_db_lint_finds_nothing_in_any_function(migrated_by_runner: str) -> None:
    """plpgsql_check plans every statement of every PL/pgSQL function, as no user, and reports
    what could fail or misbehave. The server needs the extension: scripts/test installs it."""
    url = cli_url(migrated_by_runner)
    answer = supabase("db", "lint", "--level", "warning", "--db-url", url)
    assert answer["results"] == []
