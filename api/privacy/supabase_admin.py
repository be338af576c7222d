"""Supabase's HTTP APIs the privacy feature calls itself, through the `supabase` client with the
project's secret key: Auth admin (delete a user, invite one by email) and Storage (the private
`exports` bucket: upload an export, sign a download URL; the private `inbox` bucket: read a
contact's attachments into their export). A separate client that never signs a
user in, so its Authorization header stays the secret key."""

from urllib.parse import quote
from uuid import UUID

import httpx
from storage3.exceptions import StorageApiError
from supabase import Client, ClientOptions, create_client
from supabase_auth.errors import AuthApiError, AuthError

EXPORTS_BUCKET = "exports"
INBOX_BUCKET = "inbox"


class SupabaseAdminError(Exception):
    """Supabase refused or could not be reached: `status` is its HTTP status (0 when
    unreachable), `code` its error code when it gave one."""

    def __init__(self, message: str, *, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


def client_for(url: str, key: str, http: httpx.Client) -> Client:
    return create_client(
        url,
        key,
        options=ClientOptions(auto_refresh_token=False, persist_session=False, httpx_client=http),
    )


class SupabaseAdmin:
    def __init__(
        self,
        supabase_url: str,
        service_key: str,
        timeout_seconds: float,
        *,
        auth_url: str | None = None,
        storage_url: str | None = None,
    ) -> None:
        self.http = httpx.Client(timeout=timeout_seconds)
        self.auth = client_for(auth_url or supabase_url, service_key, self.http).auth.admin
        self.storage = client_for(storage_url or supabase_url, service_key, self.http).storage

    def close(self) -> None:
        self.http.close()

    def delete_user(self, user_id: UUID) -> None:
        """Hard-deletes the user in Supabase Auth (which deletes the auth.users row, and with it
        the memberships and profile through their foreign keys)."""
        try:
            self.auth.delete_user(str(user_id), should_soft_delete=False)
        except AuthApiError as error:
            raise SupabaseAdminError(
                f"Supabase Auth refused: {error.code}", status=error.status, code=str(error.code)
            ) from error
        except AuthError as error:
            raise SupabaseAdminError("Supabase Auth cannot be reached", status=0) from error

    def invite_user(
        self, email: str, redirect_to: str | None, data: dict[str, object] | None = None
    ) -> UUID:
        """Sends Supabase Auth's invite email to an address that has no account; the new
        (unconfirmed) user's id. `data` becomes the user's metadata."""
        options: dict[str, object] = {"data": data or {}}
        if redirect_to:
            options["redirect_to"] = redirect_to
        try:
            answer = self.auth.invite_user_by_email(email, options)  # type: ignore[arg-type]
        except AuthApiError as error:
            raise SupabaseAdminError(
                f"Supabase Auth refused: {error.code}", status=error.status, code=str(error.code)
            ) from error
        except AuthError as error:
            raise SupabaseAdminError("Supabase Auth cannot be reached", status=0) from error
        return UUID(str(answer.user.id))

    def upload_export(self, path: str, data: bytes) -> None:
        try:
            self.storage.from_(EXPORTS_BUCKET).upload(
                quote(path, safe="/"),
                data,
                {"content-type": "application/zip", "upsert": "true"},
            )
        except StorageApiError as error:
            raise SupabaseAdminError(
                f"Storage refused the export: {error.code}", status=int(error.status or 0)
            ) from error
        except httpx.HTTPError as error:
            raise SupabaseAdminError("Storage cannot be reached", status=0) from error

    def remove_exports(self, paths: list[str]) -> None:
        """Removes export files; a path already gone is not an error (Storage lists only what
        it removed)."""
        try:
            self.storage.from_(EXPORTS_BUCKET).remove([quote(path, safe="/") for path in paths])
        except StorageApiError as error:
            raise SupabaseAdminError(
                f"Storage refused to remove exports: {error.code}", status=int(error.status or 0)
            ) from error
        except httpx.HTTPError as error:
            raise SupabaseAdminError("Storage cannot be reached", status=0) from error

    def signed_export_url(self, path: str, seconds: int) -> str:
        try:
            signed = self.storage.from_(EXPORTS_BUCKET).create_signed_url(
                quote(path, safe="/"), seconds
            )
        except StorageApiError as error:
            raise SupabaseAdminError(
                f"Storage refused to sign the export: {error.code}", status=int(error.status or 0)
            ) from error
        except httpx.HTTPError as error:
            raise SupabaseAdminError("Storage cannot be reached", status=0) from error
        url = signed.get("signedURL") or signed.get("signedUrl")
        if not url:
            raise SupabaseAdminError("Storage signed no URL for the export", status=502)
        return str(url)

    def download_attachment(self, path: str) -> bytes:
        """An inbox attachment's bytes (`status` 404 when Storage no longer has it)."""
        try:
            return self.storage.from_(INBOX_BUCKET).download(quote(path, safe="/"))
        except StorageApiError as error:
            raise SupabaseAdminError(
                f"Storage refused the attachment: {error.code}", status=int(error.status or 0)
            ) from error
        except httpx.HTTPError as error:
            raise SupabaseAdminError("Storage cannot be reached", status=0) from error
