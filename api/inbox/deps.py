"""The inbox's providers, as typed dependencies (installed by `api.app`)."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends

from api.core.deps import Slot
from api.core.secrets_box import KeyMismatchError, SecretBox
from api.inbox.email.mailer import Mailer
from api.inbox.email.sns_check import SnsCheck
from api.inbox.errors import NO_KEY, key_mismatch
from api.inbox.telegram.client import TelegramClient
from api.inbox.whatsapp.client import WhatsAppClient

# Seals and opens channel credentials (INTEGRATIONS_ENCRYPTION_KEY, as shop credentials).
INBOX_BOX = Slot("inbox_secret_box", SecretBox, NO_KEY)
# The Graph API client; each call carries its channel's own token, so it is always installed.
WHATSAPP = Slot("whatsapp", WhatsAppClient, "The WhatsApp client is not set up")
TELEGRAM = Slot("telegram", TelegramClient, "The Telegram client is not set up")
# Replies by email go out through SES (SES_REGION); inbound mail is verified like SES events.
MAILER = Slot("inbox_mailer", Mailer, "Amazon SES is not configured")
INBOUND_SNS = Slot("inbox_sns", SnsCheck, "SNS_TOPIC_ARNS is not set")


def box(client: Annotated[SecretBox, Depends(INBOX_BOX.required)]) -> Iterator[SecretBox]:
    """The box; a stored credential it cannot open, anywhere in the route, leaves as the
    envelope's 503 channel_key_mismatch."""
    try:
        yield client
    except KeyMismatchError as error:
        raise key_mismatch() from error


Box = Annotated[SecretBox, Depends(box)]
OptionalBox = Annotated[SecretBox | None, Depends(INBOX_BOX.optional)]
WhatsApp = Annotated[WhatsAppClient, Depends(WHATSAPP.required)]
Telegram = Annotated[TelegramClient, Depends(TELEGRAM.required)]
OptionalMailer = Annotated[Mailer | None, Depends(MAILER.optional)]
InboundSns = Annotated[SnsCheck, Depends(INBOUND_SNS.required)]
