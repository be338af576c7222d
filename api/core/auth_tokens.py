"""Verification of Supabase Auth access tokens.

Asymmetric tokens (ES256, RS256) are checked against the project's JWKS, cached for a bounded
time and refetched once when a token names an unknown key id (key rotation). HS256 tokens are
accepted only with the legacy JWT secret configured. Every failure is a 401 with its own code,
so clients can tell an expired session from a forged token; an unreachable JWKS is a 503, since
the token may well be fine.
"""

import uuid
from dataclasses import dataclass
from typing import Any

import jwt

from api.core.errors import ApiError

ASYMMETRIC_ALGORITHMS = frozenset({"ES256", "RS256"})
MAX_CACHED_KEYS = 16
# PyJWKClient raises the same PyJWKClientError for "kid not found" as for a JWKS it cannot use;
# only the message tells them apart (tests/core/test_auth_tokens.py pins this).
UNKNOWN_KID_MESSAGE = "Unable to find a signing key"
SIGNED_IN_ONLY = "This API only accepts a signed-in user's access token"


@dataclass(frozen=True)
class VerifiedUser:
    """The caller, once their token has been verified."""

    user_id: uuid.UUID
    claims: dict[str, Any]  # the full verified claims, as PostgREST puts them in request.jwt.claims


def unauthorized(code: str, message: str) -> ApiError:
    return ApiError(401, code, message)


class TokenVerifier:
    """Verifies access tokens the way PostgREST would, so the edge and the database agree."""

    def __init__(
        self,
        *,
        supabase_url: str,
        jwt_secret: str | None = None,
        audience: str = "authenticated",
        jwks_cache_seconds: int = 600,
        http_timeout_seconds: float = 5.0,
        jwks_refetch_cooldown_seconds: float = 10.0,
    ) -> None:
        self.issuer = f"{supabase_url.rstrip('/')}/auth/v1"
        self.audience = audience
        self.jwt_secret = jwt_secret
        self.jwks = jwt.PyJWKClient(
            f"{self.issuer}/.well-known/jwks.json",
            # The per-kid LRU cache never expires, so a key removed from the JWKS (revoked)
            # would stay trusted; caching the whole set for a bounded time is enough.
            cache_keys=False,
            max_cached_keys=MAX_CACHED_KEYS,
            cache_jwk_set=True,
            lifespan=max(jwks_cache_seconds, 1),
            # PyJWKClient skips the unknown-kid refetch for this long after any fetch: it bounds
            # how often forged kids can make us refetch, but also delays seeing a rotated key.
            cooldown_duration=jwks_refetch_cooldown_seconds,
            timeout=http_timeout_seconds,
        )

    def verify(self, token: str) -> VerifiedUser:
        """The signed-in user the token proves, or an ApiError (401, or 503 without the JWKS)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise unauthorized("token_invalid", "The access token is malformed") from error
        algorithm = header.get("alg")
        key = self.key_for(algorithm, header.get("kid"))
        claims = self.decode(token, key, str(algorithm))
        subject = claims.get("sub")
        if claims.get("role") != "authenticated" or not subject:
            raise unauthorized("token_subject_missing", SIGNED_IN_ONLY)
        try:
            user_id = uuid.UUID(str(subject))
        except ValueError as error:
            raise unauthorized("token_invalid", "The token's subject is not a user id") from error
        return VerifiedUser(user_id=user_id, claims=claims)

    def key_for(self, algorithm: object, kid: object) -> Any:
        """The key to check the signature with; the header's alg picks the path, never the key."""
        if algorithm == "HS256":
            if not self.jwt_secret:
                raise unauthorized("token_invalid", "HS256 tokens are not accepted")
            return self.jwt_secret
        if algorithm not in ASYMMETRIC_ALGORITHMS:
            raise unauthorized("token_invalid", "The token's signing algorithm is not accepted")
        if not isinstance(kid, str) or not kid:
            raise unauthorized("token_invalid", "The token names no signing key")
        try:
            signing_key = self.jwks.get_signing_key(kid)
        except (jwt.PyJWKClientConnectionError, jwt.PyJWKSetError, ValueError) as error:
            # ValueError: the endpoint answered, but not with JSON (json.load is not guarded).
            raise ApiError(
                503, "auth_unavailable", "The signing keys cannot be fetched; try again shortly"
            ) from error
        except jwt.PyJWKClientError as error:
            if UNKNOWN_KID_MESSAGE in str(error):
                raise unauthorized(
                    "token_key_unknown", "The token was signed by a key this project does not use"
                ) from error
            raise ApiError(
                503, "auth_unavailable", "The signing keys cannot be read; try again shortly"
            ) from error
        # PyJWK infers the algorithm from kty/crv when the JWK declares none. Without this check
        # an ES256 header naming an RSA key reaches PyJWT as a TypeError (a 500), not a 401.
        if signing_key.algorithm_name != algorithm:
            raise unauthorized("token_invalid", "The token's algorithm does not match its key")
        return signing_key.key

    def decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        """The verified claims; each PyJWT failure becomes its own stable code."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=0,
                options={
                    "require": ["exp", "sub", "aud", "iss"],
                    # PyJWT rejects an iat later than our clock, and leeway is 0: Supabase Auth's
                    # clock running a few ms ahead would refuse tokens used the second they are
                    # minted (right after sign-in). exp alone bounds a token's life.
                    "verify_iat": False,
                },
            )
        except jwt.ExpiredSignatureError as error:
            raise unauthorized("token_expired", "The access token has expired") from error
        except jwt.InvalidAudienceError as error:
            raise unauthorized("token_audience_invalid", "The token is not for this API") from error
        except jwt.InvalidIssuerError as error:
            raise unauthorized(
                "token_issuer_invalid", "The token was issued by another project"
            ) from error
        except jwt.MissingRequiredClaimError as error:
            if error.claim == "sub":
                raise unauthorized("token_subject_missing", SIGNED_IN_ONLY) from error
            raise unauthorized(
                "token_invalid", f"The token has no '{error.claim}' claim"
            ) from error
        except jwt.InvalidTokenError as error:
            raise unauthorized("token_invalid", "The access token is not valid") from error
        return claims
