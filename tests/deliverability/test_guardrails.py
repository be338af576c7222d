"""Deliverability guardrails in the database: rolling rates kept as events arrive, warnings and
pauses with a minimum volume, a pause that stops every sending campaign of its scope until an
admin acknowledges it, and the platform brake."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.factories.email import (
    FROM_EMAIL,
    SENDER_DOMAIN,
    add_contacts,
    draft_campaign,
    email_list,
    list_campaign,
    send_alone,
    start,
    verified_sender,
)
from tests.factories.flows import create_flow, send_step, template, tick
from tests.factories.workspaces import User, acting_as, add_member, create_user, one, refused

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def idle_ledger(conn: Conn) -> Iterator[None]:
    """Other tests' sending campaigns stay out of these claims; the brake is off around each."""
    send_alone(conn, forget_counts=False, forget_accounts=False)
    yield
    # Later tests that claim across the database do not meet these campaigns' rows, and the
    # thousands of sends and bounces counted here cannot engage the brake on their mail.
    conn.execute("delete from private.deliverability_counts")
    conn.execute("select private.release_platform_brake()")
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")


def sent_campaign(
    conn: Conn,
    owner: User,
    count: int,
    *,
    prefix: str | None = None,
    sender: uuid.UUID | None = None,
    from_email: str | None = None,
) -> uuid.UUID:
    """A started campaign whose `count` rows SES accepted (one statement, as a batch of
    outcomes records them). Addresses are new to the database: an earlier test's bounces put
    theirs on the platform's suppression list."""
    campaign = another_campaign(
        conn,
        owner,
        count,
        prefix=prefix or f"r{uuid.uuid4().hex[:10]}",
        sender=sender,
        from_email=from_email,
    )
    start(conn, owner, campaign)
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(),"
        " ses_message_id = gen_random_uuid()::text where campaign_id = %s",
        (campaign,),
    )
    return campaign


def another_campaign(
    conn: Conn,
    owner: User,
    count: int,
    *,
    prefix: str,
    sender: uuid.UUID | None = None,
    from_email: str | None = None,
) -> uuid.UUID:
    """A draft to `count` new contacts in a list of their own, from the workspace's sender
    (registered and verified on first use)."""
    if sender is None:
        known = conn.execute(
            "select id from public.sender_identities where workspace_id = %s and verified"
            " and identity = %s",
            (owner.workspace_id, SENDER_DOMAIN),
        ).fetchone()
        sender = known["id"] if known else verified_sender(conn, owner)
    contacts = add_contacts(conn, owner, count, prefix=prefix)
    return draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, contacts, name=prefix)],
        sender_id=sender,
        from_email=from_email or FROM_EMAIL,
    )


def address(conn: Conn, campaign: uuid.UUID, n: int) -> str:
    """The campaign's n-th recipient's address (1-based, in the order of their numbers)."""
    return str(
        one(
            conn,
            "select email from public.campaign_recipients where campaign_id = %s"
            " order by substring(email from '-([0-9]+)@')::integer offset %s limit 1",
            (campaign, n - 1),
        )["email"]
    )


def ses_event(conn: Conn, campaign: uuid.UUID, email: str, event: dict[str, Any]) -> str:
    """An SES event for the recipient, stored and applied as the SES webhook does."""
    row = one(
        conn,
        "select id, ses_message_id from public.campaign_recipients"
        " where campaign_id = %s and email = %s",
        (campaign, email),
    )
    body = {
        "mail": {
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "messageId": row["ses_message_id"],
            "destination": [email],
            "tags": {"recipient_id": [str(row["id"])]},
        },
        **event,
    }
    notification = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "Message": json.dumps(body),
    }
    stored = one(
        conn,
        "select id from private.record_webhook_event('ses', %s, %s)",
        (notification["MessageId"], json.dumps(notification)),
    )
    return str(
        one(conn, "select private.apply_ses_event(%s) as outcome", (stored["id"],))["outcome"]
    )


def bounce(
    conn: Conn, campaign: uuid.UUID, email: str, kind: str = "Permanent", subtype: str = "General"
) -> None:
    ses_event(
        conn,
        campaign,
        email,
        {
            "eventType": "Bounce",
            "bounce": {
                "bounceType": kind,
                "bounceSubType": subtype,
                "bouncedRecipients": [{"emailAddress": email, "diagnosticCode": "smtp; 550 5.1.1"}],
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            },
        },
    )


def bounce_many(
    conn: Conn, campaign: uuid.UUID, count: int, *, subtype: str = "General", skip: int = 0
) -> None:
    """`count` permanent bounces recorded in one statement (as a replay of stored events may),
    of the recipients after the first `skip` (in the order of their addresses)."""
    conn.execute(
        "update public.campaign_recipients set bounced_at = now(), bounce_type = 'Permanent',"
        " bounce_subtype = %s where id in (select id from public.campaign_recipients"
        " where campaign_id = %s order by email offset %s limit %s)",
        (subtype, campaign, skip, count),
    )


def rates(conn: Conn, owner: User, identity: uuid.UUID | None = None) -> dict[str, dict[str, Any]]:
    with acting_as(conn, owner):
        rows = conn.execute(
            "select * from analytics.deliverability where workspace_id = %s"
            " and sender_identity_id is not distinct from %s",
            (owner.workspace_id, identity),
        ).fetchall()
    return {row["time_window"]: dict(row) for row in rows}


def status(conn: Conn, campaign: uuid.UUID) -> dict[str, Any]:
    return one(
        conn, "select status, error, paused_by from public.campaigns where id = %s", (campaign,)
    )


def claimable(conn: Conn) -> set[uuid.UUID]:
    """The campaigns a worker's claim would take rows of (the claim is given back)."""
    conn.execute("set role service_role")
    try:
        rows = conn.execute(
            "select recipient_id, campaign_id from private.claim_email_batch(1000, 60, 100000)"
        ).fetchall()
    finally:
        conn.execute("reset role")
    conn.execute(
        "update public.campaign_recipients set status = 'queued', attempts = attempts - 1,"
        " locked_until = null, next_attempt_at = now() where id = any(%s)",
        ([row["recipient_id"] for row in rows],),
    )
    return {row["campaign_id"] for row in rows}


def test_rates_are_kept_per_workspace_and_identity_as_sends_and_bounces_arrive(conn: Conn) -> None:
    owner = create_user(conn)
    campaign = sent_campaign(conn, owner, 40)
    bounce(conn, campaign, address(conn, campaign, 1))
    bounce(conn, campaign, address(conn, campaign, 2), subtype="OnAccountSuppressionList")
    bounce(conn, campaign, address(conn, campaign, 3), kind="Transient", subtype="MailboxFull")
    ses_event(
        conn,
        campaign,
        address(conn, campaign, 4),
        {
            "eventType": "Complaint",
            "complaint": {
                "complainedRecipients": [{"emailAddress": address(conn, campaign, 4)}],
                "complaintFeedbackType": "abuse",
            },
        },
    )

    workspace = rates(conn, owner)
    # SES's rate: the suppression-list hit is no eligible send and no bounce; the soft one is
    # counted apart.
    assert workspace["day"]["sends"] == 39 and workspace["rolling"]["sends"] == 39
    assert (workspace["day"]["bounces"], workspace["day"]["transient_bounces"]) == (1, 1)
    assert workspace["day"]["complaints"] == 1
    assert workspace["day"]["bounce_rate"] == round(Decimal(1) / 39, 5)
    assert workspace["day"]["status"] == "low_volume"
    sender = one(conn, "select sender_identity_id from public.campaigns where id = %s", (campaign,))
    assert rates(conn, owner, sender["sender_identity_id"])["day"]["bounces"] == 1
    # Nobody else sees them.
    stranger = create_user(conn)
    with acting_as(conn, stranger):
        seen = conn.execute(
            "select count(*) as n from analytics.deliverability where workspace_id = %s",
            (owner.workspace_id,),
        ).fetchone()
    assert seen is not None and seen["n"] == 0


def test_rates_and_the_minimum_volume_count_eligible_sends_without_suppression_list_hits(
    conn: Conn,
) -> None:
    def pauses(owner: User) -> list[dict[str, Any]]:
        return [
            dict(row)
            for row in conn.execute(
                "select reason, detail from public.sending_pauses where workspace_id = %s",
                (owner.workspace_id,),
            )
        ]

    def strict(owner: User) -> None:
        conn.execute(
            "insert into public.deliverability_settings (workspace_id, pause_bounce_rate,"
            " min_volume) values (%s, 0.05, 100)",
            (owner.workspace_id,),
        )

    # 100 sent, 4 of them to suppressed addresses: 96 eligible sends, under the minimum volume
    # of 100, so 5 permanent bounces (5.2%) pause nothing.
    few = create_user(conn)
    strict(few)
    campaign = sent_campaign(conn, few, 100)
    bounce_many(conn, campaign, 4, subtype="OnAccountSuppressionList")
    bounce_many(conn, campaign, 5, skip=4)
    day = rates(conn, few)["day"]
    assert (day["sends"], day["bounces"], day["status"]) == (96, 5, "low_volume")
    assert pauses(few) == []

    # 200 sent, 20 suppression-list hits: 9 permanent bounces are 9 / 180 = 5%, the pause level
    # (9 / 200 would be 4.5%).
    many = create_user(conn)
    strict(many)
    campaign = sent_campaign(conn, many, 200)
    bounce_many(conn, campaign, 20, subtype="Suppressed")
    bounce_many(conn, campaign, 9, skip=20)
    day = rates(conn, many)["day"]
    assert (day["sends"], day["bounces"], day["bounce_rate"]) == (180, 9, Decimal("0.05"))
    assert day["paused"] is True
    [pause] = pauses(many)
    assert pause["reason"] == "bounce_rate"
    assert "9 permanent bounces in 180 sends" in pause["detail"]


def test_a_few_sends_cannot_trip_a_pause(conn: Conn) -> None:
    owner = create_user(conn)
    campaign = sent_campaign(conn, owner, 10)
    bounce_many(conn, campaign, 5)
    assert (
        one(
            conn,
            "select count(*) as n from public.sending_pauses where workspace_id = %s",
            (owner.workspace_id,),
        )["n"]
        == 0
    )


def test_a_bounce_rate_over_the_limit_pauses_every_sending_campaign_until_an_admin_acknowledges(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    member = add_member(conn, owner, "member")
    bad = sent_campaign(conn, owner, 600)
    # Another campaign of the workspace still sending, and another workspace's.
    other = another_campaign(conn, owner, 5, prefix="later")
    start(conn, owner, other)
    neighbour = create_user(conn)
    theirs = another_campaign(
        conn,
        neighbour,
        5,
        prefix="theirs",
        sender=verified_sender(conn, neighbour, "neighbour.example.net"),
        from_email="hi@neighbour.example.net",
    )
    start(conn, neighbour, theirs)

    bounce_many(conn, bad, 31)  # 5.2% of 600

    pause = one(
        conn, "select * from public.sending_pauses where workspace_id = %s", (owner.workspace_id,)
    )
    assert pause["reason"] == "bounce_rate" and pause["sender_identity_id"] is None
    assert "5.17%" in pause["detail"] and "31 permanent bounces in 600 sends" in pause["detail"]
    assert status(conn, other) == {
        "status": "paused",
        "error": pause["detail"],
        "paused_by": pause["id"],
    }
    assert claimable(conn) == {theirs}
    # The owner and admins are told, in the app and by email; members are not.
    notified = {
        row["user_id"]
        for row in conn.execute(
            "select user_id from public.notifications"
            " where kind = 'sending.paused' and workspace_id = %s",
            (owner.workspace_id,),
        )
    }
    assert notified == {owner.id, admin.id}
    emails = conn.execute(
        "select user_id, subject from private.deliverability_emails where pause_id = %s",
        (pause["id"],),
    ).fetchall()
    assert {row["user_id"] for row in emails} == {owner.id, admin.id}
    assert all("bounce rate" in row["subject"] for row in emails)

    # Resuming is refused with the reason; a member cannot acknowledge.
    with refused(409, "sending_paused"), acting_as(conn, owner):
        conn.execute("select public.resume_campaign(%s)", (other,))
    with refused(403, "insufficient_role"), acting_as(conn, member):
        conn.execute("select public.acknowledge_sending_pause(%s)", (pause["id"],))
    with refused(404, "sending_pause_not_found"), acting_as(conn, neighbour):
        conn.execute("select public.acknowledge_sending_pause(%s)", (pause["id"],))

    # Still over the limit (nothing was sent since): a plain acknowledgement is refused with the
    # figures, and the pause holds.
    with pytest.raises(psycopg.Error) as over, acting_as(conn, admin):
        conn.execute("select public.acknowledge_sending_pause(%s)", (pause["id"],))
    assert over.value.sqlstate == "PT409"
    assert over.value.diag.message_hint == "sending_rates_over_limit"
    assert "bounce rate is still 5.17% (31 permanent bounces in 600 sends" in str(
        over.value.diag.message_primary
    )
    assert status(conn, other)["status"] == "paused"
    assert claimable(conn) == {theirs}

    # Accepting the rates explicitly lifts it, and that is recorded.
    with acting_as(conn, admin):
        answer = one(
            conn,
            "select public.acknowledge_sending_pause(%s, p_accept_over_limit => true) as a",
            (pause["id"],),
        )["a"]
    # Both campaigns it paused resume (the first had not been marked sent yet).
    assert answer["resumed"] == 2 and answer["still_over_limit"] is True
    recorded = one(
        conn,
        "select acknowledged_by, acknowledged_at, acknowledged_over_limit"
        " from public.sending_pauses where id = %s",
        (pause["id"],),
    )
    assert recorded["acknowledged_by"] == admin.id and recorded["acknowledged_at"] is not None
    assert recorded["acknowledged_over_limit"] is True
    assert status(conn, other) == {"status": "sending", "error": None, "paused_by": None}
    assert claimable(conn) == {other, theirs}
    with refused(409, "sending_pause_acknowledged"), acting_as(conn, admin):
        conn.execute("select public.acknowledge_sending_pause(%s)", (pause["id"],))


def test_an_identitys_pause_stops_only_that_identitys_campaigns(conn: Conn) -> None:
    owner = create_user(conn)
    good_sender = verified_sender(conn, owner, "good.example.net")
    bad_sender = verified_sender(conn, owner, "bad.example.net")
    sent_campaign(
        conn,
        owner,
        2000,
        prefix=f"good{uuid.uuid4().hex[:6]}",
        sender=good_sender,
        from_email="hi@good.example.net",
    )
    bad = sent_campaign(
        conn,
        owner,
        600,
        prefix=f"bad{uuid.uuid4().hex[:6]}",
        sender=bad_sender,
        from_email="hi@bad.example.net",
    )
    good_next = another_campaign(
        conn, owner, 3, prefix="g2", sender=good_sender, from_email="hi@good.example.net"
    )
    bad_next = another_campaign(
        conn, owner, 3, prefix="b2", sender=bad_sender, from_email="hi@bad.example.net"
    )
    start(conn, owner, good_next)
    start(conn, owner, bad_next)

    bounce_many(conn, bad, 40)  # 6.7% for the identity, 1.5% for the workspace

    pauses = conn.execute(
        "select sender_identity_id from public.sending_pauses where workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert [row["sender_identity_id"] for row in pauses] == [bad_sender]
    assert status(conn, bad_next)["status"] == "paused"
    assert status(conn, good_next)["status"] == "sending"
    # The workspace as a whole is warned (over 1.5%? no: 40 / 2600 = 1.54%, under 2%).
    assert rates(conn, owner)["day"]["status"] == "ok"
    assert rates(conn, owner, bad_sender)["day"]["paused"] is True


def test_a_complaint_rate_of_a_tenth_of_a_percent_pauses(conn: Conn) -> None:
    owner = create_user(conn)
    campaign = sent_campaign(conn, owner, 1000)
    ses_event(
        conn,
        campaign,
        address(conn, campaign, 7),
        {
            "eventType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": address(conn, campaign, 7)}]},
        },
    )
    pause = one(
        conn,
        "select reason, metrics from public.sending_pauses where workspace_id = %s",
        (owner.workspace_id,),
    )
    assert pause["reason"] == "complaint_rate"
    assert pause["metrics"]["complaints"] == 1 and pause["metrics"]["sends"] == 1000


def test_a_rate_over_the_warning_level_warns_the_admins_once(conn: Conn) -> None:
    owner = create_user(conn)
    campaign = sent_campaign(conn, owner, 1000)
    bounce_many(conn, campaign, 25)  # 2.5%
    bounce(conn, campaign, address(conn, campaign, 999))
    warnings = conn.execute(
        "select title, body from public.notifications"
        " where workspace_id = %s and kind = 'sending.warning'",
        (owner.workspace_id,),
    ).fetchall()
    assert len(warnings) == 1 and "Bounce rate 2.50%" in warnings[0]["body"]
    assert (
        one(
            conn,
            "select count(*) as n from public.sending_pauses where workspace_id = %s",
            (owner.workspace_id,),
        )["n"]
        == 0
    )


def test_thresholds_can_only_be_set_by_admins_and_never_above_the_safe_limits(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    with pytest.raises(psycopg.errors.CheckViolation), acting_as(conn, owner):
        conn.execute(
            "insert into public.deliverability_settings (workspace_id, pause_bounce_rate)"
            " values (%s, 0.08)",
            (owner.workspace_id,),
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, member):
        conn.execute(
            "insert into public.deliverability_settings (workspace_id, pause_bounce_rate)"
            " values (%s, 0.03)",
            (owner.workspace_id,),
        )
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.deliverability_settings (workspace_id, warn_bounce_rate,"
            " pause_bounce_rate, min_volume) values (%s, 0.01, 0.02, 100)",
            (owner.workspace_id,),
        )
    campaign = sent_campaign(conn, owner, 200)
    bounce_many(conn, campaign, 5)  # 2.5%: over this workspace's own 2%
    assert (
        one(
            conn,
            "select reason from public.sending_pauses where workspace_id = %s",
            (owner.workspace_id,),
        )["reason"]
        == "bounce_rate"
    )


def test_the_platform_brake_reads_eligible_sends_without_suppression_list_hits(conn: Conn) -> None:
    owner = create_user(conn)
    conn.execute("delete from private.deliverability_counts")  # the platform's totals: ours

    def brake(sends: int, suppressed: int, bounces: int) -> bool:
        conn.execute("delete from private.deliverability_counts")
        conn.execute(
            "insert into private.deliverability_counts (workspace_id, hour, sends,"
            " suppressed_bounces, bounces) values (%s, date_trunc('hour', now()), %s, %s, %s)",
            (owner.workspace_id, sends, suppressed, bounces),
        )
        conn.execute("set role service_role")
        try:
            return bool(one(conn, "select private.check_platform_brake() as engaged")["engaged"])
        finally:
            conn.execute("reset role")

    # 5,200 sent, 300 to suppressed addresses: 4,900 eligible sends, under the 5,000 it needs.
    assert brake(5200, 300, 312) is False
    # 6,000 sent, 500 suppressed: 280 bounces are 5.09% of 5,500 eligible sends (4.67% of all).
    assert brake(6000, 500, 280) is True
    assert "in 5500 sends" in one(conn, "select reason from private.platform_brake")["reason"]
    conn.execute("delete from private.deliverability_counts")
    conn.execute("select private.release_platform_brake()")


def test_the_platform_brake_stops_every_claim_and_no_tenant_can_lift_it(conn: Conn) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 3))
    start(conn, owner, campaign)
    assert claimable(conn) == {campaign}

    # The platform's own totals over SES's review level engage it.
    conn.execute(
        "insert into private.deliverability_counts (workspace_id, hour, sends, bounces)"
        " values (%s, date_trunc('hour', now()) - interval '1 hour', 6000, 3000)",
        (owner.workspace_id,),
    )
    conn.execute("set role service_role")
    try:
        engaged = one(conn, "select private.check_platform_brake() as engaged")["engaged"]
    finally:
        conn.execute("reset role")
    conn.execute(
        "delete from private.deliverability_counts where workspace_id = %s and sends = 6000",
        (owner.workspace_id,),
    )
    assert engaged is True
    assert claimable(conn) == set()
    # A paused campaign cannot be resumed (it would show `sending` while nothing goes)...
    with acting_as(conn, owner):
        conn.execute("select public.pause_campaign(%s)", (campaign,))
    with refused(409, "platform_brake_engaged"), acting_as(conn, owner):
        conn.execute("select public.resume_campaign(%s)", (campaign,))
    assert status(conn, campaign)["status"] == "paused"
    # ...nor a workspace's own pause acknowledged while the brake holds.
    pause = one(
        conn,
        "insert into public.sending_pauses (workspace_id, reason, detail, metrics)"
        " values (%s, 'bounce_rate', 'Bounce rate 6%%', '{}') returning id",
        (owner.workspace_id,),
    )["id"]
    with refused(409, "platform_brake_engaged"), acting_as(conn, owner):
        conn.execute("select public.acknowledge_sending_pause(%s, true)", (pause,))
    for function in ("private.release_platform_brake()", "private.engage_platform_brake(text)"):
        privilege = one(
            conn,
            "select has_function_privilege('authenticated', %s, 'execute') as may",
            (function,),
        )
        assert privilege["may"] is False
    conn.execute("select private.release_platform_brake()")
    with acting_as(conn, owner):
        conn.execute("select public.acknowledge_sending_pause(%s)", (pause,))
        conn.execute("select public.resume_campaign(%s)", (campaign,))
    assert claimable(conn) == {campaign}


def test_the_rolling_window_is_seven_days_or_the_last_ten_thousand_sends(conn: Conn) -> None:
    """The rolling window reaches back past 7 days until it holds 10,000 sends (as SES's own
    rate does for low-volume senders), and no further; the day window is the last 24 hours."""
    owner = create_user(conn)
    sender = verified_sender(conn, owner)

    def counted(days_ago: float, sends: int, bounces: int, complaints: int = 0) -> None:
        conn.execute(
            "insert into private.deliverability_counts (workspace_id, sender_identity_id,"
            " hour, sends, bounces, complaints)"
            " values (%s, %s, date_trunc('hour', now() - %s * interval '1 day'), %s, %s, %s)",
            (owner.workspace_id, sender, days_ago, sends, bounces, complaints),
        )

    counted(20, 3000, 300)  # an old bad list, beyond 7 days
    counted(2, 1000, 0)
    counted(0.1, 100, 10, 1)
    workspace, identity = rates(conn, owner), rates(conn, owner, sender)
    # Fewer than 10,000 sends since: the old hours still count.
    assert (workspace["rolling"]["sends"], workspace["rolling"]["bounces"]) == (4100, 310)
    assert identity["rolling"]["sends"] == 4100
    assert (workspace["day"]["sends"], workspace["day"]["bounces"]) == (100, 10)
    assert workspace["day"]["complaints"] == 1

    counted(12, 9500, 0)  # 10,600 sends later than the old list: it leaves the window
    assert (rates(conn, owner)["rolling"]["sends"], rates(conn, owner)["rolling"]["bounces"]) == (
        10600,
        10,
    )
    counted(5, 20000, 0)  # more than 10,000 in 7 days: 7 days it is
    assert rates(conn, owner)["rolling"]["sends"] == 21100


def test_each_counted_bounce_broadcasts_the_rates_to_the_workspaces_members(conn: Conn) -> None:
    owner = create_user(conn)
    stranger = create_user(conn)
    campaign = sent_campaign(conn, owner, 40)
    bounce(conn, campaign, address(conn, campaign, 1))
    bounce(conn, campaign, address(conn, campaign, 2))
    topic = f"workspace:{owner.workspace_id}:deliverability"
    seen = {}
    for user in (owner, stranger):
        with acting_as(conn, user):
            conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
            seen[user.id] = [
                (r["payload"]["window"], r["payload"]["sends"], r["payload"]["bounces"])
                for r in conn.execute(
                    "select payload from realtime.messages where topic = %s and event = %s"
                    " and payload ->> 'sender_identity_id' is null order by inserted_at, id",
                    (topic, "deliverability_rates"),
                )
            ]
    # Each bounce moved the rates: both windows went out each time, as counted then.
    assert sorted(seen[owner.id]) == sorted(
        [("rolling", 40, 1), ("day", 40, 1), ("rolling", 40, 2), ("day", 40, 2)]
    )
    assert seen[stranger.id] == []


def test_a_pause_stops_flow_email_steps_and_leaves_a_flow_paused_meanwhile_paused(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    bad = sent_campaign(conn, owner, 600)
    sender = one(conn, "select sender_identity_id from public.campaigns where id = %s", (bad,))[
        "sender_identity_id"
    ]
    flows = [
        create_flow(
            conn, owner, "contact_created", [send_step("hello", template(conn, owner), sender)]
        )
        for _ in range(2)
    ]
    add_contacts(conn, owner, 2, prefix=f"f{uuid.uuid4().hex[:8]}")
    tick(conn)
    steps = {
        flow: one(
            conn,
            "select s.campaign_id from public.flow_steps s where s.flow_id = %s"
            " and s.kind = 'send_email'",
            (flow,),
        )["campaign_id"]
        for flow in flows
    }
    assert claimable(conn) == set(steps.values())

    bounce_many(conn, bad, 31)

    pause = one(
        conn, "select * from public.sending_pauses where workspace_id = %s", (owner.workspace_id,)
    )
    for campaign in steps.values():
        assert status(conn, campaign) == {
            "status": "paused",
            "error": pause["detail"],
            "paused_by": pause["id"],
        }
    assert claimable(conn) == set()
    # Meanwhile a member pauses one flow, then resumes it: the guardrail pause still holds it.
    paused_flow, active_flow = flows
    with acting_as(conn, owner):
        conn.execute("select public.pause_flow(%s)", (paused_flow,))
        conn.execute("select public.resume_flow(%s)", (paused_flow,))
    assert claimable(conn) == set()
    with acting_as(conn, owner):
        conn.execute("select public.pause_flow(%s)", (paused_flow,))

    with acting_as(conn, admin):
        answer = one(
            conn,
            "select public.acknowledge_sending_pause(%s, p_accept_over_limit => true) as a",
            (pause["id"],),
        )["a"]
    # The bad campaign and the active flow's step send again; the paused flow's waits for it.
    assert answer["resumed"] == 2
    assert status(conn, steps[active_flow])["status"] == "sending"
    waiting = status(conn, steps[paused_flow])
    assert waiting == {"status": "paused", "error": None, "paused_by": None}
    assert claimable(conn) == {steps[active_flow]}  # the bad campaign's rows are all sent
    with acting_as(conn, owner):
        conn.execute("select public.resume_flow(%s)", (paused_flow,))
    assert claimable(conn) == set(steps.values())
    conn.execute("update public.flows set status = 'paused' where id = any(%s)", (flows,))


def test_the_kept_counts_match_the_ledger_and_a_drift_shows(conn: Conn) -> None:
    owner = create_user(conn)
    campaign = sent_campaign(conn, owner, 30)
    bounce(conn, campaign, address(conn, campaign, 1))
    bounce(conn, campaign, address(conn, campaign, 2), subtype="OnAccountSuppressionList")
    bounce(conn, campaign, address(conn, campaign, 3), kind="Transient", subtype="MailboxFull")
    bounce(conn, campaign, address(conn, campaign, 3))  # the soft one turns hard
    bounce_many(conn, campaign, 5)  # a replay: some again, some new
    ses_event(
        conn,
        campaign,
        address(conn, campaign, 4),
        {
            "eventType": "Complaint",
            "complaint": {"complainedRecipients": [{"emailAddress": address(conn, campaign, 4)}]},
        },
    )

    def drift() -> list[dict[str, Any]]:
        conn.execute("set role service_role")
        try:
            return [
                dict(row)
                for row in conn.execute(
                    "select * from private.verify_deliverability_counts(%s)",
                    (owner.workspace_id,),
                )
            ]
        finally:
            conn.execute("reset role")

    assert drift() == []
    kept = one(
        conn,
        "select sum(bounces) as bounces from private.deliverability_counts where workspace_id = %s",
        (owner.workspace_id,),
    )
    assert kept["bounces"] >= 5
    conn.execute(
        "update private.deliverability_counts set sends = sends + 1 where workspace_id = %s",
        (owner.workspace_id,),
    )
    assert [(row["kept_sends"], row["ledger_sends"]) for row in drift()] == [(31, 30)]
