"""The signed-in user's own view: profile, workspaces, and settings."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from api.core.auth import CurrentUser
from api.core.auth_tokens import VerifiedUser
from api.core.db import Connection, Database
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError

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


class Me(BaseModel):
    id: str
    email: str | None
    profile: Profile
    workspaces: list[Workspace]


PROFILE_SQL = """
select display_name, locale, preferences from public.profiles where id = (select auth.uid())
"""

WORKSPACES_SQL = """
select w.id::text, w.name, w.slug, m.role, w.plan_tier, w.credits_remaining, w.base_currency
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


@router.get("", response_model=Envelope[Me])
def get_me(request: Request, user: CurrentUser) -> dict[str, Any]:
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
        return ok(read_me(conn, user))


@router.put("/settings", response_model=Envelope[Me])
def put_settings(request: Request, user: CurrentUser, body: SettingsUpdate) -> dict[str, Any]:
    sent = body.model_dump(exclude_unset=True)
    preferences = sent.get("preferences") or {}
    database: Database = request.app.state.database
    with database.as_user(user.claims, request.method, request.url.path) as conn:
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
        return ok(read_me(conn, user))
