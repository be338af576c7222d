"""Test data and identities: users shaped like Supabase Auth's, members, projects, credits,
and the check that the database refused with our error convention."""

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from api.core.db import become_user
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


@contextmanager
def refused(status: int, code: str) -> Iterator[None]:
    """The database refuses with our client error convention: SQLSTATE PT<status>, HINT code."""
    with pytest.raises(psycopg.Error) as caught:
        yield
    assert caught.value.sqlstate == f"PT{status}", caught.value.diag.message_primary
    assert caught.value.diag.message_hint == code


def add_member(conn: psycopg.Connection[Any], owner: User, role: str) -> User:
    """A new user who joined `owner`'s personal workspace with `role`, by invitation."""
    member = create_user(conn)
    with acting_as(conn, owner):
        token = conn.execute(
            "select token from public.invite_member(%s, %s, %s)",
            (owner.workspace_id, member.email, role),
        ).fetchone()["token"]
    with acting_as(conn, member):
        conn.execute("select public.accept_invitation(%s)", (token,))
    return member


def fund(conn: psycopg.Connection[Any], user: User, credits: int, tier: str = "team") -> None:
    conn.execute(
        "update public.workspaces set credits_remaining = %s, plan_tier = %s where id = %s",
        (credits, tier, user.workspace_id),
    )


def make_project(conn: psycopg.Connection[Any], user: User, name: str = "Shop") -> uuid.UUID:
    with acting_as(conn, user):
        row = one(
            conn,
            "insert into public.projects (workspace_id, name, type, website_url)"
            " values (%s, %s, 'eshop', 'https://shop.example') returning id",
            (user.workspace_id, name),
        )
    return uuid.UUID(str(row["id"]))


def balance(conn: psycopg.Connection[Any], user: User) -> int:
    row = one(
        conn, "select credits_remaining from public.workspaces where id = %s", (user.workspace_id,)
    )
    return int(row["credits_remaining"])


def ledger(conn: psycopg.Connection[Any], user: User) -> list[tuple[str, int]]:
    rows = conn.execute(
        "select reason, delta from public.credit_ledger where workspace_id = %s order by id",
        (user.workspace_id,),
    ).fetchall()
    return [(r["reason"], r["delta"]) for r in rows]


def wait_until_blocked(conn: psycopg.Connection[Any], pid: int) -> None:
    """Wait for a backend to be waiting on a lock: a condition, bounded so a bug fails fast."""
    deadline = time.monotonic() + 10
    while not conn.execute(
        "select coalesce(wait_event_type = 'Lock', false) as blocked"
        " from pg_stat_activity where pid = %s",
        (pid,),
    ).fetchone()["blocked"]:
        assert time.monotonic() < deadline, "the second transaction never waited for the lock"
        conn.execute("select pg_stat_clear_snapshot()")
