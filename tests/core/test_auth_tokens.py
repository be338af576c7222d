"""Supabase access-token verification against a JWKS served over real HTTP."""

import base64
import hashlib
import hmac
import json
import socket
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from api.core.auth_tokens import TokenVerifier
from api.core.errors import ApiError
from tests.fakes.http_server import FakeHandler, serve
from tests.fakes.jwks import JwksServer, SigningKey, serve_jwks

SECRET = "legacy-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def es256() -> SigningKey:
    return SigningKey.generate("ES256")


@pytest.fixture(scope="module")
def rs256() -> SigningKey:
    return SigningKey.generate("RS256")


@pytest.fixture
def jwks(es256: SigningKey, rs256: SigningKey) -> Iterator[JwksServer]:
    with serve_jwks(es256, rs256) as server:
        yield server


def verifier(server: JwksServer, secret: str | None = SECRET) -> TokenVerifier:
    return TokenVerifier(
        supabase_url=server.base_url, jwt_secret=secret, jwks_refetch_cooldown_seconds=0
    )


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def refused(check: TokenVerifier, token: str) -> tuple[int, str]:
    with pytest.raises(ApiError) as caught:
        check.verify(token)
    assert token not in caught.value.message
    return caught.value.status, caught.value.code


@pytest.mark.parametrize("key_name", ["es256", "rs256"])
def test_valid_asymmetric_tokens_verify(
    jwks: JwksServer, key_name: str, request: pytest.FixtureRequest
) -> None:
    key: SigningKey = request.getfixturevalue(key_name)
    user_id = uuid.uuid4()
    claims = jwks.claims(user_id)
    user = verifier(jwks).verify(jwks.sign(claims, key))
    assert user.user_id == user_id
    assert user.claims == claims


def test_an_iat_a_little_ahead_of_our_clock_is_accepted(jwks: JwksServer) -> None:
    """Supabase Auth's clock may run ahead of ours; a token used at once must still work."""
    user_id = uuid.uuid4()
    token = jwks.sign(jwks.claims(user_id, iat=int(time.time()) + 5))
    assert verifier(jwks).verify(token).user_id == user_id


def test_the_jwks_is_cached(jwks: JwksServer) -> None:
    check = verifier(jwks)
    for _ in range(3):
        check.verify(jwks.sign(jwks.claims(uuid.uuid4())))
    assert jwks.fetches == 1


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"exp": 1_600_000_000, "iat": 1_599_990_000}, "token_expired"),
        ({"aud": "anon"}, "token_audience_invalid"),
        ({"iss": "https://other-project.supabase.co/auth/v1"}, "token_issuer_invalid"),
        ({"role": "anon", "sub": None}, "token_subject_missing"),
        ({"role": "service_role"}, "token_subject_missing"),
        ({"exp": None}, "token_invalid"),
        ({"sub": "not-a-uuid"}, "token_invalid"),
    ],
)
def test_bad_claims_are_401(jwks: JwksServer, overrides: dict[str, object], code: str) -> None:
    token = jwks.sign(jwks.claims(uuid.uuid4(), **overrides))
    assert refused(verifier(jwks), token) == (401, code)


def test_a_tampered_payload_is_401(jwks: JwksServer) -> None:
    header, _, signature = jwks.sign(jwks.claims(uuid.uuid4())).split(".")
    forged_claims = jwks.claims(uuid.uuid4(), app_metadata={"role": "admin"})
    payload = b64url(json.dumps(forged_claims).encode())
    assert refused(verifier(jwks), f"{header}.{payload}.{signature}") == (401, "token_invalid")


def test_a_key_that_reuses_a_published_kid_is_401(jwks: JwksServer, rs256: SigningKey) -> None:
    impostor = SigningKey(
        kid=rs256.kid, alg="RS256", private_key=SigningKey.generate("RS256").private_key
    )
    token = jwks.sign(jwks.claims(uuid.uuid4()), impostor)
    assert refused(verifier(jwks), token) == (401, "token_invalid")


def test_an_algorithm_other_than_the_keys_is_401(jwks: JwksServer, rs256: SigningKey) -> None:
    """An ES256 header naming the RSA key's kid: refused as a 401, not a TypeError in PyJWT."""
    stranger = SigningKey(
        kid=rs256.kid, alg="ES256", private_key=SigningKey.generate("ES256").private_key
    )
    token = jwks.sign(jwks.claims(uuid.uuid4()), stranger)
    assert refused(verifier(jwks), token) == (401, "token_invalid")


class UndeclaredAlgKey(SigningKey):
    """A JWK without `alg`, which JWKS endpoints may publish: PyJWK infers it from kty/crv."""

    def public_jwk(self) -> dict[str, Any]:
        return {name: value for name, value in super().public_jwk().items() if name != "alg"}


@pytest.mark.parametrize("alg", ["ES256", "RS256"])
def test_a_jwk_without_alg_verifies_its_own_algorithm(jwks: JwksServer, alg: str) -> None:
    generated = SigningKey.generate(alg)
    key = UndeclaredAlgKey(kid=generated.kid, alg=alg, private_key=generated.private_key)
    jwks.keys = [key]
    user_id = uuid.uuid4()
    assert verifier(jwks).verify(jwks.sign(jwks.claims(user_id), key)).user_id == user_id
    other = "RS256" if alg == "ES256" else "ES256"
    impostor = SigningKey(
        kid=key.kid, alg=other, private_key=SigningKey.generate(other).private_key
    )
    token = jwks.sign(jwks.claims(user_id), impostor)
    assert refused(verifier(jwks), token) == (401, "token_invalid")


def test_an_unknown_kid_refetches_once_then_is_401(jwks: JwksServer) -> None:
    check = verifier(jwks)
    check.verify(jwks.sign(jwks.claims(uuid.uuid4())))
    stranger = SigningKey.generate("ES256")
    token = jwks.sign(jwks.claims(uuid.uuid4()), stranger)
    assert refused(check, token) == (401, "token_key_unknown")
    assert jwks.fetches == 2


def test_a_rotated_key_is_found_by_the_refetch(jwks: JwksServer) -> None:
    check = verifier(jwks)
    check.verify(jwks.sign(jwks.claims(uuid.uuid4())))
    rotated = SigningKey.generate("ES256")
    jwks.keys.append(rotated)
    user_id = uuid.uuid4()
    assert check.verify(jwks.sign(jwks.claims(user_id), rotated)).user_id == user_id
    assert jwks.fetches == 2


def test_unknown_kids_cannot_make_us_refetch_during_the_cooldown(jwks: JwksServer) -> None:
    check = TokenVerifier(supabase_url=jwks.base_url, jwks_refetch_cooldown_seconds=3600)
    check.verify(jwks.sign(jwks.claims(uuid.uuid4())))
    for _ in range(5):
        token = jwks.sign(jwks.claims(uuid.uuid4()), SigningKey.generate("ES256"))
        assert refused(check, token) == (401, "token_key_unknown")
    assert jwks.fetches == 1


def test_hs256_is_the_legacy_fallback(jwks: JwksServer) -> None:
    user_id = uuid.uuid4()
    token = jwt.encode(jwks.claims(user_id), SECRET, algorithm="HS256")
    assert verifier(jwks).verify(token).user_id == user_id
    assert jwks.fetches == 0


def test_hs256_is_refused_without_a_configured_secret(jwks: JwksServer) -> None:
    token = jwt.encode(jwks.claims(uuid.uuid4()), SECRET, algorithm="HS256")
    assert refused(verifier(jwks, secret=None), token) == (401, "token_invalid")


def test_hs256_with_another_secret_is_refused(jwks: JwksServer) -> None:
    token = jwt.encode(jwks.claims(uuid.uuid4()), "another-secret-" + SECRET, algorithm="HS256")
    assert refused(verifier(jwks), token) == (401, "token_invalid")


@pytest.mark.parametrize("alg", ["none", "HS512"])
def test_other_algorithms_are_refused(jwks: JwksServer, alg: str) -> None:
    claims = jwks.claims(uuid.uuid4())
    key = SECRET * 2 if alg != "none" else ""
    token = jwt.encode(claims, key, algorithm=alg)
    assert refused(verifier(jwks), token) == (401, "token_invalid")


def test_hs256_signed_with_the_public_key_is_refused(jwks: JwksServer, rs256: SigningKey) -> None:
    """The classic algorithm-confusion attack: the public key used as an HMAC secret."""
    public_pem = rs256.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": rs256.kid}).encode())
    payload = b64url(json.dumps(jwks.claims(uuid.uuid4())).encode())
    signature = hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    token = f"{header}.{payload}.{b64url(signature)}"
    assert refused(verifier(jwks, secret=None), token) == (401, "token_invalid")
    assert refused(verifier(jwks), token) == (401, "token_invalid")


def test_an_unreachable_jwks_is_503(jwks: JwksServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check = TokenVerifier(supabase_url=f"http://127.0.0.1:{port}", http_timeout_seconds=2)
    token = jwks.sign(jwks.claims(uuid.uuid4()))
    assert refused(check, token) == (503, "auth_unavailable")


def body_handler(status: int, body: bytes) -> type[BaseHTTPRequestHandler]:
    """Answers every request with one fixed response."""

    class Handler(FakeHandler):
        def do_GET(self) -> None:
            self.reply(status, body)

    return Handler


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, b"<html>not json</html>"),
        (200, b"[]"),
        (200, b'{"keys": []}'),
        (200, b'{"keys": [{"kty": "oct", "k": "c2VjcmV0", "use": "enc", "kid": "x"}]}'),
        (500, b'{"error": "boom"}'),
    ],
)
def test_an_unusable_jwks_response_is_503(jwks: JwksServer, status: int, body: bytes) -> None:
    token = jwks.sign(jwks.claims(uuid.uuid4()))
    with serve(body_handler(status, body)) as base_url:
        check = TokenVerifier(supabase_url=base_url, jwks_refetch_cooldown_seconds=0)
        assert refused(check, token) == (503, "auth_unavailable")
