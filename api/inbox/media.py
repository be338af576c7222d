"""Attachments of inbound messages into the `inbox` bucket: the cron claims queued ones
(private.claim_inbox_media), fetches each from its provider with the channel's credentials —
WhatsApp: `GET /{media-id}`, then the file; Telegram: getFile, then the file; X: the direct
message's ton.twitter.com URL; email: the attachment's part of the stored mail — checks it, and
uploads it under `<workspace id>/<conversation id>/<message id>/<position>-<name>`, where the
workspace's members may read it. Files over the limit (25 MB; Telegram's bots download at most
20 MB) are not fetched (`too_large`); a type the inbox does not keep, or bytes that are not what
the type claims, are `refused`; failures are retried with backoff (private.inbox_media_done)."""

import json
import logging
import mimetypes
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from api.core.db import Database
from api.core.secrets_box import KeyMismatchError, SecretBox
from api.inbox.email import mime
from api.inbox.email.webhook import Received, raw_mime
from api.inbox.secrets import StoredChannel, stored_channel
from api.inbox.storage import InboxStorage, StorageError
from api.inbox.telegram.client import TelegramClient, TelegramError
from api.inbox.whatsapp.client import WhatsAppClient, WhatsAppError
from api.inbox.x.client import XClient, XError

log = logging.getLogger("growthbase.inbox.media")
MAX_BYTES = 25 * 1024 * 1024
TELEGRAM_MAX_BYTES = 20 * 1024 * 1024
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
# The types the inbox keeps: pictures, voice and video, PDFs, plain text and office documents.
# Nothing a browser would run (HTML, SVG, scripts) and nothing executable.
ALLOWED_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/heic",
        "audio/ogg",
        "audio/mpeg",
        "audio/mp4",
        "audio/aac",
        "audio/amr",
        "video/mp4",
        "video/3gpp",
        "video/quicktime",
        "application/pdf",
        "text/plain",
        "text/csv",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.spreadsheet",
    }
)
# The first bytes each of these types starts with: a file claiming one of them must.
MAGIC = {
    "image/jpeg": (b"\xff\xd8",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
}
# Telegram sends photos as JPEG and names no type for them.
KIND_TYPES = {"photo": "image/jpeg", "sticker": "image/webp", "voice": "audio/ogg"}


class FileRefusedError(Exception):
    """The file is not one the inbox keeps."""


@dataclass
class MediaReport:
    stored: int = 0
    too_large: int = 0
    refused: int = 0
    retrying: int = 0

    def count(self, outcome: str) -> None:
        if outcome == "stored":
            self.stored += 1
        elif outcome == "too_large":
            self.too_large += 1
        elif outcome == "refused":
            self.refused += 1
        else:
            self.retrying += 1


@dataclass(frozen=True)
class MediaSources:
    """The provider clients the cron fetches media with."""

    whatsapp: WhatsAppClient
    telegram: TelegramClient
    x: XClient


Outcome = tuple[str, str | None, int | None, str | None]


def storage_path(row: dict[str, Any]) -> str:
    attachment = row["attachment"] or {}
    name = SAFE_NAME.sub("_", str(attachment.get("filename") or attachment.get("kind") or "file"))
    return (
        f"{row['workspace_id']}/{row['conversation_id']}/{row['message_id']}/"
        f"{row['attachment_index']}-{name[:100]}"
    )


def checked_type(data: bytes, declared: str) -> str:
    """The content type the file is stored as; raises FileRefusedError for a type the inbox does not
    keep, or bytes that do not start as the type says (a page dressed as a picture)."""
    content_type = declared.split(";")[0].strip().lower()
    if content_type not in ALLOWED_TYPES:
        raise FileRefusedError(f"content type {content_type or 'unknown'} is not kept")
    if content_type == "image/webp" and not (data[:4] == b"RIFF" and data[8:12] == b"WEBP"):
        raise FileRefusedError("the file is not image/webp")
    if content_type in MAGIC and not data.startswith(MAGIC[content_type]):
        raise FileRefusedError(f"the file is not {content_type}")
    return content_type


def from_whatsapp(
    sources: MediaSources, channel: StoredChannel, attachment: dict[str, Any]
) -> tuple[bytes, str]:
    data, mime_type = sources.whatsapp.media(
        str(attachment.get("provider_media_id", "")), channel.secrets["access_token"], MAX_BYTES
    )
    return data, mime_type


def from_telegram(
    sources: MediaSources, channel: StoredChannel, attachment: dict[str, Any]
) -> tuple[bytes, str]:
    data, path = sources.telegram.file(
        channel.secrets["bot_token"],
        str(attachment.get("provider_media_id", "")),
        TELEGRAM_MAX_BYTES,
    )
    declared = (
        attachment.get("mime_type")
        or KIND_TYPES.get(str(attachment.get("kind")))
        or mimetypes.guess_type(path)[0]
        or ""
    )
    return data, str(declared)


def from_x(
    sources: MediaSources, channel: StoredChannel, attachment: dict[str, Any]
) -> tuple[bytes, str]:
    data, served = sources.x.media(
        str(attachment.get("url", "")), channel.secrets["access_token"], MAX_BYTES
    )
    return data, served or KIND_TYPES.get(str(attachment.get("kind")), "")


def from_email(database: Database, attachment: dict[str, Any]) -> tuple[bytes, str] | None:
    """The part of the stored mail the attachment names (`<webhook event id>:<position>`)."""
    event_id, _, position = str(attachment.get("provider_media_id", "")).partition(":")
    try:
        stored = UUID(event_id)
    except ValueError:
        return None
    if not position.isdigit():
        return None
    with database.as_service() as conn:
        row = conn.execute("select private.inbound_email_body(%s) as body", (stored,)).fetchone()
    if row is None or row["body"] is None:
        return None
    try:
        received = Received.model_validate(json.loads(json.loads(row["body"])["Message"]))
    except (ValueError, KeyError, TypeError, ValidationError):
        return None
    raw = raw_mime(received)
    return mime.attachment_payload(raw, int(position)) if raw is not None else None


FETCHERS = {"whatsapp": from_whatsapp, "telegram": from_telegram, "x": from_x}
CREDENTIAL = {"whatsapp": "access_token", "telegram": "bot_token", "x": "access_token"}


def fetch_one(
    database: Database,
    box: SecretBox,
    sources: MediaSources,
    storage: InboxStorage,
    row: dict[str, Any],
) -> Outcome:
    """(status, storage path, size, error) for one claimed attachment."""
    channel = stored_channel(database, box, UUID(str(row["channel_id"])))
    attachment = row["attachment"] or {}
    if channel is None:
        return "failed", None, None, "the channel is gone"
    try:
        if channel.kind == "email":
            found = from_email(database, attachment)
            if found is None:
                return "failed", None, None, "the stored mail no longer holds the attachment"
            data, declared = found
            if len(data) > MAX_BYTES:
                return "too_large", None, None, f"The file has {len(data)} bytes"
        elif channel.kind in FETCHERS and channel.secrets.get(CREDENTIAL[channel.kind]):
            data, declared = FETCHERS[channel.kind](sources, channel, attachment)
        else:
            return "failed", None, None, "the channel cannot fetch media"
        content_type = checked_type(data, declared)
    except (WhatsAppError, TelegramError, XError) as error:
        if error.status == 413:
            return "too_large", None, None, error.message
        status = "retry" if error.retryable else "failed"
        return status, None, None, f"{error.code} {error.message}"
    except FileRefusedError as refusal:
        return "refused", None, None, str(refusal)
    path = storage_path(row)
    try:
        storage.upload(path, data, content_type)
    except StorageError as error:
        return "retry", None, None, error.code
    return "stored", path, len(data), None


def fetch_media(
    database: Database,
    box: SecretBox,
    sources: MediaSources,
    storage: InboxStorage,
    limit: int,
) -> MediaReport:
    report = MediaReport()
    with database.as_service() as conn:
        rows = conn.execute("select * from private.claim_inbox_media(%s)", (limit,)).fetchall()
    for row in rows:
        try:
            status, path, size, error = fetch_one(database, box, sources, storage, dict(row))
        except KeyMismatchError:
            status, path, size, error = "retry", None, None, "channel_key_mismatch"
        with database.as_service() as conn:
            answer = conn.execute(
                "select private.inbox_media_done(%s, %s, %s, %s, %s, %s) as outcome",
                (row["message_id"], row["attachment_index"], status, path, size, error),
            ).fetchone()
        outcome = str(answer["outcome"]) if answer else "unknown"
        if outcome != "stored":
            log.info("inbox media %s/%s: %s", row["message_id"], row["attachment_index"], outcome)
        report.count(outcome)
    return report


def remove_gone_media(database: Database, storage: InboxStorage, limit: int) -> int:
    """Removes from the bucket the files of attachments whose messages are gone (an erasure
    deleted them); a refused removal stays queued and is tried again in an hour."""
    with database.as_service() as conn:
        paths = [
            str(row["path"])
            for row in conn.execute(
                "select path from private.claim_inbox_media_removals(%s)", (limit,)
            ).fetchall()
        ]
    if not paths:
        return 0
    try:
        storage.remove(paths)
    except StorageError as error:
        log.warning("inbox media removal refused: %s", error.code)
        return 0
    with database.as_service() as conn:
        answer = conn.execute(
            "select private.inbox_media_removed(%s) as removed", (paths,)
        ).fetchone()
    return int(answer["removed"]) if answer else 0
