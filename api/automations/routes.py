"""Automations: start one (credits, rate limits and the outbox are the database's job), read
one, list them. Everything runs as the signed-in user under RLS."""

import json
import logging
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Header, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.automations.make import MakeClient
from api.automations.outbox import drain_make_outbox
from api.core.db import Database
from api.core.deps import CurrentUser
from api.core.envelope import Envelope, Page, ok, page
from api.core.errors import ApiError
from api.core.public_urls import PublicUrls, require_public_urls
from api.core.settings import Settings

router = APIRouter(prefix="/api/v1/automations", tags=["automations"])
log = logging.getLogger("growthbase.automations")

AutomationType = Literal["seo_audit", "content_gen", "report"]
AutomationStatus = Literal["queued", "processing", "completed", "failed"]
MAX_INPUT_BYTES = 64 * 1024
DRAIN_AFTER_ENQUEUE = 5

READ_SQL = """
select id, workspace_id, project_id, type, status, input, result, error, credits_charged,
       started_by, created_at, started_at, finished_at
from public.automations
where id = %s
"""
COUNT_SQL = """
select count(*) as total
from public.automations
where (%(workspace)s::uuid is null or workspace_id = %(workspace)s)
  and (%(project)s::uuid is null or project_id = %(project)s)
  and (%(status)s::text is null or status = %(status)s)
  and (%(type)s::text is null or type = %(type)s)
"""
LIST_SQL = """
select id, workspace_id, project_id, type, status, input, result, error, credits_charged,
       started_by, created_at, started_at, finished_at
from public.automations
where (%(workspace)s::uuid is null or workspace_id = %(workspace)s)
  and (%(project)s::uuid is null or project_id = %(project)s)
  and (%(status)s::text is null or status = %(status)s)
  and (%(type)s::text is null or type = %(type)s)
order by created_at desc, id desc
limit %(limit)s offset %(offset)s
"""


class AutomationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_id: UUID
    input: dict[str, Any] = Field(default_factory=dict)

    @field_validator("input")
    @classmethod
    def small_enough(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(json.dumps(value)) > MAX_INPUT_BYTES:
            raise ValueError(f"input must be at most {MAX_INPUT_BYTES} bytes of JSON")
        return value


class Automation(BaseModel):
    id: UUID
    workspace_id: UUID
    project_id: UUID
    type: str
    status: str
    input: dict[str, Any]
    result: Any
    error: str | None
    credits_charged: int
    started_by: UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def require_make(request: Request, automation_type: str) -> tuple[MakeClient, PublicUrls]:
    """Checked before anything is charged: Make.com for this type, and PUBLIC_BASE_URL for the
    callback URL every job carries."""
    make: MakeClient | None = request.app.state.make
    settings: Settings = request.app.state.settings
    if make is None or settings.make_webhook_url(automation_type) is None:
        raise ApiError(
            503, "provider_not_configured", f"Make.com is not configured for {automation_type}"
        )
    return make, require_public_urls(settings)


def drain_in_background(request: Request, make: MakeClient, urls: PublicUrls) -> None:
    """Best effort right after an enqueue; the cron drain catches anything this misses."""
    try:
        drain_make_outbox(
            request.app.state.database,
            make,
            request.app.state.settings,
            urls,
            DRAIN_AFTER_ENQUEUE,
        )
    except Exception:
        log.exception("outbox drain after enqueue failed; the cron drain will retry")


@router.post("/{automation_type}", status_code=201, response_model=Envelope[Automation])
def start_automation(
    automation_type: AutomationType,
    body: AutomationRequest,
    request: Request,
    response: Response,
    user: CurrentUser,
    background: BackgroundTasks,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=128)] = None,
) -> dict[str, Any]:
    make, urls = require_make(request, automation_type)
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        row = conn.execute(
            "select (r.automation).*, r.replayed"
            " from public.enqueue_automation(%s, %s, %s, %s) as r",
            (body.project_id, automation_type, json.dumps(body.input), idempotency_key),
        ).fetchone()
    assert row is not None
    if row.pop("replayed"):
        response.status_code = 200
    else:
        background.add_task(drain_in_background, request, make, urls)
    return ok(Automation(**row))


@router.get("/{automation_id}", response_model=Envelope[Automation])
def read_automation(automation_id: UUID, request: Request, user: CurrentUser) -> dict[str, Any]:
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        row = conn.execute(READ_SQL, (automation_id,)).fetchone()
    if row is None:
        raise ApiError(404, "automation_not_found", "Automation not found")
    return ok(Automation(**row))


@router.get("", response_model=Page[Automation])
def list_automations(
    request: Request,
    user: CurrentUser,
    workspace_id: UUID | None = None,
    project_id: UUID | None = None,
    status: AutomationStatus | None = None,
    type: AutomationType | None = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    filters = {
        "workspace": workspace_id,
        "project": project_id,
        "status": status,
        "type": type,
        "limit": per_page,
        "offset": (page_number - 1) * per_page,
    }
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        counted = conn.execute(COUNT_SQL, filters).fetchone()
        rows = conn.execute(LIST_SQL, filters).fetchall()
    total = counted["total"] if counted else 0
    items = [Automation(**row) for row in rows]
    return page(items, total=total, page_number=page_number, per_page=per_page)
