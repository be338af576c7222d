"""What SNS posts to the SES webhook, for the contract: the three SNS message types, the SES
event a Notification carries as a JSON string in `Message`, and examples of each.

The shapes follow AWS's documentation of SNS over HTTP(S) and of SES event publishing. The
edge reads the raw body itself (the signature covers its fields), so these models only
describe it; every object allows fields AWS may add.
"""

import base64
import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel, to_pascal

from api.core.openapi import inline_schema

# SES event records ------------------------------------------------------------------------------


class SesShape(BaseModel):
    """SES names its fields in camelCase."""

    model_config = ConfigDict(extra="allow", alias_generator=to_camel)


class MailHeader(SesShape):
    name: str
    value: str


class CommonHeaders(SesShape):
    from_: list[str] | None = Field(None, alias="from")
    to: list[str] | None = None
    message_id: str | None = None
    subject: str | None = None


class Mail(SesShape):
    """The message the event is about."""

    timestamp: str = Field(json_schema_extra={"format": "date-time"})
    message_id: str = Field(description="SES's message id: what the send ledger stored")
    source: str
    source_arn: str | None = None
    sending_account_id: str | None = None
    destination: list[str]
    headers_truncated: bool | None = None
    headers: list[MailHeader] | None = None
    common_headers: CommonHeaders | None = None
    tags: dict[str, list[str]] | None = Field(
        None,
        description="The send's EmailTags (ours: `campaign_id`, `recipient_id`) and SES's own "
        "(`ses:configuration-set`, ...). Absent in the older notifications.",
    )


class BouncedRecipient(SesShape):
    email_address: str
    action: str | None = None
    status: str | None = None
    diagnostic_code: str | None = None


class Bounce(SesShape):
    bounce_type: Literal["Permanent", "Transient", "Undetermined"] = Field(
        description="A Permanent bounce suppresses the address"
    )
    bounce_sub_type: str
    bounced_recipients: list[BouncedRecipient]
    timestamp: str = Field(json_schema_extra={"format": "date-time"})
    feedback_id: str
    reporting_mta: str | None = Field(None, alias="reportingMTA")


class ComplainedRecipient(SesShape):
    email_address: str


class Complaint(SesShape):
    """A complaint suppresses the address in every workspace."""

    complained_recipients: list[ComplainedRecipient]
    timestamp: str = Field(json_schema_extra={"format": "date-time"})
    feedback_id: str
    complaint_feedback_type: str | None = None
    user_agent: str | None = None
    arrival_date: str | None = None


class Delivery(SesShape):
    timestamp: str = Field(json_schema_extra={"format": "date-time"})
    processing_time_millis: int
    recipients: list[str]
    smtp_response: str
    reporting_mta: str = Field(alias="reportingMTA")


class Open(SesShape):
    timestamp: str = Field(json_schema_extra={"format": "date-time"})
    ip_address: str
    user_agent: str


class Click(Open):
    link: str
    link_tags: dict[str, list[str]] | None = None


class Reject(SesShape):
    reason: str


class DelayedRecipient(SesShape):
    email_address: str
    status: str | None = None
    diagnostic_code: str | None = None


class DeliveryDelay(SesShape):
    timestamp: str = Field(json_schema_extra={"format": "date-time"})
    delay_type: str
    expiration_time: str | None = None
    delayed_recipients: list[DelayedRecipient]


class RenderingFailure(SesShape):
    error_message: str
    template_name: str


class SesEvent(SesShape):
    """One SES event record, published through the configuration set's SNS destination. Older
    identity notifications name their kind in `notificationType` instead of `eventType`; the
    object named after the kind (`bounce`, `delivery`, ...) holds its details."""

    event_type: (
        Literal[
            "Send",
            "Reject",
            "Bounce",
            "Complaint",
            "Delivery",
            "Open",
            "Click",
            "Rendering Failure",
            "DeliveryDelay",
            "Subscription",
        ]
        | None
    ) = None
    notification_type: Literal["Bounce", "Complaint", "Delivery"] | None = None
    mail: Mail
    send: dict[str, Any] | None = None
    reject: Reject | None = None
    bounce: Bounce | None = None
    complaint: Complaint | None = None
    delivery: Delivery | None = None
    open: Open | None = None
    click: Click | None = None
    delivery_delay: DeliveryDelay | None = None
    failure: RenderingFailure | None = None


# SNS messages -----------------------------------------------------------------------------------


class SnsShape(BaseModel):
    """SNS names its fields in PascalCase; every value is a string."""

    model_config = ConfigDict(extra="allow", alias_generator=to_pascal)

    message_id: str = Field(description="SNS's id of the message; its retries reuse it")
    topic_arn: str = Field(description="Only the topics in SNS_TOPIC_ARNS are accepted")
    timestamp: str = Field(
        description="When SNS published the message, kept on its retries: a message older "
        "than SNS retries for (an hour, with five minutes of clock skew), or from the future, "
        "is refused",
        json_schema_extra={"format": "date-time"},
    )
    signature_version: Literal["1", "2"] = Field(description="1: SHA1withRSA, 2: SHA256withRSA")
    signature: str = Field(
        description="Base64 RSA signature over the message's fields (`Key\\nValue\\n` in SNS's "
        "documented order), verified with the certificate at SigningCertURL",
        json_schema_extra={"contentEncoding": "base64"},
    )
    signing_cert_url: str = Field(
        alias="SigningCertURL",
        description="An https `.pem` URL on an `sns.<region>.amazonaws.com` host",
        json_schema_extra={"format": "uri"},
    )


class Notification(SnsShape):
    type: Literal["Notification"]
    message: str = Field(
        description="The SES event, as a JSON string",
        json_schema_extra={
            "contentMediaType": "application/json",
            "contentSchema": inline_schema(SesEvent.model_json_schema()),
        },
    )
    subject: str | None = None
    unsubscribe_url: str | None = Field(None, alias="UnsubscribeURL")


class Confirmation(SnsShape):
    message: str
    token: str
    subscribe_url: str = Field(alias="SubscribeURL", json_schema_extra={"format": "uri"})


class SubscriptionConfirmation(Confirmation):
    """Sent when the topic subscribes this endpoint; the edge confirms it by fetching
    SubscribeURL (only on an SNS host)."""

    type: Literal["SubscriptionConfirmation"]


class UnsubscribeConfirmation(Confirmation):
    """Sent when the subscription is removed: SES events stop until it is subscribed again."""

    type: Literal["UnsubscribeConfirmation"]


SNS_MESSAGE_SCHEMA = inline_schema(
    TypeAdapter(Notification | SubscriptionConfirmation | UnsubscribeConfirmation).json_schema(
        by_alias=True
    )
)


# examples ---------------------------------------------------------------------------------------

TOPIC_ARN = "arn:aws:sns:eu-central-1:123456789012:growthbase-ses-events"
CERTIFICATE_URL = (
    "https://sns.eu-central-1.amazonaws.com/"
    "SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
)
SES_MESSAGE_ID = "010701934a7b8c2d-5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9-000000"
RECIPIENT = "jana@mail.example.org"
SOURCE = "Growthbase Shop <news@shop.example>"


def example_signature(seed: str) -> str:
    """A signature of a 2048-bit key's length (SNS's), for the examples only."""
    return base64.b64encode(hashlib.sha256(seed.encode()).digest() * 8).decode()


def example_mail() -> dict[str, Any]:
    return {
        "timestamp": "2026-11-23T08:00:00.000Z",
        "source": SOURCE,
        "sourceArn": "arn:aws:ses:eu-central-1:123456789012:identity/shop.example",
        "sendingAccountId": "123456789012",
        "messageId": SES_MESSAGE_ID,
        "destination": [RECIPIENT],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": SOURCE},
            {"name": "To", "value": RECIPIENT},
            {"name": "Subject", "value": "Jana, your Brno offer"},
        ],
        "commonHeaders": {
            "from": [SOURCE],
            "to": [RECIPIENT],
            "messageId": SES_MESSAGE_ID,
            "subject": "Jana, your Brno offer",
        },
        "tags": {
            "ses:configuration-set": ["growthbase-campaigns"],
            "ses:from-domain": ["shop.example"],
            "campaign_id": ["8d2f4a6c-1b3e-4d5f-9a7c-0e2b4d6f8a1c"],
            "recipient_id": ["a1c3e5f7-0b2d-4f6a-8c0e-1d3f5a7b9c2e"],
        },
    }


def example_notification(event: dict[str, Any], message_id: str) -> dict[str, Any]:
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": TOPIC_ARN,
        "Message": json.dumps(event),
        "Timestamp": "2026-11-23T08:01:03.417Z",
        "SignatureVersion": "2",
        "Signature": example_signature(message_id),
        "SigningCertURL": CERTIFICATE_URL,
        "UnsubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=Unsubscribe"
        f"&SubscriptionArn={TOPIC_ARN}:5f1c7a2e-0c6b-4b7a-9a34-1d3f0e6b8c21",
    }


DELIVERY_EVENT = {
    "eventType": "Delivery",
    "mail": example_mail(),
    "delivery": {
        "timestamp": "2026-11-23T08:00:01.204Z",
        "processingTimeMillis": 1204,
        "recipients": [RECIPIENT],
        "smtpResponse": "250 2.0.0 OK  1795424401 a640c23a62f3a-aa5",
        "reportingMTA": "a7-30.smtp-out.eu-central-1.amazonses.com",
    },
}
BOUNCE_EVENT = {
    "eventType": "Bounce",
    "mail": example_mail(),
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {
                "emailAddress": RECIPIENT,
                "action": "failed",
                "status": "5.1.1",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown",
            }
        ],
        "timestamp": "2026-11-23T08:00:02.113Z",
        "feedbackId": "010701934a7b9d3e-2c4e6a8b-1d3f-4a5b-8c7d-9e0f1a2b3c4d-000000",
        "reportingMTA": "dsn; a7-30.smtp-out.eu-central-1.amazonses.com",
    },
}
# What SNS names the confirmation's Token (public: it travels in SubscribeURL).
CONFIRMATION_CODE = (
    "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f"
)
SUBSCRIPTION_CONFIRMATION = {
    "Type": "SubscriptionConfirmation",
    "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
    "Token": CONFIRMATION_CODE,
    "TopicArn": TOPIC_ARN,
    "Message": f"You have chosen to subscribe to the topic {TOPIC_ARN}.\nTo confirm the "
    "subscription, visit the SubscribeURL included in this message.",
    "SubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC_ARN}&Token={CONFIRMATION_CODE}",
    "Timestamp": "2026-11-23T07:58:41.720Z",
    "SignatureVersion": "2",
    "Signature": example_signature("165545c9-2a5c-472c-8df2-7ff2be2b3b1b"),
    "SigningCertURL": CERTIFICATE_URL,
}
DELIVERY_NOTIFICATION = example_notification(DELIVERY_EVENT, "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324")
SNS_MESSAGE_EXAMPLES = {
    "delivery": {"summary": "An SES Delivery event", "value": DELIVERY_NOTIFICATION},
    "bounce": {
        "summary": "An SES permanent Bounce event",
        "value": example_notification(BOUNCE_EVENT, "d2a4c6e8-0f1b-4d3a-9e5c-7b9d1f3a5c7e"),
    },
    "subscription_confirmation": {
        "summary": "The topic subscribing this endpoint",
        "value": SUBSCRIPTION_CONFIRMATION,
    },
}


def request_body() -> dict[str, Any]:
    """`openapi_extra` of the webhook: SNS sends the JSON message as text/plain; the edge reads
    the same JSON under any content type."""
    return {
        "requestBody": {
            "required": True,
            "description": "An SNS message. SNS signs it in the body, not in a header: the "
            "Signature field covers the other fields and is verified with the certificate "
            "SigningCertURL names.",
            "content": {
                "text/plain": {
                    "schema": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": SNS_MESSAGE_SCHEMA,
                    },
                    "example": json.dumps(DELIVERY_NOTIFICATION),
                },
                "application/json": {
                    "schema": SNS_MESSAGE_SCHEMA,
                    "examples": SNS_MESSAGE_EXAMPLES,
                },
            },
        }
    }
