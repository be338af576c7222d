"""Amazon SES events through SNS: every message is verified over the raw body (signature, an
accepted topic, a fresh Timestamp), stored under its SNS MessageId (SNS's retries reuse it),
acknowledged at once and applied in SQL (private.apply_ses_event); the cron replays anything
stored but not applied. A SubscriptionConfirmation is confirmed by fetching its SubscribeURL,
and only when that URL is on SNS's own hosts."""

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, BackgroundTasks, Depends, Header
from pydantic import BaseModel, Field

from api.core.db import Database
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import documented
from api.email.deps import SNS, Sns
from api.email.errors import api_error
from api.email.sns import SnsError, SnsVerifier
from api.email.webhook_body import request_body
from api.webhooks.body import parse_json, raw_body, refuse_nul_in_embedded_json
from api.webhooks.intake import Applier, Intake, StoredEvent, WebhookIntake, sql_applier

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("growthbase.webhooks.ses")

# SNS keeps a message's Timestamp (when it was published) on every retry, and AWS caps the
# total retry time of an HTTP/S delivery policy at 3,600 seconds, so a genuine delivery is
# never more than an hour old. Five minutes either side cover clock skew. Anything outside is a
# captured message being replayed at us.
MAX_MESSAGE_AGE = timedelta(hours=1, minutes=5)
MAX_CLOCK_SKEW = timedelta(minutes=5)
CONFIRM_TIMEOUT_SECONDS = 5.0

MessageType = Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
SnsMessageType = Annotated[
    MessageType | None,
    Header(
        alias="x-amz-sns-message-type",
        description="The message's type as SNS sends it beside the body; it must equal the "
        "signed `Type` in the body (else `400 message_type_mismatch`). Not a credential: SNS "
        "signs inside the body.",
    ),
]


class SnsOutcome(BaseModel):
    outcome: Literal["accepted", "duplicate", "unsubscribed", "subscription_confirmed"] = Field(
        description="`accepted`: stored, applied right after the answer (or by the replay "
        "cron); `duplicate`: SNS retried a message already applied; `unsubscribed`: the topic "
        "no longer sends here; `subscription_confirmed`: the topic now sends here"
    )


WEBHOOK_ERRORS = {
    400: {"message_type_mismatch": "x-amz-sns-message-type does not match the message"},
    401: {
        "signature_invalid": "The SNS signature does not verify",
        "signature_stale": "The SNS message is too old or from the future",
        "certificate_not_allowed": "The signing certificate is not from SNS",
    },
    403: {
        "topic_not_allowed": "Messages from this topic are not accepted",
        "subscribe_url_not_allowed": "The SubscribeURL is not on an SNS host",
    },
    422: {"invalid_input": "The SNS message has no MessageId"},
    502: {"subscription_not_confirmed": "SNS did not accept the confirmation; retry later"},
    503: {
        "provider_not_configured": SNS.unconfigured,
        "certificate_unavailable": "The SNS signing certificate cannot be fetched",
    },
}


def parse_message(body: bytes) -> dict[str, Any]:
    message = parse_json(body, "The SNS message")
    if not isinstance(message, dict):
        raise ApiError(422, "invalid_input", "The SNS message is not a JSON object")
    return message


def require_fresh(message: dict[str, Any], now: datetime) -> None:
    """A verified message can still be a recording: refuse what SNS would no longer deliver."""
    try:
        published = datetime.fromisoformat(str(message.get("Timestamp")))
    except ValueError as error:
        raise ApiError(401, "signature_stale", "The SNS message has no valid Timestamp") from error
    if published.tzinfo is None or not (now - MAX_MESSAGE_AGE <= published <= now + MAX_CLOCK_SKEW):
        raise ApiError(401, "signature_stale", "The SNS message is too old or from the future")


def record(intake: WebhookIntake, message: dict[str, Any], body: bytes) -> tuple[StoredEvent, bool]:
    """Stores the message under its MessageId; answers it and whether it was already processed."""
    message_id = message.get("MessageId")
    if not isinstance(message_id, str) or not message_id:
        raise ApiError(422, "invalid_input", "The SNS message has no MessageId")
    recorded = intake.record("ses", message_id, body)
    return recorded.event, recorded.duplicate


def confirm_subscription(url: str) -> bool:
    """Fetching the SubscribeURL is how SNS learns we want the topic's messages."""
    try:
        response = httpx.get(url, timeout=CONFIRM_TIMEOUT_SECONDS, follow_redirects=False)
    except httpx.HTTPError:
        return False
    return response.is_success


def subscribe(sns: SnsVerifier, intake: WebhookIntake, message: dict[str, Any], body: bytes) -> str:
    """Confirms on every delivery, even a repeated one: confirming twice is harmless, and so a
    retry of a message whose first confirmation failed still confirms."""
    url = str(message.get("SubscribeURL", ""))
    if not sns.subscribe_url_allowed(url):
        raise ApiError(403, "subscribe_url_not_allowed", "The SubscribeURL is not on an SNS host")
    event, _ = record(intake, message, body)
    topic = message.get("TopicArn")
    if not confirm_subscription(url):
        log.warning("confirming the subscription to SNS topic %s failed; SNS retries it", topic)
        raise ApiError(
            502, "subscription_not_confirmed", "SNS did not accept the confirmation; retry later"
        )
    intake.finish(event, "applied")
    log.info("subscribed to SNS topic %s", topic)
    return "subscription_confirmed"


def verify(sns: SnsVerifier, message: dict[str, Any]) -> None:
    try:
        sns.verify(message)
    except SnsError as failure:
        raise api_error(failure) from failure


@router.post(
    "/api/v1/webhooks/ses",
    response_model=Envelope[SnsOutcome],
    summary="Receive Amazon SES events through an SNS topic",
    responses=documented({"outcome": "accepted"}, errors=WEBHOOK_ERRORS),
    openapi_extra=request_body(),
)
def ses_webhook(
    background: BackgroundTasks,
    body: Annotated[bytes, Depends(raw_body)],
    message_type: SnsMessageType,
    sns: Sns,
    intake: Intake,
) -> dict[str, Any]:
    """Subscribe this URL (HTTPS) to the SNS topic of the SES configuration set's event
    destination. SNS puts no credential in a header: each message is signed in its body
    (`Signature`, `SignatureVersion` 1 or 2, `SigningCertURL` on an SNS host), and the edge
    verifies that signature over the documented fields, accepts only the topics in
    SNS_TOPIC_ARNS and refuses messages older than SNS's hour of retries. A Notification is
    stored under its MessageId (SNS's retries reuse it), acknowledged at once and applied to
    the send ledger and the suppression list; a SubscriptionConfirmation is confirmed by
    fetching its SubscribeURL."""
    message = parse_message(body)
    if message_type != message.get("Type"):
        raise ApiError(
            400, "message_type_mismatch", "x-amz-sns-message-type does not match the message"
        )
    verify(sns, message)
    require_fresh(message, datetime.now(UTC))
    if message_type == "SubscriptionConfirmation":
        return ok({"outcome": subscribe(sns, intake, message, body)})
    if message_type == "Notification" and isinstance(message.get("Message"), str):
        # The SES event inside is applied as jsonb: refuse now what could never be applied.
        refuse_nul_in_embedded_json(message["Message"], "The SES event")
    event, duplicate = record(intake, message, body)
    if duplicate:
        return ok({"outcome": "duplicate"})
    if message_type == "UnsubscribeConfirmation":
        log.warning(
            "SNS topic %s unsubscribed this endpoint; SES events stop until it is subscribed again",
            message.get("TopicArn"),
        )
        intake.finish(event, "ignored:unsubscribe_confirmation")
        return ok({"outcome": "unsubscribed"})
    intake.apply_later(background, "ses", event)
    return ok({"outcome": "accepted"})


def applier(database: Database) -> Applier:
    """SES events are applied in SQL: delivery states, bounces, complaints, suppressions."""
    return sql_applier(database, "apply_ses_event")
