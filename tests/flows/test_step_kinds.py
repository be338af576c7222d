"""Step kinds and entry rules a marketer combines: leaving other flows, list changes, the filter
checked again before a send, "not in flow X lately", the counts broadcast after a tick, a wait
until a weekday and time in the contact's time zone, a wait until a date attribute (three days
before a birthday) in the contact's time zone, and entering again only after a period."""

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.factories.email import add_contacts, email_list, verified_sender
from tests.factories.flows import create_flow, history, runs, send_step, template, tick
from tests.factories.workspaces import acting_as, create_user, one

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
    # The members' dashboard hears each flow's counts on the workspace's private channel.
    topic = f"workspace:{owner.workspace_id}:flows"

    def heard(user: Any) -> dict[str, Any]:
        with acting_as(conn, user):
            conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
            rows = conn.execute(
                "select payload from realtime.messages where topic = %s"
                " and event = 'flow_counts' order by inserted_at, id",
                (topic,),
            ).fetchall()
        return {r["payload"]["flow_id"]: r["payload"] for r in rows}

    counts = heard(owner)
    assert {str(onboarding), str(cleanup)} <= set(counts)
    last = counts[str(cleanup)]
    assert (last["entered"], last["active"], last["completed"]) == (1, 0, 1)
    assert heard(create_user(conn)) == {}


def test_the_filter_again_before_a_send_and_not_in_another_flow_lately(conn: Conn) -> None:
    owner = create_user(conn)
    [gold, lapsed, welcomed, plain] = add_contacts(conn, owner, 4, prefix="filter")
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
        ([gold, lapsed, welcomed, plain],),
    )
    entered = {r["contact_id"]: r["id"] for r in runs(conn, vip)}
    # Neither the one welcomed lately nor the one the filter does not match is entered.
    assert set(entered) == {gold, lapsed}

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


def birthday_in(days: int, zone: ZoneInfo) -> date:
    """The contact's local day `days` from today, never a 29 February (a birthday on it falls
    on the 28th in other years)."""
    day = datetime.now(zone).date() + timedelta(days=days)
    return day + timedelta(days=1) if (day.month, day.day) == (2, 29) else day


def test_a_wait_until_three_days_before_a_birthday_in_the_contacts_time_zone(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    tokyo, new_york = ZoneInfo("Asia/Tokyo"), ZoneInfo("America/New_York")
    [east, west, unknown, yearless] = add_contacts(conn, owner, 4, prefix="birthday")
    soon = {east: birthday_in(10, tokyo), west: birthday_in(10, new_york)}
    for contact, attributes in (
        (east, {"timezone": "Asia/Tokyo", "birthday": f"1990-{soon[east]:%m-%d}"}),
        (west, {"timezone": "America/New_York", "birthday": f"1985-{soon[west]:%m-%d}"}),
        (unknown, {"timezone": "Asia/Tokyo"}),
        (yearless, {"birthday": "0000-05-01"}),  # no such date: goes on, as without one
    ):
        conn.execute(
            "update public.contacts set attributes = %s where id = %s", (Jsonb(attributes), contact)
        )
    steps: list[dict[str, Any]] = [
        {
            "key": "before",
            "kind": "wait_until",
            "config": {"attribute": "birthday", "offset_days": -3, "yearly": True, "at": "10:00"},
        },
    ]
    flow = create_flow(conn, owner, "tag_added", steps, trigger_config={"tag": "bday"})
    conn.execute(
        "update public.contacts set tags = '{bday}' where id = any(%s)",
        ([east, west, unknown, yearless],),
    )
    tick(conn)
    after = {r["contact_id"]: r for r in runs(conn, flow)}
    for contact, zone in ((east, tokyo), (west, new_york)):
        day = soon[contact] - timedelta(days=3)
        assert after[contact]["status"] == "active"
        assert after[contact]["due_at"] == datetime(day.year, day.month, day.day, 10, tzinfo=zone)
    for contact in (unknown, yearless):
        assert after[contact]["status"] == "completed"
        assert history(conn, after[contact]["id"]) == [("wait_until", "waited")]

    # Across a year's end, from the day the run reaches the step: 29 December has passed for a
    # 1 January birthday (so a year on), and 3 January is tomorrow for a 31 December one.
    for birthday, offset, reached, due in (
        (
            "1985-01-01",
            -3,
            datetime(2026, 12, 30, 12, tzinfo=tokyo),
            datetime(2027, 12, 29, 10, tzinfo=tokyo),
        ),
        (
            "1985-12-31",
            3,
            datetime(2027, 1, 2, 12, tzinfo=tokyo),
            datetime(2027, 1, 3, 10, tzinfo=tokyo),
        ),
    ):
        config = {"attribute": "birthday", "offset_days": offset, "yearly": True, "at": "10:00"}
        assert (
            one(
                conn,
                "select private.flow_step_due('wait_until', %s, %s, 'Asia/Tokyo', %s) as due",
                (Jsonb(config), Jsonb({"birthday": birthday}), reached),
            )["due"]
            == due
        )


def test_once_per_period_lets_a_contact_in_again_only_after_the_period(conn: Conn) -> None:
    owner = create_user(conn)
    [lately, long_ago] = add_contacts(conn, owner, 2, prefix="period")
    flow = create_flow(
        conn,
        owner,
        "custom",
        [{"key": "bye", "kind": "exit"}],
        trigger_config={"name": "visit"},
        entry_policy="once_per_period",
        reentry_days=30,
    )

    def visit(key: str) -> None:
        conn.execute(
            "insert into public.contact_events (workspace_id, contact_id, type, name, event_key)"
            " select %s, unnest(%s::uuid[]), 'custom', 'visit', %s || gen_random_uuid()",
            (owner.workspace_id, [lately, long_ago], key),
        )

    visit("first-")
    tick(conn)
    conn.execute(
        "update public.flow_runs set entered_at = now() - case when contact_id = %s"
        " then interval '10 days' else interval '40 days' end where flow_id = %s",
        (lately, flow),
    )
    visit("again-")
    entered = [r["contact_id"] for r in runs(conn, flow)]
    assert sorted(map(str, entered)) == sorted([str(lately), str(long_ago), str(long_ago)])
