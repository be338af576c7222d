"""The inbox's providers, as typed dependencies (installed by `api.app`)."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends

from api.core.deps import Slot
from api.core.secrets_box import KeyMismatchError, SecretBox
from api.inbox.errors import NO_KEY, key_mismatch
from api.inbox.whatsapp.client import WhatsAppClient

# Seals and opens channel credentials (INTEGRATIONS_ENCRYPTION_KEY, as shop credentials).
INBOX_BOX = Slot("inbox_secret_box", SecretBox, NO_KEY)
# The Graph API client; each call carries its channel's own token, so it is always installed.
WHATSAPP = Slot("whatsapp", WhatsAppClient, "The WhatsApp client is not set up")


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
