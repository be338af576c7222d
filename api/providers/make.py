"""Make.com custom webhooks: deliver a job and classify the answer for the outbox."""

import email.utils
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from api.signatures import signature_headers

# Statuses worth another attempt; any other 4xx means the request itself is wrong.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_ERROR_TEXT = 200


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    retryable: bool = False
    error: str = ""
    retry_after_seconds: int | None = None


def retry_after_seconds(value: str | None, now: float) -> int | None:
    """Retry-After as delay-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    if value.strip().isdigit():
        return int(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0, int(moment.timestamp() - now))


class MakeClient:
    """Posts signed JSON to a scenario's custom webhook; never raises for delivery failures."""

    def __init__(self, *, signing_secret: str, api_key: str | None, timeout_seconds: float) -> None:
        self.signing_secret = signing_secret
        self.api_key = api_key
        self.http = httpx.Client(timeout=timeout_seconds, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def deliver(self, url: str, payload: dict[str, Any]) -> Delivery:
        body = json.dumps(payload, separators=(",", ":"), default=str).encode()
        headers = {
            "Content-Type": "application/json",
            **signature_headers(self.signing_secret, body),
        }
        if self.api_key:
            headers["x-make-apikey"] = self.api_key
        try:
            response = self.http.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Delivery(False, retryable=True, error="timed out")
        except httpx.TransportError as error:
            return Delivery(
                False, retryable=True, error=f"connection failed: {type(error).__name__}"
            )
        if response.is_success:
            return Delivery(True)
        status = response.status_code
        failure = f"HTTP {status}: {response.text[:MAX_ERROR_TEXT]}"
        if status >= 500 or status in RETRYABLE_STATUSES:
            wait = retry_after_seconds(response.headers.get("retry-after"), time.time())
            return Delivery(False, retryable=True, error=failure, retry_after_seconds=wait)
        return Delivery(False, retryable=False, error=failure)
