"""Endpoints Vercel Cron calls (GET with `Authorization: Bearer <CRON_SECRET>`). Each calls
feature services (never routes); only this module and `api.app` reach across features."""

import hmac
import time
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from api.ai.safe_ai import refund_abandoned_calls
from api.automations.deps import OptionalMake
from api.automations.outbox import drain_make_outbox
from api.billing.cancellations import CRON_LIMIT, cancel_due
from api.billing.deps import OptionalBilling
from api.core.deps import AppSettings, ServiceDatabase
from api.core.envelope import Envelope, ok
from api.core.errors import ApiError
from api.core.openapi import documented
from api.core.public_urls import configured_public_urls
from api.email.deps import OptionalSes
from api.email.notices import send_pause_emails
from api.email.sender import SendPolicy, send_due_emails
from api.flows import engine as flow_engine
from api.flows import signing as flow_signing
from api.imports.deps import OptionalStorage
from api.imports.jobs import continue_import_jobs
from api.inbox.deps import (
    OptionalBox,
    OptionalInboxStorage,
    OptionalMailer,
    Telegram,
    WhatsApp,
    XApi,
)
from api.inbox.media import MediaSources, fetch_media, remove_gone_media
from api.inbox.outbox import Providers, drain_inbox_outbox
from api.privacy import retention
from api.privacy.deps import OptionalSupabase
from api.privacy.erasure_batches import erase_chunks
from api.privacy.exports import expire as expire_exports
from api.privacy.exports import resume_stalled
from api.shops.deps import OptionalBox as OptionalShopBox
from api.shops.shopify_backfill import BackfillsProgress, continue_shopify_backfills
from api.webhooks.intake import Intake

CRON_SECRET = HTTPBearer(
    scheme_name="cronSecret",
    description="The deployment's CRON_SECRET, as Vercel Cron sends it.",
    auto_error=False,
)
DRAIN_LIMIT = 50
IMPORT_CRON_BUDGET_SECONDS = 40.0
CREDIT_GRANT_CHUNK = 1000
CREDIT_GRANT_BUDGET_SECONDS = 30
RETENTION_BUDGET_SECONDS = 40
FLOW_BUDGET_SECONDS = 40
EXPORT_REMOVAL_BATCHES = 20
ERASURE_BUDGET_SECONDS = 40.0
SHOP_BACKFILL_BUDGET_SECONDS = 40.0


def require_cron_secret(
    settings: AppSettings,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(CRON_SECRET)],
) -> None:
    if settings.cron_secret is None:
        raise ApiError(503, "cron_not_configured", "CRON_SECRET is not set")
    expected = settings.cron_secret.get_secret_value().encode()
    sent = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(expected, sent):
        raise ApiError(401, "authentication_required", "Cron endpoints need the cron secret")


router = APIRouter(
    prefix="/api/v1/cron",
    tags=["cron"],
    dependencies=[Depends(require_cron_secret)],
    responses={
        401: documented(
            None, errors={401: {"authentication_required": "Cron endpoints need the cron secret"}}
        )[401],
        503: documented(None, errors={503: {"cron_not_configured": "CRON_SECRET is not set"}})[503],
    },
)


class MakeDrain(BaseModel):
    delivered: int
    retrying: int
    dead: int
    skipped: list[str]


class OutboxReport(BaseModel):
    make: MakeDrain | Literal["not_configured", "public_base_url_not_configured"]


class EmailSend(BaseModel):
    started_campaigns: int
    sent: int
    retrying: int
    failed: int
    finished_campaigns: int
    platform_brake: bool
    released_first_sends: int
    pause_emails: int | Literal["platform_from_email_not_configured"]


class EmailReport(BaseModel):
    email: EmailSend | Literal["not_configured"]


class SnapshotReport(BaseModel):
    snapshot_month: date
    contacts: int


class ReplayReport(BaseModel):
    outcomes: dict[str, int]


class CreditGrant(BaseModel):
    granted: int


@router.get(
    "/outbox",
    response_model=Envelope[OutboxReport],
    summary="Deliver due Make.com jobs and tidy rate limits and AI calls",
    responses=documented({"make": {"delivered": 3, "retrying": 1, "dead": 0, "skipped": []}}),
)
def drain_outbox(
    database: ServiceDatabase, settings: AppSettings, make: OptionalMake
) -> dict[str, Any]:
    with database.as_service() as conn:
        conn.execute("select private.prune_rate_limit_windows()")
        refund_abandoned_calls(conn)
    if make is None:
        return ok({"make": "not_configured"})
    urls = configured_public_urls(settings)
    if urls is None:
        # Jobs wait, queued and charged, until there is a callback URL to give them.
        return ok({"make": "public_base_url_not_configured"})
    report = drain_make_outbox(database, make, settings, urls, DRAIN_LIMIT)
    return ok({"make": report.as_dict()})


@router.get(
    "/email",
    response_model=Envelope[EmailReport],
    summary="Start due scheduled campaigns and send queued mail",
    responses=documented(
        {
            "email": {
                "started_campaigns": 1,
                "sent": 480,
                "retrying": 2,
                "failed": 1,
                "finished_campaigns": 0,
                "platform_brake": False,
                "released_first_sends": 0,
                "pause_emails": 0,
            }
        }
    ),
)
def send_email(
    database: ServiceDatabase, settings: AppSettings, ses: OptionalSes
) -> dict[str, Any]:
    """Starts due scheduled campaigns, releases first sends to fresh imports whose probe went
    well, and sends queued mail for up to the send budget (nothing while the platform brake is
    engaged, which this checks first against the platform's own totals), then emails owners
    and admins about new sending pauses from PLATFORM_FROM_EMAIL."""
    urls = configured_public_urls(settings)
    if ses is None or settings.email_link_secret is None or urls is None:
        return ok({"email": "not_configured"})
    policy = SendPolicy(
        link_secret=settings.email_link_secret.get_secret_value(),
        link_days=settings.unsubscribe_link_days,
        max_per_second=settings.ses_max_send_rate,
        concurrency=settings.ses_send_concurrency,
        base_url=urls.base_url,
        account=settings.ses_account,
    )
    report = send_due_emails(database, ses, policy, settings.email_send_budget_seconds)
    pause_emails: int | str = "platform_from_email_not_configured"
    if settings.platform_from_email:
        pause_emails = send_pause_emails(database, ses, settings.platform_from_email)
    return ok({"email": {**report.as_dict(), "pause_emails": pause_emails}})


@router.get(
    "/rfm-snapshot",
    response_model=Envelope[SnapshotReport],
    summary="Take last month's RFM snapshot",
    responses=documented({"snapshot_month": "2026-10-01", "contacts": 23570}),
)
def take_rfm_snapshot(database: ServiceDatabase) -> dict[str, Any]:
    """Snapshots last month (idempotent: a second call the same month replaces it)."""
    with database.as_service() as conn:
        row = conn.execute(
            "select (date_trunc('month', current_date) - interval '1 month')::date as month,"
            " analytics.take_rfm_snapshot((current_date - interval '1 month')::date) as contacts"
        ).fetchone()
    assert row is not None
    return ok({"snapshot_month": row["month"].isoformat(), "contacts": row["contacts"]})


class RfmKeptReport(BaseModel):
    refreshed_workspaces: int


@router.get(
    "/rfm-kept",
    response_model=Envelope[RfmKeptReport],
    summary="Score again the workspaces whose kept RFM scores a write left stale",
    responses=documented({"refreshed_workspaces": 3}),
)
def refresh_kept_rfm(database: ServiceDatabase) -> dict[str, Any]:
    """Until a refresh, a workspace's RFM reads count every customer's facts again; where
    pg_cron is installed the database also refreshes every minute by itself."""
    with database.as_service() as conn:
        row = conn.execute("select private.refresh_rfm_kept() as refreshed").fetchone()
    assert row is not None
    return ok({"refreshed_workspaces": row["refreshed"]})


@router.get(
    "/webhook-replay",
    response_model=Envelope[ReplayReport],
    summary="Apply stored webhooks whose apply has not finished",
    responses=documented({"outcomes": {"shoptet:applied": 4, "ses:failed:retrying": 1}}),
)
def replay_webhooks(intake: Intake) -> dict[str, Any]:
    """Applies due stored webhooks whose apply has not finished, of every provider registered
    with the intake (Shoptet, Shopify, WooCommerce, Razorpay, SES, Make.com callbacks): each
    event on its own, a failure recorded for a later retry (or the dead letter), and each
    provider's replay independent of the others'."""
    return ok({"outcomes": intake.replay(DRAIN_LIMIT)})


@router.get(
    "/monthly-credits",
    response_model=Envelope[CreditGrant],
    summary="Grant this month's free-plan credits",
    responses=documented({"granted": 120}),
)
def grant_monthly_credits(database: ServiceDatabase) -> dict[str, Any]:
    """Grants this calendar month's free-plan credits to every free workspace that has not had
    them yet (idempotent: the ledger's grant reference is unique per workspace and month)."""
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


class RetentionRemoved(BaseModel):
    webhook_events: int
    campaign_recipients: int
    audit_log: int
    invitations: int
    dead_letters: int = Field(
        description="Dead-lettered webhook payloads stripped to their non-personal fields "
        "7 days after they failed"
    )
    workspaces: int


class RetentionReport(BaseModel):
    removed: RetentionRemoved
    calls: int
    finished: bool


@router.get(
    "/privacy-retention",
    response_model=Envelope[RetentionReport],
    summary="Remove personal data past its retention",
    responses=documented(
        {
            "removed": {
                "webhook_events": 1200,
                "campaign_recipients": 10000,
                "audit_log": 0,
                "invitations": 3,
                "dead_letters": 1,
                "workspaces": 0,
            },
            "calls": 2,
            "finished": True,
        }
    ),
)
def prune_retention(database: ServiceDatabase) -> dict[str, Any]:
    """Deletes webhook payloads applied over 30 days ago, ended invitations after 30 days and
    audit entries past the workspace's retention (2 years by default), and clears campaign
    recipients' addresses past the workspace's retention (13 months by default; the counts
    stay) and strips dead-lettered payloads to their non-personal fields 7 days after they
    failed, at most 10,000 rows of a kind per statement, then purges deleted workspaces whose
    30 days are over, until done or 40 s have passed (`finished` false: the next call goes
    on)."""
    return ok(retention.prune(database, RETENTION_BUDGET_SECONDS))


class ExportResume(BaseModel):
    resumed: int | Literal["not_configured"]
    expired: int
    removed: int | Literal["not_configured"]


@router.get(
    "/privacy-exports",
    response_model=Envelope[ExportResume],
    summary="Finish exports whose request died, expire old ones and remove their files",
    responses=documented({"resumed": 1, "expired": 3, "removed": 3}),
)
def resume_exports(database: ServiceDatabase, storage: OptionalSupabase) -> dict[str, Any]:
    """Runs exports asked for over two minutes ago that never finished (up to 10), each to done
    or failed; expires finished exports past their workspace's `export_days` (links refused
    from then on) and removes from Storage the files of expired exports, erased contacts'
    exports and purged workspaces' (retried with backoff on failure). Without
    SUPABASE_SERVICE_KEY only the expiry runs (`not_configured`)."""
    resumed: int | str = (
        resume_stalled(database, storage, 10) if storage is not None else "not_configured"
    )
    return ok({"resumed": resumed, **expire_exports(database, storage, EXPORT_REMOVAL_BATCHES)})


class ErasureRun(BaseModel):
    chunks: int
    finished: bool


@router.get(
    "/privacy-erasures",
    response_model=Envelope[ErasureRun],
    summary="Continue batch erasures",
    responses=documented({"chunks": 12, "finished": True}),
)
def continue_erasures(database: ServiceDatabase) -> dict[str, Any]:
    """Erases the next chunks (500 contacts each, one short transaction per chunk) of unfinished
    batch erasures, oldest first, for up to 40 s; `finished` false: the next call goes on. A
    chunk that would wait over 3 s for a lock gives way and is taken again next time."""
    return ok(erase_chunks(database, ERASURE_BUDGET_SECONDS))


class CancellationReport(BaseModel):
    cancelled: int
    retrying: int
    failed: int


class SubscriptionCancellationsRun(BaseModel):
    razorpay: CancellationReport | Literal["not_configured"]


@router.get(
    "/subscription-cancellations",
    response_model=Envelope[SubscriptionCancellationsRun],
    summary="Cancel at Razorpay the subscriptions of deleted workspaces",
    responses=documented({"razorpay": {"cancelled": 1, "retrying": 0, "failed": 0}}),
)
def cancel_subscriptions(database: ServiceDatabase, client: OptionalBilling) -> dict[str, Any]:
    """Retries, up to 20 at a time, the cancellations a workspace's or account's deletion
    queued and Razorpay did not answer (backoff doubling from a minute, at most 6 hours; failed
    after 10 attempts). Without Razorpay keys answers `not_configured` and they wait."""
    if client is None:
        return ok({"razorpay": "not_configured"})
    return ok({"razorpay": cancel_due(database, client, CRON_LIMIT)})


class ImportProgress(BaseModel):
    advanced: int
    expired: int


@router.get(
    "/imports",
    response_model=Envelope[ImportProgress],
    summary="Continue committed import jobs and expire abandoned uploads",
    responses=documented({"advanced": 2, "expired": 0}),
)
def continue_imports(database: ServiceDatabase, storage: OptionalStorage) -> dict[str, Any]:
    """Committed jobs go on a chunk at a time for up to 40 s (a crashed commit call resumes
    here, doubling nothing); uploads not committed within a day are expired with their parts.
    Jobs that read from Storage wait while Storage is not configured."""
    return ok(continue_import_jobs(database, storage, IMPORT_CRON_BUDGET_SECONDS))


@router.get(
    "/shop-backfills",
    response_model=Envelope[BackfillsProgress],
    summary="Carry Shopify backfills on whose bulk query runs or waits to be read",
    responses=documented(
        {"projects": 1, "customers": 0, "orders": 12000, "products": 0, "failed": 0}
    ),
)
def continue_shop_backfills(
    database: ServiceDatabase, box: OptionalShopBox, settings: AppSettings
) -> dict[str, Any]:
    """Each Shopify backfill whose bulk query runs is asked about it, and a finished one's
    result is read a page at a time, for up to 40 s in all; a failed, canceled or expired query
    waits for the shop owner's next call. Nothing happens without INTEGRATIONS_ENCRYPTION_KEY."""
    if box is None:
        return ok(BackfillsProgress(projects=0, customers=0, orders=0, products=0, failed=0))
    return ok(
        continue_shopify_backfills(
            database, box, settings.shopify_admin_url, SHOP_BACKFILL_BUDGET_SECONDS
        )
    )


class FlowTick(BaseModel):
    triggered: int
    steps: int
    ticks: int
    pruned_events: int
    sealed_secrets: int


@router.get(
    "/flows",
    response_model=Envelope[FlowTick],
    summary="Move flow runs that are due",
    responses=documented(
        {"triggered": 40, "steps": 1200, "ticks": 1, "pruned_events": 0, "sealed_secrets": 0}
    ),
)
def advance_flows(database: ServiceDatabase, box: flow_signing.OptionalBox) -> dict[str, Any]:
    """Records the time-based trigger events due now (`private.record_flow_trigger_events`),
    runs the flow engine (`private.advance_flows`) a batch per transaction until nothing is
    due or 40 s have passed, then prunes contact events older than 180 days; where pg_cron is
    installed the database also ticks every minute by itself. Event signing secrets stored
    before sealing are sealed (up to 100 a call, when INTEGRATIONS_ENCRYPTION_KEY is set)."""
    progress = flow_engine.advance(database, FLOW_BUDGET_SECONDS)
    return ok(progress | {"sealed_secrets": flow_signing.seal_stored_secrets(database, box)})


class InboxSend(BaseModel):
    sent: int
    retrying: int
    failed: int
    woken: int
    auto_resolved: int
    media_stored: int
    media_removed: int


class InboxReport(BaseModel):
    inbox: InboxSend


@router.get(
    "/inbox",
    response_model=Envelope[InboxReport],
    summary="Send queued inbox replies",
    responses=documented(
        {
            "inbox": {
                "sent": 12,
                "retrying": 1,
                "failed": 0,
                "woken": 2,
                "auto_resolved": 5,
                "media_stored": 3,
                "media_removed": 1,
            }
        }
    ),
)
def send_inbox(
    database: ServiceDatabase,
    box: OptionalBox,
    whatsapp: WhatsApp,
    telegram: Telegram,
    mailer: OptionalMailer,
    x: XApi,
    storage: OptionalInboxStorage,
) -> dict[str, Any]:
    """Wakes snoozed conversations whose time has come, resolves those silent for their
    workspace's auto_resolve_days (up to 1000 each), sends due inbox replies (up to 50: new ones
    and retries whose backoff has passed) and forgets week-old delivery statuses no message
    claimed, fetches up to 20 attachments of inbound messages into the `inbox` bucket and
    removes up to 200 files whose messages are gone (an erased contact's; while
    SUPABASE_SERVICE_KEY is set). Replies of channels with sealed credentials wait
    (retrying) while INTEGRATIONS_ENCRYPTION_KEY is not set, email replies while SES is not."""
    with database.as_service() as conn:
        conn.execute("select private.prune_inbox_backlog()")
        kept = conn.execute("select * from private.inbox_housekeeping(%s)", (1000,)).fetchone()
    sources = MediaSources(whatsapp, telegram, x)
    media = fetch_media(database, box, sources, storage, 20) if box and storage else None
    removed = remove_gone_media(database, storage, 200) if storage else 0
    report = drain_inbox_outbox(
        database, Providers(box, whatsapp, telegram, mailer, x), DRAIN_LIMIT
    )
    return ok(
        {
            "inbox": {
                **report.as_dict(),
                "woken": kept["woken"] if kept else 0,
                "auto_resolved": kept["resolved"] if kept else 0,
                "media_stored": media.stored if media else 0,
                "media_removed": removed,
            }
        }
    )
