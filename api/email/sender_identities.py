"""Sender identities: admins register a domain or address, the edge creates it in SES and
stores what SES says (verified, and the DKIM records the owner must publish in DNS).

The database registers the identity first (role check, one workspace per identity), then SES
is called outside any transaction. If SES fails, the identity stays registered and unverified;
posting it again retries the SES side (registration and SES creation are both idempotent).

SES failures answer:
- 503 `provider_not_configured` when SES is not configured;
- 422 `identity_rejected` when SES refuses the identity itself (`BadRequestException`);
- 502 `provider_error` for anything else (throttling, outages, an unreachable endpoint, bad
  credentials); `details.retryable` says whether trying again later may help.
"""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field

from api.core.action_quotas import take_workspace_quota
from api.core.db import Database
from api.core.deps import ActingUser, ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import (
    RATE_LIMITED,
    WORKSPACE_NOT_FOUND,
    documented,
    insufficient_role,
    json_body_example,
)
from api.email.deps import Dmarc, Ses
from api.email.dmarc import DmarcLookup
from api.email.errors import api_error
from api.email.ses import IdentityState, SesError

router = APIRouter(prefix="/api/v1/email/identities", tags=["email"])

SELECT_IDENTITY = (
    "select id, workspace_id, identity, kind, verified, dkim_status, dkim_records, dmarc,"
    " mail_from_domain, mail_from_status, last_checked_at, created_at, updated_at"
    " from public.sender_identities where id = %s"
)


class NewSenderIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace_id: UUID
    identity: Annotated[str, Field(min_length=4, max_length=320, pattern=r"^[^\x00-\x1f\x7f]+$")]


class DkimRecord(BaseModel):
    """A DNS record the domain's owner publishes so SES can sign its mail (Easy DKIM)."""

    type: Literal["CNAME"]
    name: str
    value: str


class DmarcState(BaseModel):
    """What DNS says of the domain's DMARC (SES does not report it)."""

    status: Literal["found", "missing", "unknown"] = Field(
        description="found; missing (no record: Gmail and Yahoo refuse bulk mail without one); "
        "unknown (the lookup failed)"
    )
    domain: str | None = Field(description="Where the record was found (the domain or a parent)")
    policy: Literal["none", "quarantine", "reject"] | None
    subdomain_policy: Literal["none", "quarantine", "reject"] | None
    adkim: Literal["r", "s"] = Field(description="DKIM alignment asked: relaxed or strict")
    aspf: Literal["r", "s"]
    record: str | None
    error: str | None


class SenderIdentity(BaseModel):
    id: UUID
    workspace_id: UUID
    identity: str = Field(description="The domain or address, lower-cased as stored")
    kind: Literal["domain", "email_address"]
    verified: bool = Field(description="Whether SES lets the workspace send from it")
    dkim_status: str | None = Field(
        description="SES's DKIM status: PENDING, SUCCESS, FAILED, TEMPORARY_FAILURE or "
        "NOT_STARTED; null until SES has answered"
    )
    dkim_records: list[DkimRecord]
    dmarc: DmarcState | None = Field(
        description="The domain's DMARC record as DNS answered when the identity was last "
        "registered or refreshed; null before"
    )
    mail_from_domain: str | None = Field(
        description="The custom MAIL FROM domain SES reports (SPF aligned with the From domain "
        "once its status is SUCCESS); null: SES's own, whose SPF is not aligned"
    )
    mail_from_status: str | None = Field(
        description="SES's MailFromDomainStatus: PENDING, SUCCESS, FAILED or TEMPORARY_FAILURE"
    )
    last_checked_at: datetime | None = Field(description="When SES was last asked; null if never")
    created_at: datetime
    updated_at: datetime


IDENTITY_EXAMPLE = {
    "id": "9e4c1b7a-2f3d-4a5e-8b6c-7d0e1f2a3b4c",
    "workspace_id": "3f2a9d4e-8b1c-4e7f-a6d5-0c9b8e7f6a5d",
    "identity": "shop.example",
    "kind": "domain",
    "verified": False,
    "dkim_status": "PENDING",
    "dmarc": {
        "status": "found",
        "domain": "shop.example",
        "policy": "none",
        "subdomain_policy": None,
        "adkim": "r",
        "aspf": "r",
        "record": "v=DMARC1; p=none; rua=mailto:dmarc@shop.example",
        "error": None,
    },
    "mail_from_domain": None,
    "mail_from_status": None,
    "dkim_records": [
        {
            "type": "CNAME",
            "name": f"{token}._domainkey.shop.example",
            "value": f"{token}.dkim.amazonses.com",
        }
        for token in (
            "ubvmbt5ajtkvxfwkfncsq3yjpo3qitxw",
            "dhxx5ahyeilffnwkbw4osf4hrcbdm3eh",
            "4c6bq2mqwrthjbxkjl5oqh7yo2ksrnff",
        )
    ],
    "last_checked_at": "2026-11-23T08:00:02.418Z",
    "created_at": "2026-11-23T08:00:01.902Z",
    "updated_at": "2026-11-23T08:00:02.418Z",
}
SES_ERRORS = {
    **RATE_LIMITED,
    422: {"identity_rejected": "SES refused the identity: Domain example.com is not allowed"},
    502: {"provider_error": "Amazon SES could not be reached or failed; try again"},
    503: {"provider_not_configured": "Amazon SES is not configured"},
}
REGISTER_ERRORS = {
    **SES_ERRORS,
    **insufficient_role("admin"),
    **WORKSPACE_NOT_FOUND,
    409: {
        "identity_taken": "Another workspace has registered this sender or its domain",
        "too_many_unverified_identities": "Verify or remove one of your five unverified "
        "senders first",
        # Another workspace's lapsed identity it still has a live campaign on, not released.
        "identity_in_use": "A scheduled, sending or paused campaign uses this sender",
        "conflict": "That conflicts with an existing record",
    },
    422: {
        **SES_ERRORS[422],
        "invalid_input": "Not a domain or email address",
    },
}
REFRESH_ERRORS = {
    **SES_ERRORS,
    404: {"identity_not_found": "Sender identity not found"},
}


def identity_domain(identity: str) -> str:
    return identity.rsplit("@", 1)[-1]


def save_state(
    database: Database, identity_id: UUID, state: IdentityState, dmarc: DmarcLookup, domain: str
) -> dict[str, Any]:
    """Records SES's answer and the domain's DMARC from DNS (service role: members may not
    write verification state) and answers the stored row."""
    found = dmarc.lookup(domain)
    with database.as_service() as conn:
        conn.execute(
            "select private.save_sender_identity(%s, %s, %s, %s)",
            (identity_id, state.verified, state.dkim_status, Jsonb(state.dkim_records)),
        )
        conn.execute(
            "select private.save_sender_alignment(%s, %s, %s, %s)",
            (
                identity_id,
                Jsonb(found.as_json()),
                state.mail_from_domain,
                state.mail_from_status,
            ),
        )
        row = conn.execute(SELECT_IDENTITY, (identity_id,)).fetchone()
    assert row is not None
    return dict(row)


@router.post(
    "",
    status_code=201,
    response_model=Envelope[SenderIdentity],
    summary="Register a sending domain or address and create it in SES",
    responses=documented(IDENTITY_EXAMPLE, errors=REGISTER_ERRORS, status=201),
    openapi_extra=json_body_example(
        {"workspace_id": "3f2a9d4e-8b1c-4e7f-a6d5-0c9b8e7f6a5d", "identity": "shop.example"}
    ),
)
def register_identity(
    body: NewSenderIdentity, ses: Ses, dmarc: Dmarc, acting: ActingUser, database: ServiceDatabase
) -> dict[str, Any]:
    """Admins and owners register a domain or address for their workspace; the answer carries
    the DKIM records to publish in DNS. Registering again is harmless and retries SES after a
    failure; each call spends one request of the workspace's `sender_identity` limit."""
    with acting.connection() as conn:
        take_workspace_quota(conn, body.workspace_id, "sender_identity")
        created = conn.execute(
            "select public.register_sender_identity(%s, %s) as id",
            (body.workspace_id, body.identity),
        ).fetchone()
        assert created is not None
        # The database normalises the identity; SES must get the same spelling.
        registered = conn.execute(
            "select id, identity, last_checked_at from public.sender_identities where id = %s",
            (created["id"],),
        ).fetchone()
    assert registered is not None
    try:
        # A row that never recorded SES's answer did not create what SES may already hold
        # (another workspace's identity, since removed here): it starts afresh in SES, with new
        # DKIM tokens, rather than inherit that identity's verification.
        state = ses.create_identity(
            registered["identity"], adopt_existing=registered["last_checked_at"] is not None
        )
    except SesError as failure:
        raise api_error(failure) from failure
    return ok(
        save_state(
            database, registered["id"], state, dmarc, identity_domain(registered["identity"])
        )
    )


@router.post(
    "/{identity_id}/refresh",
    response_model=Envelope[SenderIdentity],
    summary="Ask SES again whether a sender identity is verified",
    responses=documented(
        {**IDENTITY_EXAMPLE, "verified": True, "dkim_status": "SUCCESS"}, errors=REFRESH_ERRORS
    ),
)
def refresh_identity(
    identity_id: UUID, ses: Ses, dmarc: Dmarc, acting: ActingUser, database: ServiceDatabase
) -> dict[str, Any]:
    """Any member may ask, once the DNS records are published; others get 404. The domain's
    DMARC record is looked up again too. Each call spends one request of the workspace's
    `sender_identity` limit."""
    with acting.connection() as conn:
        found = conn.execute(
            "select identity, workspace_id from public.sender_identities where id = %s",
            (identity_id,),
        ).fetchone()
        if found is None:
            raise ApiError(404, "identity_not_found", "Sender identity not found")
        take_workspace_quota(conn, found["workspace_id"], "sender_identity")
    try:
        state = ses.identity_state(found["identity"])
    except SesError as failure:
        raise api_error(failure) from failure
    return ok(save_state(database, identity_id, state, dmarc, identity_domain(found["identity"])))
