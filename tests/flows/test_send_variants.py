"""Send-step variants with a winner: the runs are split over the step's templates until every
variant has its minimum sample of sends old enough to judge, then the best by clicks (or
revenue) per recipient wins and every later send is the winner's."""

import datetime
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.factories.commerce import add_order
from tests.factories.email import add_contacts, verified_sender
from tests.factories.flows import create_flow, send_step, template, tick
from tests.factories.workspaces import User, acting_as, create_user, make_project, one, refused

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def quiet_flows(conn: Conn) -> None:
    """Flows of other tests in this database must not move in this one."""
    conn.execute("update public.flows set status = 'paused' where status = 'active'")


def ab_flow(conn: Conn, owner: User, metric: str) -> uuid.UUID:
    sender = verified_sender(conn, owner)
    a, b = template(conn, owner, subject="Plain"), template(conn, owner, subject="Bold")
    step = send_step(
        "hello",
        a,
        sender,
        variants=[{"template_id": str(b)}],
        winner={"metric": metric, "min_sample": 10, "window_hours": 2},
    )
    return create_flow(conn, owner, "tag_added", [step], trigger_config={"tag": "ab"})


def enter(conn: Conn, contacts: list[uuid.UUID]) -> None:
    conn.execute("update public.contacts set tags = '{ab}' where id = any(%s)", (contacts,))
    tick(conn)


def sends(conn: Conn, flow: uuid.UUID) -> dict[str, list[uuid.UUID]]:
    """The flow's queued sends' contacts per variant name."""
    out: dict[str, list[uuid.UUID]] = {}
    for row in conn.execute(
        "select v.name, q.contact_id from public.campaign_recipients q"
        " join public.campaign_variants v on v.id = q.variant_id"
        " join public.flow_steps s on s.campaign_id = q.campaign_id where s.flow_id = %s",
        (flow,),
    ).fetchall():
        out.setdefault(row["name"], []).append(row["contact_id"])
    return out


def delivered(conn: Conn, flow: uuid.UUID, age: str) -> None:
    """Every queued send of the flow went out `age` ago."""
    conn.execute(
        "update public.campaign_recipients q set status = 'sent', sent_at = now() - %s::interval"
        " from public.flow_steps s where s.flow_id = %s and s.campaign_id = q.campaign_id"
        " and q.status = 'queued'",
        (age, flow),
    )


def clicked(conn: Conn, contacts: list[uuid.UUID]) -> None:
    conn.execute(
        "update public.campaign_recipients set clicked_at = now() - interval '1 hour',"
        " opened_at = now() - interval '1 hour' where contact_id = any(%s)",
        (contacts,),
    )


def step_of(conn: Conn, flow: uuid.UUID) -> dict[str, Any]:
    return dict(
        one(
            conn,
            "select s.*, v.name as winner from public.flow_steps s"
            " left join public.campaign_variants v on v.id = s.winner_variant_id"
            " where s.flow_id = %s and s.kind = 'send_email'",
            (flow,),
        )
    )


def look_again(conn: Conn, flow: uuid.UUID) -> None:
    """Ten minutes pass since the tick last looked for a winner."""
    conn.execute(
        "update public.flow_steps set variants_checked_at = now() - interval '11 minutes'"
        " where flow_id = %s",
        (flow,),
    )


def test_the_runs_are_split_until_the_variant_with_more_clicks_wins(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 80, prefix="ab")
    flow = ab_flow(conn, owner, "clicks")
    enter(conn, people[:60])
    split = sends(conn, flow)
    assert sorted(split) == ["A", "B"] and sum(map(len, split.values())) == 60
    assert all(len(c) >= 10 for c in split.values())  # a stable hash splits 60 runs evenly enough

    # Sent an hour ago: not old enough to judge (window 2 h), so no winner yet.
    delivered(conn, flow, "1 hour")
    clicked(conn, split["B"][:5] + split["A"][:1])
    look_again(conn, flow)
    enter(conn, people[60:64])
    assert step_of(conn, flow)["winner"] is None
    assert len(sends(conn, flow).get("A", [])) + len(sends(conn, flow).get("B", [])) == 64

    conn.execute(
        "update public.campaign_recipients set sent_at = now() - interval '3 hours'"
        " where sent_at is not null"
        " and campaign_id = (select campaign_id from public.flow_steps where flow_id = %s"
        " and kind = 'send_email')",
        (flow,),
    )
    enter(conn, people[64:66])  # looked at less than 10 minutes ago: still split
    assert step_of(conn, flow)["winner"] is None
    look_again(conn, flow)
    enter(conn, people[66:])
    step = step_of(conn, flow)
    assert step["winner"] == "B" and step["winner_picked_at"] is not None
    after = sends(conn, flow)
    newest = set(people[66:])
    assert newest <= set(after["B"]) and not newest & set(after["A"])  # all went to the winner


def test_revenue_per_recipient_can_beat_clicks(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 61, prefix="rev")
    project = make_project(conn, owner)
    flow = ab_flow(conn, owner, "revenue")
    enter(conn, people[:60])
    split = sends(conn, flow)
    delivered(conn, flow, "3 hours")
    with acting_as(conn, owner):  # the step's figures are all its variants'
        figures = one(
            conn,
            "select sent from analytics.flow_step_performance where flow_id = %s"
            " and kind = 'send_email'",
            (flow,),
        )
    assert figures["sent"] == 60
    clicked(conn, split["B"][:6] + split["A"][:1])  # B clicks more, A's one click buys
    buyer = one(conn, "select email from public.contacts where id = %s", (split["A"][0],))
    now = datetime.datetime.now(datetime.UTC).isoformat()
    add_order(conn, project, "o-ab", buyer["email"], placed_at=now, total=250)
    look_again(conn, flow)
    enter(conn, people[60:])
    assert step_of(conn, flow)["winner"] == "A"
    assert people[60] in sends(conn, flow)["A"]


def test_variants_are_checked(conn: Conn) -> None:
    owner = create_user(conn)
    other = create_user(conn)
    sender = verified_sender(conn, owner)
    mine, theirs = template(conn, owner), template(conn, other)
    flow = create_flow(
        conn, owner, "contact_created", [{"key": "a", "kind": "exit"}], activate=False
    )

    def save(**config: Any) -> None:
        with acting_as(conn, owner):
            conn.execute(
                "select public.save_flow(%s, %s)",
                (flow, Jsonb([send_step("s", mine, sender, **config)])),
            )

    with refused(422, "invalid_reference"):
        save(variants=[{"template_id": str(theirs)}])
    with refused(422, "invalid_flow_step"):
        save(variants=[{"template_id": str(mine)}] * 4)
    with refused(422, "invalid_flow_step"):
        save(variants=[])
    with refused(422, "invalid_flow_step"):
        save(winner={"metric": "clicks"})  # a winner needs variants
    with refused(422, "invalid_flow_step"):
        save(variants=[{"template_id": str(mine)}], winner={"metric": "opens"})
    with refused(422, "invalid_flow_step"):
        save(variants=[{"template_id": str(mine)}], winner={"min_sample": 5})
    with refused(422, "invalid_flow_step"):
        save(variants=[{"template_id": str(mine)}], winner={"window_hours": 0})
    save(variants=[{"template_id": str(mine)}], winner={"metric": "revenue", "min_sample": 50})
