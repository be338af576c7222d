"""The call_make step: a flow enqueues a Make.com automation through the automations outbox,
charged in credits like a member's, one per visit of the step, and the run goes on."""

import json
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.factories.email import add_contacts
from tests.factories.flows import create_flow, history, runs, tick
from tests.factories.workspaces import (
    acting_as,
    balance,
    create_user,
    fund,
    ledger,
    make_project,
    one,
    refused,
)

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def quiet_flows(conn: Conn) -> None:
    """Flows of other tests in this database must not move in this one."""
    conn.execute("update public.flows set status = 'paused' where status = 'active'")


def new_contact(conn: Conn, workspace_id: uuid.UUID, tags: list[str]) -> uuid.UUID:
    row = one(
        conn,
        "insert into public.contacts (workspace_id, email, tags) values (%s, %s, %s) returning id",
        (workspace_id, f"c-{uuid.uuid4().hex[:10]}@mail.example.org", tags),
    )
    return uuid.UUID(str(row["id"]))


def call_step(project: uuid.UUID, **config: Any) -> dict[str, Any]:
    return {
        "key": "make",
        "kind": "call_make",
        "config": {"project_id": str(project), "type": "report", **config},
        "next": "done",
    }


def test_each_visit_enqueues_one_signed_dispatch_and_the_run_goes_on(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 5)  # a report costs 2: two calls, not three
    add_contacts(conn, owner, 0)
    project = make_project(conn, owner)
    steps = [
        call_step(project, input={"campaign": "vip"}),
        {"key": "done", "kind": "update_contact", "config": {"add_tags": ["called"]}},
    ]
    flow = create_flow(conn, owner, "tag_added", steps, trigger_config={"tag": "vip"})
    contacts = [new_contact(conn, owner.workspace_id, ["vip"]) for _ in range(3)]

    assert tick(conn) == 6
    outcomes = sorted(history(conn, r["id"])[0][1] for r in runs(conn, flow))
    assert outcomes == ["make_queued", "make_queued", "no_credits"]
    assert all(r["status"] == "completed" for r in runs(conn, flow))  # the run went on
    made = conn.execute(
        "select a.id, a.type, a.input, a.status, a.started_by, a.flow_run_id, a.flow_step_seq,"
        " o.topic, o.status as outbox"
        " from public.automations a join private.outbox o on o.automation_id = a.id"
        " where a.workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert len(made) == 2
    for a in made:
        assert (a["type"], a["status"], a["started_by"], a["topic"], a["outbox"]) == (
            "report",
            "queued",
            None,
            "make.dispatch",
            "pending",
        )
        assert a["input"]["campaign"] == "vip"
        assert a["input"]["flow"]["flow_id"] == str(flow)
        assert uuid.UUID(a["input"]["flow"]["contact_id"]) in contacts
        assert str(a["flow_run_id"]) == a["input"]["flow"]["run_id"] and a["flow_step_seq"] == 1
    assert balance(conn, owner) == 1
    assert ledger(conn, owner)[-2:] == [("automation_charge", -2), ("automation_charge", -2)]
    balances = conn.execute(
        "select balance_after from public.credit_ledger"
        " where workspace_id = %s and reason = 'automation_charge' order by id",
        (owner.workspace_id,),
    ).fetchall()
    assert [b["balance_after"] for b in balances] == [3, 1]
    linked = conn.execute(
        "select detail ->> 'automation_id' as id from public.flow_run_steps"
        " where flow_id = %s and outcome = 'make_queued'",
        (flow,),
    ).fetchall()
    assert {uuid.UUID(r["id"]) for r in linked} == {a["id"] for a in made}
    assert tick(conn) == 0  # nothing twice


def test_the_callback_applies_to_a_flow_automation(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10)
    add_contacts(conn, owner, 0)
    project = make_project(conn, owner)
    create_flow(
        conn,
        owner,
        "tag_added",
        [call_step(project) | {"next": None}],
        trigger_config={"tag": "vip"},
    )
    new_contact(conn, owner.workspace_id, ["vip"])
    tick(conn)
    automation = one(
        conn, "select id from public.automations where workspace_id = %s", (owner.workspace_id,)
    )["id"]
    body = json.dumps({"automation_id": str(automation), "status": "failed"})
    event = one(
        conn,
        "select id from private.record_webhook_event('make', %s, %s)",
        (f"cb-{uuid.uuid4()}", body),
    )
    assert event["id"] is not None
    applied = one(conn, "select private.apply_make_callback(%s) as outcome", (event["id"],))
    assert applied["outcome"] == "applied"
    assert balance(conn, owner) == 10  # a failed call is refunded like a member's


def test_call_make_is_checked_like_every_step(conn: Conn) -> None:
    owner = create_user(conn)
    other = create_user(conn)
    mine = make_project(conn, owner)
    theirs = make_project(conn, other)
    flow = create_flow(
        conn, owner, "contact_created", [{"key": "a", "kind": "exit"}], activate=False
    )

    def save(step: dict[str, Any]) -> None:
        with acting_as(conn, owner):
            conn.execute("select public.save_flow(%s, %s)", (flow, Jsonb([step | {"next": None}])))

    with refused(422, "invalid_reference"):
        save(call_step(theirs))
    with refused(422, "invalid_reference"):
        save(call_step(mine) | {"config": {"project_id": "nope", "type": "report"}})
    with refused(422, "invalid_flow_step"):
        save(call_step(mine, type="mind_reading"))
    with refused(422, "invalid_flow_step"):
        save(call_step(mine, input=["not", "an", "object"]))
    with refused(422, "invalid_flow_step"):
        save(call_step(mine, input={"x": "y" * 20_000}))
    with refused(422, "invalid_flow_step"):
        save(call_step(mine, url="https://evil.example"))
    save(call_step(mine, input={"x": 1}))
    with acting_as(conn, owner):
        tested = one(
            conn,
            "select public.test_flow(%s, %s) as steps",
            (flow, new_contact(conn, owner.workspace_id, [])),
        )["steps"]
    assert [(s["kind"], s["outcome"]) for s in tested] == [("call_make", "make_queued")]


def callback(conn: Conn, automation: uuid.UUID, **body: Any) -> None:
    """Make.com's callback for the automation, stored and applied as the webhook intake does."""
    payload = json.dumps({"automation_id": str(automation), **body})
    event = one(
        conn,
        "select id from private.record_webhook_event('make', %s, %s)",
        (f"cb-{uuid.uuid4()}", payload),
    )
    assert one(conn, "select private.apply_make_callback(%s) as o", (event["id"],))["o"] == (
        "applied"
    )


def waiting_flow(conn: Conn, owner: Any, project: uuid.UUID) -> uuid.UUID:
    """call_make waiting up to an hour: completed tags `done`, anything else tags `failed`."""
    steps = [
        call_step(project, timeout_hours=1) | {"alt": "failed"},
        {"key": "done", "kind": "update_contact", "config": {"add_tags": ["done"]}},
        {"key": "failed", "kind": "update_contact", "config": {"add_tags": ["failed"]}},
    ]
    return create_flow(conn, owner, "tag_added", steps, trigger_config={"tag": "vip"})


def automation_of(conn: Conn, run_id: uuid.UUID) -> uuid.UUID:
    row = one(conn, "select id from public.automations where flow_run_id = %s", (run_id,))
    return uuid.UUID(str(row["id"]))


def tags_of(conn: Conn, contact: uuid.UUID) -> list[str]:
    return list(one(conn, "select tags from public.contacts where id = %s", (contact,))["tags"])


def test_a_waiting_call_holds_the_run_until_the_callback_and_its_result_goes_on(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10)
    project = make_project(conn, owner)
    flow = waiting_flow(conn, owner, project)
    contact = new_contact(conn, owner.workspace_id, ["vip"])

    assert tick(conn) == 1
    (run,) = runs(conn, flow)
    assert (run["status"], run["step_key"]) == ("active", "make")  # held at the step
    assert run["due_at"] > run["moved_at"]  # until its timeout
    assert tick(conn) == 0  # nothing happens while Make.com works, and nothing is called twice

    callback(conn, automation_of(conn, run["id"]), status="completed", result={"score": 7})
    assert tick(conn) == 2
    (run,) = runs(conn, flow)
    assert run["status"] == "completed"
    assert history(conn, run["id"]) == [
        ("call_make", "make_queued"),
        ("call_make", "make_completed"),
        ("update_contact", "updated"),
    ]
    assert run["context"]["make"] == {"score": 7}
    assert tags_of(conn, contact) == ["done", "vip"]
    assert (
        one(
            conn,
            "select count(*) as n from public.automations where flow_run_id = %s",
            (run["id"],),
        )["n"]
        == 1
    )


def test_a_failed_call_takes_the_alternative(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10)
    project = make_project(conn, owner)
    flow = waiting_flow(conn, owner, project)
    contact = new_contact(conn, owner.workspace_id, ["vip"])
    tick(conn)
    (run,) = runs(conn, flow)

    callback(conn, automation_of(conn, run["id"]), status="failed", error="scenario broke")
    assert tick(conn) == 2
    assert [o for _, o in history(conn, run["id"])] == ["make_queued", "make_failed", "updated"]
    assert tags_of(conn, contact) == ["failed", "vip"]
    assert balance(conn, owner) == 10  # refunded like a member's failed call


def test_no_answer_within_the_timeout_takes_the_alternative_and_a_late_one_changes_nothing(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10)
    project = make_project(conn, owner)
    flow = waiting_flow(conn, owner, project)
    contact = new_contact(conn, owner.workspace_id, ["vip"])
    tick(conn)
    (run,) = runs(conn, flow)
    # An hour and a minute pass.
    conn.execute(
        "update public.flow_runs set due_at = due_at - interval '61 minutes',"
        " held_since = held_since - interval '61 minutes' where id = %s",
        (run["id"],),
    )
    assert tick(conn) == 2
    assert [o for _, o in history(conn, run["id"])] == ["make_queued", "make_timed_out", "updated"]
    assert tags_of(conn, contact) == ["failed", "vip"]

    callback(conn, automation_of(conn, run["id"]), status="completed", result={"late": True})
    assert tick(conn) == 0
    (run,) = runs(conn, flow)
    assert run["status"] == "completed" and "make" not in run["context"]


def test_a_call_that_cannot_be_made_takes_the_alternative_at_once(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    conn.execute(
        "update public.workspaces set credits_remaining = 0 where id = %s", (owner.workspace_id,)
    )
    flow = waiting_flow(conn, owner, project)
    contact = new_contact(conn, owner.workspace_id, ["vip"])
    assert tick(conn) == 2
    (run,) = runs(conn, flow)
    assert [o for _, o in history(conn, run["id"])] == ["no_credits", "updated"]
    assert tags_of(conn, contact) == ["failed", "vip"]


def test_a_waiting_call_needs_its_alternative_and_a_sane_timeout(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    flow = create_flow(
        conn, owner, "contact_created", [{"key": "a", "kind": "exit"}], activate=False
    )
    done = {"key": "done", "kind": "exit"}

    def save(*steps: dict[str, Any]) -> None:
        with acting_as(conn, owner):
            conn.execute("select public.save_flow(%s, %s)", (flow, Jsonb(list(steps))))

    with refused(422, "missing_default_branch"):
        save(call_step(project, timeout_minutes=30), done)
    with refused(422, "invalid_flow_graph"):
        save(call_step(project) | {"alt": "done"}, done)  # a call that does not wait has one way
    with refused(422, "invalid_flow_step"):
        save(call_step(project, timeout_minutes=0) | {"alt": "done"}, done)
    with refused(422, "invalid_flow_step"):
        save(call_step(project, timeout_days=31) | {"alt": "done"}, done)
    with refused(422, "invalid_flow_step"):
        save(call_step(project, timeout_hours="1") | {"alt": "done"}, done)
    # Waiting for Make.com counts as a wait: a loop through the call is allowed.
    save(
        call_step(project, timeout_hours=1) | {"next": "again", "alt": "done"},
        {"key": "again", "kind": "update_contact", "config": {"add_tags": ["x"]}, "next": "make"},
        done,
    )


def test_test_mode_shows_a_waiting_call_timing_out_unless_told_its_answer(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10)
    project = make_project(conn, owner)
    flow = waiting_flow(conn, owner, project)
    contact = new_contact(conn, owner.workspace_id, [])

    def walk(events: list[str]) -> list[tuple[str, str]]:
        with acting_as(conn, owner):
            steps = one(conn, "select public.test_flow(%s, %s, %s) as s", (flow, contact, events))[
                "s"
            ]
        assert steps[0]["detail"]["until"]  # when the wait for Make.com's answer would end
        return [(s["step"], s["outcome"]) for s in steps]

    # No call is made in a test, so nothing answers: the timeout passes and `alt` is taken.
    assert walk([]) == [("make", "make_timed_out"), ("failed", "updated")]
    assert walk(["make_completed"]) == [("make", "make_completed"), ("done", "updated")]
    assert walk(["make_failed"]) == [("make", "make_failed"), ("failed", "updated")]
    assert balance(conn, owner) == 10 and runs(conn, flow) == []
    conn.execute(
        "update public.workspaces set credits_remaining = 0 where id = %s", (owner.workspace_id,)
    )
    assert walk(["make_completed"]) == [("make", "no_credits"), ("failed", "updated")]
