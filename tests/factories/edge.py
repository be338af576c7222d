"""The edge as tests drive it: its settings against the session's database and JWKS, a signed-in
user's Authorization header, and what its contract documents."""

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.core.settings import Settings
from tests.factories.workspaces import User
from tests.fakes.dns_server import shared_dns
from tests.fakes.jwks import JwksServer


def edge_settings(database_url: str, jwks: JwksServer, **overrides: Any) -> Settings:
    """Settings for the test database, the test JWKS and the test DNS server; `overrides` set
    anything else (plain strings are fine for secrets). Inbox deliveries are applied at once
    after the answer."""
    return Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        **{"dns_resolver": shared_dns().address, "inbox_apply_delay_seconds": 0, **overrides},
    )


def authorization(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bearer(jwks: JwksServer, user: User) -> dict[str, str]:
    """The headers of a request `user` signs in to, with a token shaped like Supabase's."""
    return authorization(jwks.sign(jwks.claims(user.id, email=user.email)))


def documented_codes(client: TestClient, operation_id: str, status: int) -> list[str]:
    """The error codes the contract lists for one status of an operation."""
    app = client.app
    assert isinstance(app, FastAPI)
    for item in app.openapi()["paths"].values():
        for operation in item.values():
            if operation.get("operationId") == operation_id:
                codes: list[str] = (
                    operation["responses"].get(str(status), {}).get("x-error-codes", [])
                )
                return codes
    raise LookupError(operation_id)
