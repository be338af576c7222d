"""HMAC-SHA256 signatures for what we send to Make.com and what it sends back.

A signature covers `<unix timestamp>.<raw body>`, so neither can be changed or replayed later
than the tolerance. Each job's callback token is derived from the same secret and the job's
id, so it authenticates one job only and needs no storage. Comparisons are constant-time.
"""

import hashlib
import hmac
import time

from api.core.errors import ApiError

TIMESTAMP_HEADER = "X-Growthbase-Timestamp"
SIGNATURE_HEADER = "X-Growthbase-Signature"
CALLBACK_TOKEN_HEADER = "X-Growthbase-Callback-Token"  # noqa: S105 - a header name
TOLERANCE_SECONDS = 300


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
