"""How the inbox's failures leave the edge, beside the codes the contract documents for them."""

from collections.abc import Mapping

from api.core.errors import ApiError
from api.core.openapi import insufficient_role, merged_errors
from api.inbox.telegram.client import TelegramError
from api.inbox.whatsapp.client import WhatsAppError
from api.inbox.x.client import XError

NO_KEY = "INTEGRATIONS_ENCRYPTION_KEY is not configured"
KEY_MISMATCH = "Stored channel credentials cannot be decrypted"

SEALING_CREDENTIALS: Mapping[int, Mapping[str, str]] = {503: {"provider_not_configured": NO_KEY}}
OPENING_CREDENTIALS: Mapping[int, Mapping[str, str]] = {
    503: {"provider_not_configured": NO_KEY, "channel_key_mismatch": KEY_MISMATCH},
}
NO_PUBLIC_URL: Mapping[int, Mapping[str, str]] = {
    503: {
        "public_base_url_not_configured": "PUBLIC_BASE_URL is not set, so no callback or "
        "webhook URL can be given out"
    }
}
ADMINS = merged_errors(
    insufficient_role("admin"), {404: {"workspace_not_found": "Workspace not found"}}
)
CONVERSATION_MEMBERS = merged_errors(
    insufficient_role("member"), {404: {"conversation_not_found": "Conversation not found"}}
)
CHANNEL_MEMBERS = merged_errors(
    insufficient_role("member"), {404: {"channel_not_found": "Channel not found"}}
)
CHANNEL_TAKEN: Mapping[int, Mapping[str, str]] = {
    409: {"channel_taken": "This account is connected to another workspace"}
}
REPLY_REFUSALS: Mapping[int, Mapping[str, str]] = {
    409: {
        "channel_not_active": "The channel is revoked; reconnect it to send",
        "whatsapp_window_closed": "The contact has not written in the last 24 hours: only an "
        "approved template can be sent",
        "template_not_approved": "No approved template of this channel has that name and "
        "language; sync the templates",
        "contact_opted_out": "This contact asked to receive no more messages on this channel",
        "whatsapp_marketing_capped": "WhatsApp refused a marketing message to this contact "
        "(131049) at 2026-06-08 10:00 UTC; send marketing templates again from 2026-06-09 "
        "10:00 UTC",
    },
    422: {"invalid_message": "Send either text or a template"},
}
WHATSAPP_FAILURES: Mapping[int, Mapping[str, str]] = {
    409: {"channel_not_active": "The channel is revoked; reconnect it"},
    422: {"whatsapp_token_invalid": "Meta does not accept the channel's access token; reconnect"},
    502: {"whatsapp_unavailable": "WhatsApp failed: 131000"},
}


def key_mismatch() -> ApiError:
    """Credentials sealed with another key: ours to fix, so a 503 rather than the user's 4xx."""
    return ApiError(503, "channel_key_mismatch", KEY_MISMATCH)


def whatsapp_failure(error: WhatsAppError) -> ApiError:
    """Meta refusing the token is the user's to fix by reconnecting; anything else is a 502."""
    if error.credentials_refused:
        return ApiError(
            422,
            "whatsapp_token_invalid",
            "Meta does not accept the channel's access token; reconnect",
        )
    return ApiError(502, "whatsapp_unavailable", f"WhatsApp failed: {error.code}")


TELEGRAM_FAILURES: Mapping[int, Mapping[str, str]] = {
    422: {"telegram_token_invalid": "Telegram does not accept the bot token"},
    502: {"telegram_unavailable": "Telegram failed: 500"},
}


def telegram_failure(error: TelegramError) -> ApiError:
    if error.credentials_refused:
        return ApiError(422, "telegram_token_invalid", "Telegram does not accept the bot token")
    return ApiError(502, "telegram_unavailable", f"Telegram failed: {error.code}")


X_FAILURES: Mapping[int, Mapping[str, str]] = {
    422: {"x_token_invalid": "X does not accept the access token"},
    502: {"x_unavailable": "X failed: 503"},
}


def x_failure(error: XError) -> ApiError:
    if error.credentials_refused or error.status == 403:
        return ApiError(422, "x_token_invalid", "X does not accept the access token")
    return ApiError(502, "x_unavailable", f"X failed: {error.code}")
