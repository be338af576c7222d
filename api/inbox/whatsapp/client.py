"""The WhatsApp Cloud API (Meta Graph) client: send a text or a template from a business number,
and list the account's message templates. Each call carries the channel's own access token.

Graph errors come back as `{"error": {"message", "type", "code", "error_subcode",
"error_data": {"details"}}}`; they are raised as `WhatsAppError` with Meta's code, which says
whether a retry can help (throughput limits, Meta's own failures) or not (the 24-hour window
closed, an undeliverable number, the marketing cap, a revoked token)."""

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

GRAPH_ID = re.compile(r"^[0-9]{1,30}$")
WA_ID = re.compile(r"^[1-9][0-9]{5,14}$")
MAX_TEMPLATE_PAGES = 20
# Meta's codes for throughput and its own transient failures: worth a retry later.
RETRYABLE_CODES = frozenset({"1", "2", "4", "80007", "130429", "131000", "131056", "133004"})
# The access token expired or was revoked, or the app lost the permission: reconnect.
CREDENTIAL_CODES = frozenset({"190", "10", "200"})


class WhatsAppError(Exception):
    """A refused or failed Graph call: HTTP status, Meta's error code and its reason."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(f"WhatsApp {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        return self.status in (408, 429) or self.status >= 500 or self.code in RETRYABLE_CODES

    @property
    def credentials_refused(self) -> bool:
        return self.status == 401 or self.code in CREDENTIAL_CODES


@dataclass(frozen=True)
class Template:
    name: str
    language: str
    category: str | None
    status: str
    variables: int
    components: list[Any]


def body_variables(components: list[Any]) -> int:
    """How many `{{n}}` placeholders the template's BODY has: the parameters a send must give."""
    for component in components:
        if isinstance(component, dict) and component.get("type") == "BODY":
            text = component.get("text")
            if isinstance(text, str):
                return len(set(re.findall(r"\{\{\s*([0-9]+)\s*\}\}", text)))
    return 0


def graph_id(value: str, what: str) -> str:
    """A Graph node id, checked against Meta's shape before it reaches a URL."""
    if not GRAPH_ID.match(value):
        raise WhatsAppError(400, "invalid_id", f"{what} is not a Graph id")
    return quote(value, safe="")


class WhatsAppClient:
    def __init__(self, base_url: str, timeout_seconds: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds

    def call(
        self,
        method: str,
        path: str,
        token: str,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        try:
            response = httpx.request(
                method,
                f"{self.base_url}/{path}",
                headers={"Authorization": f"Bearer {token}"},
                json=json,
                params=params or None,
                timeout=self.timeout_seconds,
            )
        except httpx.HTTPError as error:
            raise WhatsAppError(503, "unreachable", type(error).__name__) from error
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.is_success and isinstance(payload, dict):
            return payload
        raise graph_error(response, payload)

    def send_text(
        self, phone_number_id: str, token: str, to: str, body: str, reply_to: str | None
    ) -> str:
        message: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "text",
            "text": {"preview_url": False, "body": body},
        }
        if reply_to:
            message["context"] = {"message_id": reply_to}
        return self.send(phone_number_id, token, message)

    def send_template(
        self, phone_number_id: str, token: str, to: str, template: dict[str, Any]
    ) -> str:
        parameters = [{"type": "text", "text": text} for text in template.get("parameters", [])]
        components = [{"type": "body", "parameters": parameters}] if parameters else []
        message = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": to,
            "type": "template",
            "template": {
                "name": template["name"],
                "language": {"code": template["language"], "policy": "deterministic"},
                "components": components,
            },
        }
        return self.send(phone_number_id, token, message)

    def send(self, phone_number_id: str, token: str, message: dict[str, Any]) -> str:
        if not WA_ID.match(str(message["to"])):
            raise WhatsAppError(400, "invalid_recipient", "The recipient is not a WhatsApp id")
        answer = self.call(
            "POST", f"{graph_id(phone_number_id, 'phone_number_id')}/messages", token, message
        )
        messages = answer.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            wamid = messages[0].get("id")
            if isinstance(wamid, str) and 0 < len(wamid) <= 998:
                return wamid
        raise WhatsAppError(502, "unexpected_answer", "Meta answered without a message id")

    def media(self, media_id: str, token: str, max_bytes: int) -> tuple[bytes, str]:
        """A media file of an inbound message (its URL from `GET /{media-id}`, then the file
        with the same token), refused past `max_bytes` before and while downloading."""
        info = self.call("GET", graph_id(media_id, "media id"), token)
        url, size = info.get("url"), info.get("file_size")
        mime_type = str(info.get("mime_type") or "application/octet-stream")[:200]
        if not isinstance(url, str) or not (
            url.startswith("https://") or url.startswith(self.base_url.split("/v")[0])
        ):
            raise WhatsAppError(502, "unexpected_answer", "Meta answered without a media URL")
        if isinstance(size, int) and size > max_bytes:
            raise WhatsAppError(413, "too_large", f"The file has {size} bytes")
        try:
            with httpx.stream(
                "GET",
                url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=self.timeout_seconds,
            ) as response:
                if not response.is_success:
                    raise WhatsAppError(response.status_code, str(response.status_code), "download")
                data = bytearray()
                for chunk in response.iter_bytes():
                    data.extend(chunk)
                    if len(data) > max_bytes:
                        raise WhatsAppError(413, "too_large", "The file is larger than allowed")
        except httpx.HTTPError as error:
            raise WhatsAppError(503, "unreachable", type(error).__name__) from error
        return bytes(data), mime_type

    def templates(self, business_account_id: str, token: str) -> list[Template]:
        """Every template of the account, following Graph's `after` cursors on our own base URL
        (never the `next` URL an answer names)."""
        path = f"{graph_id(business_account_id, 'business_account_id')}/message_templates"
        found: list[Template] = []
        after: str | None = None
        for _ in range(MAX_TEMPLATE_PAGES):
            params = {"limit": "100", "fields": "name,language,category,status,components"}
            if after:
                params["after"] = after
            page = self.call("GET", path, token, params=params)
            for item in page.get("data") or []:
                template = to_template(item)
                if template is not None:
                    found.append(template)
            cursors = (page.get("paging") or {}).get("cursors") or {}
            after = cursors.get("after") if (page.get("paging") or {}).get("next") else None
            if not isinstance(after, str) or not after:
                break
        return found


def to_template(item: Any) -> Template | None:
    if not isinstance(item, dict):
        return None
    name, language, status = item.get("name"), item.get("language"), item.get("status")
    if not all(isinstance(value, str) and value for value in (name, language, status)):
        return None
    listed = item.get("components")
    components: list[Any] = listed if isinstance(listed, list) else []
    category = item.get("category") if isinstance(item.get("category"), str) else None
    return Template(
        name=str(name)[:512],
        language=str(language)[:20],
        category=category[:40] if category else None,
        status=str(status)[:40],
        variables=min(body_variables(components), 100),
        components=components,
    )


def graph_error(response: httpx.Response, payload: Any) -> WhatsAppError:
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return WhatsAppError(
            response.status_code, str(response.status_code), response.reason_phrase
        )
    data = error.get("error_data")
    details: dict[str, Any] = data if isinstance(data, dict) else {}
    message = details.get("details") or error.get("message") or error.get("title") or "refused"
    retry_after = response.headers.get("retry-after", "")
    return WhatsAppError(
        response.status_code,
        str(error.get("code", response.status_code))[:100],
        str(message)[:1000],
        int(retry_after) if retry_after.isdigit() else None,
    )
