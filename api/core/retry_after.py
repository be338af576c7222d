"""Reading a provider's Retry-After header (RFC 9110 §10.2.3): delay-seconds or an HTTP date."""

import email.utils
import time


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait, or None when the header is missing or unreadable."""
    if not value or not value.strip():
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))
