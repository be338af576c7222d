"""Flows in the database: the graph checks, enrolment from contact events, the tick, goals,
pausing and lateness, erasure, and concurrent ticks."""

import threading
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.factories.email import add_contacts, email_list, verified_sender
from tests.factories.flows import create_flow, history, runs, send_step, skip_waits, template, tick
from tests.factories.workspaces import acting_as, add_member, create_user, one, refused

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def quiet_flows(conn: Conn) -> None:
    """Flows of other tests in this database must not move in this one."""
    conn.execute("update public.flows set status = 'paused' where status = 'active'")


def new_contact(conn: Conn, workspace_id: uuid.UUID, **fields: Any) -> uuid.UUID:
    fields = {"email": f"c-{uuid.uuid4().hex[:10]}@mail.example.org", **fields}
    fields.setdefault("consent_state", "granted")
    names = ", ".join(["workspace_id", *fields])
    marks = ", ".join(["%s"] * (len(fields) + 1))
    values = [workspace_id, *(Jsonb(v) if isinstance(v, dict) else v for v in fields.values())]
    row = one(conn, f"insert into public.contacts ({names}) values ({marks}) returning id", values)
    return uuid.UUID(str(row["id"]))


def welcome(conn: Conn, owner: Any, **settings: Any) -> uuid.UUID:
    sender = verified_sender(conn, owner)
    steps = [
        {"key": "pause", "kind": "wait", "config": {"hours": 1}, "next": "hello"},
        send_step("hello", template(conn, owner), sender),
    ]
    return create_flow(conn, owner, "contact_created", steps, **settings)


def test_a_new_contact_waits_then_gets_the_email_queued_in_the_campaign_ledger(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    flow = welcome(conn, owner)
    contact = new_contact(conn, owner.workspace_id, first_name="Ada")

    [run] = runs(conn, flow)
    assert run["contact_id"] == contact and run["step_key"] == "pause" and run["status"] == "active"
    assert tick(conn) == 0  # an hour to go

    skip_waits(conn, flow)
    assert tick(conn) == 2  # the wait ends and the send step runs in the same tick
    [run] = runs(conn, flow)
    assert run["status"] == "completed"
    assert history(conn, run["id"]) == [("wait", "waited"), ("send_email", "queued")]
    recipient = one(
        conn,
        "select r.status, r.email, c.flow_step_id is not null as flow_campaign,"
        " c.status as campaign"
        " from public.campaign_recipients r join public.campaigns c on c.id = r.campaign_id"
        " where r.contact_id = %s",
        (contact,),
    )
    assert recipient == {
        "status": "queued",
        "email": one(conn, "select email from public.contacts where id = %s", (contact,))["email"],
        "flow_campaign": True,
        "campaign": "sending",
    }
    assert tick(conn) == 0  # nothing twice
    stats = one(conn, "select * from public.flow_stats where flow_id = %s", (flow,))
    assert (stats["entered"], stats["active"], stats["completed"], stats["emails_queued"]) == (
        1,
        0,
        1,
        1,
    )


def test_the_graph_is_checked_by_the_database(conn: Conn) -> None:
    owner = create_user(conn)
    other = create_user(conn)
    sender = verified_sender(conn, owner)
    mine = template(conn, owner)
    theirs = template(conn, other)
    flow = create_flow(
        conn, owner, "contact_created", [{"key": "a", "kind": "exit"}], activate=False
    )

    def save(steps: Any) -> None:
        with acting_as(conn, owner):
            conn.execute("select public.save_flow(%s, %s)", (flow, Jsonb(steps)))

    with refused(422, "cycle_without_wait"):
        save(
            [
                {"key": "a", "kind": "update_contact", "config": {"add_tags": ["x"]}, "next": "b"},
                {"key": "b", "kind": "branch", "config": {"percent": 50}, "next": "a", "alt": "c"},
                {"key": "c", "kind": "exit"},
            ]
        )
    save(  # the same loop through a wait is fine
        [
            {"key": "a", "kind": "update_contact", "config": {"add_tags": ["x"]}, "next": "w"},
            {"key": "w", "kind": "wait", "config": {"days": 1}, "next": "b"},
            {"key": "b", "kind": "branch", "config": {"percent": 50}, "next": "a", "alt": "c"},
            {"key": "c", "kind": "exit"},
        ]
    )
    with refused(422, "invalid_reference"):
        save([send_step("s", theirs, sender)])
    with refused(422, "missing_default_branch"):
        save([{"key": "b", "kind": "branch", "config": {"percent": 50}, "next": None}])
    with refused(422, "too_many_steps"):
        save([{"key": f"s{n}", "kind": "exit"} for n in range(10_000)])
    with refused(422, "invalid_flow_graph"):
        save([{"key": "a", "kind": "wait", "config": {"hours": 1}, "next": "nowhere"}])
    with refused(422, "invalid_segment_rule"):
        save(
            [
                {
                    "key": "b",
                    "kind": "branch",
                    "config": {"rule": {"nope": 1}},
                    "next": "c",
                    "alt": "c",
                },
                {"key": "c", "kind": "exit"},
            ]
        )

    save([send_step("s", mine, sender)])
    with acting_as(conn, owner):
        conn.execute("select public.activate_flow(%s)", (flow,))
    with refused(409, "template_in_use"), acting_as(conn, owner):
        conn.execute("delete from public.email_templates where id = %s", (mine,))
    with acting_as(conn, owner):
        conn.execute("select public.archive_flow(%s)", (flow,))
        conn.execute("delete from public.email_templates where id = %s", (mine,))


def test_editing_an_active_flow_makes_a_version_and_runs_inside_keep_theirs(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    flow = welcome(conn, owner)
    first = new_contact(conn, owner.workspace_id)
    with acting_as(conn, owner):
        version = one(
            conn,
            "select public.save_flow(%s, %s) as v",
            (
                flow,
                Jsonb([{"key": "tag", "kind": "update_contact", "config": {"add_tags": ["v2"]}}]),
            ),
        )["v"]
    assert version == 2
    second = new_contact(conn, owner.workspace_id)
    skip_waits(conn, flow)
    tick(conn)
    by_contact = {r["contact_id"]: r for r in runs(conn, flow)}
    assert (by_contact[first]["version"], by_contact[second]["version"]) == (1, 2)
    assert history(conn, by_contact[first]["id"]) == [("wait", "waited"), ("send_email", "queued")]
    assert history(conn, by_contact[second]["id"]) == [("update_contact", "updated")]
    tags = one(conn, "select tags from public.contacts where id = %s", (second,))["tags"]
    assert tags == ["v2"]


def test_branches_wait_for_and_goals(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    steps = [
        {
            "key": "vip",
            "kind": "branch",
            "config": {"rule": {"attribute": "tier", "op": "eq", "value": "gold"}},
            "next": "gold",
            "alt": "await",
        },
        {"key": "gold", "kind": "update_contact", "config": {"add_tags": ["gold-path"]}},
        {
            "key": "await",
            "kind": "wait_for",
            "config": {"event": {"type": "custom", "name": "viewed"}, "timeout_days": 2},
            "next": "seen",
            "alt": "unseen",
        },
        {"key": "seen", "kind": "update_contact", "config": {"add_tags": ["seen"]}},
        {"key": "unseen", "kind": "update_contact", "config": {"add_tags": ["unseen"]}},
    ]
    flow = create_flow(
        conn,
        owner,
        "tag_added",
        steps,
        trigger_config={"tag": "lead"},
        exit_events=[{"type": "order_placed"}],
    )
    gold = new_contact(conn, owner.workspace_id, attributes={"tier": "gold"}, tags=["lead"])
    viewer = new_contact(conn, owner.workspace_id, tags=["lead"])
    idle = new_contact(conn, owner.workspace_id, tags=["lead"])
    buyer = new_contact(conn, owner.workspace_id, tags=["lead"])
    new_contact(conn, owner.workspace_id, tags=["other"])  # does not enter
    tick(conn)
    conn.execute(
        "insert into public.contact_events (workspace_id, contact_id, type, name)"
        " values (%s, %s, 'custom', 'viewed')",
        (owner.workspace_id, viewer),
    )
    project = one(
        conn,
        "insert into public.projects (workspace_id, name, type)"
        " values (%s, 'Shop', 'eshop') returning id",
        (owner.workspace_id,),
    )["id"]
    conn.execute(
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency)"
        " values (%s, %s, %s, 'manual', 'o-1', 'paid', now(), 10, 'EUR')",
        (owner.workspace_id, project, buyer),
    )
    tick(conn)
    conn.execute(
        "update public.flow_runs set due_at = now() where flow_id = %s and status = 'active'",
        (flow,),
    )
    tick(conn)
    result = {r["contact_id"]: r for r in runs(conn, flow)}
    assert set(result) == {gold, viewer, idle, buyer}
    assert history(conn, result[gold]["id"]) == [
        ("branch", "branch_yes"),
        ("update_contact", "updated"),
    ]
    assert history(conn, result[viewer]["id"])[1:] == [
        ("wait_for", "event_received"),
        ("update_contact", "updated"),
    ]
    assert history(conn, result[idle]["id"])[1:] == [
        ("wait_for", "timed_out"),
        ("update_contact", "updated"),
    ]
    assert result[buyer]["status"] == "converted" and result[buyer]["exit_reason"] == "goal"
    tags = {
        row["id"]: row["tags"]
        for row in conn.execute(
            "select id, tags from public.contacts where id = any(%s)", ([gold, viewer, idle],)
        ).fetchall()
    }
    assert tags == {gold: ["gold-path", "lead"], viewer: ["lead", "seen"], idle: ["lead", "unseen"]}


def test_entry_policy_once_and_one_active_run_per_contact(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    steps = [{"key": "w", "kind": "wait", "config": {"days": 1}}]
    once = create_flow(conn, owner, "custom", steps, trigger_config={"name": "ping"})
    every = create_flow(
        conn, owner, "custom", steps, trigger_config={"name": "ping"}, entry_policy="every_time"
    )
    per_event = create_flow(
        conn,
        owner,
        "custom",
        steps,
        trigger_config={"name": "ping"},
        entry_policy="every_time",
        entry_key="event",
    )
    contact = new_contact(conn, owner.workspace_id)
    for key in ("e1", "e2", "e3"):
        conn.execute(
            "insert into public.contact_events (workspace_id, contact_id, type, name, event_key)"
            " values (%s, %s, 'custom', 'ping', %s)",
            (owner.workspace_id, contact, key),
        )
    assert len(runs(conn, once)) == 1
    assert len(runs(conn, every)) == 1  # still inside: one active run at a time
    assert len(runs(conn, per_event)) == 3  # one per event key
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "insert into public.contact_events (workspace_id, contact_id, type, name, event_key)"
            " values (%s, %s, 'custom', 'ping', 'e1')",
            (owner.workspace_id, contact),
        )


def test_pausing_holds_runs_and_a_send_too_late_is_dropped_as_stale(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    sender = verified_sender(conn, owner)
    steps = [
        {"key": "hour", "kind": "wait", "config": {"hours": 1}, "next": "cart"},
        send_step("cart", template(conn, owner), sender, max_lateness_minutes=720),
    ]
    flow = create_flow(conn, owner, "contact_created", steps)
    late = new_contact(conn, owner.workspace_id)
    with acting_as(conn, owner):
        conn.execute("select public.pause_flow(%s)", (flow,))
    skip_waits(conn, flow, "13 hours")
    assert tick(conn) == 0  # held, not skipped
    [run] = runs(conn, flow)
    assert run["status"] == "active" and run["step_key"] == "hour"
    with acting_as(conn, owner):
        conn.execute("select public.resume_flow(%s)", (flow,))
    tick(conn)
    [run] = runs(conn, flow)
    assert run["contact_id"] == late
    assert history(conn, run["id"]) == [("wait", "waited"), ("send_email", "stale")]
    assert (
        one(
            conn,
            "select count(*) as n from public.campaign_recipients where contact_id = %s",
            (late,),
        )["n"]
        == 0
    )


def test_unmailable_contacts_are_recorded_as_suppressed_and_go_on(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    sender = verified_sender(conn, owner)
    steps = [
        send_step("hello", template(conn, owner), sender, next_key="done"),
        {"key": "done", "kind": "update_contact", "config": {"add_tags": ["done"]}},
    ]
    flow = create_flow(conn, owner, "contact_created", steps)
    unsubscribed = new_contact(conn, owner.workspace_id, unsubscribed_at="2026-01-01")
    no_consent = new_contact(conn, owner.workspace_id, consent_state="denied")
    tick(conn)
    result = {r["contact_id"]: r for r in runs(conn, flow)}
    for contact, reason in ((unsubscribed, "unsubscribed"), (no_consent, "no_consent")):
        row = one(
            conn,
            "select detail from public.flow_run_steps where run_id = %s and outcome = 'suppressed'",
            (result[contact]["id"],),
        )
        assert row["detail"] == {"reason": reason}
        assert result[contact]["status"] == "completed"


def test_an_erased_contact_leaves_every_flow(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    flow = create_flow(
        conn, owner, "contact_created", [{"key": "w", "kind": "wait", "config": {"days": 3}}]
    )
    contact = new_contact(conn, owner.workspace_id)
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact,))
    [run] = runs(conn, flow)
    assert (run["status"], run["exit_reason"], run["context"]) == ("exited", "erased", {})
    assert (
        one(
            conn,
            "select count(*) as n from public.contact_events where contact_id = %s",
            (contact,),
        )["n"]
        == 0
    )


def test_three_ticks_at_once_move_each_run_once(conn: Conn, database_url: str) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    sender = verified_sender(conn, owner)
    flow = create_flow(
        conn,
        owner,
        "list_joined",
        [
            {"key": "w", "kind": "wait", "config": {"hours": 1}, "next": "s"},
            send_step("s", template(conn, owner), sender),
        ],
        trigger_list_id=email_list(conn, owner, [], name="Joiners"),
    )
    list_id = one(conn, "select trigger_list_id from public.flows where id = %s", (flow,))[
        "trigger_list_id"
    ]
    contacts = add_contacts(conn, owner, 300, prefix="joiner")
    conn.execute(
        "insert into public.email_list_members (list_id, workspace_id, contact_id)"
        " select %s, %s, unnest(%s::uuid[])",
        (list_id, owner.workspace_id, contacts),
    )
    skip_waits(conn, flow)
    barrier = threading.Barrier(3)
    moved: list[int] = []

    def worker() -> None:
        with psycopg.connect(database_url, autocommit=True) as own:
            barrier.wait()
            moved.append(own.execute("select private.advance_flows(100, 40)").fetchone()[0])

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    tick(conn)
    counts = one(
        conn,
        "select count(*) as n, count(distinct contact_id) as contacts"
        " from public.campaign_recipients r"
        " join public.flow_run_steps h on h.id = r.flow_run_step_id where h.flow_id = %s",
        (flow,),
    )
    assert counts == {"n": 300, "contacts": 300}
    assert (
        one(conn, "select count(*) as n from public.flow_run_steps where flow_id = %s", (flow,))[
            "n"
        ]
        == 600
    )


FLOW_CALLS = [
    'select public.save_flow(%s, \'[{"key": "a", "kind": "exit"}]\')',
    "select public.activate_flow(%s)",
    "select public.pause_flow(%s)",
    "select public.resume_flow(%s)",
    "select public.archive_flow(%s)",
]


@pytest.mark.parametrize("call", FLOW_CALLS)
def test_flow_calls_refuse_viewers_and_outsiders(conn: Conn, call: str) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    flow = create_flow(
        conn, owner, "contact_created", [{"key": "w", "kind": "wait", "config": {"days": 1}}]
    )
    with refused(403, "insufficient_role"), acting_as(conn, viewer):
        conn.execute(call, (flow,))
    with refused(404, "flow_not_found"), acting_as(conn, stranger):
        conn.execute(call, (flow,))
    state = one(conn, "select status, version from public.flows where id = %s", (flow,))
    assert state == {"status": "active", "version": 1}


def test_notify_team_tells_the_members_about_the_contact(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    viewer = add_member(conn, owner, "viewer")
    add_contacts(conn, owner, 0)
    flow = create_flow(
        conn,
        owner,
        "tag_added",
        [{"key": "tell", "kind": "notify_team", "config": {"title": "A VIP signed up"}}],
        trigger_config={"tag": "vip"},
    )
    contact = new_contact(conn, owner.workspace_id, tags=["vip"])
    tick(conn)
    told = conn.execute(
        "select user_id, kind, title, link ->> 'flow_id' as flow from public.notifications"
        " where contact_id = %s order by user_id",
        (contact,),
    ).fetchall()
    assert {r["user_id"] for r in told} == {owner.id, member.id}
    assert viewer.id not in {r["user_id"] for r in told}
    assert {(r["kind"], r["title"], r["flow"]) for r in told} == {
        ("flow.notify_team", "A VIP signed up", str(flow))
    }
    [run] = runs(conn, flow)
    assert history(conn, run["id"]) == [("notify_team", "notified")]


def test_deleting_a_contact_or_a_flow_deletes_their_runs_and_history(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    steps = [
        {"key": "tag", "kind": "update_contact", "config": {"add_tags": ["x"]}, "next": "w"},
        {"key": "w", "kind": "wait", "config": {"days": 1}},
    ]
    flow = create_flow(conn, owner, "contact_created", steps)
    gone, kept = new_contact(conn, owner.workspace_id), new_contact(conn, owner.workspace_id)
    tick(conn)
    conn.execute("delete from public.contacts where id = %s", (gone,))
    assert [r["contact_id"] for r in runs(conn, flow)] == [kept]
    conn.execute("delete from public.flows where id = %s", (flow,))
    leftovers = one(
        conn,
        "select (select count(*) from public.flow_runs where flow_id = %s)"
        " + (select count(*) from public.flow_run_steps where flow_id = %s) as n",
        (flow, flow),
    )
    assert leftovers["n"] == 0
