"""A real local HTTP server speaking Groq's OpenAI-compatible chat-completions API, for the real
`groq` SDK to talk to. By default it answers valid structured output that quotes back every
placeholder it was sent (so tests can see them restored); tests can script other answers."""

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.http_server import FakeHandler, serve

PLACEHOLDER = re.compile(r"\[[A-Z_]+_\d+\]")


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content: str | None = None  # the assistant message; None: a valid default answer
    headers: dict[str, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None


def campaign_copy(subject: str, body: str) -> str:
    """A valid campaign-copy answer: the three angles, each with this subject and body."""
    return json.dumps(
        {
            "variants": [
                {"angle": angle, "subject": subject, "body": body}
                for angle in ("problem", "benefit", "question")
            ]
        }
    )


def default_content(schema_name: str, placeholders: list[str]) -> str:
    quoted = " ".join(placeholders)
    if schema_name == "campaign_copy":
        return json.dumps(
            {
                "variants": [
                    {
                        "angle": angle,
                        "subject": f"{angle.title()} for you",
                        "body": f"Hello {quoted}.",
                    }
                    for angle in ("problem", "benefit", "question")
                ]
            }
        )
    return json.dumps(
        {
            "title": "Running shoes that last",
            "meta_title": "Running shoes",
            "meta_description": "Light running shoes.",
            "outline": ["Why", "How"],
            "body": f"Contact {quoted}.",
        }
    )


def completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{time.time_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "queue_time": 0.01,
            "prompt_tokens": 120,
            "prompt_time": 0.02,
            "completion_tokens": 80,
            "completion_time": 0.1,
            "total_tokens": 200,
        },
        "system_fingerprint": "fp_test",
        "x_groq": {"id": f"req_{time.time_ns()}"},
    }


@dataclass
class GroqServer:
    base_url: str = ""
    script: list[Reply] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def serve_groq() -> Iterator[GroqServer]:
    state = GroqServer()
    lock = threading.Lock()

    class Handler(FakeHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            with lock:
                state.requests.append(body)
                state.headers.append(dict(self.headers.items()))
                reply = state.script.pop(0) if state.script else Reply()
            if self.path != "/openai/v1/chat/completions":
                reply = Reply(
                    status=404, error={"message": "Unknown path", "type": "invalid_request_error"}
                )
            if reply.status != 200:
                payload = {
                    "error": reply.error
                    or {
                        "message": "Rate limit reached",
                        "type": "tokens",
                        "code": "rate_limit_exceeded",
                    }
                }
            else:
                user = next(m["content"] for m in body["messages"] if m["role"] == "user")
                schema_name = body["response_format"]["json_schema"]["name"]
                content = (
                    reply.content
                    if reply.content is not None
                    else default_content(schema_name, sorted(set(PLACEHOLDER.findall(user))))
                )
                payload = completion(body["model"], content)
            self.reply_json(reply.status, payload, reply.headers)

    with serve(Handler) as base_url:
        state.base_url = base_url
        yield state
