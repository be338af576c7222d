"""sql/local recreates the Supabase interface on plain Postgres, idempotently."""

import json
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from scripts.migrate import REPO, apply_local_interface
from tests.conftest import Databases

CATALOG_FINGERPRINT = """
select jsonb_build_object(
  'roles', (select jsonb_agg(jsonb_build_array(rolname, rolcanlogin, rolinherit, rolbypassrls,
                                               rolconfig) order by rolname)
            from pg_roles
            where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')),
  'members', (select jsonb_agg(jsonb_build_array(r.rolname, m.rolname)
                               order by r.rolname, m.rolname)
              from pg_auth_members a join pg_roles r on r.oid = a.roleid
              join pg_roles m on m.oid = a.member
              where r.rolname in ('anon', 'authenticated', 'service_role')),
  'functions', (select jsonb_agg(jsonb_build_array(p.oid::regprocedure::text, p.xmin::text,
                                                   p.proacl::text) order by p.oid)
                from pg_proc p join pg_namespace n on n.oid = p.pronamespace
                where n.nspname in ('auth', 'realtime')),
  'tables', (select jsonb_agg(jsonb_build_array(c.oid::regclass::text, c.relacl::text,
                                                c.relrowsecurity) order by c.oid)
             from pg_class c join pg_namespace n on n.oid = c.relnamespace
             where n.nspname in ('auth', 'realtime', 'supabase_migrations') and c.relkind = 'r'),
  'publications', (select jsonb_agg(pubname) from pg_publication),
  'default_acl', (select jsonb_agg(defaclacl::text order by defaclobjtype) from pg_default_acl)
)
"""


def apply_local(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        apply_local_interface(conn)


def fingerprint(url: str) -> Any:
    with psycopg.connect(url) as conn:
        row = conn.execute(CATALOG_FINGERPRINT).fetchone()
    assert row is not None
    return row[0]


def test_running_it_twice_changes_nothing(databases: Databases) -> None:
    url = databases.create()
    apply_local(url)
    before = fingerprint(url)
    apply_local(url)
    assert fingerprint(url) == before
    assert before["publications"] == ["supabase_realtime"]
    assert len(before["functions"]) == 7


def test_roles_match_supabase(database_url: str) -> None:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        roles = {
            r["rolname"]: r
            for r in conn.execute(
                "select rolname, rolcanlogin, rolinherit, rolbypassrls, rolconfig from pg_roles"
                " where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')"
            )
        }
        granted = conn.execute(
            "select pg_has_role('authenticator', 'anon', 'member')"
            " and pg_has_role('authenticator', 'authenticated', 'member')"
            " and pg_has_role('authenticator', 'service_role', 'member') as ok"
        ).fetchone()
    assert roles["service_role"]["rolbypassrls"]
    assert not roles["authenticated"]["rolcanlogin"]
    assert roles["authenticator"]["rolcanlogin"] and not roles["authenticator"]["rolinherit"]
    assert "statement_timeout=3s" in roles["anon"]["rolconfig"]
    assert "statement_timeout=8s" in roles["authenticated"]["rolconfig"]
    assert granted is not None and granted["ok"]


def test_auth_helpers_read_the_settings_postgrest_sets(database_url: str) -> None:
    claims = {
        "sub": "8f7c1b7e-1c7b-4c1e-9a43-2a1f6f3c9d10",
        "role": "authenticated",
        "email": "a@e.test",
        "app_metadata": {"provider": "email"},
    }
    with psycopg.connect(database_url) as conn:
        conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
        row = conn.execute(
            "select auth.uid()::text, auth.role(), auth.email(), auth.jwt()"
        ).fetchone()
        assert row == (claims["sub"], "authenticated", "a@e.test", claims)
        conn.execute(
            "select set_config('request.jwt.claim.sub', %s, true)",
            ("0b0b0b0b-0000-4000-8000-000000000000",),
        )
        legacy = conn.execute("select auth.uid()::text").fetchone()
        assert legacy == ("0b0b0b0b-0000-4000-8000-000000000000",)
        conn.rollback()
        assert conn.execute("select auth.uid(), auth.jwt()").fetchone() == (None, None)


def test_broadcast_changes_sends_the_row_like_supabase(database_url: str) -> None:
    with psycopg.connect(database_url, row_factory=dict_row) as conn:
        conn.execute("create temporary table gadgets (id int, name text)")
        conn.execute(
            "create function pg_temp.announce() returns trigger language plpgsql as $$"
            " begin perform realtime.broadcast_changes('gadgets:' || new.id, tg_op, tg_op,"
            " tg_table_name, tg_table_schema, new, old); return new; end $$"
        )
        conn.execute(
            "create trigger announce after insert on gadgets"
            " for each row execute function pg_temp.announce()"
        )
        conn.execute("insert into gadgets values (7, 'lamp')")
        message = conn.execute(
            "select topic, event, extension, private, payload from realtime.messages"
            " where topic = 'gadgets:7'"
        ).fetchone()
        conn.rollback()
    assert message is not None
    assert (message["event"], message["extension"], message["private"]) == (
        "INSERT",
        "broadcast",
        True,
    )
    assert message["payload"]["record"] == {"id": 7, "name": "lamp"}
    assert message["payload"]["old_record"] is None
    assert message["payload"]["operation"] == "INSERT"
    assert message["payload"]["table"] == "gadgets"


def test_realtime_messages_have_rls(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert conn.execute(
            "select relrowsecurity from pg_class where oid = 'realtime.messages'::regclass"
        ).fetchone() == (True,)


def test_the_local_interface_lives_only_in_sql_local() -> None:
    """Migrations never create the platform's objects (they exist on Supabase already)."""
    platform = ("auth.", "realtime.", "supabase_migrations.")
    roles = ("anon", "authenticated", "service_role", "authenticator")
    for migration in (REPO / "supabase" / "migrations").glob("*.sql"):
        text = Path(migration).read_text().lower()
        assert not any(f"create table {schema}" in text for schema in platform), migration.name
        assert not any(f"create role {role} " in text for role in roles), migration.name
