"""The FastAPI application: middleware, the error envelope and the routers."""

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import psycopg
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

from api import cron
from api.ai import routes as ai
from api.ai.deps import AI
from api.ai.groq_ai import GroqChat
from api.ai.safe_ai import SafeAi
from api.api_keys import routes as api_keys
from api.automations import routes as automations
from api.automations import webhook as make_webhooks
from api.automations.deps import MAKE, SCENARIOS
from api.automations.make import MakeClient
from api.billing import routes as billing
from api.billing import webhook as razorpay_webhooks
from api.billing.cancellations import CRON_LIMIT, cancel_due
from api.billing.deps import BILLING, WEBHOOK_SECRET
from api.billing.razorpay_billing import RazorpayBilling
from api.core import health
from api.core.auth_tokens import TokenVerifier
from api.core.db import Database
from api.core.deps import DATABASE, SETTINGS, TOKENS
from api.core.envelope import failure
from api.core.errors import STATUS_CODES, ApiError, from_database_error
from api.core.openapi import install_contract, operation_id
from api.core.secrets_box import SecretBox
from api.core.settings import Settings, get_settings
from api.email import preview as email_preview
from api.email import sender_identities, unsubscribe
from api.email import webhook as ses_webhooks
from api.email.deps import DMARC, LINK_SECRET, SES, SNS
from api.email.dmarc import DmarcLookup
from api.email.ses import SesClient
from api.email.sns import SnsVerifier
from api.email.tenants import TenantMail
from api.flows import events as flow_events
from api.flows import signing as flow_signing
from api.imports import routes as imports
from api.imports.deps import IMPORT_STORAGE
from api.imports.storage import ImportStorage
from api.inbox import routes as inbox
from api.inbox.deps import (
    INBOUND_SNS,
    INBOX_BOX,
    INBOX_STORAGE,
    MAILER,
    TELEGRAM,
    WHATSAPP,
    X_API,
)
from api.inbox.email import webhook as inbound_email
from api.inbox.email.mailer import Mailer
from api.inbox.email.sns_check import SnsCheck
from api.inbox.storage import InboxStorage
from api.inbox.telegram import webhook as telegram_webhooks
from api.inbox.telegram.client import TelegramClient
from api.inbox.whatsapp import webhook as whatsapp_webhooks
from api.inbox.whatsapp.client import WhatsAppClient
from api.inbox.x import webhook as x_webhooks
from api.inbox.x.client import XClient
from api.me import routes as me
from api.privacy import accounts as privacy_accounts
from api.privacy import consents as privacy_consents
from api.privacy import erasure_batches as privacy_erasure_batches
from api.privacy import export_routes as privacy_exports
from api.privacy import routes as privacy
from api.privacy.deps import SUBSCRIPTION_CANCELLER, SUPABASE_ADMIN, SubscriptionCanceller
from api.privacy.supabase_admin import SupabaseAdmin
from api.shops import routes as integrations
from api.shops import webhooks as shop_webhooks
from api.shops.deps import SECRET_BOX
from api.shops.shoptet import webhook as shoptet_webhooks
from api.webhooks.intake import INTAKE, WebhookIntake

log = logging.getLogger("growthbase.edge")
REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    logging.basicConfig(level=settings.log_level)
    database = Database(
        settings.database_url.get_secret_value(),
        pool_mode=settings.database_pool_mode,
        max_size=settings.database_pool_max_size,
        timeout_seconds=settings.database_timeout_seconds,
    )

    make = (
        MakeClient(
            signing_secret=settings.make_signing_secret.get_secret_value(),
            api_key=settings.make_api_key.get_secret_value() if settings.make_api_key else None,
            timeout_seconds=settings.make_timeout_seconds,
        )
        if settings.make_signing_secret
        else None
    )

    storage = (
        ImportStorage(
            settings.supabase_storage_url or settings.supabase_url,
            settings.supabase_service_key.get_secret_value(),
            settings.storage_timeout_seconds,
        )
        if settings.supabase_service_key
        else None
    )

    supabase_admin = (
        SupabaseAdmin(
            settings.supabase_url,
            settings.supabase_service_key.get_secret_value(),
            settings.storage_timeout_seconds,
            auth_url=settings.supabase_auth_url,
            storage_url=settings.supabase_storage_url,
        )
        if settings.supabase_service_key
        else None
    )

    inbox_storage = (
        InboxStorage(
            settings.supabase_storage_url or settings.supabase_url,
            settings.supabase_service_key.get_secret_value(),
            settings.storage_timeout_seconds,
        )
        if settings.supabase_service_key
        else None
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        database.open()
        yield
        database.close()
        if inbox_storage is not None:
            inbox_storage.close()
        if supabase_admin is not None:
            supabase_admin.close()
        if make is not None:
            make.close()
        if storage is not None:
            storage.close()

    app = FastAPI(
        title="Growthbase edge",
        version="0.1.0",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    SETTINGS.install(app, settings)
    DATABASE.install(app, database)
    MAKE.install(app, make)
    for automation_type, scenario in SCENARIOS.items():
        scenario.install(app, make if settings.make_webhook_url(automation_type) else None)
    AI.install(
        app,
        SafeAi(
            GroqChat(
                api_key=settings.groq_api_key.get_secret_value(),
                base_url=settings.groq_base_url,
                timeout_seconds=settings.groq_timeout_seconds,
                max_wait_seconds=settings.groq_max_wait_seconds,
            ),
            settings.groq_model,
        )
        if settings.groq_api_key
        else None,
    )
    razorpay = (
        RazorpayBilling(
            key_id=settings.razorpay_key_id,
            key_secret=settings.razorpay_key_secret.get_secret_value(),
            base_url=settings.razorpay_base_url,
        )
        if settings.razorpay_key_id and settings.razorpay_key_secret
        else None
    )
    BILLING.install(app, razorpay)
    SUBSCRIPTION_CANCELLER.install(app, subscription_canceller(database, razorpay))
    WEBHOOK_SECRET.install(app, secret_value(settings.razorpay_webhook_secret))
    box = (
        SecretBox(settings.integrations_encryption_key.get_secret_value())
        if settings.integrations_encryption_key
        else None
    )
    SECRET_BOX.install(app, box)
    INBOX_BOX.install(app, box)
    flow_signing.FLOWS_BOX.install(app, box)
    WHATSAPP.install(
        app, WhatsAppClient(settings.whatsapp_graph_url, settings.inbox_timeout_seconds)
    )
    TELEGRAM.install(app, TelegramClient(settings.telegram_api_url, settings.inbox_timeout_seconds))
    X_API.install(app, XClient(settings.x_api_url, settings.inbox_timeout_seconds))
    INBOX_STORAGE.install(app, inbox_storage)
    IMPORT_STORAGE.install(app, storage)
    SUPABASE_ADMIN.install(app, supabase_admin)
    ses = (
        SesClient(
            region=settings.ses_region,
            access_key_id=settings.ses_access_key_id,
            secret_access_key=(
                settings.ses_secret_access_key.get_secret_value()
                if settings.ses_secret_access_key
                else None
            ),
            endpoint_url=settings.ses_endpoint_url,
            configuration_set=settings.ses_configuration_set,
            max_connections=settings.ses_send_concurrency,
        )
        if settings.ses_region
        else None
    )
    SES.install(app, ses)
    DMARC.install(app, DmarcLookup(settings.dns_resolver))
    MAILER.install(
        app, Mailer(TenantMail(database, ses, settings.ses_account).send_raw) if ses else None
    )
    sns = (
        SnsVerifier(
            topic_arns=frozenset(settings.sns_topic_arns),
            extra_certificate_origins=frozenset(settings.sns_certificate_origins),
        )
        if settings.sns_topic_arns
        else None
    )
    SNS.install(app, sns)
    INBOUND_SNS.install(app, SnsCheck(sns.verify, sns.subscribe_url_allowed) if sns else None)
    LINK_SECRET.install(app, secret_value(settings.email_link_secret))
    intake = WebhookIntake(database)
    intake.register("shoptet", shoptet_webhooks.applier(database, box, settings.shoptet_api_url))
    intake.register("razorpay", razorpay_webhooks.applier(database))
    intake.register("ses", ses_webhooks.applier(database))
    intake.register("make", make_webhooks.applier(database))
    intake.register("shopify", shop_webhooks.applier(database, "shopify"))
    intake.register("woocommerce", shop_webhooks.applier(database, "woocommerce"))
    intake.register("whatsapp", whatsapp_webhooks.applier(database))
    intake.register("telegram", telegram_webhooks.applier(database))
    intake.register("ses_inbound", inbound_email.applier(database))
    intake.register("x", x_webhooks.applier(database))
    INTAKE.install(app, intake)
    tokens = TokenVerifier(
        supabase_url=settings.supabase_url,
        jwt_secret=(
            settings.supabase_jwt_secret.get_secret_value()
            if settings.supabase_jwt_secret
            else None
        ),
        audience=settings.jwt_audience,
        jwks_cache_seconds=settings.jwks_cache_seconds,
    )
    TOKENS.install(app, tokens)
    if settings.cors_allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allowed_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
            expose_headers=["X-Request-Id"],
        )
    app.middleware("http")(request_id_middleware)
    install_error_handlers(app)
    install_contract(app)
    app.include_router(health.router)
    app.include_router(me.router)
    app.include_router(api_keys.router)
    app.include_router(automations.router)
    app.include_router(make_webhooks.router)
    # Before the shops' /webhooks/{source}/{project_id}, which would capture /webhooks/shoptet/...
    # and /webhooks/whatsapp/...
    app.include_router(shoptet_webhooks.router)
    app.include_router(whatsapp_webhooks.router)
    app.include_router(telegram_webhooks.router)
    app.include_router(x_webhooks.router)
    app.include_router(x_webhooks.verification_router)
    app.include_router(whatsapp_webhooks.verification_router)
    app.include_router(shop_webhooks.router)
    app.include_router(integrations.router)
    app.include_router(imports.router)
    app.include_router(ai.router)
    app.include_router(billing.router)
    app.include_router(razorpay_webhooks.router)
    app.include_router(ses_webhooks.router)
    app.include_router(inbound_email.router)
    app.include_router(cron.router)
    app.include_router(sender_identities.router)
    app.include_router(unsubscribe.router)
    app.include_router(email_preview.router)
    app.include_router(privacy.router)
    app.include_router(privacy_erasure_batches.router)
    app.include_router(privacy_consents.router)
    app.include_router(privacy_accounts.router)
    app.include_router(privacy_exports.router)
    app.include_router(flow_events.router)
    app.include_router(flow_signing.router)
    app.include_router(inbox.router)
    return app


def subscription_canceller(
    database: Database, razorpay: RazorpayBilling | None
) -> SubscriptionCanceller | None:
    """Privacy's deletions cancel subscriptions through billing's Razorpay client."""
    if razorpay is None:
        return None
    client = razorpay
    return SubscriptionCanceller(
        lambda workspace_ids: cancel_due(database, client, CRON_LIMIT, workspace_ids)
    )


def secret_value(secret: SecretStr | None) -> str | None:
    """A configured secret's value; None when it is unset or empty."""
    value = secret.get_secret_value() if secret is not None else ""
    return value or None


async def request_id_middleware(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """Tag every request with an id (the caller's, if sane) and log one line without PII.

    It also turns any unhandled exception into the 500 envelope: Starlette runs a handler for
    `Exception` outside every middleware, where the answer would lose its id and its log line.
    """
    incoming = request.headers.get("x-request-id", "")
    request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request.state.request_id = request_id
    started = time.perf_counter()
    try:
        response = await call_next(request)
    except Exception as error:
        log.error("unhandled %s request_id=%s", type(error).__name__, request_id, exc_info=error)
        response = error_response(
            ApiError(500, "internal_error", "Something went wrong on our side")
        )
    response.headers["X-Request-Id"] = request_id
    route = request.scope.get("route")
    log.info(
        "%s %s %s %.1fms request_id=%s",
        request.method,
        getattr(route, "path", "<unmatched>"),
        response.status_code,
        (time.perf_counter() - started) * 1000,
        request_id,
    )
    return response


def error_response(error: ApiError, headers: dict[str, str] | None = None) -> JSONResponse:
    headers = dict(headers or {})
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(error.details, dict) and isinstance(error.details.get("retry_after"), int):
        headers["Retry-After"] = str(error.details["retry_after"])
    return JSONResponse(
        failure(error.code, error.message, error.details), status_code=error.status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ApiError)
        return error_response(error)

    async def on_validation_error(_: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        fields = [
            {
                "field": ".".join(str(part) for part in issue["loc"]),
                "message": issue["msg"],
                "type": issue["type"],
            }
            for issue in error.errors()
        ]
        return error_response(ApiError(422, "invalid_input", "The request is not valid", fields))

    async def on_http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        code = STATUS_CODES.get(error.status_code, "error")
        headers = dict(error.headers or {})
        if error.status_code == 405:
            headers["Allow"] = allowed_methods(request, headers.get("Allow"))
        return error_response(ApiError(error.status_code, code, str(error.detail)), headers)

    async def on_database_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, psycopg.Error)
        translated = from_database_error(error)
        if translated is None:
            # The primary message only: DETAIL can carry row values, which may be personal data.
            log.error(
                "database error sqlstate=%s message=%s request_id=%s",
                error.sqlstate,
                error.diag.message_primary,
                getattr(request.state, "request_id", "-"),
            )
            return error_response(
                ApiError(500, "internal_error", "Something went wrong on our side")
            )
        if not (error.sqlstate or "").startswith("PT"):
            # Translated by SQLSTATE class, not raised by our own checks: the client gets a 4xx
            # (or a 503), and we still see it. Never the message: it can quote the input.
            log.warning(
                "database error answered %s sqlstate=%s constraint=%s request_id=%s",
                translated.status,
                error.sqlstate,
                error.diag.constraint_name,
                getattr(request.state, "request_id", "-"),
            )
        return error_response(translated)

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(psycopg.Error, on_database_error)


def allowed_methods(request: Request, named: str | None) -> str:
    """Every method some operation serves at this path: the router names only its first
    matching route's, and a path can have several routes."""
    methods = {method.strip() for method in (named or "").split(",") if method.strip()}
    for template, operations in request.app.openapi()["paths"].items():
        pattern, _, _ = compile_path(template)
        if pattern.match(request.scope["path"]):
            methods.update(method.upper() for method in operations)
    return ", ".join(sorted(methods))
