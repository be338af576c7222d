"""The private Storage bucket `inbox`, through the `supabase` client with the project's secret
key: the edge uploads the attachments it fetched from the providers and removes those whose
messages are gone (an erased contact's)."""

from urllib.parse import quote

import httpx
from storage3.exceptions import StorageApiError
from supabase import ClientOptions, create_client

BUCKET = "inbox"


class StorageError(Exception):
    code = "storage_failed"


class InboxStorage:
    def __init__(self, storage_url: str, service_key: str, timeout_seconds: float) -> None:
        self.http = httpx.Client(timeout=timeout_seconds)
        self.storage = create_client(
            storage_url,
            service_key,
            options=ClientOptions(
                auto_refresh_token=False, persist_session=False, httpx_client=self.http
            ),
        ).storage

    def close(self) -> None:
        self.http.close()

    def upload(self, path: str, data: bytes, content_type: str) -> None:
        try:
            self.storage.from_(BUCKET).upload(
                quote(path, safe="/"), data, {"content-type": content_type, "upsert": "true"}
            )
        except (StorageApiError, httpx.HTTPError) as error:
            raise StorageError(type(error).__name__) from error

    def remove(self, paths: list[str]) -> None:
        """Removes the files (a path not there is no error: Storage leaves it out)."""
        try:
            self.storage.from_(BUCKET).remove([quote(path, safe="/") for path in paths])
        except (StorageApiError, httpx.HTTPError) as error:
            raise StorageError(type(error).__name__) from error
