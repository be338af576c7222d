"""Endpoints Vercel Cron calls (GET with `Authorization: Bearer <CRON_SECRET>`)."""

import hmac
import json
import time
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request

from api.ai.safe_ai import refund_abandoned_calls
from api.automations.outbox import drain_make_outbox
from api.core.db import Database
from api.core.envelope import ok
from api.core.errors import ApiError
from api.core.public_urls import configured_public_urls
from api.core.settings import Settings
from api.email.sender import SendPolicy, send_due_emails
from api.shops.shoptet.webhook import apply_event as apply_shoptet_event
from api.webhooks.intake import Applier, apply_stored, replay_due_events

router = APIRouter(prefix="/api/v1/cron", tags=["cron"])
DRAIN_LIMIT = 50
CREDIT_GRANT_CHUNK = 1000
CREDIT_GRANT_BUDGET_SECONDS = 30


def require_cron_secret(request: Request) -> None:
    settings: Settings = request.app.state.settings
    if settings.cron_secret is None:
        raise ApiError(503, "cron_not_configured", "CRON_SECRET is not set")
    expected = f"Bearer {settings.cron_secret.get_secret_value()}"
    sent = request.headers.get("authorization", "")
    if not hmac.compare_digest(expected.encode(), sent.encode()):
        raise ApiError(401, "authentication_required", "Cron endpoints need the cron secret")


@router.get("/outbox")
def drain_outbox(request: Request) -> dict[str, Any]:
    require_cron_secret(request)
    database: Database = request.app.state.database
    with database.as_service() as conn:
        conn.execute("select private.prune_rate_limit_windows()")
        refund_abandoned_calls(conn)
    make = request.app.state.make
    if make is None:
        return ok({"make": "not_configured"})
    settings: Settings = request.app.state.settings
    urls = configured_public_urls(settings)
    if urls is None:
        # Jobs wait, queued and charged, until there is a callback URL to give them.
        return ok({"make": "public_base_url_not_configured"})
    report = drain_make_outbox(database, make, settings, urls, DRAIN_LIMIT)
    return ok({"make": report.as_dict()})


@router.get("/email")
def send_email(request: Request) -> dict[str, Any]:
    """Starts due scheduled campaigns and sends queued mail for up to the send budget."""
    require_cron_secret(request)
    settings: Settings = request.app.state.settings
    ses = request.app.state.ses
    urls = configured_public_urls(settings)
    if ses is None or settings.email_link_secret is None or urls is None:
        return ok({"email": "not_configured"})
    policy = SendPolicy(
        link_secret=settings.email_link_secret.get_secret_value(),
        link_days=settings.unsubscribe_link_days,
        max_per_second=settings.ses_max_send_rate,
        concurrency=settings.ses_send_concurrency,
        base_url=urls.base_url,
    )
    report = send_due_emails(
        request.app.state.database, ses, policy, settings.email_send_budget_seconds
    )
    return ok({"email": report.as_dict()})


@router.get("/rfm-snapshot")
def take_rfm_snapshot(request: Request) -> dict[str, Any]:
    """Snapshots last month (idempotent: a second call the same month replaces it)."""
    require_cron_secret(request)
    database: Database = request.app.state.database
    with database.as_service() as conn:
        row = conn.execute(
            "select (date_trunc('month', current_date) - interval '1 month')::date as month,"
            " analytics.take_rfm_snapshot((current_date - interval '1 month')::date) as contacts"
        ).fetchone()
    assert row is not None
    return ok({"snapshot_month": row["month"].isoformat(), "contacts": row["contacts"]})


@router.get("/webhook-replay")
def replay_webhooks(request: Request) -> dict[str, Any]:
    """Applies due stored webhooks (Shoptet, Razorpay, SES) whose apply has not finished: each
    event on its own, a failure recorded for a later retry (or the dead letter), and each
    provider's replay independent of the others'."""
    require_cron_secret(request)
    database: Database = request.app.state.database
    settings: Settings = request.app.state.settings

    def apply_shoptet(stored: dict[str, Any]) -> str:
        return apply_shoptet_event(
            database,
            request.app.state.secret_box,
            settings.shoptet_api_url,
            UUID(stored["event_id"].split(":", 1)[0]),
            stored["id"],
            json.loads(stored["body"]),
        )

    appliers: dict[str, Applier] = {
        "shoptet": apply_shoptet,
        "razorpay": lambda stored: apply_stored(database, "razorpay", stored["id"]),
        "ses": lambda stored: apply_stored(database, "ses", stored["id"]),
    }
    return ok({"outcomes": replay_due_events(database, appliers, DRAIN_LIMIT)})


@router.get("/monthly-credits")
def grant_monthly_credits(request: Request) -> dict[str, Any]:
    """Grants this calendar month's free-plan credits to every free workspace that has not had
    them yet (idempotent: the ledger's grant reference is unique per workspace and month)."""
    require_cron_secret(request)
    database: Database = request.app.state.database
    granted = 0
    deadline = time.monotonic() + CREDIT_GRANT_BUDGET_SECONDS
    while time.monotonic() < deadline:
        with database.as_service() as conn:
            row = conn.execute(
                "select private.grant_free_monthly_credits(%s) as granted", (CREDIT_GRANT_CHUNK,)
            ).fetchone()
        chunk = int(row["granted"]) if row else 0
        granted += chunk
        if chunk < CREDIT_GRANT_CHUNK:
            break
    return ok({"granted": granted})
