"""How the email feature's failures are answered: its provider clients and domain modules raise
their own error types (SES, SNS, unsubscribe links, template renders), and this is the one
place that turns them into the envelope's status and code."""

from api.core.errors import ApiError
from api.email.ses import SesError
from api.email.sns import SnsError
from api.email.templates import RenderError
from api.email.unsubscribe_tokens import LinkError

# SES's own refusal of the request's content; every other failure is SES's or ours.
SES_VALIDATION_CODES = frozenset({"BadRequestException"})
SNS_STATUSES = {
    "invalid_input": 422,
    "topic_not_allowed": 403,
    "signature_invalid": 401,
    "certificate_not_allowed": 401,
    # The certificate's host is SNS's own: failing to fetch it is an outage, not a forgery.
    "certificate_unavailable": 503,
}
LINK_STATUSES = {"link_invalid": 400, "link_expired": 410}


def api_error(failure: SesError | SnsError | LinkError | RenderError) -> ApiError:
    """The envelope's answer to one of the feature's failures."""
    if isinstance(failure, SesError):
        if failure.code in SES_VALIDATION_CODES:
            return ApiError(
                422, "identity_rejected", f"SES refused the identity: {failure.message}"
            )
        return ApiError(
            502,
            "provider_error",
            "Amazon SES could not be reached or failed; try again",
            {"provider_code": failure.code, "retryable": failure.retryable},
        )
    if isinstance(failure, SnsError):
        return ApiError(SNS_STATUSES[failure.code], failure.code, failure.message)
    if isinstance(failure, LinkError):
        return ApiError(LINK_STATUSES[failure.code], failure.code, failure.message)
    # A template that cannot be rendered for the contact: the message names the field or reason.
    return ApiError(422, failure.code, str(failure))
