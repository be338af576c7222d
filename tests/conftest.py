"""Every test talks to a real Postgres: a fresh database per session, migrated by our runner."""

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from hypothesis import settings
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from api.core.db import Database
from scripts import postgres
from scripts.migrate import migrate
from tests.fakes.jwks import JwksServer, SigningKey, serve_jwks

# Generated inputs (the PII properties, the edge's fuzzing) are drawn from a fixed seed, the
# same on every run: CI's verdict is the code's, not the draw's. HYPOTHESIS_PROFILE=explore
# draws new ones (a failure it finds is pinned with @example).
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

# The files that take the longest, started first: under scripts/test's workers (a file at a
# time) the run then does not end with one worker alone on one of them.
SLOWEST_FILES = ("tests/security/test_fuzz_edge.py", "tests/email/test_send_pacing.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.nodeid.split("::", 1)[0] not in SLOWEST_FILES)


@pytest.fixture(scope="session")
def jwks() -> Iterator[JwksServer]:
    """The Supabase project's JWKS (one ES256 key), served over real HTTP."""
    with serve_jwks(SigningKey.generate("ES256")) as server:
        yield server


@pytest.fixture(scope="session")
def server_url() -> str:
    return postgres.server_url()


class Databases:
    """Creates throwaway databases on the test server and drops them at the end."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.names: list[str] = []

    def create(self) -> str:
        name = f"growthbase_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        self.names.append(name)
        return postgres.database_url(self.server_url, name)

    def drop_all(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            for name in self.names:
                conn.execute(
                    sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name))
                )


@pytest.fixture(scope="session")
def databases(server_url: str) -> Iterator[Databases]:
    created = Databases(server_url)
    yield created
    created.drop_all()


@pytest.fixture(scope="session")
def database_url(databases: Databases) -> str:
    url = databases.create()
    migrate(url)
    return url


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection[DictRow]]:
    """A superuser connection (the migrating role), committing each statement."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as connection:
        yield connection


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """The edge's own pool on the worker's database (session mode, three connections), for
    tests that run the edge's workers (import jobs, erasure) as a request or the cron would."""
    db = Database(database_url, pool_mode="session", max_size=3, timeout_seconds=10)
    db.open()
    yield db
    db.close()
