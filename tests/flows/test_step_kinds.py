"""Step kinds and entry rules a marketer combines: leaving other flows, list changes, the filter
checked again before a send, "not in flow X lately", the counts broadcast after a tick, and a
wait until a weekday and time in the contact's time zone."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.factories.email import add_contacts, email_list, verified_sender
from tests.factories.flows import create_flow, history, runs, send_step, template, tick
from tests.factories.workspaces import create_user, one

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def quiet_flows(conn: Conn) -> None:
    conn.execute("update public.flows set status = 'paused' where status = 'active'")


def members(conn: Conn, list_id: uuid.UUID) -> set[uuid.UUID]:
    rows = conn.execute(
        "select contact_id from public.email_list_members where list_id = %s", (list_id,)
    ).fetchall()
    return {r["contact_id"] for r in rows}


def test_exit_flows_and_list_changes_in_one_tick(conn: Conn) -> None:
    owner = create_user(conn)
    [buyer] = add_contacts(conn, owner, 1, prefix="kinds")
    prospects = email_list(conn, owner, [buyer], name="Prospects")
    customers = email_list(conn, owner, [], name="Customers")
    nurture = create_flow(
        conn,
        owner,
        "tag_added",
        [{"key": "tag", "kind": "update_contact", "config": {"add_tags": ["nurtured"]}}],
        trigger_config={"tag": "go"},
    )
    steps = [
        {
            "key": "leave",
            "kind": "exit_flows",
            "config": {"flow_ids": [str(nurture)]},
            "next": "in",
        },
        {"key": "in", "kind": "update_contact", "config": {"add_to_list": str(customers)}},
    ]
    onboarding = create_flow(conn, owner, "tag_added", steps, trigger_config={"tag": "go"})
    steps = [
        {"key": "out", "kind": "update_contact", "config": {"remove_from_list": str(prospects)}}
    ]
    cleanup = create_flow(conn, owner, "tag_added", steps, trigger_config={"tag": "go"})
    conn.execute("update public.contacts set tags = '{go}' where id = %s", (buyer,))

    # One batch: exit_flows goes first, so the nurture run it ends does nothing more.
    tick(conn)
    [left] = runs(conn, nurture)
    assert (left["status"], left["exit_reason"]) == ("exited", "left_by_other_flow")
    assert history(conn, left["id"]) == [("exit", "left_by_other_flow")]
    tags = one(conn, "select tags from public.contacts where id = %s", (buyer,))["tags"]
    assert "nurtured" not in tags
    [run] = runs(conn, onboarding)
    assert history(conn, run["id"]) == [
        ("exit_flows", "exited_flows"),
        ("update_contact", "updated"),
    ]
    assert members(conn, customers) == {buyer}
    assert members(conn, prospects) == set()
    assert [r["status"] for r in runs(conn, cleanup)] == ["completed"]
    counts = conn.execute(
        "select payload ->> 'flow_id' as flow from realtime.messages"
        " where topic = %s and event = 'flow_counts'",
        (f"workspace:{owner.workspace_id}:flows",),
    ).fetchall()
    assert {str(onboarding), str(cleanup)} <= {r["flow"] for r in counts}


def test_the_filter_again_before_a_send_and_not_in_another_flow_lately(conn: Conn) -> None:
    owner = create_user(conn)
    [gold, lapsed, welcomed] = add_contacts(conn, owner, 3, prefix="filter")
    conn.execute(
        'update public.contacts set attributes = \'{"tier": "gold"}\' where id = any(%s)',
        ([gold, lapsed, welcomed],),
    )
    sender = verified_sender(conn, owner)
    welcome = create_flow(
        conn,
        owner,
        "tag_added",
        [{"key": "hi", "kind": "update_contact", "config": {"add_tags": ["welcomed"]}}],
        trigger_config={"tag": "hello"},
    )
    conn.execute("update public.contacts set tags = '{hello}' where id = %s", (welcomed,))
    tick(conn)
    vip = create_flow(
        conn,
        owner,
        "tag_added",
        [
            {"key": "wait", "kind": "wait", "config": {"hours": 1}, "next": "mail"},
            send_step("mail", template(conn, owner), sender),
        ],
        trigger_config={"tag": "vip"},
        entry_filter={"attribute": "tier", "op": "eq", "value": "gold"},
        recheck_filter=True,
        not_in_flow_id=welcome,
        not_in_flow_days=30,
    )
    conn.execute(
        "update public.contacts set tags = tags || '{vip}' where id = any(%s)",
        ([gold, lapsed, welcomed],),
    )
    entered = {r["contact_id"]: r["id"] for r in runs(conn, vip)}
    assert set(entered) == {gold, lapsed}  # the one welcomed lately is not entered

    conn.execute(
        'update public.contacts set attributes = \'{"tier": "silver"}\' where id = %s',
        (lapsed,),
    )
    conn.execute("update public.flow_runs set due_at = now() where flow_id = %s", (vip,))
    tick(conn)
    tick(conn)
    assert history(conn, entered[gold]) == [("wait", "waited"), ("send_email", "queued")]
    assert history(conn, entered[lapsed]) == [
        ("wait", "waited"),
        ("send_email", "filter_no_longer_matches"),
    ]
    ended = {r["contact_id"]: r["status"] for r in runs(conn, vip)}
    assert ended == {gold: "completed", lapsed: "exited"}


def test_a_wait_until_a_weekday_and_time_in_the_contacts_time_zone(conn: Conn) -> None:
    owner = create_user(conn)
    [reader] = add_contacts(conn, owner, 1, prefix="monday")
    conn.execute(
        'update public.contacts set attributes = \'{"timezone": "Asia/Tokyo"}\' where id = %s',
        (reader,),
    )
    steps: list[dict[str, Any]] = [
        {"key": "monday", "kind": "wait", "config": {"at": "10:00", "weekdays": [1]}, "next": "x"},
        {"key": "x", "kind": "exit"},
    ]
    flow = create_flow(conn, owner, "tag_added", steps, trigger_config={"tag": "week"})
    conn.execute("update public.contacts set tags = '{week}' where id = %s", (reader,))
    [run] = runs(conn, flow)
    due = run["due_at"].astimezone(ZoneInfo("Asia/Tokyo"))
    now = datetime.now(UTC)
    assert (due.isoweekday(), due.hour, due.minute) == (1, 10, 0)
    assert now < due <= now + timedelta(days=7)
