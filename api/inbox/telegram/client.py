"""The Telegram Bot API client: who the bot is (getMe), where its updates go (setWebhook with a
secret token) and replies (sendMessage). Answers are `{ok, result}` or `{ok: false,
error_code, description, parameters: {retry_after}}`; failures raise `TelegramError`."""

import re
from typing import Any

import httpx

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
