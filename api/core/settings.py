"""Configuration from the environment (and `.env` locally), validated once at start-up."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the edge; `.env.example` documents each one."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    database_url: SecretStr
    database_pool_mode: Literal["session", "transaction"] = "session"
    database_pool_max_size: int = Field(default=5, ge=1, le=50)
    database_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    supabase_url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    supabase_jwt_secret: SecretStr | None = None
    jwt_audience: str = "authenticated"
    jwks_cache_seconds: int = Field(default=600, ge=0, le=600)

    # Where providers and mail recipients reach this edge: Make.com callbacks, shop webhook
    # URLs, unsubscribe links. Never taken from a request; without it those features answer 503
    # (or, in the cron, wait).
    public_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
    # Vercel Cron sends it as a bearer token to the /api/v1/cron/* endpoints.
    cron_secret: SecretStr | None = None

    # Make.com: one scenario webhook per automation type, and the secret that signs what we
    # send, verifies what Make sends back and derives each job's callback token.
    make_webhook_url_seo_audit: str | None = None
    make_webhook_url_content_gen: str | None = None
    make_webhook_url_report: str | None = None
    make_api_key: SecretStr | None = None
    make_signing_secret: SecretStr | None = None
    make_timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    shoptet_api_url: str = "https://api.myshoptet.com"
    # WooCommerce store origins called without the public-address check (tests' local stand-ins).
    woocommerce_allowed_origins: list[str] = Field(default_factory=list)
    # Where every Shopify shop's Admin API is called instead of https://<shop>.myshopify.com
    # (tests' local stand-in); its origin may also serve bulk results over plain http.
    shopify_admin_url: str | None = None

    # Groq (OpenAI-compatible chat completions); without a key AI routes answer 503.
    groq_api_key: SecretStr | None = None
    groq_base_url: str | None = None
    groq_model: str = "openai/gpt-oss-20b"
    groq_timeout_seconds: float = Field(default=30.0, gt=0, le=120)
    # How long in total a call may wait out Groq's 429 Retry-After before answering 503.
    groq_max_wait_seconds: float = Field(default=10.0, ge=0, le=60)

    # Razorpay: API keys create and change subscriptions; the webhook secret (a different
    # secret) verifies webhooks.
    razorpay_key_id: str | None = None
    razorpay_key_secret: SecretStr | None = None
    razorpay_webhook_secret: SecretStr | None = None
    razorpay_base_url: str = "https://api.razorpay.com"

    # Fernet key (urlsafe base64 of 32 bytes) encrypting shop credentials stored in Postgres.
    integrations_encryption_key: SecretStr | None = None

    # Supabase Storage: the project's secret (service-role) key lets the edge sign downloads of
    # files members uploaded to the `imports` bucket; without it, imports by path answer 503.
    supabase_service_key: SecretStr | None = None
    # Where Storage is reached when not at SUPABASE_URL (a local stand-in in tests).
    supabase_storage_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    storage_timeout_seconds: float = Field(default=30.0, gt=0, le=120)
    # Where Auth's admin API is reached when not at SUPABASE_URL (a local stand-in in tests).
    supabase_auth_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/[^\s]*)?$")

    # Amazon SES (v2). Without a region and keys (or an endpoint, for moto) email is disabled.
    ses_region: str | None = None
    ses_access_key_id: str | None = None
    ses_secret_access_key: SecretStr | None = None
    ses_endpoint_url: str | None = None
    # Names the configuration set whose event destination publishes to our SNS topic.
    ses_configuration_set: str | None = None
    # Our ceiling on messages per second, shared by every instance; GetAccount's MaxSendRate
    # lowers it when the account's is lower.
    ses_max_send_rate: float = Field(default=14.0, gt=0, le=10000)
    # The DNS resolver asked for sending domains' DMARC records (`host` or `host:port`); unset:
    # the system's.
    dns_resolver: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.\-]+(:[0-9]{1,5})?$")
    # Names the SES account whose pacing state (private.ses_accounts) the instances share.
    ses_account: str = Field(default="default", min_length=1, max_length=200)
    ses_send_concurrency: int = Field(default=8, ge=1, le=64)
    # How long one cron call may spend sending before it returns (Vercel caps a function's run).
    email_send_budget_seconds: float = Field(default=20.0, gt=0, le=800)
    # The platform's own verified sender, for emails to a workspace's owner and admins (a
    # sending pause); unset: those wait, queued, and the in-app notification still goes out.
    platform_from_email: str | None = Field(default=None, pattern=r"^[^@\s]+@[^@\s]+$")
    # Signs unsubscribe links; rotate it and old links stop working.
    email_link_secret: SecretStr | None = None
    unsubscribe_link_days: int = Field(default=365, ge=1, le=3650)
    # Our SNS topics whose SES events we accept (empty: the SES webhook answers 503), and extra
    # certificate origins besides SNS's own hosts (tests only).
    sns_topic_arns: list[str] = Field(default_factory=list)
    sns_certificate_origins: list[str] = Field(default_factory=list)

    # The WhatsApp Cloud API (Meta Graph), versioned; each channel brings its own token.
    whatsapp_graph_url: str = Field(
        default="https://graph.facebook.com/v21.0", pattern=r"^https?://[^\s/]+(/[^\s]*)?$"
    )
    telegram_api_url: str = Field(
        default="https://api.telegram.org", pattern=r"^https?://[^\s/]+(/[^\s]*)?$"
    )
    x_api_url: str = Field(default="https://api.x.com", pattern=r"^https?://[^\s/]+(/[^\s]*)?$")
    inbox_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # How long the drain after a webhook's answer waits first, so that deliveries arriving
    # meanwhile are applied with it as one set (0: at once).
    inbox_apply_delay_seconds: float = Field(default=0.2, ge=0, le=5)

    cors_allowed_origins: list[str] = Field(default_factory=list)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    def make_webhook_url(self, automation_type: str) -> str | None:
        urls = {
            "seo_audit": self.make_webhook_url_seo_audit,
            "content_gen": self.make_webhook_url_content_gen,
            "report": self.make_webhook_url_report,
        }
        return urls.get(automation_type)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()  # type: ignore[call-arg]  # values come from the environment
