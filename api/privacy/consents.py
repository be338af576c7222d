"""Consent links: a member asks for a contact's double opt-in confirmation link or preference
page link (to mail it); the contact follows it without signing in. The link is the credential:
a signed token bound to the contact, checked here; the database records the answer with the IP
and user agent the edge saw. Confirming needs a POST, so mail scanners that fetch links do not
confirm anything."""

from datetime import UTC, datetime
from ipaddress import ip_address
from typing import Annotated, Any, Literal
from urllib.parse import quote
from uuid import UUID

from fastapi import APIRouter, Request, Security
from fastapi.security import APIKeyQuery
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from api.core.deps import ActingUser, AppSettings, ServiceDatabase, Slot
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import documented
from api.core.public_urls import require_public_urls
from api.core.settings import Settings
from api.privacy import consent_links
from api.privacy.consent_links import ConsentLink, Kind

router = APIRouter(tags=["privacy"])
Purpose = Literal["email_marketing", "sms_marketing", "whatsapp", "telegram", "x", "profiling"]
Answer = Literal["granted", "withdrawn"]

CONSENT_LINK = APIKeyQuery(
    name="token",
    scheme_name="consentLink",
    description="The signed token of a confirmation or preference link mailed to the contact.",
    auto_error=False,
)
LINK_ERRORS: dict[int, dict[str, str]] = {
    400: {"link_invalid": "This link is not valid"},
    404: {"contact_not_found": "This link is no longer valid"},
    410: {"link_expired": "This link has expired; ask for a new one"},
    503: {"provider_not_configured": "Consent links are not available right now"},
}


CONSENT_LINK_SECRET = Slot(
    "consent_link_secret", SecretStr, "Consent links are not available right now"
)


def link_secret(settings: Settings) -> str:
    """EMAIL_LINK_SECRET signs consent links too; without it they are not available."""
    return CONSENT_LINK_SECRET.present(settings.email_link_secret).get_secret_value()


def link_token(token: Annotated[str | None, Security(CONSENT_LINK)]) -> str:
    if not token:
        raise ApiError(400, "link_invalid", "This link is not valid")
    return token


def client_of(request: Request) -> tuple[str | None, str | None]:
    """The IP and user agent to record with the answer (the platform's proxy sets the client);
    a client address that is not an IP is recorded as unknown."""
    host = request.client.host if request.client else None
    try:
        ip = str(ip_address(host)) if host else None
    except ValueError:
        ip = None
    return ip, request.headers.get("user-agent")


class NewLink(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Kind
    purpose: Purpose | None = Field(
        default=None, description="The purpose to confirm (a confirmation link needs one)"
    )


class Link(BaseModel):
    url: str
    expires_at: datetime


class Confirmation(BaseModel):
    purpose: Purpose
    status: str = Field(description="The contact's current answer for the purpose")


class PurposeState(BaseModel):
    purpose: Purpose
    status: str = Field(description="granted, withdrawn, denied, pending, or none")


class ListState(BaseModel):
    id: UUID
    name: str
    member: bool


class Preferences(BaseModel):
    workspace: str
    unsubscribed: bool
    purposes: list[PurposeState]
    lists: list[ListState]


class NewPreferences(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purposes: dict[Purpose, Answer] = Field(default_factory=dict)
    lists: dict[UUID, bool] = Field(default_factory=dict, max_length=500)


def body_example(example: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"content": {"application/json": {"example": example}}}}


PREFERENCES_EXAMPLE = {
    "workspace": "Tea Shop",
    "unsubscribed": False,
    "purposes": [
        {"purpose": "email_marketing", "status": "granted"},
        {"purpose": "sms_marketing", "status": "none"},
        {"purpose": "whatsapp", "status": "none"},
        {"purpose": "telegram", "status": "none"},
        {"purpose": "x", "status": "none"},
        {"purpose": "profiling", "status": "withdrawn"},
    ],
    "lists": [{"id": "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "name": "Newsletter", "member": True}],
}


@router.post(
    "/api/v1/privacy/contacts/{contact_id}/consent-links",
    status_code=201,
    response_model=Envelope[Link],
    summary="Make a contact's confirmation or preference link",
    openapi_extra=body_example({"kind": "confirm", "purpose": "email_marketing"}),
    responses=documented(
        {
            "url": "https://edge.example.com/api/v1/privacy/consents/confirm?token=eyJhbGciOi...",
            "expires_at": "2026-12-11T09:30:00Z",
        },
        status=201,
        errors={
            403: {"insufficient_role": "This needs the member role or higher"},
            404: {"contact_not_found": "Contact not found"},
            409: {"contact_erased": "This contact was erased"},
            422: {"purpose_required": "A confirmation link names the purpose it confirms"},
            503: {
                "provider_not_configured": "Consent links are not available right now",
                "public_base_url_not_configured": "PUBLIC_BASE_URL is not set",
            },
        },
    ),
)
def create_link(
    acting: ActingUser, settings: AppSettings, contact_id: UUID, body: NewLink
) -> dict[str, Any]:
    """Members and above. A confirmation link (valid 7 days) turns the contact's pending sign-up
    for the purpose into a grant; a preference page link (valid a year) lets them change their
    answers and lists. Mail it to the contact; the edge does not send it."""
    if body.kind == "confirm" and body.purpose is None:
        raise ApiError(422, "purpose_required", "A confirmation link names the purpose it confirms")
    base = require_public_urls(settings).base_url
    secret = link_secret(settings)
    with acting.connection() as conn:
        row = conn.execute(
            "select workspace_id, erased_at from public.contacts where id = %s", (contact_id,)
        ).fetchone()
        if row is None:
            raise ApiError(404, "contact_not_found", "Contact not found")
        conn.execute("select private.workspace_role_as(%s, 'member')", (row["workspace_id"],))
    if row["erased_at"] is not None:
        raise ApiError(409, "contact_erased", "This contact was erased")
    token, expires = consent_links.issue(
        secret,
        workspace_id=row["workspace_id"],
        contact_id=contact_id,
        kind=body.kind,
        purpose=body.purpose if body.kind == "confirm" else None,
    )
    path = "consents/confirm" if body.kind == "confirm" else "preferences"
    return ok(
        {
            "url": f"{base}/api/v1/privacy/{path}?token={quote(token)}",
            "expires_at": datetime.fromtimestamp(expires, UTC),
        }
    )


def confirm_link(settings: Settings, token: str) -> ConsentLink:
    link = consent_links.verify(link_secret(settings), token, "confirm")
    if link.purpose is None:
        raise ApiError(400, "link_invalid", "This link is not valid")
    return link


def current_status(database: ServiceDatabase, link: ConsentLink) -> dict[str, Any]:
    with database.as_service() as conn:
        state = conn.execute(
            "select private.preference_state(%s, %s) as state", (link.workspace_id, link.contact_id)
        ).fetchone()
    assert state is not None
    status = next(p["status"] for p in state["state"]["purposes"] if p["purpose"] == link.purpose)
    return {"purpose": link.purpose, "status": status}


@router.get(
    "/api/v1/privacy/consents/confirm",
    response_model=Envelope[Confirmation],
    summary="Show what a confirmation link confirms",
    responses=documented({"purpose": "email_marketing", "status": "pending"}, errors=LINK_ERRORS),
)
def show_confirmation(
    settings: AppSettings, database: ServiceDatabase, token: Annotated[str, Security(link_token)]
) -> dict[str, Any]:
    """No sign-in: the link is the credential. Changes nothing (mail scanners fetch links)."""
    return ok(current_status(database, confirm_link(settings, token)))


@router.post(
    "/api/v1/privacy/consents/confirm",
    response_model=Envelope[Confirmation],
    summary="Confirm a sign-up (double opt-in)",
    responses=documented(
        {"purpose": "email_marketing", "status": "granted"},
        errors={**LINK_ERRORS, 409: {"nothing_to_confirm": "There is no sign-up to confirm"}},
    ),
)
def confirm(
    request: Request,
    settings: AppSettings,
    database: ServiceDatabase,
    token: Annotated[str, Security(link_token)],
) -> dict[str, Any]:
    """No sign-in: the link is the credential. Records the grant with the IP and user agent of
    the click; confirming twice records nothing new."""
    link = confirm_link(settings, token)
    shown = current_status(database, link)
    if shown["status"] == "granted":
        return ok(shown)
    ip, agent = client_of(request)
    with database.as_service() as conn:
        conn.execute(
            "select private.answer_consent(%s, %s, %s, 'granted', 'confirmation_link', %s, %s)",
            (link.workspace_id, link.contact_id, link.purpose, ip, agent),
        )
    return ok({"purpose": link.purpose, "status": "granted"})


@router.get(
    "/api/v1/privacy/preferences",
    response_model=Envelope[Preferences],
    summary="Show a contact's preference page",
    responses=documented(PREFERENCES_EXAMPLE, errors=LINK_ERRORS),
)
def show_preferences(
    settings: AppSettings, database: ServiceDatabase, token: Annotated[str, Security(link_token)]
) -> dict[str, Any]:
    """No sign-in: the link is the credential. The sender's lists (and whether the contact is
    on each) and the contact's current answer per purpose."""
    link = consent_links.verify(link_secret(settings), token, "preferences")
    with database.as_service() as conn:
        row = conn.execute(
            "select private.preference_state(%s, %s) as state", (link.workspace_id, link.contact_id)
        ).fetchone()
    assert row is not None
    return ok(row["state"])


@router.post(
    "/api/v1/privacy/preferences",
    response_model=Envelope[Preferences],
    summary="Save a contact's preferences",
    openapi_extra=body_example(
        {
            "purposes": {"email_marketing": "withdrawn", "profiling": "granted"},
            "lists": {"3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d": False},
        }
    ),
    responses=documented(
        PREFERENCES_EXAMPLE,
        errors={
            **LINK_ERRORS,
            422: {"invalid_preferences": "That list is not one of this sender's lists"},
        },
    ),
)
def save_preferences(
    request: Request,
    settings: AppSettings,
    database: ServiceDatabase,
    token: Annotated[str, Security(link_token)],
    body: NewPreferences,
) -> dict[str, Any]:
    """No sign-in: the link is the credential. Each purpose granted or withdrawn (recorded with
    the IP and user agent), each list kept or left; answers the new state."""
    link = consent_links.verify(link_secret(settings), token, "preferences")
    ip, agent = client_of(request)
    with database.as_service() as conn:
        row = conn.execute(
            "select private.save_preferences(%s, %s, %s, %s, %s, %s) as state",
            (
                link.workspace_id,
                link.contact_id,
                Jsonb(body.purposes),
                Jsonb({str(list_id): member for list_id, member in body.lists.items()}),
                ip,
                agent,
            ),
        ).fetchone()
    assert row is not None
    return ok(row["state"])
