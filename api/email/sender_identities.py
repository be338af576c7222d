"""Sender identities: admins register a domain or address, the edge creates it in SES and
stores what SES says (verified, and the DKIM records the owner must publish in DNS).

The database registers the identity first (role check, one workspace per identity), then SES
is called outside any transaction. If SES fails, the identity stays registered and unverified;
posting it again retries the SES side (registration and SES creation are both idempotent).

SES failures answer:
- 503 `provider_not_configured` when SES is not configured;
- 422 `identity_rejected` when SES refuses the identity itself (`BadRequestException`);
- 502 `provider_error` for anything else (throttling, outages, an unreachable endpoint, bad
  credentials); `details.retryable` says whether trying again later may help.
"""

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Request
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from api.core.action_quotas import take_workspace_quota
from api.core.db import Database
from api.core.deps import CurrentUser
from api.core.envelope import ok
from api.core.errors import ApiError
from api.email.errors import api_error
from api.email.ses import IdentityState, SesClient, SesError

router = APIRouter(prefix="/api/v1/email/identities", tags=["email"])

SELECT_IDENTITY = (
    "select id, workspace_id, identity, kind, verified, dkim_status, dkim_records,"
    " last_checked_at, created_at, updated_at from public.sender_identities where id = %s"
)


class NewSenderIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    identity: Annotated[str, Field(min_length=4, max_length=320, pattern=r"^[^\x00-\x1f\x7f]+$")]


def ses_client(request: Request) -> SesClient:
    client: SesClient | None = request.app.state.ses
    if client is None:
        raise ApiError(503, "provider_not_configured", "Amazon SES is not configured")
    return client


def save_state(database: Database, identity_id: UUID, state: IdentityState) -> dict[str, Any]:
    """Records SES's answer (service role: members may not write verification state) and
    answers the stored row."""
    with database.as_service() as conn:
        conn.execute(
            "select private.save_sender_identity(%s, %s, %s, %s)",
            (identity_id, state.verified, state.dkim_status, Jsonb(state.dkim_records)),
        )
        row = conn.execute(SELECT_IDENTITY, (identity_id,)).fetchone()
    assert row is not None
    return dict(row)


@router.post("", status_code=201)
def register_identity(
    body: NewSenderIdentity, request: Request, user: CurrentUser
) -> dict[str, Any]:
    """Admins and owners register an identity; answers it with the DNS records to publish."""
    ses = ses_client(request)
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        take_workspace_quota(conn, body.workspace_id, "sender_identity")
        created = conn.execute(
            "select public.register_sender_identity(%s, %s) as id",
            (body.workspace_id, body.identity),
        ).fetchone()
        assert created is not None
        # The database normalises the identity; SES must get the same spelling.
        registered = conn.execute(
            "select id, identity, last_checked_at from public.sender_identities where id = %s",
            (created["id"],),
        ).fetchone()
    assert registered is not None
    try:
        # A row that never recorded SES's answer did not create what SES may already hold
        # (another workspace's identity, since removed here): it starts afresh in SES, with new
        # DKIM tokens, rather than inherit that identity's verification.
        state = ses.create_identity(
            registered["identity"], adopt_existing=registered["last_checked_at"] is not None
        )
    except SesError as failure:
        raise api_error(failure) from failure
    return ok(save_state(database, registered["id"], state))


@router.post("/{identity_id}/refresh")
def refresh_identity(identity_id: UUID, request: Request, user: CurrentUser) -> dict[str, Any]:
    """Any member may ask SES again whether DNS is in place; others get 404."""
    ses = ses_client(request)
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        found = conn.execute(
            "select identity, workspace_id from public.sender_identities where id = %s",
            (identity_id,),
        ).fetchone()
        if found is None:
            raise ApiError(404, "identity_not_found", "Sender identity not found")
        take_workspace_quota(conn, found["workspace_id"], "sender_identity")
    try:
        state = ses.identity_state(found["identity"])
    except SesError as failure:
        raise api_error(failure) from failure
    return ok(save_state(database, identity_id, state))
