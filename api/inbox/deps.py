"""The inbox's providers, as typed dependencies (installed by `api.app`)."""

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from api.core.db import Database
from api.core.deps import DATABASE, SETTINGS, Slot
from api.core.secrets_box import KeyMismatchError, SecretBox
from api.core.settings import Settings
from api.inbox.email.mailer import Mailer
from api.inbox.email.sns_check import SnsCheck
from api.inbox.errors import NO_KEY, key_mismatch
from api.inbox.storage import InboxStorage
from api.inbox.telegram.client import TelegramClient
from api.inbox.whatsapp.client import WhatsAppClient
from api.inbox.x.client import XClient

# Seals and opens channel credentials (INTEGRATIONS_ENCRYPTION_KEY, as shop credentials).
INBOX_BOX = Slot("inbox_secret_box", SecretBox, NO_KEY)
# The Graph API client; each call carries its channel's own token, so it is always installed.
WHATSAPP = Slot("whatsapp", WhatsAppClient, "The WhatsApp client is not set up")
TELEGRAM = Slot("telegram", TelegramClient, "The Telegram client is not set up")
X_API = Slot("x_api", XClient, "The X client is not set up")
# Replies by email go out through SES (SES_REGION); inbound mail is verified like SES events.
MAILER = Slot("inbox_mailer", Mailer, "Amazon SES is not configured")
INBOUND_SNS = Slot("inbox_sns", SnsCheck, "SNS_TOPIC_ARNS is not set")
# Attachments go to Storage with the project's secret key (SUPABASE_SERVICE_KEY).
INBOX_STORAGE = Slot("inbox_storage", InboxStorage, "SUPABASE_SERVICE_KEY is not set")


def box(client: Annotated[SecretBox, Depends(INBOX_BOX.required)]) -> Iterator[SecretBox]:
    """The box; a stored credential it cannot open, anywhere in the route, leaves as the
    envelope's 503 channel_key_mismatch."""
    try:
        yield client
    except KeyMismatchError as error:
        raise key_mismatch() from error


Box = Annotated[SecretBox, Depends(box)]


@dataclass(frozen=True)
class WebhookEdge:
    """What an inbox webhook takes from the app for every delivery."""

    database: Database
    box: SecretBox
    settings: Settings


async def webhook_edge(request: Request) -> AsyncIterator[WebhookEdge]:
    """The app's database, box and settings in one dependency run on the event loop: each is a
    lookup, and a sync dependency costs a thread hop apiece (six a delivery, with the box's
    generator and the intake the webhook no longer needs), which on a busy machine weighs on
    every webhook's answer. A stored
    credential the box cannot open leaves as the envelope's 503 channel_key_mismatch."""
    edge = WebhookEdge(
        database=DATABASE.required(request),
        box=INBOX_BOX.required(request),
        settings=SETTINGS.required(request),
    )
    try:
        yield edge
    except KeyMismatchError as error:
        raise key_mismatch() from error


InboxWebhookEdge = Annotated[WebhookEdge, Depends(webhook_edge)]
OptionalBox = Annotated[SecretBox | None, Depends(INBOX_BOX.optional)]
WhatsApp = Annotated[WhatsAppClient, Depends(WHATSAPP.required)]
Telegram = Annotated[TelegramClient, Depends(TELEGRAM.required)]
XApi = Annotated[XClient, Depends(X_API.required)]
OptionalMailer = Annotated[Mailer | None, Depends(MAILER.optional)]
InboundSns = Annotated[SnsCheck, Depends(INBOUND_SNS.required)]
OptionalInboxStorage = Annotated[InboxStorage | None, Depends(INBOX_STORAGE.optional)]
