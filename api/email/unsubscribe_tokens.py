"""Signed unsubscribe links: bound to one contact of one workspace (and the recipient row the
link was mailed in), valid for a bounded time, verifiable without any stored state. A link that
does not verify raises `LinkError` (`link_invalid` or `link_expired`)."""

import time
from dataclasses import dataclass
from uuid import UUID

import jwt

from api.core.errors import CodedError

ALGORITHM = "HS256"
AUDIENCE = "growthbase:unsubscribe"


class LinkError(CodedError):
    """A link that does not verify: `link_invalid` or `link_expired`."""


@dataclass(frozen=True)
class UnsubscribeClaims:
    workspace_id: UUID
    contact_id: UUID
    recipient_id: UUID | None


def issue(
    secret: str,
    *,
    workspace_id: UUID,
    contact_id: UUID,
    recipient_id: UUID | None,
    valid_days: int,
    now: float | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims = {
        "aud": AUDIENCE,
        "ws": str(workspace_id),
        "sub": str(contact_id),
        "iat": issued,
        "exp": issued + valid_days * 86400,
    }
    if recipient_id is not None:
        claims["rid"] = str(recipient_id)
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify(secret: str, token: str) -> UnsubscribeClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"require": ["exp", "aud", "sub", "ws"]},
        )
        return UnsubscribeClaims(
            workspace_id=UUID(claims["ws"]),
            contact_id=UUID(claims["sub"]),
            recipient_id=UUID(claims["rid"]) if claims.get("rid") else None,
        )
    except jwt.ExpiredSignatureError as error:
        raise LinkError("link_expired", "This unsubscribe link has expired") from error
    except (jwt.InvalidTokenError, ValueError) as error:
        raise LinkError("link_invalid", "This unsubscribe link is not valid") from error
