"""The email feature's own errors travel like any exception: through context managers (a
database transaction, a client's `with`) they arrive as themselves, with their code."""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from api.email.errors import api_error
from api.email.ses import SesError
from api.email.sns import SnsError
from api.email.unsubscribe_tokens import LinkError


@contextmanager
def guarded() -> Iterator[None]:
    """Like a transaction block: it lets the exception through, which sets its traceback."""
    yield


@pytest.mark.parametrize(
    ("error", "answer"),
    [
        (SnsError("topic_not_allowed", "Messages from this topic are not accepted"), 403),
        (LinkError("link_expired", "This unsubscribe link has expired"), 410),
        (SesError("Throttling", "Rate exceeded", retryable=True), 502),
    ],
)
def test_an_error_leaves_a_context_manager_as_itself(
    error: SnsError | LinkError | SesError, answer: int
) -> None:
    with pytest.raises(type(error)) as caught, guarded():
        raise error
    assert caught.value is error
    assert (api_error(caught.value).status, caught.value.code) == (answer, error.code)
