"""The signed-in user's own view: profile, workspaces, and settings."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api.core.auth_tokens import VerifiedUser
from api.core.db import Connection
from api.core.deps import ActingUser
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import documented, json_body_example

router = APIRouter(prefix="/api/v1/me", tags=["me"])


class Preferences(BaseModel):
    """The closed set of preference keys; the database enforces the same set."""

    model_config = ConfigDict(extra="forbid")

    theme: Literal["light", "dark", "system"] | None = None
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    email_notifications: StrictBool | None = None
    weekly_digest: StrictBool | None = None


class SettingsUpdate(BaseModel):
    """Fields sent are replaced; preference keys sent as null go back to their default."""

    model_config = ConfigDict(extra="forbid")

    display_name: Annotated[str, Field(min_length=1, max_length=80)] | None = None
    locale: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Z]{2})?$")] | None = None
    preferences: Preferences | None = None


class Profile(BaseModel):
    display_name: str | None
    locale: str
    preferences: dict[str, Any]


class Workspace(BaseModel):
    id: str
    name: str
    slug: str
    role: str
    plan_tier: str
    credits_remaining: int
    base_currency: str
    time_zone: str  # IANA name; the workspace's sales days are cut in it


class Me(BaseModel):
    id: str
    email: str | None
    profile: Profile
    workspaces: list[Workspace]


PROFILE_SQL = """
select display_name, locale, preferences from public.profiles where id = (select auth.uid())
"""

WORKSPACES_SQL = """
select w.id::text, w.name, w.slug, m.role, w.plan_tier, w.credits_remaining, w.base_currency,
       w.time_zone
from public.workspaces w
join public.workspace_members m on m.workspace_id = w.id and m.user_id = (select auth.uid())
order by w.created_at, w.id
"""

UPDATE_SETTINGS_SQL = """
update public.profiles
set display_name = case when %(set_display_name)s then %(display_name)s else display_name end,
    locale = coalesce(%(locale)s, locale),
    preferences = (preferences || %(preferences_set)s::jsonb) - %(preferences_cleared)s::text[]
where id = (select auth.uid())
returning display_name, locale, preferences
"""


def read_me(conn: Connection, user: VerifiedUser) -> Me:
    profile = conn.execute(PROFILE_SQL).fetchone()
    if profile is None:
        raise ApiError(404, "profile_not_found", "No profile exists for this user")
    workspaces = conn.execute(WORKSPACES_SQL).fetchall()
    return Me(
        id=str(user.user_id),
        email=user.claims.get("email") or None,
        profile=Profile(**profile),
        workspaces=[Workspace(**row) for row in workspaces],
    )


ME_EXAMPLE = {
    "id": "7b0f3c1e-5a4d-4f8e-9c2b-1d6e8a9f0b3c",
    "email": "ana@example.com",
    "profile": {"display_name": "Ana", "locale": "en", "preferences": {"theme": "dark"}},
    "workspaces": [
        {
            "id": "3f2a9d4e-8b1c-4e7f-a6d5-0c9b8e7f6a5d",
            "name": "Ana's workspace",
            "slug": "ana",
            "role": "owner",
            "plan_tier": "free",
            "credits_remaining": 100,
            "base_currency": "EUR",
            "time_zone": "Asia/Kolkata",
        }
    ],
}
NO_PROFILE = {404: {"profile_not_found": "No profile exists for this user"}}
# The database checks the preferences too (private.validate_profile), with what it knows best:
# the time zone names Postgres knows.
PREFERENCES_REFUSED = {
    422: {"invalid_preferences": "timezone must be an IANA time zone name"},
}


@router.get(
    "",
    response_model=Envelope[Me],
    summary="Read the signed-in user with their profile and workspaces",
    responses=documented(ME_EXAMPLE, errors=NO_PROFILE),
)
def get_me(acting: ActingUser) -> dict[str, Any]:
    """Every workspace the user belongs to, with their role, plan, credits, currency and time
    zone, read under RLS."""
    with acting.connection() as conn:
        return ok(read_me(conn, acting.user))


@router.put(
    "/settings",
    response_model=Envelope[Me],
    summary="Update the signed-in user's display name, locale and preferences",
    responses=documented(ME_EXAMPLE, errors={**NO_PROFILE, **PREFERENCES_REFUSED}),
    openapi_extra=json_body_example({"display_name": "Ana", "preferences": {"theme": None}}),
)
def put_settings(acting: ActingUser, body: SettingsUpdate) -> dict[str, Any]:
    """Fields sent replace the stored ones; a preference key sent as null goes back to its
    default; unknown keys are refused (422)."""
    sent = body.model_dump(exclude_unset=True)
    preferences = sent.get("preferences") or {}
    with acting.connection() as conn:
        updated = conn.execute(
            UPDATE_SETTINGS_SQL,
            {
                "set_display_name": "display_name" in sent,
                "display_name": sent.get("display_name"),
                "locale": sent.get("locale"),
                "preferences_set": Jsonb({k: v for k, v in preferences.items() if v is not None}),
                "preferences_cleared": [k for k, v in preferences.items() if v is None],
            },
        ).fetchone()
        if updated is None:
            raise ApiError(404, "profile_not_found", "No profile exists for this user")
        return ok(read_me(conn, acting.user))
