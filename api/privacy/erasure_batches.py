"""Batch erasure: many contacts at once, erased in chunks (private.erase_batch_chunk, each chunk
one short transaction with the same set-based erasure as a single contact's), right after the
request for a few seconds and then by the cron until done. A chunk that cannot get its locks
within a few seconds gives way (the send pipeline and syncs go first) and is taken again by the
next call: nothing is lost, nothing is erased twice."""

import time
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.core.db import Database
from api.core.deps import ActingUser, ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import documented, json_body_example

router = APIRouter(tags=["privacy"])

# Chunks aim at about a second each (the contact counter and erased rows stay locked for as long),
# starting at 500 contacts and following the pace, between 50 and 2,000.
CHUNK_CONTACTS = 500
CHUNK_SECONDS = 1.0
CHUNK_BOUNDS = (50, 2000)
REQUEST_BUDGET_SECONDS = 5.0
MAX_CONTACTS = 100_000
# How long a chunk waits for a row someone else holds before it gives way.
LOCK_TIMEOUT = "3s"


def erase_chunks(
    database: Database, budget_seconds: float, batch_id: UUID | None = None
) -> dict[str, Any]:
    """Chunks of `batch_id` (or of any unfinished batch, oldest first) until none is left or the
    budget is spent; answers how many chunks ran and whether nothing was left (`finished`)."""
    deadline = time.monotonic() + budget_seconds
    chunks = 0
    size = CHUNK_CONTACTS
    finished = False
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            with database.as_service() as conn:
                conn.execute("select set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
                row = conn.execute(
                    "select b.id from private.erase_batch_chunk(%s, %s) as b", (batch_id, size)
                ).fetchone()
        except psycopg.errors.LockNotAvailable:
            break
        if row is None or row["id"] is None:
            finished = True
            break
        chunks += 1
        size = next_chunk_size(size, time.monotonic() - started)
    return {"chunks": chunks, "finished": finished}


def next_chunk_size(size: int, seconds: float) -> int:
    """The next chunk's size at the last one's pace, at most doubling or halving at a time."""
    low, high = CHUNK_BOUNDS
    scaled = size * CHUNK_SECONDS / max(seconds, 0.001)
    return int(min(max(scaled, size / 2, low), size * 2, high))


BATCH_EXAMPLE = {
    "id": "3c9e1f2a-7b4d-4e6f-8a0b-1c2d3e4f5a6b",
    "workspace_id": "0f7b2c1e-4c1d-4b8e-9a0e-3f6a2d9b8c71",
    "requested_by": "2a9c7e15-3b4d-4f6e-8a1b-9c0d1e2f3a4b",
    "status": "running",
    "total": 25000,
    "erased": 2500,
    "skipped": 3,
    "chunks": 5,
    "created_at": "2026-12-09T09:30:00Z",
    "updated_at": "2026-12-09T09:30:05Z",
    "finished_at": None,
}


class NewErasureBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    contact_ids: list[UUID] = Field(min_length=1, max_length=MAX_CONTACTS)


class ErasureBatch(BaseModel):
    id: UUID
    workspace_id: UUID
    requested_by: UUID | None
    status: str = Field(description="queued, running or done")
    total: int = Field(description="Distinct contact ids named")
    erased: int
    skipped: int = Field(
        description="Not among the workspace's live contacts (another workspace's, unknown, "
        "or erased already)"
    )
    chunks: int
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


def read_batch(acting: ActingUser, batch_id: UUID) -> dict[str, Any]:
    with acting.connection() as conn:
        row = conn.execute(
            "select * from public.erasure_batches where id = %s", (batch_id,)
        ).fetchone()
    if row is None:
        raise ApiError(404, "erasure_batch_not_found", "Batch erasure not found")
    return dict(row)


@router.post(
    "/api/v1/privacy/erasures",
    status_code=202,
    response_model=Envelope[ErasureBatch],
    summary="Erase many contacts at once",
    openapi_extra=json_body_example(
        {
            "workspace_id": "0f7b2c1e-4c1d-4b8e-9a0e-3f6a2d9b8c71",
            "contact_ids": ["5b0e8d6a-9c3f-4e21-8f4a-1d2c3b4a5e6f"],
        }
    ),
    responses=documented(
        BATCH_EXAMPLE,
        status=202,
        errors={
            403: {"insufficient_role": "This needs the admin role or higher"},
            404: {"workspace_not_found": "Workspace not found"},
            422: {
                "contact_ids_required": "Name at least one contact to erase",
                "too_many_contacts": "A batch erases at most 100,000 contacts",
            },
        },
    ),
)
def request_batch(
    acting: ActingUser, database: ServiceDatabase, body: NewErasureBatch
) -> dict[str, Any]:
    """Admins and owners: up to 100,000 contact ids. Each is erased exactly as a single erasure
    does, in chunks of about a second (500 contacts to start with); the first chunks run within
    this request (about 5 s), the rest on the cron (`GET /api/v1/cron/privacy-erasures`).
    Progress is on the workspace's `erasures` channel and at `GET /api/v1/privacy/erasures/{id}`.
    Ids that are not the workspace's live contacts are counted as skipped."""
    with acting.connection() as conn:
        row = conn.execute(
            "select id from public.request_erasure_batch(%s, %s)",
            (body.workspace_id, body.contact_ids),
        ).fetchone()
    assert row is not None
    erase_chunks(database, REQUEST_BUDGET_SECONDS, row["id"])
    return ok(read_batch(acting, row["id"]))


@router.get(
    "/api/v1/privacy/erasures/{batch_id}",
    response_model=Envelope[ErasureBatch],
    summary="Read a batch erasure's progress",
    responses=documented(
        BATCH_EXAMPLE,
        errors={404: {"erasure_batch_not_found": "Batch erasure not found"}},
    ),
)
def get_batch(acting: ActingUser, batch_id: UUID) -> dict[str, Any]:
    """Admins and owners of its workspace (others: 404)."""
    return ok(read_batch(acting, batch_id))
