"""The AI feature's failures: the Groq client raises its own GroqError (never an HTTP error),
and the feature answers every failure with a status and code its contract lists."""

import pytest

from api.ai.errors import GENERATION_FAILURES, PAGE_REFUSED, api_error
from api.ai.groq_ai import GroqChat, GroqError
from api.ai.page_fetch import PageFetchError
from api.ai.safe_ai import CallFailure, ModelOutputError
from tests.fakes.groq_server import Reply, serve_groq

FAILURES: list[CallFailure] = [
    GroqError("provider_busy", "The AI provider is busy; try again shortly", 30.0),
    GroqError("provider_timeout", "The AI provider timed out"),
    GroqError("provider_unreachable", "The AI provider is unreachable"),
    GroqError("provider_error", "The AI provider answered 500"),
    PageFetchError("The product URL cannot be read: it answered HTTP 404"),
    ModelOutputError("The AI answered in the wrong shape twice; try again"),
]


def ask(chat: GroqChat) -> None:
    chat.complete_json(
        model="openai/gpt-oss-20b",
        system="Answer as JSON.",
        user="Hello",
        schema_name="content",
        schema={"type": "object"},
    )


def test_a_long_429_is_a_groq_error_carrying_the_wait_groq_asked_for() -> None:
    waits: list[float] = []
    with serve_groq() as groq:
        groq.script += [Reply(status=429, headers={"retry-after": "1"})]
        groq.script += [Reply(status=429, headers={"retry-after": "30"})]
        chat = GroqChat(
            api_key="gsk_test",
            base_url=groq.base_url,
            timeout_seconds=5,
            max_wait_seconds=2,
            wait=waits.append,
        )
        with pytest.raises(GroqError) as caught:
            ask(chat)
    assert (caught.value.code, caught.value.retry_after_seconds) == ("provider_busy", 30.0)
    assert waits == [1.0]


def test_any_other_provider_status_is_a_groq_error() -> None:
    with serve_groq() as groq:
        groq.script.append(Reply(status=401, error={"message": "Invalid API Key"}))
        chat = GroqChat(
            api_key="gsk_test", base_url=groq.base_url, timeout_seconds=5, max_wait_seconds=2
        )
        with pytest.raises(GroqError) as caught:
            ask(chat)
    assert (caught.value.code, str(caught.value)) == (
        "provider_error",
        "The AI provider answered 401",
    )


@pytest.mark.parametrize("failure", FAILURES, ids=lambda failure: failure.code)
def test_every_failure_is_answered_with_a_code_the_contract_lists(failure: CallFailure) -> None:
    answer = api_error(failure)
    listed = {**GENERATION_FAILURES, **PAGE_REFUSED}
    assert answer.code == failure.code
    assert answer.code in listed[answer.status]
    assert answer.message == str(failure)


def test_a_busy_provider_says_when_to_try_again_and_a_refused_page_is_the_callers_input() -> None:
    busy, refused = api_error(FAILURES[0]), api_error(FAILURES[4])
    assert (busy.status, busy.details) == (503, {"retry_after": 30})
    assert (refused.status, refused.code) == (422, "url_not_allowed")
    assert [api_error(failure).status for failure in FAILURES[1:4]] == [502, 502, 502]
    assert api_error(FAILURES[5]).status == 502
