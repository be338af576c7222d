"""Automations: start one (credits, rate limits and the outbox are the database's job), read
one, list them. Everything runs as the signed-in user under RLS."""

import json
import logging
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, BackgroundTasks, Header, Query, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator

from api.automations.deps import SCENARIOS, AutomationType, MakeScenario
from api.automations.make import MakeClient
from api.automations.outbox import drain_make_outbox
from api.core.db import Database
from api.core.deps import ActingUser, AppSettings
from api.core.envelope import Envelope, Page, ok, page
from api.core.errors import ApiError
from api.core.openapi import (
    JSON,
    RATE_LIMITED,
    Responses,
    documented,
    insufficient_role,
    json_body_example,
    merged_errors,
)
from api.core.public_urls import PublicUrls, require_public_urls
from api.core.settings import Settings

router = APIRouter(prefix="/api/v1/automations", tags=["automations"])
log = logging.getLogger("growthbase.automations")

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
    type: str = Field(description="One of the types in `automation_prices`")
    status: AutomationStatus
    input: dict[str, Any]
    result: Any = Field(description="What the scenario reported when it completed")
    error: str | None
    credits_charged: int
    started_by: UUID | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


def drain_in_background(
    database: Database, make: MakeClient, settings: Settings, urls: PublicUrls
) -> None:
    """Best effort right after an enqueue; the cron drain catches anything this misses."""
    try:
        drain_make_outbox(database, make, settings, urls, DRAIN_AFTER_ENQUEUE)
    except Exception:
        log.exception("outbox drain after enqueue failed; the cron drain will retry")


AUTOMATION_EXAMPLE = {
    "id": "6e1f0a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b",
    "workspace_id": "3f2a9d4e-8b1c-4e7f-a6d5-0c9b8e7f6a5d",
    "project_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
    "type": "seo_audit",
    "status": "completed",
    "input": {"keyword": "running shoes"},
    "result": {"score": 87, "issues": ["Missing meta description on /boots"]},
    "error": None,
    "credits_charged": 5,
    "started_by": "7b0f3c1e-5a4d-4f8e-9c2b-1d6e8a9f0b3c",
    "created_at": "2026-11-30T09:00:00Z",
    "started_at": "2026-11-30T09:00:04Z",
    "finished_at": "2026-11-30T09:01:12Z",
}
QUEUED_EXAMPLE = {
    **AUTOMATION_EXAMPLE,
    "status": "queued",
    "result": None,
    "started_at": None,
    "finished_at": None,
}
START_ERRORS = merged_errors(
    insufficient_role("member"),
    RATE_LIMITED,
    {
        402: {"insufficient_credits": "Not enough credits for this"},
        404: {"project_not_found": "Project not found"},
        409: {"conflict": "That conflicts with an existing record"},
        # Numbers can take more room in the database's JSON than in the request's.
        422: {"input_too_large": "input must be at most 65536 bytes of JSON"},
        503: {
            "provider_not_configured": SCENARIOS["seo_audit"].unconfigured,
            "public_base_url_not_configured": "PUBLIC_BASE_URL is not set, so no callback or "
            "webhook URL can be given out",
        },
    },
)
REPLAYED: Responses = {
    200: {
        "description": "A retry with the same `Idempotency-Key`: the first automation, charged "
        "once",
        "model": Envelope[Automation],
        "content": {JSON: {"example": {"data": QUEUED_EXAMPLE, "error": None}}},
    }
}


@router.post(
    "/{automation_type}",
    status_code=201,
    response_model=Envelope[Automation],
    summary="Start an automation for a project",
    responses={
        **documented(QUEUED_EXAMPLE, status=201, errors=START_ERRORS),
        **REPLAYED,
    },
    openapi_extra=json_body_example(
        {
            "project_id": "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d",
            "input": {"keyword": "running shoes"},
        }
    ),
)
def start_automation(
    automation_type: AutomationType,
    body: AutomationRequest,
    acting: ActingUser,
    make: MakeScenario,
    response: Response,
    background: BackgroundTasks,
    settings: AppSettings,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=128)] = None,
) -> dict[str, Any]:
    """Charges the type's price and queues the job for Make.com in one transaction (the plan's
    rate limits first), then sends it right away; the cron sends whatever that misses. A retry
    with the same `Idempotency-Key` answers the first automation with 200 and charges nothing.
    Nothing is charged when Make.com or PUBLIC_BASE_URL is not configured."""
    urls = require_public_urls(settings)
    with acting.connection() as conn:
        row = conn.execute(
            "select (r.automation).*, r.replayed"
            " from public.enqueue_automation(%s, %s, %s, %s) as r",
            (body.project_id, automation_type, json.dumps(body.input), idempotency_key),
        ).fetchone()
    assert row is not None
    if row.pop("replayed"):
        response.status_code = 200
    else:
        background.add_task(drain_in_background, acting.database, make, settings, urls)
    return ok(Automation(**row))


@router.get(
    "/{automation_id}",
    response_model=Envelope[Automation],
    summary="Read one automation's status, result and error",
    responses=documented(
        AUTOMATION_EXAMPLE, errors={404: {"automation_not_found": "Automation not found"}}
    ),
)
def read_automation(automation_id: UUID, acting: ActingUser) -> dict[str, Any]:
    """Read under RLS: another workspace's automation is not found."""
    with acting.connection() as conn:
        row = conn.execute(READ_SQL, (automation_id,)).fetchone()
    if row is None:
        raise ApiError(404, "automation_not_found", "Automation not found")
    return ok(Automation(**row))


@router.get(
    "",
    response_model=Page[Automation],
    summary="List the automations of the user's workspaces, newest first",
    responses=documented([AUTOMATION_EXAMPLE], meta={"total": 1, "page": 1, "per_page": 20}),
)
def list_automations(
    acting: ActingUser,
    workspace_id: UUID | None = None,
    project_id: UUID | None = None,
    status: AutomationStatus | None = None,
    type: AutomationType | None = None,
    page_number: Annotated[int, Query(alias="page", ge=1, le=10_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    """Every automation the user may read under RLS, narrowed by the filters given, a page at a
    time; `meta.total` counts all that match."""
    filters = {
        "workspace": workspace_id,
        "project": project_id,
        "status": status,
        "type": type,
        "limit": per_page,
        "offset": (page_number - 1) * per_page,
    }
    with acting.connection() as conn:
        counted = conn.execute(COUNT_SQL, filters).fetchone()
        rows = conn.execute(LIST_SQL, filters).fetchall()
    total = counted["total"] if counted else 0
    items = [Automation(**row) for row in rows]
    return page(items, total=total, page_number=page_number, per_page=per_page)
