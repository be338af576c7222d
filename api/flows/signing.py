"""The workspace's event signing secret, sealed like inbox channel credentials: the edge makes
it, seals it with INTEGRATIONS_ENCRYPTION_KEY (which only the edge holds) and stores the sealed
form as the service once the database said the user is an admin; it answers the secret once.
Verifying a signed batch opens it. Secrets stored before sealing are sealed by the flows cron."""

import secrets
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from api.core.db import Database, become_service
from api.core.deps import ActingUser, Slot
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import documented, insufficient_role, json_body_example, merged_errors
from api.core.secrets_box import KeyMismatchError, SecretBox

router = APIRouter(prefix="/api/v1/events", tags=["flows"])

NO_KEY = "INTEGRATIONS_ENCRYPTION_KEY is not configured"
KEY_MISMATCH = "The stored event signing secret cannot be decrypted: rotate it"
# Seals and opens event signing secrets (the same key as shop and channel credentials).
FLOWS_BOX = Slot("flows_secret_box", SecretBox, NO_KEY)
Box = Annotated[SecretBox, Depends(FLOWS_BOX.required)]
OptionalBox = Annotated[SecretBox | None, Depends(FLOWS_BOX.optional)]

ADMINS = merged_errors(
    insufficient_role("admin"), {404: {"workspace_not_found": "Workspace not found"}}
)
OPENING = {503: {"provider_not_configured": NO_KEY, "signing_key_mismatch": KEY_MISMATCH}}
# Secrets sealed per cron call: a handful of rows, each one small update.
SEAL_BATCH = 100


def stored_secret(database: Database, box: SecretBox | None, workspace_id: UUID) -> str | None:
    """The workspace's secret, opened; None when it has none (or is being deleted). A sealed
    secret without the key, or sealed with another key, is ours to fix: 503."""
    with database.as_service() as conn:
        row = conn.execute(
            "select secret_sealed, secret from private.event_signing_secret_stored(%s)",
            (workspace_id,),
        ).fetchone()
    if row is None:
        return None
    if row["secret_sealed"] is None:
        return str(row["secret"])
    try:
        return FLOWS_BOX.present(box).open(row["secret_sealed"])
    except KeyMismatchError as error:
        raise ApiError(503, "signing_key_mismatch", KEY_MISMATCH) from error


def seal_stored_secrets(database: Database, box: SecretBox | None) -> int:
    """Seals secrets stored in plain text before sealing existed (a batch per call; without the
    key they wait and keep verifying). Answers how many were sealed."""
    if box is None:
        return 0
    with database.as_service() as conn:
        rows = conn.execute(
            "select workspace_id, secret from private.event_signing_secrets_to_seal(%s)",
            (SEAL_BATCH,),
        ).fetchall()
        sealed = 0
        for row in rows:
            done = conn.execute(
                "select private.seal_event_signing_secret(%s, %s, %s) as done",
                (row["workspace_id"], row["secret"], box.seal(row["secret"])),
            ).fetchone()
            sealed += bool(done and done["done"])
    return sealed


class SigningSecretRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workspace_id: UUID


class SigningSecret(BaseModel):
    secret: str = Field(
        description="64 hex characters; shown only now. Sign `<timestamp>.<raw body>` with it"
        " (HMAC-SHA256) for `POST /api/v1/events`"
    )


EXAMPLE_WORKSPACE = "6f1c2d3e-4a5b-4c6d-8e7f-9a0b1c2d3e4f"


@router.post(
    "/signing-secret",
    status_code=201,
    response_model=Envelope[SigningSecret],
    summary="Create or replace a workspace's event signing secret",
    responses=documented(
        {"secret": "9f2c" * 16},
        status=201,
        errors=merged_errors(ADMINS, {503: {"provider_not_configured": NO_KEY}}),
    ),
    openapi_extra=json_body_example({"workspace_id": EXAMPLE_WORKSPACE}),
)
def rotate_event_signing_secret(
    body: SigningSecretRequest, acting: ActingUser, box: Box
) -> dict[str, Any]:
    """Admins. The new secret replaces the old one at once (batches signed with the old one are
    refused from now on); it is stored sealed and answered only here."""
    secret = secrets.token_hex(32)
    sealed = box.seal(secret)
    with acting.connection() as conn:
        conn.execute("select private.workspace_role_as(%s, 'admin')", (body.workspace_id,))
        become_service(conn)
        conn.execute(
            "select private.store_event_signing_secret(%s, %s)", (body.workspace_id, sealed)
        )
    return ok({"secret": secret})
