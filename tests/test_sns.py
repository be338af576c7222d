"""SNS message verification with real signatures made by a certificate the test serves."""

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from api.errors import ApiError
from api.sns import SnsVerifier, string_to_sign
from tests.http_server import serve

TOPIC = "arn:aws:sns:eu-central-1:123456789012:growthbase-ses-events"


class Certificate:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "sns.eu-central-1.amazonaws.com")]
        )
        now = datetime.now(UTC)
        self.pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(self.key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )

    def sign(self, message: dict[str, Any], version: str) -> dict[str, Any]:
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        return {
            **message,
            "SignatureVersion": version,
            "Signature": base64.b64encode(signature).decode(),
        }


@pytest.fixture(scope="module")
def certificate() -> Certificate:
    return Certificate()


@pytest.fixture
def cert_host(certificate: Certificate) -> Iterator[tuple[str, list[str]]]:
    fetched: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-pem-file")
            self.send_header("Content-Length", str(len(certificate.pem)))
            self.end_headers()
            self.wfile.write(certificate.pem)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    with serve(Handler) as base_url:
        yield base_url, fetched


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
    with pytest.raises(ApiError) as caught:
        check.verify(message)
    return caught.value.status, caught.value.code


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_messages_verify_and_the_certificate_is_cached(
    certificate: Certificate, cert_host: tuple[str, list[str]], version: str
) -> None:
    origin, fetched = cert_host
    url = f"{origin}/SimpleNotificationService-test.pem"
    check = verifier(origin)
    check.verify(certificate.sign(notification(url), version))
    check.verify(certificate.sign(confirmation(url), version))
    assert fetched == ["/SimpleNotificationService-test.pem"]


def test_tampered_and_foreign_messages_are_refused(
    certificate: Certificate, cert_host: tuple[str, list[str]]
) -> None:
    origin, _ = cert_host
    url = f"{origin}/cert.pem"
    check = verifier(origin)
    signed = certificate.sign(notification(url), "2")
    tampered = {**signed, "Message": signed["Message"].replace("Delivery", "Bounce")}
    other_key = Certificate().sign(notification(url), "2")
    wrong_version = {**signed, "SignatureVersion": "1"}
    assert refusal(check, tampered) == (401, "signature_invalid")
    assert refusal(check, other_key) == (401, "signature_invalid")
    assert refusal(check, wrong_version) == (401, "signature_invalid")
    assert refusal(check, {**signed, "TopicArn": TOPIC + "-other"}) == (403, "topic_not_allowed")


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
