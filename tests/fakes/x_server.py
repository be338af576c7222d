"""A local stand-in for the X API v2 (docs.x.com): `GET /2/users/me` and
`POST /2/dm_conversations/with/{participant_id}/messages` (answers `{"data": {dm_conversation_id,
dm_event_id}}`), problem-details errors (`{"title", "detail", "type", "status"}`) and
`x-rate-limit-reset` on 429; direct-message media served as ton.twitter.com serves them
(`GET /1.1/ton/data/dm/…` with the user's token). Also Account Activity deliveries and their
signature."""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http_server import FakeHandler, serve

ACCOUNT_ID = "4337869213"
TOKEN = "x-user-token-" + uuid.uuid4().hex

PROBLEMS: dict[int, dict[str, Any]] = {
    401: {"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"},
    403: {
        "title": "Forbidden",
        "type": "about:blank",
        "status": 403,
        "detail": "You are not permitted to send Direct Messages to this user.",
    },
    429: {
        "title": "Too Many Requests",
        "type": "about:blank",
        "status": 429,
        "detail": "Too Many Requests",
    },
}


@dataclass
class XServer:
    base_url: str = ""
    token: str = TOKEN
    account_id: str = ACCOUNT_ID
    failures: list[int] = field(default_factory=list)
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    media: dict[str, tuple[bytes, str]] = field(default_factory=dict)  # path -> (file, type)


@contextmanager
def serve_x() -> Iterator[XServer]:
    state = XServer()
    lock = threading.Lock()

    class Handler(FakeHandler):
        def authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {state.token}":
                return True
            self.reply_json(401, PROBLEMS[401])
            return False

        def do_GET(self) -> None:
            if not self.authorised():
                return
            if self.path in state.media:
                data, content_type = state.media[self.path]
                self.reply(200, data, content_type=content_type)
            elif self.path == "/2/users/me":
                self.reply_json(
                    200, {"data": {"id": state.account_id, "name": "Shop", "username": "shop"}}
                )
            else:
                self.reply_json(404, {"title": "Not Found", "status": 404, "detail": "Not Found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            if not self.authorised():
                return
            prefix, suffix = "/2/dm_conversations/with/", "/messages"
            if not (self.path.startswith(prefix) and self.path.endswith(suffix)):
                self.reply_json(404, {"title": "Not Found", "status": 404, "detail": "Not Found"})
                return
            participant = self.path[len(prefix) : -len(suffix)]
            with lock:
                failure = state.failures.pop(0) if state.failures else None
                if failure is None:
                    state.sent.append((participant, payload))
            if failure is not None:
                headers = (
                    {"x-rate-limit-reset": str(int(time.time()) + 60)} if failure == 429 else {}
                )
                self.reply_json(failure, PROBLEMS[failure], headers=headers)
                return
            self.reply_json(
                201,
                {
                    "data": {
                        "dm_conversation_id": f"{participant}-{state.account_id}",
                        "dm_event_id": str(uuid.uuid4().int % 10**19),
                    }
                },
            )

    with serve(Handler) as base_url:
        state.base_url = base_url
        yield state


def x_signature(consumer_secret: str, body: bytes) -> str:
    return (
        "sha256="
        + base64.b64encode(
            hmac.new(consumer_secret.encode(), body, hashlib.sha256).digest()
        ).decode()
    )


def dm_delivery(
    sender_id: str, text: str, *, for_user_id: str = ACCOUNT_ID, event_id: str | None = None
) -> dict[str, Any]:
    """An Account Activity delivery of one direct message (developer.x.com account activity
    data objects)."""
    return {
        "for_user_id": for_user_id,
        "direct_message_events": [
            {
                "type": "message_create",
                "id": event_id or str(uuid.uuid4().int % 10**18),
                "created_timestamp": str(int(time.time() * 1000)),
                "message_create": {
                    "target": {
                        "recipient_id": for_user_id if sender_id != for_user_id else "3001969357"
                    },
                    "sender_id": sender_id,
                    "message_data": {
                        "text": text,
                        "entities": {
                            "hashtags": [],
                            "symbols": [],
                            "user_mentions": [],
                            "urls": [],
                        },
                    },
                },
            }
        ],
        "users": {
            sender_id: {
                "id": sender_id,
                "created_timestamp": "1422556069340",
                "name": "Jordan Brinks",
                "screen_name": "furiouscamper",
                "protected": False,
                "verified": False,
            },
        },
    }
