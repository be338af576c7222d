"""What a workspace API key is: the one operation every key may call, so an integration can
check its key (and so that every key's use goes through the database's check and audit)."""

from typing import Any
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.core.api_keys import ApiKeyCaller
from api.core.envelope import Envelope, ok
from api.core.openapi import documented

router = APIRouter(prefix="/api/v1/api-keys", tags=["api keys"])


class CurrentKey(BaseModel):
    key_id: UUID
    workspace_id: UUID
    role: str = Field(description="member or viewer: what the key may do in its workspace")
    prefix: str = Field(description="The key's first characters, as the dashboard shows them")


@router.get(
    "/current",
    response_model=Envelope[CurrentKey],
    summary="The API key this request bears",
    responses=documented(
        {
            "key_id": "4d2c1b0a-9e8f-4a7b-8c6d-5e4f3a2b1c0d",
            "workspace_id": "0f7b2c1e-4c1d-4b8e-9a0e-3f6a2d9b8c71",
            "role": "member",
            "prefix": "gbk_3f9a0c1d",
        }
    ),
)
def current_key(caller: ApiKeyCaller) -> dict[str, Any]:
    """Answers the key's workspace and role when it is live; `401 api_key_invalid` once it is
    revoked, expired or its workspace deleted. Each use is recorded (`last_used_at`, and an
    `api_key.used` audit entry at most once an hour per key, with the request's id and IP)."""
    return ok(
        {
            "key_id": caller.key_id,
            "workspace_id": caller.workspace_id,
            "role": caller.role,
            "prefix": caller.prefix,
        }
    )
