"""Custom events from outside (a Make.com scenario, a shop's own code): `POST /api/v1/events`
with a workspace API key. A batch of up to 1,000 is recorded in one statement, idempotent by the
sender's event id, and only when every event names a contact of the workspace; flows enrol on
them, wait for them and end on them in the same transaction."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Header, Request, Security
from psycopg.types.json import Jsonb
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import to_json

from api.core.api_keys import API_KEY, KEY_ERRORS, key_caller
from api.core.deps import ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import answers, documented
from api.core.signatures import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from api.flows.signing import OPENING, OptionalBox, stored_secret

router = APIRouter(tags=["flows"])

MAX_EVENTS = 1000
MAX_PROPERTIES_BYTES = 64 * 1024

VIEWER_KEY = "A viewer key cannot record events"


WORKSPACE_HEADER = "X-Growthbase-Workspace"
NOT_SIGNED = "The request is not signed"
SIGNATURE_STALE = "The signature is too old or from the future"
SIGNATURE_INVALID = "The signature does not match the request"
CALLER_ERRORS = {
    401: {
        **KEY_ERRORS[401],
        "signature_missing": NOT_SIGNED,
        "signature_stale": SIGNATURE_STALE,
        "signature_invalid": SIGNATURE_INVALID,
    },
    403: {"insufficient_role": VIEWER_KEY},
    **OPENING,
}


async def request_body(request: Request) -> bytes:
    """The raw bytes a signature covers (the JSON parsed for the route is the same body)."""
    return await request.body()


@answers(CALLER_ERRORS)
def key_workspace(
    request: Request,
    database: ServiceDatabase,
    box: OptionalBox,
    body: Annotated[bytes, Depends(request_body)],
    api_key: Annotated[str | None, Security(API_KEY)],
    workspace: Annotated[
        str | None,
        Header(
            alias=WORKSPACE_HEADER,
            description="With a signature instead of an API key: the workspace's id",
        ),
    ] = None,
    timestamp: Annotated[
        str | None,
        Header(alias=TIMESTAMP_HEADER, description="Unix seconds the signature was made at"),
    ] = None,
    signed: Annotated[
        str | None,
        Header(
            alias=SIGNATURE_HEADER,
            description="`v1=` + hex HMAC-SHA256 of `<timestamp>.<raw body>` with the"
            " workspace's event signing secret",
        ),
    ] = None,
) -> UUID:
    """The workspace the events are for: a live key acting as a member (a viewer key only
    reads), or, without a key, the workspace named in `X-Growthbase-Workspace` whose signing
    secret signed the raw body within the last 5 minutes."""
    if api_key or workspace is None:
        caller = key_caller(request, database, api_key)
        if caller.role != "member":
            raise ApiError(403, "insufficient_role", VIEWER_KEY)
        return caller.workspace_id
    try:
        workspace_id = UUID(workspace)
    except ValueError as error:
        raise ApiError(401, "signature_invalid", SIGNATURE_INVALID) from error
    secret = stored_secret(database, box, workspace_id)
    # A workspace without a secret verifies nothing, answered as any bad signature.
    verify_signature(secret or "", timestamp, signed, body)
    if secret is None:
        raise ApiError(401, "signature_invalid", SIGNATURE_INVALID)
    return workspace_id


KeyWorkspace = Annotated[UUID, Depends(key_workspace)]


class EventContact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: UUID | None = Field(None, description="The contact's id")
    email: str | None = Field(None, max_length=320, description="Or the contact's email")

    @model_validator(mode="after")
    def one_of(self) -> "EventContact":
        if (self.id is None) == (self.email is None):
            raise ValueError("name the contact by id or by email, not both")
        return self


class CustomEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(
        min_length=1, max_length=200, description="Your id of the event: sent twice, kept once"
    )
    name: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,100}$", description="e.g. viewed_product")
    contact: EventContact
    properties: dict[str, Any] = Field(
        default_factory=dict, description="At most 64 KiB as JSON; flows and segments read it"
    )
    occurred_at: AwareDatetime | None = Field(
        None, description="When it happened (default now); at most 5 minutes ahead"
    )


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[CustomEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsRecorded(BaseModel):
    recorded: int = Field(description="Events recorded now")
    duplicates: int = Field(description="Events whose id was recorded before (changed nothing)")


EXAMPLE_BODY = {
    "events": [
        {
            "id": "make-run-81723-1",
            "name": "viewed_product",
            "contact": {"email": "ada@example.com"},
            "properties": {"product_id": "sku-42", "url": "https://shop.example.com/p/42"},
            "occurred_at": "2026-12-07T09:30:00Z",
        }
    ]
}


@router.post(
    "/api/v1/events",
    response_model=Envelope[EventsRecorded],
    summary="Record custom events for contacts (flows react to them)",
    responses=documented(
        {"recorded": 1, "duplicates": 0},
        errors={
            413: {"event_too_large": "An event's properties are larger than 64 KiB"},
            422: {
                "unknown_contact": "Some events name no contact of the workspace",
                "invalid_occurred_at": "An event is dated more than 5 minutes ahead",
            },
        },
    ),
    openapi_extra={"requestBody": {"content": {"application/json": {"example": EXAMPLE_BODY}}}},
)
def record_events(
    batch: EventBatch, workspace_id: KeyWorkspace, database: ServiceDatabase
) -> dict[str, Any]:
    """Records 1 to 1,000 custom events in one transaction, or none: every event must name a
    contact of the key's workspace (by id or email), else `422 unknown_contact` lists the
    positions of those that do not. An event id recorded before counts as a duplicate and
    changes nothing, so a batch can be resent safely. Active flows triggered by the event's name
    enrol the contact, runs waiting for it go on, and runs whose goal it is end, before this
    answers."""
    ahead = datetime.now(UTC) + timedelta(minutes=5)
    events = []
    for position, event in enumerate(batch.events):
        if len(to_json(event.properties)) > MAX_PROPERTIES_BYTES:
            raise ApiError(
                413,
                "event_too_large",
                "An event's properties are larger than 64 KiB",
                {"position": position},
            )
        if event.occurred_at is not None and event.occurred_at > ahead:
            raise ApiError(
                422,
                "invalid_occurred_at",
                "An event is dated more than 5 minutes ahead",
                {"position": position},
            )
        events.append(event.model_dump(mode="json", exclude_none=True))
    with database.as_service() as conn:
        row = conn.execute(
            "select private.record_custom_events(%s, %s) as result", (workspace_id, Jsonb(events))
        ).fetchone()
    result = row["result"] if row else {}
    if "unknown_contacts" in result:
        raise ApiError(
            422,
            "unknown_contact",
            "Some events name no contact of the workspace; nothing was recorded",
            {"positions": result["unknown_contacts"]},
        )
    return ok(EventsRecorded(recorded=result["recorded"], duplicates=result["duplicates"]))
