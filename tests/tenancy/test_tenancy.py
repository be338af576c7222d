"""Workspaces, members and invitations under RLS, acting as Data API users."""

import threading
import uuid
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.rows import dict_row

from tests.factories.workspaces import (
    User,
    acting_as,
    acting_as_anon,
    add_member,
    create_user,
    refused,
    wait_until_blocked,
)

Conn = psycopg.Connection[Any]


def role_of(conn: Conn, workspace_id: uuid.UUID, user: User) -> str | None:
    row = conn.execute(
        "select role from public.workspace_members where workspace_id = %s and user_id = %s",
        (workspace_id, user.id),
    ).fetchone()
    return row["role"] if row else None


def test_signup_creates_profile_and_owned_personal_workspace(conn: Conn) -> None:
    user = create_user(conn, full_name="Jana Nováková")
    profile = conn.execute("select * from public.profiles where id = %s", (user.id,)).fetchone()
    workspace = conn.execute(
        "select * from public.workspaces where id = %s", (user.workspace_id,)
    ).fetchone()
    assert profile["display_name"] == "Jana Nováková"
    assert workspace["name"] == "Jana Nováková's workspace"
    assert workspace["slug"].startswith("jana-novakovas-workspace")
    assert (workspace["plan_tier"], workspace["credits_remaining"]) == ("free", 20)
    assert role_of(conn, user.workspace_id, user) == "owner"


def test_each_user_sees_only_their_own_workspaces_members_and_invitations(conn: Conn) -> None:
    alice, bob = create_user(conn), create_user(conn)
    for user in (alice, bob):
        with acting_as(conn, user):
            conn.execute(
                "select public.invite_member(%s, %s)", (user.workspace_id, f"x-{user.id}@e.test")
            )
    for me, other in ((alice, bob), (bob, alice)):
        with acting_as(conn, me):
            workspaces = {r["id"] for r in conn.execute("select id from public.workspaces")}
            members = {r["user_id"] for r in conn.execute("select user_id from workspace_members")}
            invited = {
                r["workspace_id"]
                for r in conn.execute("select workspace_id from public.workspace_invitations")
            }
            profiles = {r["id"] for r in conn.execute("select id from public.profiles")}
        assert workspaces == {me.workspace_id}
        assert members == {me.id}
        assert invited == {me.workspace_id}
        assert profiles == {me.id}
        assert other.workspace_id not in workspaces


def test_co_members_see_each_others_profiles(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    with acting_as(conn, member):
        seen = {r["id"] for r in conn.execute("select id from public.profiles")}
    assert seen == {owner.id, member.id}


def test_every_public_table_has_rls_and_nothing_for_anon(conn: Conn) -> None:
    tables = conn.execute(
        "select c.relname, c.relrowsecurity,"
        " has_table_privilege('anon', c.oid, 'select, insert, update, delete') as anon_access"
        " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p')"
    ).fetchall()
    assert {t["relname"] for t in tables} >= {
        "profiles",
        "workspaces",
        "workspace_members",
        "workspace_invitations",
    }
    assert [t["relname"] for t in tables if not t["relrowsecurity"]] == []
    assert [t["relname"] for t in tables if t["anon_access"]] == []


@pytest.mark.parametrize(
    "query",
    [
        "select * from public.profiles",
        "select * from public.workspaces",
        "select * from public.workspace_members",
        "select id from public.workspace_invitations",
        "select public.create_workspace('Anon Co')",
        "select public.accept_invitation('whatever')",
    ],
)
def test_anon_gets_nothing(conn: Conn, query: str) -> None:
    create_user(conn)
    with pytest.raises(errors.InsufficientPrivilege), acting_as_anon(conn):
        conn.execute(query)


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_viewers_and_members_cannot_change_the_workspace(conn: Conn, role: str) -> None:
    owner = create_user(conn)
    user = add_member(conn, owner, role)
    with acting_as(conn, user):
        changed = conn.execute(
            "update public.workspaces set name = 'Hijacked' where id = %s", (owner.workspace_id,)
        ).rowcount
        gone = conn.execute(
            "delete from public.workspaces where id = %s", (owner.workspace_id,)
        ).rowcount
    assert (changed, gone) == (0, 0)
    name = conn.execute(
        "select name from public.workspaces where id = %s", (owner.workspace_id,)
    ).fetchone()["name"]
    assert name != "Hijacked"


def test_admins_rename_but_only_owners_delete_and_nobody_sets_credits(conn: Conn) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    with acting_as(conn, admin):
        renamed = conn.execute(
            "update public.workspaces set name = 'Renamed' where id = %s", (owner.workspace_id,)
        ).rowcount
        deleted = conn.execute(
            "delete from public.workspaces where id = %s", (owner.workspace_id,)
        ).rowcount
    assert (renamed, deleted) == (1, 0)
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute(
            "update public.workspaces set credits_remaining = 1000000 where id = %s",
            (owner.workspace_id,),
        )
    with acting_as(conn, owner):
        assert (
            conn.execute(
                "delete from public.workspaces where id = %s", (owner.workspace_id,)
            ).rowcount
            == 1
        )


@pytest.mark.parametrize("role", ["viewer", "member"])
def test_viewers_and_members_cannot_manage_members(conn: Conn, role: str) -> None:
    owner = create_user(conn)
    user = add_member(conn, owner, role)
    other = add_member(conn, owner, "viewer")
    calls = [
        ("select public.invite_member(%s, 'new@e.test')", (owner.workspace_id,)),
        ("select public.change_member_role(%s, %s, 'admin')", (owner.workspace_id, other.id)),
        ("select public.remove_member(%s, %s)", (owner.workspace_id, other.id)),
    ]
    for query, params in calls:
        with refused(403, "insufficient_role"), acting_as(conn, user):
            conn.execute(query, params)
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, user):
        conn.execute(
            "insert into public.workspace_members (workspace_id, user_id, role)"
            " values (%s, %s, 'owner')",
            (owner.workspace_id, create_user(conn).id),
        )
    assert role_of(conn, owner.workspace_id, other) == "viewer"


def test_admins_manage_members_but_never_owners(conn: Conn) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    member = add_member(conn, owner, "member")
    with acting_as(conn, admin):
        conn.execute(
            "select public.change_member_role(%s, %s, 'viewer')", (owner.workspace_id, member.id)
        )
    assert role_of(conn, owner.workspace_id, member) == "viewer"
    forbidden = [
        ("select public.change_member_role(%s, %s, 'admin')", (owner.workspace_id, owner.id)),
        ("select public.remove_member(%s, %s)", (owner.workspace_id, owner.id)),
        ("select public.change_member_role(%s, %s, 'owner')", (owner.workspace_id, member.id)),
    ]
    for query, params in forbidden:
        with refused(403, "cannot_manage_owner"), acting_as(conn, admin):
            conn.execute(query, params)
    with refused(403, "insufficient_role"), acting_as(conn, admin):
        conn.execute(
            "select public.invite_member(%s, 'boss@e.test', 'owner')", (owner.workspace_id,)
        )
    with acting_as(conn, admin):
        conn.execute("select public.remove_member(%s, %s)", (owner.workspace_id, member.id))
    assert role_of(conn, owner.workspace_id, member) is None
    assert role_of(conn, owner.workspace_id, owner) == "owner"


def test_the_last_owner_can_never_be_removed_or_demoted(conn: Conn) -> None:
    owner = create_user(conn)
    add_member(conn, owner, "admin")
    attempts = [
        ("select public.change_member_role(%s, %s, 'admin')", (owner.workspace_id, owner.id)),
        ("select public.remove_member(%s, %s)", (owner.workspace_id, owner.id)),
        ("select public.leave_workspace(%s)", (owner.workspace_id,)),
    ]
    for query, params in attempts:
        with refused(409, "last_owner"), acting_as(conn, owner):
            conn.execute(query, params)
    with refused(409, "last_owner"):
        conn.execute(
            "delete from public.workspace_members where workspace_id = %s and user_id = %s",
            (owner.workspace_id, owner.id),
        )
    assert role_of(conn, owner.workspace_id, owner) == "owner"


def test_an_owner_may_leave_or_step_down_when_another_owner_remains(conn: Conn) -> None:
    owner = create_user(conn)
    second = add_member(conn, owner, "owner")
    with acting_as(conn, owner):
        conn.execute(
            "select public.change_member_role(%s, %s, 'member')", (owner.workspace_id, owner.id)
        )
    with acting_as(conn, owner):
        conn.execute("select public.leave_workspace(%s)", (owner.workspace_id,))
    assert role_of(conn, owner.workspace_id, owner) is None
    assert role_of(conn, owner.workspace_id, second) == "owner"


def test_two_owners_demoting_each_other_at_once_leave_one_owner(
    conn: Conn, database_url: str
) -> None:
    alice = create_user(conn)
    bob = add_member(conn, alice, "owner")
    workspace = alice.workspace_id
    outcome: dict[str, Any] = {}
    with (
        psycopg.connect(database_url, row_factory=dict_row) as first,
        psycopg.connect(database_url, row_factory=dict_row) as second,
    ):
        with acting_as(first, alice):
            first.execute("select public.change_member_role(%s, %s, 'admin')", (workspace, bob.id))

            def bob_demotes_alice() -> None:
                try:
                    with acting_as(second, bob):
                        second.execute(
                            "select public.change_member_role(%s, %s, 'admin')",
                            (workspace, alice.id),
                        )
                    outcome["result"] = "ok"
                except psycopg.Error as error:
                    outcome["result"] = error.diag.message_hint

            racer = threading.Thread(target=bob_demotes_alice)
            racer.start()
            wait_until_blocked(conn, second.info.backend_pid)
        racer.join()
    assert outcome["result"] == "cannot_manage_owner"
    assert role_of(conn, workspace, alice) == "owner"
    assert role_of(conn, workspace, bob) == "admin"


def test_invitation_works_once_for_the_invited_email_only(conn: Conn) -> None:
    owner = create_user(conn)
    invitee, stranger = create_user(conn), create_user(conn)
    with acting_as(conn, owner):
        invitation = conn.execute(
            "select * from public.invite_member(%s, %s, 'viewer')",
            (owner.workspace_id, f"  {invitee.email.upper()} "),
        ).fetchone()
    stored = conn.execute(
        "select email, token_hash = sha256(convert_to(%s, 'UTF8')) as hashed,"
        " position(convert_to(%s, 'UTF8') in token_hash) = 0 as not_plain"
        " from public.workspace_invitations where id = %s",
        (invitation["token"], invitation["token"], invitation["invitation_id"]),
    ).fetchone()
    assert stored == {"email": invitee.email, "hashed": True, "not_plain": True}
    with refused(403, "invitation_email_mismatch"), acting_as(conn, stranger):
        conn.execute("select public.accept_invitation(%s)", (invitation["token"],))
    with refused(404, "invitation_not_found"), acting_as(conn, invitee):
        conn.execute("select public.accept_invitation(%s)", (invitation["token"] + "x",))
    with acting_as(conn, invitee):
        joined = conn.execute(
            "select public.accept_invitation(%s) as id", (invitation["token"],)
        ).fetchone()["id"]
    assert joined == owner.workspace_id
    assert role_of(conn, owner.workspace_id, invitee) == "viewer"
    with refused(410, "invitation_used"), acting_as(conn, invitee):
        conn.execute("select public.accept_invitation(%s)", (invitation["token"],))
    assert role_of(conn, owner.workspace_id, stranger) is None


def test_expired_and_replaced_invitations_are_refused(conn: Conn) -> None:
    owner, invitee = create_user(conn), create_user(conn)
    with acting_as(conn, owner):
        first = conn.execute(
            "select * from public.invite_member(%s, %s)", (owner.workspace_id, invitee.email)
        ).fetchone()
        second = conn.execute(
            "select * from public.invite_member(%s, %s)", (owner.workspace_id, invitee.email)
        ).fetchone()
    with refused(410, "invitation_revoked"), acting_as(conn, invitee):
        conn.execute("select public.accept_invitation(%s)", (first["token"],))
    conn.execute(
        "update public.workspace_invitations set expires_at = now() - interval '1 second'"
        " where id = %s",
        (second["invitation_id"],),
    )
    with refused(410, "invitation_expired"), acting_as(conn, invitee):
        conn.execute("select public.accept_invitation(%s)", (second["token"],))
    assert role_of(conn, owner.workspace_id, invitee) is None


def test_invitation_rules(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    with refused(409, "already_member"), acting_as(conn, owner):
        conn.execute("select public.invite_member(%s, %s)", (owner.workspace_id, member.email))
    with refused(422, "invalid_email"), acting_as(conn, owner):
        conn.execute("select public.invite_member(%s, 'not-an-email')", (owner.workspace_id,))
    with refused(422, "invalid_role"), acting_as(conn, owner):
        conn.execute("select public.invite_member(%s, 'a@e.test', 'god')", (owner.workspace_id,))
    with refused(404, "workspace_not_found"), acting_as(conn, member):
        conn.execute("select public.invite_member(%s, 'a@e.test')", (uuid.uuid4(),))
    with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute("select token_hash from public.workspace_invitations")
    with acting_as(conn, member):
        assert conn.execute("select id from public.workspace_invitations").fetchall() == []


def test_revoked_invitation_cannot_be_accepted(conn: Conn) -> None:
    owner, invitee = create_user(conn), create_user(conn)
    with acting_as(conn, owner):
        invitation = conn.execute(
            "select * from public.invite_member(%s, %s)", (owner.workspace_id, invitee.email)
        ).fetchone()
        conn.execute("select public.revoke_invitation(%s)", (invitation["invitation_id"],))
    with refused(410, "invitation_revoked"), acting_as(conn, invitee):
        conn.execute("select public.accept_invitation(%s)", (invitation["token"],))


def test_only_the_workspaces_admins_revoke_and_leaving_removes_only_the_caller(
    conn: Conn,
) -> None:
    owner, invitee, stranger = create_user(conn), create_user(conn), create_user(conn)
    member = add_member(conn, owner, "member")
    with acting_as(conn, owner):
        invitation = conn.execute(
            "select * from public.invite_member(%s, %s)", (owner.workspace_id, invitee.email)
        ).fetchone()
    with refused(403, "insufficient_role"), acting_as(conn, member):
        conn.execute("select public.revoke_invitation(%s)", (invitation["invitation_id"],))
    with refused(404, "invitation_not_found"), acting_as(conn, stranger):
        conn.execute("select public.revoke_invitation(%s)", (invitation["invitation_id"],))
    with refused(404, "workspace_not_found"), acting_as(conn, stranger):
        conn.execute("select public.leave_workspace(%s)", (owner.workspace_id,))
    with acting_as(conn, member):
        conn.execute("select public.leave_workspace(%s)", (owner.workspace_id,))
    revoked = conn.execute(
        "select revoked_at from public.workspace_invitations where id = %s",
        (invitation["invitation_id"],),
    ).fetchone()
    assert revoked == {"revoked_at": None}
    assert (
        role_of(conn, owner.workspace_id, owner),
        role_of(conn, owner.workspace_id, member),
    ) == (
        "owner",
        None,
    )


def test_create_workspace_makes_the_caller_owner_with_a_unique_slug(conn: Conn) -> None:
    user = create_user(conn)
    with acting_as(conn, user):
        first = conn.execute("select * from public.create_workspace('Acme Shop', 'czk')").fetchone()
        second = conn.execute("select * from public.create_workspace('Acme Shop')").fetchone()
    assert first["base_currency"] == "CZK"
    assert first["slug"] != second["slug"]
    assert second["slug"].startswith("acme-shop")
    assert role_of(conn, first["id"], user) == "owner"
    with refused(409, "slug_taken"), acting_as(conn, user):
        conn.execute("select public.create_workspace('Other', 'EUR', %s)", (first["slug"],))
    with refused(422, "invalid_currency"), acting_as(conn, user):
        conn.execute("select public.create_workspace('Other', 'euro')")
    with refused(422, "invalid_name"), acting_as(conn, user):
        conn.execute("select public.create_workspace('   ')")


def test_deleting_an_account_takes_solo_workspaces_but_not_shared_ones(conn: Conn) -> None:
    solo = create_user(conn)
    conn.execute("delete from auth.users where id = %s", (solo.id,))
    assert (
        conn.execute(
            "select count(*) from public.workspaces where id = %s", (solo.workspace_id,)
        ).fetchone()["count"]
        == 0
    )
    owner = create_user(conn)
    add_member(conn, owner, "member")
    with refused(409, "last_owner"):
        conn.execute("delete from auth.users where id = %s", (owner.id,))


def test_workspace_broadcasts_reach_members_only(conn: Conn) -> None:
    alice, bob = create_user(conn), create_user(conn)
    topic = f"workspace:{alice.workspace_id}:automations"
    conn.execute(
        "select realtime.send('{\"status\": \"queued\"}', 'status_changed', %s, true)", (topic,)
    )
    counts = {}
    for user in (alice, bob):
        with acting_as(conn, user):
            conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
            counts[user.id] = conn.execute(
                "select count(*) from realtime.messages where topic = %s", (topic,)
            ).fetchone()["count"]
    assert counts == {alice.id: 1, bob.id: 0}


def test_a_user_reads_only_the_broadcasts_of_the_channel_they_joined(conn: Conn) -> None:
    alice, bob = create_user(conn), create_user(conn)
    topics = {user.id: f"workspace:{user.workspace_id}:automations" for user in (alice, bob)}
    for topic in topics.values():
        conn.execute(
            "select realtime.send('{\"status\": \"queued\"}', 'status_changed', %s, true)",
            (topic,),
        )
    with acting_as(conn, bob):
        conn.execute("select set_config('realtime.topic', %s, true)", (topics[bob.id],))
        seen = {r["topic"] for r in conn.execute("select topic from realtime.messages")}
    with acting_as(conn, bob):
        without_a_channel = conn.execute("select count(*) from realtime.messages").fetchone()
    assert seen == {topics[bob.id]}
    assert without_a_channel["count"] == 0


def test_preferences_are_a_closed_typed_set_in_the_database(conn: Conn) -> None:
    user = create_user(conn)
    with acting_as(conn, user):
        conn.execute(
            'update public.profiles set preferences = \'{"theme": "dark",'
            ' "timezone": "Europe/Prague"}\' where id = %s',
            (user.id,),
        )
    bad = [
        '{"colour": "red"}',
        '{"theme": "neon"}',
        '{"timezone": "Mars/Olympus"}',
        '{"weekly_digest": "yes"}',
    ]
    for preferences in bad:
        with refused(422, "invalid_preferences"), acting_as(conn, user):
            conn.execute(
                "update public.profiles set preferences = %s where id = %s", (preferences, user.id)
            )
