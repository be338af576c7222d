"""A channel's credentials: one JSON document sealed by the edge, stored in
private.channel_secrets, never readable through the Data API and never answered back."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.core.db import Connection, Database, become_service
from api.core.secrets_box import SecretBox


@dataclass(frozen=True)
class StoredChannel:
    id: UUID
    workspace_id: UUID
    kind: str
    status: str
    account_id: str
    settings: dict[str, Any]
    secrets: dict[str, str]  # empty when none are stored (disconnected)


def seal(box: SecretBox, secrets: dict[str, str]) -> str:
    return box.seal(json.dumps(secrets, sort_keys=True))


def open_secrets(box: SecretBox, sealed: str | None) -> dict[str, str]:
    """The stored secrets; raises KeyMismatchError when another key sealed them."""
    if not sealed:
        return {}
    opened = json.loads(box.open(sealed))
    return (
        {str(key): str(value) for key, value in opened.items()} if isinstance(opened, dict) else {}
    )


def stored_channel(database: Database, box: SecretBox, channel_id: UUID) -> StoredChannel | None:
    with database.as_service() as conn:
        return channel_on(conn, box, channel_id)


CHANNEL_SQL = "select (c.channel).*, c.secrets_encrypted from private.channel_with_secrets(%s) c"


def channel_on(conn: Connection, box: SecretBox, channel_id: UUID) -> StoredChannel | None:
    """The channel and its opened secrets, read in the caller's service transaction."""
    return opened_channel(box, conn.execute(CHANNEL_SQL, (channel_id,)).fetchone())


@contextmanager
def service_channel(
    database: Database, box: SecretBox, channel_id: UUID
) -> Iterator[tuple[Connection, StoredChannel | None]]:
    """A service transaction and the channel with its opened secrets, for a webhook that checks
    a delivery's signature and then stores it in the same transaction. The role switch and the
    read go to Postgres together, in one round trip (a pipeline): on a busy server every round
    trip waits for the backend to be scheduled."""
    with database.connection() as conn:
        with conn.pipeline():
            become_service(conn)
            cursor = conn.execute(CHANNEL_SQL, (channel_id,))
        yield conn, opened_channel(box, cursor.fetchone())


def opened_channel(box: SecretBox, row: DictRow | None) -> StoredChannel | None:
    if row is None or row["id"] is None:
        return None
    return StoredChannel(
        id=row["id"],
        workspace_id=row["workspace_id"],
        kind=row["kind"],
        status=row["status"],
        account_id=row["account_id"],
        settings=row["settings"] or {},
        secrets=open_secrets(box, row["secrets_encrypted"]),
    )


def save_channel(
    conn: Connection,
    workspace_id: UUID,
    kind: str,
    name: str,
    account_id: str,
    settings: dict[str, Any],
    sealed: str,
) -> dict[str, Any]:
    """As the service, in the caller's transaction (after its admin check)."""
    row = conn.execute(
        "select * from private.connect_channel(%s, %s, %s, %s, %s, %s)",
        (workspace_id, kind, name, account_id, Jsonb(settings), sealed),
    ).fetchone()
    assert row is not None
    return dict(row)
