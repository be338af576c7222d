"""How the AI feature answers a call that failed: the failures its modules raise (the Groq
client's GroqError, the page fetch's PageFetchError, SafeAi's ModelOutputError) mapped to the
envelope in one place, beside the codes the contract lists for them."""

from api.ai.groq_ai import GroqError
from api.ai.page_fetch import PageFetchError
from api.ai.safe_ai import CallFailure
from api.core.errors import ApiError

# What a generation can answer once it is authorised and paid for (and then refunded).
GENERATION_FAILURES: dict[int, dict[str, str]] = {
    502: {
        "provider_error": "The AI provider answered 500",
        "provider_timeout": "The AI provider timed out",
        "provider_unreachable": "The AI provider is unreachable",
        "invalid_model_output": "The AI answered in the wrong shape twice; try again",
    },
    503: {"provider_busy": "The AI provider is busy; try again shortly"},
}
PAGE_REFUSED: dict[int, dict[str, str]] = {
    422: {
        "url_not_allowed": "The product URL cannot be read: it points to a private or local address"
    }
}


def api_error(failure: CallFailure) -> ApiError:
    """A page that cannot be read is the caller's input (422); a busy provider is a 503 that
    says when to try again; any other failure is the provider's or the model's (502)."""
    if isinstance(failure, PageFetchError):
        return ApiError(422, failure.code, str(failure))
    if isinstance(failure, GroqError) and failure.code == "provider_busy":
        wait = max(1, int(failure.retry_after_seconds or 0))
        return ApiError(503, failure.code, str(failure), {"retry_after": wait})
    return ApiError(502, failure.code, str(failure))
