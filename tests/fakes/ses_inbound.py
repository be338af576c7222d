"""SES receiving as AWS documents it (docs.aws.amazon.com/ses/latest/dg/
receiving-email-notifications-contents.html): the Received notification an SNS action
publishes, with the raw MIME in `content` (UTF-8 or Base64), wrapped in an SNS Notification
signed as SNS signs it."""

import base64
import uuid
from datetime import UTC, datetime
from typing import Any

from tests.fakes.sns_signing import Certificate

TOPIC = "arn:aws:sns:eu-west-1:123456789012:growthbase-inbound"


def iso(moment: datetime) -> str:
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def received(
    raw: bytes,
    recipients: list[str],
    *,
    encoding: str = "UTF8",
    spam: str = "PASS",
    virus: str = "PASS",
    at: datetime | None = None,
) -> dict[str, Any]:
    moment = at or datetime.now(UTC)
    content = (
        base64.b64encode(raw).decode() if encoding == "BASE64" else raw.decode("utf-8", "replace")
    )
    return {
        "notificationType": "Received",
        "mail": {
            "timestamp": iso(moment),
            "source": "sender@example.org",
            "messageId": uuid.uuid4().hex[:20] + "lambda4nbp0g1",
            "destination": recipients,
            "headersTruncated": False,
            "headers": [],
            "commonHeaders": {"returnPath": "sender@example.org", "to": recipients},
        },
        "receipt": {
            "timestamp": iso(moment),
            "processingTimeMillis": 574,
            "recipients": recipients,
            "spamVerdict": {"status": spam},
            "virusVerdict": {"status": virus},
            "spfVerdict": {"status": "PASS"},
            "dkimVerdict": {"status": "PASS"},
            "dmarcVerdict": {"status": "PASS"},
            "action": {"type": "SNS", "topicArn": TOPIC, "encoding": encoding},
        },
        "content": content,
    }


def notification(
    certificate: Certificate,
    certificate_url: str,
    message: str,
    *,
    published: datetime | None = None,
) -> dict[str, Any]:
    return certificate.sign(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": TOPIC,
            "Subject": "Amazon SES Email Receipt Notification",
            "Message": message,
            "Timestamp": iso(published or datetime.now(UTC)),
            "SigningCertURL": certificate_url,
            "UnsubscribeURL": f"https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC}:1",
        },
        "2",
    )
