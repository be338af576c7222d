"""Users and workspaces leaving, and invitations that reach people without an account: the
database decides, as the user, who may do what; Supabase Auth's admin API (through the
`supabase` client) deletes the user or sends its invite email."""

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from api.core.db import Database
from api.core.deps import ActingUser, ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import documented
from api.privacy.deps import OptionalCanceller, SubscriptionCanceller, Supabase
from api.privacy.supabase_admin import SupabaseAdminError

router = APIRouter(tags=["privacy"])
AUTH_ADMIN_FAILED = {502: {"auth_admin_failed": "Supabase Auth could not do it; try again"}}
NOT_CONFIGURED = {503: {"provider_not_configured": "Supabase's admin APIs are not configured"}}


def auth_admin_failed(error: SupabaseAdminError) -> ApiError:
    return ApiError(
        502,
        "auth_admin_failed",
        "Supabase Auth could not do it; try again",
        {"status": error.status, "code": error.code},
    )


class Deleted(BaseModel):
    deleted: bool


class SubscriptionCancellations(BaseModel):
    """The workspaces' Razorpay subscriptions, cancelled at Razorpay because they went."""

    cancelled: int = Field(description="Cancelled at Razorpay (or found ended already)")
    pending: int = Field(
        description="Not yet cancelled (Razorpay did not answer, or is not configured): "
        "the cron retries"
    )
    failed: int = Field(description="Razorpay refused, or holds it for another workspace")


class AccountDeleted(BaseModel):
    deleted: bool
    subscriptions: SubscriptionCancellations


class WorkspaceDeletion(BaseModel):
    workspace_id: UUID
    purge_after: datetime
    subscriptions: SubscriptionCancellations


NO_SUBSCRIPTIONS = {"cancelled": 0, "pending": 0, "failed": 0}


def cancel_subscriptions(
    database: Database, canceller: SubscriptionCanceller | None, workspace_ids: list[UUID]
) -> dict[str, int]:
    """Cancels at Razorpay, now, what the deletion queued for these workspaces; answers where
    every queued cancellation of them stands."""
    if canceller is not None and workspace_ids:
        canceller.cancel_for(workspace_ids)
    with database.as_service() as conn:
        rows = conn.execute(
            "select status, count(*)::integer as n from private.subscription_cancellations"
            " where workspace_id = any(%s) group by status",
            (workspace_ids,),
        ).fetchall()
    return {**NO_SUBSCRIPTIONS, **{row["status"]: row["n"] for row in rows}}


class NewInvitation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    role: Literal["owner", "admin", "member", "viewer"] = "member"


class Invitation(BaseModel):
    invitation_id: UUID
    token: str = Field(description="For the accept link, if you share it yourself")
    expires_at: datetime
    invite_email_sent: bool = Field(
        description="Supabase Auth mailed its invite (the address had no account)"
    )


@router.delete(
    "/api/v1/privacy/account",
    response_model=Envelope[AccountDeleted],
    summary="Delete my account",
    responses=documented(
        {"deleted": True, "subscriptions": {"cancelled": 1, "pending": 0, "failed": 0}},
        errors={
            409: {"sole_owner": "Transfer or delete the workspaces you alone own first"},
            **AUTH_ADMIN_FAILED,
            **NOT_CONFIGURED,
        },
    ),
)
def delete_account(
    acting: ActingUser,
    database: ServiceDatabase,
    supabase: Supabase,
    canceller: OptionalCanceller,
) -> dict[str, Any]:
    """The signed-in user leaves: refused with 409 `sole_owner` (naming the workspaces) while
    they are the only owner of a workspace others belong to. Supabase Auth then deletes the
    user; their memberships and profile go with it, their solo workspaces too (whose Razorpay
    subscriptions are cancelled), links to what they created become null, and the audit log
    keeps their actions under a pseudonym."""
    with acting.connection() as conn:
        blockers = conn.execute("select * from private.account_deletion_blockers()").fetchall()
        workspace_ids = [
            row["workspace_id"]
            for row in conn.execute(
                "select workspace_id from public.workspace_members where user_id = %s",
                (acting.user.user_id,),
            ).fetchall()
        ]
    if blockers:
        raise ApiError(
            409,
            "sole_owner",
            "Transfer or delete the workspaces you alone own first",
            [
                {
                    "workspace_id": str(row["workspace_id"]),
                    "name": row["name"],
                    "other_members": row["other_members"],
                }
                for row in blockers
            ],
        )
    try:
        supabase.delete_user(acting.user.user_id)
    except SupabaseAdminError as error:
        if error.status != 404:
            raise auth_admin_failed(error) from error
    with database.as_service() as conn:
        still = conn.execute(
            "select private.user_exists(%s) as still", (acting.user.user_id,)
        ).fetchone()
    if still is None or still["still"]:
        raise ApiError(502, "auth_admin_failed", "Supabase Auth could not do it; try again")
    return ok(
        {
            "deleted": True,
            "subscriptions": cancel_subscriptions(database, canceller, workspace_ids),
        }
    )


class MyData(BaseModel):
    """Everything Growthbase keeps about the signed-in user as a user."""

    generated_at: datetime
    account: dict[str, Any] = Field(description="Address, phone and sign-in times")
    profile: dict[str, Any] | None
    memberships: list[dict[str, Any]]
    invitations: list[dict[str, Any]] = Field(description="Invitations sent to their address")
    audit_log: list[dict[str, Any]] = Field(description="What they did, in every workspace")
    api_keys_created: list[dict[str, Any]]
    notifications: list[dict[str, Any]]
    access_requests_made: list[dict[str, Any]] = Field(
        description="Contact exports they asked for (not their contents)"
    )
    billing: dict[str, Any] = Field(
        description="`subscriptions_started` (the Razorpay subscriptions they started) and "
        "`razorpay_payloads` (stored Razorpay events naming them as payer: by their address or "
        "phone, or by the payment's email, contact or customer id on subscriptions they started)"
    )


MY_DATA_EXAMPLE = {
    "generated_at": "2026-12-09T10:00:00Z",
    "account": {
        "id": "2a9c7e15-3b4d-4f6e-8a1b-9c0d1e2f3a4b",
        "email": "dana@example.com",
        "phone": None,
        "created_at": "2026-11-01T08:00:00Z",
        "last_sign_in_at": "2026-12-09T09:55:00Z",
        "email_confirmed_at": "2026-11-01T08:01:00Z",
    },
    "profile": {"display_name": "Dana", "locale": "en", "preferences": {}},
    "memberships": [
        {
            "workspace_id": "0f7b2c1e-4c1d-4b8e-9a0e-3f6a2d9b8c71",
            "workspace_name": "Team",
            "role": "admin",
            "since": "2026-11-02T10:00:00Z",
            "workspace_deleted_at": None,
        }
    ],
    "invitations": [],
    "audit_log": [
        {
            "workspace_id": "0f7b2c1e-4c1d-4b8e-9a0e-3f6a2d9b8c71",
            "action": "export.requested",
            "target_type": "contact",
            "target_id": "5b0e8d6a-9c3f-4e21-8f4a-1d2c3b4a5e6f",
            "details": {},
            "request_id": "4cf7444e9e4c41d4b8f2fc97d1299f64",
            "ip": "203.0.113.7",
            "created_at": "2026-12-04T09:30:00Z",
        }
    ],
    "api_keys_created": [],
    "notifications": [],
    "access_requests_made": [],
    "billing": {"subscriptions_started": [], "razorpay_payloads": []},
}


@router.get(
    "/api/v1/privacy/me/data",
    response_model=Envelope[MyData],
    summary="Everything kept about me as a user",
    responses=documented(MY_DATA_EXAMPLE),
)
def my_data(acting: ActingUser) -> dict[str, Any]:
    """The signed-in user's own access request: their account, profile, memberships,
    invitations to their address, their entries in every workspace's audit log, the API keys
    they created, their notifications and the contact exports they asked for. The shops'
    contacts are not theirs to export here (an admin's contact export is)."""
    with acting.connection() as conn:
        row = conn.execute("select public.my_personal_data() as data").fetchone()
    assert row is not None
    return ok(row["data"])


@router.post(
    "/api/v1/privacy/workspaces/{workspace_id}/delete",
    response_model=Envelope[WorkspaceDeletion],
    summary="Delete a workspace (restorable for 30 days)",
    responses=documented(
        {
            "workspace_id": "0f7b2c1e-4c1d-4b8e-9a0e-3f6a2d9b8c71",
            "purge_after": "2027-01-03T09:30:00Z",
            "subscriptions": {"cancelled": 1, "pending": 0, "failed": 0},
        },
        errors={
            403: {"insufficient_role": "This needs the owner role or higher"},
            404: {"workspace_not_found": "Workspace not found"},
            409: {
                "workspace_deleted": "This workspace is already deleted",
                "personal_workspace": "A personal workspace goes with its account",
            },
        },
    ),
)
def delete_workspace(
    acting: ActingUser,
    database: ServiceDatabase,
    canceller: OptionalCanceller,
    workspace_id: UUID,
) -> dict[str, Any]:
    """Owners. Every member loses sight of it at once (members are told on the workspace's
    channel) and its Razorpay subscription is cancelled at once (the cron retries while
    Razorpay does not answer); an owner may restore it for 30 days, after which the retention
    job purges it. A restored workspace is on the free plan until it subscribes again."""
    with acting.connection() as conn:
        row = conn.execute(
            "select public.delete_workspace(%s) as purge_after", (workspace_id,)
        ).fetchone()
    assert row is not None
    return ok(
        {
            "workspace_id": workspace_id,
            "purge_after": row["purge_after"],
            "subscriptions": cancel_subscriptions(database, canceller, [workspace_id]),
        }
    )


@router.post(
    "/api/v1/privacy/workspaces/{workspace_id}/restore",
    response_model=Envelope[Deleted],
    summary="Restore a deleted workspace",
    responses=documented(
        {"deleted": False},
        errors={
            403: {"insufficient_role": "This needs the owner role or higher"},
            404: {"workspace_not_found": "Workspace not found"},
            409: {"workspace_not_deleted": "This workspace is not deleted"},
        },
    ),
)
def restore_workspace(acting: ActingUser, workspace_id: UUID) -> dict[str, Any]:
    """Owners, within the 30 days."""
    with acting.connection() as conn:
        conn.execute("select public.restore_workspace(%s)", (workspace_id,))
    return ok({"deleted": False})


@router.post(
    "/api/v1/privacy/workspaces/{workspace_id}/invitations",
    status_code=201,
    response_model=Envelope[Invitation],
    summary="Invite someone, by Supabase's invite email if they have no account",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/json": {"example": {"email": "dana@example.com", "role": "member"}}
            }
        }
    },
    responses=documented(
        {
            "invitation_id": "6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
            "token": "q3Xv0m2T8yK1bZ4rA7cW5eN9uP6sL0dF",
            "expires_at": "2026-12-11T09:30:00Z",
            "invite_email_sent": True,
        },
        status=201,
        errors={
            402: {"plan_limit_reached": "Your plan allows 3 seats; upgrade to add more"},
            403: {"insufficient_role": "This needs the admin role or higher"},
            404: {"workspace_not_found": "Workspace not found"},
            409: {"already_member": "That person is already a member"},
            422: {"invalid_email": "That is not an email address"},
            **AUTH_ADMIN_FAILED,
            **NOT_CONFIGURED,
        },
    ),
)
def invite(
    acting: ActingUser,
    database: ServiceDatabase,
    supabase: Supabase,
    workspace_id: UUID,
    body: NewInvitation,
) -> dict[str, Any]:
    """Admins and owners (owners to invite owners). The invitation is made as the caller; when
    the address has no account yet, Supabase Auth sends its invite email, and the invitation's
    token rides in the new user's metadata so the app can accept it once they have signed in."""
    with acting.connection() as conn:
        row = conn.execute(
            "select * from public.invite_member(%s, %s, %s)", (workspace_id, body.email, body.role)
        ).fetchone()
    assert row is not None
    with database.as_service() as conn:
        known = conn.execute(
            "select private.email_has_account(%s) as known", (body.email,)
        ).fetchone()
    sent = False
    if known is not None and not known["known"]:
        try:
            supabase.invite_user(body.email, None, {"workspace_invitation": row["token"]})
            sent = True
        except SupabaseAdminError as error:
            if error.code != "email_exists":
                raise auth_admin_failed(error) from error
    return ok(
        {
            "invitation_id": row["invitation_id"],
            "token": row["token"],
            "expires_at": row["expires_at"],
            "invite_email_sent": sent,
        }
    )
