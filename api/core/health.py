"""Liveness with a real database round trip, for uptime checks and load balancers."""

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.core.deps import ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.openapi import documented

router = APIRouter(tags=["health"])

HEALTH_DATABASE_TIMEOUT_SECONDS = 2.0


class Health(BaseModel):
    status: Literal["ok"]
    database: Literal["ok"]


@router.get(
    "/health",
    response_model=Envelope[Health],
    summary="Check that the edge is up and reaches its database",
    responses=documented({"status": "ok", "database": "ok"}),
)
def health(database: ServiceDatabase) -> dict[str, Any]:
    """Answers only after a real round trip to Postgres: an edge that cannot reach its database
    is down for a load balancer (503 `database_unavailable`)."""
    database.ping(HEALTH_DATABASE_TIMEOUT_SECONDS)
    return ok({"status": "ok", "database": "ok"})
