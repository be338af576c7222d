"""Files the SPA uploaded to Supabase Storage (bucket `imports`), read by the edge as a stream.

The `supabase` client's storage API signs a short-lived download URL (its own `download()` reads
the whole body into memory, which a 1 GiB file must never be); httpx then streams that URL in
blocks, from any byte offset (a resumed read asks for a Range).
"""

from collections.abc import Iterator
from urllib.parse import quote

import httpx
from storage3.exceptions import StorageApiError
from supabase import Client, ClientOptions, create_client

BUCKET = "imports"
BLOCK_BYTES = 1024 * 1024
SIGNED_URL_SECONDS = 300


class StorageError(Exception):
    """Storage could not give us the file: `missing` when it has no such object."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


class ImportStorage:
    """The imports bucket, read with the service key (the database checked the caller's
    right to the path before the edge asks for it)."""

    def __init__(self, supabase_url: str, service_key: str, timeout_seconds: float) -> None:
        self.http = httpx.Client(timeout=timeout_seconds)
        self.client: Client = create_client(
            supabase_url,
            service_key,
            options=ClientOptions(
                auto_refresh_token=False, persist_session=False, httpx_client=self.http
            ),
        )

    def close(self) -> None:
        self.http.close()

    def signed_url(self, path: str) -> str:
        try:
            signed = self.client.storage.from_(BUCKET).create_signed_url(
                quote(path, safe="/"), SIGNED_URL_SECONDS
            )
        except StorageApiError as error:
            raise StorageError(
                f"Storage refused to sign the file: {error.code}",
                missing=str(error.status) in ("400", "404"),
            ) from error
        except httpx.HTTPError as error:
            raise StorageError(f"Storage cannot be reached: {type(error).__name__}") from error
        url = signed.get("signedURL")
        if not url:
            raise StorageError("Storage signed no URL for the file", missing=True)
        return url

    def stream(self, path: str, offset: int) -> Iterator[bytes]:
        """The file's bytes from `offset` on, a block at a time."""
        url = self.signed_url(path)
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        try:
            with self.http.stream("GET", url, headers=headers) as response:
                if response.status_code == 404:
                    raise StorageError("The file is no longer in Storage", missing=True)
                if response.status_code >= 400:
                    raise StorageError(f"Storage answered {response.status_code}")
                if offset and response.status_code != 206:
                    raise StorageError("Storage ignored the byte range of a resumed read")
                yield from response.iter_bytes(BLOCK_BYTES)
        except httpx.HTTPError as error:
            raise StorageError(f"Storage failed mid-file: {type(error).__name__}") from error
