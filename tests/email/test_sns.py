"""SNS message verification with real signatures made by a certificate the test serves."""

import json
from typing import Any

import pytest

from api.email.errors import api_error
from api.email.sns import SnsError, SnsVerifier
from tests.fakes import sns_signing
from tests.fakes.ses_server import free_port
from tests.fakes.sns_signing import Certificate, SnsHost

certificate = sns_signing.certificate
cert_host = sns_signing.cert_host
TOPIC = "arn:aws:sns:eu-central-1:123456789012:growthbase-ses-events"


def notification(cert_url: str, **changes: Any) -> dict[str, Any]:
    message = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Subject": None,
        "Message": json.dumps({"eventType": "Delivery", "mail": {"messageId": "0102018f"}}),
        "Timestamp": "2026-11-23T08:00:00.000Z",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=Unsubscribe",
    }
    message.update(changes)
    return message


def confirmation(cert_url: str) -> dict[str, Any]:
    return {
        "Type": "SubscriptionConfirmation",
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a98866"
        "6d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
        "SubscribeURL": "https://sns.eu-central-1.amazonaws.com/?Action=ConfirmSubscription",
        "Timestamp": "2026-11-23T08:00:00.000Z",
        "SigningCertURL": cert_url,
    }


def verifier(origin: str) -> SnsVerifier:
    return SnsVerifier(topic_arns=frozenset({TOPIC}), extra_certificate_origins=frozenset({origin}))


def refusal(check: SnsVerifier, message: dict[str, Any]) -> tuple[int, str]:
    """The verifier's refusal as the edge answers it."""
    with pytest.raises(SnsError) as caught:
        check.verify(message)
    answer = api_error(caught.value)
    return answer.status, answer.code


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_messages_verify_and_the_certificate_is_cached(
    certificate: Certificate, cert_host: SnsHost, version: str
) -> None:
    url = f"{cert_host.base_url}/SimpleNotificationService-test.pem"
    check = verifier(cert_host.base_url)
    check.verify(certificate.sign(notification(url), version))
    check.verify(certificate.sign(confirmation(url), version))
    assert cert_host.fetched == ["/SimpleNotificationService-test.pem"]


def test_tampered_and_foreign_messages_are_refused(
    certificate: Certificate, cert_host: SnsHost
) -> None:
    url = f"{cert_host.base_url}/cert.pem"
    check = verifier(cert_host.base_url)
    signed = certificate.sign(notification(url), "2")
    tampered = {**signed, "Message": signed["Message"].replace("Delivery", "Bounce")}
    other_key = Certificate().sign(notification(url), "2")
    wrong_version = {**signed, "SignatureVersion": "1"}
    assert refusal(check, tampered) == (401, "signature_invalid")
    assert refusal(check, other_key) == (401, "signature_invalid")
    assert refusal(check, wrong_version) == (401, "signature_invalid")
    assert refusal(check, {**signed, "TopicArn": TOPIC + "-other"}) == (403, "topic_not_allowed")


def test_a_certificate_that_cannot_be_fetched_is_an_outage_and_a_non_message_is_a_422(
    certificate: Certificate,
) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    check = verifier(unreachable)
    signed = certificate.sign(notification(f"{unreachable}/cert.pem"), "2")
    assert refusal(check, signed) == (503, "certificate_unavailable")
    assert refusal(check, {**signed, "Type": "Announcement"}) == (422, "invalid_input")
    assert refusal(check, {**signed, "MessageId": ["a", "list"]}) == (422, "invalid_input")


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://sns.eu-central-1.amazonaws.com.evil.example/cert.pem",
        "http://sns.eu-central-1.amazonaws.com/cert.pem",
        "https://sns.eu-central-1.amazonaws.com/cert.txt",
        "https://s3.amazonaws.com/sns/cert.pem",
        "https://evil.example/sns.eu-central-1.amazonaws.com.pem",
    ],
)
def test_certificates_from_anywhere_but_sns_are_refused(
    certificate: Certificate, cert_url: str
) -> None:
    check = SnsVerifier()
    assert refusal(check, certificate.sign(notification(cert_url), "2")) == (
        401,
        "certificate_not_allowed",
    )


def test_the_real_sns_host_pattern_is_accepted() -> None:
    check = SnsVerifier()
    assert check.allowed("https://sns.eu-central-1.amazonaws.com/SimpleNotificationService-abc.pem")
    assert check.allowed("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-x.pem")


def test_only_subscribe_urls_on_sns_hosts_or_allow_listed_origins_are_confirmed() -> None:
    check = SnsVerifier(extra_certificate_origins=frozenset({"http://127.0.0.1:8765"}))
    confirm = "/?Action=ConfirmSubscription&TopicArn=" + TOPIC + "&Token=2336412f37fb"
    assert check.subscribe_url_allowed("https://sns.eu-central-1.amazonaws.com" + confirm)
    assert check.subscribe_url_allowed("https://sns.cn-north-1.amazonaws.com.cn" + confirm)
    assert check.subscribe_url_allowed("http://127.0.0.1:8765" + confirm)
    for refused_url in [
        "http://sns.eu-central-1.amazonaws.com" + confirm,
        "https://sns.eu-central-1.amazonaws.com.evil.example" + confirm,
        "https://evil.example/sns.eu-central-1.amazonaws.com" + confirm,
        "https://sns.eu-central-1.amazonaws.com\\@evil.example" + confirm,
        "http://127.0.0.1:8766" + confirm,
        "file:///etc/passwd",
        "",
    ]:
        assert not check.subscribe_url_allowed(refused_url), refused_url
