"""Providers' webhook signatures, checked by the one helper every signed webhook uses."""

import base64
import hashlib
import hmac
from typing import Literal

import pytest

from api.core.errors import ApiError
from api.core.signatures import verify_webhook_hmac

BODY = b'{"id": 450789469, "email": "bob@example.com"}'
KEY = "whsec_3e9a1c0b7d2f4a6e8c5b"


def signed(digest: Literal["sha1", "sha256"], encoding: Literal["hex", "base64"]) -> str:
    mac = hmac.new(KEY.encode(), BODY, digest).digest()
    return mac.hex() if encoding == "hex" else base64.b64encode(mac).decode()


@pytest.mark.parametrize(
    ("digest", "encoding"), [("sha256", "hex"), ("sha256", "base64"), ("sha1", "hex")]
)
def test_the_providers_signature_of_the_raw_body_verifies(
    digest: Literal["sha1", "sha256"], encoding: Literal["hex", "base64"]
) -> None:
    sent = signed(digest, encoding)
    verify_webhook_hmac(KEY, BODY, sent, digest=digest, encoding=encoding)
    if encoding == "hex":
        verify_webhook_hmac(KEY, BODY, sent.upper(), digest=digest, encoding=encoding)


@pytest.mark.parametrize(
    ("key", "body", "sent"),
    [
        (None, BODY, signed("sha256", "base64")),  # the project has no secret
        (KEY, BODY, None),  # unsigned
        (KEY, BODY + b" ", signed("sha256", "base64")),  # the body changed
        ("another-secret", BODY, signed("sha256", "base64")),
        (KEY, BODY, base64.b64encode(hashlib.sha256(BODY).digest()).decode()),  # no key at all
        (KEY, BODY, "ünïcode-and-\udcff"),  # a header can carry any octet
    ],
)
def test_anything_else_is_one_401(key: str | None, body: bytes, sent: str | None) -> None:
    with pytest.raises(ApiError) as refused:
        verify_webhook_hmac(key, body, sent, digest="sha256", encoding="base64")
    assert (refused.value.status, refused.value.code) == (401, "signature_invalid")
