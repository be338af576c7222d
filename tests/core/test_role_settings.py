"""Settings the Data API applies to a signed-in user's request, as PostgREST applies the
impersonated role's own settings."""

import psycopg
from psycopg.rows import DictRow

from tests.factories.workspaces import acting_as, create_user, one


def test_a_signed_in_users_request_runs_without_jit(conn: psycopg.Connection[DictRow]) -> None:
    """Compiling a dashboard read costs more than it saves (1.4 s against 28 ms measured)."""
    user = create_user(conn)
    with acting_as(conn, user):
        settings = one(
            conn,
            "select current_setting('jit') as jit, current_setting('statement_timeout') as timeout",
        )
    assert settings == {"jit": "off", "timeout": "8s"}
