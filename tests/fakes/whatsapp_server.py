"""A local stand-in for the WhatsApp Cloud API (Meta Graph), shaped as Meta documents it:
`POST /{phone-number-id}/messages` (any number) answers `{messaging_product,
contacts: [{input, wa_id}], messages: [{id}]}`, `GET /{waba-id}/message_templates` pages the
catalog with `paging.cursors`,
and scripted failures answer Graph's error object `{"error": {"message", "type", "code",
"error_data": {"messaging_product", "details"}, "fbtrace_id"}}`. It checks the bearer token and
records what it received.

Also: provider-shaped webhook bodies (inbound messages of each type, statuses) and their
`X-Hub-Signature-256`, as Meta sends them."""

import hashlib
import hmac
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.http_server import FakeHandler, serve

TOKEN = "EAAG-test-" + uuid.uuid4().hex
PHONE_NUMBER_ID = "106540352242922"
BUSINESS_ACCOUNT_ID = "102290129340398"

# Meta's documented errors (developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes).
ERRORS: dict[int, tuple[int, str, str]] = {
    131047: (
        400,
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last "
        "replied to this number.",
    ),
    131026: (400, "Message undeliverable", "Unable to deliver message."),
    131049: (
        400,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
    130429: (429, "Rate limit hit", "Cloud API message throughput has been reached."),
    131000: (500, "Something went wrong", "Message failed to send due to an unknown error."),
    190: (401, "Error validating access token: Session has expired", "Access token expired."),
}


def graph_error(code: int) -> tuple[int, dict[str, Any]]:
    status, message, details = ERRORS[code]
    return status, {
        "error": {
            "message": f"(#{code}) {message}",
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "A" + uuid.uuid4().hex[:22],
        }
    }


def template(
    name: str,
    status: str = "APPROVED",
    body: str = "Hi {{1}}, your order {{2}} shipped.",
    category: str = "UTILITY",
) -> dict[str, Any]:
    return {
        "name": name,
        "language": "en_US",
        "status": status,
        "category": category,
        "id": str(abs(hash(name)) % 10**15),
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Order update"},
            {"type": "BODY", "text": body},
            {"type": "FOOTER", "text": "Reply STOP to opt out"},
        ],
    }


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class GraphServer:
    base_url: str = ""
    token: str = TOKEN
    failures: list[int] = field(default_factory=list)  # Meta error codes, one per next send
    templates: list[dict[str, Any]] = field(default_factory=list)
    media: dict[str, bytes] = field(default_factory=dict)  # media id -> file
    announced_sizes: dict[str, int] = field(
        default_factory=dict
    )  # file_size claimed, if not the real one
    received: list[Received] = field(default_factory=list)

    def sends(self) -> list[dict[str, Any]]:
        return [
            r.body for r in self.received if r.method == "POST" and r.path.endswith("/messages")
        ]


@contextmanager
def serve_whatsapp() -> Iterator[GraphServer]:
    state = GraphServer()
    lock = threading.Lock()

    class Handler(FakeHandler):
        def authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {state.token}":
                return True
            status, body = graph_error(190)
            self.reply_json(status, body)
            return False

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            path = urlsplit(self.path).path
            with lock:
                state.received.append(Received("POST", path, dict(self.headers.items()), body))
                failure = state.failures.pop(0) if state.failures else None
            if not self.authorised():
                return
            if not re.fullmatch(r"/[0-9]+/messages", path):
                self.reply_json(
                    400, {"error": {"message": "Unsupported post request", "code": 100}}
                )
                return
            if failure is not None:
                status, error = graph_error(failure)
                self.reply_json(status, error)
                return
            to = body["to"]
            self.reply_json(
                200,
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": "wamid." + uuid.uuid4().hex.upper()}],
                },
            )

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            with lock:
                state.received.append(Received("GET", url.path, dict(self.headers.items()), query))
            if not self.authorised():
                return
            if url.path.startswith("/media-download/"):
                media_id = url.path.rsplit("/", 1)[1]
                self.reply(200, state.media[media_id], content_type="image/jpeg")
                return
            if re.fullmatch(r"/[0-9]+", url.path) and url.path[1:] in state.media:
                media_id = url.path[1:]
                self.reply_json(
                    200,
                    {
                        "messaging_product": "whatsapp",
                        "url": f"{state.base_url}/media-download/{media_id}",
                        "mime_type": "image/jpeg",
                        "sha256": hashlib.sha256(state.media[media_id]).hexdigest(),
                        "file_size": state.announced_sizes.get(
                            media_id, len(state.media[media_id])
                        ),
                        "id": media_id,
                    },
                )
                return
            if not re.fullmatch(r"/[0-9]+/message_templates", url.path):
                self.reply_json(400, {"error": {"message": "Unknown path", "code": 100}})
                return
            start = int(query.get("after", "0"))
            size = 2
            page = state.templates[start : start + size]
            paging: dict[str, Any] = {"cursors": {"before": str(start), "after": str(start + size)}}
            if start + size < len(state.templates):
                paging["next"] = f"https://graph.facebook.com/v21.0{url.path}?after={start + size}"
            self.reply_json(200, {"data": page, "paging": paging})

    with serve(Handler) as base_url:
        state.base_url = base_url
        yield state


# webhooks -------------------------------------------------------------------------------------


def hub_signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def envelope(value: dict[str, Any], phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": BUSINESS_ACCOUNT_ID,
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": phone_number_id,
                            },
                            **value,
                        },
                    }
                ],
            }
        ],
    }


def inbound(
    wa_id: str,
    messages: list[dict[str, Any]],
    name: str = "Sheena Nelson",
    phone_number_id: str = PHONE_NUMBER_ID,
) -> dict[str, Any]:
    return envelope(
        {"contacts": [{"profile": {"name": name}, "wa_id": wa_id}], "messages": messages},
        phone_number_id,
    )


def text_message(
    wa_id: str, body: str, timestamp: int = 1749416383, wamid: str | None = None
) -> dict[str, Any]:
    return {
        "from": wa_id,
        "id": wamid or "wamid." + uuid.uuid4().hex.upper(),
        "timestamp": str(timestamp),
        "type": "text",
        "text": {"body": body},
    }


def image_message(wa_id: str, timestamp: int = 1749416390) -> dict[str, Any]:
    return {
        "from": wa_id,
        "id": "wamid." + uuid.uuid4().hex.upper(),
        "timestamp": str(timestamp),
        "type": "image",
        "image": {
            "caption": "Like this one",
            "mime_type": "image/jpeg",
            "sha256": "u3N6nB5Pqv1xD0l9ZbKk5Hn7vG1jTq2q5X4iYq2YpLw=",
            "id": "1003383421387256",
        },
    }


def status(
    wamid: str, state: str, recipient: str, timestamp: int, error: int | None = None
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": wamid,
        "status": state,
        "timestamp": str(timestamp),
        "recipient_id": recipient,
    }
    if state != "failed":
        item["conversation"] = {
            "id": "b1e7a3f0c2d4e6f8a0b2c4d6e8f0a2b4",
            "origin": {"type": "service"},
        }
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": "service"}
    if error is not None:
        _, body = graph_error(error)
        details = body["error"]
        item["errors"] = [
            {
                "code": error,
                "title": details["message"],
                "message": details["message"],
                "error_data": {"details": details["error_data"]["details"]},
            }
        ]
    return item


def statuses(items: list[dict[str, Any]], phone_number_id: str = PHONE_NUMBER_ID) -> dict[str, Any]:
    return envelope({"statuses": items}, phone_number_id)
