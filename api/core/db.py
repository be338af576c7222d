"""Postgres access for the edge: a small pool and one way to act as a signed-in user.

Acting as a user mirrors PostgREST: inside one transaction the role becomes `authenticated`
and the verified claims go into `request.jwt.claims`, so RLS and `auth.uid()` decide exactly
as they do for the Data API.
"""

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from api.core.errors import ApiError

# One round trip: switch role, publish the claims and the request's headers the audit log
# reads (its id and the client's address; never credentials), and apply the role's own settings
# (such as its statement_timeout) the way PostgREST applies impersonated role settings.
BECOME_USER_SQL = """
select set_config('role', 'authenticated', true),
       set_config('request.jwt.claims', %(claims)s, true),
       set_config('request.method', %(method)s, true),
       set_config('request.path', %(path)s, true),
       set_config('request.headers', %(headers)s, true),
       (select count(set_config(split_part(setting, '=', 1),
                                substr(setting, strpos(setting, '=') + 1), true))
          from pg_catalog.pg_db_role_setting as s, unnest(s.setconfig) as setting
         where s.setrole = 'authenticated'::regrole
           and s.setdatabase in (0, (select oid from pg_catalog.pg_database
                                      where datname = current_database())))
"""

Connection = psycopg.Connection[DictRow]


def become_user(
    conn: psycopg.Connection[Any],
    claims: dict[str, Any],
    method: str = "",
    path: str = "",
    headers: dict[str, str] | None = None,
) -> None:
    """Turn the current transaction into the given user's, as PostgREST does."""
    conn.execute(
        BECOME_USER_SQL,
        {
            "claims": json.dumps(claims),
            "method": method,
            "path": path,
            "headers": json.dumps(headers or {}),
        },
    )


# The acting user's id (from the claims, read before they are replaced) stays in
# `growthbase.actor_id`, so the audit log names who a privileged write was done for.
BECOME_SERVICE_SQL = """
select set_config('role', 'service_role', true),
       set_config('request.jwt.claims', '{"role": "service_role"}', true)
  from (select set_config('growthbase.actor_id',
                          coalesce(nullif(current_setting('request.jwt.claims', true), '')::jsonb
                                   ->> 'sub', ''),
                          true)) as kept
"""


def become_service(conn: psycopg.Connection[Any]) -> None:
    """The service's role for the rest of the transaction; after acting as a user (an admin
    check), that user remains the audit log's actor."""
    conn.execute(BECOME_SERVICE_SQL)


class Database:
    """A connection pool that opens lazily, so the edge starts even while Postgres is down."""

    def __init__(self, url: str, *, pool_mode: str, max_size: int, timeout_seconds: float) -> None:
        # Transaction-mode poolers (Supavisor :6543) cannot keep server-side prepared statements.
        prepare_threshold = None if pool_mode == "transaction" else 5
        self.timeout_seconds = timeout_seconds
        self.pool: ConnectionPool[Connection] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=timeout_seconds,
            connection_class=psycopg.Connection[DictRow],
            kwargs={
                "row_factory": dict_row,
                "prepare_threshold": prepare_threshold,
                "connect_timeout": max(1, int(timeout_seconds)),
                "application_name": "growthbase-edge",
            },
        )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self, timeout_seconds: float | None = None) -> Iterator[Connection]:
        """A pooled connection inside one transaction, committed when the block succeeds."""
        try:
            with self.pool.connection(timeout=timeout_seconds) as conn:
                yield conn
        except PoolTimeout as error:
            raise ApiError(
                503, "database_unavailable", "The database cannot be reached; try again shortly"
            ) from error

    @contextmanager
    def as_user(
        self,
        claims: dict[str, Any],
        method: str = "",
        path: str = "",
        headers: dict[str, str] | None = None,
    ) -> Iterator[Connection]:
        with self.connection() as conn:
            become_user(conn, claims, method, path, headers)
            yield conn

    @contextmanager
    def as_service(self) -> Iterator[Connection]:
        """Privileged work (webhooks, workers) as service_role, which may only call the narrow
        private functions granted to it."""
        with self.connection() as conn:
            become_service(conn)
            yield conn

    def one_as_service(self, query: str, params: Sequence[Any]) -> DictRow | None:
        """Runs one statement as service_role and answers its first row. The transaction's
        start, the role switch, the statement and the commit go to the server together
        (pipeline mode), so a hot loop (the send worker's rounds) holds its connection for one
        network round trip, not four."""
        with self.connection() as conn:
            with conn.pipeline():
                become_service(conn)
                cursor = conn.execute(query, params)
                conn.commit()
            return cursor.fetchone()

    def ping(self, timeout_seconds: float) -> None:
        with self.connection(timeout_seconds) as conn:
            conn.execute("select 1")
