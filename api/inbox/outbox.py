"""Sends queued inbox replies: claims due rows of the inbox outbox (skip locked, leased),
sends each through its channel's provider with the channel's own credentials, and records the
outcome in SQL: the provider's message id on success; on failure a retry with backoff while
the provider's error is transient, else the message fails visibly with the provider's code
and reason. A provider refusing the credentials marks the channel revoked."""

import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from api.core.db import Database
from api.core.errors import CodedError
from api.core.secrets_box import KeyMismatchError, SecretBox
from api.inbox.email import mime
from api.inbox.email.mailer import Mailer
from api.inbox.secrets import open_secrets
from api.inbox.telegram.client import TelegramClient, TelegramError
from api.inbox.whatsapp.client import WhatsAppClient, WhatsAppError
from api.inbox.x.client import XClient, XError

log = logging.getLogger("growthbase.inbox.outbox")
LEASE_SECONDS = 60


class SendError(Exception):
    """A send that did not go out: the provider's code and reason, and what to do next."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool,
        retry_after: int | None = None,
        revokes: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.revokes = revokes


@dataclass
class Providers:
    box: SecretBox | None  # None: channels with sealed credentials wait (retrying)
    whatsapp: WhatsAppClient
    telegram: TelegramClient
    mailer: Mailer | None
    x: XClient


@dataclass
class DrainReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {"sent": self.sent, "retrying": self.retrying, "failed": self.failed}


def send_whatsapp(providers: Providers, outbound: dict[str, Any], secrets: dict[str, str]) -> str:
    token = secrets.get("access_token")
    if not token:
        raise SendError("not_connected", "The channel has no access token", retryable=False)
    client = providers.whatsapp
    try:
        if outbound.get("template"):
            return client.send_template(
                outbound["account_id"], token, outbound["to"], outbound["template"]
            )
        last = outbound.get("last_inbound") or {}
        return client.send_text(
            outbound["account_id"],
            token,
            outbound["to"],
            outbound["text"],
            last.get("provider_message_id"),
        )
    except WhatsAppError as error:
        raise SendError(
            error.code,
            error.message,
            retryable=error.retryable,
            retry_after=error.retry_after,
            revokes=error.credentials_refused,
        ) from error


def send_telegram(providers: Providers, outbound: dict[str, Any], secrets: dict[str, str]) -> str:
    token = secrets.get("bot_token")
    if not token:
        raise SendError("not_connected", "The channel has no bot token", retryable=False)
    last = outbound.get("last_inbound") or {}
    try:
        return providers.telegram.send_message(
            token, outbound["to"], outbound["text"], last.get("provider_message_id")
        )
    except TelegramError as error:
        raise SendError(
            error.code,
            error.message,
            retryable=error.retryable,
            retry_after=error.retry_after,
            revokes=error.credentials_refused,
        ) from error


def send_email(providers: Providers, outbound: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A reply in the thread of the contact's last mail, from the channel's address (as the
    workspace's SES tenant, where the mailer has them)."""
    if providers.mailer is None:
        # Waits (and retries) until SES is configured.
        raise SendError("provider_not_configured", "Amazon SES is not configured", retryable=True)
    last = outbound.get("last_inbound") or {}
    context = last.get("context") or {}
    references = [ref for ref in context.get("references") or [] if isinstance(ref, str)]
    raw, message_id = mime.reply_message(
        sender=outbound["account_id"],
        sender_name=(outbound.get("settings") or {}).get("from_name"),
        recipient=outbound["to"],
        subject=outbound.get("subject") or context.get("subject"),
        text=outbound["text"],
        in_reply_to=context.get("email_message_id"),
        references=references,
        conversation_id=UUID(outbound["conversation_id"]),
    )
    try:
        ses_id = providers.mailer.send_raw(
            raw,
            outbound["account_id"],
            outbound["to"],
            {"inbox_message": outbound["message_id"]},
            UUID(outbound["workspace_id"]),
        )
    except CodedError as error:
        raise SendError(
            error.code, error.message, retryable=bool(getattr(error, "retryable", False))
        ) from error
    return ses_id, {"email_message_id": message_id}


def send_x(providers: Providers, outbound: dict[str, Any], secrets: dict[str, str]) -> str:
    token = secrets.get("access_token")
    if not token:
        raise SendError("not_connected", "The channel has no access token", retryable=False)
    try:
        return providers.x.send_dm(token, outbound["to"], outbound["text"])
    except XError as error:
        raise SendError(
            error.code,
            error.message,
            retryable=error.retryable,
            retry_after=error.retry_after,
            revokes=error.credentials_refused,
        ) from error


def send_one(providers: Providers, outbound: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """The provider's id of the sent message and what to remember of it; raises SendError."""
    if outbound.get("status") != "active":
        raise SendError(
            "channel_not_active", f"The channel is {outbound.get('status')}", retryable=False
        )
    sealed = outbound.get("secrets_encrypted")
    if sealed and providers.box is None:
        raise SendError(
            "provider_not_configured", "INTEGRATIONS_ENCRYPTION_KEY is not set", retryable=True
        )
    try:
        secrets = open_secrets(providers.box, sealed) if providers.box else {}
    except KeyMismatchError as error:
        # Ours to fix (the key changed): kept for a retry once the key is restored.
        raise SendError(
            "channel_key_mismatch", "Stored credentials cannot be decrypted", retryable=True
        ) from error
    if outbound["kind"] == "whatsapp":
        return send_whatsapp(providers, outbound, secrets), None
    if outbound["kind"] == "telegram":
        return send_telegram(providers, outbound, secrets), None
    if outbound["kind"] == "email":
        return send_email(providers, outbound)
    if outbound["kind"] == "x":
        return send_x(providers, outbound, secrets), None
    raise SendError(
        "channel_unsupported", f"Sending on {outbound['kind']} is not available", retryable=False
    )


def drain_inbox_outbox(
    database: Database, providers: Providers, limit: int, message_id: UUID | None = None
) -> DrainReport:
    """Sends up to `limit` due messages (or only `message_id`, right after it was queued)."""
    report = DrainReport()
    with database.as_service() as conn:
        claimed = conn.execute(
            "select message_id from private.claim_inbox_outbox(%s, %s, %s)",
            (limit, LEASE_SECONDS, message_id),
        ).fetchall()
    for row in claimed:
        outcome = deliver(database, providers, row["message_id"])
        report.outcomes[str(row["message_id"])] = outcome
        if outcome == "sent":
            report.sent += 1
        elif outcome == "retrying":
            report.retrying += 1
        else:
            report.failed += 1
    return report


def deliver(database: Database, providers: Providers, message_id: UUID) -> str:
    with database.as_service() as conn:
        row = conn.execute(
            "select private.inbox_outbound(%s) as outbound", (message_id,)
        ).fetchone()
    outbound = row["outbound"] if row else None
    if outbound is None:
        return "gone"
    try:
        provider_id, context = send_one(providers, outbound)
    except SendError as error:
        with database.as_service() as conn:
            if error.revokes:
                conn.execute(
                    "select private.revoke_channel(%s, %s)",
                    (outbound["channel_id"], f"{error.code}: {error.message}"),
                )
            answer = conn.execute(
                "select private.inbox_message_failed(%s, %s, %s, %s, %s) as state",
                (message_id, error.code, error.message, error.retryable, error.retry_after),
            ).fetchone()
        state = str(answer["state"]) if answer else "unknown"
        log.warning("inbox message %s not sent (%s): %s", message_id, error.code, state)
        return state
    with database.as_service() as conn:
        conn.execute(
            "select private.inbox_message_sent(%s, %s, %s)",
            (message_id, provider_id, Jsonb(context) if context else None),
        )
    return "sent"
