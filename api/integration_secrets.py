"""A project's stored shop credentials, decrypted: one place reads and opens them for the
webhooks, the Shoptet client and the integration routes."""

from dataclasses import dataclass
from uuid import UUID

from api.db import Database
from api.errors import ApiError
from api.secrets_box import SecretBox


@dataclass(frozen=True)
class IntegrationSecrets:
    api_token: str | None
    webhook_secret: str | None


def require_box(box: SecretBox | None) -> SecretBox:
    if box is None:
        raise ApiError(
            503, "provider_not_configured", "INTEGRATIONS_ENCRYPTION_KEY is not configured"
        )
    return box


def integration_secrets(
    database: Database, box: SecretBox | None, project_id: UUID, source: str
) -> IntegrationSecrets:
    """Empty secrets when the project has no such integration."""
    opened = require_box(box)
    with database.as_service() as conn:
        row = conn.execute(
            "select api_token_encrypted, webhook_secret_encrypted"
            " from private.integration_for(%s, %s)",
            (project_id, source),
        ).fetchone()
    if row is None:
        return IntegrationSecrets(None, None)
    return IntegrationSecrets(
        opened.open(row["api_token_encrypted"]) if row["api_token_encrypted"] else None,
        opened.open(row["webhook_secret_encrypted"]) if row["webhook_secret_encrypted"] else None,
    )
