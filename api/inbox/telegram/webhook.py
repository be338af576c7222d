"""Telegram Bot API webhooks, one URL per channel: /api/v1/webhooks/telegram/{channel_id}.

Telegram signs nothing: each request carries `X-Telegram-Bot-Api-Secret-Token`, the secret the edge
generated and gave `setWebhook` at connect, compared in constant time. A verified update is stored
under `<channel id>:<update_id>` (Telegram redelivers the same id until it gets a 2xx) in the one
transaction that read the channel's secret, and applied (private.apply_telegram_event) right
after the answer (api.inbox.queue); the replay cron applies what did not finish. Updates of
kinds the inbox does not read are stored and skipped, never refused, so Telegram does not retry
them forever."""

import secrets
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Depends, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.core.db import Database
from api.core.envelope import Envelope
from api.core.errors import ApiError
from api.core.openapi import JSON, documented, inline_schema, merged_errors
from api.core.signatures import WEBHOOK_SIGNATURE_ERRORS, WEBHOOK_SIGNATURE_INVALID, same_signature
from api.inbox.deps import InboxWebhookEdge
from api.inbox.errors import OPENING_CREDENTIALS
from api.inbox.queue import accept, store_delivery
from api.inbox.secrets import service_channel
from api.webhooks.body import parse_json, raw_body
from api.webhooks.intake import Applier, sql_applier

router = APIRouter(tags=["webhooks"])
PROVIDER = "telegram"

SECRET_TOKEN = APIKeyHeader(
    name="X-Telegram-Bot-Api-Secret-Token",
    scheme_name="telegramSecretToken",
    auto_error=False,
    description="The secret the edge gave setWebhook when the bot was connected; Telegram sends "
    "it with every update.",
)


def new_secret_token() -> str:
    """1-256 characters of A-Z, a-z, 0-9, _ and -, as setWebhook allows."""
    return secrets.token_urlsafe(48)


class Update(BaseModel):
    """Telegram's Update: its sequential id and at most one of message, edited_message, ...;
    the applier reads the message's chat, sender, text, caption and media."""

    model_config = ConfigDict(extra="allow")

    update_id: int = Field(ge=0, le=2**53)
    message: dict[str, Any] | None = None
    edited_message: dict[str, Any] | None = None


class WebhookOutcome(BaseModel):
    outcome: Literal["accepted", "duplicate"] = Field(
        description="`accepted`: stored before the answer and applied right after it (an apply "
        "that failed is retried by the replay cron); `duplicate`: Telegram redelivered "
        "an update already applied"
    )


UPDATE_EXAMPLE = {
    "update_id": 10000,
    "message": {
        "message_id": 1365,
        "from": {"id": 1111111, "is_bot": False, "first_name": "Test", "last_name": "Lastname"},
        "chat": {"id": 1111111, "type": "private", "first_name": "Test", "last_name": "Lastname"},
        "date": 1441645532,
        "text": "/start",
    },
}
WEBHOOK_OPENAPI: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A Telegram Update: `message` or `edited_message` (and channel posts) "
        "are read; other kinds are stored and skipped.",
        "content": {
            JSON: {"schema": inline_schema(Update.model_json_schema()), "example": UPDATE_EXAMPLE}
        },
    }
}
WEBHOOK_ERRORS = merged_errors(
    WEBHOOK_SIGNATURE_ERRORS,
    OPENING_CREDENTIALS,
    {422: {"invalid_input": "The body is not a Telegram Update"}},
)


@router.post(
    "/api/v1/webhooks/telegram/{channel_id}",
    response_model=Envelope[WebhookOutcome],
    summary="Receive a Telegram bot's updates",
    responses=documented({"outcome": "accepted"}, errors=WEBHOOK_ERRORS),
    openapi_extra=WEBHOOK_OPENAPI,
)
def telegram_webhook(
    channel_id: UUID,
    body: Annotated[bytes, Depends(raw_body)],
    secret_token: Annotated[str | None, Security(SECRET_TOKEN)],
    edge: InboxWebhookEdge,
    background: BackgroundTasks,
) -> dict[str, Any]:
    """The edge registers this URL with setWebhook when the bot is connected. Unknown channels
    answer as a wrong secret does."""
    with service_channel(edge.database, edge.box, channel_id) as (conn, channel):
        expected = (
            channel.secrets.get("secret_token", "")
            if channel and channel.kind == "telegram"
            else ""
        )
        if not expected or not secret_token or not same_signature(expected, secret_token):
            raise ApiError(401, "signature_invalid", WEBHOOK_SIGNATURE_INVALID)
        try:
            update = Update.model_validate(parse_json(body))
        except ValidationError as error:
            raise ApiError(422, "invalid_input", "The body is not a Telegram Update") from error
        assert channel is not None  # an unknown channel failed the secret token
        event_id = f"{channel_id}:{update.update_id}"
        delivery = store_delivery(conn, PROVIDER, event_id, body, channel, edge.settings)
    return accept(background, edge.database, edge.settings, delivery)


def applier(database: Database) -> Applier:
    return sql_applier(database, "apply_telegram_event")
