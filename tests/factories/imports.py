"""Import jobs brought to the point where their chunks are next, for tests that drive the
chunks themselves."""

import time
import uuid
from typing import Any

from api.core.db import Database
from api.imports.jobs import Runner, step
from api.imports.parts import store_part
from tests.factories.workspaces import User


def importing_job(
    database: Database, user: User, kind: str, project: uuid.UUID | None, data: bytes
) -> dict[str, Any]:
    """A file of this kind, uploaded, read and validated: its chunks are next."""
    with database.as_user(user.claims) as tx:
        job = tx.execute(
            "select * from private.create_import_job(%s, %s, %s, %s, 'file.csv',"
            " 'utf-8', '{}'::jsonb, null)",
            (user.workspace_id, project, kind, len(data)),
        ).fetchone()
    assert job is not None
    with database.as_user(user.claims) as tx:
        store_part(tx, job["id"], 1, data)
    with database.as_user(user.claims) as tx:
        tx.execute("select private.commit_import_job(%s)", (job["id"],))
    runner = Runner(database, None)
    for _ in range(10):
        staged = step(runner, job["id"], time.monotonic() + 30)
        assert staged is not None
        if staged["status"] == "importing":
            return staged
    raise AssertionError(staged)
