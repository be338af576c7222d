"""The audit log: team actions recorded by triggers whoever the writer, readable by admins only,
broadcast to admins only, never changed, and free of addresses and credentials."""

import uuid
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from psycopg.rows import DictRow

from tests.factories.flows import create_flow
from tests.factories.inbox import whatsapp_channel
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

Conn = psycopg.Connection[DictRow]


def entries(conn: Conn, who: User, workspace_id: uuid.UUID) -> list[tuple[str, Any, Any]]:
    with acting_as(conn, who):
        rows = conn.execute(
            "select action, actor_id, details from public.audit_log where workspace_id = %s"
            " order by id",
            (workspace_id,),
        ).fetchall()
    return [(r["action"], r["actor_id"], r["details"]) for r in rows]


def test_member_and_invitation_changes_are_recorded_and_only_admins_read_them(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    admin = add_member(conn, owner, "admin")
    member = add_member(conn, owner, "member")
    stranger = create_user(conn)
    with acting_as(conn, admin):
        conn.execute(
            "select public.change_member_role(%s, %s, 'viewer')", (owner.workspace_id, member.id)
        )
        invitation = one(
            conn,
            "select invitation_id from public.invite_member(%s, %s, 'member')",
            (owner.workspace_id, f"later-{uuid.uuid4().hex[:8]}@example.test"),
        )["invitation_id"]
        conn.execute("select public.revoke_invitation(%s)", (invitation,))
        conn.execute("select public.remove_member(%s, %s)", (owner.workspace_id, member.id))

    log = entries(conn, owner, owner.workspace_id)
    actions = [action for action, _, _ in log]
    assert actions == [
        "member.added",  # the owner, at signup
        "invitation.created",
        "member.added",
        "invitation.accepted",
        "invitation.created",
        "member.added",
        "invitation.accepted",
        "member.role_changed",
        "invitation.created",
        "invitation.revoked",
        "member.removed",
    ]
    assert log[7] == ("member.role_changed", admin.id, {"from": "member", "to": "viewer"})
    assert log[1][1] == owner.id
    # No invitee address anywhere in the log.
    assert not any("@" in str(details) for _, _, details in log)
    assert entries(conn, admin, owner.workspace_id) == log
    assert entries(conn, stranger, owner.workspace_id) == []
    viewer = add_member(conn, owner, "viewer")
    assert entries(conn, viewer, owner.workspace_id) == []


def test_credential_changes_are_recorded_without_their_values(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    conn.execute(
        "insert into private.integrations (project_id, source, workspace_id, api_token_encrypted)"
        " values (%s, 'shoptet', %s, 'gAAAA-secret-token')",
        (project, owner.workspace_id),
    )
    conn.execute(
        "update private.integrations set webhook_secret_encrypted = 'gAAAA-other'"
        " where project_id = %s",
        (project,),
    )
    with acting_as(conn, owner):
        conn.execute("select public.disconnect_integration(%s, 'shoptet')", (project,))
    log = [
        entry for entry in entries(conn, owner, owner.workspace_id) if entry[0] != "member.added"
    ]
    assert [(action, details.get("source")) for action, _, details in log] == [
        ("credential.connected", "shoptet"),
        ("credential.changed", "shoptet"),
        ("credential.disconnected", "shoptet"),
    ]
    assert log[1][2]["webhook_secret"] is True and log[1][2]["api_token"] is False
    assert log[2][1] == owner.id
    assert "gAAAA" not in str(log)


def test_the_log_is_never_changed_by_anyone(conn: Conn) -> None:
    owner = create_user(conn)
    with refused(409, "audit_log_is_append_only"):
        conn.execute(
            "update public.audit_log set action = 'member.forged' where workspace_id = %s",
            (owner.workspace_id,),
        )
    with refused(409, "audit_log_is_append_only"):
        conn.execute("delete from public.audit_log where workspace_id = %s", (owner.workspace_id,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute("delete from public.audit_log where workspace_id = %s", (owner.workspace_id,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute(
            "insert into public.audit_log (workspace_id, action, target_type)"
            " values (%s, 'member.forged', 'user')",
            (owner.workspace_id,),
        )
    # Deleting the workspace takes its log with it.
    conn.execute("delete from public.workspaces where id = %s", (owner.workspace_id,))
    assert one(
        conn,
        "select count(*) as n from public.audit_log where workspace_id = %s",
        (owner.workspace_id,),
    ) == {"n": 0}


def test_new_entries_reach_admins_on_realtime_and_no_one_else(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    admin = add_member(conn, owner, "admin")
    topic = f"workspace:{owner.workspace_id}:audit"

    def received(who: User) -> list[str]:
        with acting_as(conn, who):
            conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
            rows = conn.execute(
                "select payload from realtime.messages where topic = %s and event = 'audit_entry'"
                " order by inserted_at",
                (topic,),
            ).fetchall()
        return [r["payload"]["action"] for r in rows]

    assert "member.added" in received(admin)
    assert received(owner) == received(admin)
    assert received(member) == []
    # The members' own channels stay open to them.
    imports = f"workspace:{owner.workspace_id}:imports"
    conn.execute("select realtime.send('{\"x\": 1}', 'probe', %s, true)", (imports,))
    with acting_as(conn, member):
        conn.execute("select set_config('realtime.topic', %s, true)", (imports,))
        seen = conn.execute(
            "select count(*) as n from realtime.messages where topic = %s and event = 'probe'",
            (imports,),
        )
        assert seen.fetchone() == {"n": 1}


def test_channel_deliverability_pause_and_flow_changes_are_recorded(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    admin = add_member(conn, owner, "admin")
    since = one(
        conn,
        "select coalesce(max(id), 0) as id from public.audit_log where workspace_id = %s",
        (owner.workspace_id,),
    )["id"]
    # Inbox channels: connected (by the edge), revoked by the provider, reconnected, disconnected.
    channel = whatsapp_channel(conn, owner, Fernet.generate_key().decode())
    conn.execute("select private.revoke_channel(%s, 'token expired')", (channel,))
    conn.execute("update public.channels set status = 'active' where id = %s", (channel,))
    with acting_as(conn, admin):
        conn.execute("select public.disconnect_channel(%s)", (channel,))
        conn.execute(
            "insert into public.deliverability_settings (workspace_id, pause_bounce_rate)"
            " values (%s, 0.03)",
            (owner.workspace_id,),
        )
        conn.execute(
            "update public.deliverability_settings set min_volume = 1000, pause_bounce_rate = 0.03"
            " where workspace_id = %s",
            (owner.workspace_id,),
        )
    pause = one(
        conn,
        "insert into public.sending_pauses (workspace_id, reason, detail, metrics)"
        " values (%s, 'bounce_rate', 'Bounce rate 6%%', '{}') returning id",
        (owner.workspace_id,),
    )["id"]
    with acting_as(conn, admin):
        conn.execute("select public.acknowledge_sending_pause(%s)", (pause,))
    flow = create_flow(
        conn,
        owner,
        "custom",
        [{"key": "w", "kind": "wait", "config": {"days": 1}}],
        trigger_config={"name": "audit_check"},
    )
    with acting_as(conn, admin):
        conn.execute("select public.pause_flow(%s)", (flow,))
        conn.execute("select public.archive_flow(%s)", (flow,))

    with acting_as(conn, owner):
        rows = conn.execute(
            "select action, actor_id, target_id, details from public.audit_log"
            " where workspace_id = %s and id > %s order by id",
            (owner.workspace_id, since),
        ).fetchall()
    log = [(r["action"], r["actor_id"], r["target_id"], r["details"]) for r in rows]
    assert [(a, actor) for a, actor, _, _ in log] == [
        ("channel.connected", None),
        ("channel.revoked", None),
        ("channel.reconnected", None),
        ("channel.disconnected", admin.id),
        ("deliverability.settings_changed", admin.id),
        ("deliverability.settings_changed", admin.id),
        ("sending_pause.acknowledged", admin.id),
        ("flow.status_changed", owner.id),
        ("flow.status_changed", admin.id),
        ("flow.status_changed", admin.id),
    ]
    assert log[0][2:] == (str(channel), {"kind": "whatsapp"})
    assert log[3][3] == {"kind": "whatsapp", "from": "active", "to": "disconnected"}
    assert log[4][3]["to"]["pause_bounce_rate"] == 0.03 and log[4][3]["from"] == {}
    # Only what changed: the rate set again to the same value is not listed.
    assert log[5][3] == {"from": {"min_volume": 500}, "to": {"min_volume": 1000}}
    assert log[6][2:] == (
        str(pause),
        {"reason": "bounce_rate", "sender_identity_id": None, "acknowledged_by": str(admin.id)},
    )
    assert [d["to"] for _, _, _, d in log[7:]] == ["active", "paused", "archived"]
    assert all(d["trigger_type"] == "custom" for _, _, _, d in log[7:])
    # Nothing revealing: no address or token in any entry.
    assert not any("@" in str(d) or "token" in str(d) for _, _, _, d in log)
