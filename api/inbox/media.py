"""Attachments of inbound messages into the `inbox` bucket: the cron claims queued ones
(private.claim_inbox_media), fetches each from its provider with the channel's credentials
(WhatsApp: `GET /{media-id}`, then the file) and uploads it under `<workspace id>/<conversation
id>/<message id>/<position>-<name>`, where the workspace's members may read it. Files over 25 MB
are not fetched; failures are retried with backoff (private.inbox_media_done)."""

import logging
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from api.core.db import Database
from api.core.secrets_box import KeyMismatchError, SecretBox
from api.inbox.secrets import stored_channel
from api.inbox.storage import InboxStorage, StorageError
from api.inbox.whatsapp.client import WhatsAppClient, WhatsAppError

log = logging.getLogger("growthbase.inbox.media")
MAX_BYTES = 25 * 1024 * 1024
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class MediaReport:
    stored: int = 0
    too_large: int = 0
    retrying: int = 0

    def count(self, outcome: str) -> None:
        if outcome == "stored":
            self.stored += 1
        elif outcome == "too_large":
            self.too_large += 1
        else:
            self.retrying += 1


def storage_path(row: dict[str, Any]) -> str:
    attachment = row["attachment"] or {}
    name = SAFE_NAME.sub("_", str(attachment.get("filename") or attachment.get("kind") or "file"))
    return (
        f"{row['workspace_id']}/{row['conversation_id']}/{row['message_id']}/"
        f"{row['attachment_index']}-{name[:100]}"
    )


def fetch_one(
    database: Database,
    box: SecretBox,
    whatsapp: WhatsAppClient,
    storage: InboxStorage,
    row: dict[str, Any],
) -> tuple[str, str | None, int | None, str | None]:
    """(status, storage path, size, error) for one claimed attachment."""
    channel = stored_channel(database, box, UUID(str(row["channel_id"])))
    attachment = row["attachment"] or {}
    if channel is None or channel.kind != "whatsapp" or not channel.secrets.get("access_token"):
        return "failed", None, None, "the channel cannot fetch media"
    try:
        data, mime_type = whatsapp.media(
            str(attachment.get("provider_media_id", "")), channel.secrets["access_token"], MAX_BYTES
        )
    except WhatsAppError as error:
        if error.status == 413:
            return "too_large", None, None, error.message
        return (
            ("retry" if error.retryable else "failed"),
            None,
            None,
            f"{error.code} {error.message}",
        )
    path = storage_path(row)
    try:
        storage.upload(path, data, mime_type)
    except StorageError as error:
        return "retry", None, None, error.code
    return "stored", path, len(data), None


def fetch_media(
    database: Database,
    box: SecretBox,
    whatsapp: WhatsAppClient,
    storage: InboxStorage,
    limit: int,
) -> MediaReport:
    report = MediaReport()
    with database.as_service() as conn:
        rows = conn.execute("select * from private.claim_inbox_media(%s)", (limit,)).fetchall()
    for row in rows:
        try:
            status, path, size, error = fetch_one(database, box, whatsapp, storage, dict(row))
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
