"""What a marketer works with around the engine: metrics per flow and step (orders attributed
within the flow's window), the ready-made flows, test mode, and "why did this contact not get
that step"."""

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import pytest

from tests.factories.email import FROM_EMAIL, add_contacts, verified_sender
from tests.factories.flows import create_flow, runs, send_step, skip_waits, template, tick
from tests.factories.workspaces import (
    acting_as,
    add_member,
    create_user,
    make_project,
    one,
    refused,
)

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def quiet_flows(conn: Conn) -> None:
    conn.execute("update public.flows set status = 'paused' where status = 'active'")


def test_metrics_per_flow_and_step_for_members_only(conn: Conn) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    contacts = add_contacts(conn, owner, 0)
    sender = verified_sender(conn, owner)
    steps = [
        {
            "key": "gold",
            "kind": "branch",
            "config": {"rule": {"attribute": "tier", "op": "eq", "value": "gold"}},
            "next": "vip",
            "alt": "wait",
        },
        send_step("vip", template(conn, owner), sender),
        {"key": "wait", "kind": "wait", "config": {"days": 1}},
    ]
    flow = create_flow(conn, owner, "tag_added", steps, trigger_config={"tag": "new"})
    conn.execute(
        "insert into public.contacts (workspace_id, email, consent_state, tags, attributes)"
        " select %s, 'm' || n || '@mail.example.org', 'granted', '{new}',"
        " jsonb_build_object('tier', case when n <= 2 then 'gold' else 'silver' end)"
        " from generate_series(1, 5) n",
        (owner.workspace_id,),
    )
    assert contacts == []
    tick(conn)
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(), opened_at = now()"
        " where workspace_id = %s",
        (owner.workspace_id,),
    )
    with acting_as(conn, owner):
        by_step = {
            r["step_key"]: r
            for r in conn.execute(
                "select * from analytics.flow_step_performance where flow_id = %s", (flow,)
            ).fetchall()
        }
        [total] = conn.execute(
            "select * from analytics.flow_performance where flow_id = %s", (flow,)
        ).fetchall()
    assert by_step["gold"]["reached"] == 5
    assert by_step["gold"]["outcomes"] == {"branch_yes": 2, "branch_no": 3}
    assert (by_step["vip"]["sent"], by_step["vip"]["unique_opens"]) == (2, 2)
    assert by_step["wait"]["waiting"] == 3
    assert (total["entered"], total["waiting"], total["completed"], total["sent"]) == (5, 3, 2, 2)
    with acting_as(conn, stranger):
        assert (
            conn.execute(
                "select * from analytics.flow_step_performance where flow_id = %s", (flow,)
            ).fetchall()
            == []
        )
        assert conn.execute("select * from analytics.flow_totals()").fetchall() == []


def test_the_flows_attribution_window_decides_which_orders_its_emails_earned(conn: Conn) -> None:
    owner = create_user(conn)
    sender = verified_sender(conn, owner)
    flow = create_flow(
        conn,
        owner,
        "tag_added",
        [send_step("hello", template(conn, owner), sender)],
        trigger_config={"tag": "window"},
        attribution_days=1,
    )
    [prompt, slow] = add_contacts(conn, owner, 2, prefix="window")
    conn.execute(
        "update public.contacts set tags = '{window}' where id = any(%s)", ([prompt, slow],)
    )
    tick(conn)
    conn.execute(
        "update public.campaign_recipients set status = 'sent',"
        " sent_at = now() - interval '4 days', clicked_at = now() - interval '4 days',"
        " last_clicked_at = now() - interval '4 days', clicks = 1 where workspace_id = %s",
        (owner.workspace_id,),
    )
    project = make_project(conn, owner)
    for contact, after_click in ((prompt, "12 hours"), (slow, "2 days")):
        conn.execute(
            "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
            " status, placed_at, total, currency) values (%s, %s, %s, 'manual', %s, 'paid',"
            " now() - interval '4 days' + %s::interval, 20, 'EUR')",
            (owner.workspace_id, project, contact, f"w-{contact}", after_click),
        )

    def attributed() -> int:
        with acting_as(conn, owner):
            return int(
                one(
                    conn,
                    "select attributed_orders from analytics.flow_performance where flow_id = %s",
                    (flow,),
                )["attributed_orders"]
            )

    assert attributed() == 1  # the order 2 days after the click is outside 1 day
    with acting_as(conn, owner):
        conn.execute("update public.flows set attribution_days = 3 where id = %s", (flow,))
    assert attributed() == 2


@pytest.mark.parametrize("key", ["welcome_series", "abandoned_cart", "win_back"])
def test_each_ready_made_flow_copies_into_a_valid_draft(conn: Conn, key: str) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    sender = verified_sender(conn, owner)
    with acting_as(conn, owner):
        flow = one(
            conn,
            "select public.copy_flow_template(%s, %s, %s, %s) as id",
            (owner.workspace_id, key, sender, FROM_EMAIL),
        )["id"]
        conn.execute("select public.activate_flow(%s)", (flow,))
        state = one(conn, "select status, trigger_type from public.flows where id = %s", (flow,))
        sends = one(
            conn,
            "select count(*) as n from public.flow_steps where flow_id = %s"
            " and kind = 'send_email' and campaign_id is not null",
            (flow,),
        )["n"]
    assert state["status"] == "active" and sends == 2
    with refused(403, "insufficient_role"), acting_as(conn, viewer):
        conn.execute(
            "select public.copy_flow_template(%s, %s, %s, %s)",
            (owner.workspace_id, key, sender, FROM_EMAIL),
        )


def test_test_mode_walks_a_contact_through_and_changes_nothing(conn: Conn) -> None:
    owner = create_user(conn)
    stranger = create_user(conn)
    add_contacts(conn, owner, 0)
    sender = verified_sender(conn, owner)
    steps = [
        {"key": "wait", "kind": "wait", "config": {"hours": 2}, "next": "gold"},
        {
            "key": "gold",
            "kind": "branch",
            "config": {"rule": {"attribute": "tier", "op": "eq", "value": "gold"}},
            "next": "vip",
            "alt": "bye",
        },
        send_step("vip", template(conn, owner, "VIP {{ first_name }}"), sender, next_key="tag"),
        {"key": "tag", "kind": "update_contact", "config": {"add_tags": ["tested"]}},
        {"key": "bye", "kind": "exit"},
    ]
    flow = create_flow(conn, owner, "custom", steps, activate=False, trigger_config={"name": "x"})
    gold = one(
        conn,
        "insert into public.contacts (workspace_id, email, consent_state, attributes)"
        " values (%s, 'gold@mail.example.org', 'granted', '{\"tier\": \"gold\"}') returning id",
        (owner.workspace_id,),
    )["id"]
    with acting_as(conn, owner):
        path = one(conn, "select public.test_flow(%s, %s) as p", (flow, gold))["p"]
    assert [(s["step"], s["outcome"]) for s in path] == [
        ("wait", "waited"),
        ("gold", "branch_yes"),
        ("vip", "queued"),
        ("tag", "updated"),
    ]
    assert path[2]["email"]["subject"] == "VIP {{ first_name }}"
    assert path[2]["email"]["to"] == "gold@mail.example.org"
    assert one(conn, "select tags from public.contacts where id = %s", (gold,))["tags"] == []
    assert runs(conn, flow) == []
    with refused(404, "flow_not_found"), acting_as(conn, stranger):
        conn.execute("select public.test_flow(%s, %s)", (flow, gold))


def test_why_a_contact_did_not_get_a_step(conn: Conn) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    add_contacts(conn, owner, 0)
    sender = verified_sender(conn, owner)
    flow = create_flow(
        conn,
        owner,
        "contact_created",
        [
            {"key": "wait", "kind": "wait", "config": {"hours": 1}, "next": "hello"},
            send_step("hello", template(conn, owner), sender),
        ],
    )
    contact = one(
        conn,
        "insert into public.contacts (workspace_id, email, consent_state) values"
        " (%s, 'nope@mail.example.org', 'denied') returning id",
        (owner.workspace_id,),
    )["id"]
    skip_waits(conn, flow)
    tick(conn)
    with acting_as(conn, owner):
        rows = conn.execute(
            "select step_key, outcome, detail from public.flow_contact_history(%s, %s)",
            (flow, contact),
        ).fetchall()
    assert [(r["step_key"], r["outcome"], r["detail"]) for r in rows] == [
        ("wait", "waited", None),
        ("hello", "suppressed", {"reason": "no_consent"}),
    ]
    with acting_as(conn, stranger):
        assert (
            conn.execute(
                "select * from public.flow_contact_history(%s, %s)", (flow, contact)
            ).fetchall()
            == []
        )


def test_a_holdout_goes_through_without_emails_and_the_lift_is_measured(conn: Conn) -> None:
    owner = create_user(conn)
    sender = verified_sender(conn, owner)
    flow = create_flow(
        conn,
        owner,
        "tag_added",
        [
            send_step("hello", template(conn, owner), sender, next_key="wait"),
            {"key": "wait", "kind": "wait", "config": {"days": 3}},
        ],
        trigger_config={"tag": "lift"},
        holdout_percent=50,
        exit_events=[{"type": "custom", "name": "bought"}],
    )
    contacts = add_contacts(conn, owner, 40, prefix="lift")
    conn.execute("update public.contacts set tags = '{lift}' where id = any(%s)", (contacts,))
    tick(conn)
    held = {r["contact_id"] for r in runs(conn, flow) if r["holdout"]}
    assert 0 < len(held) < 40
    outcomes = conn.execute(
        "select r.holdout, h.outcome, count(*) as n from public.flow_run_steps h"
        " join public.flow_runs r on r.id = h.run_id where h.flow_id = %s and h.kind = 'send_email'"
        " group by 1, 2",
        (flow,),
    ).fetchall()
    assert {(o["holdout"], o["outcome"], o["n"]) for o in outcomes} == {
        (True, "holdout", len(held)),
        (False, "queued", 40 - len(held)),
    }
    conn.execute(
        "insert into public.contact_events (workspace_id, contact_id, type, name)"
        " select %s, unnest(%s::uuid[]), 'custom', 'bought'",
        (owner.workspace_id, contacts[:10]),
    )
    with acting_as(conn, owner):
        total = one(conn, "select * from analytics.flow_performance where flow_id = %s", (flow,))
    assert (total["entered"], total["holdout_entered"]) == (40, len(held))
    held_bought = len(held & set(contacts[:10]))
    assert (total["converted"], total["holdout_converted"]) == (10, held_bought)
    # The mailed contacts' goal rate minus the holdout's.
    lift = Decimal(10 - held_bought) / (40 - len(held)) - Decimal(held_bought) / len(held)
    assert total["lift"] == lift.quantize(Decimal("0.0001"), ROUND_HALF_UP)


def test_a_backfill_enrols_existing_matching_contacts_a_batch_at_a_time(conn: Conn) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    gold = add_contacts(conn, owner, 3, prefix="gold", attributes={"tier": "gold"})
    add_contacts(conn, owner, 2, prefix="plain")
    flow = create_flow(
        conn,
        owner,
        "custom",
        [{"key": "w", "kind": "wait", "config": {"days": 1}}],
        trigger_config={"name": "never"},
        entry_filter={"attribute": "tier", "op": "eq", "value": "gold"},
    )
    with acting_as(conn, owner):
        counts = [
            one(conn, "select public.backfill_flow(%s, 2) as n", (flow,))["n"] for _ in range(3)
        ]
    assert counts == [2, 1, 0]
    assert sorted(str(r["contact_id"]) for r in runs(conn, flow)) == sorted(str(g) for g in gold)
    with refused(403, "insufficient_role"), acting_as(conn, viewer):
        conn.execute("select public.backfill_flow(%s)", (flow,))
    with acting_as(conn, owner):
        conn.execute("select public.pause_flow(%s)", (flow,))
    with refused(409, "flow_not_active"), acting_as(conn, owner):
        conn.execute("select public.backfill_flow(%s)", (flow,))


def test_why_a_contact_never_entered_a_flow(conn: Conn) -> None:
    """A contact with no run gets one row saying which entry rule kept them out, now."""
    owner, stranger = create_user(conn), create_user(conn)
    [gold, tagged_other] = add_contacts(conn, owner, 2, prefix="gold", attributes={"tier": "gold"})
    [plain] = add_contacts(conn, owner, 1, prefix="plain")
    flow = create_flow(
        conn,
        owner,
        "tag_added",
        [{"key": "w", "kind": "wait", "config": {"days": 1}}],
        trigger_config={"tag": "vip"},
        entry_filter={"attribute": "tier", "op": "eq", "value": "gold"},
    )
    conn.execute(
        "update public.contacts set tags = tags || '{other}' where id = %s", (tagged_other,)
    )

    def why(contact: Any) -> list[tuple[Any, ...]]:
        rows = conn.execute(
            "select run_id, kind, outcome, detail from public.flow_contact_history(%s, %s)",
            (flow, contact),
        ).fetchall()
        return [(r["run_id"], r["kind"], r["outcome"], r["detail"]) for r in rows]

    with acting_as(conn, owner):
        assert why(plain) == [(None, "entry", "not_entered", {"reason": "filter_not_matched"})]
        assert why(gold) == [
            (None, "entry", "not_entered", {"reason": "no_trigger_event", "trigger": "tag_added"})
        ]
        [(_, _, _, detail)] = why(tagged_other)
        assert detail["reason"] == "trigger_not_matched"
        conn.execute("select public.pause_flow(%s)", (flow,))
        assert why(gold) == [
            (
                None,
                "entry",
                "not_entered",
                {"reason": "flow_not_active", "status": "paused"},
            )
        ]
    with acting_as(conn, stranger):
        assert why(gold) == []
