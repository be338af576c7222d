"""Support features: assignment by hand and round-robin within a team under each member's
capacity, status and snooze, priority and labels, notes with @mentions, SLA clocks in
business hours, canned responses, auto-resolve, contact merge and the reports."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from tests.factories.commerce import add_order
from tests.factories.email import add_contacts
from tests.factories.inbox import (
    account_id,
    apply_whatsapp,
    whatsapp_channel,
    whatsapp_conversation,
)
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    fund,
    make_project,
    one,
    refused,
)
from tests.fakes.whatsapp_server import inbound, text_message

Conn = psycopg.Connection[DictRow]
KEY = Fernet.generate_key().decode()
WEEKDAYS = {str(day): [["09:00", "17:00"]] for day in range(1, 6)}


def sender_of(conn: Conn, conversation: uuid.UUID) -> str:
    return str(
        one(
            conn,
            "select i.address from public.contact_identities i"
            " join public.conversations c on c.identity_id = i.id where c.id = %s",
            (conversation,),
        )["address"]
    )


def notifications(conn: Conn, user: User) -> list[dict[str, Any]]:
    with acting_as(conn, user):
        rows = conn.execute(
            "select kind, link from public.notifications order by created_at"
        ).fetchall()
    return [dict(r) for r in rows]


def test_assignment_status_priority_and_notes_by_members_only(conn: Conn) -> None:
    owner = create_user(conn)
    agent = add_member(conn, owner, "member")
    viewer = add_member(conn, owner, "viewer")
    outsider = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    conversation = whatsapp_conversation(conn, channel)
    for user, status, code in (
        (viewer, 403, "insufficient_role"),
        (outsider, 404, "conversation_not_found"),
    ):
        for call in (
            "select public.assign_conversation(%s, null)",
            "select public.set_conversation_status(%s, 'resolved')",
            "select public.tag_conversation(%s, 'high')",
            "select public.add_conversation_note(%s, 'hi')",
        ):
            with refused(status, code), acting_as(conn, user):
                conn.execute(call, (conversation,))
    with refused(422, "assignee_not_member"), acting_as(conn, owner):
        conn.execute("select public.assign_conversation(%s, %s)", (conversation, viewer.id))
    with acting_as(conn, owner):
        conn.execute("select public.assign_conversation(%s, %s)", (conversation, agent.id))
        conn.execute(
            "select public.tag_conversation(%s, 'urgent', array['VIP', 'refund', 'vip'])",
            (conversation,),
        )
        note = one(
            conn,
            "select * from public.add_conversation_note(%s, 'Please check @agent', %s)",
            (conversation, [agent.id, outsider.id]),
        )
    assert note["direction"] == "note" and note["mentions"] == [agent.id]
    assert [n["kind"] for n in notifications(conn, agent)] == [
        "conversation.assigned",
        "conversation.mentioned",
    ]
    row = one(
        conn,
        "select assignee_id, priority, labels, message_count from public.conversations"
        " where id = %s",
        (conversation,),
    )
    assert row == {
        "assignee_id": agent.id,
        "priority": "urgent",
        "labels": ["refund", "vip"],
        "message_count": 1,
    }

    with refused(422, "invalid_status"), acting_as(conn, agent):
        conn.execute("select public.set_conversation_status(%s, 'snoozed')", (conversation,))
    with acting_as(conn, agent):
        until = datetime.now(UTC) + timedelta(hours=3)
        snoozed = one(
            conn,
            "select * from public.set_conversation_status(%s, 'snoozed', %s)",
            (conversation, until),
        )
    assert snoozed["status"] == "snoozed"
    conn.execute(
        "update public.conversations set snoozed_until = now() - interval '1 minute' where id = %s",
        (conversation,),
    )
    woken = one(conn, "select * from private.inbox_housekeeping(100)")
    assert woken["woken"] >= 1
    assert (
        one(conn, "select status from public.conversations where id = %s", (conversation,))[
            "status"
        ]
        == "open"
    )
    with acting_as(conn, agent):
        conn.execute("select public.set_conversation_status(%s, 'resolved')", (conversation,))
    events = conn.execute(
        "select kind, actor_id from public.conversation_events where conversation_id = %s"
        " order by id",
        (conversation,),
    ).fetchall()
    assert [e["kind"] for e in events] == ["assigned", "priority", "labels", "status", "status"]
    # Each change is broadcast on the workspace's inbox channel: ids and states only.
    updates = [
        r["payload"]
        for r in conn.execute(
            "select payload from realtime.messages where topic = %s"
            " and event = 'conversation_updated' and payload ->> 'id' = %s",
            (f"workspace:{owner.workspace_id}:inbox", str(conversation)),
        ).fetchall()
    ]
    changes = {(u["assignee_id"], u["previous_assignee_id"], u["status"]) for u in updates}
    assert (str(agent.id), None, "open") in changes
    assert {"snoozed", "resolved"} <= {u["status"] for u in updates}
    assert {u["priority"] for u in updates} >= {"urgent"}
    # Reopening while the contact opened another conversation on the channel is refused.
    sender = sender_of(conn, conversation)
    apply_whatsapp(
        conn,
        channel,
        inbound(sender, [text_message(sender, "new")], phone_number_id=account_id(conn, channel)),
    )
    with refused(409, "another_conversation_open"), acting_as(conn, agent):
        conn.execute("select public.set_conversation_status(%s, 'open')", (conversation,))


def test_round_robin_respects_capacity_and_notifies(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    ana, ben = add_member(conn, owner, "member"), add_member(conn, owner, "member")
    viewer = add_member(conn, owner, "viewer")
    channel = whatsapp_channel(conn, owner, KEY)
    with acting_as(conn, owner):
        team = one(
            conn,
            "insert into public.inbox_teams (workspace_id, name, default_capacity)"
            " values (%s, 'Support', 2) returning id",
            (owner.workspace_id,),
        )["id"]
        conn.execute(
            "insert into public.inbox_team_members (team_id, workspace_id, user_id, capacity,"
            " last_assigned_at) values (%s, %s, %s, 1, null), (%s, %s, %s, null, now())",
            (team, owner.workspace_id, ana.id, team, owner.workspace_id, ben.id),
        )
        conn.execute("select public.set_channel_team(%s, %s)", (channel, team))
    with refused(422, "not_a_member"), acting_as(conn, owner):
        conn.execute(
            "insert into public.inbox_team_members (team_id, workspace_id, user_id)"
            " values (%s, %s, %s)",
            (team, owner.workspace_id, viewer.id),
        )
    with acting_as(conn, ana), refused(403, "insufficient_role"):
        conn.execute("select public.set_channel_team(%s, null)", (channel,))
    assignees = []
    conversations = []
    for _ in range(4):
        conversation = whatsapp_conversation(conn, channel)
        conversations.append(conversation)
        assignees.append(
            one(
                conn,
                "select assignee_id, team_id from public.conversations where id = %s",
                (conversation,),
            )
        )
    # Ana holds one at most, Ben two; the fourth waits unassigned in the team.
    assert [a["assignee_id"] for a in assignees] == [ana.id, ben.id, ben.id, None]
    assert all(a["team_id"] == team for a in assignees)
    assert [n["kind"] for n in notifications(conn, ana)] == ["conversation.assigned"]
    # Resolving frees capacity: the one that waited longest goes to Ana (told, logged), not
    # the next new one, which now waits in its turn.
    with acting_as(conn, ana):
        first = one(conn, "select id from public.conversations where assignee_id = %s", (ana.id,))[
            "id"
        ]
        conn.execute("select public.set_conversation_status(%s, 'resolved')", (first,))
    waited = conversations[3]
    assignee_of = "select assignee_id from public.conversations where id = %s"
    assert one(conn, assignee_of, (waited,))["assignee_id"] == ana.id
    assert [n["kind"] for n in notifications(conn, ana)] == ["conversation.assigned"] * 2
    logged = one(
        conn,
        "select actor_id, detail from public.conversation_events"
        " where conversation_id = %s and kind = 'assigned'",
        (waited,),
    )
    assert logged["actor_id"] is None and logged["detail"]["auto"] is True
    nxt = whatsapp_conversation(conn, channel)
    assert one(conn, assignee_of, (nxt,))["assignee_id"] is None
    # More room for Ben (an admin's change) takes the waiting one at once.
    with acting_as(conn, owner):
        conn.execute(
            "update public.inbox_team_members set capacity = 3 where team_id = %s and user_id = %s",
            (team, ben.id),
        )
    assert one(conn, assignee_of, (nxt,))["assignee_id"] == ben.id
    # A conversation that goes (its contact erased) frees its place too.
    last = whatsapp_conversation(conn, channel)
    assert one(conn, assignee_of, (last,))["assignee_id"] is None
    conn.execute("delete from public.conversations where id = %s", (waited,))
    assert one(conn, assignee_of, (last,))["assignee_id"] == ana.id
    # A team that does not auto-assign leaves its waiting conversations alone, until it does.
    with acting_as(conn, owner):
        conn.execute("update public.inbox_teams set auto_assign = false where id = %s", (team,))
    parked = whatsapp_conversation(conn, channel)
    conn.execute("update public.conversations set assignee_id = null where id = %s", (nxt,))
    assert one(conn, assignee_of, (parked,))["assignee_id"] is None
    with acting_as(conn, owner):
        conn.execute("update public.inbox_teams set auto_assign = true where id = %s", (team,))
    # One place (Ben's): the one waiting longer takes it.
    assigned = [one(conn, assignee_of, (c,))["assignee_id"] for c in (nxt, parked)]
    assert assigned == [ben.id, None]
    loads = {
        r["user_id"]: r["open_count"]
        for r in conn.execute(
            "select user_id, open_count from private.inbox_assignee_loads where workspace_id = %s",
            (owner.workspace_id,),
        ).fetchall()
    }
    assert loads == {ana.id: 1, ben.id: 3}


def test_a_conversation_handed_back_goes_to_another_member_with_room(conn: Conn) -> None:
    """Unassigning frees the member's place, but the conversation they handed back goes to
    the next member with room, even when the one who let it go is next in turn; back to them
    only when nobody else has room."""
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    ana, ben = add_member(conn, owner, "member"), add_member(conn, owner, "member")
    channel = whatsapp_channel(conn, owner, KEY)
    with acting_as(conn, owner):
        team = one(
            conn,
            "insert into public.inbox_teams (workspace_id, name, default_capacity)"
            " values (%s, 'Support', 1) returning id",
            (owner.workspace_id,),
        )["id"]
        conn.execute(
            "insert into public.inbox_team_members (team_id, workspace_id, user_id,"
            " last_assigned_at) values (%s, %s, %s, null), (%s, %s, %s, now())",
            (team, owner.workspace_id, ana.id, team, owner.workspace_id, ben.id),
        )
        conn.execute("select public.set_channel_team(%s, %s)", (channel, team))
    assignee_of = "select assignee_id from public.conversations where id = %s"
    conversation = whatsapp_conversation(conn, channel)
    assert one(conn, assignee_of, (conversation,))["assignee_id"] == ana.id
    # Ana hands it back while Ben has room: Ben gets it, though Ana is next in turn.
    with acting_as(conn, owner):
        conn.execute(
            "update public.inbox_team_members set last_assigned_at = now() - interval '1 day'"
            " where team_id = %s and user_id = %s",
            (team, ana.id),
        )
    with acting_as(conn, ana):
        conn.execute("select public.assign_conversation(%s, null)", (conversation,))
    assert one(conn, assignee_of, (conversation,))["assignee_id"] == ben.id
    # Ben hands it back while Ana is full: nobody else has room, so it stays with Ben.
    other = whatsapp_conversation(conn, channel)
    assert one(conn, assignee_of, (other,))["assignee_id"] == ana.id
    with acting_as(conn, ben):
        conn.execute("select public.assign_conversation(%s, null)", (conversation,))
    assert one(conn, assignee_of, (conversation,))["assignee_id"] == ben.id


def test_sla_clocks_count_business_hours(conn: Conn) -> None:
    owner = create_user(conn)
    with refused(422, "invalid_timezone"), acting_as(conn, owner):
        conn.execute(
            "insert into public.inbox_sla_policies (workspace_id, timezone)"
            " values (%s, 'Mars/Olympus')",
            (owner.workspace_id,),
        )
    with refused(422, "invalid_business_hours"), acting_as(conn, owner):
        conn.execute(
            "insert into public.inbox_sla_policies (workspace_id, business_hours) values (%s, %s)",
            (owner.workspace_id, Jsonb({"1": [["17:00", "09:00"]]})),
        )
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.inbox_sla_policies (workspace_id, first_response_minutes,"
            " next_response_minutes, resolution_minutes, timezone, business_hours)"
            " values (%s, 120, 60, 960, 'Europe/Prague', %s)",
            (owner.workspace_id, Jsonb(WEEKDAYS)),
        )
    friday = one(
        conn,
        "select private.business_deadline('2026-06-05 16:00 Europe/Prague', 120,"
        " 'Europe/Prague', %s) at time zone 'Europe/Prague' as due",
        (Jsonb(WEEKDAYS),),
    )["due"]
    assert friday == datetime(2026, 6, 8, 10, 0)
    minutes = one(
        conn,
        "select private.business_minutes('2026-06-05 16:00 Europe/Prague',"
        " '2026-06-08 10:00 Europe/Prague', 'Europe/Prague', %s) as m",
        (Jsonb(WEEKDAYS),),
    )["m"]
    assert minutes == 120
    channel = whatsapp_channel(conn, owner, KEY)
    conversation = whatsapp_conversation(conn, channel)
    row = one(conn, "select * from public.conversations where id = %s", (conversation,))
    expected = one(
        conn,
        "select private.business_deadline(%s, 120, 'Europe/Prague', %s) as due",
        (row["created_at"], Jsonb(WEEKDAYS)),
    )["due"]
    resolution = one(
        conn,
        "select private.business_deadline(%s, 960, 'Europe/Prague', %s) as due",
        (row["created_at"], Jsonb(WEEKDAYS)),
    )["due"]
    assert row["first_response_due_at"] == expected and row["resolution_due_at"] == resolution
    assert resolution > expected
    with acting_as(conn, owner):
        conn.execute("select public.reply_to_conversation(%s, 'On it', null)", (conversation,))
    sender = sender_of(conn, conversation)
    apply_whatsapp(
        conn,
        channel,
        inbound(sender, [text_message(sender, "and?")], phone_number_id=account_id(conn, channel)),
    )
    waiting = one(
        conn, "select next_response_due_at from public.conversations where id = %s", (conversation,)
    )
    assert waiting["next_response_due_at"] is not None
    with acting_as(conn, owner):
        conn.execute("select public.reply_to_conversation(%s, 'Done', null)", (conversation,))
    assert (
        one(
            conn,
            "select next_response_due_at from public.conversations where id = %s",
            (conversation,),
        )["next_response_due_at"]
        is None
    )
    report = one(
        conn,
        "select * from analytics.inbox_report(30) where workspace_id = %s",
        (owner.workspace_id,),
    )
    with acting_as(conn, owner):
        mine = conn.execute("select * from analytics.inbox_report(30)").fetchall()
    assert report["conversations"] == 1 and report["responded"] == 1
    assert [r["workspace_id"] for r in mine] == [owner.workspace_id]
    stranger = create_user(conn)
    with acting_as(conn, stranger):
        assert conn.execute("select * from analytics.inbox_report(30)").fetchall() == []


def test_canned_responses_and_auto_resolve(conn: Conn) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.canned_responses (workspace_id, short_code, title, content)"
            " values (%s, 'shipping', 'Shipping times', 'We ship within 2 days.')",
            (owner.workspace_id,),
        )
        conn.execute(
            "insert into public.inbox_settings (workspace_id, auto_resolve_days) values (%s, 3)",
            (owner.workspace_id,),
        )
    with acting_as(conn, viewer):
        assert one(conn, "select count(*) as n from public.canned_responses")["n"] == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "insert into public.canned_responses (workspace_id, short_code, title, content)"
                " values (%s, 'x', 'x', 'x')",
                (owner.workspace_id,),
            )
    channel = whatsapp_channel(conn, owner, KEY)
    quiet, busy = whatsapp_conversation(conn, channel), whatsapp_conversation(conn, channel)
    conn.execute(
        "update public.conversations set last_message_at = now() - interval '4 days' where id = %s",
        (quiet,),
    )
    conn.execute("select * from private.inbox_housekeeping(1000)")
    states = {
        r["id"]: r["status"]
        for r in conn.execute(
            "select id, status from public.conversations where channel_id = %s", (channel,)
        ).fetchall()
    }
    assert states == {quiet: "resolved", busy: "open"}


def test_contact_merge_moves_the_inbox_and_is_audited(conn: Conn) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    channel = whatsapp_channel(conn, owner, KEY)
    sender = "4207" + str(uuid.uuid4().int % 10**8).zfill(8)
    conversation = whatsapp_conversation(conn, channel, sender)
    from_whatsapp = one(
        conn, "select contact_id from public.conversations where id = %s", (conversation,)
    )["contact_id"]
    [shop_customer] = add_contacts(conn, owner, 1)
    conn.execute(
        "update public.contacts set phone = %s where id = %s", ("+" + sender, shop_customer)
    )
    with acting_as(conn, owner):
        suggested = conn.execute(
            "select contact_id, other_contact_id, reason from public.contact_merge_suggestions"
            " where workspace_id = %s",
            (owner.workspace_id,),
        ).fetchall()
    assert {r["reason"] for r in suggested} >= {"phone"}
    with refused(403, "insufficient_role"), acting_as(conn, viewer):
        conn.execute("select public.merge_contacts(%s, %s)", (shop_customer, from_whatsapp))
    with refused(422, "same_contact"), acting_as(conn, owner):
        conn.execute("select public.merge_contacts(%s, %s)", (shop_customer, shop_customer))
    with acting_as(conn, owner):
        merge = one(
            conn, "select * from public.merge_contacts(%s, %s)", (shop_customer, from_whatsapp)
        )
    assert merge["moved"] == {
        "contact_identities": 1,
        "conversations": 1,
        "channel_suppressions": 0,
    }
    assert (
        one(conn, "select contact_id from public.conversations where id = %s", (conversation,))[
            "contact_id"
        ]
        == shop_customer
    )
    merged = one(conn, "select attributes from public.contacts where id = %s", (from_whatsapp,))
    assert merged["attributes"]["merged_into"] == str(shop_customer)
    # The audit: who merged what into what, and what moved, for every member to read; the
    # conversation's own history says so too.
    with acting_as(conn, viewer):
        audit = one(
            conn,
            "select kept_contact_id, merged_contact_id, merged_by, moved from public.contact_merges"
            " where workspace_id = %s",
            (owner.workspace_id,),
        )
        history = one(
            conn,
            "select actor_id, detail from public.conversation_events"
            " where conversation_id = %s and kind = 'merged'",
            (conversation,),
        )
    assert audit == {
        "kept_contact_id": shop_customer,
        "merged_contact_id": from_whatsapp,
        "merged_by": owner.id,
        "moved": merge["moved"],
    }
    assert history["actor_id"] == owner.id
    assert history["detail"] == {
        "from_contact_id": str(from_whatsapp),
        "into_contact_id": str(shop_customer),
    }
    with acting_as(conn, owner):
        left = conn.execute(
            "select reason from public.contact_merge_suggestions where %s in"
            " (contact_id, other_contact_id)",
            (from_whatsapp,),
        ).fetchall()
    assert left == []
    # An email the inbox knows as one contact's, which another contact now has: suggested.
    [by_mail, same_mail] = add_contacts(conn, owner, 2, prefix="merge")
    mailed = one(conn, "select email from public.contacts where id = %s", (same_mail,))["email"]
    conn.execute(
        "insert into public.contact_identities (workspace_id, contact_id, kind, address)"
        " values (%s, %s, 'email', %s)",
        (owner.workspace_id, by_mail, mailed),
    )
    with acting_as(conn, owner):
        by_email = conn.execute(
            "select contact_id, other_contact_id, reason from public.contact_merge_suggestions"
            " where reason = 'identity_email' and workspace_id = %s",
            (owner.workspace_id,),
        ).fetchall()
    assert [dict(r) for r in by_email] == [
        {"contact_id": by_mail, "other_contact_id": same_mail, "reason": "identity_email"}
    ]
    stranger = create_user(conn)
    with refused(404, "contact_not_found"), acting_as(conn, stranger):
        conn.execute("select public.merge_contacts(%s, %s)", (shop_customer, from_whatsapp))


def test_the_customer_beside_a_conversation_with_segment_and_orders(conn: Conn) -> None:
    """The panel beside a conversation: the contact, their latest RFM segment, order totals
    and last orders, for any member (a viewer too); someone of another workspace gets null."""
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    stranger = create_user(conn)
    channel = whatsapp_channel(conn, owner, KEY)
    conversation = whatsapp_conversation(conn, channel)
    contact = one(
        conn,
        "update public.contacts k set email = %s from public.conversations c"
        " where c.id = %s and k.id = c.contact_id returning k.id",
        (f"ana-{uuid.uuid4().hex[:8]}@example.test", conversation),
    )["id"]
    email = one(conn, "select email from public.contacts where id = %s", (contact,))["email"]
    project = make_project(conn, owner)
    for n, (day, total) in enumerate([("2026-03-01", 40), ("2026-05-01", 60), ("2026-06-01", 20)]):
        add_order(conn, project, f"panel-{n}", email, placed_at=f"{day}T10:00:00Z", total=total)
    for month, segment in [("2026-05-01", "Loyal"), ("2026-06-01", "Champions")]:
        conn.execute(
            "insert into analytics.rfm_snapshots (workspace_id, snapshot_month, contact_id,"
            " recency_days, frequency, monetary, r_score, f_score, m_score, segment)"
            " values (%s, %s, %s, 3, 3, 120, 5, 4, 4, %s)",
            (owner.workspace_id, month, contact, segment),
        )
    with acting_as(conn, viewer):
        panel = one(conn, "select public.conversation_customer(%s) as p", (conversation,))["p"]
    assert panel["contact"]["id"] == str(contact) and panel["contact"]["email"] == email
    assert (panel["rfm"]["segment"], panel["rfm"]["snapshot_month"]) == ("Champions", "2026-06-01")
    assert (panel["orders"]["count"], float(panel["orders"]["revenue"])) == (3, 120.0)
    assert [o["external_id"] for o in panel["recent_orders"]] == ["panel-2", "panel-1", "panel-0"]
    assert panel["answers"] is None
    with acting_as(conn, stranger):
        assert (
            one(conn, "select public.conversation_customer(%s) as p", (conversation,))["p"] is None
        )


def test_the_report_times_first_response_and_resolution_per_member_and_channel(
    conn: Conn,
) -> None:
    """analytics.inbox_report: one row per channel and assignee, with how many conversations
    were answered and resolved, the median and average minutes to the first response and to
    resolution (in business minutes too), and the SLA breaches of each; any member of the
    workspace reads it, a viewer too."""
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    ana, ben = add_member(conn, owner, "member"), add_member(conn, owner, "member")
    viewer = add_member(conn, owner, "viewer")
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.inbox_sla_policies (workspace_id, first_response_minutes,"
            " resolution_minutes) values (%s, 15, 100)",
            (owner.workspace_id,),
        )
    shop, support = whatsapp_channel(conn, owner, KEY), whatsapp_channel(conn, owner, KEY)
    # (channel, assignee, minutes to the first response, minutes to resolution or None)
    handled = [
        (shop, ana, 10, 60),
        (shop, ana, 30, 120),
        (shop, ben, 5, None),
        (support, ana, 20, 40),
    ]
    for channel, member, answered, resolved in handled:
        conversation = whatsapp_conversation(conn, channel)
        with acting_as(conn, owner):
            conn.execute("select public.assign_conversation(%s, %s)", (conversation, member.id))
        conn.execute(
            "update public.conversations"
            " set first_response_at = created_at + make_interval(mins => %s),"
            " status = case when %s::integer is null then status else 'resolved' end,"
            " resolved_at = created_at + make_interval(mins => %s) where id = %s",
            (answered, resolved, resolved, conversation),
        )
    with acting_as(conn, viewer):
        rows = conn.execute(
            "select * from analytics.inbox_report(30) where workspace_id = %s",
            (owner.workspace_id,),
        ).fetchall()

    def figures(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            None if row[k] is None else float(row[k]) if not isinstance(row[k], int) else row[k]
            for k in (
                "conversations",
                "responded",
                "resolved",
                "median_first_response_minutes",
                "avg_first_response_minutes",
                "median_first_response_business_minutes",
                "median_resolution_minutes",
                "avg_resolution_minutes",
                "first_response_breaches",
                "resolution_breaches",
            )
        )

    report = {(r["channel_id"], r["assignee_id"]): figures(r) for r in rows}
    assert report == {
        (shop, ana.id): (2, 2, 2, 20.0, 20.0, 20.0, 90.0, 90.0, 1, 1),
        (shop, ben.id): (1, 1, 0, 5.0, 5.0, 5.0, None, None, 0, 0),
        (support, ana.id): (1, 1, 1, 20.0, 20.0, 20.0, 40.0, 40.0, 1, 0),
    }
