"""Absolute URLs the edge hands out: Make.com callbacks, shop webhook addresses, the base of
unsubscribe links.

They come from PUBLIC_BASE_URL only, never from a request header: the Host header is whatever
the caller sends, so a URL built from it would let one caller choose where other tenants' jobs
call back, with their callback tokens. Without PUBLIC_BASE_URL nothing that needs such a URL is
done: routes answer 503 `public_base_url_not_configured`, the cron leaves the work queued.
"""

from uuid import UUID

from api.core.errors import ApiError
from api.core.settings import Settings

MAKE_CALLBACK_PATH = "/api/v1/webhooks/result"


class PublicUrls:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")

    def make_callback(self) -> str:
        return f"{self.base_url}{MAKE_CALLBACK_PATH}"

    def shop_webhook(self, source: str, project_id: UUID) -> str:
        return f"{self.base_url}/api/v1/webhooks/{source}/{project_id}"


def configured_public_urls(settings: Settings) -> PublicUrls | None:
    return PublicUrls(settings.public_base_url) if settings.public_base_url else None


def require_public_urls(settings: Settings) -> PublicUrls:
    """For routes: a 503 in the envelope when the deployment has no PUBLIC_BASE_URL."""
    urls = configured_public_urls(settings)
    if urls is None:
        raise ApiError(
            503,
            "public_base_url_not_configured",
            "PUBLIC_BASE_URL is not set, so no callback or webhook URL can be given out",
        )
    return urls
