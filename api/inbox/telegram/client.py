"""The Telegram Bot API client: who the bot is (getMe), where its updates go (setWebhook with a
secret token), replies (sendMessage) and the files of inbound messages (getFile, then
`/file/bot<token>/<file_path>`; bots may download files up to 20 MB). Answers are `{ok,
result}` or `{ok: false, error_code, description, parameters: {retry_after}}`; failures raise
`TelegramError`."""

import re
from typing import Any

import httpx

FILE_ID = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
FILE_PATH = re.compile(r"^[A-Za-z0-9_./-]{1,300}$")
BOT_TOKEN = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]{20,100}$")
ALLOWED_UPDATES = ["message", "edited_message", "channel_post", "edited_channel_post"]


class TelegramError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(f"Telegram {status}: {message}")
        self.status = status
        self.code = str(status)
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status in (408, 429) or self.status >= 500

    @property
    def credentials_refused(self) -> bool:
        """The bot token is no longer valid (revoked in BotFather, or the bot was deleted)."""
        return self.status in (401, 404)


class TelegramClient:
    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds

    def call(self, token: str, method: str, payload: dict[str, Any]) -> Any:
        if not BOT_TOKEN.match(token):
            raise TelegramError(401, "The bot token is not shaped like one")
        try:
            response = httpx.post(
                f"{self.base_url}/bot{token}/{method}", json=payload, timeout=self.timeout_seconds
            )
        except httpx.HTTPError as error:
            raise TelegramError(503, type(error).__name__) from error
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if isinstance(answer, dict) and answer.get("ok") is True:
            return answer.get("result")
        if not isinstance(answer, dict):
            raise TelegramError(response.status_code, response.reason_phrase)
        parameters = answer.get("parameters") if isinstance(answer.get("parameters"), dict) else {}
        retry_after = parameters.get("retry_after") if parameters else None
        code = answer.get("error_code")
        raise TelegramError(
            code if isinstance(code, int) else response.status_code,
            str(answer.get("description") or "refused")[:1000],
            retry_after if isinstance(retry_after, int) else None,
        )

    def me(self, token: str) -> dict[str, Any]:
        result = self.call(token, "getMe", {})
        if not isinstance(result, dict) or not isinstance(result.get("id"), int):
            raise TelegramError(502, "getMe answered without the bot's id")
        return result

    def set_webhook(self, token: str, url: str, secret_token: str) -> None:
        self.call(
            token,
            "setWebhook",
            {"url": url, "secret_token": secret_token, "allowed_updates": ALLOWED_UPDATES},
        )

    def send_message(self, token: str, chat_id: str, text: str, reply_to: str | None) -> str:
        """Answers the sent message's id as the inbox stores it: `<chat id>:<message id>`."""
        payload: dict[str, Any] = {"chat_id": int(chat_id), "text": text}
        if reply_to and reply_to.startswith(f"{chat_id}:"):
            payload["reply_parameters"] = {
                "message_id": int(reply_to.split(":", 1)[1]),
                "allow_sending_without_reply": True,
            }
        result = self.call(token, "sendMessage", payload)
        if not isinstance(result, dict) or not isinstance(result.get("message_id"), int):
            raise TelegramError(502, "sendMessage answered without a message id")
        return f"{chat_id}:{result['message_id']}"

    def file(self, token: str, file_id: str, max_bytes: int) -> tuple[bytes, str]:
        """A file of an inbound message and its path's name (getFile, then the download),
        refused (413) past `max_bytes` as Telegram announces it and while downloading."""
        if not FILE_ID.match(file_id):
            raise TelegramError(400, "The file id is not shaped like one")
        try:
            result = self.call(token, "getFile", {"file_id": file_id})
        except TelegramError as error:
            if error.status == 400 and "too big" in error.message.lower():
                raise TelegramError(413, error.message) from error
            raise
        path = result.get("file_path") if isinstance(result, dict) else None
        size = result.get("file_size") if isinstance(result, dict) else None
        if isinstance(size, int) and size > max_bytes:
            raise TelegramError(413, f"The file has {size} bytes")
        if not isinstance(path, str) or not FILE_PATH.match(path) or ".." in path:
            raise TelegramError(502, "getFile answered without a file path")
        data = bytearray()
        try:
            with httpx.stream(
                "GET", f"{self.base_url}/file/bot{token}/{path}", timeout=self.timeout_seconds
            ) as response:
                if not response.is_success:
                    raise TelegramError(response.status_code, "The file download failed")
                for chunk in response.iter_bytes():
                    data.extend(chunk)
                    if len(data) > max_bytes:
                        raise TelegramError(413, "The file is larger than allowed")
        except httpx.HTTPError as error:
            raise TelegramError(503, type(error).__name__) from error
        return bytes(data), path
