"""A project's stored shop credentials, decrypted: one place reads and opens them for the
webhooks, the Shoptet client and the integration routes."""

import base64
import binascii
import re
from dataclasses import dataclass
from uuid import UUID

from api.core.db import Database
from api.core.secrets_box import SecretBox

# A Fernet token: url-safe base64 of version 0x80, an 8-byte timestamp, a 16-byte IV, whole
# 16-byte cipher blocks and a 32-byte HMAC.
FERNET_ALPHABET = re.compile(r"^[A-Za-z0-9_-]+=*$")
FERNET_VERSION = b"\x80"
FERNET_OVERHEAD = 1 + 8 + 16 + 32
CIPHER_BLOCK = 16


@dataclass(frozen=True)
class IntegrationSecrets:
    api_token: str | None
    webhook_secret: str | None


class NotConnectedError(Exception):
    """The project has no usable credentials of the source: none stored, or none the edge
    sealed (see `sealed_by_the_edge`)."""

    code = "integration_not_connected"

    def __init__(self, source: str) -> None:
        super().__init__(f"{source} is not connected for this project")


class NoEncryptionKeyError(Exception):
    """INTEGRATIONS_ENCRYPTION_KEY is unset, so no stored credential can be opened (for work
    done outside a request, where the `Box` dependency cannot answer 503)."""

    code = "provider_not_configured"


def sealed_by_the_edge(value: str | None) -> bool:
    """Whether a stored value has the shape of what SecretBox.seal writes. Members could once
    store anything through the Data API; such a value is no credential at all (the webhooks
    answer 401, the routes 409), while a real token that does not open is a key mismatch (503)."""
    if not value or not FERNET_ALPHABET.match(value):
        return False
    try:
        raw = base64.urlsafe_b64decode(value)
    except (binascii.Error, ValueError):
        return False
    blocks = len(raw) - FERNET_OVERHEAD
    return raw[:1] == FERNET_VERSION and blocks >= CIPHER_BLOCK and blocks % CIPHER_BLOCK == 0


def open_if_sealed(box: SecretBox, value: str | None) -> str | None:
    return box.open(value) if value is not None and sealed_by_the_edge(value) else None


def integration_secrets(
    database: Database, box: SecretBox, project_id: UUID, source: str
) -> IntegrationSecrets:
    """Empty secrets when the project has no such integration."""
    with database.as_service() as conn:
        row = conn.execute(
            "select api_token_encrypted, webhook_secret_encrypted"
            " from private.integration_for(%s, %s)",
            (project_id, source),
        ).fetchone()
    if row is None:
        return IntegrationSecrets(None, None)
    return IntegrationSecrets(
        open_if_sealed(box, row["api_token_encrypted"]),
        open_if_sealed(box, row["webhook_secret_encrypted"]),
    )
