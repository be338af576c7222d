"""What moto's SES server does not do, in front of it: GetAccount, SES's send rate with its
throttling (and bursts of it), and outages. Everything else goes through to moto.

SESv2 answers a send over the account's rate with HTTP 429, `x-amzn-ErrorType:
TooManyRequestsException` and `{"message": "Maximum sending rate exceeded."}`, and drops the
message; GetAccount is `GET /v2/email/account` with `SendQuota.{Max24HourSend, MaxSendRate,
SentLast24Hours}`, `SendingEnabled`, `EnforcementStatus` and `ProductionAccessEnabled`.
"""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx

from tests.fakes.http_server import FakeHandler, serve

SEND_PATH = "/v2/email/outbound-emails"


@dataclass
class SesFront:
    """The account as the front plays it; change it while a test runs."""

    max_send_rate: float = 14.0
    max_24_hour_send: float = 50_000.0
    # Every `burst_every` seconds SES throttles every send for `burst_seconds` (0: never).
    burst_every: float = 0.0
    burst_seconds: float = 0.0
    # While set, every call is a 503 ServiceUnavailable.
    down: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: float = field(default_factory=time.monotonic)
    tokens: float = 0.0
    refilled: float = field(default_factory=time.monotonic)
    # Monotonic times of every send attempt that reached the front, and of those accepted.
    attempts: list[float] = field(default_factory=list)
    accepted: list[float] = field(default_factory=list)
    throttled: int = 0

    def admit(self) -> str:
        """`ok`, `throttled` or `down` for one send, SES's bucket refilled at its rate."""
        with self.lock:
            now = time.monotonic()
            self.attempts.append(now)
            if self.down:
                return "down"
            self.tokens = min(
                self.max_send_rate, self.tokens + (now - self.refilled) * self.max_send_rate
            )
            self.refilled = now
            in_burst = (
                self.burst_every > 0
                and (now - self.started) % self.burst_every < self.burst_seconds
            )
            if in_burst or self.tokens < 1:
                self.throttled += 1
                return "throttled"
            self.tokens -= 1
            self.accepted.append(now)
            return "ok"

    def busiest_second(self, times: list[float]) -> int:
        """The most of `times` within any one second."""
        ordered = sorted(times)
        most = 0
        low = 0
        for high, at in enumerate(ordered):
            while at - ordered[low] >= 1.0:
                low += 1
            most = max(most, high - low + 1)
        return most


class FrontHandler(FakeHandler):
    front: ClassVar[SesFront]
    moto: ClassVar[str]
    client: ClassVar[httpx.Client]

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def forward(self, body: bytes | None = None) -> None:
        """Passes the request (its body as read already, when given) to moto."""
        if body is None:
            body = self.body()
        headers = {
            name: value
            for name, value in self.headers.items()
            if name.lower() not in {"host", "content-length", "connection"}
        }
        answer = self.client.request(
            self.command, f"{self.moto}{self.path}", content=body, headers=headers
        )
        self.reply(
            answer.status_code,
            answer.content,
            content_type=answer.headers.get("content-type"),
            headers={
                name: value
                for name, value in answer.headers.items()
                if name.lower().startswith("x-amz")
            },
        )

    def error(self, status: int, code: str, message: str) -> None:
        self.reply_json(status, {"message": message}, headers={"x-amzn-ErrorType": code})

    def account(self) -> None:
        front = self.front
        with front.lock:
            sent = len(front.accepted)
        self.reply_json(
            200,
            {
                "SendQuota": {
                    "Max24HourSend": front.max_24_hour_send,
                    "MaxSendRate": front.max_send_rate,
                    "SentLast24Hours": float(sent),
                },
                "SendingEnabled": True,
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": True,
            },
        )

    def do_GET(self) -> None:
        if self.front.down and self.path.startswith("/v2/"):
            self.error(503, "ServiceUnavailableException", "Service unavailable")
        elif self.path == "/v2/email/account":
            self.account()
        else:
            self.forward()

    def do_POST(self) -> None:
        if self.path != SEND_PATH:
            self.forward()
            return
        self.send(self.body())

    def send(self, body: bytes) -> None:
        """A SendEmail through the account's rate and outages, then to moto."""
        verdict = self.front.admit()
        if verdict == "down":
            self.error(503, "ServiceUnavailableException", "Service unavailable")
        elif verdict == "throttled":
            self.error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")
        else:
            self.forward(body)

    def do_PUT(self) -> None:
        self.forward()

    def do_DELETE(self) -> None:
        self.forward()


@contextmanager
def ses_front(moto_endpoint: str, front: SesFront) -> Iterator[str]:
    """Serves `front` before moto; yields the endpoint to give boto3."""
    with httpx.Client(timeout=30) as client:
        handler: Any = type(
            "BoundFrontHandler",
            (FrontHandler,),
            {"front": front, "moto": moto_endpoint, "client": client},
        )
        with serve(handler) as url:
            yield url
