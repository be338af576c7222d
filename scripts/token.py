"""Mint a local Supabase-style access token for a user, so curl can call the edge.

Local only: it signs with the legacy HS256 secret that scripts/dev generated for this
checkout. Real projects' tokens come from Supabase Auth.
"""

import argparse
import sys
import time
import uuid
from typing import Any

import jwt
import psycopg

from scripts.devenv import load_dev_env

TOKEN_LIFETIME_SECONDS = 3600


def supabase_claims(
    user_id: uuid.UUID | str,
    *,
    email: str | None,
    issuer: str,
    lifetime_seconds: int = TOKEN_LIFETIME_SECONDS,
) -> dict[str, Any]:
    """The claims Supabase Auth puts in a signed-in user's access token."""
    now = int(time.time())
    return {
        "iss": issuer,
        "sub": str(user_id),
        "aud": "authenticated",
        "exp": now + lifetime_seconds,
        "iat": now,
        "email": email or "",
        "phone": "",
        "role": "authenticated",
        "aal": "aal1",
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
        "app_metadata": {"provider": "email", "providers": ["email"]},
        "user_metadata": {},
    }


def mint(*, user_id: uuid.UUID, email: str | None, supabase_url: str, secret: str) -> str:
    """A local HS256 access token, signed with the legacy secret."""
    issuer = f"{supabase_url.rstrip('/')}/auth/v1"
    return jwt.encode(supabase_claims(user_id, email=email, issuer=issuer), secret, "HS256")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("email", nargs="?", default="demo@growthbase.local")
    args = parser.parse_args(argv)
    env = load_dev_env()
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        row = conn.execute(
            "select id, email from auth.users where lower(email) = lower(%s)", (args.email,)
        ).fetchone()
    if row is None:
        print(f"no user with email {args.email}; run scripts/dev first", file=sys.stderr)
        return 1
    print(
        mint(
            user_id=row[0],
            email=row[1],
            supabase_url=env["SUPABASE_URL"],
            secret=env["SUPABASE_JWT_SECRET"],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
