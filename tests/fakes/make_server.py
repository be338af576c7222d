"""A real local HTTP server standing in for Make.com's custom webhooks.

It answers as Make does (200 "Accepted") unless the test scripts other answers: a status with
headers, or a hang that outlasts the client's timeout (released when the server stops).
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http_server import FakeHandler, serve


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: str = "Accepted"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class MakeServer:
    base_url: str = ""
    script: list[Answer] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def url(self, scenario: str) -> str:
        return f"{self.base_url}/{scenario}"

    def answer_next(self, *answers: Answer) -> None:
        self.script.extend(answers)


@contextmanager
def serve_make() -> Iterator[MakeServer]:
    state = MakeServer()
    lock = threading.Lock()

    class Handler(FakeHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with lock:
                state.received.append(Received(self.path, dict(self.headers.items()), body))
                answer = state.script.pop(0) if state.script else Answer()
            if answer.hang:
                state.release.wait()
                return
            self.reply(
                answer.status,
                answer.body.encode(),
                content_type="text/plain",
                headers=answer.headers,
            )

    with serve(Handler) as base_url:
        state.base_url = base_url
        try:
            yield state
        finally:
            state.release.set()
