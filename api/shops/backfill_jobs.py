"""A shop backfill (Shopify, WooCommerce, the Shoptet sync and catalog) as an import job, so the
SPA lists, follows and cancels it like a CSV import (`GET /api/v1/imports/{id}`, the
`import_progress` broadcast, `POST /api/v1/imports/{id}/cancel`).

A call carries on the project's running job of its source and kind, or starts one. Each page is
counted on the job in the page's own transaction before its upsert, and only while the job is
importing, so a cancel stops the next page and no page counts twice; the last page ends the job
in its transaction. A failure the shop owner must act on ends the job as failed with its code;
any other failure leaves it for the next call. Orders the database leaves out of a page (one
that breaks a rule of its table, see private.upsert_orders) are moved from the page's written
count to its skipped one, in the page's transaction.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from api.core.db import Connection, Database
from api.core.deps import UserScope
from api.core.errors import ApiError, from_database_error

Source = Literal["shopify", "woocommerce", "shoptet"]
Kind = Literal["backfill", "products"]
# The shop refuses the credentials or a record (422), the plan's contacts are full (402): the
# next call would fail the same way until the owner connects again or upgrades.
OWNER_MUST_ACT = frozenset({402, 422})
JOB_ID_DESCRIPTION = (
    "The import job this backfill runs as (GET /api/v1/imports/{id}; cancel it there)"
)


class JobNotRunningError(Exception):
    """The job was cancelled (or ended) meanwhile: the page being written rolls back."""


def begin_backfill(acting: UserScope, project_id: UUID, source: Source, kind: Kind) -> UUID:
    """The running job, or a new one, as the user: members and above of the project's
    workspace (404 / 403 otherwise)."""
    with acting.connection() as conn:
        row = conn.execute(
            "select id from private.begin_shop_backfill(%s, %s, %s)", (project_id, source, kind)
        ).fetchone()
    assert row is not None and row["id"] is not None
    return UUID(str(row["id"]))


def count_page(conn: Connection, job_id: UUID, stream: str, written: int, skipped: int) -> None:
    """In the page's transaction, before its upsert: JobNotRunningError unless the job runs."""
    row = conn.execute(
        "select private.count_shop_backfill_page(%s, %s, %s, %s) as counted",
        (job_id, stream, written, skipped),
    ).fetchone()
    if not (row and row["counted"]):
        raise JobNotRunningError


def without_nul(value: Any) -> Any:
    """The document as Postgres's jsonb can hold it: JSON allows a NUL character (`\\u0000`) in
    a string, jsonb refuses it and fails the whole page's statement with it, so it is removed
    from every string and key (a shop's read API, unlike a webhook body, cannot be refused).
    The shops' documents are nested a few levels deep."""
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [without_nul(item) for item in value]
    return value


def upsert_page(
    conn: Connection,
    job_id: UUID,
    stream: str,
    statement: str,
    project_id: UUID,
    documents: list[dict[str, Any]],
) -> int:
    """Writes a counted page (`statement` of the project and the documents), in its transaction;
    answers how many of its orders the database left out, which are moved on the job from
    written to skipped. Other streams leave none out (their mappers refuse what the database
    would)."""
    if not documents:
        return 0
    row = conn.execute(statement, (project_id, Jsonb(without_nul(documents)))).fetchone()
    if stream != "orders" or row is None:
        return 0
    written = next(iter(row.values()))
    # A page that lists an order twice writes it once: left out are the ids not written.
    left_out = len({document["external_id"] for document in documents}) - int(written)
    if left_out > 0:
        count_page(conn, job_id, stream, -left_out, left_out)
    return max(left_out, 0)


def finish(conn: Connection, job_id: UUID) -> None:
    """In the last page's transaction: the job is done."""
    conn.execute("select private.finish_shop_backfill(%s)", (job_id,))


def running(database: Database, job_id: UUID) -> bool:
    with database.as_service() as conn:
        row = conn.execute("select private.shop_backfill_running(%s) as running", (job_id,))
        found = row.fetchone()
    return bool(found and found["running"])


def fail_if_owner_must_act(database: Database, job_id: UUID, error: ApiError) -> None:
    if error.status in OWNER_MUST_ACT:
        with database.as_service() as conn:
            conn.execute(
                "select private.fail_import_job(%s, %s, %s)", (job_id, error.code, error.message)
            )


@contextmanager
def failing_the_job(
    database: Database, job_id: UUID, provider_error: Callable[[Exception], ApiError | None]
) -> Iterator[None]:
    """Whatever leaves the block is raised on; one the owner must act on (the shop's own error
    as `provider_error` maps it, or the database's) fails the job first."""
    try:
        yield
    except Exception as error:
        if isinstance(error, ApiError):
            mapped: ApiError | None = error
        elif isinstance(error, psycopg.Error):
            mapped = from_database_error(error)
        else:
            mapped = provider_error(error)
        if mapped is not None:
            fail_if_owner_must_act(database, job_id, mapped)
        raise
