"""The caller of a request that bears a workspace API key (`X-Api-Key`), as a typed dependency
any feature's route may take (`ApiKeyCaller`): the database checks the key (live, not revoked,
not expired, its workspace not deleted) and records its use in the audit log with the request's
id and client address. The route then acts for `workspace_id` with at most `role` (member or
viewer), as the service."""

import json
from dataclasses import dataclass
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader

from api.core.deps import ServiceDatabase, client_address
from api.core.errors import ApiError
from api.core.openapi import answers

API_KEY = APIKeyHeader(
    name="X-Api-Key",
    scheme_name="workspaceApiKey",
    description="A workspace API key (`gbk_…`), created by a workspace admin.",
    auto_error=False,
)
KEY_ERRORS = {
    401: {
        "api_key_required": "Send a workspace API key as X-Api-Key",
        "api_key_invalid": "This API key is unknown, revoked or expired",
    }
}


@dataclass(frozen=True)
class KeyCaller:
    key_id: UUID
    workspace_id: UUID
    role: str
    prefix: str


@answers(KEY_ERRORS)
def key_caller(
    request: Request,
    database: ServiceDatabase,
    secret: Annotated[str | None, Security(API_KEY)],
) -> KeyCaller:
    if not secret or not secret.strip():
        raise ApiError(401, "api_key_required", "Send a workspace API key as X-Api-Key")
    headers = {"x-request-id": str(getattr(request.state, "request_id", ""))}
    address = client_address(request)
    if address:
        headers["x-forwarded-for"] = address
    with database.as_service() as conn:
        conn.execute("select set_config('request.headers', %s, true)", (json.dumps(headers),))
        row = conn.execute(
            "select * from private.authenticate_api_key(%s)", (secret.strip(),)
        ).fetchone()
    if row is None:
        raise ApiError(401, "api_key_invalid", "This API key is unknown, revoked or expired")
    return KeyCaller(row["key_id"], row["workspace_id"], row["role"], row["prefix"])


ApiKeyCaller = Annotated[KeyCaller, Depends(key_caller)]
