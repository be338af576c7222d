"""The raw request body every webhook verifies its signature over, and its JSON."""

from typing import Any

import pydantic_core
from fastapi import Request

from api.core.errors import ApiError
from api.core.openapi import answers

MAX_BODY_BYTES = 1024 * 1024
TOO_LARGE = "The webhook body is larger than 1 MiB"


@answers({413: {"payload_too_large": TOO_LARGE}})
async def raw_body(request: Request) -> bytes:
    """The exact bytes signatures are computed over; JSON webhooks must be UTF-8."""
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", TOO_LARGE)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(422, "invalid_input", "The webhook body is not UTF-8") from error
    return body


def parse_json(body: bytes | str, what: str = "The webhook body") -> Any:
    """The body's JSON, parsed with a bounded nesting depth (pydantic-core's parser stops at a
    fixed depth, where `json.loads` recurses until Python's stack runs out). A `\\u0000` in any
    string or key is refused too: Postgres's jsonb cannot hold it, so such a body could be stored
    but never applied."""
    try:
        parsed = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as error:
        raise ApiError(
            422, "invalid_input", f"{what} is not JSON or is nested too deeply"
        ) from error
    if holds_nul(parsed):
        raise ApiError(422, "invalid_input", f"{what} holds a NUL character (\\u0000)")
    return parsed


def refuse_nul_in_embedded_json(text: str, what: str) -> None:
    """JSON carried inside a string (the SES event inside an SNS message) is applied as jsonb
    later: refuse now a NUL it could never hold. Text that is not JSON is left to its applier."""
    try:
        parsed = pydantic_core.from_json(text, allow_inf_nan=False)
    except ValueError:
        return
    if holds_nul(parsed):
        raise ApiError(422, "invalid_input", f"{what} holds a NUL character (\\u0000)")


def holds_nul(value: Any) -> bool:
    """Recursion is safe here: the parser above has already bounded the depth."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(holds_nul(item) for item in value)
    return False
