"""Incremental, resumable Shoptet sync of orders, then customers.

Each run pages through what changed since the last completed run of that stream. Every page's
records, the progress marker and the import job's counts commit in one transaction, so a run
that dies mid-way resumes at the page it was on, and re-reading a page only re-upserts the same
records (no duplicates). A run works within a time budget (`api.shops.budget`: it starts no page
that would end past its deadline, and each Shoptet request waits at most the time left) and at
most `max_pages` pages; the next call carries on, and a job cancelled meanwhile takes no further
page. A record without what it
needs (an order without its code or time) and an order the database leaves out (one that breaks
a rule of its table) are counted as skipped; the page's other records are written.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from pydantic import BaseModel, Field

from api.core.db import Database
from api.core.secrets_box import SecretBox
from api.shops.backfill_jobs import (
    JOB_ID_DESCRIPTION,
    JobNotRunningError,
    count_page,
    finish,
    upsert_page,
)
from api.shops.budget import (
    BUDGET_SECONDS,
    BudgetSpentError,
    Clock,
    Deadline,
    bound_lock_waits,
)
from api.shops.integration_secrets import NotConnectedError, integration_secrets
from api.shops.shoptet.client import ShoptetClient, ShoptetError, to_customer, to_order


@dataclass(frozen=True)
class Stream:
    name: str  # Shoptet's resource, the key of its list in a page, and SyncReport's count
    query: str
    to_document: Callable[[dict[str, Any]], dict[str, Any]]


# One statement per page (a list of documents), not one per record.
ORDERS = Stream("orders", "select private.upsert_orders(%s, 'shoptet', %s)", to_order)
CUSTOMERS = Stream(
    "customers", "select private.upsert_shop_customers(%s, 'shoptet', %s)", to_customer
)
STREAMS = (ORDERS, CUSTOMERS)


class SyncReport(BaseModel):
    """What one call did; a stream it did not reach counts 0."""

    job_id: UUID | None = Field(default=None, description=JOB_ID_DESCRIPTION)
    pages: int = Field(default=0, description="Pages read from Shoptet in this call")
    orders: int = Field(default=0, description="Orders upserted in this call")
    customers: int = Field(default=0, description="Customers upserted in this call")
    skipped: int = Field(
        default=0,
        description="Records without what they need (an order's code or time), and orders that "
        "break a rule of their table (a negative total, a currency that is not a code, a date "
        "that cannot be read), not written",
    )
    finished: bool = Field(
        default=False, description="Both streams are up to date; false: call again to carry on"
    )


# What mapping a record without what it needs raises (a missing key, a value of another type).
UNMAPPABLE = (ShoptetError, KeyError, TypeError, ValueError, AttributeError)


def mapped(stream: Stream, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's records as documents; one without what it needs is left out."""
    documents = []
    for item in items:
        try:
            documents.append(stream.to_document(item))
        except UNMAPPABLE:
            continue
    return documents


def sync_stream(
    database: Database,
    client: ShoptetClient,
    project_id: UUID,
    job_id: UUID,
    stream: Stream,
    max_pages: int,
    deadline: Deadline,
) -> tuple[int, int, int, bool]:
    """Pages through one stream while pages and time are left; returns (pages read, records
    upserted, records skipped, finished). The last stream's last page ends the job; a job that
    no longer runs, or the deadline, stops it unfinished (a page whose Shoptet read found no
    time left is not written: the next call reads it)."""
    with database.as_service() as conn:
        position = conn.execute(
            "select cursor, page from private.sync_position(%s, 'shoptet', %s)",
            (project_id, stream.name),
        ).fetchone()
        counted = conn.execute(
            "select stream_records ? %s as counted from public.import_jobs where id = %s",
            (stream.name, job_id),
        ).fetchone()
    if position and position["page"] is None and counted and counted["counted"]:
        # This job's run of the stream finished (a call stopped before the next stream):
        # another run now would read again the records changed at its newest change.
        return 0, 0, 0, True
    since = position["cursor"] if position else None
    page = (position["page"] if position else None) or 1
    pages = records = skipped = 0
    while pages < max_pages and deadline.room_for_page():
        started = deadline.page_started()
        try:
            data = client.changes_page(stream.name, page, since)
        except BudgetSpentError:
            return pages, records, skipped, False
        items = data.get(stream.name) or []
        page_count = int((data.get("paginator") or {}).get("pageCount") or 0)
        newest = max(
            (datetime.fromisoformat(i["changeTime"]) for i in items if i.get("changeTime")),
            default=None,
        )
        last = page >= page_count or not items
        documents = mapped(stream, items)
        try:
            with database.as_service() as conn:
                bound_lock_waits(conn, deadline)
                count_page(conn, job_id, stream.name, len(documents), len(items) - len(documents))
                left_out = upsert_page(
                    conn, job_id, stream.name, stream.query, project_id, documents
                )
                conn.execute(
                    "select private.save_sync_progress(%s, 'shoptet', %s, %s, %s)",
                    (project_id, stream.name, page + 1, newest),
                )
                if last:
                    conn.execute(
                        "select private.finish_sync(%s, 'shoptet', %s)", (project_id, stream.name)
                    )
                    if stream is STREAMS[-1]:
                        finish(conn, job_id)
        except (JobNotRunningError, psycopg.errors.LockNotAvailable):
            return pages, records, skipped, False
        deadline.page_ended(started)
        pages, records = pages + 1, records + len(documents) - left_out
        skipped += len(items) - len(documents) + left_out
        if last:
            return pages, records, skipped, True
        page += 1
    return pages, records, skipped, False


def sync_shop(
    database: Database,
    client: ShoptetClient,
    project_id: UUID,
    job_id: UUID,
    max_pages: int,
    *,
    budget_seconds: float = BUDGET_SECONDS,
    clock: Clock = time.monotonic,
) -> SyncReport:
    """Orders, then customers, within `max_pages` pages and `budget_seconds` in all, as the
    import job `job_id`."""
    deadline = Deadline.after(budget_seconds, clock)
    report = SyncReport(job_id=job_id)
    with client.within(deadline):
        for stream in STREAMS:
            pages, records, skipped, finished = sync_stream(
                database, client, project_id, job_id, stream, max_pages - report.pages, deadline
            )
            report.pages += pages
            report.skipped += skipped
            setattr(report, stream.name, records)
            if not finished:
                return report
    report.finished = True
    return report


def shoptet_client_for(
    database: Database, box: SecretBox, api_url: str, project_id: UUID
) -> ShoptetClient:
    """A client with the project's own token; NotConnectedError when it has none."""
    token = integration_secrets(database, box, project_id, "shoptet").api_token
    if token is None:
        raise NotConnectedError("shoptet")
    return ShoptetClient(token, base_url=api_url)
