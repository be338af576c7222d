"""Make.com custom webhooks: deliver a job and classify the answer for the outbox."""

import json
from dataclasses import dataclass
from typing import Any

import httpx

from api.core.retry_after import retry_after_seconds
from api.core.signatures import signature_headers

# Statuses worth another attempt; any other 4xx means the request itself is wrong.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
MAX_ERROR_TEXT = 200


@dataclass(frozen=True)
class Delivery:
    delivered: bool
    retryable: bool = False
    error: str = ""
    retry_after_seconds: int | None = None


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
            wait = retry_after_seconds(response.headers.get("retry-after"))
            return Delivery(
                False,
                retryable=True,
                error=failure,
                retry_after_seconds=None if wait is None else int(wait),
            )
        return Delivery(False, retryable=False, error=failure)
