"""Shoptet catalog sync: the e-shop's products with their variants, changed since the last
finished run, a page of the product list at a time (each product's detail read for its
variants), written with one statement per page (private.upsert_products). A page's upsert, its
position (`private.sync_streams`, stream `products`), the import job's counts (kind `products`,
source `shoptet`) and its broadcast commit together, so a run that dies resumes at its page, a
re-read page only re-upserts, and a job cancelled meanwhile takes no further page. A run works
within a time budget (`api.shops.budget`): it starts no page that would end past its deadline,
and each Shoptet request (the list's and every detail's) waits at most the time left; a page
whose requests found no time left is not written, and the next call reads it again."""

import time
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from pydantic import BaseModel, Field

from api.core.db import Database
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
from api.shops.shoptet.client import ShoptetClient, ShoptetError, to_product

STREAM = "products"


class CatalogReport(BaseModel):
    """What one call did."""

    job_id: UUID | None = Field(default=None, description=JOB_ID_DESCRIPTION)
    pages: int = Field(default=0, description="Pages of Shoptet's product list read in this call")
    products: int = Field(default=0, description="Products upserted in this call")
    skipped: int = Field(
        default=0, description="Products without what they need (a GUID, a name), not written"
    )
    finished: bool = Field(
        default=False, description="The catalog is up to date; false: call again to carry on"
    )


def sync_catalog(
    database: Database,
    client: ShoptetClient,
    project_id: UUID,
    job_id: UUID,
    max_pages: int,
    *,
    budget_seconds: float = BUDGET_SECONDS,
    clock: Clock = time.monotonic,
) -> CatalogReport:
    """Pages through products changed since the last finished run, within `max_pages` pages
    and `budget_seconds`, as the import job `job_id`."""
    deadline = Deadline.after(budget_seconds, clock)
    with client.within(deadline):
        return sync_pages(database, client, project_id, job_id, max_pages, deadline)


def read_page(
    client: ShoptetClient, page: int, since: datetime | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """A page of the product list (its items, their details as documents, the page count); a
    product gone since the list was read, or one of the wrong shape, is left out."""
    data = client.products_page(page, since)
    items = [item for item in data.get("products") or [] if isinstance(item, dict)]
    page_count = int((data.get("paginator") or {}).get("pageCount") or 0)
    documents = []
    for item in items:
        try:
            documents.append(to_product(client.product(str(item.get("guid") or ""))))
        except ShoptetError as error:
            if error.status != 404 and error.code != "shoptet_bad_response":
                raise
    return items, documents, page_count


def sync_pages(
    database: Database,
    client: ShoptetClient,
    project_id: UUID,
    job_id: UUID,
    max_pages: int,
    deadline: Deadline,
) -> CatalogReport:
    """The pages from the saved position while pages and time are left; a page is read whole
    (list and details) before its one transaction, so one cut short by the deadline writes
    nothing."""
    report = CatalogReport(job_id=job_id)
    with database.as_service() as conn:
        position = conn.execute(
            "select cursor, page from private.sync_position(%s, 'shoptet', %s)",
            (project_id, STREAM),
        ).fetchone()
    since = position["cursor"] if position else None
    page = (position["page"] if position else None) or 1
    while report.pages < max_pages and deadline.room_for_page():
        started = deadline.page_started()
        try:
            items, documents, page_count = read_page(client, page, since)
        except BudgetSpentError:
            return report
        newest = max(
            (datetime.fromisoformat(i["changeTime"]) for i in items if i.get("changeTime")),
            default=None,
        )
        last = page >= page_count or not items
        try:
            with database.as_service() as conn:
                bound_lock_waits(conn, deadline)
                count_page(conn, job_id, STREAM, len(documents), len(items) - len(documents))
                upsert_page(
                    conn,
                    job_id,
                    STREAM,
                    "select private.upsert_products(%s, 'shoptet', %s)",
                    project_id,
                    documents,
                )
                conn.execute(
                    "select private.save_sync_progress(%s, 'shoptet', %s, %s, %s)",
                    (project_id, STREAM, page + 1, newest),
                )
                if last:
                    conn.execute(
                        "select private.finish_sync(%s, 'shoptet', %s)", (project_id, STREAM)
                    )
                    finish(conn, job_id)
                conn.execute(
                    "select private.broadcast_shop_backfill(%s, 'shoptet', %s, %s, %s, %s)",
                    (project_id, STREAM, page, page_count, len(documents)),
                )
        except (JobNotRunningError, psycopg.errors.LockNotAvailable):
            return report
        deadline.page_ended(started)
        report.pages += 1
        report.products += len(documents)
        report.skipped += len(items) - len(documents)
        if last:
            report.finished = True
            return report
        page += 1
    return report
