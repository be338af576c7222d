"""Time-based triggers recorded by the flows cron: a date attribute ± an offset (yearly), N
days after the last order, and an email not opened within N days; each enrols once per flow,
contact and day (or email), however often the cron runs."""

import datetime
import uuid
from typing import Any

import psycopg
import pytest

from tests.factories.commerce import add_order
from tests.factories.email import add_contacts
from tests.factories.flows import create_flow, history, runs, tick
from tests.factories.workspaces import create_user, make_project, one, refused

Conn = psycopg.Connection[Any]

TAG = [{"key": "tag", "kind": "update_contact", "config": {"add_tags": ["reached"]}}]


@pytest.fixture(autouse=True)
def quiet_flows(conn: Conn) -> None:
    """Flows of other tests in this database must not move in this one."""
    conn.execute("update public.flows set status = 'paused' where status = 'active'")


def today(conn: Conn) -> datetime.date:
    return one(conn, "select (now() at time zone 'UTC')::date as d")["d"]  # type: ignore[no-any-return]


def record(conn: Conn) -> int:
    return int(one(conn, "select private.record_flow_trigger_events() as n")["n"])


def contact(conn: Conn, workspace_id: uuid.UUID, **attributes: Any) -> uuid.UUID:
    row = one(
        conn,
        "insert into public.contacts (workspace_id, email, attributes) values (%s, %s, %s::jsonb)"
        " returning id",
        (
            workspace_id,
            f"c-{uuid.uuid4().hex[:10]}@mail.example.org",
            psycopg.types.json.Jsonb(attributes),
        ),
    )
    return uuid.UUID(str(row["id"]))


def enrolled(conn: Conn, flow: uuid.UUID) -> set[uuid.UUID]:
    return {r["contact_id"] for r in runs(conn, flow)}


def test_three_days_before_a_birthday_yearly_once_a_day(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    day = today(conn)
    in_three_days = day + datetime.timedelta(days=3)
    birthday = contact(conn, owner.workspace_id, birthday=f"1992-{in_three_days:%m-%d}")
    not_yet = contact(
        conn, owner.workspace_id, birthday=f"1992-{day + datetime.timedelta(days=4):%m-%d}"
    )
    contact(conn, owner.workspace_id, birthday="not a date")
    contact(conn, owner.workspace_id, birthday="0000-01-01")
    exact = contact(conn, owner.workspace_id, renewal=f"{in_three_days:%Y-%m-%d}")
    last_year = contact(
        conn, owner.workspace_id, renewal=f"{in_three_days.year - 1}-{in_three_days:%m-%d}"
    )
    yearly = create_flow(
        conn,
        owner,
        "date_attribute",
        TAG,
        trigger_config={"attribute": "birthday", "offset_days": -3, "yearly": True},
        entry_policy="every_time",
    )
    once = create_flow(
        conn,
        owner,
        "date_attribute",
        TAG,
        trigger_config={"attribute": "renewal", "offset_days": -3},
        entry_policy="every_time",
    )

    assert record(conn) == 2
    assert record(conn) == 0  # scanned today: nothing again
    conn.execute("delete from private.flow_date_scans")
    assert record(conn) == 0  # even scanned again, the same day's events are recorded once
    assert enrolled(conn, yearly) == {birthday}
    assert enrolled(conn, once) == {exact}
    assert not_yet not in enrolled(conn, yearly) and last_year not in enrolled(conn, once)
    tick(conn)
    [run] = runs(conn, yearly)
    assert history(conn, run["id"]) == [("update_contact", "updated")]
    assert run["context"]["date"] == str(day)


def test_n_days_after_the_last_order(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    project = make_project(conn, owner)
    day = today(conn)
    add_order(
        conn,
        project,
        "o-1",
        "lapsed@mail.example.org",
        placed_at=f"{day - datetime.timedelta(days=30)}T10:00:00Z",
    )
    add_order(
        conn,
        project,
        "o-2",
        "recent@mail.example.org",
        placed_at=f"{day - datetime.timedelta(days=40)}T10:00:00Z",
    )
    add_order(
        conn,
        project,
        "o-3",
        "recent@mail.example.org",
        placed_at=f"{day - datetime.timedelta(days=2)}T10:00:00Z",
    )
    flow = create_flow(conn, owner, "days_after_last_order", TAG, trigger_config={"days": 30})
    assert record(conn) == 1
    lapsed = one(
        conn,
        "select id from public.contacts"
        " where workspace_id = %s and email = 'lapsed@mail.example.org'",
        (owner.workspace_id,),
    )["id"]
    assert enrolled(conn, flow) == {lapsed}


def test_an_email_not_opened_within_n_days(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    flow = create_flow(conn, owner, "email_not_opened", TAG, trigger_config={"days": 3})
    campaign = one(
        conn,
        "insert into public.campaigns (workspace_id, name) values (%s, 'News') returning id",
        (owner.workspace_id,),
    )["id"]
    variant = one(
        conn,
        "insert into public.campaign_variants (campaign_id, workspace_id, name, subject, html)"
        " values (%s, %s, 'A', 'Hi', '<p>Hi</p>') returning id",
        (campaign, owner.workspace_id),
    )["id"]
    people = {
        name: contact(conn, owner.workspace_id)
        for name in ("unopened", "opened", "fresh", "bounced")
    }
    sent = {"unopened": "4 days", "opened": "4 days", "fresh": "1 day", "bounced": "4 days"}
    for name, who in people.items():
        conn.execute(
            "insert into public.campaign_recipients"
            " (campaign_id, workspace_id, variant_id, contact_id, email, status, sent_at,"
            " opened_at, bounced_at)"
            " select %s, %s, %s, c.id, c.email, 'sent', now() - %s::interval,"
            " case when %s then now() end, case when %s then now() end"
            " from public.contacts c where c.id = %s",
            (
                campaign,
                owner.workspace_id,
                variant,
                sent[name],
                name == "opened",
                name == "bounced",
                who,
            ),
        )
    assert record(conn) == 1
    assert record(conn) == 0
    assert enrolled(conn, flow) == {people["unopened"]}
    [run] = runs(conn, flow)
    assert run["context"]["campaign_id"] == str(campaign)


def test_the_trigger_settings_are_checked(conn: Conn) -> None:
    owner = create_user(conn)
    bad = [
        ("date_attribute", {}),
        ("date_attribute", {"attribute": "birthday", "offset_days": 1.5}),
        ("date_attribute", {"attribute": "birthday", "yearly": "yes"}),
        ("days_after_last_order", {"days": 0}),
        ("email_not_opened", {"days": 3, "campaign_id": str(uuid.uuid4())}),
    ]
    for trigger_type, config in bad:
        with refused(422, "invalid_flow_trigger"):
            create_flow(conn, owner, trigger_type, TAG, activate=False, trigger_config=config)


def local_today(conn: Conn, tz: str) -> datetime.date:
    return one(conn, "select (now() at time zone %s)::date as d", (tz,))["d"]  # type: ignore[no-any-return]


def test_a_date_is_the_contacts_local_day_else_the_workspaces_once_per_local_day(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    ahead, behind = "Pacific/Kiritimati", "Pacific/Pago_Pago"  # UTC+14 and UTC-11
    conn.execute(
        "insert into public.flow_send_rules (workspace_id, timezone) values (%s, %s)",
        (owner.workspace_id, ahead),
    )
    # At any hour one of the two zones is on another date than UTC.
    utc = today(conn)
    off = ahead if local_today(conn, ahead) != utc else behind
    assert local_today(conn, off) != utc

    def renewal(tz: str) -> str:
        return f"{local_today(conn, tz):%Y-%m-%d}"

    own_ahead = contact(conn, owner.workspace_id, renewal=renewal(ahead), timezone=ahead)
    own_behind = contact(conn, owner.workspace_id, renewal=renewal(behind), timezone=behind)
    workspace_zone = contact(conn, owner.workspace_id, renewal=renewal(ahead))
    unknown_zone = contact(conn, owner.workspace_id, renewal=renewal(ahead), timezone="Mars/Base")
    utc_date_elsewhere = contact(conn, owner.workspace_id, renewal=f"{utc:%Y-%m-%d}", timezone=off)
    flow = create_flow(
        conn,
        owner,
        "date_attribute",
        TAG,
        trigger_config={"attribute": "renewal"},
        entry_policy="every_time",
    )

    assert record(conn) == 4
    assert enrolled(conn, flow) == {own_ahead, own_behind, workspace_zone, unknown_zone}
    assert utc_date_elsewhere not in enrolled(conn, flow)
    assert record(conn) == 0  # scanned this hour
    conn.execute("delete from private.flow_date_scans")
    assert record(conn) == 0  # scanned again: once per flow, contact and local day
    events = {
        row["contact_id"]: row
        for row in conn.execute(
            "select contact_id, event_key, properties from public.contact_events"
            " where type = 'date_attribute' and workspace_id = %s",
            (owner.workspace_id,),
        ).fetchall()
    }
    assert events[own_behind]["properties"]["date"] == renewal(behind)
    assert events[own_behind]["properties"]["timezone"] == behind
    assert events[unknown_zone]["properties"]["timezone"] == ahead
    assert events[own_behind]["event_key"].endswith(renewal(behind))


def test_days_after_the_last_order_count_local_days(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    project = make_project(conn, owner)
    ahead = "Pacific/Kiritimati"  # UTC+14
    # Both placed 30 local days ago, at 00:30 and 23:30 there: two different UTC dates, so
    # counting UTC days would reach only one of them today.
    for name, at in (("early", "00:30"), ("late", "23:30")):
        placed = one(
            conn,
            "select ((now() at time zone %s::text)::date - 30 + %s::time) at time zone %s::text"
            " as t",
            (ahead, at, ahead),
        )["t"]
        email = f"{name}@mail.example.org"
        add_order(conn, project, f"o-{name}", email, placed_at=placed.isoformat())
        conn.execute(
            "update public.contacts"
            " set attributes = attributes || jsonb_build_object('timezone', %s::text)"
            " where workspace_id = %s and email = %s",
            (ahead, owner.workspace_id, email),
        )
    flow = create_flow(conn, owner, "days_after_last_order", TAG, trigger_config={"days": 30})
    assert record(conn) == 2
    assert len(enrolled(conn, flow)) == 2
