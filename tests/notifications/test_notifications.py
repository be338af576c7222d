"""In-app notifications: written by the database's features for the users they concern, read,
marked read and dismissed by those users alone, and pushed on each user's own channel."""

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.factories.email import add_contacts
from tests.factories.workspaces import User, acting_as, add_member, create_user, one, refused

Conn = psycopg.Connection[Any]


def notify_admins(conn: Conn, owner: User, contact_id: uuid.UUID | None = None) -> int:
    return int(
        one(
            conn,
            "select private.notify_members_at_least(%s, 'admin', 'sending.paused',"
            " 'Sending paused', 'Complaint rate 0.12 %%', %s, %s) as n",
            (owner.workspace_id, Jsonb({"campaign_id": str(uuid.uuid4())}), contact_id),
        )["n"]
    )


def unread(conn: Conn, user: User) -> list[dict[str, Any]]:
    with acting_as(conn, user):
        return [
            dict(row)
            for row in conn.execute(
                "select kind, title, body, read_at from public.notifications order by created_at"
            )
        ]


def test_admins_and_owner_are_notified_and_each_sees_only_their_own(conn: Conn) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    member = add_member(conn, owner, "member")
    outsider = create_user(conn)

    assert notify_admins(conn, owner) == 2

    for user in (owner, admin):
        assert [(n["kind"], n["title"]) for n in unread(conn, user)] == [
            ("sending.paused", "Sending paused")
        ]
    assert unread(conn, member) == []
    assert unread(conn, outsider) == []
    with acting_as(conn, admin):
        others = conn.execute(
            "select count(*) as n from public.notifications where user_id = %s", (owner.id,)
        ).fetchone()
    assert others is not None and others["n"] == 0


def test_only_members_of_the_workspace_are_notified(conn: Conn) -> None:
    owner = create_user(conn)
    stranger = create_user(conn)
    sent = one(
        conn,
        "select private.notify_users(%s, %s, 'conversation.assigned', 'Assigned to you') as n",
        (owner.workspace_id, [owner.id, stranger.id]),
    )["n"]
    assert sent == 1
    assert unread(conn, stranger) == []


def test_marking_read_touches_only_the_callers_rows(conn: Conn) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    notify_admins(conn, owner)
    notify_admins(conn, owner)

    with acting_as(conn, owner):
        first = one(conn, "select id from public.notifications order by created_at limit 1")["id"]
        assert one(conn, "select public.mark_notifications_read(%s) as n", ([first],))["n"] == 1
        assert one(conn, "select public.mark_notifications_read() as n")["n"] == 1
        assert one(conn, "select public.mark_notifications_read() as n")["n"] == 0
    assert all(n["read_at"] is not None for n in unread(conn, owner))
    assert all(n["read_at"] is None for n in unread(conn, admin))

    # Another user's ids change nothing; direct writes are not allowed at all.
    admins_id = one(
        conn, "select id from public.notifications where user_id = %s limit 1", (admin.id,)
    )["id"]
    with acting_as(conn, owner):
        assert one(conn, "select public.mark_notifications_read(%s) as n", ([admins_id],))["n"] == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute("update public.notifications set read_at = null")


def test_too_many_ids_or_no_user_is_a_clear_refusal(conn: Conn) -> None:
    owner = create_user(conn)
    with acting_as(conn, owner), refused(422, "too_many_ids"):
        conn.execute(
            "select public.mark_notifications_read(%s)", ([uuid.uuid4() for _ in range(1001)],)
        )
    with conn.transaction(), refused(401, "not_authenticated"):
        conn.execute("select public.mark_notifications_read()")


def test_a_user_dismisses_their_own_and_no_one_elses(conn: Conn) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    notify_admins(conn, owner)
    with acting_as(conn, admin):
        gone = conn.execute("delete from public.notifications").rowcount
    assert gone == 1
    assert len(unread(conn, owner)) == 1
    assert unread(conn, admin) == []


def test_the_users_channel_is_theirs_alone(conn: Conn) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    notify_admins(conn, owner)
    seen = {}
    for user, channel_of in ((owner, owner), (admin, owner), (admin, admin)):
        topic = f"workspace:{owner.workspace_id}:user:{channel_of.id}"
        with acting_as(conn, user):
            conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
            rows = conn.execute(
                "select payload from realtime.messages where topic = %s", (topic,)
            ).fetchall()
        seen[(user.id, channel_of.id)] = [row["payload"]["title"] for row in rows]
    assert seen == {
        (owner.id, owner.id): ["Sending paused"],
        (admin.id, owner.id): [],
        (admin.id, admin.id): ["Sending paused"],
    }


def test_erasing_the_customer_deletes_the_notifications_about_them(conn: Conn) -> None:
    owner = create_user(conn)
    about, other = add_contacts(conn, owner, 2)
    notify_admins(conn, owner, about)
    notify_admins(conn, owner, other)
    with acting_as(conn, owner):
        conn.execute("select * from public.erase_contact(%s)", (about,))
    left = conn.execute(
        "select contact_id from public.notifications where workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert [row["contact_id"] for row in left] == [other]


def test_a_removed_member_no_longer_reads_what_they_were_sent(conn: Conn) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    notify_admins(conn, owner)
    with acting_as(conn, owner):
        conn.execute("select public.remove_member(%s, %s)", (owner.workspace_id, admin.id))
    assert unread(conn, admin) == []
