"""HMAC signatures: those we exchange with Make.com, and the providers' webhook signatures.

Ours cover `<unix timestamp>.<raw body>` (HMAC-SHA256), so neither can be changed or replayed
later than the tolerance. Each job's callback token is derived from the same secret and the
job's id, so it authenticates one job only and needs no storage. A provider's webhook signature
is its HMAC of the raw body keyed with the webhook's secret. Comparisons are constant-time.
"""

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping
from typing import Literal

from api.core.errors import ApiError

TIMESTAMP_HEADER = "X-Growthbase-Timestamp"
SIGNATURE_HEADER = "X-Growthbase-Signature"
CALLBACK_TOKEN_HEADER = "X-Growthbase-Callback-Token"  # noqa: S105 - a header name
TOLERANCE_SECONDS = 300
WEBHOOK_SIGNATURE_INVALID = "The webhook signature does not verify"
# What a webhook verified with `verify_webhook_hmac` answers to a bad signature.
WEBHOOK_SIGNATURE_ERRORS: Mapping[int, Mapping[str, str]] = {
    401: {"signature_invalid": WEBHOOK_SIGNATURE_INVALID}
}


def same_signature(expected: str, sent: str) -> bool:
    """Constant-time equality of two signatures as bytes: `hmac.compare_digest` raises on a
    non-ASCII str, and a header can carry any octet."""
    return hmac.compare_digest(expected.encode(), sent.encode("utf-8", "surrogatepass"))


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def signature_headers(secret: str, body: bytes, now: float | None = None) -> dict[str, str]:
    timestamp = int(now if now is not None else time.time())
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature(secret, timestamp, body)}


def verify_signature(
    secret: str, timestamp: str | None, signed: str | None, body: bytes, now: float | None = None
) -> None:
    """Raise a 401 unless `signed` is our signature of `body` at a fresh `timestamp`."""
    if not timestamp or not signed:
        raise ApiError(401, "signature_missing", "The request is not signed")
    try:
        sent_at = int(timestamp)
    except ValueError as error:
        raise ApiError(401, "signature_invalid", "The signature timestamp is malformed") from error
    current = now if now is not None else time.time()
    if abs(current - sent_at) > TOLERANCE_SECONDS:
        raise ApiError(401, "signature_stale", "The signature is too old or from the future")
    if not same_signature(signature(secret, sent_at, body), signed):
        raise ApiError(401, "signature_invalid", "The signature does not match the request")


def callback_token(secret: str, job_id: str) -> str:
    return hmac.new(secret.encode(), f"callback:{job_id}".encode(), hashlib.sha256).hexdigest()


def verify_callback_token(secret: str, job_id: str, token: str) -> None:
    if not same_signature(callback_token(secret, job_id), token):
        raise ApiError(
            401, "callback_token_invalid", "The callback token is not valid for this job"
        )


def verify_webhook_hmac(
    key: str | None,
    body: bytes,
    sent: str | None,
    *,
    digest: Literal["sha1", "sha256"],
    encoding: Literal["hex", "base64"],
) -> None:
    """Raise 401 `signature_invalid` unless `sent` is the HMAC (`digest`, written in `encoding`;
    hex in either case) of the raw `body` keyed with `key`. A missing key answers the same as a
    bad signature, so a caller learns nothing about which accounts are connected."""
    if not key or not sent:
        raise ApiError(401, "signature_invalid", WEBHOOK_SIGNATURE_INVALID)
    mac = hmac.new(key.encode(), body, digest).digest()
    if encoding == "hex":
        expected, sent = mac.hex(), sent.lower()
    else:
        expected = base64.b64encode(mac).decode()
    if not same_signature(expected, sent):
        raise ApiError(401, "signature_invalid", WEBHOOK_SIGNATURE_INVALID)
