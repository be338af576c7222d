"""Groq chat completions with structured output, through the `groq` SDK.

The SDK's own retries are off: a 429 is waited out here per its Retry-After, within a bounded
budget, then becomes GroqError `provider_busy` carrying Groq's wait; other failures become a
GroqError too, for the caller to record (and refund) and the AI feature to answer.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import groq

from api.core.retry_after import retry_after_seconds


class GroqError(Exception):
    """Groq gave no completion. `code` says why: `provider_busy` (a 429 asking for a longer wait
    than the budget left; `retry_after_seconds` is what it asked), `provider_timeout`,
    `provider_unreachable` or `provider_error` (any other status)."""

    def __init__(self, code: str, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class Completion:
    content: str
    tokens_in: int
    tokens_out: int


class GroqChat:
    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        timeout_seconds: float,
        max_wait_seconds: float,
        wait: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = groq.Groq(
            api_key=api_key, base_url=base_url, timeout=timeout_seconds, max_retries=0
        )
        self.max_wait_seconds = max_wait_seconds
        self.wait = wait

    def complete_json(
        self, *, model: str, system: str, user: str, schema_name: str, schema: dict[str, Any]
    ) -> Completion:
        waited = 0.0
        while True:
            try:
                response = self.client.chat.completions.create(
                    model=model,
                    messages=[
                        {"role": "system", "content": system},
                        {"role": "user", "content": user},
                    ],
                    response_format={
                        "type": "json_schema",
                        "json_schema": {"name": schema_name, "strict": True, "schema": schema},
                    },
                    temperature=0.7,
                )
            except groq.RateLimitError as error:
                header = retry_after_seconds(error.response.headers.get("retry-after"))
                delay = 1.0 if header is None else header
                if waited + delay > self.max_wait_seconds:
                    raise GroqError(
                        "provider_busy", "The AI provider is busy; try again shortly", delay
                    ) from error
                self.wait(delay)
                waited += delay
                continue
            except groq.APITimeoutError as error:
                raise GroqError("provider_timeout", "The AI provider timed out") from error
            except groq.APIConnectionError as error:
                raise GroqError("provider_unreachable", "The AI provider is unreachable") from error
            except groq.APIStatusError as error:
                raise GroqError(
                    "provider_error", f"The AI provider answered {error.status_code}"
                ) from error
            choice = response.choices[0] if response.choices else None
            usage = response.usage
            return Completion(
                content=(choice.message.content or "") if choice else "",
                tokens_in=usage.prompt_tokens if usage else 0,
                tokens_out=usage.completion_tokens if usage else 0,
            )
