"""Connecting a project's shop: the edge encrypts the credentials, the database (as the user,
under its role checks) stores them."""

from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.action_quotas import take_project_quota
from api.auth import CurrentUser
from api.auth_tokens import VerifiedUser
from api.db import Database
from api.envelope import ok
from api.errors import ApiError
from api.integration_secrets import require_box
from api.providers.shoptet import ShoptetClient, ShoptetError
from api.secrets_box import SecretBox
from api.settings import Settings
from api.shoptet_sync import shoptet_client_for, sync_shop

router = APIRouter(prefix="/api/v1/projects/{project_id}/integrations", tags=["integrations"])

Secret = Annotated[str, Field(min_length=8, max_length=500)]
SYNC_PAGES_PER_CALL = 20


class ShoptetConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_token: Secret
    webhook_signature_key: Secret | None = None


class ShopConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    webhook_secret: Secret


def secret_box(request: Request) -> SecretBox:
    return require_box(request.app.state.secret_box)


def require_member(request: Request, user: VerifiedUser, project_id: UUID) -> None:
    """The database decides: members and above of the project's workspace (404 / 403 else).
    Each check spends one request of the plan's shop limit (429 once spent)."""
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        take_project_quota(conn, project_id, "shop_sync")


def shoptet_client(request: Request, project_id: UUID) -> ShoptetClient:
    settings: Settings = request.app.state.settings
    return shoptet_client_for(
        request.app.state.database,
        request.app.state.secret_box,
        settings.shoptet_api_url,
        project_id,
    )


def shoptet_failure(error: ShoptetError) -> ApiError:
    if error.status in (401, 403):
        return ApiError(422, "shoptet_token_invalid", "Shoptet refused the API token")
    return ApiError(502, "shoptet_unavailable", f"Shoptet failed: {error.code}")


@router.post("/shoptet/connect")
def connect_shoptet(
    project_id: UUID, body: ShoptetConnection, request: Request, user: CurrentUser
) -> dict[str, Any]:
    box = secret_box(request)
    token = box.seal(body.api_token)
    key = box.seal(body.webhook_signature_key) if body.webhook_signature_key else None
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        take_project_quota(conn, project_id, "shop_sync")
        conn.execute(
            "select public.connect_integration(%s, 'shoptet', %s, %s)", (project_id, token, key)
        )
    return ok(
        {
            "project_id": str(project_id),
            "source": "shoptet",
            "webhook_url": f"/api/v1/webhooks/shoptet/{project_id}",
        }
    )


@router.post("/shoptet/test")
def test_shoptet(project_id: UUID, request: Request, user: CurrentUser) -> dict[str, Any]:
    require_member(request, user, project_id)
    client = shoptet_client(request, project_id)
    try:
        eshop = client.eshop()
    except ShoptetError as error:
        raise shoptet_failure(error) from error
    finally:
        client.close()
    info = eshop.get("contactInformation") or {}
    return ok({"ok": True, "eshop": {"name": info.get("eshopName"), "url": info.get("url")}})


@router.post("/shoptet/sync")
def sync_shoptet(project_id: UUID, request: Request, user: CurrentUser) -> dict[str, Any]:
    require_member(request, user, project_id)
    client = shoptet_client(request, project_id)
    try:
        report = sync_shop(request.app.state.database, client, project_id, SYNC_PAGES_PER_CALL)
    except ShoptetError as error:
        raise shoptet_failure(error) from error
    finally:
        client.close()
    return ok(report.as_dict())


# Declared after the Shoptet routes: a path parameter would otherwise capture /shoptet/...
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
        take_project_quota(conn, project_id, "shop_sync")
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
