"""CSV imports of orders and contacts of any size, as import jobs: create a job, upload the file
in parts of at most 4 MiB (or name a file already in Storage), commit, and follow it; plus the
small synchronous orders import (≤ 5 MiB) on the same path. The database decides, as the user,
who may do what; the edge stages the bytes as the service and runs the job's steps. A shop's
backfill is a job too (source shopify, woocommerce or shoptet): read and cancelled here, run by
the shops feature."""

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import StreamingResponse
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from api.core.db import Connection
from api.core.deps import ActingUser, ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import answers, documented, raw_request_body
from api.imports.deps import IMPORT_STORAGE, OptionalStorage
from api.imports.jobs import Runner, run_job
from api.imports.parts import MAX_PART_BYTES, store_part
from api.imports.product_exports import STORE_KEEPS_CATALOG

router = APIRouter(tags=["imports"])
MAX_CSV_BYTES = 5 * 1024 * 1024
MAX_ERRORS_SHOWN = 1000


class NewImport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    kind: Literal["orders", "contacts", "products"]
    project_id: UUID | None = Field(
        default=None, description="The shop the orders or products belong to (not for contacts)"
    )
    size_bytes: int | None = Field(
        default=None, ge=1, description="The file's size; required unless storage_path is given"
    )
    file_name: Annotated[str, Field(min_length=1, max_length=255)] | None = None
    encoding: Literal["utf-8", "windows-1250", "windows-1252", "iso-8859-1", "iso-8859-2"] = "utf-8"
    column_map: dict[
        Annotated[str, Field(max_length=200)], Annotated[str, Field(max_length=64)] | None
    ] = Field(
        default_factory=dict,
        max_length=200,
        description="A file's column name → ours (or null to skip the column)",
    )
    storage_path: Annotated[str, Field(min_length=3, max_length=1024)] | None = Field(
        default=None, description="A file in the imports bucket: `<workspace id>/<name>`"
    )


class ImportJob(BaseModel):
    id: UUID
    workspace_id: UUID
    project_id: UUID | None
    kind: str = Field(description="orders, contacts or products; a shop's backfill: backfill")
    status: str
    source: str = Field(
        description="upload or storage (a file); shopify, woocommerce or shoptet (a backfill)"
    )
    storage_path: str | None
    file_name: str | None
    size_bytes: int | None = Field(description="The file's size; null for a backfill")
    encoding: str | None = Field(description="The file's encoding; null for a backfill")
    columns: list[str] | None
    parts_received: int
    bytes_received: int
    rows_total: int | None
    rows_processed: int
    rows_failed: int
    created: int
    updated: int
    unchanged: int
    stream: str | None = Field(
        description="The stream a backfill is on: customers, orders or products"
    )
    stream_records: dict[str, int] = Field(
        description="A backfill's records written per stream; {} for a file"
    )
    error_code: str | None
    error_message: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class RowErrorOut(BaseModel):
    line: int
    reason: str


class SyncImport(BaseModel):
    job_id: UUID
    status: str
    imported: int
    failed: int
    errors: list[RowErrorOut]


JOB_FIELDS = list(ImportJob.model_fields)
JOB_EXAMPLE: dict[str, Any] = {
    "id": "6d1f2c3b-8e9a-4b7c-9d0e-1f2a3b4c5d6e",
    "workspace_id": "3f2a9d4e-8b1c-4e7f-a6d5-0c9b8e7f6a5d",
    "project_id": "0c9b8e7f-6a5d-4e7f-a6d5-3f2a9d4e8b1c",
    "kind": "orders",
    "status": "importing",
    "source": "upload",
    "storage_path": None,
    "file_name": "orders-2026.csv",
    "size_bytes": 91927431,
    "encoding": "utf-8",
    "columns": ["order_id", "placed_at", "status", "total", "currency", "email"],
    "parts_received": 22,
    "bytes_received": 91927431,
    "rows_total": 1000000,
    "rows_processed": 420000,
    "rows_failed": 3,
    "created": 419997,
    "updated": 0,
    "unchanged": 0,
    "stream": None,
    "stream_records": {},
    "error_code": None,
    "error_message": None,
    "created_at": "2026-11-30T10:00:00Z",
    "started_at": "2026-11-30T10:00:41Z",
    "finished_at": None,
}
NOT_FOUND = {404: {"import_job_not_found": "Import job not found"}}
ROLE = {403: {"insufficient_role": "This needs the member role or higher"}}


def job_out(row: dict[str, Any]) -> dict[str, Any]:
    return {name: row[name] for name in JOB_FIELDS}


def read_job(conn: Connection, job_id: UUID) -> dict[str, Any]:
    """The job as the user sees it under RLS (404 for another workspace's)."""
    row = conn.execute("select * from public.import_jobs where id = %s", (job_id,)).fetchone()
    if row is None:
        raise ApiError(404, "import_job_not_found", "Import job not found")
    return dict(row)


PART_TOO_LARGE = "A part may have at most 4 MiB"
CSV_TOO_LARGE = "The CSV is larger than 5 MiB: import it as an import job, in parts"


@answers({413: {"part_too_large": PART_TOO_LARGE}})
async def part_body(request: Request) -> bytes:
    """A part's bytes, refused past 4 MiB before more is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_PART_BYTES:
        raise ApiError(413, "part_too_large", PART_TOO_LARGE)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_PART_BYTES:
            raise ApiError(413, "part_too_large", PART_TOO_LARGE)
    return bytes(body)


@answers({413: {"file_too_large": CSV_TOO_LARGE}})
async def csv_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_CSV_BYTES:
        raise ApiError(413, "file_too_large", CSV_TOO_LARGE)
    body = await request.body()
    if len(body) > MAX_CSV_BYTES:
        raise ApiError(413, "file_too_large", CSV_TOO_LARGE)
    return body


@router.post(
    "/api/v1/imports",
    status_code=201,
    response_model=Envelope[ImportJob],
    summary="Create an import job for a CSV of orders, contacts or products",
    responses=documented(
        JOB_EXAMPLE | {"status": "uploading", "rows_total": None},
        status=201,
        errors={
            **ROLE,
            404: {
                "workspace_not_found": "Workspace not found",
                "project_not_found": "Project not found",
                "storage_object_not_found": "No such file in the imports bucket",
            },
            403: {
                "insufficient_role": "This needs the member role or higher",
                "storage_path_not_allowed": "The file must be under the workspace's own folder",
            },
            409: {"too_many_import_jobs": "A workspace runs at most 3 imports at once"},
            413: {"file_too_large": "A file to import may have at most 1 GiB"},
            422: {
                "project_required": "An orders import names its project_id",
                "size_required": "Give size_bytes, or a storage_path",
                "invalid_size": "size_bytes is the file's size in bytes, at least 1",
                "invalid_encoding": "encoding is utf-8, windows-1250, windows-1252, …",
                "invalid_column_map": "column_map maps a file's column names to ours",
            },
            429: {"rate_limited": "Too many imports; try again later"},
        },
    ),
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {
                    "example": {
                        "workspace_id": JOB_EXAMPLE["workspace_id"],
                        "kind": "orders",
                        "project_id": JOB_EXAMPLE["project_id"],
                        "size_bytes": 91927431,
                        "file_name": "orders-2026.csv",
                        "column_map": {"Order date": "placed_at", "Notes": None},
                    }
                }
            }
        }
    },
)
def create_import(acting: ActingUser, body: NewImport) -> dict[str, Any]:
    """Members and above. Give `size_bytes` and upload the parts, or `storage_path` for a file
    the SPA put in the imports bucket (its size is read from Storage). Spends one request of the
    plan's import limit."""
    if body.kind != "contacts" and body.project_id is None:
        raise ApiError(422, "project_required", "An orders or products import names its project_id")
    if body.storage_path is None and body.size_bytes is None:
        raise ApiError(422, "size_required", "Give size_bytes, or a storage_path")
    with acting.connection() as conn:
        row = conn.execute(
            "select * from private.create_import_job(%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                body.workspace_id,
                body.project_id,
                body.kind,
                body.size_bytes,
                body.file_name,
                body.encoding,
                Jsonb(body.column_map),
                body.storage_path,
            ),
        ).fetchone()
    assert row is not None
    return ok(job_out(row))


@router.put(
    "/api/v1/imports/{job_id}/parts/{part_number}",
    response_model=Envelope[ImportJob],
    summary="Upload one part of the file (at most 4 MiB); a part sent again replaces itself",
    responses=documented(
        JOB_EXAMPLE | {"status": "uploading", "rows_total": None, "parts_received": 3},
        errors={
            **NOT_FOUND,
            **ROLE,
            409: {
                "import_not_uploading": "Parts are accepted only while a job is uploading",
                "store_keeps_catalog": "This project's products come from its connected"
                " Shopify store, whose sync keeps them: …",
            },
            413: {"import_size_exceeded": "The parts hold more than the declared size"},
            422: {
                "invalid_encoding": "Part 2 is not valid utf-8 text",
                "invalid_csv": "missing columns: order_id",
                "empty_part": "A part must hold at least one byte",
                "invalid_part_number": "Parts are numbered from 1 to 10000",
            },
        },
    ),
    openapi_extra=raw_request_body(
        "application/octet-stream",
        {"type": "string", "format": "binary"},
        "order_id,placed_at,status,total,currency\nA-1,2026-06-01,paid,10.00,EUR\n",
    ),
)
def put_part(
    acting: ActingUser,
    job_id: UUID,
    part_number: Annotated[int, Path(ge=1, le=10000)],
    body: Annotated[bytes, Depends(part_body)],
) -> dict[str, Any]:
    """Parts are byte ranges of the file, numbered from 1 in file order, sent in any order; each
    is checked for the job's encoding, and part 1 for the header's columns."""
    with acting.connection() as conn:
        conn.execute("select private.import_job_as(%s, 'member')", (job_id,))
        job = store_part(conn, job_id, part_number, body)
    return ok(job_out(job))


def answer(conn: Connection, job_id: UUID) -> dict[str, Any]:
    """The job after a run; a file that could not be read at all, or held a value the database
    refused, is the caller's 422; a shop's products export into the project whose store's sync
    keeps the catalog (the store synced after part 1 was checked, or a file in Storage) a 409."""
    job = read_job(conn, job_id)
    status = FAILED_STATUS.get(job["error_code"]) if job["status"] == "failed" else None
    if status is not None:
        details = {"job": ImportJob(**job_out(job)).model_dump(mode="json")}
        raise ApiError(status, job["error_code"], job["error_message"], details)
    return job_out(job)


# A job that failed as a whole, answered as the caller's error (by its code).
FAILED_STATUS = {
    "invalid_csv": 422,
    "invalid_encoding": 422,
    "file_changed": 422,
    "value_refused": 422,
    STORE_KEEPS_CATALOG: 409,
}


@router.post(
    "/api/v1/imports/{job_id}/commit",
    response_model=Envelope[ImportJob],
    summary="Finish the upload and import (or continue importing) the file",
    responses=documented(
        JOB_EXAMPLE,
        errors={
            **NOT_FOUND,
            **ROLE,
            409: {
                "import_part_missing": "Part 3 has not been uploaded",
                "import_size_mismatch": "The parts hold fewer bytes than declared",
                "import_job_cancelled": "This import was cancelled",
                "store_keeps_catalog": "This project's products come from its connected"
                " Shopify store, whose sync keeps them: …",
            },
            422: {
                "invalid_csv": "missing columns: email",
                "invalid_encoding": "line 7 is not valid utf-8",
                "file_changed": "The file has fewer bytes than when the import was created",
                "value_refused": "The database refused a value of this file (…); what was"
                " imported before stays",
            },
            503: {"provider_not_configured": "Supabase Storage is not configured"},
        },
    ),
)
def commit_import(
    acting: ActingUser,
    database: ServiceDatabase,
    storage: OptionalStorage,
    request: Request,
    job_id: UUID,
) -> dict[str, Any]:
    """Checks that every part is there, then reads, checks and imports the file for up to about
    40 seconds; a job still `validating` or `importing` goes on with the next commit call or the
    cron. Calling it again is harmless. Row errors do not fail the job: they are counted and
    listed in its errors."""
    with acting.connection() as conn:
        job = conn.execute("select * from private.commit_import_job(%s)", (job_id,)).fetchone()
    assert job is not None
    if job["source"] == "storage":
        storage = IMPORT_STORAGE.required(request)  # 503 provider_not_configured without it
    run_job(Runner(database, storage), job["id"])
    with acting.connection() as conn:
        return ok(answer(conn, job_id))


@router.post(
    "/api/v1/imports/{job_id}/cancel",
    response_model=Envelope[ImportJob],
    summary="Cancel an import that has not ended",
    responses=documented(
        JOB_EXAMPLE | {"status": "cancelled"},
        errors={
            **NOT_FOUND,
            **ROLE,
            409: {"import_job_finished": "This import has already ended"},
        },
    ),
)
def cancel_import(acting: ActingUser, job_id: UUID) -> dict[str, Any]:
    """What earlier chunks imported stays (each chunk is whole); the rest is not imported. A
    shop's backfill stops before its next page; calling the backfill again starts a new job that
    carries on where this one stopped."""
    with acting.connection() as conn:
        row = conn.execute("select * from private.cancel_import_job(%s)", (job_id,)).fetchone()
    assert row is not None
    return ok(job_out(row))


@router.get(
    "/api/v1/imports/{job_id}",
    response_model=Envelope[ImportJob],
    summary="Read an import job's status and counts",
    responses=documented(JOB_EXAMPLE, errors=NOT_FOUND),
)
def get_import(acting: ActingUser, job_id: UUID) -> dict[str, Any]:
    """Any member of the job's workspace; live progress also comes on the private Realtime
    channel `workspace:<id>:imports` (event `import_progress`). A shop's backfill is read the
    same way (its `job_id` is in the backfill's answer)."""
    with acting.connection() as conn:
        return ok(job_out(read_job(conn, job_id)))


class CsvResponse(StreamingResponse):
    media_type = "text/csv"


def errors_csv(rows: list[dict[str, Any]]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["line", "column", "reason"])
    for row in rows:
        writer.writerow([row["line"], row["column_name"] or "", row["reason"]])
    yield out.getvalue()


@router.get(
    "/api/v1/imports/{job_id}/errors.csv",
    summary="Download an import's row errors as CSV (line, column, reason)",
    response_class=CsvResponse,
    responses={
        200: {
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "line,column,reason\n4,status,status must be one of pending,"
                    " paid, fulfilled, cancelled, refunded\n",
                }
            }
        },
        404: documented(None, errors=NOT_FOUND)[404],
    },
)
def download_errors(acting: ActingUser, job_id: UUID) -> CsvResponse:
    """The first 1000 row errors in line order; the job's rows_failed counts them all."""
    with acting.connection() as conn:
        job = read_job(conn, job_id)
        rows = conn.execute(
            "select line, column_name, reason from public.import_errors where job_id = %s"
            " order by line",
            (job_id,),
        ).fetchall()
    name = f"import-{job['id']}-errors.csv"
    return CsvResponse(
        errors_csv([dict(row) for row in rows]),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post(
    "/api/v1/projects/{project_id}/orders/import",
    response_model=Envelope[SyncImport],
    summary="Import a small order CSV (at most 5 MiB) and wait for the result",
    responses=documented(
        {
            "job_id": JOB_EXAMPLE["id"],
            "status": "done",
            "imported": 3,
            "failed": 1,
            "errors": [{"line": 4, "reason": "status must be one of pending, paid, fulfilled"}],
        },
        errors={
            **ROLE,
            404: {"project_not_found": "Project not found"},
            409: {"too_many_import_jobs": "A workspace runs at most 3 imports at once"},
            422: {
                "invalid_csv": "missing columns: order_id, placed_at",
                "invalid_encoding": "Part 1 is not valid utf-8 text",
                "file_changed": "The file has fewer bytes than declared",
                "value_refused": "The database refused a value of this file (…)",
            },
            429: {"rate_limited": "Too many imports; try again later"},
        },
    ),
    openapi_extra=raw_request_body(
        "text/csv",
        {"type": "string"},
        "order_id,placed_at,status,total,currency,email\n"
        "A-1,2026-06-01,paid,100.50,CZK,jana@example.test\n",
    ),
)
def import_orders(
    acting: ActingUser,
    database: ServiceDatabase,
    project_id: UUID,
    body: Annotated[bytes, Depends(csv_body)],
) -> dict[str, Any]:
    """Columns as for an orders import job; each bad row is reported with its line and reason,
    valid orders are imported, and importing the same file again changes nothing. The import is
    also a job (its id is in the answer)."""
    if not body:
        raise ApiError(
            422, "invalid_csv", "The file is empty: the first line must name the columns"
        )
    with acting.connection() as conn:
        workspace = conn.execute(
            "select private.project_workspace_as(%s, 'member') as id", (project_id,)
        ).fetchone()
        assert workspace is not None
        job = conn.execute(
            "select * from private.create_import_job(%s, %s, 'orders', %s, 'upload.csv',"
            " 'utf-8', '{}', null)",
            (workspace["id"], project_id, len(body)),
        ).fetchone()
    assert job is not None
    try:
        with acting.connection() as conn:
            store_part(conn, job["id"], 1, body)
    except ApiError as error:
        with database.as_service() as conn:
            conn.execute(
                "select private.fail_import_job(%s, %s, %s)",
                (job["id"], error.code, error.message),
            )
        raise
    with acting.connection() as conn:
        conn.execute("select private.commit_import_job(%s)", (job["id"],))
    run_job(Runner(database, None), job["id"])
    with acting.connection() as conn:
        done = answer(conn, job["id"])
        errors = conn.execute(
            "select line, reason from public.import_errors where job_id = %s order by line"
            " limit %s",
            (job["id"], MAX_ERRORS_SHOWN),
        ).fetchall()
    return ok(
        {
            "job_id": done["id"],
            "status": done["status"],
            "imported": done["created"] + done["updated"] + done["unchanged"],
            "failed": done["rows_failed"],
            "errors": [dict(row) for row in errors],
        }
    )
