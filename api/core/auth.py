"""The request's signed-in user, as a FastAPI dependency."""

from typing import Annotated

from fastapi import Depends, Request

from api.core.auth_tokens import TokenVerifier, VerifiedUser
from api.core.errors import ApiError


def current_user(request: Request) -> VerifiedUser:
    """Verify the bearer token; every route that acts for a user depends on this."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "authentication_required",
            "Send a Supabase access token as 'Authorization: Bearer'",
        )
    verifier: TokenVerifier = request.app.state.tokens
    return verifier.verify(token.strip())


CurrentUser = Annotated[VerifiedUser, Depends(current_user)]
