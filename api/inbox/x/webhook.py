"""X Account Activity webhooks, one URL per channel: /api/v1/webhooks/x/{channel_id}.

GET answers X's Challenge-Response Check: `{"response_token": "sha256=" + base64(HMAC-SHA256(
consumer secret, crc_token))}`, only for a token shaped as X's (so a captured body can never be
signed through it). POST is verified with `x-twitter-webhooks-signature: sha256=<base64
HMAC-SHA256 of the raw body, keyed with the consumer secret>`, stored under `<channel id>:<body
sha256>` in the one transaction that read the channel's secret, and applied
(private.apply_x_event) right after the answer (api.inbox.queue). X is off
for a workspace until it connects an account: without a channel every call answers 401."""

import base64
import hashlib
import hmac
import re
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.core.db import Database
from api.core.deps import ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import JSON, documented, inline_schema, merged_errors
from api.core.secrets_box import SecretBox
from api.core.signatures import WEBHOOK_SIGNATURE_ERRORS, verify_webhook_hmac
from api.inbox.deps import Box, InboxWebhookEdge
from api.inbox.errors import OPENING_CREDENTIALS
from api.inbox.queue import accept, store_delivery
from api.inbox.secrets import StoredChannel, service_channel, stored_channel
from api.webhooks.body import parse_json, raw_body
from api.webhooks.intake import Applier, sql_applier

router = APIRouter(tags=["webhooks"])
verification_router = APIRouter(tags=["webhook verification"])
PROVIDER = "x"
CRC_TOKEN = re.compile(r"^[A-Za-z0-9+/_-]{8,200}={0,2}$")
NOT_CONNECTED = "No X account is connected here"

SIGNATURE = APIKeyHeader(
    name="x-twitter-webhooks-signature",
    scheme_name="xSignature",
    auto_error=False,
    description="X's signature of a webhook: `sha256=` and the base64 HMAC-SHA256 of the raw "
    "body keyed with the app's consumer secret.",
)


class CrcAnswer(BaseModel):
    response_token: str = Field(
        description="`sha256=` and the base64 HMAC-SHA256 of crc_token with the consumer secret"
    )


class DirectMessageEvents(BaseModel):
    """The Account Activity API's direct message delivery; the applier reads each
    message_create's sender, text and attachment."""

    model_config = ConfigDict(extra="allow")

    for_user_id: str = Field(max_length=25)
    direct_message_events: list[dict[str, Any]] = Field(default_factory=list)
    users: dict[str, Any] | None = None


class WebhookOutcome(BaseModel):
    outcome: Literal["accepted", "duplicate", "ignored"] = Field(
        description="`accepted`: stored before the answer and applied right after it (an apply "
        "that failed is retried by the replay cron); `duplicate`: a redelivery; "
        "`ignored`: an activity other than direct messages"
    )


DM_EXAMPLE = {
    "for_user_id": "4337869213",
    "direct_message_events": [
        {
            "type": "message_create",
            "id": "954491830116155396",
            "created_timestamp": "1516403560557",
            "message_create": {
                "target": {"recipient_id": "4337869213"},
                "sender_id": "3001969357",
                "message_data": {"text": "Hello World!", "entities": {}},
            },
        }
    ],
    "users": {
        "3001969357": {"id": "3001969357", "name": "Jordan Brinks", "screen_name": "furiouscamper"}
    },
}
WEBHOOK_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An Account Activity delivery. Direct messages (`direct_message_events` "
        "of type `message_create`) are read; other activities are acknowledged and ignored.",
        "content": {
            JSON: {
                "schema": inline_schema(DirectMessageEvents.model_json_schema()),
                "example": DM_EXAMPLE,
            }
        },
    }
}
WEBHOOK_ERRORS = merged_errors(
    WEBHOOK_SIGNATURE_ERRORS,
    OPENING_CREDENTIALS,
    {422: {"invalid_input": "The body is not an Account Activity delivery"}},
)


def x_channel(database: Database, box: SecretBox, channel_id: UUID) -> StoredChannel | None:
    channel = stored_channel(database, box, channel_id)
    return channel if channel is not None and channel.kind == "x" else None


CRC_RESPONSES = documented(None, errors={401: {"signature_invalid": NOT_CONNECTED}})
CRC_RESPONSES[200] = {
    "content": {
        JSON: {"example": {"response_token": "sha256=x0mYd8hz2goCTfcNAaMqENy2BFgJJfJOb4PdvTffpwg="}}
    }
}


def crc_response(consumer_secret: str, crc_token: str) -> str:
    mac = hmac.new(consumer_secret.encode(), crc_token.encode(), hashlib.sha256).digest()
    return "sha256=" + base64.b64encode(mac).decode()


@verification_router.get(
    "/api/v1/webhooks/x/{channel_id}",
    response_model=CrcAnswer,
    summary="Answer X's challenge-response check for a connected account",
    responses=CRC_RESPONSES,
)
def x_crc(
    channel_id: UUID,
    crc_token: Annotated[str, Query(max_length=200)],
    database: ServiceDatabase,
    box: Box,
) -> dict[str, str]:
    """X calls this when the webhook is registered and then regularly; the answer is X's own
    JSON (not the envelope). Only a token of X's shape is signed."""
    channel = x_channel(database, box, channel_id)
    secret = channel.secrets.get("consumer_secret") if channel else None
    if not secret:
        raise ApiError(401, "signature_invalid", NOT_CONNECTED)
    if not CRC_TOKEN.match(crc_token):
        raise ApiError(422, "invalid_input", "crc_token is not a token X sends")
    return {"response_token": crc_response(secret, crc_token)}


@router.post(
    "/api/v1/webhooks/x/{channel_id}",
    response_model=Envelope[WebhookOutcome],
    summary="Receive a connected X account's direct messages",
    responses=documented({"outcome": "accepted"}, errors=WEBHOOK_ERRORS),
    openapi_extra=WEBHOOK_OPENAPI,
)
def x_webhook(
    channel_id: UUID,
    body: Annotated[bytes, Depends(raw_body)],
    signature: Annotated[str | None, Security(SIGNATURE)],
    edge: InboxWebhookEdge,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Register this URL with the Account Activity API and subscribe the account. Unknown
    channels answer as a bad signature does."""
    with service_channel(edge.database, edge.box, channel_id) as (conn, found):
        channel = found if found is not None and found.kind == "x" else None
        sent = (
            signature.removeprefix("sha256=")
            if signature and signature.startswith("sha256=")
            else None
        )
        verify_webhook_hmac(
            channel.secrets.get("consumer_secret") if channel else None,
            body,
            sent,
            digest="sha256",
            encoding="base64",
        )
        document = parse_json(body)
        if isinstance(document, dict) and "direct_message_events" not in document:
            return ok({"outcome": "ignored"})
        try:
            DirectMessageEvents.model_validate(document)
        except ValidationError as error:
            raise ApiError(
                422, "invalid_input", "The body is not an Account Activity delivery"
            ) from error
        assert channel is not None  # an unknown channel failed the signature
        event_id = f"{channel_id}:{hashlib.sha256(body).hexdigest()}"
        delivery = store_delivery(conn, PROVIDER, event_id, body, channel, edge.settings)
    return accept(background, edge.database, edge.settings, delivery)


def applier(database: Database) -> Applier:
    return sql_applier(database, "apply_x_event")
