"""A real local HTTP server speaking the part of Supabase Auth's admin API the edge uses, as
supabase-py's admin client calls it, and doing to the database what GoTrue does:

- `DELETE /auth/v1/admin/users/{id}` with `{"should_soft_delete": false}` deletes the
  auth.users row and answers `{}`; an unknown user is 404 `user_not_found`; a delete the
  database refuses is GoTrue's 500 "Database error deleting user".
- `POST /auth/v1/invite?redirect_to=…` with `{"email", "data"}` creates the invited user
  (invited_at set, `data` as user metadata) and answers the User; an address with a confirmed
  account is 422 `email_exists`.

Both need the project's secret key (the same one the Storage fake takes) as `apiKey` and
`Authorization: Bearer`. Errors are GoTrue's JSON
`{"code", "error_code", "msg"}`."""

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.types.json import Jsonb

from tests.fakes.http_server import serve
from tests.fakes.storage_server import SERVICE_KEY

__all__ = ["SERVICE_KEY", "AuthServer", "serve_auth"]
USERS = "/auth/v1/admin/users/"


@dataclass
class AuthServer:
    database_url: str
    base_url: str = ""
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    fail_with: int | None = None  # answer every call with this status (an outage)


def auth_handler(server: AuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def answer(self, status: int, body: Any) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def error(self, status: int, code: str, message: str) -> None:
            self.answer(status, {"code": status, "error_code": code, "msg": message})

        def body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def authorized(self) -> bool:
            return (
                self.headers.get("apiKey") == SERVICE_KEY
                and self.headers.get("Authorization") == f"Bearer {SERVICE_KEY}"
            )

        def do_DELETE(self) -> None:
            path = urlsplit(self.path).path
            sent = self.body()
            server.requests.append(("DELETE", path, sent))
            if not self.authorized():
                self.error(401, "no_authorization", "This endpoint requires a valid Bearer token")
                return
            if server.fail_with:
                self.error(server.fail_with, "unexpected_failure", "Unexpected failure")
                return
            if not path.startswith(USERS):
                self.error(404, "not_found", "Not found")
                return
            user_id = path[len(USERS) :]
            try:
                with psycopg.connect(server.database_url, autocommit=True) as conn:
                    gone = conn.execute("delete from auth.users where id = %s", (user_id,))
            except psycopg.Error:
                self.error(500, "unexpected_failure", "Database error deleting user")
                return
            if gone.rowcount == 0:
                self.error(404, "user_not_found", "User not found")
                return
            self.answer(200, {})

        def do_POST(self) -> None:
            split = urlsplit(self.path)
            sent = self.body()
            server.requests.append(("POST", self.path, sent))
            if not self.authorized():
                self.error(401, "no_authorization", "This endpoint requires a valid Bearer token")
                return
            if server.fail_with:
                self.error(server.fail_with, "unexpected_failure", "Unexpected failure")
                return
            if split.path != "/auth/v1/invite" or "email" not in sent:
                self.error(404, "not_found", "Not found")
                return
            email = str(sent["email"]).lower()
            with psycopg.connect(server.database_url, autocommit=True) as conn:
                existing = conn.execute(
                    "select email_confirmed_at is not null from auth.users where lower(email) = %s",
                    (email,),
                ).fetchone()
                if existing is not None and existing[0]:
                    self.error(
                        422,
                        "email_exists",
                        "A user with this email address has already been registered",
                    )
                    return
                user_id = uuid.uuid4()
                if existing is None:
                    conn.execute(
                        "insert into auth.users (id, aud, role, email, invited_at,"
                        " raw_app_meta_data, raw_user_meta_data)"
                        " values (%s, 'authenticated', 'authenticated', %s, now(), %s, %s)",
                        (
                            user_id,
                            email,
                            Jsonb({"provider": "email", "providers": ["email"]}),
                            Jsonb(sent.get("data") or {}),
                        ),
                    )
                row = conn.execute(
                    "select id, aud, role, email, invited_at, created_at, updated_at,"
                    " raw_app_meta_data, raw_user_meta_data from auth.users"
                    " where lower(email) = %s",
                    (email,),
                ).fetchone()
            assert row is not None
            self.answer(
                200,
                {
                    "id": str(row[0]),
                    "aud": row[1],
                    "role": row[2],
                    "email": row[3],
                    "invited_at": row[4].isoformat(),
                    "confirmation_sent_at": row[4].isoformat(),
                    "created_at": row[5].isoformat(),
                    "updated_at": row[6].isoformat(),
                    "app_metadata": row[7],
                    "user_metadata": row[8],
                    "identities": [],
                    "is_anonymous": False,
                },
            )

    return Handler


@contextmanager
def serve_auth(database_url: str) -> Iterator[AuthServer]:
    server = AuthServer(database_url)
    with serve(auth_handler(server)) as url:
        server.base_url = url
        yield server
