"""Connecting a project's shop: the database decides, as the user, whether they may (members
and above of the project's workspace); then the edge stores the credentials it encrypted itself,
as the service, so nothing but a sealed secret is ever stored as one. The webhook URL to
register with the shop is absolute, from PUBLIC_BASE_URL."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.core.action_quotas import take_project_quota
from api.core.auth_tokens import VerifiedUser
from api.core.db import Database, become_service
from api.core.deps import CurrentUser
from api.core.envelope import ok
from api.core.errors import ApiError
from api.core.public_urls import require_public_urls
from api.core.secrets_box import SecretBox
from api.core.settings import Settings
from api.shops.integration_secrets import require_box
from api.shops.shoptet.client import HEADER_VALUE_PATTERN, ShoptetClient, ShoptetError
from api.shops.shoptet.sync import shoptet_client_for, sync_shop

router = APIRouter(prefix="/api/v1/projects/{project_id}/integrations", tags=["integrations"])

Secret = Annotated[str, Field(min_length=8, max_length=500)]
SYNC_PAGES_PER_CALL = 20


class ShoptetConnection(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Sent as the Shoptet-Private-API-Token header, so it must be a header value.
    api_token: Annotated[str, Field(pattern=HEADER_VALUE_PATTERN)]
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


def store_credentials(
    request: Request,
    user: VerifiedUser,
    project_id: UUID,
    source: str,
    api_token_sealed: str | None,
    webhook_secret_sealed: str | None,
) -> None:
    """One transaction: the membership check as the user, then the write as the service."""
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        take_project_quota(conn, project_id, "shop_sync")
        become_service(conn)
        conn.execute(
            "select private.connect_integration(%s, %s, %s, %s)",
            (project_id, source, api_token_sealed, webhook_secret_sealed),
        )


@contextmanager
def shoptet_client(request: Request, project_id: UUID) -> Iterator[ShoptetClient]:
    """The project's Shoptet client, closed afterwards; Shoptet's failures (a stored token it
    cannot use included) leave as 4xx/502 in the envelope."""
    settings: Settings = request.app.state.settings
    try:
        client = shoptet_client_for(
            request.app.state.database,
            request.app.state.secret_box,
            settings.shoptet_api_url,
            project_id,
        )
        try:
            yield client
        finally:
            client.close()
    except ShoptetError as error:
        raise shoptet_failure(error) from error


def shoptet_failure(error: ShoptetError) -> ApiError:
    if error.status in (401, 403):
        return ApiError(
            422, "shoptet_token_invalid", "Shoptet does not accept the API token; connect again"
        )
    return ApiError(502, "shoptet_unavailable", f"Shoptet failed: {error.code}")


@router.post("/shoptet/connect")
def connect_shoptet(
    project_id: UUID, body: ShoptetConnection, request: Request, user: CurrentUser
) -> dict[str, Any]:
    urls = require_public_urls(request.app.state.settings)
    box = secret_box(request)
    token = box.seal(body.api_token)
    key = box.seal(body.webhook_signature_key) if body.webhook_signature_key else None
    store_credentials(request, user, project_id, "shoptet", token, key)
    return ok(
        {
            "project_id": str(project_id),
            "source": "shoptet",
            "webhook_url": urls.shop_webhook("shoptet", project_id),
        }
    )


@router.post("/shoptet/test")
def test_shoptet(project_id: UUID, request: Request, user: CurrentUser) -> dict[str, Any]:
    require_member(request, user, project_id)
    with shoptet_client(request, project_id) as client:
        eshop = client.eshop()
    info = eshop.get("contactInformation") or {}
    return ok({"ok": True, "eshop": {"name": info.get("eshopName"), "url": info.get("url")}})


@router.post("/shoptet/sync")
def sync_shoptet(project_id: UUID, request: Request, user: CurrentUser) -> dict[str, Any]:
    require_member(request, user, project_id)
    with shoptet_client(request, project_id) as client:
        report = sync_shop(request.app.state.database, client, project_id, SYNC_PAGES_PER_CALL)
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
    urls = require_public_urls(request.app.state.settings)
    sealed = secret_box(request).seal(body.webhook_secret)
    store_credentials(request, user, project_id, source, None, sealed)
    return ok(
        {
            "project_id": str(project_id),
            "source": source,
            "webhook_url": urls.shop_webhook(source, project_id),
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
