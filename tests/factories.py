"""Users and identities for tests, shaped like Supabase Auth's."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api.db import become_user
from scripts.token import supabase_claims

LOCAL_ISSUER = "http://127.0.0.1:54321/auth/v1"


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    workspace_id: uuid.UUID  # the personal workspace that signup created

    @property
    def claims(self) -> dict[str, Any]:
        return supabase_claims(self.id, email=self.email, issuer=LOCAL_ISSUER)


def create_user(
    conn: psycopg.Connection[Any], email: str | None = None, full_name: str | None = None
) -> User:
    """Sign a user up the way Supabase Auth does: a row in auth.users, committed."""
    user_id = uuid.uuid4()
    address = email or f"user-{user_id.hex[:10]}@example.test"
    with conn.transaction():
        conn.execute(
            "insert into auth.users (id, aud, role, email, email_confirmed_at,"
            " raw_app_meta_data, raw_user_meta_data)"
            " values (%s, 'authenticated', 'authenticated', %s, now(), %s, %s)",
            (
                user_id,
                address,
                Jsonb({"provider": "email", "providers": ["email"]}),
                Jsonb({"full_name": full_name} if full_name else {}),
            ),
        )
        row = conn.execute(
            "select workspace_id from public.workspace_members where user_id = %s", (user_id,)
        ).fetchone()
    assert row is not None
    return User(user_id, address, row["workspace_id"] if isinstance(row, dict) else row[0])


@contextmanager
def acting_as(conn: psycopg.Connection[Any], user: User) -> Iterator[psycopg.Connection[Any]]:
    """One transaction as `user`, set up exactly as PostgREST (and our edge) sets it up."""
    with conn.transaction():
        become_user(conn, user.claims, "POST", "/rpc")
        yield conn


@contextmanager
def acting_as_anon(conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """One transaction as the Data API's anonymous role (the anon key, no user)."""
    with conn.transaction():
        conn.execute(
            "select set_config('role', 'anon', true),"
            " set_config('request.jwt.claims', '{\"role\": \"anon\"}', true)"
        )
        yield conn


def one(conn: psycopg.Connection[Any], query: str, params: Any = ()) -> dict[str, Any]:
    """The single row a query must return."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return dict(row)
