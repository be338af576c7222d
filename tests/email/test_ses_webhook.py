"""SES events through SNS, end to end: SNS messages signed as SNS signs them (with a certificate
the test serves in place of SNS's host) carrying SES event records in the shapes of AWS's event
publishing documentation, posted to the edge and applied to a real campaign's send ledger."""

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow, dict_row
from pydantic import SecretStr

from api.app import create_app
from api.core.db import become_service
from api.core.settings import Settings
from tests.factories.email import (
    FROM_EMAIL,
    SENDER_DOMAIN,
    add_contacts,
    draft_campaign,
    email_list,
    start,
    verified_sender,
)
from tests.factories.webhook_events import put_off_due_webhook_events
from tests.factories.workspaces import User, acting_as, add_member, create_user, wait_until_blocked
from tests.fakes import sns_signing
from tests.fakes.jwks import JwksServer
from tests.fakes.sns_signing import Certificate, SnsHost, serve_sns

Conn = psycopg.Connection[DictRow]
TOPIC = "arn:aws:sns:eu-central-1:123456789012:growthbase-ses-events"
CRON = "cron-" + uuid.uuid4().hex
SOURCE = f"Growthbase Shop <{FROM_EMAIL}>"
SENT_AT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)

# The shared SNS fixtures, under the names the tests ask for.
certificate = sns_signing.certificate
cert_host = sns_signing.cert_host


def iso(moment: datetime) -> str:
    """SES's and SNS's time format: UTC with milliseconds and a Z."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def minutes(count: float) -> datetime:
    return SENT_AT + timedelta(minutes=count)


def ses_message_id() -> str:
    return f"0107019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000"


@dataclass(frozen=True)
class Recipient:
    id: uuid.UUID
    campaign_id: uuid.UUID
    email: str
    message_id: str


@dataclass(frozen=True)
class Campaign:
    user: User
    id: uuid.UUID
    list_id: uuid.UUID
    sender_id: uuid.UUID
    recipients: list[Recipient]


def started_campaign(conn: Conn, contacts: int) -> Campaign:
    user = create_user(conn)
    contact_ids = add_contacts(conn, user, contacts)
    sender_id = verified_sender(conn, user)
    list_id = email_list(conn, user, contact_ids)
    campaign_id = draft_campaign(conn, user, list_ids=[list_id], sender_id=sender_id)
    assert start(conn, user, campaign_id) == contacts
    rows = conn.execute(
        "select id, email from public.campaign_recipients where campaign_id = %s"
        " order by substring(email from '-([0-9]+)@')::integer",
        (campaign_id,),
    ).fetchall()
    recipients = [Recipient(r["id"], campaign_id, r["email"], ses_message_id()) for r in rows]
    return Campaign(user, campaign_id, list_id, sender_id, recipients)


def claim(conn: Conn, recipient: Recipient) -> None:
    """What a worker's claim does to a row: sending, leased, one more attempt."""
    conn.execute(
        "update public.campaign_recipients set status = 'sending', attempts = attempts + 1,"
        " locked_until = now() + interval '5 minutes' where id = %s",
        (recipient.id,),
    )


def hand_to_ses(conn: Conn, recipient: Recipient) -> None:
    """A worker claims the row, SES accepts the message and the worker records its id."""
    claim(conn, recipient)
    conn.execute("select private.email_sent(%s, %s)", (recipient.id, recipient.message_id))


def sent_campaign(conn: Conn, contacts: int) -> Campaign:
    campaign = started_campaign(conn, contacts)
    for recipient in campaign.recipients:
        hand_to_ses(conn, recipient)
    return campaign


def ledger(conn: Conn, recipient: Recipient) -> dict[str, Any]:
    row = conn.execute(
        "select * from public.campaign_recipients where id = %s", (recipient.id,)
    ).fetchone()
    assert row is not None
    return dict(row)


def stored(conn: Conn, message_id: str) -> dict[str, Any] | None:
    row = conn.execute(
        "select status, outcome from private.webhook_events"
        " where provider = 'ses' and event_id = %s",
        (message_id,),
    ).fetchone()
    return dict(row) if row else None


# SES event records ------------------------------------------------------------------------------


def mail(recipient: Recipient, *, tagged: bool = True) -> dict[str, Any]:
    """The `mail` object; identity notifications of the older shape carry no tags."""
    subject = "News for Reader"
    common: dict[str, Any] = {
        "timestamp": iso(SENT_AT),
        "source": SOURCE,
        "sourceArn": f"arn:aws:ses:eu-central-1:123456789012:identity/{SENDER_DOMAIN}",
        "sendingAccountId": "123456789012",
        "messageId": recipient.message_id,
        "destination": [recipient.email],
        "headersTruncated": False,
        "headers": [
            {"name": "From", "value": SOURCE},
            {"name": "To", "value": recipient.email},
            {"name": "Subject", "value": subject},
            {"name": "MIME-Version", "value": "1.0"},
            {
                "name": "Content-Type",
                "value": 'multipart/alternative; boundary="===============3915735613004914290=="',
            },
        ],
        "commonHeaders": {
            "from": [SOURCE],
            "to": [recipient.email],
            "messageId": recipient.message_id,
            "subject": subject,
        },
    }
    if not tagged:
        return {**common, "sourceIp": "192.0.2.10", "callerIdentity": "growthbase-edge"}
    return {
        **common,
        "tags": {
            "ses:configuration-set": ["growthbase-campaigns"],
            "ses:source-ip": ["192.0.2.10"],
            "ses:from-domain": [SENDER_DOMAIN],
            "ses:caller-identity": ["growthbase-edge"],
            "campaign_id": [str(recipient.campaign_id)],
            "recipient_id": [str(recipient.id)],
        },
    }


def send(recipient: Recipient) -> dict[str, Any]:
    return {"eventType": "Send", "mail": mail(recipient), "send": {}}


def delivery(recipient: Recipient, at: datetime, *, legacy: bool = False) -> dict[str, Any]:
    details = {
        "timestamp": iso(at),
        "processingTimeMillis": 1204,
        "recipients": [recipient.email],
        "smtpResponse": "250 2.0.0 OK  1732352463 a640c23a62f3a-aa5",
        "reportingMTA": "a7-30.smtp-out.eu-central-1.amazonses.com",
    }
    if legacy:
        return {
            "notificationType": "Delivery",
            "mail": mail(recipient, tagged=False),
            "delivery": details,
        }
    return {"eventType": "Delivery", "mail": mail(recipient), "delivery": details}


def bounce(
    recipient: Recipient,
    at: datetime,
    bounce_type: str,
    sub_type: str,
    address: str | None = None,
    *,
    legacy: bool = False,
) -> dict[str, Any]:
    permanent = bounce_type == "Permanent"
    details = {
        "bounceType": bounce_type,
        "bounceSubType": sub_type,
        "bouncedRecipients": [
            {
                "emailAddress": address or recipient.email,
                "action": "failed",
                "status": "5.1.1" if permanent else "4.2.2",
                "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                if permanent
                else "smtp; 452 4.2.2 mailbox full",
            }
        ],
        "timestamp": iso(at),
        "feedbackId": f"0107019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000",
        "reportingMTA": "dsn; a7-30.smtp-out.eu-central-1.amazonses.com",
    }
    if legacy:
        return {
            "notificationType": "Bounce",
            "mail": mail(recipient, tagged=False),
            "bounce": details,
        }
    return {"eventType": "Bounce", "mail": mail(recipient), "bounce": details}


def complaint(recipient: Recipient, at: datetime) -> dict[str, Any]:
    return {
        "eventType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": recipient.email}],
            "timestamp": iso(at),
            "feedbackId": f"0107019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000",
            "userAgent": "Yahoo!-Mail-Feedback/2.0",
            "complaintFeedbackType": "abuse",
            "arrivalDate": iso(at - timedelta(seconds=3)),
        },
        "mail": mail(recipient),
    }


def reject(recipient: Recipient) -> dict[str, Any]:
    return {"eventType": "Reject", "mail": mail(recipient), "reject": {"reason": "Bad content"}}


def opened(recipient: Recipient, at: datetime) -> dict[str, Any]:
    return {
        "eventType": "Open",
        "mail": mail(recipient),
        "open": {
            "ipAddress": "192.0.2.1",
            "timestamp": iso(at),
            "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X)"
            " AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        },
    }


def clicked(recipient: Recipient, at: datetime) -> dict[str, Any]:
    return {
        "eventType": "Click",
        "click": {
            "ipAddress": "192.0.2.1",
            "link": "https://shop.example/black-friday?utm_source=growthbase",
            "linkTags": {"campaign": ["black-friday"]},
            "timestamp": iso(at),
            "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36"
            " (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        },
        "mail": mail(recipient),
    }


def delayed(recipient: Recipient, at: datetime) -> dict[str, Any]:
    return {
        "eventType": "DeliveryDelay",
        "mail": mail(recipient),
        "deliveryDelay": {
            "timestamp": iso(at),
            "delayType": "TransientCommunicationFailure",
            "expirationTime": iso(at + timedelta(hours=12)),
            "delayedRecipients": [
                {
                    "emailAddress": recipient.email,
                    "status": "4.4.1",
                    "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
                }
            ],
        },
    }


def rendering_failure(recipient: Recipient) -> dict[str, Any]:
    return {
        "eventType": "Rendering Failure",
        "mail": mail(recipient),
        "failure": {
            "errorMessage": "Attribute 'first_name' is not present in the rendering data.",
            "templateName": "november-news",
        },
    }


# SNS --------------------------------------------------------------------------------------------


class Sns:
    """Publishes to our topic the way SNS does: signed envelopes POSTed with SNS's headers."""

    def __init__(self, client: TestClient, certificate: Certificate, host: SnsHost) -> None:
        self.client, self.certificate, self.host = client, certificate, host

    @property
    def cert_url(self) -> str:
        return (
            f"{self.host.base_url}/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
        )

    def notification(
        self,
        record: dict[str, Any] | str,
        *,
        topic: str = TOPIC,
        published: datetime | None = None,
        version: str = "1",
    ) -> dict[str, Any]:
        return self.certificate.sign(
            {
                "Type": "Notification",
                "MessageId": str(uuid.uuid4()),
                "TopicArn": topic,
                "Message": record if isinstance(record, str) else json.dumps(record),
                "Timestamp": iso(published or datetime.now(UTC)),
                "SigningCertURL": self.cert_url,
                "UnsubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=Unsubscribe"
                f"&SubscriptionArn={TOPIC}:5f1c7a2e-0c6b-4b7a-9a34-1d3f0e6b8c21",
            },
            version,
        )

    def confirmation(
        self, kind: str = "SubscriptionConfirmation", subscribe_origin: str | None = None
    ) -> dict[str, Any]:
        token = uuid.uuid4().hex * 4
        text = (
            f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription,"
            " visit the SubscribeURL included in this message."
            if kind == "SubscriptionConfirmation"
            else f"You have chosen to deactivate subscription to the topic {TOPIC}."
        )
        return self.certificate.sign(
            {
                "Type": kind,
                "MessageId": str(uuid.uuid4()),
                "Token": token,
                "TopicArn": TOPIC,
                "Message": text,
                "SubscribeURL": f"{subscribe_origin or self.host.base_url}/?Action="
                f"ConfirmSubscription&TopicArn={TOPIC}&Token={token}",
                "Timestamp": iso(datetime.now(UTC)),
                "SigningCertURL": self.cert_url,
            },
            "1",
        )

    def post(
        self, message: dict[str, Any], *, message_type: str | None = None, body: bytes | None = None
    ) -> Any:
        return self.client.post(
            "/api/v1/webhooks/ses",
            content=body if body is not None else json.dumps(message).encode(),
            headers={
                "x-amz-sns-message-type": message_type or message["Type"],
                "x-amz-sns-message-id": message["MessageId"],
                "x-amz-sns-topic-arn": message["TopicArn"],
                "Content-Type": "text/plain; charset=UTF-8",
                "User-Agent": "Amazon Simple Notification Service Agent",
            },
        )

    def publish(self, record: dict[str, Any]) -> str:
        """Delivers one SES event, which the edge must accept; answers its SNS MessageId."""
        message = self.notification(record)
        response = self.post(message)
        assert response.status_code == 200, response.text
        assert response.json()["data"] == {"outcome": "accepted"}
        return str(message["MessageId"])


def settings_for(database_url: str, jwks: JwksServer, host: SnsHost, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": SecretStr(database_url),
        "supabase_url": jwks.base_url,
        "sns_topic_arns": [TOPIC],
        "sns_certificate_origins": [host.base_url],
        "cron_secret": SecretStr(CRON),
        **changes,
    }
    return Settings(**values)


@pytest.fixture
def client(database_url: str, jwks: JwksServer, cert_host: SnsHost) -> Iterator[TestClient]:
    with TestClient(create_app(settings_for(database_url, jwks, cert_host))) as test_client:
        yield test_client


@pytest.fixture
def sns(client: TestClient, certificate: Certificate, cert_host: SnsHost) -> Sns:
    return Sns(client, certificate, cert_host)


@pytest.fixture(autouse=True)
def forget_platform_suppressions(conn: Conn) -> Iterator[None]:
    """Every test's contacts share addresses across workspaces, so a complaint or bounce of one
    test must not suppress the addresses of the next."""
    yield
    conn.execute("delete from private.platform_suppressions")


# subscription -----------------------------------------------------------------------------------


def confirmations(host: SnsHost) -> list[str]:
    return [path for path in host.fetched if path.startswith("/?Action=ConfirmSubscription")]


def test_a_subscription_is_confirmed_by_fetching_its_subscribe_url(sns: Sns, conn: Conn) -> None:
    message = sns.confirmation()
    response = sns.post(message)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"outcome": "subscription_confirmed"}
    assert confirmations(sns.host) == [
        f"/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={message['Token']}"
    ]
    assert stored(conn, message["MessageId"]) == {"status": "applied", "outcome": "applied"}


def test_a_confirmation_sns_could_not_take_is_confirmed_when_sns_retries(
    sns: Sns, conn: Conn
) -> None:
    message = sns.confirmation()
    sns.host.failures = 1
    refused = sns.post(message)
    assert refused.status_code == 502
    assert refused.json()["error"]["code"] == "subscription_not_confirmed"
    assert stored(conn, message["MessageId"]) == {"status": "received", "outcome": None}
    retried = sns.post(message)
    assert retried.json()["data"] == {"outcome": "subscription_confirmed"}
    assert len(confirmations(sns.host)) == 2
    assert stored(conn, message["MessageId"]) == {"status": "applied", "outcome": "applied"}


def test_a_subscribe_url_off_sns_is_never_fetched(
    sns: Sns, certificate: Certificate, conn: Conn
) -> None:
    with serve_sns(certificate) as elsewhere:
        message = sns.confirmation(subscribe_origin=elsewhere.base_url)
        response = sns.post(message)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "subscribe_url_not_allowed"
    assert elsewhere.fetched == []
    assert stored(conn, message["MessageId"]) is None


def test_an_unsubscribe_confirmation_is_kept_and_applies_nothing(sns: Sns, conn: Conn) -> None:
    message = sns.confirmation("UnsubscribeConfirmation")
    response = sns.post(message)
    assert response.json()["data"] == {"outcome": "unsubscribed"}
    assert stored(conn, message["MessageId"]) == {
        "status": "ignored",
        "outcome": "ignored:unsubscribe_confirmation",
    }
    assert confirmations(sns.host) == []


# events -----------------------------------------------------------------------------------------


def test_each_event_type_lands_on_its_recipient_with_the_events_own_times(
    sns: Sns, conn: Conn
) -> None:
    campaign = sent_campaign(conn, 4)
    reader, rejected, unrendered, legacy = campaign.recipients
    records = [
        send(reader),
        delayed(reader, minutes(1)),
        delivery(reader, minutes(3)),
        opened(reader, minutes(20)),
        opened(reader, minutes(10)),  # SNS does not keep order
        clicked(reader, minutes(21)),
        clicked(reader, minutes(11)),
        reject(rejected),
        rendering_failure(unrendered),
        delivery(legacy, minutes(2), legacy=True),
    ]
    message_ids = [sns.publish(record) for record in records]
    assert [stored(conn, m) for m in message_ids] == [
        {"status": "applied", "outcome": "applied"}
    ] * len(records)

    row = ledger(conn, reader)
    assert (row["status"], row["ses_message_id"]) == ("sent", reader.message_id)
    assert row["delayed_at"] == minutes(1)
    assert row["delivered_at"] == minutes(3)
    assert (row["opens"], row["opened_at"], row["last_opened_at"]) == (2, minutes(10), minutes(20))
    assert (row["clicks"], row["clicked_at"], row["last_clicked_at"]) == (
        2,
        minutes(11),
        minutes(21),
    )
    assert (row["bounced_at"], row["complained_at"], row["rejected_at"]) == (None, None, None)
    assert ledger(conn, rejected)["rejected_at"] == SENT_AT
    assert ledger(conn, rejected)["delivered_at"] is None
    assert ledger(conn, unrendered)["rendering_failed_at"] == SENT_AT
    assert ledger(conn, legacy)["delivered_at"] == minutes(2)


def test_events_for_nobody_we_mailed_are_ignored_not_retried(sns: Sns, conn: Conn) -> None:
    campaign = sent_campaign(conn, 1)
    stranger = Recipient(uuid.uuid4(), campaign.id, "someone@else.example", ses_message_id())
    unknown = sns.notification(delivery(stranger, minutes(1)))
    subscription = sns.notification(
        {
            "eventType": "Subscription",
            "mail": mail(campaign.recipients[0]),
            "subscription": {
                "contactList": "growthbase",
                "timestamp": iso(minutes(5)),
                "source": "UnsubscribeFromHeader",
                "newTopicPreferences": {"unsubscribeAll": True},
                "oldTopicPreferences": {"unsubscribeAll": False},
            },
        }
    )
    console_test = sns.notification("Hello from the SNS console")
    for message in (unknown, subscription, console_test):
        assert sns.post(message).json()["data"] == {"outcome": "accepted"}
    assert stored(conn, unknown["MessageId"]) == {
        "status": "ignored",
        "outcome": "ignored:unknown_recipient",
    }
    assert stored(conn, subscription["MessageId"]) == {
        "status": "ignored",
        "outcome": "ignored:event_type:Subscription",
    }
    assert stored(conn, console_test["MessageId"]) == {
        "status": "ignored",
        "outcome": "ignored:not_an_ses_event",
    }
    untouched = ledger(conn, campaign.recipients[0])
    assert (untouched["delivered_at"], untouched["opens"]) == (None, 0)


def test_a_redelivered_message_changes_nothing(sns: Sns, conn: Conn) -> None:
    campaign = sent_campaign(conn, 1)
    reader = campaign.recipients[0]
    message = sns.notification(opened(reader, minutes(30)))
    first = sns.post(message)
    again = sns.post(message)
    assert (first.json()["data"], again.json()["data"]) == (
        {"outcome": "accepted"},
        {"outcome": "duplicate"},
    )
    applied_twice = conn.execute(
        "select private.apply_ses_event(id) as outcome from private.webhook_events"
        " where provider = 'ses' and event_id = %s",
        (message["MessageId"],),
    ).fetchone()
    assert applied_twice is not None and applied_twice["outcome"] == "applied"
    row = ledger(conn, reader)
    assert (row["opens"], row["opened_at"], row["last_opened_at"]) == (
        1,
        minutes(30),
        minutes(30),
    )


# refusals ---------------------------------------------------------------------------------------


def test_a_tampered_message_is_refused_and_changes_nothing(sns: Sns, conn: Conn) -> None:
    campaign = sent_campaign(conn, 1)
    reader = campaign.recipients[0]
    genuine = sns.notification(opened(reader, minutes(5)))
    tampered = {**genuine, "Message": json.dumps(clicked(reader, minutes(5)))}
    response = sns.post(tampered)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "signature_invalid"
    assert stored(conn, genuine["MessageId"]) is None
    assert (ledger(conn, reader)["clicks"], ledger(conn, reader)["opens"]) == (0, 0)


def test_messages_from_another_topic_are_refused(sns: Sns, conn: Conn) -> None:
    campaign = sent_campaign(conn, 1)
    reader = campaign.recipients[0]
    foreign = sns.notification(
        complaint(reader, minutes(5)),
        topic="arn:aws:sns:eu-central-1:210987654321:someone-elses-topic",
    )
    response = sns.post(foreign)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "topic_not_allowed"
    assert ledger(conn, reader)["complained_at"] is None
    assert conn.execute(
        "select count(*) as n from public.email_suppressions where workspace_id = %s",
        (campaign.user.workspace_id,),
    ).fetchone() == {"n": 0}


def test_without_a_topic_list_no_sns_message_is_trusted(
    database_url: str, jwks: JwksServer, sns: Sns, conn: Conn
) -> None:
    campaign = sent_campaign(conn, 1)
    unconfigured = settings_for(database_url, jwks, sns.host, sns_topic_arns=[])
    with TestClient(create_app(unconfigured)) as client:
        response = Sns(client, sns.certificate, sns.host).post(
            sns.notification(complaint(campaign.recipients[0], minutes(5)))
        )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "provider_not_configured"
    assert ledger(conn, campaign.recipients[0])["complained_at"] is None


def test_stale_mislabelled_and_malformed_messages_are_refused(sns: Sns, conn: Conn) -> None:
    campaign = sent_campaign(conn, 1)
    reader = campaign.recipients[0]
    stale = sns.notification(
        delivery(reader, minutes(1)), published=datetime.now(UTC) - timedelta(hours=2)
    )
    future = sns.notification(
        delivery(reader, minutes(1)), published=datetime.now(UTC) + timedelta(hours=1)
    )
    fresh = sns.notification(delivery(reader, minutes(1)), version="2")
    answers = [
        sns.post(stale),
        sns.post(future),
        sns.post(fresh, message_type="SubscriptionConfirmation"),
        sns.post(fresh, body=b"Type=Notification"),
        sns.post(fresh, body=json.dumps({**fresh, "TopicArn": [fresh["TopicArn"]]}).encode()),
    ]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (401, "signature_stale"),
        (401, "signature_stale"),
        (400, "message_type_mismatch"),
        (422, "invalid_input"),
        (422, "invalid_input"),
    ]
    assert [stored(conn, m["MessageId"]) for m in (stale, future, fresh)] == [None, None, None]
    assert ledger(conn, reader)["delivered_at"] is None
    sns.publish(delivery(reader, minutes(1)))
    assert ledger(conn, reader)["delivered_at"] == minutes(1)


def test_a_message_type_sns_does_not_send_is_refused_before_anything_is_read(
    sns: Sns, conn: Conn
) -> None:
    campaign = sent_campaign(conn, 1)
    reader = campaign.recipients[0]
    message = sns.notification(delivery(reader, minutes(1)))

    response = sns.post(message, message_type="Announcement")

    assert (response.status_code, response.json()["error"]["code"]) == (422, "invalid_input")
    assert response.json()["error"]["details"][0]["field"] == "header.x-amz-sns-message-type"
    assert stored(conn, message["MessageId"]) is None
    assert ledger(conn, reader)["delivered_at"] is None


def test_a_signed_event_holding_a_nul_is_refused_not_stored_forever_unapplied(
    sns: Sns, conn: Conn
) -> None:
    campaign = sent_campaign(conn, 1)
    reader = campaign.recipients[0]
    event = delivery(reader, minutes(1))
    event["mail"]["source"] = "news\u0000@shop.example"
    inner = sns.notification(event)
    outer = sns.notification(delivery(reader, minutes(1)))
    answers = [
        sns.post(inner),
        sns.post(outer, body=json.dumps({**outer, "Subject": "a\u0000b"}).encode()),
    ]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (422, "invalid_input"),
        (422, "invalid_input"),
    ]
    assert [stored(conn, m["MessageId"]) for m in (inner, outer)] == [None, None]


# bounces, complaints and the next campaign ------------------------------------------------------


def test_permanent_bounces_and_complaints_keep_addresses_out_of_the_next_campaign(
    sns: Sns, conn: Conn
) -> None:
    campaign = sent_campaign(conn, 5)
    bounced, complained, mailbox_full, legacy_bounced, fine = campaign.recipients
    records = [
        bounce(bounced, minutes(1), "Permanent", "General", address=bounced.email.upper()),
        complaint(complained, minutes(40)),
        bounce(mailbox_full, minutes(2), "Transient", "MailboxFull"),
        bounce(legacy_bounced, minutes(3), "Permanent", "NoEmail", legacy=True),
        delivery(fine, minutes(1)),
    ]
    for record in records:
        sns.publish(record)

    suppressed = conn.execute(
        "select email, reason, detail from public.email_suppressions where workspace_id = %s"
        " order by email",
        (campaign.user.workspace_id,),
    ).fetchall()
    assert [(s["email"], s["reason"], s["detail"]) for s in suppressed] == [
        (bounced.email, "bounce", "Permanent bounce (General): smtp; 550 5.1.1 user unknown"),
        (complained.email, "complaint", "Complaint (abuse)"),
        (
            legacy_bounced.email,
            "bounce",
            "Permanent bounce (NoEmail): smtp; 550 5.1.1 user unknown",
        ),
    ]
    assert (ledger(conn, bounced)["bounce_type"], ledger(conn, bounced)["bounced_at"]) == (
        "Permanent",
        minutes(1),
    )
    assert ledger(conn, complained)["complained_at"] == minutes(40)
    assert (
        ledger(conn, mailbox_full)["bounce_type"],
        ledger(conn, mailbox_full)["bounced_at"],
    ) == (
        "Transient",
        minutes(2),
    )

    follow_up = draft_campaign(
        conn, campaign.user, list_ids=[campaign.list_id], sender_id=campaign.sender_id
    )
    assert start(conn, campaign.user, follow_up) == 2
    mailed = conn.execute(
        "select email from public.campaign_recipients where campaign_id = %s order by email",
        (follow_up,),
    ).fetchall()
    assert [m["email"] for m in mailed] == sorted([mailbox_full.email, fine.email])


def test_rejected_content_flags_the_campaign_and_never_the_recipients(sns: Sns, conn: Conn) -> None:
    campaign = sent_campaign(conn, 2)
    first, second = campaign.recipients
    sns.publish(bounce(first, minutes(1), "Transient", "ContentRejected"))
    sns.publish(bounce(second, minutes(2), "Transient", "MessageTooLarge"))

    flagged = conn.execute(
        "select content_rejections from public.campaigns where id = %s", (campaign.id,)
    ).fetchone()
    assert flagged is not None and flagged["content_rejections"] == 2
    suppressed = conn.execute(
        "select count(*) as n from public.email_suppressions where workspace_id = %s",
        (campaign.user.workspace_id,),
    ).fetchone()
    assert suppressed is not None and suppressed["n"] == 0
    follow_up = draft_campaign(
        conn, campaign.user, list_ids=[campaign.list_id], sender_id=campaign.sender_id
    )
    assert start(conn, campaign.user, follow_up) == 2


def test_a_complaint_outranks_a_manual_or_bounce_suppression_and_cannot_be_lifted(
    sns: Sns, conn: Conn
) -> None:
    campaign = sent_campaign(conn, 2)
    by_hand, bounced = campaign.recipients
    admin = add_member(conn, campaign.user, "admin")
    with acting_as(conn, admin):
        conn.execute(
            "insert into public.email_suppressions (workspace_id, email, reason)"
            " values (%s, %s, 'manual')",
            (campaign.user.workspace_id, by_hand.email),
        )
    sns.publish(bounce(bounced, minutes(1), "Permanent", "General"))

    sns.publish(complaint(by_hand, minutes(2)))
    sns.publish(complaint(bounced, minutes(3)))
    with acting_as(conn, admin):
        lifted = conn.execute(
            "delete from public.email_suppressions where workspace_id = %s",
            (campaign.user.workspace_id,),
        ).rowcount

    assert lifted == 0
    suppressed = conn.execute(
        "select email, reason, detail from public.email_suppressions where workspace_id = %s"
        " order by email",
        (campaign.user.workspace_id,),
    ).fetchall()
    assert sorted((s["email"], s["reason"], s["detail"]) for s in suppressed) == sorted(
        [
            (by_hand.email, "complaint", "Complaint (abuse)"),
            (bounced.email, "complaint", "Complaint (abuse)"),
        ]
    )


def test_a_complaint_waiting_on_an_admins_uncommitted_manual_suppression_still_wins(
    sns: Sns, conn: Conn, database_url: str
) -> None:
    campaign = sent_campaign(conn, 1)
    reader = campaign.recipients[0]
    admin = add_member(conn, campaign.user, "admin")
    message = sns.notification(complaint(reader, minutes(1)))
    event_id = conn.execute(
        "select id from private.record_webhook_event('ses', %s, %s)",
        (message["MessageId"], json.dumps(message)),
    ).fetchone()["id"]
    outcome: dict[str, Any] = {}
    with (
        psycopg.connect(database_url, row_factory=dict_row) as first,
        psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as second,
    ):
        with acting_as(first, admin):
            first.execute(
                "insert into public.email_suppressions (workspace_id, email, reason)"
                " values (%s, %s, 'manual')",
                (campaign.user.workspace_id, reader.email),
            )

            def apply_complaint() -> None:
                with second.transaction():
                    become_service(second)
                    outcome.update(
                        second.execute(
                            "select private.apply_ses_event(%s) as outcome", (event_id,)
                        ).fetchone()
                        or {}
                    )

            racer = threading.Thread(target=apply_complaint)
            racer.start()
            wait_until_blocked(conn, second.info.backend_pid)
        racer.join()

    assert outcome == {"outcome": "applied"}
    with acting_as(conn, admin):
        lifted = conn.execute(
            "delete from public.email_suppressions where workspace_id = %s",
            (campaign.user.workspace_id,),
        ).rowcount
    assert lifted == 0
    suppressed = conn.execute(
        "select reason from public.email_suppressions where workspace_id = %s and email = %s",
        (campaign.user.workspace_id, reader.email),
    ).fetchall()
    assert suppressed == [{"reason": "complaint"}]


def test_a_complaint_or_permanent_bounce_keeps_the_address_out_of_every_workspace(
    sns: Sns, conn: Conn
) -> None:
    campaign = sent_campaign(conn, 2)
    complained, bounced = campaign.recipients
    other = create_user(conn)
    contacts = add_contacts(conn, other, 3)
    other_list = email_list(conn, other, contacts)
    other_domain = f"{uuid.uuid4().hex[:10]}.example.net"
    other_sender = verified_sender(conn, other, other_domain)

    def other_campaign() -> uuid.UUID:
        return draft_campaign(
            conn,
            other,
            list_ids=[other_list],
            sender_id=other_sender,
            from_email=f"hello@{other_domain}",
        )

    launched_before = other_campaign()
    assert start(conn, other, launched_before) == 3
    sns.publish(complaint(complained, minutes(1)))
    sns.publish(bounce(bounced, minutes(2), "Permanent", "General"))

    conn.execute(
        "update public.campaigns set status = 'paused' where status = 'sending' and id <> %s",
        (launched_before,),
    )
    claimed = conn.execute(
        "select email from private.claim_email_batch(100, 60, 1000) order by email"
    ).fetchall()
    assert [row["email"] for row in claimed] == ["reader-3@mail.example.org"]
    skipped = conn.execute(
        "select email from public.campaign_recipients where campaign_id = %s"
        " and status = 'skipped' order by email",
        (launched_before,),
    ).fetchall()
    assert [row["email"] for row in skipped] == sorted([complained.email, bounced.email])

    launched_after = other_campaign()
    assert start(conn, other, launched_after) == 1
    with acting_as(conn, other):
        seen = conn.execute("select email from public.email_suppressions").fetchall()
    assert seen == []


def test_a_later_transient_bounce_does_not_hide_a_permanent_one(sns: Sns, conn: Conn) -> None:
    campaign = sent_campaign(conn, 1)
    reader = campaign.recipients[0]
    sns.publish(bounce(reader, minutes(9), "Permanent", "Suppressed"))
    sns.publish(bounce(reader, minutes(4), "Transient", "General"))
    row = ledger(conn, reader)
    assert (row["bounce_type"], row["bounced_at"]) == ("Permanent", minutes(4))


# crashed workers and the replay -----------------------------------------------------------------


def test_a_send_event_confirms_a_row_a_crashed_worker_left_sending(sns: Sns, conn: Conn) -> None:
    campaign = started_campaign(conn, 2)
    delivered, orphaned = campaign.recipients
    hand_to_ses(conn, delivered)
    claim(conn, orphaned)  # SES accepted the message, then the worker died before recording it

    sns.publish(send(orphaned))
    row = ledger(conn, orphaned)
    assert (row["status"], row["ses_message_id"], row["sent_at"], row["locked_until"]) == (
        "sent",
        orphaned.message_id,
        SENT_AT,
        None,
    )
    sns.publish(delivery(orphaned, minutes(1), legacy=True))
    assert ledger(conn, orphaned)["delivered_at"] == minutes(1)
    waiting = conn.execute(
        "select count(*) as n from public.campaign_recipients"
        " where campaign_id = %s and status in ('queued', 'sending')",
        (campaign.id,),
    ).fetchone()
    assert waiting == {"n": 0}


def test_an_event_for_a_row_recorded_as_failed_shows_it_was_sent_after_all(
    sns: Sns, conn: Conn
) -> None:
    campaign = started_campaign(conn, 1)
    reader = campaign.recipients[0]
    claim(conn, reader)
    # SES accepted the message but its answer never reached the worker, which gave up.
    conn.execute(
        "select private.email_failed(%s, 'Read timeout on endpoint URL', false)", (reader.id,)
    )
    assert ledger(conn, reader)["status"] == "failed"

    sns.publish(delivery(reader, minutes(1)))
    row = ledger(conn, reader)
    assert (row["status"], row["sent_at"], row["delivered_at"], row["error"]) == (
        "sent",
        SENT_AT,
        minutes(1),
        None,
    )


@pytest.fixture
def no_other_due_ses_events(conn: Conn) -> None:
    """Every SES event other tests left stored and unapplied in the worker's database is put
    off for ever: the replay takes each provider's 50 events due longest ago, whichever
    workspace's, so fifty such leftovers ahead of this test's event left it unreplayed (proven
    with 51 such leftovers run first)."""
    put_off_due_webhook_events(conn, ["ses"])


@pytest.mark.usefixtures("no_other_due_ses_events")
def test_the_cron_applies_an_event_that_was_stored_but_never_applied(sns: Sns, conn: Conn) -> None:
    campaign = sent_campaign(conn, 1)
    reader = campaign.recipients[0]
    message = sns.notification(delivery(reader, minutes(2)))
    # The instance stopped right after storing the message.
    conn.execute(
        "select private.record_webhook_event('ses', %s, %s)",
        (message["MessageId"], json.dumps(message)),
    )
    conn.execute(
        "update private.webhook_events set received_at = now() - interval '2 minutes'"
        " where provider = 'ses' and event_id = %s",
        (message["MessageId"],),
    )
    assert ledger(conn, reader)["delivered_at"] is None

    replay = sns.client.get(
        "/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"}
    )
    assert replay.status_code == 200, replay.text
    # At least: the replay applies every workspace's due events, other tests' left ones too.
    assert replay.json()["data"]["outcomes"].get("ses:applied", 0) >= 1
    assert ledger(conn, reader)["delivered_at"] == minutes(2)
    assert stored(conn, message["MessageId"]) == {"status": "applied", "outcome": "applied"}
    assert sns.post(message).json()["data"] == {"outcome": "duplicate"}
