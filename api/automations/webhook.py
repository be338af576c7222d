"""Make.com's callback: a scenario reports a job's progress or result.

Authenticated by the job's own callback token (sent with the job) or by our shared signature
over the raw body; stored raw, then applied. Callbacks only move a job forward, so duplicates
and late arrivals are acknowledged and change nothing.
"""

import hashlib
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from api.automations.deps import Make
from api.automations.make import MakeClient
from api.core.db import Database
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import JSON, documented, raw_request_body
from api.core.signatures import (
    CALLBACK_TOKEN_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_callback_token,
    verify_signature,
)
from api.webhooks.body import parse_json, raw_body
from api.webhooks.intake import Applier, Intake, sql_applier

router = APIRouter(tags=["webhooks"])
EVENT_ID_HEADER = "X-Growthbase-Event-Id"

MAKE_SIGNATURE = APIKeyHeader(
    name=SIGNATURE_HEADER,
    scheme_name="makeSignature",
    auto_error=False,
    description="`v1=` and the hex HMAC-SHA256, keyed with MAKE_SIGNING_SECRET, of "
    f"`<{TIMESTAMP_HEADER}>.<raw body>`; sent with `{TIMESTAMP_HEADER}` (Unix seconds, at most "
    "5 minutes off), as the edge signs the jobs it sends.",
)
CALLBACK_TOKEN = APIKeyHeader(
    name=CALLBACK_TOKEN_HEADER,
    scheme_name="makeCallbackToken",
    auto_error=False,
    description="The `callback.token` the job was sent with: valid for that job only.",
)


class MakeCallback(BaseModel):
    """A job's progress (`processing`) or its end: `completed` with a result object, `failed`
    with an error message."""

    model_config = ConfigDict(extra="forbid")

    automation_id: UUID
    status: Literal["processing", "completed", "failed"]
    result: dict[str, Any] | None = None
    error: Annotated[str, Field(min_length=1, max_length=2000)] | None = None

    @model_validator(mode="after")
    def outcome_matches_status(self) -> "MakeCallback":
        if self.status == "completed" and self.result is None:
            raise ValueError("a completed callback carries a result object")
        if self.status == "failed" and self.error is None:
            raise ValueError("a failed callback carries an error message")
        return self


class CallbackOutcome(BaseModel):
    automation_id: UUID
    outcome: Literal["applied", "stale", "duplicate"] = Field(
        description="`stale`: the job had already moved past this status; `duplicate`: this "
        "event was applied before. Neither changes anything."
    )


def invalid(message: str, details: Any = None) -> ApiError:
    return ApiError(422, "invalid_input", message, details)


def parse(body: bytes) -> MakeCallback:
    """The callback, refused (422) unless the SQL apply could take it: parsed with the webhooks'
    bounded depth and NUL check before the model checks its fields."""
    parsed = parse_json(body, "The callback body")
    try:
        return MakeCallback.model_validate(parsed)
    except ValidationError as error:
        fields = [
            {"field": ".".join(str(p) for p in ("body", *e["loc"])), "message": e["msg"]}
            for e in error.errors()
        ]
        raise invalid("The callback body is not valid", fields) from error


def authenticate(
    make: MakeClient, body: bytes, signature: str | None, timestamp: str | None, token: str | None
) -> None:
    """Shared signature when present, else the job's callback token; 401 otherwise."""
    if signature:
        verify_signature(make.signing_secret, timestamp, signature, body)
        return
    if not token:
        raise ApiError(401, "authentication_required", "Send the job's callback token")
    try:
        job_id = str(parse_json(body, "The callback body")["automation_id"])
    except (KeyError, TypeError) as error:
        raise invalid("The callback body must be JSON with an automation_id") from error
    verify_callback_token(make.signing_secret, job_id, token)


def applier(database: Database) -> Applier:
    """A callback is applied in SQL (private.apply_make_callback), which finishes its event."""
    return sql_applier(database, "apply_make_callback")


AUTOMATION_ID = "6e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
CALLBACK_EXAMPLE = {
    "automation_id": AUTOMATION_ID,
    "status": "completed",
    "result": {"score": 87, "issues": ["Missing meta description on /boots"]},
}
CALLBACK_ERRORS = {
    401: {
        "authentication_required": "Send the job's callback token",
        "callback_token_invalid": "The callback token is not valid for this job",
        "signature_missing": "The request is not signed",
        "signature_invalid": "The signature does not match the request",
        "signature_stale": "The signature is too old or from the future",
    },
    404: {"automation_not_found": "No such automation"},
    503: {"provider_not_configured": "Make.com is not configured"},
}


@router.post(
    "/api/v1/webhooks/result",
    response_model=Envelope[CallbackOutcome],
    summary="Receive a Make.com scenario's report on a job",
    responses=documented(
        {"automation_id": AUTOMATION_ID, "outcome": "applied"}, errors=CALLBACK_ERRORS
    ),
    openapi_extra=raw_request_body(JSON, MakeCallback.model_json_schema(), CALLBACK_EXAMPLE),
)
def make_result(
    body: Annotated[bytes, Depends(raw_body)],
    make: Make,
    intake: Intake,
    signature: Annotated[str | None, Security(MAKE_SIGNATURE)],
    token: Annotated[str | None, Security(CALLBACK_TOKEN)],
    timestamp: Annotated[
        str | None,
        Header(
            alias=TIMESTAMP_HEADER,
            description=f"Unix seconds when `{SIGNATURE_HEADER}` was computed",
        ),
    ] = None,
    event_id: Annotated[
        str | None,
        Header(
            alias=EVENT_ID_HEADER,
            description="Names the event for de-duplication; the body's SHA-256 otherwise",
        ),
    ] = None,
) -> dict[str, Any]:
    """The scenario's "Make a request" module posts the job's progress or result here, with the
    job's callback token or the shared signature over the raw body. The callback is stored raw
    before it is applied; a repeated event, or one that would move the job backwards, is
    acknowledged and changes nothing. Forged, unsigned and malformed callbacks store nothing."""
    authenticate(make, body, signature, timestamp, token)
    callback = parse(body)
    recorded = intake.record("make", event_id or hashlib.sha256(body).hexdigest(), body)
    if recorded.duplicate:
        return ok({"automation_id": str(callback.automation_id), "outcome": "duplicate"})
    outcome = intake.apply_now("make", recorded.event)
    if outcome == "unknown_automation":
        raise ApiError(404, "automation_not_found", "No such automation")
    return ok({"automation_id": str(callback.automation_id), "outcome": outcome})
