"""Make.com's callback: a scenario reports a job's progress or result.

Authenticated by the job's own callback token (sent with the job) or by our shared signature
over the raw body; stored raw, then applied. Callbacks only move a job forward, so duplicates
and late arrivals are acknowledged and change nothing.
"""

import hashlib
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from api.automations.deps import Make
from api.automations.make import MakeClient
from api.core.deps import ServiceDatabase
from api.core.envelope import ok
from api.core.errors import ApiError
from api.core.signatures import (
    CALLBACK_TOKEN_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_callback_token,
    verify_signature,
)
from api.webhooks.body import documented_webhook, parse_json, raw_body
from api.webhooks.intake import Intake

router = APIRouter(tags=["webhooks"])
EVENT_ID_HEADER = "X-Growthbase-Event-Id"


class MakeCallback(BaseModel):
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


def invalid(message: str, details: Any = None) -> ApiError:
    return ApiError(422, "invalid_input", message, details)


def parse(body: bytes) -> MakeCallback:
    try:
        return MakeCallback.model_validate_json(body)
    except ValidationError as error:
        fields = [
            {"field": ".".join(str(p) for p in ("body", *e["loc"])), "message": e["msg"]}
            for e in error.errors()
        ]
        raise invalid("The callback body is not valid", fields) from error


def authenticate(request: Request, make: MakeClient, body: bytes) -> None:
    """Shared signature when present, else the job's callback token; 401 otherwise."""
    headers = request.headers
    if headers.get(SIGNATURE_HEADER):
        verify_signature(
            make.signing_secret, headers.get(TIMESTAMP_HEADER), headers[SIGNATURE_HEADER], body
        )
        return
    token = headers.get(CALLBACK_TOKEN_HEADER)
    if not token:
        raise ApiError(401, "authentication_required", "Send the job's callback token")
    try:
        job_id = str(parse_json(body, "The callback body")["automation_id"])
    except (KeyError, TypeError) as error:
        raise invalid("The callback body must be JSON with an automation_id") from error
    verify_callback_token(make.signing_secret, job_id, token)


@router.post(
    "/api/v1/webhooks/result",
    openapi_extra=documented_webhook(
        TIMESTAMP_HEADER, SIGNATURE_HEADER, CALLBACK_TOKEN_HEADER, EVENT_ID_HEADER
    ),
)
def make_result(
    request: Request,
    body: Annotated[bytes, Depends(raw_body)],
    make: Make,
    database: ServiceDatabase,
    intake: Intake,
) -> dict[str, Any]:
    authenticate(request, make, body)
    callback = parse(body)
    event_id = request.headers.get(EVENT_ID_HEADER) or hashlib.sha256(body).hexdigest()
    recorded = intake.record("make", event_id, body)
    if recorded.duplicate:
        return ok({"automation_id": str(callback.automation_id), "outcome": "duplicate"})
    with database.as_service() as conn:
        applied = conn.execute(
            "select private.apply_make_callback(%s) as outcome", (recorded.event.id,)
        ).fetchone()
    outcome = applied["outcome"] if applied else "unknown_automation"
    if outcome == "unknown_automation":
        raise ApiError(404, "automation_not_found", "No such automation")
    return ok({"automation_id": str(callback.automation_id), "outcome": outcome})
