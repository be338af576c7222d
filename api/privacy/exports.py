"""Access-request exports: the job that turns the database's document about one contact
(private.contact_export_data) into a zip of `export.json`, a CSV per table and the files of
their inbox attachments (read from the private `inbox` bucket, under `attachments/`), puts it in
the private `exports` bucket under the workspace's folder, and signs 24-hour download URLs. A
Storage failure fails the job with its reason; nothing partial is offered for download."""

import csv
import io
import json
import re
import zipfile
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from api.core.db import Database
from api.privacy.supabase_admin import SupabaseAdmin, SupabaseAdminError

DOWNLOAD_SECONDS = 24 * 3600
EXPIRE_ROWS = 1000
REMOVE_BATCH = 100


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def table_csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [name for name in row if name not in columns]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([cell(row.get(name)) for name in columns])
    return out.getvalue()


Attachment = dict[str, Any]


def stored_attachments(
    workspace_id: str, document: dict[str, list[dict[str, Any]]]
) -> list[Attachment]:
    """The contact's message attachments stored in the workspace's folder of the inbox bucket,
    each with the name its file takes in the zip."""
    found: list[Attachment] = []
    for message in document.get("messages", []):
        attachments = message.get("attachments")
        for index, attachment in enumerate(attachments if isinstance(attachments, list) else []):
            path = attachment.get("storage_path") if isinstance(attachment, dict) else None
            if not isinstance(path, str) or not path.startswith(f"{workspace_id}/"):
                continue
            name = str(attachment.get("file_name") or path.rsplit("/", 1)[-1])
            safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[-100:] or "file"
            found.append(
                {
                    "message_id": str(message.get("id")),
                    "index": index,
                    "storage_path": path,
                    "file": f"attachments/{message.get('id')}/{index}-{safe}",
                }
            )
    return found


def fetch_attachments(
    storage: SupabaseAdmin, attachments: list[Attachment]
) -> tuple[list[Attachment], dict[str, bytes]]:
    """The files by their zip name; one Storage no longer has is listed with `file` null. Any
    other Storage failure raises."""
    listed: list[Attachment] = []
    files: dict[str, bytes] = {}
    for attachment in attachments:
        try:
            files[attachment["file"]] = storage.download_attachment(attachment["storage_path"])
        except SupabaseAdminError as error:
            if error.status != 404:
                raise
            listed.append({**attachment, "file": None, "missing": True})
            continue
        listed.append(attachment)
    return listed, files


def build_zip(
    export: dict[str, Any],
    document: dict[str, list[dict[str, Any]]],
    attachments: list[Attachment] | None = None,
    files: dict[str, bytes] | None = None,
) -> bytes:
    """export.json (the whole document with what it is about, and which file in the zip each
    stored attachment is), one CSV per table and the attachments' files."""
    whole = {
        "export_id": str(export["id"]),
        "workspace_id": str(export["workspace_id"]),
        "contact_id": str(export["contact_id"]),
        "generated_at": datetime.now(UTC).isoformat(),
        "tables": document,
        "attachment_files": attachments or [],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(
            "export.json", json.dumps(whole, ensure_ascii=False, indent=2, default=str)
        )
        for table, rows in sorted(document.items()):
            archive.writestr(f"{table}.csv", table_csv(rows))
        for name, data in sorted((files or {}).items()):
            archive.writestr(name, data)
    return buffer.getvalue()


def run_export(database: Database, storage: SupabaseAdmin, export_id: UUID) -> None:
    """Runs one export to its end (done or failed); a finished one is left as it is."""
    with database.as_service() as conn:
        claimed = conn.execute(
            "select * from private.claim_contact_export(%s)", (export_id,)
        ).fetchone()
    if claimed is None or claimed["id"] is None:
        return
    with database.as_service() as conn:
        row = conn.execute(
            "select private.contact_export_data(%s) as document", (export_id,)
        ).fetchone()
        conn.execute("select private.set_contact_export_progress(%s, 50)", (export_id,))
    assert row is not None
    document: dict[str, list[dict[str, Any]]] = row["document"]
    counts = {table: len(rows) for table, rows in document.items()}
    try:
        attachments, files = fetch_attachments(
            storage, stored_attachments(str(claimed["workspace_id"]), document)
        )
    except SupabaseAdminError as error:
        finish(database, export_id, None, counts, "storage_error", str(error))
        return
    data = build_zip(claimed, document, attachments, files)
    with database.as_service() as conn:
        conn.execute("select private.set_contact_export_progress(%s, 80)", (export_id,))
    path = f"{claimed['workspace_id']}/{export_id}.zip"
    try:
        storage.upload_export(path, data)
    except SupabaseAdminError as error:
        finish(database, export_id, None, counts, "storage_error", str(error))
        return
    finish(database, export_id, path, counts, None, None)


def finish(
    database: Database,
    export_id: UUID,
    path: str | None,
    counts: dict[str, int],
    error_code: str | None,
    error_message: str | None,
) -> None:
    with database.as_service() as conn:
        conn.execute(
            "select private.finish_contact_export(%s, %s, %s, %s, %s)",
            (export_id, path, Jsonb(counts), error_code, error_message),
        )


def resume_stalled(database: Database, storage: SupabaseAdmin, limit: int) -> int:
    """Runs exports that were asked for but not finished (their request died): the cron's part."""
    with database.as_service() as conn:
        rows = conn.execute(
            "select id from public.contact_exports where status in ('queued', 'running')"
            " and created_at < now() - interval '2 minutes' order by created_at limit %s",
            (limit,),
        ).fetchall()
    for row in rows:
        run_export(database, storage, row["id"])
    return len(rows)


def expire(
    database: Database, storage: SupabaseAdmin | None, budget_batches: int
) -> dict[str, Any]:
    """Expires finished exports past their workspace's time (links are refused from then on),
    then removes queued export files from Storage, `REMOVE_BATCH` per request, for at most
    `budget_batches` requests; a failed batch stays queued with backoff. Without Storage the
    files wait."""
    with database.as_service() as conn:
        row = conn.execute(
            "select private.expire_contact_exports(%s) as expired", (EXPIRE_ROWS,)
        ).fetchone()
    expired = int(row["expired"]) if row else 0
    if storage is None:
        return {"expired": expired, "removed": "not_configured"}
    removed = 0
    for _ in range(budget_batches):
        with database.as_service() as conn:
            names = [
                r["claim_storage_removals"]
                for r in conn.execute(
                    "select private.claim_storage_removals('exports', %s)", (REMOVE_BATCH,)
                ).fetchall()
            ]
        if not names:
            break
        error: str | None = None
        try:
            storage.remove_exports(names)
        except SupabaseAdminError as failure:
            error = str(failure)
        with database.as_service() as conn:
            conn.execute(
                "select private.finish_storage_removals('exports', %s, %s)", (names, error)
            )
        if error is not None:
            break
        removed += len(names)
    return {"expired": expired, "removed": removed}
