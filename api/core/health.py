"""Liveness with a real database round trip, for uptime checks and load balancers."""

from typing import Any

from fastapi import APIRouter, Request

from api.core.db import Database
from api.core.envelope import ok

router = APIRouter()

HEALTH_DATABASE_TIMEOUT_SECONDS = 2.0


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    database: Database = request.app.state.database
    database.ping(HEALTH_DATABASE_TIMEOUT_SECONDS)
    return ok({"status": "ok", "database": "ok"})
