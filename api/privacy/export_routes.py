"""Access requests over HTTP: an admin asks for a contact's export (the job runs at once and
is resumed by the cron if the request dies) and reads it back with a download URL valid for
24 hours while the file is kept (7 days)."""

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.core.deps import ActingUser, ServiceDatabase, UserScope
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import documented
from api.privacy.deps import Supabase
from api.privacy.exports import DOWNLOAD_SECONDS, run_export
from api.privacy.supabase_admin import SupabaseAdmin, SupabaseAdminError

router = APIRouter(tags=["privacy"])

EXPORT_EXAMPLE = {
    "id": "8e2f4a6c-1b3d-4e5f-9a7b-2c4d6e8f0a1b",
    "workspace_id": "0f7b2c1e-4c1d-4b8e-9a0e-3f6a2d9b8c71",
    "contact_id": "5b0e8d6a-9c3f-4e21-8f4a-1d2c3b4a5e6f",
    "status": "done",
    "progress": 100,
    "tables": {"contacts": 1, "orders": 12, "consents": 3},
    "error_code": None,
    "error_message": None,
    "created_at": "2026-12-04T09:30:00Z",
    "finished_at": "2026-12-04T09:30:02Z",
    "expires_at": "2026-12-11T09:30:02Z",
    "download_url": "https://project.supabase.co/storage/v1/object/sign/exports/0f7b.../8e2f....zip?token=...",
}


class ContactExport(BaseModel):
    id: UUID
    workspace_id: UUID
    contact_id: UUID
    status: str = Field(description="queued, running, done, failed or expired")
    progress: int
    tables: dict[str, int] = Field(description="Rows exported per table")
    error_code: str | None
    error_message: str | None
    created_at: datetime
    finished_at: datetime | None
    expires_at: datetime | None
    download_url: str | None = Field(
        description="Signed, valid 24 hours (never past `expires_at`); only when done"
    )


FIELDS = [name for name in ContactExport.model_fields if name != "download_url"]


def answer(acting: UserScope, export_id: UUID, storage: SupabaseAdmin) -> dict[str, Any]:
    """The export as the user may read it, with a download URL when its file is there: the
    database issues the link (refusing an expired export with 410, auditing the rest) and
    Storage signs it for no longer than the export has left."""
    with acting.connection() as conn:
        row = conn.execute(
            "select * from public.contact_exports where id = %s", (export_id,)
        ).fetchone()
        if row is None:
            raise ApiError(404, "export_not_found", "Export not found")
        link = conn.execute("select * from public.issue_export_link(%s)", (export_id,)).fetchone()
    out = {name: row[name] for name in FIELDS}
    out["download_url"] = None
    if link is not None:
        try:
            out["download_url"] = storage.signed_export_url(
                link["storage_path"], min(link["valid_seconds"], DOWNLOAD_SECONDS)
            )
        except SupabaseAdminError as error:
            raise ApiError(
                502, "storage_unavailable", "Storage could not sign the download"
            ) from error
    return out


@router.post(
    "/api/v1/privacy/contacts/{contact_id}/exports",
    status_code=201,
    response_model=Envelope[ContactExport],
    summary="Export everything stored about a contact",
    responses=documented(
        EXPORT_EXAMPLE,
        status=201,
        errors={
            403: {"insufficient_role": "This needs the admin role or higher"},
            404: {"contact_not_found": "Contact not found"},
            409: {"contact_erased": "This contact was erased; nothing is left to export"},
            502: {"storage_unavailable": "Storage could not sign the download"},
            503: {"provider_not_configured": "Supabase's admin APIs are not configured"},
        },
    ),
)
def request_export(
    acting: ActingUser, database: ServiceDatabase, storage: Supabase, contact_id: UUID
) -> dict[str, Any]:
    """Admins and owners. Gathers every row about the contact in every table (profile, shop
    ids, consents, orders and lines, lists, campaign deliveries and events, RFM snapshots, and
    the automations, AI records and stored webhooks that mention them) into `export.json` and
    a CSV per table, zipped into the private exports bucket. A Storage failure answers the job
    as `failed` with its reason."""
    with acting.connection() as conn:
        export = conn.execute(
            "select * from public.request_contact_export(%s)", (contact_id,)
        ).fetchone()
    assert export is not None
    run_export(database, storage, export["id"])
    return ok(answer(acting, export["id"], storage))


@router.get(
    "/api/v1/privacy/exports/{export_id}",
    response_model=Envelope[ContactExport],
    summary="Read an export and its download URL",
    responses=documented(
        EXPORT_EXAMPLE,
        errors={
            404: {"export_not_found": "Export not found"},
            410: {"export_expired": "This export has expired and its file was removed"},
            502: {"storage_unavailable": "Storage could not sign the download"},
            503: {"provider_not_configured": "Supabase's admin APIs are not configured"},
        },
    ),
)
def read_export(acting: ActingUser, storage: Supabase, export_id: UUID) -> dict[str, Any]:
    """Admins and owners of its workspace (others: 404). A fresh URL each time, valid 24 hours
    or until the export expires if sooner (the workspace's `export_days`, 7 by default); once
    expired the file is removed and this answers 410 `export_expired`. Each URL taken is in the
    audit log."""
    return ok(answer(acting, export_id, storage))
