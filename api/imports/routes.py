"""CSV import of orders into a project, as the signed-in member: each valid row is upserted in
its own savepoint, so a row is imported whole or reported, never half-done."""

from typing import Annotated, Any
from uuid import UUID

import psycopg
from fastapi import APIRouter, Depends, Request
from psycopg.types.json import Jsonb

from api.core.action_quotas import take_project_quota
from api.core.db import Database
from api.core.deps import CurrentUser
from api.core.envelope import ok
from api.core.errors import ApiError, from_database_error
from api.imports.csv_orders import CsvHeaderError, RowError, parse_orders

router = APIRouter(tags=["imports"])
MAX_CSV_BYTES = 5 * 1024 * 1024


async def csv_body(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_CSV_BYTES:
        raise ApiError(413, "payload_too_large", "The CSV is larger than 5 MiB")
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ApiError(422, "invalid_input", "The CSV must be UTF-8") from error


@router.post("/api/v1/projects/{project_id}/orders/import")
def import_orders(
    project_id: UUID,
    request: Request,
    user: CurrentUser,
    text: Annotated[str, Depends(csv_body)],
) -> dict[str, Any]:
    database: Database = request.app.state.database
    # Spent before parsing, and committed, so a failing import still counts.
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        take_project_quota(conn, project_id, "import")
    try:
        parsed = parse_orders(text)
    except CsvHeaderError as error:
        raise ApiError(
            422, "invalid_csv", str(error), [{"line": 1, "reason": str(error)}]
        ) from error
    errors = list(parsed.errors)
    imported = 0
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        if (
            conn.execute("select 1 from public.projects where id = %s", (project_id,)).fetchone()
            is None
        ):
            raise ApiError(404, "project_not_found", "Project not found")
        for line, order in parsed.orders:
            try:
                with conn.transaction():
                    conn.execute("select public.import_order(%s, %s)", (project_id, Jsonb(order)))
                imported += 1
            except psycopg.Error as error:
                translated = from_database_error(error)
                if (
                    translated is None
                    or translated.status >= 500
                    or translated.status in (403, 404)
                ):
                    raise
                errors.append(RowError(line, translated.message))
    errors.sort(key=lambda e: e.line)
    return ok(
        {
            "imported": imported,
            "failed": len(errors),
            "errors": [{"line": e.line, "reason": e.reason} for e in errors],
        }
    )
