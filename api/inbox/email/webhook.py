"""Mail SES receives for our channels, through SNS: /api/v1/webhooks/ses-inbound.

The SES receipt rule's SNS action (encoding UTF-8 or Base64) publishes each mail with its raw
MIME in `content` (at most 150 KB; larger mail bounces at SES). Each SNS message is verified as
the SES events are (signature version 1 or 2 over the documented fields, a certificate on an SNS
host, one of SNS_TOPIC_ARNS, a Timestamp within SNS's hour of retries), stored under its
MessageId, acknowledged at once and applied after the answer: the MIME is parsed here
(`mime.parse`) and filed by private.ingest_inbound_email. Mail SES marked as spam or carrying a
virus (verdict FAIL) is stored and skipped."""

import base64
import binascii
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, BackgroundTasks, Depends, Header
from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.core.db import Database
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError, CodedError
from api.core.openapi import JSON, documented, inline_schema
from api.inbox.deps import INBOUND_SNS, InboundSns
from api.inbox.email import mime
from api.inbox.email.sns_check import SnsCheck
from api.webhooks.body import parse_json, raw_body
from api.webhooks.intake import Applier, Intake, StoredEvent

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("growthbase.inbox.email")
PROVIDER = "ses_inbound"
MAX_MESSAGE_AGE = timedelta(hours=1, minutes=5)
MAX_CLOCK_SKEW = timedelta(minutes=5)
SNS_STATUSES = {
    "invalid_input": 422,
    "topic_not_allowed": 403,
    "signature_invalid": 401,
    "certificate_not_allowed": 401,
    "certificate_unavailable": 503,
}


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class Verdict(Loose):
    status: str


class ReceiptAction(Loose):
    type: str
    encoding: str | None = None


class Receipt(Loose):
    timestamp: datetime
    recipients: list[str] = Field(max_length=100)
    spamVerdict: Verdict | None = None  # noqa: N815 - SES's field name
    virusVerdict: Verdict | None = None  # noqa: N815
    action: ReceiptAction


class ReceivedMail(Loose):
    timestamp: datetime
    source: str
    messageId: str = Field(max_length=200)  # noqa: N815


class Received(Loose):
    """SES's notification of a received mail (notificationType Received)."""

    notificationType: Literal["Received"]  # noqa: N815
    mail: ReceivedMail
    receipt: Receipt
    content: str | None = Field(None, description="The raw MIME, as the action's encoding says")


class SnsMessage(Loose):
    Type: Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]
    MessageId: str = Field(min_length=1, max_length=200)
    TopicArn: str
    Timestamp: str
    Signature: str
    SignatureVersion: Literal["1", "2"]
    SigningCertURL: str
    Message: str = Field(
        description="For a Notification: SES's Received notification, as a JSON string",
        json_schema_extra={"contentSchema": inline_schema(Received.model_json_schema())},
    )


class InboundOutcome(BaseModel):
    outcome: Literal["accepted", "duplicate", "unsubscribed", "subscription_confirmed"] = Field(
        description="`accepted`: stored, filed right after the answer (or by the replay cron); "
        "`duplicate`: SNS retried a message already filed; `subscription_confirmed`, "
        "`unsubscribed`: the topic's subscription changed"
    )


RECEIVED_EXAMPLE = {
    "notificationType": "Received",
    "mail": {
        "timestamp": "2026-06-01T10:00:00.000Z",
        "source": "jana@example.org",
        "messageId": "o3vrnil0e2ic28trm7dfhrc2v0clambda4nbp0g1",
        "destination": ["support@inbound.shop.example"],
        "headersTruncated": False,
        "commonHeaders": {
            "from": ["Jana <jana@example.org>"],
            "to": ["support@inbound.shop.example"],
            "subject": "Where is my order?",
        },
    },
    "receipt": {
        "timestamp": "2026-06-01T10:00:00.000Z",
        "processingTimeMillis": 420,
        "recipients": ["support@inbound.shop.example"],
        "spamVerdict": {"status": "PASS"},
        "virusVerdict": {"status": "PASS"},
        "spfVerdict": {"status": "PASS"},
        "dkimVerdict": {"status": "PASS"},
        "dmarcVerdict": {"status": "PASS"},
        "action": {
            "type": "SNS",
            "topicArn": "arn:aws:sns:eu-west-1:123456789012:growthbase-inbound",
            "encoding": "UTF8",
        },
    },
    "content": "From: Jana <jana@example.org>\r\nTo: support@inbound.shop.example\r\n"
    "Subject: Where is my order?\r\nMessage-ID: <CAF1a2b3c4@mail.example.org>\r\n"
    "Content-Type: text/plain; charset=UTF-8\r\n\r\nHello, order 1001 has not arrived.\r\n",
}
SNS_EXAMPLE = {
    "Type": "Notification",
    "MessageId": "da41e39f-ea4d-435a-b922-c6aae3915ebe",
    "TopicArn": "arn:aws:sns:eu-west-1:123456789012:growthbase-inbound",
    "Subject": "Amazon SES Email Receipt Notification",
    "Message": json.dumps(RECEIVED_EXAMPLE),
    "Timestamp": "2026-06-01T10:00:01.000Z",
    "SignatureVersion": "2",
    "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2"
    "egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+"
    "gLPoBc1Q=",
    "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem",
}
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
    422: {"invalid_input": "The body is not an SNS message"},
    502: {"subscription_not_confirmed": "SNS did not accept the confirmation; retry later"},
    503: {
        "provider_not_configured": INBOUND_SNS.unconfigured,
        "certificate_unavailable": "The SNS signing certificate cannot be fetched",
    },
}
REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An SNS message (SNS sends JSON as text/plain). SNS signs it in the body: "
        "the Signature field covers the other fields and is verified with the certificate "
        "SigningCertURL names.",
        "content": {
            "text/plain": {
                "schema": {"type": "string", "contentMediaType": "application/json"},
                "example": json.dumps(SNS_EXAMPLE),
            },
            JSON: {"schema": inline_schema(SnsMessage.model_json_schema()), "example": SNS_EXAMPLE},
        },
    }
}
MessageType = Annotated[
    Literal["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"] | None,
    Header(
        alias="x-amz-sns-message-type",
        description="The message's type as SNS sends it beside the body; it must equal the "
        "signed `Type`.",
    ),
]


def verified(sns: SnsCheck, body: bytes, message_type: str | None) -> dict[str, Any]:
    message = parse_json(body, "The SNS message")
    if not isinstance(message, dict):
        raise ApiError(422, "invalid_input", "The body is not an SNS message")
    if message_type != message.get("Type"):
        raise ApiError(
            400, "message_type_mismatch", "x-amz-sns-message-type does not match the message"
        )
    try:
        sns.verify(message)
    except CodedError as failure:
        raise ApiError(
            SNS_STATUSES.get(failure.code, 401), failure.code, failure.message
        ) from failure
    try:
        published = datetime.fromisoformat(str(message.get("Timestamp")))
    except ValueError as error:
        raise ApiError(401, "signature_stale", "The SNS message has no valid Timestamp") from error
    now = datetime.now(UTC)
    if published.tzinfo is None or not (now - MAX_MESSAGE_AGE <= published <= now + MAX_CLOCK_SKEW):
        raise ApiError(401, "signature_stale", "The SNS message is too old or from the future")
    if not isinstance(message.get("MessageId"), str) or not message["MessageId"]:
        raise ApiError(422, "invalid_input", "The body is not an SNS message")
    return message


@router.post(
    "/api/v1/webhooks/ses-inbound",
    response_model=Envelope[InboundOutcome],
    summary="Receive mail for the inbox's email channels from SES through SNS",
    responses=documented({"outcome": "accepted"}, errors=WEBHOOK_ERRORS),
    openapi_extra=REQUEST_BODY,
)
def ses_inbound_webhook(
    background: BackgroundTasks,
    body: Annotated[bytes, Depends(raw_body)],
    message_type: MessageType,
    sns: InboundSns,
    intake: Intake,
) -> dict[str, Any]:
    """Subscribe this URL (HTTPS) to the SNS topic of the SES receipt rule for the channels'
    addresses, and list that topic in SNS_TOPIC_ARNS. SNS puts no credential in a header: each
    message is signed in its body (Signature, SignatureVersion 1 or 2, SigningCertURL on an
    SNS host). A SubscriptionConfirmation is confirmed by fetching its SubscribeURL."""
    message = verified(sns, body, message_type)
    if message_type == "SubscriptionConfirmation":
        url = str(message.get("SubscribeURL", ""))
        if not sns.subscribe_url_allowed(url):
            raise ApiError(
                403, "subscribe_url_not_allowed", "The SubscribeURL is not on an SNS host"
            )
        try:
            confirmed = httpx.get(url, timeout=5.0, follow_redirects=False).is_success
        except httpx.HTTPError:
            confirmed = False
        if not confirmed:
            raise ApiError(
                502,
                "subscription_not_confirmed",
                "SNS did not accept the confirmation; retry later",
            )
        return ok({"outcome": "subscription_confirmed"})
    recorded = intake.record(PROVIDER, message["MessageId"], body)
    if recorded.duplicate:
        return ok({"outcome": "duplicate"})
    if message_type == "UnsubscribeConfirmation":
        intake.finish(recorded.event, "ignored:unsubscribe_confirmation")
        return ok({"outcome": "unsubscribed"})
    intake.apply_later(background, PROVIDER, recorded.event)
    return ok({"outcome": "accepted"})


def raw_mime(received: Received) -> bytes | None:
    if received.content is None:
        return None
    if (received.receipt.action.encoding or "").upper() == "BASE64":
        try:
            return base64.b64decode(received.content, validate=False)
        except (binascii.Error, ValueError):
            return None
    return received.content.encode("utf-8", "surrogateescape")


def applier(database: Database) -> Applier:
    """Parses the stored mail and files it; anything that is no mail for us is finished as
    ignored (so the replay does not try it again)."""

    def finish(event: StoredEvent, outcome: str) -> str:
        with database.as_service() as conn:
            conn.execute("select private.finish_webhook_event(%s, %s)", (event.id, outcome))
        return outcome

    def apply(event: StoredEvent) -> str:
        try:
            envelope = json.loads(event.body)
            received = Received.model_validate(json.loads(envelope.get("Message", "")))
        except (ValueError, ValidationError, AttributeError):
            return finish(event, "ignored:not_received_mail")
        receipt = received.receipt
        if any(
            v is not None and v.status.upper() == "FAIL"
            for v in (receipt.spamVerdict, receipt.virusVerdict)
        ):
            return finish(event, "ignored:spam_or_virus")
        raw = raw_mime(received)
        if raw is None:
            return finish(event, "ignored:no_content")
        mail = mime.parse(raw)
        document = {**mail.as_json(), "ses_message_id": received.mail.messageId}
        # Each attachment is fetched into Storage by the media cron from this stored mail.
        document["attachments"] = [
            {**attachment, "provider_media_id": f"{event.id}:{index}"}
            for index, attachment in enumerate(document["attachments"])
        ]
        with database.as_service() as conn:
            row = conn.execute(
                "select private.ingest_inbound_email(%s, %s, %s, %s) as outcome",
                (
                    event.id,
                    [address.lower() for address in receipt.recipients],
                    Jsonb(document),
                    received.mail.timestamp,
                ),
            ).fetchone()
        return str(row["outcome"]) if row else "unknown"

    return apply
