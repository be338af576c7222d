"""The workspace's sending rules for flow email: frequency caps (per day and per rolling 7 days)
across campaigns and flows, quiet hours in the contact's time zone, transactional flows exempt,
and lateness counted from the first time a held send was due."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from tests.factories.email import (
    add_contacts,
    draft_campaign,
    email_list,
    list_campaign,
    send_alone,
    start,
    verified_sender,
)
from tests.factories.flows import create_flow, history, runs, send_step, template, tick
from tests.factories.workspaces import acting_as, add_member, create_user, one, refused

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def quiet_flows(conn: Conn) -> None:
    conn.execute("update public.flows set status = 'paused' where status = 'active'")


def rules(conn: Conn, owner: Any, **values: Any) -> None:
    names = ", ".join(["workspace_id", *values])
    marks = ", ".join(["%s"] * (len(values) + 1))
    with acting_as(conn, owner):
        conn.execute(
            f"insert into public.flow_send_rules ({names}) values ({marks})",
            (owner.workspace_id, *values.values()),
        )


def one_send_flow(conn: Conn, owner: Any, **settings: Any) -> Any:
    sender = verified_sender(conn, owner)
    return create_flow(
        conn,
        owner,
        "tag_added",
        [send_step("hello", template(conn, owner), sender)],
        trigger_config={"tag": "go"},
        **settings,
    )


def test_a_capped_send_waits_for_the_next_day_or_is_skipped(conn: Conn) -> None:
    owner = create_user(conn)
    [mailed, fresh] = add_contacts(conn, owner, 2, prefix="capped")
    start(conn, owner, list_campaign(conn, owner, [mailed]))  # one email today already
    rules(conn, owner, daily_cap=1, timezone="Europe/Prague")
    waiting = one_send_flow(conn, owner)
    skipping = one_send_flow(conn, owner, cap_action="skip")
    conn.execute("update public.contacts set tags = '{go}' where id = any(%s)", ([mailed, fresh],))
    tick(conn)
    held = {r["contact_id"]: r for r in runs(conn, waiting)}
    assert history(conn, held[mailed]["id"]) == [("send_email", "capped")]
    assert held[mailed]["status"] == "active" and held[mailed]["step_key"] == "hello"
    midnight = one(
        conn,
        "select (date_trunc('day', now() at time zone 'Europe/Prague') + interval '1 day')"
        " at time zone 'Europe/Prague' as t",
    )["t"]
    assert held[mailed]["due_at"] == midnight
    assert history(conn, held[fresh]["id"]) == [("send_email", "queued")]
    skipped = {r["contact_id"]: r for r in runs(conn, skipping)}
    # The first flow's email to `fresh` counts too: both are capped in the second flow.
    assert history(conn, skipped[mailed]["id"]) == [("send_email", "capped_skipped")]
    assert skipped[mailed]["status"] == "completed"


def test_a_weekly_cap_counts_the_last_seven_days_of_mail(conn: Conn) -> None:
    send_alone(conn, forget_counts=False, forget_accounts=False)
    owner = create_user(conn)
    [busy, rested] = add_contacts(conn, owner, 2, prefix="weekly")
    sender = verified_sender(conn, owner)
    earlier = []
    for name in ("Monday news", "Thursday news"):
        made = draft_campaign(
            conn,
            owner,
            list_ids=[email_list(conn, owner, [busy, rested], name=name)],
            sender_id=sender,
        )
        start(conn, owner, made)
        earlier.append(made)
    # Two emails each: the busy contact's 2 and 3 days ago, the rested one's 8 and 9.
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now()"
        " - case when contact_id = %s then interval '2 days' else interval '8 days' end"
        " - case when campaign_id = %s then interval '1 day' else interval '0 days' end"
        " where campaign_id = any(%s)",
        (busy, earlier[0], earlier),
    )
    rules(conn, owner, weekly_cap=2, timezone="Europe/Prague")
    flow = create_flow(
        conn,
        owner,
        "tag_added",
        [send_step("hello", template(conn, owner), sender)],
        trigger_config={"tag": "go"},
    )
    conn.execute("update public.contacts set tags = '{go}' where id = any(%s)", ([busy, rested],))
    tick(conn)
    after = {r["contact_id"]: r for r in runs(conn, flow)}
    assert history(conn, after[busy]["id"]) == [("send_email", "capped")]
    midnight = one(
        conn,
        "select (date_trunc('day', now() at time zone 'Europe/Prague') + interval '1 day')"
        " at time zone 'Europe/Prague' as t",
    )["t"]
    assert (after[busy]["status"], after[busy]["due_at"]) == ("active", midnight)
    assert history(conn, after[rested]["id"]) == [("send_email", "queued")]

    # A campaign's mail to the busy contact is held by the same cap when the worker claims it.
    third = draft_campaign(
        conn, owner, list_ids=[email_list(conn, owner, [busy], name="Sale")], sender_id=sender
    )
    start(conn, owner, third)
    assert busy not in claim_all(conn, "weekly-cap")
    assert "frequency cap" in held(conn, third)[busy]["error"]


def test_quiet_hours_hold_sends_and_transactional_flows_go_through(conn: Conn) -> None:
    owner = create_user(conn)
    [night_owl] = add_contacts(conn, owner, 1, prefix="owl", attributes={"timezone": "UTC"})
    now = datetime.now(UTC)
    rules(
        conn,
        owner,
        quiet_from=(now - timedelta(hours=1)).time().replace(microsecond=0),
        quiet_until=(now + timedelta(hours=1)).time().replace(second=0, microsecond=0),
    )
    marketing = one_send_flow(conn, owner)
    receipts = one_send_flow(conn, owner, transactional=True)
    conn.execute("update public.contacts set tags = '{go}' where id = %s", (night_owl,))
    tick(conn)
    [held] = runs(conn, marketing)
    assert history(conn, held["id"]) == [("send_email", "quiet_hours")]
    assert held["due_at"] > now and held["held_since"] is not None
    [sent] = runs(conn, receipts)
    assert history(conn, sent["id"]) == [("send_email", "queued")]

    # Held past the step's lateness (24 h by default, from when it was first due): stale.
    conn.execute(
        "delete from public.flow_send_rules where workspace_id = %s", (owner.workspace_id,)
    )
    conn.execute(
        "update public.flow_runs set due_at = now(), held_since = now() - interval '25 hours'"
        " where id = %s",
        (held["id"],),
    )
    tick(conn)
    assert history(conn, held["id"])[-1] == ("send_email", "stale")


def test_only_admins_set_the_rules(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, member):
        conn.execute(
            "insert into public.flow_send_rules (workspace_id, daily_cap) values (%s, 2)",
            (owner.workspace_id,),
        )
    with refused(422, "invalid_timezone"), acting_as(conn, owner):
        conn.execute(
            "insert into public.flow_send_rules (workspace_id, timezone) values (%s, 'Mars/Base')",
            (owner.workspace_id,),
        )
    rules(conn, owner, daily_cap=2)


def test_waiting_sends_go_out_by_priority_cart_before_welcome_before_campaigns(conn: Conn) -> None:
    send_alone(conn)
    owner = create_user(conn)
    [reader] = add_contacts(conn, owner, 1, prefix="prio")
    sender = verified_sender(conn, owner)
    campaign = draft_campaign(
        conn, owner, list_ids=[email_list(conn, owner, [reader])], sender_id=sender
    )
    start(conn, owner, campaign)  # queued first
    welcome, cart = (
        create_flow(
            conn,
            owner,
            "tag_added",
            [send_step("hello", template(conn, owner), sender)],
            trigger_config={"tag": "go"},
            send_priority=priority,
        )
        for priority in ("welcome", "cart")
    )
    conn.execute("update public.contacts set tags = '{go}' where id = %s", (reader,))
    tick(conn)
    assert len(runs(conn, welcome)) == len(runs(conn, cart)) == 1
    order = []
    for _ in range(3):
        [row] = conn.execute(
            "select campaign_id from private.claim_email_batch(1, 60, 1000, 'priority-test')"
        ).fetchall()
        order.append(
            one(
                conn,
                "select coalesce((select f.send_priority from public.flow_steps s"
                " join public.flows f on f.id = s.flow_id where s.campaign_id = %s), 'campaign')"
                " as kind",
                (row["campaign_id"],),
            )["kind"]
        )
        conn.execute("delete from private.ses_accounts where account = 'priority-test'")
    assert order == ["cart", "welcome", "campaign"]


def claim_all(conn: Conn, account: str) -> set[uuid.UUID]:
    """The contacts one claim of the send worker takes now."""
    rows = conn.execute(
        "select contact_id from private.claim_email_batch(100, 60, 1000, %s)", (account,)
    ).fetchall()
    conn.execute("delete from private.ses_accounts where account = %s", (account,))
    return {r["contact_id"] for r in rows}


def held(conn: Conn, campaign: uuid.UUID) -> dict[uuid.UUID, Any]:
    rows = conn.execute(
        "select contact_id, status, next_attempt_at, error from public.campaign_recipients"
        " where campaign_id = %s and status = 'queued'",
        (campaign,),
    ).fetchall()
    return {r["contact_id"]: r for r in rows}


def test_campaign_mail_obeys_the_caps_and_quiet_hours_too(conn: Conn) -> None:
    send_alone(conn, forget_counts=False, forget_accounts=False)
    owner = create_user(conn)
    [mailed, fresh, owl] = add_contacts(conn, owner, 3, prefix="camprule")
    conn.execute(
        'update public.contacts set attributes = \'{"timezone": "Asia/Tokyo"}\' where id = %s',
        (owl,),
    )
    now = datetime.now(UTC)
    tokyo = now.astimezone(ZoneInfo("Asia/Tokyo"))
    rules(
        conn,
        owner,
        daily_cap=1,
        weekly_cap=5,
        timezone="UTC",
        # Quiet now in Tokyo, not in UTC (nine hours behind).
        quiet_from=(tokyo - timedelta(hours=1)).time().replace(second=0, microsecond=0),
        quiet_until=(tokyo + timedelta(hours=1)).time().replace(second=0, microsecond=0),
    )
    sender = verified_sender(conn, owner)

    def campaign(name: str, contacts: list[uuid.UUID]) -> uuid.UUID:
        lists = [email_list(conn, owner, contacts, name=name)]
        made = draft_campaign(conn, owner, list_ids=lists, sender_id=sender)
        start(conn, owner, made)
        return made

    campaign("First", [mailed])
    assert claim_all(conn, "rules-1") == {mailed}  # one email out today

    second = campaign("Second", [mailed, fresh, owl])
    assert claim_all(conn, "rules-2") == {fresh}
    waiting = held(conn, second)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), UTC)
    assert waiting[mailed]["next_attempt_at"] == midnight
    assert "frequency cap" in waiting[mailed]["error"]
    assert waiting[owl]["next_attempt_at"] > now and "quiet hours" in waiting[owl]["error"]
    assert claim_all(conn, "rules-3") == set()  # held rows cost no attempt and wait

    # The rules gone, the held mail goes when due.
    conn.execute(
        "delete from public.flow_send_rules where workspace_id = %s", (owner.workspace_id,)
    )
    conn.execute(
        "update public.campaign_recipients set next_attempt_at = now() where campaign_id = %s",
        (second,),
    )
    assert claim_all(conn, "rules-4") == {mailed, owl}
