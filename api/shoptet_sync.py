"""Incremental, resumable Shoptet order sync.

Each run pages through orders changed since the last completed run. Every page's orders and
the progress marker commit in one transaction, so a run that dies mid-way resumes at the page
it was on, and re-reading a page only re-upserts the same orders (no duplicates). A run does at
most `max_pages` pages (serverless time limits); the next call carries on.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.types.json import Jsonb

from api.db import Database
from api.errors import ApiError
from api.providers.shoptet import ShoptetClient, to_order
from api.secrets_box import SecretBox


@dataclass
class SyncReport:
    pages: int = 0
    orders: int = 0
    finished: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"pages": self.pages, "orders": self.orders, "finished": self.finished}


def sync_orders(
    database: Database, client: ShoptetClient, project_id: UUID, max_pages: int
) -> SyncReport:
    report = SyncReport()
    with database.as_service() as conn:
        state = conn.execute(
            "select sync_cursor, sync_page from private.integration_for(%s, 'shoptet')",
            (project_id,),
        ).fetchone()
    since = state["sync_cursor"] if state else None
    page = (state["sync_page"] if state else None) or 1
    while report.pages < max_pages:
        data = client.orders_page(page, since)
        orders = data.get("orders") or []
        page_count = int((data.get("paginator") or {}).get("pageCount") or 0)
        with database.as_service() as conn:
            for order in orders:
                conn.execute(
                    "select private.upsert_order(%s, 'shoptet', %s)",
                    (project_id, Jsonb(to_order(order))),
                )
            newest = max(
                (datetime.fromisoformat(o["changeTime"]) for o in orders if o.get("changeTime")),
                default=None,
            )
            conn.execute(
                "select private.save_sync_progress(%s, 'shoptet', %s, %s)",
                (project_id, page + 1, newest),
            )
            report.pages += 1
            report.orders += len(orders)
            if page >= page_count or not orders:
                conn.execute("select private.finish_sync(%s, 'shoptet')", (project_id,))
                report.finished = True
                break
        page += 1
    return report


def shoptet_client_for(
    database: Database, box: SecretBox | None, api_url: str, project_id: UUID
) -> ShoptetClient:
    """A client with the project's own token, or 409 when the project has none connected."""
    if box is None:
        raise ApiError(
            503, "provider_not_configured", "INTEGRATIONS_ENCRYPTION_KEY is not configured"
        )
    with database.as_service() as conn:
        row = conn.execute(
            "select api_token_encrypted from private.integration_for(%s, 'shoptet')",
            (project_id,),
        ).fetchone()
    if row is None or not row["api_token_encrypted"]:
        raise ApiError(409, "integration_not_connected", "Connect Shoptet for this project first")
    return ShoptetClient(box.open(row["api_token_encrypted"]), base_url=api_url)
