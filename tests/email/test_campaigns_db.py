"""Segments, the campaign state machine, the frozen audience and the plan's email limit, in SQL
as the Data API's users reach them."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from tests.factories.email import (
    add_contacts,
    draft_campaign,
    email_list,
    list_campaign,
    start,
    verified_sender,
)
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    make_project,
    one,
    refused,
)

Conn = psycopg.Connection[Any]


def segment_ids(conn: Conn, user: User, rule: dict[str, Any]) -> set[uuid.UUID]:
    with acting_as(conn, user):
        preview = one(
            conn,
            "select public.preview_segment(%s, %s, 100) as p",
            (user.workspace_id, Jsonb(rule)),
        )["p"]
    ids = {uuid.UUID(row["id"]) for row in preview["sample"]}
    assert preview["count"] == len(ids)
    return ids


def order(
    conn: Conn, project: uuid.UUID, email: str, days_ago: int, number: int, total: int = 100
) -> None:
    conn.execute(
        "select private.upsert_order(%s, 'shopify', %s)",
        (
            project,
            Jsonb(
                {
                    "external_id": f"{email}-{number}",
                    "status": "paid",
                    "placed_at": (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(),
                    "total": str(total),
                    "currency": "CZK",
                    "customer": {"email": email},
                }
            ),
        ),
    )


def test_at_risk_customers_who_opened_nothing_in_60_days(conn: Conn) -> None:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set base_currency = 'CZK' where id = %s", (owner.workspace_id,)
    )
    project = make_project(conn, owner)
    # Five recent one-order customers and five lapsed three-order customers: the lapsed ones
    # score F=3 and R=1,1,2,2,3, so four are At Risk and the freshest is Need Attention.
    for n in range(5):
        order(conn, project, f"new-{n}@shop.example", days_ago=n + 1, number=0)
    for n, last in enumerate((200, 190, 180, 170, 160)):
        for k in range(3):
            order(conn, project, f"lapsed-{n}@shop.example", days_ago=last + 30 * k, number=k)
    ids = {
        row["email"]: row["id"]
        for row in conn.execute(
            "select id, email from public.contacts where workspace_id = %s", (owner.workspace_id,)
        )
    }
    at_risk = {
        row["contact_id"]
        for row in conn.execute(
            "select contact_id from private.rfm_scores(current_date, array[%s]::uuid[]) s"
            " join analytics.rfm_segment_map m using (r_score, f_score)"
            " where m.segment = 'At Risk'",
            (owner.workspace_id,),
        )
    }
    assert at_risk == {ids[f"lapsed-{n}@shop.example"] for n in range(4)}
    # One of them opened a campaign ten days ago, another one ninety days ago.
    conn.execute(
        "update public.contacts set consent_state = 'granted' where workspace_id = %s",
        (owner.workspace_id,),
    )
    engaged = [ids["lapsed-0@shop.example"], ids["lapsed-1@shop.example"]]
    campaign = draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, engaged)],
        sender_id=verified_sender(conn, owner),
    )
    start(conn, owner, campaign)
    conn.execute(
        "update public.campaign_recipients set last_opened_at = now() - make_interval(days => case"
        " when contact_id = %s then 10 else 90 end) where campaign_id = %s",
        (engaged[0], campaign),
    )

    rule = {"all": [{"rfm_segment": "At Risk"}, {"not": {"opened_within_days": 60}}]}

    assert segment_ids(conn, owner, rule) == at_risk - {engaged[0]}
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.segments (workspace_id, name, rule) values (%s, 'Win back', %s)",
            (owner.workspace_id, Jsonb(rule)),
        )


def test_rules_over_fields_attributes_consent_lists_and_orders(conn: Conn) -> None:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set base_currency = 'CZK' where id = %s", (owner.workspace_id,)
    )
    project = make_project(conn, owner)
    people = add_contacts(conn, owner, 6, prefix="p")
    attributes = [
        {"city": "Praha", "age": 31},
        {"city": "Brno", "age": 45},
        {"city": "praha 5"},
        {},
        {"age": "n/a"},
        {},
    ]
    for contact, values in zip(people, attributes, strict=True):
        conn.execute(
            "update public.contacts set attributes = %s where id = %s", (Jsonb(values), contact)
        )
    conn.execute(
        "update public.contacts set consent_state = 'withdrawn' where id = %s", (people[5],)
    )
    vip = email_list(conn, owner, [people[0], people[3]], name="VIP")
    order(conn, project, "p-3@mail.example.org", days_ago=3, number=0, total=900)
    order(conn, project, "p-3@mail.example.org", days_ago=400, number=1)
    order(conn, project, "p-5@mail.example.org", days_ago=5, number=0, total=50)

    def matches(rule: dict[str, Any]) -> set[int]:
        found = segment_ids(conn, owner, rule)
        return {n + 1 for n, contact in enumerate(people) if contact in found}

    assert matches({"attribute": "city", "op": "eq", "value": "Praha"}) == {1}
    assert matches({"attribute": "city", "op": "contains", "value": "PRAHA"}) == {1, 3}
    assert matches({"attribute": "city", "op": "in", "value": ["Brno", "Ostrava"]}) == {2}
    assert matches({"attribute": "age", "op": "gt", "value": 40}) == {2}
    assert matches({"attribute": "city", "op": "missing"}) == {4, 5, 6}
    assert matches({"field": "consent_state", "op": "neq", "value": "granted"}) == {6}
    assert matches({"in_list": str(vip)}) == {1, 4}
    assert matches({"orders": {"min_count": 2}}) == {3}
    assert matches({"orders": {"within_days": 30}}) == {3, 5}
    assert matches({"orders": {"within_days": 30, "min_revenue": 500}}) == {3}
    assert matches({"any": [{"in_list": str(vip)}, {"not": {"orders": {}}}]}) == {1, 2, 4, 6}
    assert matches({"field": "email", "op": "starts_with", "value": "p-1@"}) == {1}


@pytest.mark.parametrize(
    "rule",
    [
        {"color": "blue"},
        {"all": []},
        {"field": "password", "op": "eq", "value": "x"},
        {"attribute": "city", "op": "like", "value": "x"},
        {"attribute": "city", "op": "eq"},
        {"in_list": "not-a-uuid"},
        {"rfm_segment": "Whales"},
        {"opened_within_days": 0},
        {"orders": {"min_count": "2"}},
        {"orders": {"since": 3}},
        {"in_list": None},
        [],
    ],
)
def test_malformed_rules_are_refused_with_a_clear_error(conn: Conn, rule: Any) -> None:
    owner = create_user(conn)
    with acting_as(conn, owner), refused(422, "invalid_segment_rule"):
        conn.execute(
            "insert into public.segments (workspace_id, name, rule) values (%s, 'Bad', %s)",
            (owner.workspace_id, Jsonb(rule)),
        )


def test_rules_nest_at_most_twenty_levels(conn: Conn) -> None:
    owner = create_user(conn)
    rule: dict[str, Any] = {"field": "email", "op": "exists"}
    for _ in range(20):
        rule = {"not": rule}
    assert segment_ids(conn, owner, rule) == set()
    with acting_as(conn, owner), refused(422, "invalid_segment_rule"):
        conn.execute(
            "select public.preview_segment(%s, %s)", (owner.workspace_id, Jsonb({"not": rule}))
        )


def test_rule_values_cannot_inject_sql(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 2)
    hostile = "x') or true or ('"
    assert segment_ids(conn, owner, {"attribute": hostile, "op": "eq", "value": hostile}) == set()
    assert (
        segment_ids(
            conn,
            owner,
            {"field": "email", "op": "eq", "value": "'; drop table public.contacts; --"},
        )
        == set()
    )
    assert (
        one(
            conn,
            "select count(*) as n from public.contacts where workspace_id = %s",
            (owner.workspace_id,),
        )["n"]
        == 2
    )


def test_only_members_preview_a_workspace(conn: Conn) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 3)
    stranger = create_user(conn)
    with acting_as(conn, stranger), refused(404, "workspace_not_found"):
        conn.execute(
            'select public.preview_segment(%s, \'{"field": "email", "op": "exists"}\')',
            (owner.workspace_id,),
        )


@pytest.fixture
def ready(conn: Conn) -> tuple[User, uuid.UUID, list[uuid.UUID]]:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 8)
    campaign = list_campaign(conn, owner, readers)
    return owner, campaign, readers


def status(conn: Conn, campaign: uuid.UUID) -> str:
    return str(
        one(conn, "select status from public.campaigns where id = %s", (campaign,))["status"]
    )


def test_the_campaign_state_machine(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, _ = ready
    with acting_as(conn, owner), refused(422, "invalid_input"):
        conn.execute(
            "select public.schedule_campaign(%s, now() - interval '1 minute')", (campaign,)
        )
    with acting_as(conn, owner):
        conn.execute("select public.schedule_campaign(%s, now() + interval '1 day')", (campaign,))
        edited = conn.execute(
            "update public.campaigns set name = 'Renamed' where id = %s", (campaign,)
        )
        assert edited.rowcount == 0  # only drafts are editable
    assert status(conn, campaign) == "scheduled"
    with acting_as(conn, owner):
        conn.execute("select public.unschedule_campaign(%s)", (campaign,))
    assert status(conn, campaign) == "draft"
    with acting_as(conn, owner), refused(409, "invalid_transition"):
        conn.execute("select public.pause_campaign(%s)", (campaign,))

    assert start(conn, owner, campaign) == 8
    with acting_as(conn, owner), refused(409, "invalid_transition"):
        conn.execute("select public.start_campaign(%s)", (campaign,))
    with acting_as(conn, owner):
        conn.execute("select public.pause_campaign(%s)", (campaign,))
    assert status(conn, campaign) == "paused"
    conn.execute("set role service_role")
    try:
        claimed = conn.execute("select * from private.claim_email_batch(500, 60, 1000)").fetchall()
        assert campaign not in {row["campaign_id"] for row in claimed}
    finally:
        conn.execute("reset role")
    with acting_as(conn, owner):
        conn.execute("select public.resume_campaign(%s)", (campaign,))
        cancelled = one(conn, "select public.cancel_campaign(%s) as unsent", (campaign,))["unsent"]
    assert cancelled == 8 and status(conn, campaign) == "cancelled"
    with acting_as(conn, owner), refused(409, "invalid_transition"):
        conn.execute("select public.resume_campaign(%s)", (campaign,))
    assert (
        one(
            conn,
            "select count(*) as n from public.campaign_recipients"
            " where campaign_id = %s and status = 'cancelled'",
            (campaign,),
        )["n"]
        == 8
    )


def test_the_audience_is_frozen_once_and_variants_lock_with_it(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, readers = ready
    start(conn, owner, campaign)
    late = add_contacts(conn, owner, 1, prefix="late")
    list_id = one(
        conn, "select list_ids[1] as id from public.campaigns where id = %s", (campaign,)
    )["id"]
    conn.execute(
        "insert into public.email_list_members (list_id, workspace_id, contact_id)"
        " values (%s, %s, %s)",
        (list_id, owner.workspace_id, late[0]),
    )
    with acting_as(conn, owner):
        assert (
            conn.execute(
                "update public.campaign_variants set subject = 'Changed' where campaign_id = %s",
                (campaign,),
            ).rowcount
            == 0
        )
        frozen = conn.execute(
            "select contact_id from public.campaign_recipients where campaign_id = %s", (campaign,)
        ).fetchall()
    assert {row["contact_id"] for row in frozen} == set(readers)
    with pytest.raises(errors.UniqueViolation):
        conn.execute(
            "insert into public.campaign_recipients"
            " (campaign_id, workspace_id, variant_id, contact_id, email)"
            " select campaign_id, workspace_id, variant_id, contact_id, email"
            " from public.campaign_recipients where campaign_id = %s limit 1",
            (campaign,),
        )


def test_variants_split_the_audience_by_weight(conn: Conn) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 100)
    campaign = list_campaign(
        conn, owner, readers, [("A", "A", "<p>A</p>", None, 3), ("B", "B", "<p>B</p>", None, 1)]
    )
    start(conn, owner, campaign)
    split = {
        row["name"]: row["n"]
        for row in conn.execute(
            "select v.name, count(*) as n from public.campaign_recipients r"
            " join public.campaign_variants v on v.id = r.variant_id"
            " where r.campaign_id = %s group by v.name",
            (campaign,),
        )
    }
    assert split == {"A": 75, "B": 25}


def test_a_campaign_needs_a_verified_sender_that_covers_its_from_address(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, _ = ready
    conn.execute(
        "update public.sender_identities set verified = false where workspace_id = %s",
        (owner.workspace_id,),
    )
    with acting_as(conn, owner), refused(409, "sender_not_verified"):
        conn.execute("select public.start_campaign(%s)", (campaign,))
    conn.execute(
        "update public.sender_identities set verified = true where workspace_id = %s",
        (owner.workspace_id,),
    )
    with acting_as(conn, owner):
        conn.execute(
            "update public.campaigns set from_email = 'ceo@elsewhere.example' where id = %s",
            (campaign,),
        )
    with acting_as(conn, owner), refused(422, "sender_mismatch"):
        conn.execute("select public.start_campaign(%s)", (campaign,))
    other = create_user(conn)
    foreign_sender = verified_sender(conn, other, "other.example.com")
    with acting_as(conn, owner), pytest.raises(errors.ForeignKeyViolation):
        conn.execute(
            "update public.campaigns set sender_identity_id = %s where id = %s",
            (foreign_sender, campaign),
        )


def test_nobody_to_mail_and_nothing_to_send_are_refused(conn: Conn) -> None:
    owner = create_user(conn)
    sender = verified_sender(conn, owner)
    unconsented = add_contacts(conn, owner, 3, consent="unknown")
    campaign = draft_campaign(
        conn, owner, list_ids=[email_list(conn, owner, unconsented)], sender_id=sender
    )
    with acting_as(conn, owner), refused(409, "empty_audience"):
        conn.execute("select public.start_campaign(%s)", (campaign,))
    empty = draft_campaign(conn, owner, list_ids=[], sender_id=sender)
    with acting_as(conn, owner), refused(422, "campaign_incomplete"):
        conn.execute("select public.start_campaign(%s)", (empty,))
    assert status(conn, campaign) == "draft"


def test_the_monthly_email_limit_blocks_a_campaign_start_after_a_downgrade(conn: Conn) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 30)
    sender = verified_sender(conn, owner)
    big = draft_campaign(conn, owner, list_ids=[email_list(conn, owner, readers)], sender_id=sender)
    small = draft_campaign(
        conn, owner, list_ids=[email_list(conn, owner, readers[:10], name="Few")], sender_id=sender
    )
    conn.execute(
        "update public.workspaces set plan_tier = 'free' where id = %s", (owner.workspace_id,)
    )
    conn.execute(
        "insert into private.monthly_email_usage (workspace_id, month, emails)"
        " values (%s, date_trunc('month', now())::date, 1980)",
        (owner.workspace_id,),
    )

    with acting_as(conn, owner), refused(402, "plan_limit_reached"):
        conn.execute("select public.start_campaign(%s)", (big,))

    assert status(conn, big) == "draft"
    assert (
        one(
            conn,
            "select count(*) as n from public.campaign_recipients where campaign_id = %s",
            (big,),
        )["n"]
        == 0
    )
    assert start(conn, owner, small) == 10
    usage = "select emails from private.monthly_email_usage where workspace_id = %s"
    assert one(conn, usage, (owner.workspace_id,))["emails"] == 1990
    with acting_as(conn, owner):
        conn.execute("select public.cancel_campaign(%s)", (small,))
    assert one(conn, usage, (owner.workspace_id,))["emails"] == 1980


def test_roles_and_tenancy(conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]) -> None:
    owner, campaign, _ = ready
    viewer = add_member(conn, owner, "viewer")
    stranger = create_user(conn)
    with acting_as(conn, viewer), refused(403, "insufficient_role"):
        conn.execute("select public.start_campaign(%s)", (campaign,))
    with acting_as(conn, viewer), pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "insert into public.campaigns (workspace_id, name) values (%s, 'Mine')",
            (owner.workspace_id,),
        )
    with acting_as(conn, owner), pytest.raises(errors.InsufficientPrivilege):
        conn.execute("update public.campaigns set status = 'sent' where id = %s", (campaign,))
    start(conn, owner, campaign)
    with acting_as(conn, stranger):
        assert (
            conn.execute("select * from public.campaigns where id = %s", (campaign,)).fetchall()
            == []
        )
        assert (
            conn.execute(
                "select * from public.campaign_recipients where campaign_id = %s", (campaign,)
            ).fetchall()
            == []
        )
    with acting_as(conn, stranger), refused(404, "campaign_not_found"):
        conn.execute("select public.pause_campaign(%s)", (campaign,))
    with acting_as(conn, viewer):
        assert (
            len(
                conn.execute(
                    "select * from public.campaign_recipients where campaign_id = %s", (campaign,)
                ).fetchall()
            )
            == 8
        )


def test_sender_identities_cannot_be_squatted_or_nested_under_another_workspaces_domain(
    conn: Conn,
) -> None:
    conn.execute("delete from public.sender_identities where identity like '%shop.example.net'")
    first, second = create_user(conn), create_user(conn)

    def register(user: User, identity: str) -> uuid.UUID:
        with acting_as(conn, user):
            return uuid.UUID(
                str(
                    one(
                        conn,
                        "select public.register_sender_identity(%s, %s) as id",
                        (user.workspace_id, identity),
                    )["id"]
                )
            )

    held = register(first, "Shop.Example.NET ")
    assert register(first, "shop.example.net") == held
    for nested in ("shop.example.net", "news@shop.example.net", "mail.shop.example.net"):
        with refused(409, "identity_taken"):
            register(second, nested)
    # Left unverified past SES's 72 hours, the name goes to whoever registers it next.
    conn.execute(
        "update public.sender_identities set created_at = now() - interval '73 hours'"
        " where id = %s",
        (held,),
    )
    taken_over = register(second, "shop.example.net")
    owners = conn.execute(
        "select workspace_id from public.sender_identities where identity = 'shop.example.net'"
    ).fetchall()
    assert [row["workspace_id"] for row in owners] == [second.workspace_id]
    assert taken_over != held
    for n in range(4):
        register(second, f"n{n}.shop.example.net")
    with refused(409, "too_many_unverified_identities"):
        register(second, "n4.shop.example.net")
    with refused(422, "invalid_input"):
        register(first, "not a domain")


def test_status_changes_are_broadcast_to_members_only(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, _ = ready
    stranger = create_user(conn)
    start(conn, owner, campaign)
    with acting_as(conn, owner):
        conn.execute("select public.pause_campaign(%s)", (campaign,))
    topic = f"workspace:{owner.workspace_id}:campaigns"
    seen = {}
    for user in (owner, stranger):
        with acting_as(conn, user):
            conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
            seen[user.id] = [
                (
                    r["payload"]["previous_status"],
                    r["payload"]["status"],
                    r["payload"]["recipients"],
                )
                for r in conn.execute(
                    "select payload from realtime.messages where topic = %s and event = %s"
                    " order by inserted_at, id",
                    (topic, "campaign_status"),
                )
            ]
    assert seen[owner.id] == [("draft", "sending", 8), ("sending", "paused", 8)]
    assert seen[stranger.id] == []


def as_worker(conn: Conn, query: str, params: Any = ()) -> list[dict[str, Any]]:
    """One statement as the send worker (service_role)."""
    with conn.transaction():
        conn.execute("set local role service_role")
        return [dict(row) for row in conn.execute(query, params).fetchall()]


def claim_mine(conn: Conn, campaign: uuid.UUID, rate: float = 1000) -> list[dict[str, Any]]:
    conn.execute("delete from private.ses_accounts")
    rows = as_worker(conn, "select * from private.claim_email_batch(1000, 60, %s)", (rate,))
    return [row for row in rows if row["campaign_id"] == campaign]


def test_a_send_failing_after_a_cancel_does_not_requeue_and_stale_outcomes_are_ignored(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, _ = ready
    start(conn, owner, campaign)
    first, second, *_ = claim_mine(conn, campaign)
    with acting_as(conn, owner):
        conn.execute("select public.cancel_campaign(%s)", (campaign,))

    late = as_worker(
        conn,
        "select private.email_failed(%s, 'ThrottlingException', true, null, %s) as outcome",
        (first["recipient_id"], first["attempts"]),
    )
    stale = as_worker(
        conn,
        "select private.email_sent(%s, 'ses-id-stale', %s)",
        (second["recipient_id"], second["attempts"] - 1),
    )

    assert late == [{"outcome": "cancelled"}] and len(stale) == 1
    states = {
        row["id"]: row["status"]
        for row in conn.execute(
            "select id, status from public.campaign_recipients where campaign_id = %s", (campaign,)
        )
    }
    assert states[first["recipient_id"]] == "cancelled"
    assert states[second["recipient_id"]] == "sending"
    assert "queued" not in states.values()


def test_a_row_claimed_eight_times_without_an_outcome_is_given_up(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, _ = ready
    start(conn, owner, campaign)
    conn.execute(
        "update public.campaign_recipients set attempts = 8, status = 'sending',"
        " locked_until = now() - interval '1 second' where campaign_id = %s",
        (campaign,),
    )

    assert claim_mine(conn, campaign) == []
    rows = conn.execute(
        "select status, error from public.campaign_recipients where campaign_id = %s", (campaign,)
    ).fetchall()
    assert {row["status"] for row in rows} == {"failed"}
    assert "8 attempts" in rows[0]["error"]


def test_a_rate_below_one_per_second_still_sends(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, _ = ready
    start(conn, owner, campaign)
    assert len(claim_mine(conn, campaign, rate=0.5)) == 1


def test_a_live_campaigns_sender_cannot_be_removed_but_a_workspace_can(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, _ = ready
    start(conn, owner, campaign)
    with acting_as(conn, owner), refused(409, "identity_in_use"):
        conn.execute(
            "delete from public.sender_identities where workspace_id = %s", (owner.workspace_id,)
        )
    conn.execute("delete from public.workspaces where id = %s", (owner.workspace_id,))
    assert (
        one(conn, "select count(*) as n from public.campaigns where id = %s", (campaign,))["n"] == 0
    )


def test_admins_may_lift_manual_and_bounce_suppressions_only(conn: Conn) -> None:
    owner = create_user(conn)
    conn.execute(
        "insert into public.email_suppressions (workspace_id, email, reason)"
        " select %s, r || '@mail.example.org', r from unnest(array['manual', 'bounce',"
        " 'complaint', 'unsubscribe']) r",
        (owner.workspace_id,),
    )
    with acting_as(conn, owner):
        conn.execute(
            "delete from public.email_suppressions where workspace_id = %s", (owner.workspace_id,)
        )
    kept = conn.execute(
        "select reason from public.email_suppressions where workspace_id = %s order by reason",
        (owner.workspace_id,),
    ).fetchall()
    assert [row["reason"] for row in kept] == ["complaint", "unsubscribe"]


def recipients_of(conn: Conn, campaign: uuid.UUID) -> int:
    return int(
        one(
            conn,
            "select count(*) as n from public.campaign_recipients where campaign_id = %s",
            (campaign,),
        )["n"]
    )


def test_only_a_paused_campaign_resumes(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, _ = ready
    with acting_as(conn, owner), refused(409, "invalid_transition"):
        conn.execute("select public.resume_campaign(%s)", (campaign,))
    with acting_as(conn, owner):
        conn.execute("select public.schedule_campaign(%s, now() + interval '1 day')", (campaign,))
    with acting_as(conn, owner), refused(409, "invalid_transition"):
        conn.execute("select public.resume_campaign(%s)", (campaign,))
    assert (status(conn, campaign), recipients_of(conn, campaign)) == ("scheduled", 0)

    start(conn, owner, campaign)
    with acting_as(conn, owner), refused(409, "invalid_transition"):
        conn.execute("select public.resume_campaign(%s)", (campaign,))
    with acting_as(conn, owner):
        conn.execute("select public.pause_campaign(%s)", (campaign,))
    conn.execute(
        "update public.sender_identities set verified = false where workspace_id = %s",
        (owner.workspace_id,),
    )
    with acting_as(conn, owner), refused(409, "sender_not_verified"):
        conn.execute("select public.resume_campaign(%s)", (campaign,))
    conn.execute(
        "update public.sender_identities set verified = true where workspace_id = %s",
        (owner.workspace_id,),
    )
    with acting_as(conn, owner):
        conn.execute("select public.resume_campaign(%s)", (campaign,))
    assert status(conn, campaign) == "sending"


def test_a_campaign_reaches_sending_only_through_its_launch(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    _, campaign, _ = ready
    with refused(409, "invalid_transition"):
        conn.execute("update public.campaigns set status = 'sending' where id = %s", (campaign,))
    assert (status(conn, campaign), recipients_of(conn, campaign)) == ("draft", 0)


def test_each_lifecycle_call_names_the_state_it_needs(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, _ = ready
    for call in ("unschedule_campaign", "pause_campaign", "resume_campaign"):
        with acting_as(conn, owner), refused(409, "invalid_transition"):
            conn.execute(f"select public.{call}(%s)", (campaign,))
    for moment in ("infinity", "-infinity"):
        with acting_as(conn, owner), refused(422, "invalid_input"):
            conn.execute("select public.schedule_campaign(%s, %s::timestamptz)", (campaign, moment))
    start(conn, owner, campaign)
    with acting_as(conn, owner), refused(409, "invalid_transition"):
        conn.execute("select public.schedule_campaign(%s, now() + interval '1 day')", (campaign,))
    with acting_as(conn, owner):
        conn.execute("select public.cancel_campaign(%s)", (campaign,))
    finished_at = one(conn, "select finished_at from public.campaigns where id = %s", (campaign,))
    for call in ("cancel_campaign", "pause_campaign", "resume_campaign", "unschedule_campaign"):
        with acting_as(conn, owner), refused(409, "invalid_transition"):
            conn.execute(f"select public.{call}(%s)", (campaign,))
    assert one(conn, "select finished_at from public.campaigns where id = %s", (campaign,)) == (
        finished_at
    )


def test_variants_are_added_to_drafts_only_with_valid_names_and_weights(
    conn: Conn, ready: tuple[User, uuid.UUID, list[uuid.UUID]]
) -> None:
    owner, campaign, _ = ready
    viewer = add_member(conn, owner, "viewer")
    stranger = create_user(conn)
    with acting_as(conn, owner):
        template = one(
            conn,
            "insert into public.email_templates (workspace_id, name, subject, html)"
            " values (%s, 'T', 'Hi', '<p>Hi</p>') returning id",
            (owner.workspace_id,),
        )["id"]

    def add(user: User, name: Any = "B", weight: Any = 1) -> None:
        with acting_as(conn, user):
            conn.execute(
                "select public.add_campaign_variant(%s, %s, %s, %s)",
                (campaign, template, name, weight),
            )

    for name, weight in ((None, 1), ("", 1), ("x" * 51, 1), ("B", None), ("B", 0), ("B", 101)):
        with refused(422, "invalid_input"):
            add(owner, name, weight)
    with refused(409, "variant_exists"):
        add(owner, "A")
    with refused(403, "insufficient_role"):
        add(viewer)
    with refused(404, "campaign_not_found"):
        add(stranger)
    add(owner, "B", 2)
    start(conn, owner, campaign)
    with refused(409, "campaign_not_draft"):
        add(owner, "C")
    assert (
        one(
            conn,
            "select count(*) as n from public.campaign_variants where campaign_id = %s",
            (campaign,),
        )["n"]
        == 2
    )


def test_unsubscribe_and_complaint_suppressions_keep_their_address_and_reason(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    conn.execute(
        "insert into public.email_suppressions (workspace_id, email, reason)"
        " select %s, r || '@keep.example.org', r from unnest(array['complaint', 'unsubscribe']) r",
        (owner.workspace_id,),
    )
    with acting_as(conn, owner), pytest.raises(errors.InsufficientPrivilege):
        conn.execute(
            "update public.email_suppressions set email = 'other@keep.example.org'"
            " where workspace_id = %s",
            (owner.workspace_id,),
        )
    for change in ("email = 'other@keep.example.org'", "reason = 'manual'"):
        with refused(409, "suppression_is_permanent"):
            conn.execute(
                f"update public.email_suppressions set {change}"
                " where workspace_id = %s and reason = 'complaint'",
                (owner.workspace_id,),
            )
    with refused(409, "suppression_is_permanent"):
        conn.execute(
            "delete from public.email_suppressions where workspace_id = %s", (owner.workspace_id,)
        )
    conn.execute("delete from public.workspaces where id = %s", (owner.workspace_id,))


def test_a_stale_unverified_domain_blocks_no_other_workspace_and_a_null_identity_is_a_422(
    conn: Conn,
) -> None:
    domain = f"{uuid.uuid4().hex[:10]}.example.net"
    squatter, owner = create_user(conn), create_user(conn)

    def register(user: User, identity: str | None) -> uuid.UUID:
        with acting_as(conn, user):
            return uuid.UUID(
                str(
                    one(
                        conn,
                        "select public.register_sender_identity(%s, %s) as id",
                        (user.workspace_id, identity),
                    )["id"]
                )
            )

    squatted = register(squatter, domain)
    conn.execute(
        "update public.sender_identities set created_at = now() - interval '73 hours'"
        " where id = %s",
        (squatted,),
    )
    for nested in (f"news@{domain}", f"mail.{domain}", f"news@mail.{domain}"):
        register(owner, nested)
    conn.execute("update public.sender_identities set verified = true where id = %s", (squatted,))
    with refused(409, "identity_taken"):
        register(owner, f"shop@{domain}")
    with refused(422, "invalid_input"):
        register(owner, None)


def test_every_write_of_a_send_ledger_row_adds_at_most_five_whole_index_entries(
    conn: psycopg.Connection[Any],
) -> None:
    # Each claim and each outcome rewrites the row, and its status change keeps the update from
    # being HOT, so every index without a predicate takes a new entry each time: the budget
    # issue 18's connection time per recipient depends on. The workspace's rows and the
    # campaign's foreign key share one index, (workspace_id, campaign_id).
    indexes = conn.execute(
        "select c.relname::text as name, pg_get_indexdef(i.indexrelid) as definition"
        " from pg_index i join pg_class c on c.oid = i.indexrelid"
        " where i.indrelid = 'public.campaign_recipients'::regclass and i.indpred is null"
        " order by 1"
    ).fetchall()
    assert len(indexes) <= 5, [index["definition"] for index in indexes]
    definitions = {index["name"]: index["definition"] for index in indexes}
    assert definitions["campaign_recipients_workspace_id_campaign_id_idx"].endswith(
        "(workspace_id, campaign_id)"
    )
