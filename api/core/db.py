"""Postgres access for the edge: a small pool and one way to act as a signed-in user.

Acting as a user mirrors PostgREST: inside one transaction the role becomes `authenticated`
and the verified claims go into `request.jwt.claims`, so RLS and `auth.uid()` decide exactly
as they do for the Data API.
"""

import json
import select
import time
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


def closed_by_server(conn: psycopg.Connection[Any]) -> bool:
    """Whether a pooled (idle) connection is dead. An idle connection has nothing to read, so
    its socket is checked without a round trip; only when something did arrive (the server's
    goodbye before it closed, or its end of file) is the connection asked (`ConnectionPool.
    check_connection`: one empty query) whether it still works."""
    if conn.closed or conn.broken:
        return True
    # poll, not select: select() refuses descriptors past 1024, which a busy process reaches.
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    if not poller.poll(0):
        return False
    try:
        ConnectionPool.check_connection(conn)
    except psycopg.Error:
        return True
    return False


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
            # After a failed connection attempt the pool tries again in the background with a
            # doubling delay (1 s, 2 s, 4 s, ...), and no waiting request starts an attempt of
            # its own meanwhile: left at psycopg's 5 minutes, a database that was down for a
            # minute stays unreachable for up to another minute after it is back. Giving up
            # after as long as a request waits lets the next request that needs a connection
            # try at once, so a restart ends for us at most this long after the server's.
            reconnect_timeout=timeout_seconds,
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
        """A pooled connection inside one transaction, committed when the block succeeds.

        A connection the server closed while it sat in the pool (a restart or crash closes
        them all) is never handed out: it is closed, the pool replaces it, and the next one is
        taken, within the same timeout. The check costs no round trip (see closed_by_server).
        """
        deadline = time.monotonic() + (
            self.timeout_seconds if timeout_seconds is None else timeout_seconds
        )
        try:
            while True:
                conn = self.pool.getconn(timeout=max(0.0, deadline - time.monotonic()))
                if not closed_by_server(conn):
                    break
                conn.close()
                self.pool.putconn(conn)
        except PoolTimeout as error:
            raise ApiError(
                503, "database_unavailable", "The database cannot be reached; try again shortly"
            ) from error
        try:
            # As the pool's own connection(): commit on success, roll back on an exception.
            with conn:
                yield conn
        finally:
            self.pool.putconn(conn)

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
