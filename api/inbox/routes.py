"""The inbox's routes: connect a channel (admins: the database decides as the user, then the
edge stores the credentials it sealed itself, as the service), answer a conversation (members:
queued by public.reply_to_conversation, then sent at once through the outbox) and sync a
WhatsApp channel's templates from Meta."""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from api.core.db import become_service
from api.core.deps import ActingUser, AppSettings, ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import documented, json_body_example, merged_errors
from api.core.public_urls import require_public_urls
from api.inbox.deps import Box, OptionalBox, OptionalMailer, Telegram, WhatsApp
from api.inbox.errors import (
    ADMINS,
    CHANNEL_MEMBERS,
    CHANNEL_TAKEN,
    CONVERSATION_MEMBERS,
    NO_PUBLIC_URL,
    OPENING_CREDENTIALS,
    REPLY_REFUSALS,
    SEALING_CREDENTIALS,
    TELEGRAM_FAILURES,
    WHATSAPP_FAILURES,
    telegram_failure,
    whatsapp_failure,
)
from api.inbox.outbox import Providers, drain_inbox_outbox
from api.inbox.secrets import save_channel, seal, stored_channel
from api.inbox.telegram.client import BOT_TOKEN, TelegramError
from api.inbox.telegram.webhook import new_secret_token
from api.inbox.whatsapp.client import WhatsAppError

router = APIRouter(prefix="/api/v1/inbox", tags=["inbox"])

GraphId = Annotated[str, Field(pattern=r"^[0-9]{1,30}$")]
Secret = Annotated[str, Field(min_length=8, max_length=2000, pattern=r"^[\x21-\x7e]+$")]
EXAMPLE_WORKSPACE = UUID("1f0c3a52-6d2e-4b7a-9c1d-2e3f4a5b6c7d")
EXAMPLE_CHANNEL = UUID("7a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")
EXAMPLE_CONVERSATION = UUID("3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a")


class WhatsAppConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    name: str = Field(min_length=1, max_length=100, description="What the team calls the number")
    phone_number_id: GraphId = Field(description="The business number's Graph id")
    business_account_id: GraphId = Field(
        description="The WhatsApp Business Account id (its templates are synced from it)"
    )
    display_phone_number: str | None = Field(default=None, max_length=40)
    access_token: Secret = Field(description="A system user's access token for the number")
    app_secret: Secret = Field(description="The Meta app's secret: it signs the webhooks")
    verify_token: Secret = Field(description="The verify token entered in the app's webhook setup")


class ChannelOut(BaseModel):
    id: UUID
    workspace_id: UUID
    kind: Literal["email", "whatsapp", "telegram", "x"]
    name: str
    status: Literal["active", "revoked", "disconnected"]
    account_id: str


class Connected(BaseModel):
    channel: ChannelOut
    webhook_url: str = Field(description="Register this URL as the Meta app's callback URL")


class TemplateChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=1, max_length=20, examples=["en_US"])
    parameters: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        default_factory=list, max_length=100, description="The body's variables, in order"
    )


class Reply(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, min_length=1, max_length=200000)
    template: TemplateChoice | None = Field(
        default=None, description="An approved WhatsApp template (outside the 24-hour window)"
    )


class MessageOut(BaseModel):
    id: UUID
    conversation_id: UUID
    direction: Literal["inbound", "outbound", "note"]
    status: Literal["received", "queued", "sent", "delivered", "read", "failed"]
    text: str | None
    template: dict[str, Any] | None
    provider_message_id: str | None
    error_code: str | None
    error_text: str | None


class TemplatesSynced(BaseModel):
    templates: int = Field(description="How many templates the channel has now")


CHANNEL_EXAMPLE = {
    "id": str(EXAMPLE_CHANNEL),
    "workspace_id": str(EXAMPLE_WORKSPACE),
    "kind": "whatsapp",
    "name": "Support",
    "status": "active",
    "account_id": "106540352242922",
}
CONNECT_EXAMPLE = {
    "workspace_id": str(EXAMPLE_WORKSPACE),
    "name": "Support",
    "phone_number_id": "106540352242922",
    "business_account_id": "102290129340398",
    "display_phone_number": "+1 555-078-3881",
    "access_token": "EAAJB...",
    "app_secret": "4f1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d",
    "verify_token": "growthbase-7f3a9c",
}
MESSAGE_EXAMPLE = {
    "id": "0b7e5a3c-1d2f-4e6a-8b9c-0d1e2f3a4b5c",
    "conversation_id": str(EXAMPLE_CONVERSATION),
    "direction": "outbound",
    "status": "sent",
    "text": "It comes in blue and green too.",
    "template": None,
    "provider_message_id": "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI3N0EyQUJDMjFEQzZCQUMzODMA",
    "error_code": None,
    "error_text": None,
}


@router.post(
    "/channels/whatsapp",
    status_code=201,
    response_model=Envelope[Connected],
    summary="Connect a WhatsApp business number to a workspace's inbox",
    responses=documented(
        {
            "channel": CHANNEL_EXAMPLE,
            "webhook_url": f"https://edge.example.com/api/v1/webhooks/whatsapp/{EXAMPLE_CHANNEL}",
        },
        status=201,
        errors=merged_errors(ADMINS, CHANNEL_TAKEN, SEALING_CREDENTIALS, NO_PUBLIC_URL),
    ),
    openapi_extra=json_body_example(CONNECT_EXAMPLE),
)
def connect_whatsapp_channel(
    connection: WhatsAppConnection, acting: ActingUser, settings: AppSettings, box: Box
) -> dict[str, Any]:
    """Admins. The credentials are sealed by the edge and never answered back; connecting the
    same number again replaces them. The answer names the webhook URL to give Meta with the
    verify token."""
    urls = require_public_urls(settings)
    sealed = seal(
        box,
        {
            "access_token": connection.access_token,
            "app_secret": connection.app_secret,
            "verify_token": connection.verify_token,
        },
    )
    settings_json = {"business_account_id": connection.business_account_id}
    if connection.display_phone_number:
        settings_json["display_phone_number"] = connection.display_phone_number
    with acting.connection() as conn:
        conn.execute("select private.workspace_role_as(%s, 'admin')", (connection.workspace_id,))
        become_service(conn)
        channel = save_channel(
            conn,
            connection.workspace_id,
            "whatsapp",
            connection.name,
            connection.phone_number_id,
            settings_json,
            sealed,
        )
    return ok(
        {
            "channel": {key: channel[key] for key in ChannelOut.model_fields},
            "webhook_url": f"{urls.base_url}/api/v1/webhooks/whatsapp/{channel['id']}",
        }
    )


class TelegramConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    name: str = Field(min_length=1, max_length=100, description="What the team calls the bot")
    bot_token: Annotated[str, Field(pattern=BOT_TOKEN.pattern)] = Field(
        description="The token BotFather gave the bot"
    )


TELEGRAM_CHANNEL_EXAMPLE = {
    **CHANNEL_EXAMPLE,
    "kind": "telegram",
    "account_id": "7012345678",
    "name": "Shop bot",
}


@router.post(
    "/channels/telegram",
    status_code=201,
    response_model=Envelope[Connected],
    summary="Connect a Telegram bot to a workspace's inbox",
    responses=documented(
        {
            "channel": TELEGRAM_CHANNEL_EXAMPLE,
            "webhook_url": f"https://edge.example.com/api/v1/webhooks/telegram/{EXAMPLE_CHANNEL}",
        },
        status=201,
        errors=merged_errors(
            ADMINS, CHANNEL_TAKEN, SEALING_CREDENTIALS, NO_PUBLIC_URL, TELEGRAM_FAILURES
        ),
    ),
    openapi_extra=json_body_example(
        {
            "workspace_id": str(EXAMPLE_WORKSPACE),
            "name": "Shop bot",
            "bot_token": "7012345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
        }
    ),
)
def connect_telegram_channel(
    connection: TelegramConnection,
    acting: ActingUser,
    settings: AppSettings,
    box: Box,
    telegram: Telegram,
) -> dict[str, Any]:
    """Admins. The edge asks Telegram who the bot is (getMe), stores the token sealed with a
    fresh secret token, and registers this channel's webhook URL with that secret
    (setWebhook), so every update Telegram sends carries it. Connecting the same bot again
    replaces both."""
    urls = require_public_urls(settings)
    with acting.connection() as conn:
        conn.execute("select private.workspace_role_as(%s, 'admin')", (connection.workspace_id,))
    try:
        bot = telegram.me(connection.bot_token)
    except TelegramError as error:
        raise telegram_failure(error) from error
    secret_token = new_secret_token()
    sealed = seal(box, {"bot_token": connection.bot_token, "secret_token": secret_token})
    username = bot.get("username")
    with acting.connection() as conn:
        conn.execute("select private.workspace_role_as(%s, 'admin')", (connection.workspace_id,))
        become_service(conn)
        channel = save_channel(
            conn,
            connection.workspace_id,
            "telegram",
            connection.name,
            str(bot["id"]),
            {"username": username} if isinstance(username, str) else {},
            sealed,
        )
    webhook_url = f"{urls.base_url}/api/v1/webhooks/telegram/{channel['id']}"
    try:
        telegram.set_webhook(connection.bot_token, webhook_url, secret_token)
    except TelegramError as error:
        raise telegram_failure(error) from error
    return ok(
        {
            "channel": {key: channel[key] for key in ChannelOut.model_fields},
            "webhook_url": webhook_url,
        }
    )


class EmailConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    name: str = Field(min_length=1, max_length=100, description="What the team calls the inbox")
    address: Annotated[
        str, Field(max_length=254, pattern=r"^[A-Za-z0-9._%'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
    ] = Field(
        description="The address SES receives for (a receipt rule publishing to our SNS topic); "
        "replies go out from it, so its domain must be a verified SES identity"
    )
    from_name: str | None = Field(default=None, max_length=100, pattern=r"^[^\r\n<>\"]*$")
    join_window_hours: int = Field(
        default=72,
        ge=0,
        le=8760,
        description="A new mail from a contact joins their open conversation if its last "
        "message is at most this old; otherwise a new conversation starts",
    )


@router.post(
    "/channels/email",
    status_code=201,
    response_model=Envelope[Connected],
    summary="Connect an inbound email address to a workspace's inbox",
    responses=documented(
        {
            "channel": {
                **CHANNEL_EXAMPLE,
                "kind": "email",
                "account_id": "support@inbound.shop.example",
                "name": "Support",
            },
            "webhook_url": "https://edge.example.com/api/v1/webhooks/ses-inbound",
        },
        status=201,
        errors=merged_errors(ADMINS, CHANNEL_TAKEN, NO_PUBLIC_URL),
    ),
    openapi_extra=json_body_example(
        {
            "workspace_id": str(EXAMPLE_WORKSPACE),
            "name": "Support",
            "address": "support@inbound.shop.example",
            "from_name": "Shop support",
            "join_window_hours": 72,
        }
    ),
)
def connect_email_channel(
    connection: EmailConnection, acting: ActingUser, settings: AppSettings
) -> dict[str, Any]:
    """Admins. Mail SES receives for the address comes in through the SNS topic subscribed to
    the answered webhook URL (one for every email channel); replies go out through SES from the
    address, in the thread. One workspace per address."""
    urls = require_public_urls(settings)
    channel_settings: dict[str, Any] = {"join_window_hours": connection.join_window_hours}
    if connection.from_name:
        channel_settings["from_name"] = connection.from_name
    with acting.connection() as conn:
        conn.execute("select private.workspace_role_as(%s, 'admin')", (connection.workspace_id,))
        become_service(conn)
        channel = conn.execute(
            "select * from private.connect_channel(%s, 'email', %s, %s, %s, null)",
            (
                connection.workspace_id,
                connection.name,
                connection.address.lower(),
                Jsonb(channel_settings),
            ),
        ).fetchone()
    assert channel is not None
    return ok(
        {
            "channel": {key: channel[key] for key in ChannelOut.model_fields},
            "webhook_url": f"{urls.base_url}/api/v1/webhooks/ses-inbound",
        }
    )


@router.post(
    "/conversations/{conversation_id}/messages",
    status_code=201,
    response_model=Envelope[MessageOut],
    summary="Answer a conversation",
    responses=documented(
        MESSAGE_EXAMPLE,
        status=201,
        errors=merged_errors(CONVERSATION_MEMBERS, REPLY_REFUSALS),
    ),
    openapi_extra=json_body_example({"text": "It comes in blue and green too."}),
)
def reply_to_conversation(
    conversation_id: UUID,
    reply: Reply,
    acting: ActingUser,
    database: ServiceDatabase,
    box: OptionalBox,
    whatsapp: WhatsApp,
    telegram: Telegram,
    mailer: OptionalMailer,
) -> dict[str, Any]:
    """Members and above. The reply is queued with its outbox row in one transaction (the
    database checks the role, the channel, the text and, on WhatsApp, the 24-hour window or the
    template), then sent at once; the answer is the message as it stands: `sent` with the
    provider's id, `queued` while a transient failure is retried (the cron goes on), or
    `failed` with the provider's code and reason."""
    template = reply.template.model_dump() if reply.template else None
    with acting.connection() as conn:
        row = conn.execute(
            "select id from public.reply_to_conversation(%s, %s, %s)",
            (conversation_id, reply.text, Jsonb(template) if template else None),
        ).fetchone()
    assert row is not None
    drain_inbox_outbox(database, Providers(box, whatsapp, telegram, mailer), 1, row["id"])
    with acting.connection() as conn:
        message = conn.execute(
            "select id, conversation_id, direction, status, text, template, provider_message_id,"
            " error_code, error_text from public.messages where id = %s",
            (row["id"],),
        ).fetchone()
    return ok(message)


@router.post(
    "/channels/{channel_id}/whatsapp-templates/sync",
    response_model=Envelope[TemplatesSynced],
    summary="Sync a WhatsApp channel's message templates from Meta",
    responses=documented(
        {"templates": 12},
        errors=merged_errors(CHANNEL_MEMBERS, WHATSAPP_FAILURES, OPENING_CREDENTIALS),
    ),
)
def sync_whatsapp_templates(
    channel_id: UUID, acting: ActingUser, database: ServiceDatabase, box: Box, whatsapp: WhatsApp
) -> dict[str, Any]:
    """Members and above. Every template of the business account (name, language, category,
    status, body variables) replaces the stored catalog, so a conversation can start with an
    approved one."""
    with acting.connection() as conn:
        row = conn.execute(
            "select workspace_id from public.channels where id = %s and kind = 'whatsapp'",
            (channel_id,),
        ).fetchone()
        if row is None:
            raise ApiError(404, "channel_not_found", "Channel not found")
        conn.execute("select private.workspace_role_as(%s, 'member')", (row["workspace_id"],))
    channel = stored_channel(database, box, channel_id)
    if channel is None or channel.status != "active" or not channel.secrets.get("access_token"):
        raise ApiError(409, "channel_not_active", "The channel is not active; reconnect it")
    try:
        templates = whatsapp.templates(
            str(channel.settings.get("business_account_id", "")), channel.secrets["access_token"]
        )
    except WhatsAppError as error:
        if error.credentials_refused:
            with database.as_service() as conn:
                conn.execute(
                    "select private.revoke_channel(%s, %s)",
                    (channel_id, f"{error.code}: {error.message}"),
                )
        raise whatsapp_failure(error) from error
    with database.as_service() as conn:
        count = conn.execute(
            "select private.sync_whatsapp_templates(%s, %s) as n",
            (
                channel_id,
                Jsonb(
                    [
                        {
                            "name": t.name,
                            "language": t.language,
                            "category": t.category,
                            "status": t.status,
                            "variables": t.variables,
                            "components": t.components,
                        }
                        for t in templates
                    ]
                ),
            ),
        ).fetchone()
    return ok({"templates": count["n"] if count else 0})
