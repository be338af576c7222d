"""WhatsApp Cloud API webhooks, one URL per channel: /api/v1/webhooks/whatsapp/{channel_id}.

GET answers Meta's verification (`hub.mode=subscribe`, the channel's verify token) with the
`hub.challenge`. POST is verified with the app secret (`X-Hub-Signature-256: sha256=<hex HMAC>`
of the raw body, compared in constant time), checked for the envelope's shape, stored under
`<channel id>:<body sha256>` (Meta has no event id, and a retry carries the same bytes) in the
one transaction that read the channel's secret, and applied in SQL right after the answer, with
whatever else was stored meanwhile, as one batch (api.inbox.queue); the replay cron applies
anything stored but not applied. Messages are unique per wamid and
statuses only move forward, so a re-delivery or a reordering changes nothing."""

import hashlib
import re
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Depends, Query, Security
from fastapi.responses import PlainTextResponse
from fastapi.security import APIKeyHeader, APIKeyQuery
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.core.db import Database
from api.core.deps import ServiceDatabase
from api.core.envelope import Envelope
from api.core.errors import ApiError
from api.core.openapi import JSON, documented, inline_schema, merged_errors
from api.core.secrets_box import SecretBox
from api.core.signatures import WEBHOOK_SIGNATURE_ERRORS, same_signature, verify_webhook_hmac
from api.inbox.deps import Box, InboxWebhookEdge
from api.inbox.errors import OPENING_CREDENTIALS
from api.inbox.queue import accept, store_delivery
from api.inbox.secrets import StoredChannel, service_channel, stored_channel
from api.webhooks.body import parse_json, raw_body
from api.webhooks.intake import Applier, sql_applier

router = APIRouter(tags=["webhooks"])
# Meta's GET handshake carries no body: it is no webhook delivery, so it is listed apart.
verification_router = APIRouter(tags=["webhook verification"])
PROVIDER = "whatsapp"
CHALLENGE = re.compile(r"^[A-Za-z0-9_.-]{1,256}$")
VERIFY_FORBIDDEN = "The verify token does not match this channel"

VERIFY_TOKEN = APIKeyQuery(
    name="hub.verify_token",
    scheme_name="whatsappVerifyToken",
    auto_error=False,
    description="The verify token given at connect, which Meta sends back when it verifies the "
    "callback URL.",
)
HUB_SIGNATURE = APIKeyHeader(
    name="X-Hub-Signature-256",
    scheme_name="whatsappSignature",
    auto_error=False,
    description="Meta's signature of a webhook: `sha256=` and the lowercase hex HMAC-SHA256 of "
    "the raw body keyed with the app secret given at connect.",
)


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class Metadata(Loose):
    display_phone_number: str | None = None
    phone_number_id: str


class Value(Loose):
    messaging_product: str | None = None
    metadata: Metadata | None = None
    contacts: list[dict[str, Any]] | None = None
    messages: list[dict[str, Any]] | None = None
    statuses: list[dict[str, Any]] | None = None


class Change(Loose):
    field: str
    value: Value | dict[str, Any]


class Entry(Loose):
    id: str
    changes: list[Change]


class WhatsAppWebhook(Loose):
    """The Cloud API's envelope, as Meta documents it: the message and status details inside
    are read by the applier, which skips what it does not know."""

    object: Literal["whatsapp_business_account"]
    entry: list[Entry]


class WebhookOutcome(BaseModel):
    outcome: Literal["accepted", "duplicate"] = Field(
        description="`accepted`: stored before the answer and applied right after it (an apply "
        "that failed is retried by the replay cron); `duplicate`: Meta re-delivered a body "
        "already applied"
    )


EXAMPLE_WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA"
INBOUND_EXAMPLE = {
    "object": "whatsapp_business_account",
    "entry": [
        {
            "id": "102290129340398",
            "changes": [
                {
                    "field": "messages",
                    "value": {
                        "messaging_product": "whatsapp",
                        "metadata": {
                            "display_phone_number": "15550783881",
                            "phone_number_id": "106540352242922",
                        },
                        "contacts": [
                            {"profile": {"name": "Sheena Nelson"}, "wa_id": "16505551234"}
                        ],
                        "messages": [
                            {
                                "from": "16505551234",
                                "id": EXAMPLE_WAMID,
                                "timestamp": "1749416383",
                                "type": "text",
                                "text": {"body": "Does it come in another color?"},
                            }
                        ],
                    },
                }
            ],
        }
    ],
}
WEBHOOK_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "Meta's webhook for the `messages` field: inbound messages (text, image, "
        "audio, video, document, sticker, button, interactive, location, reaction) and the "
        "statuses of messages we sent (sent, delivered, read, failed with `errors`).",
        "content": {
            JSON: {
                "schema": inline_schema(WhatsAppWebhook.model_json_schema()),
                "example": INBOUND_EXAMPLE,
            }
        },
    }
}
WEBHOOK_ERRORS = merged_errors(
    WEBHOOK_SIGNATURE_ERRORS,
    OPENING_CREDENTIALS,
    {422: {"invalid_input": "The body is not a WhatsApp Business Account webhook"}},
)


def channel_or_none(database: Database, box: SecretBox, channel_id: UUID) -> StoredChannel | None:
    channel = stored_channel(database, box, channel_id)
    return channel if channel is not None and channel.kind == "whatsapp" else None


VERIFY_RESPONSES = documented(None, errors={403: {"verify_token_invalid": VERIFY_FORBIDDEN}})
VERIFY_RESPONSES[200] = {
    "description": "The challenge, echoed",
    "content": {"text/plain": {"schema": {"type": "string"}, "example": "1158201444"}},
}


@verification_router.get(
    "/api/v1/webhooks/whatsapp/{channel_id}",
    response_class=PlainTextResponse,
    summary="Answer Meta's webhook verification for a WhatsApp channel",
    responses=VERIFY_RESPONSES,
)
def whatsapp_verify(
    channel_id: UUID,
    database: ServiceDatabase,
    box: Box,
    mode: Annotated[str, Query(alias="hub.mode", max_length=20)],
    challenge: Annotated[str, Query(alias="hub.challenge", max_length=256)],
    verify_token: Annotated[str | None, Security(VERIFY_TOKEN)],
) -> PlainTextResponse:
    """Meta calls this when the callback URL or verify token is saved: the challenge is echoed
    (as plain text) only for `subscribe` with the channel's own verify token; an unknown
    channel answers like a wrong token."""
    channel = channel_or_none(database, box, channel_id)
    expected = channel.secrets.get("verify_token", "") if channel else ""
    if mode != "subscribe" or not expected or not same_signature(expected, verify_token or ""):
        raise ApiError(403, "verify_token_invalid", VERIFY_FORBIDDEN)
    if not CHALLENGE.match(challenge):
        raise ApiError(422, "invalid_input", "hub.challenge is not a token Meta sends")
    return PlainTextResponse(challenge)


@router.post(
    "/api/v1/webhooks/whatsapp/{channel_id}",
    response_model=Envelope[WebhookOutcome],
    summary="Receive a WhatsApp channel's messages and statuses",
    responses=documented({"outcome": "accepted"}, errors=WEBHOOK_ERRORS),
    openapi_extra=WEBHOOK_OPENAPI,
)
def whatsapp_webhook(
    channel_id: UUID,
    body: Annotated[bytes, Depends(raw_body)],
    signature: Annotated[str | None, Security(HUB_SIGNATURE)],
    edge: InboxWebhookEdge,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """Point the Meta app's webhook (field `messages`) here with the verify token given at
    connect. Unknown channels answer as a bad signature does, so nothing is learnt about which
    channels exist."""
    with service_channel(edge.database, edge.box, channel_id) as (conn, found):
        channel = found if found is not None and found.kind == "whatsapp" else None
        sent = (
            signature.removeprefix("sha256=")
            if signature and signature.startswith("sha256=")
            else None
        )
        verify_webhook_hmac(
            channel.secrets.get("app_secret") if channel else None,
            body,
            sent,
            digest="sha256",
            encoding="hex",
        )
        try:
            WhatsAppWebhook.model_validate(parse_json(body))
        except ValidationError as error:
            raise ApiError(
                422, "invalid_input", "The body is not a WhatsApp Business Account webhook"
            ) from error
        assert channel is not None  # an unknown channel failed the signature
        event_id = f"{channel_id}:{hashlib.sha256(body).hexdigest()}"
        delivery = store_delivery(conn, PROVIDER, event_id, body, channel, edge.settings)
    return accept(background, edge.database, edge.settings, delivery)


def applier(database: Database) -> Applier:
    return sql_applier(database, "apply_whatsapp_event")
