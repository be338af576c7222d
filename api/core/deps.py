"""Typed dependencies: a route declares what it needs in its signature (the settings, the
database, the signed-in user acting as themselves, a provider client) and FastAPI hands it over.
This module is the only code that reads `app.state`, so a missing provider answers the same
`503 provider_not_configured` everywhere and no route can forget the request's method and path
when it acts as the user."""

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, FastAPI, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.core.auth_tokens import TokenVerifier, VerifiedUser
from api.core.db import Connection, Database
from api.core.errors import ApiError
from api.core.settings import Settings

T = TypeVar("T")

SUPABASE_AUTH = HTTPBearer(
    scheme_name="supabaseAuth",
    bearerFormat="JWT",
    description="A Supabase Auth access token of a signed-in user (the SPA's session token).",
    auto_error=False,
)


class Slot(Generic[T]):
    """A named thing the app holds for its routes (a provider client, the webhook intake),
    absent when its settings are missing."""

    def __init__(self, name: str, kind: type[T], unconfigured: str) -> None:
        self.name = name
        self.kind = kind
        self.unconfigured = unconfigured

    def install(self, app: FastAPI, value: T | None) -> None:
        if not hasattr(app.state, "slots"):
            app.state.slots = {}
        app.state.slots[self.name] = value

    def optional(self, request: Request) -> T | None:
        value = request.app.state.slots.get(self.name)
        if value is None:
            return None
        if not isinstance(value, self.kind):
            raise TypeError(f"{self.name} holds a {type(value).__name__}, not a {self.kind}")
        return value

    def required(self, request: Request) -> T:
        return self.present(self.optional(request))

    def present(self, value: T | None) -> T:
        """For a route that needs the provider only on some paths (an import read from
        Storage): the same answer as `required`, given the optional value."""
        if value is None:
            raise ApiError(503, "provider_not_configured", self.unconfigured)
        return value


SETTINGS = Slot("settings", Settings, "The edge has no settings")
DATABASE = Slot("database", Database, "The edge has no database")
TOKENS = Slot("tokens", TokenVerifier, "The edge cannot verify access tokens")

AppSettings = Annotated[Settings, Depends(SETTINGS.required)]
ServiceDatabase = Annotated[Database, Depends(DATABASE.required)]


def current_user(
    tokens: Annotated[TokenVerifier, Depends(TOKENS.required)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(SUPABASE_AUTH)],
) -> VerifiedUser:
    """Verify the bearer token; every route that acts for a user depends on this."""
    if credentials is None:
        raise ApiError(
            401,
            "authentication_required",
            "Send a Supabase access token as 'Authorization: Bearer'",
        )
    return tokens.verify(credentials.credentials.strip())


CurrentUser = Annotated[VerifiedUser, Depends(current_user)]


@dataclass(frozen=True)
class UserScope:
    """The signed-in user and the way to act as them: each `connection()` is one transaction
    with role `authenticated` and the verified claims, method and path set, as PostgREST does,
    and the request's id and client address in `request.headers` (the audit log records them)."""

    user: VerifiedUser
    database: Database
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def claims(self) -> dict[str, Any]:
        return self.user.claims

    def connection(self) -> AbstractContextManager[Connection]:
        return self.database.as_user(self.user.claims, self.method, self.path, self.headers)


def client_address(request: Request) -> str | None:
    """The caller's IP address: the one Vercel's proxy reports (`x-real-ip`, else the first
    `x-forwarded-for` hop), else the socket's; anything that is not an IP address is dropped."""
    forwarded = request.headers.get("x-forwarded-for", "").split(",")[0]
    for candidate in (
        request.headers.get("x-real-ip", ""),
        forwarded,
        request.client.host if request.client else "",
    ):
        try:
            return str(ip_address(candidate.strip()))
        except ValueError:
            continue
    return None


def user_scope(request: Request, user: CurrentUser, database: ServiceDatabase) -> UserScope:
    headers = {"x-request-id": str(getattr(request.state, "request_id", ""))}
    address = client_address(request)
    if address:
        headers["x-forwarded-for"] = address
    return UserScope(user, database, request.method, request.url.path, headers)


ActingUser = Annotated[UserScope, Depends(user_scope)]
