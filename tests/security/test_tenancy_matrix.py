"""The tenancy matrix, generated from the catalog: two seeded workspaces A and B; acting as each
role of A, as an outsider (signed up, in no shared workspace) and as anon, exactly as the Data
API does, no relation in any schema shows a row of B, and no insert, update, delete or RPC
aimed at B changes any of B's rows.

Every attempt runs inside the actor's transaction and is rolled back, so attempts never change
the data the next one sees; B's rows are compared with a superuser checksum taken inside that
same transaction, so a write that RLS let through is caught even though it is never committed.
New tables, views and functions are covered without editing this file (see tests/tenancy_seed.py
for how rows are mapped to workspaces).
"""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.factories.tenancy_seed import (
    Catalog,
    Relation,
    Scope,
    Tenant,
    build_catalog,
    seed_tenant,
)
from tests.factories.workspaces import User, acting_as, acting_as_anon, create_user

Conn = psycopg.Connection[Any]

ROLES = ("owner", "admin", "member", "viewer", "outsider", "anon")
EXPOSED_SCHEMAS = ("public", "analytics")


def describe(role: str) -> str:
    return {"outsider": "a signed-up outsider", "anon": "anon"}.get(role, f"the {role} of A")


@dataclass(frozen=True)
class Actor:
    name: str
    user: User | None  # None: anon

    @property
    def role(self) -> str:
        return "anon" if self.user is None else "authenticated"

    @property
    def workspace_id(self) -> uuid.UUID | None:
        return None if self.user is None else self.user.workspace_id


@dataclass(frozen=True)
class Privileges:
    select_columns: frozenset[str]
    update_columns: tuple[str, ...]
    insert_columns: tuple[str, ...]
    delete: bool
    required_columns: frozenset[str]  # not null and without a default


@dataclass(frozen=True)
class Function:
    schema: str
    name: str
    arg_names: tuple[str, ...]
    arg_types: tuple[str, ...]
    out_columns: tuple[str, ...]
    executable_by: frozenset[str]

    @property
    def label(self) -> str:
        return f"{self.schema}.{self.name}({', '.join(self.arg_names)})"


@dataclass
class Values:
    """A workspace's values by table (ids) and by column name, as text, for RPC arguments."""

    workspace_id: uuid.UUID
    owner_id: uuid.UUID
    ids_by_table: dict[str, list[str]]
    by_column: dict[str, list[str]]

    def ids_for(self, noun: str) -> list[str]:
        plurals = {noun + "s", noun + "es"} | ({noun[:-1] + "ies"} if noun.endswith("y") else set())
        return [
            value
            for table, ids in self.ids_by_table.items()
            if table in plurals or any(table.endswith("_" + p) for p in plurals)
            for value in ids
        ]

    def argument(self, name: str, type_name: str) -> list[str]:
        """Values of this workspace a parameter named `name` most likely means."""
        noun = name.removeprefix("p_")
        if noun == "workspace_id":
            return [str(self.workspace_id)]
        if noun == "user_id":
            return [str(self.owner_id)]
        if noun.endswith("_id") and type_name == "uuid" and self.ids_for(noun[:-3]):
            return self.ids_for(noun[:-3])[:3]
        return self.by_column.get(noun, [])[:3]


@dataclass
class World:
    conn: Conn
    a: Tenant
    b: Tenant
    outsider: User
    catalog: Catalog
    privileges: dict[tuple[str, str], Privileges]
    functions: list[Function]
    b_keys: dict[str, list[str]]
    b_rows: dict[str, dict[str, Any]]  # one of B's rows per table
    b_values: Values
    own_values: dict[uuid.UUID, Values]
    markers: frozenset[str]
    baseline: dict[str, str]

    def actor(self, name: str) -> Actor:
        if name == "anon":
            return Actor(name, None)
        if name == "outsider":
            return Actor(name, self.outsider)
        return Actor(name, self.a.owner if name == "owner" else self.a.members[name])


# catalog and superuser views of B ----------------------------------------------------------


def text_of(value: Any) -> str:
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def relation_privileges(conn: Conn, role: str, relation: Relation) -> Privileges:
    row = conn.execute(
        """
        select
          array(select a.attname::text from pg_catalog.pg_attribute a
                where a.attrelid = %(oid)s and a.attnum > 0 and not a.attisdropped
                  and has_column_privilege(%(role)s, a.attrelid, a.attnum, 'SELECT'))
            as select_columns,
          array(select a.attname::text from pg_catalog.pg_attribute a
                where a.attrelid = %(oid)s and a.attnum > 0 and not a.attisdropped
                  and a.attgenerated = ''
                  and has_column_privilege(%(role)s, a.attrelid, a.attnum, 'UPDATE')
                order by a.attnum) as update_columns,
          array(select a.attname::text from pg_catalog.pg_attribute a
                where a.attrelid = %(oid)s and a.attnum > 0 and not a.attisdropped
                  and a.attgenerated = '' and a.attidentity <> 'a'
                  and has_column_privilege(%(role)s, a.attrelid, a.attnum, 'INSERT')
                order by a.attnum) as insert_columns,
          has_table_privilege(%(role)s, %(oid)s::oid, 'DELETE') as can_delete,
          array(select a.attname::text from pg_catalog.pg_attribute a
                where a.attrelid = %(oid)s and a.attnum > 0 and not a.attisdropped
                  and a.attnotnull and not a.atthasdef) as required_columns
        """,
        {"oid": relation.oid, "role": role},
    ).fetchone()
    assert row is not None
    return Privileges(
        frozenset(row["select_columns"]),
        tuple(row["update_columns"]),
        tuple(row["insert_columns"]),
        row["can_delete"],
        frozenset(row["required_columns"]),
    )


def exposed_functions(conn: Conn) -> list[Function]:
    """Every plain function in an exposed schema (triggers and extensions' own excluded)."""
    rows = conn.execute(
        """
        select n.nspname as schema, p.proname as name,
               coalesce(p.proargnames, '{}') as arg_names,
               coalesce(p.proargmodes::text[], '{}') as arg_modes,
               array(select pg_catalog.format_type(u.t, null)
                     from unnest(p.proargtypes::oid[]) with ordinality u(t, i) order by u.i)
                 as arg_types,
               has_function_privilege('authenticated', p.oid, 'EXECUTE') as authenticated,
               has_function_privilege('anon', p.oid, 'EXECUTE') as anon
        from pg_catalog.pg_proc p
        join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname = any (%s) and p.prokind = 'f'
          and p.prorettype not in ('pg_catalog.trigger'::regtype,
                                   'pg_catalog.event_trigger'::regtype)
          and not exists (select 1 from pg_catalog.pg_depend d
                          where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid
                            and d.deptype = 'e')
        order by 1, 2
        """,
        (list(EXPOSED_SCHEMAS),),
    ).fetchall()
    functions = []
    for r in rows:
        names, modes, types = list(r["arg_names"]), list(r["arg_modes"]), tuple(r["arg_types"])
        if modes:
            inputs = tuple(n for n, m in zip(names, modes, strict=True) if m in ("i", "b", "v"))
            outputs = tuple(n for n, m in zip(names, modes, strict=True) if m in ("o", "b", "t"))
        else:
            inputs, outputs = tuple(names[: len(types)]), ()
        inputs = inputs + ("",) * (len(types) - len(inputs))
        granted = {role for role in ("authenticated", "anon") if r[role]}
        functions.append(
            Function(r["schema"], r["name"], inputs, types, outputs, frozenset(granted))
        )
    return functions


def rows_of(conn: Conn, scope: Scope, workspace_id: uuid.UUID, limit: int | None) -> list[Any]:
    query = sql.SQL("select * from {} where {}{}").format(
        scope.relation.identifier,
        scope.where(workspace_id),
        sql.SQL(" limit {}").format(sql.Literal(limit)) if limit else sql.SQL(""),
    )
    return conn.execute(query).fetchall()


def workspace_values(conn: Conn, catalog: Catalog, tenant_owner: User) -> Values:
    values = Values(tenant_owner.workspace_id, tenant_owner.id, {}, {})
    sources = [(s.relation, rows_of(conn, s, tenant_owner.workspace_id, 3)) for s in catalog.tables]
    sources += [
        (r, conn.execute(sql.SQL("select * from {} limit 3").format(r.identifier)).fetchall())
        for r in catalog.reference
    ]
    for relation, rows in sources:
        for row in rows:
            for column, value in row.items():
                if value is None:
                    continue
                if column == "id":
                    values.ids_by_table.setdefault(relation.name, []).append(text_of(value))
                known = values.by_column.setdefault(column, [])
                if text_of(value) not in known:
                    known.append(text_of(value))
    return values


def b_markers(conn: Conn, catalog: Catalog, b: Tenant) -> frozenset[str]:
    """Strings only B's data contains: every uuid and email address in B's rows."""
    markers = {str(b.workspace_id), str(b.owner.id)} | {str(u.id) for u in b.members.values()}
    for scope in catalog.tables:
        for row in rows_of(conn, scope, b.workspace_id, None):
            for value in row.values():
                if isinstance(value, uuid.UUID) or (isinstance(value, str) and "@" in value):
                    markers.add(text_of(value))
    return frozenset(markers)


def checksum(
    conn: Conn, catalog: Catalog, workspace_id: uuid.UUID, only: frozenset[int] | None = None
) -> dict[str, str]:
    """A digest of the workspace's rows per table (and of every shared reference table); with
    `only`, of those tables and of every relation that is not a table (views, materialized
    views)."""
    relations = [
        (s.relation.qualified, s.relation, s.where(workspace_id)) for s in catalog.tables
    ] + [(r.qualified, r, sql.SQL("true")) for r in catalog.reference]
    parts = [
        sql.SQL(
            "select {name} as relation, (select md5(coalesce(string_agg(t::text, '|'"
            " order by t::text), '')) from {rel} t where {pred}) as digest"
        ).format(name=sql.Literal(qualified), rel=relation.identifier, pred=pred)
        for qualified, relation, pred in relations
        if only is None or relation.oid in only or relation.kind not in ("r", "p")
    ]
    rows = conn.execute(sql.SQL(" union all ").join(parts)).fetchall()
    return {r["relation"]: r["digest"] for r in rows}


def write_marks(conn: Conn) -> dict[int, tuple[int, int, int]]:
    """Per table (by leaf oid): its partition root, the rows this transaction has inserted,
    updated or deleted in it so far, and its file node (which a truncate changes)."""
    rows = conn.execute(
        "select relid, coalesce(pg_partition_root(relid), relid)::oid as root,"
        " n_tup_ins + n_tup_upd + n_tup_del as written, pg_relation_filenode(relid) as node"
        " from pg_stat_xact_user_tables"
    ).fetchall()
    return {r["relid"]: (r["root"], r["written"], r["node"]) for r in rows}


def changed_tables(world: World, before: dict[int, tuple[int, int, int]]) -> list[str]:
    """B's tables whose rows differ from the baseline, seen by the superuser. Only tables the
    transaction wrote to since `before` (write_marks) can differ, so only they are digested.
    Call it only in a savepoint that is then rolled back: that also gives the actor back their
    role."""
    world.conn.execute("set local role none")
    after = write_marks(world.conn)
    written = frozenset(mark[0] for relid, mark in after.items() if before.get(relid) != mark)
    if not written:
        return []
    now = checksum(world.conn, world.catalog, world.b.workspace_id, written)
    return sorted(name for name, digest in now.items() if world.baseline.get(name) != digest)


@contextmanager
def acting(conn: Conn, actor: Actor) -> Iterator[None]:
    """The actor's transaction, as the Data API sets it up; always rolled back."""
    with conn.transaction() as outer:
        if actor.user is None:
            with acting_as_anon(conn):
                yield
        else:
            with acting_as(conn, actor.user):
                # What Realtime sets when the user joins their own workspace's private channel.
                conn.execute(
                    "select set_config('realtime.topic', %s, true)",
                    (f"workspace:{actor.workspace_id}:automations",),
                )
                yield
        raise psycopg.Rollback(outer)


def try_statement(conn: Conn, query: sql.Composed, params: Any = None) -> tuple[bool, int]:
    """Runs a statement in a savepoint: (refused with an error, rows affected)."""
    try:
        with conn.transaction():
            cursor = conn.execute(query, params)
            return False, cursor.rowcount
    except psycopg.Error:
        return True, 0


# the world -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(database_url: str) -> Iterator[World]:
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        a = seed_tenant(conn, ("admin", "member", "viewer"))
        b = seed_tenant(conn, ("member",))
        outsider = create_user(conn)
        catalog = build_catalog(conn)
        b_keys = {
            name: sorted(
                {
                    r["key"]
                    for r in conn.execute(
                        sql.SQL("select {} as key from {} where {}").format(
                            scope.key_expression,
                            scope.relation.identifier,
                            scope.where(b.workspace_id),
                        )
                    )
                }
            )
            for name, scope in catalog.scopes.items()
        }
        yield World(
            conn=conn,
            a=a,
            b=b,
            outsider=outsider,
            catalog=catalog,
            privileges={
                (role, relation.qualified): relation_privileges(conn, role, relation)
                for role in ("authenticated", "anon")
                for relation in catalog.relations
            },
            functions=exposed_functions(conn),
            b_keys=b_keys,
            b_rows={
                scope.relation.qualified: dict(rows[0])
                for scope in catalog.tables
                if (rows := rows_of(conn, scope, b.workspace_id, 1))
            },
            b_values=workspace_values(conn, catalog, b.owner),
            own_values={
                user.workspace_id: workspace_values(conn, catalog, user)
                for user in (a.owner, outsider)
            },
            markers=b_markers(conn, catalog, b),
            baseline=checksum(conn, catalog, b.workspace_id),
        )


def count_rows(conn: Conn, relation: Relation, where: sql.Composable) -> int:
    row = conn.execute(
        sql.SQL("select count(*) as n from {} where {}").format(relation.identifier, where)
    ).fetchone()
    assert row is not None
    return int(row["n"])


def test_every_relation_is_mapped_to_a_tenant_and_seeded_in_both(world: World) -> None:
    """A new table or view that no rule maps to a workspace, or that the seed leaves empty for A
    or B, fails here by name: the matrix would otherwise prove nothing about it."""
    conn, catalog = world.conn, world.catalog
    problems = [
        f"{r.qualified}: no workspace_id, no foreign key to a tenant's row, no explicit scope"
        " and not in REFERENCE_TABLES"
        for r in catalog.unclassified
    ]
    for scope in catalog.scopes.values():
        for tenant, label in ((world.a, "A"), (world.b, "B")):
            if scope.relation.is_table:
                seen = count_rows(conn, scope.relation, scope.where(tenant.workspace_id))
            else:
                with acting_as(conn, tenant.owner):
                    seen = count_rows(conn, scope.relation, scope.where(tenant.workspace_id))
            if seen == 0:
                problems.append(f"{scope.relation.qualified}: no row of {label} seeded")
    assert problems == [], "extend tests/tenancy_seed.py:\n" + "\n".join(problems)


# reads -----------------------------------------------------------------------------------------


def read_leaks(world: World, actor: Actor) -> tuple[list[str], int]:
    conn, leaks, checked = world.conn, [], 0
    with acting(conn, actor):
        for relation in world.catalog.relations:
            privileges = world.privileges[(actor.role, relation.qualified)]
            if not privileges.select_columns or relation in world.catalog.reference:
                continue
            scope = world.catalog.scopes.get(relation.qualified)
            if scope is None:
                leaks.append(
                    f"{relation.qualified}: readable, but no rule says whose rows it holds"
                )
                continue
            if not set(scope.key) <= privileges.select_columns:
                leaks.append(f"{relation.qualified}: readable without its tenant key {scope.key}")
                continue
            checked += 1
            where = sql.SQL("{} = any(%s)").format(scope.key_expression)
            try:
                with conn.transaction():
                    seen = int(
                        conn.execute(
                            sql.SQL("select count(*) as n from {} where {}").format(
                                relation.identifier, where
                            ),
                            (world.b_keys[relation.qualified],),
                        ).fetchone()["n"]
                    )
            except psycopg.Error:
                seen = 0
            if seen:
                leaks.append(f"{relation.qualified}: {seen} row(s) of B visible")
        for function in world.functions:
            if (
                actor.role not in function.executable_by
                or "workspace_id" not in function.out_columns
            ):
                continue
            checked += 1
            arguments = argument_variants(function, world, actor)[0]
            try:
                with conn.transaction():
                    seen = int(
                        conn.execute(
                            sql.SQL("select count(*) as n from {} where workspace_id = %s").format(
                                call_expression(function)
                            ),
                            [*arguments, world.b.workspace_id],
                        ).fetchone()["n"]
                    )
            except psycopg.Error:
                seen = 0
            if seen:
                leaks.append(f"{function.label}: {seen} row(s) of B returned")
    return leaks, checked


@pytest.mark.parametrize("role", ROLES)
def test_no_relation_shows_a_row_of_b(world: World, role: str) -> None:
    leaks, checked = read_leaks(world, world.actor(role))
    print(f"read matrix as {role}: {checked} relations and functions checked")
    assert leaks == [], f"as {describe(role)}:\n" + "\n".join(leaks)


# writes ----------------------------------------------------------------------------------------


def write_attempts(world: World, actor: Actor, scope: Scope) -> list[list[sql.Composed]]:
    """Update and delete aimed at B's rows (the first column the role may update, set to
    itself), and each also without a WHERE clause and without reading a column (`set c =
    default`, or one of B's values where c has no default): Postgres then skips the SELECT
    policies, so only the UPDATE and DELETE policies stand between the statement and B.
    Each attempt is a list of statements tried in turn until one is not refused."""
    relation = scope.relation
    privileges = world.privileges[(actor.role, relation.qualified)]
    at_b = sql.SQL(" where {} = any({})").format(
        scope.key_expression, sql.Literal(world.b_keys[relation.qualified])
    )
    attempts: list[list[sql.Composed]] = []
    if privileges.update_columns:
        first = sql.Identifier(privileges.update_columns[0])
        attempts.append(
            [sql.SQL("update {} set {} = {}").format(relation.identifier, first, first) + at_b]
        )
        sample = world.b_rows.get(relation.qualified, {})
        assignments = []
        for column in privileges.update_columns:
            value: sql.Composable = sql.DEFAULT
            if column in privileges.required_columns and column in sample:
                raw = sample[column]
                value = sql.Literal(Jsonb(raw) if isinstance(raw, dict) else raw)
            assignments.append(sql.SQL("{} = {}").format(sql.Identifier(column), value))
        # Every column at once; each alone when that is refused (one column's value may be).
        alternatives = [assignments] + ([[a] for a in assignments] if len(assignments) > 1 else [])
        attempts.append(
            [
                sql.SQL("update {} set {}").format(relation.identifier, sql.SQL(", ").join(chosen))
                for chosen in alternatives
            ]
        )
    if privileges.delete:
        delete = sql.SQL("delete from {}").format(relation.identifier)
        attempts += [[delete + at_b], [delete]]
    return attempts


def write_leaks(world: World, actor: Actor) -> tuple[list[str], int]:
    """Each statement in its own savepoint, rolled back after B's checksum is compared, so one
    attempt (deleting the actor's own workspace, say) never weakens the next."""
    conn, leaks, checked = world.conn, [], 0
    with acting(conn, actor):
        for scope in world.catalog.tables:
            for attempt in write_attempts(world, actor, scope):
                checked += 1
                for statement in attempt:
                    with conn.transaction() as savepoint:
                        before = write_marks(conn)
                        was_refused, affected = try_statement(conn, statement)
                        if affected and (changed := changed_tables(world, before)):
                            leaks.append(f"{statement.as_string(conn)}: changed B's {changed}")
                        raise psycopg.Rollback(savepoint)
                    if not was_refused:
                        break
            insertable = world.privileges[(actor.role, scope.relation.qualified)].insert_columns
            if insertable:
                checked += 1
                if insert_copy_accepted(world, actor, scope, insertable):
                    leaks.append(f"{scope.relation.qualified}: a copy of B's row was inserted")
    return leaks, checked


def insert_copy_accepted(
    world: World, actor: Actor, scope: Scope, columns: tuple[str, ...]
) -> bool:
    """Takes one of B's rows out (as the superuser, without triggers or cascades, so the copy
    collides with nothing) and has the actor insert it again: only a refusal is right."""
    conn, relation = world.conn, scope.relation
    with conn.transaction() as savepoint:
        conn.execute("set local role none")
        conn.execute("set local session_replication_role = replica")
        row = conn.execute(
            sql.SQL(
                "delete from {rel} t where t.ctid = (select ctid from {rel} where {pred} limit 1)"
                " returning row_to_json(t) as copy"
            ).format(rel=relation.identifier, pred=scope.where(world.b.workspace_id))
        ).fetchone()
        conn.execute("set local session_replication_role = origin")
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(actor.role)))
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        was_refused, _ = try_statement(
            conn,
            sql.SQL(
                "insert into {rel} ({cols})"
                " select {cols} from json_populate_record(null::{rel}, %s)"
            ).format(rel=relation.identifier, cols=names),
            (json.dumps(row["copy"]) if row else None,),
        )
        raise psycopg.Rollback(savepoint)
    return row is not None and not was_refused


@pytest.mark.parametrize("role", ROLES)
def test_no_insert_update_or_delete_changes_b(world: World, role: str) -> None:
    leaks, checked = write_leaks(world, world.actor(role))
    print(f"write matrix as {role}: {checked} statements attempted")
    assert leaks == [], f"as {describe(role)}:\n" + "\n".join(leaks)


# RPC -------------------------------------------------------------------------------------------


def fallback_argument(type_name: str) -> str | None:
    """A plausible value of a type, for parameters no seeded value matches."""
    if type_name.endswith("[]"):
        return "{}"
    return {
        "uuid": str(uuid.uuid4()),
        "text": "x",
        "character varying": "x",
        "integer": "1",
        "bigint": "1",
        "smallint": "1",
        "numeric": "1",
        "double precision": "1",
        "real": "1",
        "boolean": "true",
        "jsonb": "{}",
        "json": "{}",
        "date": date.today().isoformat(),
        "timestamp with time zone": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "timestamp without time zone": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        "interval": "1 day",
    }.get(type_name)


def argument_variants(function: Function, world: World, actor: Actor) -> list[list[str | None]]:
    """Arguments aimed at B (each of B's candidates in turn), then the same with one id swapped
    for the actor's own (B's resource used from the actor's own workspace, project, ...)."""
    candidates: list[list[str | None]] = []
    for name, type_name in zip(function.arg_names, function.arg_types, strict=True):
        found: list[str | None] = list(world.b_values.argument(name, type_name))
        candidates.append(found or [fallback_argument(type_name)])
    rounds = max((len(c) for c in candidates), default=1)
    variants: list[list[str | None]] = [
        [c[min(i, len(c) - 1)] for c in candidates] for i in range(rounds)
    ]
    own = world.own_values.get(actor.workspace_id) if actor.workspace_id else None
    if own is not None:
        for index, (name, type_name) in enumerate(
            zip(function.arg_names, function.arg_types, strict=True)
        ):
            mine = own.argument(name, type_name) if type_name == "uuid" else []
            if mine:
                variants.append([*variants[0][:index], mine[0], *variants[0][index + 1 :]])
    return variants


def call_expression(function: Function) -> sql.Composable:
    return sql.SQL("{}({})").format(
        sql.Identifier(function.schema, function.name),
        sql.SQL(", ").join(sql.SQL("%s::" + type_name) for type_name in function.arg_types),
    )


def rpc_leaks(world: World, actor: Actor) -> tuple[list[str], int, int]:
    conn, leaks, calls = world.conn, [], 0
    functions = [f for f in world.functions if actor.role in f.executable_by]
    with acting(conn, actor):
        for function in functions:
            for arguments in argument_variants(function, world, actor):
                calls += 1
                with conn.transaction() as savepoint:
                    before = write_marks(conn)
                    try:
                        with conn.transaction():
                            result = conn.execute(
                                sql.SQL("select * from {}").format(call_expression(function)),
                                arguments,
                            ).fetchall()
                    except psycopg.Error:
                        raise psycopg.Rollback(savepoint) from None
                    shown = json.dumps(result, default=str)
                    revealed = sorted(
                        m
                        for m in world.markers
                        if m in shown and all(m not in str(a) for a in arguments)
                    )
                    call = f"{function.label} with {arguments}"
                    if revealed:
                        leaks.append(f"{call}: returned B's {revealed[:3]}")
                    changed = changed_tables(world, before)
                    if changed:
                        leaks.append(f"{call}: changed B's {changed}")
                    raise psycopg.Rollback(savepoint)
    return leaks, len(functions), calls


@pytest.mark.parametrize("role", ROLES)
def test_no_rpc_aimed_at_b_changes_or_returns_b(world: World, role: str) -> None:
    leaks, functions, calls = rpc_leaks(world, world.actor(role))
    print(f"RPC matrix as {role}: {functions} functions, {calls} calls")
    assert leaks == [], f"as {describe(role)}:\n" + "\n".join(leaks)
