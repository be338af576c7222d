"""Plan rate limits for endpoints that cost a provider call or a scan of a workspace's data.

The database counts them (`public.take_action_quota`), so they hold across serverless
instances. Each is taken as the user, in a transaction that commits before the costly step, so a
provider failure still counts; a spent limit raises 429 `rate_limited` with `retry_after`,
which the edge answers with `Retry-After`.
"""

from typing import Any, Literal
from uuid import UUID

import psycopg

Action = Literal["shop_sync", "import", "preview", "sender_identity", "billing"]


def take_workspace_quota(conn: psycopg.Connection[Any], workspace_id: UUID, action: Action) -> None:
    """Spends one request of `action` in the workspace (404 for non-members, 403 below the
    action's role)."""
    conn.execute("select public.take_action_quota(%s, %s)", (workspace_id, action))


def take_project_quota(conn: psycopg.Connection[Any], project_id: UUID, action: Action) -> None:
    """Spends one request of `action` in the project's workspace, for members and above of it
    (404 `project_not_found` for others, 403 for viewers)."""
    conn.execute(
        "select public.take_action_quota(private.project_workspace_as(%s, 'member'), %s)",
        (project_id, action),
    )
