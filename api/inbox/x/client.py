"""The X API v2 client for direct messages: who the connected account is (`GET /2/users/me`)
and replies (`POST /2/dm_conversations/with/{participant_id}/messages`), with the account's
OAuth 2.0 user-context token (scopes dm.write, dm.read, tweet.read, users.read). Failures
raise `XError`; 429 carries the time `x-rate-limit-reset` names."""

import re
import time
from typing import Any
from urllib.parse import quote

import httpx

USER_ID = re.compile(r"^[1-9][0-9]{0,24}$")


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
