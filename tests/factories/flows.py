"""Flow test data: templates and flows built the way a dashboard user builds them (through
RLS and the flow RPCs), and the tick run as the cron runs it."""

import uuid
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from tests.factories.email import FROM_EMAIL, verified_sender
from tests.factories.workspaces import User, acting_as, one


def template(
    conn: psycopg.Connection[Any],
    user: User,
    subject: str = "Welcome, {{ first_name }}",
    html: str = "<p>Hello {{ first_name }}</p>",
) -> uuid.UUID:
    with acting_as(conn, user):
        row = one(
            conn,
            "insert into public.email_templates (workspace_id, name, subject, html)"
            " values (%s, %s, %s, %s) returning id",
            (user.workspace_id, f"Template {uuid.uuid4().hex[:6]}", subject, html),
        )
    return uuid.UUID(str(row["id"]))


def send_step(
    key: str,
    template_id: uuid.UUID,
    sender_id: uuid.UUID,
    next_key: str | None = None,
    **config: Any,
) -> dict[str, Any]:
    return {
        "key": key,
        "kind": "send_email",
        "config": {
            "template_id": str(template_id),
            "sender_identity_id": str(sender_id),
            "from_email": FROM_EMAIL,
            "from_name": "Growthbase Shop",
            **config,
        },
        "next": next_key,
    }


def create_flow(
    conn: psycopg.Connection[Any],
    user: User,
    trigger_type: str,
    steps: list[dict[str, Any]],
    *,
    activate: bool = True,
    **settings: Any,
) -> uuid.UUID:
    """A flow with its steps saved (and activated unless told otherwise)."""
    columns = {"workspace_id": user.workspace_id, "name": f"Flow {uuid.uuid4().hex[:6]}"}
    columns["trigger_type"] = trigger_type
    columns.update(settings)
    names = ", ".join(columns)
    marks = ", ".join("%s" for _ in columns)
    values = [Jsonb(v) if isinstance(v, dict | list) else v for v in columns.values()]
    with acting_as(conn, user):
        flow_id = one(
            conn, f"insert into public.flows ({names}) values ({marks}) returning id", values
        )["id"]
        conn.execute("select public.save_flow(%s, %s)", (flow_id, Jsonb(steps)))
        if activate:
            conn.execute("select public.activate_flow(%s)", (flow_id,))
    return uuid.UUID(str(flow_id))


def welcome_sender(conn: psycopg.Connection[Any], user: User) -> uuid.UUID:
    return verified_sender(conn, user)


def tick(conn: psycopg.Connection[Any], limit: int = 10000) -> int:
    return int(one(conn, "select private.advance_flows(%s) as n", (limit,))["n"])


def skip_waits(conn: psycopg.Connection[Any], flow_id: uuid.UUID, by: str = "1 second") -> None:
    """Time passes for the flow's waiting runs: each is due `by` ago."""
    conn.execute(
        "update public.flow_runs set due_at = now() - %s::interval"
        " where flow_id = %s and status = 'active'",
        (by, flow_id),
    )


def history(conn: psycopg.Connection[Any], run_id: uuid.UUID) -> list[tuple[str, str]]:
    rows = conn.execute(
        "select h.kind, h.outcome from public.flow_run_steps h where h.run_id = %s order by h.seq",
        (run_id,),
    ).fetchall()
    return [(row["kind"], row["outcome"]) for row in rows]


def runs(conn: psycopg.Connection[Any], flow_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        dict(row)
        for row in conn.execute(
            "select r.*, s.key as step_key from public.flow_runs r"
            " left join public.flow_steps s on s.id = r.step_id"
            " where r.flow_id = %s order by r.entered_at, r.id",
            (flow_id,),
        ).fetchall()
    ]
