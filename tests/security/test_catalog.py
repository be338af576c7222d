"""Catalog rules that hold for every object, present and future: every foreign key has an index,
and the Data API's roles cannot touch a sequence, nor anything the migrating role creates later
unless a migration grants it."""

from typing import Any

import psycopg
import pytest
from psycopg import errors, sql

from tests.factories.workspaces import acting_as, create_user

Conn = psycopg.Connection[Any]

OUR_SCHEMAS = ("public", "private", "analytics")

# Schemas the platform (Supabase, or sql/local standing in for it) and extensions own; every
# other schema's tables are ours.
PLATFORM_SCHEMAS = [
    "auth",
    "realtime",
    "storage",
    "supabase_migrations",
    "supabase_functions",
    "extensions",
    "graphql",
    "graphql_public",
    "vault",
    "pgsodium",
    "pgsodium_masks",
    "cron",
    "net",
    "pgbouncer",
    "information_schema",
]

# A foreign key is usable from an index whose leading columns are exactly the key's columns
# (in any order): deleting or updating a referenced row then finds the referencing rows
# without a scan (Supabase's advisor, lint 0001). Invalid indexes do not count, nor do partial
# ones unless their predicate is only that one of the key's columns is not null (which every
# lookup `column = $1 and …` the key makes implies).
UNINDEXED_FOREIGN_KEYS = """
select c.conrelid::regclass::text as table_name, c.conname as constraint_name,
       array(select a.attname::text
             from unnest(c.conkey) with ordinality as k(attnum, position)
             join pg_catalog.pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
             order by k.position) as columns,
       c.confrelid::regclass::text as referenced_table
from pg_catalog.pg_constraint c
join pg_catalog.pg_class t on t.oid = c.conrelid
join pg_catalog.pg_namespace n on n.oid = t.relnamespace
where c.contype = 'f'
  and n.nspname <> all (%(platform)s)
  and n.nspname !~ '^pg_'
  and not exists (
    select from pg_catalog.pg_index i
    cross join lateral (
      select (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(c.conkey)] as leading
    ) as l
    where i.indrelid = c.conrelid and i.indisvalid
      and (i.indpred is null
           or pg_catalog.pg_get_expr(i.indpred, i.indrelid) in (
                select format('(%%s IS NOT NULL)', quote_ident(a.attname))
                from pg_catalog.pg_attribute a
                where a.attrelid = c.conrelid and a.attnum = any (c.conkey)
              ))
      and l.leading @> c.conkey and l.leading <@ c.conkey
  )
order by 1, 2
"""

USABLE_SEQUENCES = """
select c.oid::regclass::text as sequence, r.rolname as role
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
cross join (values ('anon'), ('authenticated')) as r(rolname)
where c.relkind = 'S' and n.nspname = any (%(schemas)s)
  and has_sequence_privilege(r.rolname, c.oid, 'usage, select, update')
order by 1, 2
"""


def test_every_foreign_key_has_a_usable_index(conn: Conn) -> None:
    unindexed = conn.execute(UNINDEXED_FOREIGN_KEYS, {"platform": PLATFORM_SCHEMAS}).fetchall()
    listing = "\n".join(
        f"{r['table_name']} ({', '.join(r['columns'])}) -> {r['referenced_table']}"
        f" [{r['constraint_name']}]"
        for r in unindexed
    )
    assert not unindexed, f"foreign keys without an index:\n{listing}"


def test_the_api_roles_cannot_use_any_sequence(conn: Conn) -> None:
    assert conn.execute(USABLE_SEQUENCES, {"schemas": list(OUR_SCHEMAS)}).fetchall() == []
    user = create_user(conn)
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, user):
        conn.execute("select setval('public.credit_ledger_id_seq', 9223372036854775807)")


def test_objects_the_migrating_role_creates_later_start_revoked(conn: Conn) -> None:
    """Default privileges: a forgotten revoke in a future migration exposes nothing."""
    with conn.transaction(force_rollback=True):
        for schema in OUR_SCHEMAS:
            name = sql.Identifier(schema)
            conn.execute(sql.SQL("create sequence {}.later_seq").format(name))
            conn.execute(sql.SQL("create table {}.later_table (id integer)").format(name))
            conn.execute(
                sql.SQL(
                    "create function {}.later_function() returns integer language sql as 'select 1'"
                ).format(name)
            )
        exposed = conn.execute(
            "select s.nspname, r.rolname,"
            " has_sequence_privilege(r.rolname, format('%%I.later_seq', s.nspname),"
            "   'usage, select, update') as sequence,"
            " has_table_privilege(r.rolname, format('%%I.later_table', s.nspname),"
            "   'select, insert, update, delete, truncate, references, trigger') as table,"
            " has_function_privilege(r.rolname, format('%%I.later_function()', s.nspname),"
            "   'execute') as function"
            " from unnest(%s::text[]) as s(nspname)"
            " cross join (values ('anon'), ('authenticated')) as r(rolname)",
            (list(OUR_SCHEMAS),),
        ).fetchall()
    assert [r for r in exposed if r["sequence"] or r["table"] or r["function"]] == []
