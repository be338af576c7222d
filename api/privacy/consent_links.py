"""Signed links a contact follows without signing in: the double opt-in confirmation (one
purpose) and the preference page. Bound to one contact of one workspace and to their kind,
valid for a bounded time, verifiable without stored state; signed with the same secret as
unsubscribe links (EMAIL_LINK_SECRET) under their own audience, so neither can stand in for
the other."""

import time
from dataclasses import dataclass
from typing import Literal
from uuid import UUID

import jwt

from api.core.errors import ApiError

ALGORITHM = "HS256"
AUDIENCE = "growthbase:consent"
Kind = Literal["confirm", "preferences"]
VALID_DAYS: dict[str, int] = {"confirm": 7, "preferences": 365}


@dataclass(frozen=True)
class ConsentLink:
    workspace_id: UUID
    contact_id: UUID
    kind: Kind
    purpose: str | None
    expires_at: int


def issue(
    secret: str,
    *,
    workspace_id: UUID,
    contact_id: UUID,
    kind: Kind,
    purpose: str | None = None,
    now: float | None = None,
) -> tuple[str, int]:
    """The token and when it expires (epoch seconds)."""
    issued = int(now if now is not None else time.time())
    expires = issued + VALID_DAYS[kind] * 86400
    claims: dict[str, object] = {
        "aud": AUDIENCE,
        "ws": str(workspace_id),
        "sub": str(contact_id),
        "kind": kind,
        "iat": issued,
        "exp": expires,
    }
    if purpose is not None:
        claims["purpose"] = purpose
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires


def verify(secret: str, token: str, kind: Kind) -> ConsentLink:
    """The link's claims, or 410 link_expired / 400 link_invalid (forged, altered, of another
    kind or audience)."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "aud", "sub", "ws", "kind"]},
        )
        if claims["kind"] != kind:
            raise jwt.InvalidTokenError("another kind of link")
        return ConsentLink(
            workspace_id=UUID(claims["ws"]),
            contact_id=UUID(claims["sub"]),
            kind=kind,
            purpose=claims.get("purpose"),
            expires_at=int(claims["exp"]),
        )
    except jwt.ExpiredSignatureError as error:
        raise ApiError(410, "link_expired", "This link has expired; ask for a new one") from error
    except (jwt.InvalidTokenError, ValueError, KeyError, TypeError) as error:
        raise ApiError(400, "link_invalid", "This link is not valid") from error
