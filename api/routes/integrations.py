"""Connecting a project's shop: the edge encrypts the credentials, the database (as the user,
under its role checks) stores them."""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import CurrentUser
from api.db import Database
from api.envelope import ok
from api.errors import ApiError
from api.secrets_box import SecretBox

router = APIRouter(prefix="/api/v1/projects/{project_id}/integrations", tags=["integrations"])

Secret = Annotated[str, Field(min_length=8, max_length=500)]


class ShopConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_secret: Secret


def secret_box(request: Request) -> SecretBox:
    box: SecretBox | None = request.app.state.secret_box
    if box is None:
        raise ApiError(
            503, "provider_not_configured", "INTEGRATIONS_ENCRYPTION_KEY is not configured"
        )
    return box


@router.post("/{source}/connect")
def connect_shop(
    project_id: UUID,
    source: Literal["shopify", "woocommerce"],
    body: ShopConnection,
    request: Request,
    user: CurrentUser,
) -> dict[str, Any]:
    sealed = secret_box(request).seal(body.webhook_secret)
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        conn.execute(
            "select public.connect_integration(%s, %s, null, %s)", (project_id, source, sealed)
        )
    return ok(
        {
            "project_id": str(project_id),
            "source": source,
            "webhook_url": f"/api/v1/webhooks/{source}/{project_id}",
        }
    )


@router.post("/{source}/disconnect")
def disconnect(
    project_id: UUID,
    source: Literal["shopify", "woocommerce", "shoptet"],
    request: Request,
    user: CurrentUser,
) -> dict[str, Any]:
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        row = conn.execute(
            "select public.disconnect_integration(%s, %s) as removed", (project_id, source)
        ).fetchone()
    return ok(
        {"project_id": str(project_id), "source": source, "removed": bool(row and row["removed"])}
    )
