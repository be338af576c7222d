"""How the shops feature's failures leave the edge: Shoptet's client and the stored credentials
raise their own errors, mapped here (once) onto the envelope, beside the codes the contract
documents for them so the two cannot drift apart."""

from collections.abc import Mapping

from api.core.errors import ApiError
from api.core.openapi import RATE_LIMITED, insufficient_role, merged_errors
from api.core.secrets_box import KeyMismatchError
from api.core.signatures import WEBHOOK_SIGNATURE_ERRORS
from api.shops.integration_secrets import NotConnectedError
from api.shops.shoptet.client import ShoptetError

SHOPTET_TOKEN_INVALID = "Shoptet does not accept the API token; connect again"  # noqa: S105
NOT_CONNECTED = "Connect Shoptet for this project first"
NO_KEY = "INTEGRATIONS_ENCRYPTION_KEY is not configured"
KEY_MISMATCH = "Stored credentials cannot be decrypted"

# What a route that calls Shoptet with the project's stored token can answer.
SHOPTET_FAILURES: Mapping[int, Mapping[str, str]] = {
    409: {"integration_not_connected": NOT_CONNECTED},
    422: {"shoptet_token_invalid": SHOPTET_TOKEN_INVALID},
    502: {"shoptet_unavailable": "Shoptet failed: shoptet_unreachable"},
}
# What a route that seals credentials for storage can answer, and one that opens stored ones.
SEALING_CREDENTIALS: Mapping[int, Mapping[str, str]] = {503: {"provider_not_configured": NO_KEY}}
OPENING_CREDENTIALS: Mapping[int, Mapping[str, str]] = {
    503: {
        "provider_not_configured": NO_KEY,
        "integration_key_mismatch": KEY_MISMATCH,
    },
}
# A shop's signed webhook: checked with a key stored sealed for the project.
WEBHOOK_REFUSALS = merged_errors(WEBHOOK_SIGNATURE_ERRORS, OPENING_CREDENTIALS)
# A route for members and above of the project's workspace (private.project_workspace_as).
MEMBERS = merged_errors(
    insufficient_role("member"), {404: {"project_not_found": "Project not found"}}
)
# ... that also spends one request of the plan's shop limit (public.take_action_quota).
MEMBERS_WITH_QUOTA = merged_errors(MEMBERS, RATE_LIMITED)
STORE_URL_REFUSED = (
    "The store URL must be the shop's public https address, such as https://shop.example"
)
# Storing a WooCommerce store's address: it must be one the edge may call.
WOOCOMMERCE_STORE_URL: Mapping[int, Mapping[str, str]] = {
    422: {"store_url_not_allowed": STORE_URL_REFUSED}
}
# Reading a WooCommerce store through its REST API with the stored key.
WOOCOMMERCE_FAILURES: Mapping[int, Mapping[str, str]] = {
    409: {"integration_not_connected": "Connect the WooCommerce REST API first"},
    422: {
        "store_url_not_allowed": STORE_URL_REFUSED,
        "woocommerce_credentials_invalid": "WooCommerce does not accept the consumer key and "
        "secret; connect again",
    },
    502: {"woocommerce_unavailable": "WooCommerce answered 500"},
}
# Storing a Shopify shop's Admin API access: its myshopify.com domain.
SHOPIFY_SHOP_DOMAIN: Mapping[int, Mapping[str, str]] = {
    422: {
        "shop_domain_invalid": "The shop must be its myshopify.com domain, such as "
        "my-shop.myshopify.com"
    }
}
# Storing a Shopify or WooCommerce store's API access another project of the workspace stores
# (private.connect_store_api): one store's orders reach one project of a workspace.
STORE_CONNECTED_ELSEWHERE: Mapping[int, Mapping[str, str]] = {
    409: {
        "store_connected_elsewhere": "This store is already connected to project "
        "5b7c1f3e-2d4a-4e8b-9f6c-0a1b2c3d4e5f of this workspace; disconnect it there first "
        "(its orders stay in that project)"
    }
}
# Reading a Shopify shop through bulk operations with the stored access token.
SHOPIFY_FAILURES: Mapping[int, Mapping[str, str]] = {
    409: {
        "integration_not_connected": "Connect the Shopify Admin API first",
        "shopify_bulk_operation_in_progress": "Another bulk query runs for this app and shop; "
        "call again when it ended",
    },
    422: {
        "shopify_credentials_invalid": "Shopify does not accept the access token; connect again",
        "shopify_scope_missing": "The access token lacks a scope the backfill needs "
        "(read_customers, read_orders, read_products)",
    },
    502: {"shopify_unavailable": "Shopify answered 500"},
}
# Writing orders and contacts (private.upsert_orders, upsert_shop_customers): a new contact past
# the plan's contact limit, or two writers racing for one new contact's email.
WRITING_ORDERS: Mapping[int, Mapping[str, str]] = {
    402: {"plan_limit_reached": "Your plan allows 1000 contacts; upgrade to add more"},
    409: {"conflict": "That conflicts with an existing record"},
}


def key_mismatch(error: KeyMismatchError) -> ApiError:
    """Credentials sealed with another key: ours to fix (restore the key, or have the shop
    connected again), so a 503 rather than the user's 4xx."""
    return ApiError(503, error.code, KEY_MISMATCH)


def shop_failure(error: ShoptetError | NotConnectedError) -> ApiError:
    """Shoptet refusing the token (a stored one that cannot even be a header included) is the
    user's to fix by connecting again; anything else Shoptet did is a 502."""
    if isinstance(error, NotConnectedError):
        return ApiError(409, error.code, NOT_CONNECTED)
    if error.status in (401, 403):
        return ApiError(422, "shoptet_token_invalid", SHOPTET_TOKEN_INVALID)
    return ApiError(502, "shoptet_unavailable", f"Shoptet failed: {error.code}")
