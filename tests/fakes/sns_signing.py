"""Signing SNS messages the way SNS does, with a certificate a local HTTP server serves in place
of SNS's own host. The same server answers other GETs (a SubscribeURL) as SNS's
ConfirmSubscription does, and records every path it was asked for."""

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from api.email.sns import string_to_sign
from tests.fakes.http_server import FakeHandler, serve

CONFIRMED = (
    b'<ConfirmSubscriptionResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/">'
    b"<ConfirmSubscriptionResult><SubscriptionArn>"
    b"arn:aws:sns:eu-central-1:123456789012:growthbase-ses-events:5f1c7a2e"
    b"</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>"
)


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


@dataclass
class SnsHost:
    """The stand-in for SNS's host: its origin (allow-list it in the verifier), the paths it
    was asked for, and how many of the next SubscribeURL GETs it answers with a 500."""

    base_url: str = ""
    fetched: list[str] = field(default_factory=list)
    failures: int = 0


@contextmanager
def serve_sns(certificate: Certificate) -> Iterator[SnsHost]:
    host = SnsHost()

    class Handler(FakeHandler):
        def do_GET(self) -> None:
            host.fetched.append(self.path)
            if self.path.endswith(".pem"):
                self.reply(200, certificate.pem, content_type="application/x-pem-file")
            elif host.failures > 0:
                host.failures -= 1
                body = b"<Error><Code>InternalFailure</Code></Error>"
                self.reply(500, body, content_type="text/xml")
            else:
                self.reply(200, CONFIRMED, content_type="text/xml")

    with serve(Handler) as base_url:
        host.base_url = base_url
        yield host


@pytest.fixture(scope="module")
def certificate() -> Certificate:
    return Certificate()


@pytest.fixture
def cert_host(certificate: Certificate) -> Iterator[SnsHost]:
    with serve_sns(certificate) as host:
        yield host
