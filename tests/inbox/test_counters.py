"""The inbox's unread counters kept on write (per conversation and per channel, each member's
read totals; a workspace's are the sum of its channels') against a recount from messages and
read positions: private.verify_inbox_counters answers each counter that drifted, with both
values."""

import random
import time
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg.rows import DictRow

from tests.factories.inbox import (
    account_id,
    apply_whatsapp,
    whatsapp_channel,
    whatsapp_conversation,
)
from tests.factories.workspaces import User, acting_as, add_member, create_user, one
from tests.fakes.whatsapp_server import inbound, text_message

Conn = psycopg.Connection[DictRow]
KEY = Fernet.generate_key().decode()


def drift(conn: Conn, workspace: uuid.UUID | None) -> list[dict[str, Any]]:
    """The check as the service runs it."""
    conn.execute("set role service_role")
    try:
        return [
            dict(row)
            for row in conn.execute(
                "select * from private.verify_inbox_counters(%s)"
                " order by counter, conversation_id, channel_id, user_id",
                (workspace,),
            )
        ]
    finally:
        conn.execute("reset role")


def test_the_unread_counters_match_a_recount_through_every_kind_of_change(conn: Conn) -> None:
    """A seeded random run of inbound messages on two channels, reads by two members (a
    conversation read twice over), replies, notes, contact merges and erasures: after each
    step no counter differs from its recount, and each member's inbox badge is what they see
    unread conversation by conversation, added up. A counter changed behind the triggers' back is
    reported, with its kept and recounted values, and only in its own workspace."""
    rng = random.Random(27)
    owner = create_user(conn)
    teammate = add_member(conn, owner, "member")
    members = [owner, teammate]
    channels = [whatsapp_channel(conn, owner, KEY), whatsapp_channel(conn, owner, KEY)]
    numbers = {channel: account_id(conn, channel) for channel in channels}
    senders = ["4207" + str(rng.randrange(10**8)).zfill(8) for _ in range(4)]
    workspace = owner.workspace_id

    def conversations(with_contact: bool = False) -> list[dict[str, Any]]:
        """In an order the seed decides (sender, then age), not the ids' random one, so the
        run is the same every time."""
        return [
            dict(r)
            for r in conn.execute(
                "select c.id, c.contact_id from public.conversations c"
                " left join public.contact_identities i on i.id = c.identity_id"
                " where c.workspace_id = %s"
                + (" and c.contact_id is not null" if with_contact else "")
                + " order by i.address nulls last, c.created_at, c.id",
                (workspace,),
            )
        ]

    def write_in(channel: uuid.UUID, sender: str) -> None:
        now = int(time.time())
        texts = [text_message(sender, f"m{i}", timestamp=now) for i in range(rng.randint(1, 3))]
        apply_whatsapp(conn, channel, inbound(sender, texts, phone_number_id=numbers[channel]))

    def acted(user: User, call: str, *args: Any) -> Any:
        with acting_as(conn, user):
            return conn.execute(call, args).fetchone()

    def badge(user: User) -> int:
        """The member's inbox badge through the Data API (the sum of their channels')."""
        with acting_as(conn, user):
            return int(
                one(
                    conn,
                    "select unread_messages from public.inbox_unread where workspace_id = %s",
                    (workspace,),
                )["unread_messages"]
            )

    def unread_by_conversation(user: User) -> int:
        """What the member sees unread conversation by conversation, added up."""
        with acting_as(conn, user):
            return int(
                one(
                    conn,
                    "select coalesce(sum(unread_count), 0)::bigint as n"
                    " from public.inbox_conversations where workspace_id = %s",
                    (workspace,),
                )["n"]
            )

    ran: Counter[str] = Counter()
    write_in(channels[0], senders[0])
    write_in(channels[1], senders[0])
    assert drift(conn, workspace) == []
    steps = ["inbound"] * 14 + ["read"] * 10 + ["reply"] * 4 + ["note"] * 3
    steps += ["merge"] * 2 + ["erase"] * 2
    rng.shuffle(steps)
    for step in steps:
        live = conversations()
        with_contact = conversations(with_contact=True)
        contacts = list(dict.fromkeys(str(c["contact_id"]) for c in with_contact))
        if step == "inbound" or not live:
            if rng.random() < 0.25:
                senders.append("4207" + str(rng.randrange(10**8)).zfill(8))
            write_in(rng.choice(channels), rng.choice(senders))
            step = "inbound"
        elif step == "read":
            user, conversation = rng.choice(members), rng.choice(live)["id"]
            read = acted(user, "select public.mark_conversation_read(%s) as n", conversation)["n"]
            if rng.random() < 0.5:
                again = acted(user, "select public.mark_conversation_read(%s) as n", conversation)[
                    "n"
                ]
                assert again == read
                ran["read twice"] += 1
        elif step == "reply":
            acted(
                rng.choice(members),
                "select id from public.reply_to_conversation(%s, 'On it')",
                rng.choice(live)["id"],
            )
        elif step == "note":
            acted(
                rng.choice(members),
                "select id from public.add_conversation_note(%s, 'Check the order')",
                rng.choice(live)["id"],
            )
        elif step == "merge" and len(contacts) >= 2:
            keep, merge = rng.sample(contacts, 2)
            acted(owner, "select id from public.merge_contacts(%s, %s)", keep, merge)
        elif step == "erase" and contacts:
            contact = rng.choice(contacts)
            addresses = conn.execute(
                "select address from public.contact_identities where contact_id = %s",
                (contact,),
            ).fetchall()
            acted(owner, "select id from public.erase_contact(%s)", contact)
            gone = {r["address"] for r in addresses}
            senders = [s for s in senders if s not in gone] or [
                "4207" + str(rng.randrange(10**8)).zfill(8)
            ]
        else:
            continue
        ran[step] += 1
        assert drift(conn, workspace) == [], (step, ran)
        for member in members:
            assert badge(member) == unread_by_conversation(member), (step, ran)
    assert set(ran) == {"inbound", "read", "read twice", "reply", "note", "merge", "erase"}, ran
    counted = one(
        conn,
        "select count(*) filter (where direction = 'inbound') as inbound"
        " from public.messages where workspace_id = %s",
        (workspace,),
    )
    assert counted["inbound"] > 0

    # Tampered with directly, each counter is reported with both values, nothing else is.
    conversation = conversations()[0]["id"]
    acted(owner, "select public.mark_conversation_read(%s)", conversation)
    channel = one(
        conn, "select channel_id from public.conversations where id = %s", (conversation,)
    )["channel_id"]
    key = {"workspace_id": workspace, "channel_id": channel, "user_id": owner.id}
    tampering = [
        (
            "update public.conversations set inbound_count = inbound_count + 1"
            " where id = %(conversation)s",
            {"conversations.inbound_count"},
        ),
        (
            "update public.conversations set message_count = message_count + 1"
            " where id = %(conversation)s",
            {"conversations.message_count"},
        ),
        (
            "update public.conversation_reads set read_inbound_count = read_inbound_count + 1"
            " where conversation_id = %(conversation)s and user_id = %(user_id)s",
            {
                "conversation_reads.read_inbound_count",
                "inbox_channel_member_reads.read_inbound_count",
            },
        ),
        (
            "update public.inbox_channel_counters set inbound_count = inbound_count + 1"
            " where channel_id = %(channel_id)s",
            {"inbox_channel_counters.inbound_count"},
        ),
        (
            "update public.inbox_channel_member_reads set read_inbound_count ="
            " read_inbound_count + 1 where channel_id = %(channel_id)s and user_id = %(user_id)s",
            {"inbox_channel_member_reads.read_inbound_count"},
        ),
    ]
    for statement, expected in tampering:
        with conn.transaction(force_rollback=True):
            assert conn.execute(statement, {**key, "conversation": conversation}).rowcount == 1
            rows = drift(conn, workspace)
            assert {r["counter"] for r in rows} == expected, statement
            # one more kept than counted; a read position one more: its member's totals are
            # kept one fewer than the positions now sum to
            assert all(abs(r["kept"] - r["counted"]) == 1 for r in rows), rows
            assert all(r["workspace_id"] == workspace for r in rows), rows
            assert all(
                r["channel_id"] == channel for r in rows if r["counter"].startswith("inbox_channel")
            ), rows
    assert drift(conn, workspace) == []

    # Another workspace's drift shows in a check of every workspace, not in this one's.
    stranger = create_user(conn)
    elsewhere = whatsapp_channel(conn, stranger, KEY)
    with conn.transaction(force_rollback=True):
        conn.execute(
            "insert into public.inbox_channel_counters (channel_id, workspace_id, inbound_count)"
            " values (%s, %s, 5)",
            (elsewhere, stranger.workspace_id),
        )
        assert drift(conn, workspace) == []
        everywhere = drift(conn, None)
        assert {
            "counter": "inbox_channel_counters.inbound_count",
            "workspace_id": stranger.workspace_id,
            "channel_id": elsewhere,
            "conversation_id": None,
            "user_id": None,
            "kept": 5,
            "counted": 0,
        } in everywhere

    # Members cannot run it: the service only.
    with (
        acting_as(conn, owner),
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        conn.transaction(),
    ):
        conn.execute("select * from private.verify_inbox_counters(%s)", (workspace,))


def test_a_member_who_leaves_keeps_no_read_state_in_that_workspace(conn: Conn) -> None:
    """A membership that goes (the member leaves, or an admin removes them) takes the member's
    read positions and read totals in that workspace with it, as a deleted account's go:
    invited back, they find its messages unread again. What they read in their other
    workspaces stays read, and no counter drifts."""
    owner = create_user(conn)
    leaver, removed = add_member(conn, owner, "member"), add_member(conn, owner, "member")
    shared = whatsapp_channel(conn, owner, KEY)
    conversation = whatsapp_conversation(conn, shared)
    own = whatsapp_conversation(conn, whatsapp_channel(conn, leaver, KEY))

    def unread(user: User, workspace: uuid.UUID) -> tuple[int, int, int] | None:
        """The member's badge, their channels' unread added up and their conversations'."""
        with acting_as(conn, user):
            row = conn.execute(
                "select (select unread_messages from public.inbox_unread"
                "        where workspace_id = %(w)s) as badge,"
                " (select sum(unread_messages)::bigint from public.inbox_channel_unread"
                "  where workspace_id = %(w)s) as channels,"
                " (select sum(unread_count)::bigint from public.inbox_conversations"
                "  where workspace_id = %(w)s) as conversations",
                {"w": workspace},
            ).fetchone()
        assert row is not None
        return (
            None if row["badge"] is None else (row["badge"], row["channels"], row["conversations"])
        )

    for user, read in ((leaver, conversation), (removed, conversation), (leaver, own)):
        with acting_as(conn, user):
            conn.execute("select public.mark_conversation_read(%s)", (read,))
    assert unread(leaver, owner.workspace_id) == unread(removed, owner.workspace_id) == (0, 0, 0)

    with acting_as(conn, leaver):
        conn.execute("select public.leave_workspace(%s)", (owner.workspace_id,))
    with acting_as(conn, owner):
        conn.execute("select public.remove_member(%s, %s)", (owner.workspace_id, removed.id))
    # Gone from the workspace, they see nothing of it.
    assert unread(leaver, owner.workspace_id) is None
    assert unread(removed, owner.workspace_id) is None
    assert drift(conn, owner.workspace_id) == drift(conn, leaver.workspace_id) == []

    for user in (leaver, removed):
        with acting_as(conn, owner):
            token = one(
                conn,
                "select token from public.invite_member(%s, %s, 'member')",
                (owner.workspace_id, user.email),
            )["token"]
        with acting_as(conn, user):
            conn.execute("select public.accept_invitation(%s)", (token,))
        # Back in, the conversation they had read is unread again: nothing of the old
        # membership's reading was kept.
        assert unread(user, owner.workspace_id) == (1, 1, 1)
    # Their own workspace's reading stayed.
    assert unread(leaver, leaver.workspace_id) == (0, 0, 0)
    assert drift(conn, owner.workspace_id) == drift(conn, leaver.workspace_id) == []
