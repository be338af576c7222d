"""A real HTTP server publishing a JWKS, and a signer for tokens shaped like Supabase's."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from scripts.token import supabase_claims
from tests.fakes.http_server import FakeHandler, serve

JWKS_PATH = "/auth/v1/.well-known/jwks.json"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private_key: Any

    @classmethod
    def generate(cls, alg: str) -> "SigningKey":
        key: Any = (
            ec.generate_private_key(ec.SECP256R1())
            if alg == "ES256"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        return cls(kid=uuid.uuid4().hex, alg=alg, private_key=key)

    def public_jwk(self) -> dict[str, Any]:
        algorithm = ECAlgorithm if self.alg == "ES256" else RSAAlgorithm
        jwk: dict[str, Any] = algorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]}


@dataclass
class JwksServer:
    """Serves whatever keys the test puts in `keys`, counting fetches."""

    base_url: str
    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/auth/v1"

    def claims(self, user_id: uuid.UUID | str, **overrides: Any) -> dict[str, Any]:
        claims = supabase_claims(user_id, email=f"{user_id}@example.test", issuer=self.issuer)
        claims.update(overrides)
        return {key: value for key, value in claims.items() if value is not None}

    def sign(self, claims: dict[str, Any], key: SigningKey | None = None) -> str:
        key = key or self.keys[0]
        return jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid})


@contextmanager
def serve_jwks(*keys: SigningKey) -> Iterator[JwksServer]:
    state = JwksServer(base_url="", keys=list(keys))

    class Handler(FakeHandler):
        def do_GET(self) -> None:
            if self.path != JWKS_PATH:
                self.send_error(404)
                return
            state.fetches += 1
            self.reply_json(200, {"keys": [key.public_jwk() for key in state.keys]})

    with serve(Handler) as base_url:
        state.base_url = base_url
        yield state
