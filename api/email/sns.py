"""Verifying Amazon SNS messages (how SES events reach us) before anything trusts them.

The signing certificate must come from an SNS host of AWS over https (or from an origin on an
explicit allow-list, for tests); it is fetched with a time and size limit and cached. The
signature (version 1: SHA1withRSA, version 2: SHA256withRSA) covers the documented fields in
their documented order, and only listed topics are accepted when a list is configured. A
subscription is confirmed only through a SubscribeURL on those same origins. Refusals raise
`SnsError`, whose code the feature answers with (see api/email/errors.py).
"""

import base64
import re
import threading
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from api.core.errors import CodedError

SNS_HOST = re.compile(r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$")
MESSAGE_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
MAX_CERTIFICATE_BYTES = 16 * 1024
CACHED_CERTIFICATES = 32


class SnsError(CodedError):
    """Why a message is not trusted: `invalid_input` (not an SNS message), `topic_not_allowed`,
    `signature_invalid`, `certificate_not_allowed` or `certificate_unavailable`."""


def string_to_sign(message: dict[str, Any]) -> bytes:
    fields = NOTIFICATION_FIELDS if message["Type"] == "Notification" else CONFIRMATION_FIELDS
    return "".join(
        f"{name}\n{message[name]}\n" for name in fields if message.get(name) is not None
    ).encode()


class SnsVerifier:
    def __init__(
        self,
        *,
        topic_arns: frozenset[str] = frozenset(),
        extra_certificate_origins: frozenset[str] = frozenset(),
        timeout_seconds: float = 5.0,
    ) -> None:
        self.topic_arns = topic_arns
        self.extra_origins = extra_certificate_origins
        self.timeout_seconds = timeout_seconds
        self.certificates: OrderedDict[str, rsa.RSAPublicKey] = OrderedDict()
        self.lock = threading.Lock()

    def verify(self, message: dict[str, Any]) -> None:
        """Raise an SnsError unless `message` is a genuine SNS message for an accepted topic."""
        if not all(value is None or isinstance(value, str) for value in message.values()):
            raise SnsError("invalid_input", "SNS message fields are strings or null")
        if message.get("Type") not in MESSAGE_TYPES:
            raise SnsError("invalid_input", "Not an SNS message")
        if self.topic_arns and message.get("TopicArn") not in self.topic_arns:
            raise SnsError("topic_not_allowed", "Messages from this topic are not accepted")
        version = str(message.get("SignatureVersion"))
        if version not in ("1", "2"):
            raise SnsError("signature_invalid", "Unsupported SNS signature version")
        algorithm: hashes.HashAlgorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 - SNS v1 is SHA1withRSA
        try:
            signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
            data = string_to_sign(message)
        except (ValueError, KeyError) as error:
            raise SnsError("signature_invalid", "The SNS message is incomplete") from error
        key = self.certificate(str(message.get("SigningCertURL", "")))
        try:
            key.verify(signature, data, padding.PKCS1v15(), algorithm)
        except InvalidSignature as error:
            raise SnsError("signature_invalid", "The SNS signature does not verify") from error

    def on_sns_origin(self, url: str) -> bool:
        """Whether `url` is on an SNS host of AWS over https (or on an allow-listed origin)."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" in self.extra_origins:
            return True
        return parts.scheme == "https" and bool(parts.hostname and SNS_HOST.match(parts.hostname))

    def allowed(self, url: str) -> bool:
        """Whether a signing certificate may be fetched from `url`."""
        return self.on_sns_origin(url) and urlsplit(url).path.endswith(".pem")

    def subscribe_url_allowed(self, url: str) -> bool:
        """Whether a SubscriptionConfirmation's SubscribeURL may be fetched: only SNS itself
        confirms subscriptions, and fetching any other URL a message names would let whoever
        can publish to an accepted topic make us send requests anywhere."""
        return self.on_sns_origin(url)

    def certificate(self, url: str) -> rsa.RSAPublicKey:
        if not self.allowed(url):
            raise SnsError("certificate_not_allowed", "The signing certificate is not from SNS")
        with self.lock:
            if url in self.certificates:
                self.certificates.move_to_end(url)
                return self.certificates[url]
        try:
            response = httpx.get(url, timeout=self.timeout_seconds, follow_redirects=False)
            response.raise_for_status()
            if len(response.content) > MAX_CERTIFICATE_BYTES:
                raise ValueError("certificate too large")
            key = x509.load_pem_x509_certificate(response.content).public_key()
        except (httpx.HTTPError, ValueError) as error:
            raise SnsError(
                "certificate_unavailable", "The SNS signing certificate cannot be fetched"
            ) from error
        if not isinstance(key, rsa.RSAPublicKey):
            raise SnsError("certificate_not_allowed", "The signing certificate is not RSA")
        with self.lock:
            self.certificates[url] = key
            while len(self.certificates) > CACHED_CERTIFICATES:
                self.certificates.popitem(last=False)
        return key
