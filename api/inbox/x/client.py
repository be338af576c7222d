"""The X API v2 client for direct messages: who the connected account is (`GET /2/users/me`)
replies (`POST /2/dm_conversations/with/{participant_id}/messages`) and the media of inbound
messages (their `ton.twitter.com` URL, fetched with the same token), with the account's
OAuth 2.0 user-context token (scopes dm.write, dm.read, tweet.read, users.read). Failures
raise `XError`; 429 carries the time `x-rate-limit-reset` names."""

import re
import time
from typing import Any
from urllib.parse import quote

import httpx

USER_ID = re.compile(r"^[1-9][0-9]{0,24}$")
# Direct-message media are served from X's TON host only; nothing else is fetched with the token.
MEDIA_HOST = "https://ton.twitter.com/"


class XError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(f"X {status}: {message}")
        self.status = status
        self.code = str(status)
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status in (408, 429) or self.status >= 500

    @property
    def credentials_refused(self) -> bool:
        return self.status == 401


class XClient:
    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds

    def call(self, method: str, path: str, token: str, json: dict[str, Any] | None = None) -> Any:
        try:
            response = httpx.request(
                method,
                f"{self.base_url}{path}",
                headers={"Authorization": f"Bearer {token}"},
                json=json,
                timeout=self.timeout_seconds,
            )
        except httpx.HTTPError as error:
            raise XError(503, type(error).__name__) from error
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.is_success and isinstance(answer, dict):
            return answer
        reset = response.headers.get("x-rate-limit-reset", "")
        retry_after = max(int(reset) - int(time.time()), 1) if reset.isdigit() else None
        detail = answer.get("detail") or answer.get("title") if isinstance(answer, dict) else None
        raise XError(
            response.status_code, str(detail or response.reason_phrase)[:1000], retry_after
        )

    def me(self, token: str) -> dict[str, Any]:
        data = self.call("GET", "/2/users/me", token).get("data")
        if not isinstance(data, dict) or not USER_ID.match(str(data.get("id", ""))):
            raise XError(502, "users/me answered without the account's id")
        return data

    def send_dm(self, token: str, participant_id: str, text: str) -> str:
        if not USER_ID.match(participant_id):
            raise XError(400, "The recipient is not an X user id")
        path = f"/2/dm_conversations/with/{quote(participant_id, safe='')}/messages"
        data = self.call("POST", path, token, {"text": text}).get("data")
        event_id = data.get("dm_event_id") if isinstance(data, dict) else None
        if not isinstance(event_id, str) or not event_id:
            raise XError(502, "X answered without a dm_event_id")
        return event_id

    def media(self, url: str, token: str, max_bytes: int) -> tuple[bytes, str]:
        """A direct message's media file and the type X serves it as, refused (413) past
        `max_bytes` as announced and while downloading. Only X's TON host (or this client's own
        base URL, which tests point at a local server) is asked, so the token goes nowhere else."""
        if not (url.startswith(MEDIA_HOST) or url.startswith(f"{self.base_url}/")):
            raise XError(400, "The media URL is not on X's media host")
        data = bytearray()
        try:
            with httpx.stream(
                "GET",
                url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout_seconds,
            ) as response:
                if not response.is_success:
                    raise XError(response.status_code, "The media download failed")
                announced = response.headers.get("content-length", "")
                if announced.isdigit() and int(announced) > max_bytes:
                    raise XError(413, f"The file has {announced} bytes")
                for chunk in response.iter_bytes():
                    data.extend(chunk)
                    if len(data) > max_bytes:
                        raise XError(413, "The file is larger than allowed")
                content_type = response.headers.get("content-type", "")
        except httpx.HTTPError as error:
            raise XError(503, type(error).__name__) from error
        return bytes(data), content_type.split(";")[0].strip().lower()[:200]
