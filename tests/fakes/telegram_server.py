"""A local stand-in for the Telegram Bot API (`POST /bot<token>/<method>`), answering as
core.telegram.org/bots/api documents: `{"ok": true, "result": …}` or `{"ok": false,
"error_code", "description", "parameters": {"retry_after"}}`. getMe, setWebhook, sendMessage and
getFile (`{file_id, file_unique_id, file_size, file_path}`, with `GET /file/bot<token>/<file_path>`
serving the file; over 20 MB getFile answers 400 "file is too big"); scripted failures; what it
received is recorded. Also provider-shaped updates."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http_server import FakeHandler, serve

BOT_ID = 7012345678
TOKEN = f"{BOT_ID}:AAH" + uuid.uuid4().hex

FAILURES: dict[int, dict[str, Any]] = {
    429: {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 5",
        "parameters": {"retry_after": 5},
    },
    403: {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
    401: {"ok": False, "error_code": 401, "description": "Unauthorized"},
}


@dataclass
class TelegramServer:
    base_url: str = ""
    token: str = TOKEN
    failures: list[int] = field(default_factory=list)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    next_message_id: int = 500
    files: dict[str, bytes] = field(default_factory=dict)  # file id -> the file
    file_paths: dict[str, str] = field(default_factory=dict)  # file id -> its file_path
    announced_sizes: dict[str, int] = field(default_factory=dict)  # file id -> file_size said

    def called(self, method: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.calls if name == method]


@contextmanager
def serve_telegram() -> Iterator[TelegramServer]:
    state = TelegramServer()
    lock = threading.Lock()

    class Handler(FakeHandler):
        def do_GET(self) -> None:
            prefix = f"/file/bot{state.token}/"
            paths = {path: file_id for file_id, path in state.file_paths.items()}
            if self.path.startswith(prefix) and self.path[len(prefix) :] in paths:
                data = state.files[paths[self.path[len(prefix) :]]]
                self.reply(200, data, content_type="application/octet-stream")
                return
            self.reply_json(404, {"ok": False, "error_code": 404, "description": "Not Found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            token, _, method = self.path.removeprefix("/bot").partition("/")
            with lock:
                state.calls.append((method, payload))
                failure = (
                    state.failures.pop(0) if state.failures and method == "sendMessage" else None
                )
                state.next_message_id += 1
                message_id = state.next_message_id
            if token != state.token:
                self.reply_json(401, FAILURES[401])
                return
            if failure is not None:
                self.reply_json(failure, FAILURES[failure])
                return
            if method == "getMe":
                self.reply_json(
                    200,
                    {
                        "ok": True,
                        "result": {
                            "id": BOT_ID,
                            "is_bot": True,
                            "first_name": "Shop",
                            "username": "shop_support_bot",
                            "can_join_groups": True,
                            "can_read_all_group_messages": False,
                            "supports_inline_queries": False,
                        },
                    },
                )
            elif method == "getFile":
                file_id = str(payload.get("file_id"))
                size = state.announced_sizes.get(file_id, len(state.files.get(file_id, b"")))
                if file_id not in state.files:
                    self.reply_json(
                        400,
                        {
                            "ok": False,
                            "error_code": 400,
                            "description": "Bad Request: invalid file_id",
                        },
                    )
                elif size > 20 * 1024 * 1024:
                    self.reply_json(
                        400,
                        {
                            "ok": False,
                            "error_code": 400,
                            "description": "Bad Request: file is too big",
                        },
                    )
                else:
                    state.file_paths.setdefault(file_id, f"photos/file_{len(state.file_paths)}.jpg")
                    self.reply_json(
                        200,
                        {
                            "ok": True,
                            "result": {
                                "file_id": file_id,
                                "file_unique_id": "AQAD" + file_id[-6:],
                                "file_size": size,
                                "file_path": state.file_paths[file_id],
                            },
                        },
                    )
            elif method == "setWebhook":
                self.reply_json(200, {"ok": True, "result": True, "description": "Webhook was set"})
            elif method == "sendMessage":
                self.reply_json(
                    200,
                    {
                        "ok": True,
                        "result": {
                            "message_id": message_id,
                            "from": {"id": BOT_ID, "is_bot": True, "first_name": "Shop"},
                            "chat": {"id": payload["chat_id"], "type": "private"},
                            "date": int(time.time()),
                            "text": payload["text"],
                        },
                    },
                )
            else:
                self.reply_json(
                    404,
                    {"ok": False, "error_code": 404, "description": "Not Found: method not found"},
                )

    with serve(Handler) as base_url:
        state.base_url = base_url
        yield state


def message_update(
    update_id: int,
    chat_id: int,
    message_id: int,
    text: str,
    *,
    edited: bool = False,
    date: int = 1441645532,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": message_id,
        "from": {
            "id": chat_id,
            "is_bot": False,
            "first_name": "Jana",
            "last_name": "Nováková",
            "username": "jana_n",
            "language_code": "cs",
        },
        "chat": {"id": chat_id, "first_name": "Jana", "last_name": "Nováková", "type": "private"},
        "date": date,
        "text": text,
    }
    if edited:
        message["edit_date"] = date + 60
        return {"update_id": update_id, "edited_message": message}
    return {"update_id": update_id, "message": message}


def photo_update(update_id: int, chat_id: int, message_id: int) -> dict[str, Any]:
    update = message_update(update_id, chat_id, message_id, "")
    message = update["message"]
    del message["text"]
    message["caption"] = "The box arrived damaged"
    message["photo"] = [
        {
            "file_id": "AgACAgQAAxkBAAIBsmZ-small",
            "file_unique_id": "AQADs",
            "file_size": 1234,
            "width": 90,
            "height": 67,
        },
        {
            "file_id": "AgACAgQAAxkBAAIBsmZ-large",
            "file_unique_id": "AQADl",
            "file_size": 56789,
            "width": 1280,
            "height": 960,
        },
    ]
    return update
