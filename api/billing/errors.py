"""How the billing routes answer when a Razorpay call gives nothing they may act on. One table
serves the mapping and the OpenAPI document, so what a client is told to expect is what it
gets."""

from collections.abc import Mapping

from api.billing.razorpay_billing import RazorpayError, Reason
from api.core.errors import ApiError
from api.core.openapi import merged_errors

ANSWERS: Mapping[Reason, tuple[int, str, str]] = {
    "id_invalid": (
        409,
        "subscription_id_invalid",
        "The stored subscription id is not a Razorpay id",
    ),
    "not_in_workspace": (
        409,
        "subscription_not_in_workspace",
        "Razorpay does not hold this subscription for this workspace",
    ),
    "refused": (422, "billing_request_refused", "Razorpay refused the request"),
    "failed": (502, "provider_error", "Razorpay could not be reached or failed"),
}
NOT_CONFIGURED = {503: {"provider_not_configured": "Razorpay is not configured"}}


def billing_failure(error: RazorpayError) -> ApiError:
    """The envelope's error for a Razorpay failure; a refusal quotes Razorpay's reason."""
    status, code, message = ANSWERS[error.reason]
    return ApiError(status, code, f"{message}: {error.detail}" if error.detail else message)


def razorpay_errors(*reasons: Reason) -> dict[int, dict[str, str]]:
    """The documented errors of the Razorpay calls a route makes, and of Razorpay's absence."""
    answers = (ANSWERS[reason] for reason in reasons)
    return merged_errors(
        NOT_CONFIGURED, *({status: {code: message}} for status, code, message in answers)
    )
