"""Erasure of a contact, for a workspace's admins: the database does all of it, as the user,
in one transaction (public.erase_contact), so an erasure is whole or not at all."""

from datetime import datetime
from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.core.deps import ActingUser
from api.core.envelope import Envelope, ok
from api.core.openapi import documented

router = APIRouter(tags=["privacy"])

ERASURE_EXAMPLE = {
    "id": "7d1c2a4e-2f59-4f0a-9a53-0b8f5c1c9d21",
    "workspace_id": "0f7b2c1e-4c1d-4b8e-9a0e-3f6a2d9b8c71",
    "contact_id": "5b0e8d6a-9c3f-4e21-8f4a-1d2c3b4a5e6f",
    "requested_by": "2a9c7e15-3b4d-4f6e-8a1b-9c0d1e2f3a4b",
    "rows_changed": {"orders": 12, "campaign_recipients": 3, "webhook_events": 14},
    "created_at": "2026-12-04T09:30:00Z",
}


class ContactErasure(BaseModel):
    id: UUID
    workspace_id: UUID
    contact_id: UUID
    requested_by: UUID | None
    rows_changed: dict[str, int] = Field(
        description="How many rows of each table the erasure changed or deleted"
    )
    created_at: datetime


@router.post(
    "/api/v1/privacy/contacts/{contact_id}/erase",
    response_model=Envelope[ContactErasure],
    summary="Erase a contact everywhere",
    responses=documented(
        ERASURE_EXAMPLE,
        errors={
            403: {"insufficient_role": "This needs the admin role or higher"},
            404: {"contact_not_found": "Contact not found"},
            409: {"contact_already_erased": "This contact was erased already"},
        },
    ),
)
def erase_contact(acting: ActingUser, contact_id: UUID) -> dict[str, Any]:
    """Admins and owners. Clears the contact's personal fields (the row stays as a tombstone for
    campaign counts), unlinks their orders (kept for revenue), deletes their shop ids, list
    memberships, RFM snapshot rows and the stored webhooks that name them, redacts them from
    automations, segments and AI call records, and keeps only a keyed hash of their address and
    phone so they are never mailed or imported again. Answers the erasure record."""
    with acting.connection() as conn:
        row = conn.execute("select * from public.erase_contact(%s)", (contact_id,)).fetchone()
    assert row is not None
    return ok(dict(row))
