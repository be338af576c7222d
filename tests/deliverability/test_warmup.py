"""A warming sender identity sends at most its daily cap, most engaged contacts first, with a
share per big mailbox provider; the rest waits for the next day; the cap steps up by half after a
clean full day and back after a warning."""

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from tests.factories.email import (
    add_contacts,
    draft_campaign,
    list_campaign,
    start,
    verified_sender,
)
from tests.factories.flows import create_flow, send_step, template, tick
from tests.factories.workspaces import acting_as, add_member, create_user, one

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def idle_ledger(conn: Conn) -> Iterator[None]:
    yield
    # Later tests that claim across the database do not meet these campaigns' rows.
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")


def as_worker(conn: Conn, query: str, params: Any = ()) -> list[dict[str, Any]]:
    with conn.transaction():
        conn.execute("set local role service_role")
        return [dict(row) for row in conn.execute(query, params).fetchall()]


def claim(conn: Conn, campaign: uuid.UUID) -> list[dict[str, Any]]:
    conn.execute("delete from private.ses_accounts")
    rows = as_worker(conn, "select * from private.claim_email_batch(1000, 60, 1000)")
    return [row for row in rows if row["campaign_id"] == campaign]


def warming(conn: Conn, campaign: uuid.UUID, cap: int | None = None) -> uuid.UUID:
    """The campaign's sender identity, warming, with today's cap set when given."""
    found = one(
        conn,
        "select sender_identity_id as id, workspace_id from public.campaigns where id = %s",
        (campaign,),
    )
    conn.execute("update public.sender_identities set warmup = true where id = %s", (found["id"],))
    if cap is not None:
        conn.execute(
            "insert into private.sender_warmup_days (sender_identity_id, workspace_id, day, cap)"
            " values (%s, %s, (now() at time zone 'UTC')::date, %s)",
            (found["id"], found["workspace_id"], cap),
        )
    return uuid.UUID(str(found["id"]))


def tomorrow() -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=1)


def test_new_identities_warm_up_and_only_admins_turn_it_off(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    name = f"warm-{uuid.uuid4().hex[:8]}.example.com"
    with acting_as(conn, owner):
        identity = one(
            conn,
            "select public.register_sender_identity(%s, %s) as id",
            (owner.workspace_id, name),
        )["id"]
    assert one(conn, "select warmup from public.sender_identities where id = %s", (identity,))[
        "warmup"
    ]
    with acting_as(conn, member):
        conn.execute(
            "update public.sender_identities set warmup = false where id = %s", (identity,)
        )
    assert one(conn, "select warmup from public.sender_identities where id = %s", (identity,))[
        "warmup"
    ]
    with acting_as(conn, owner):
        conn.execute(
            "update public.sender_identities set warmup = false where id = %s", (identity,)
        )
    assert not one(conn, "select warmup from public.sender_identities where id = %s", (identity,))[
        "warmup"
    ]


def test_the_cap_goes_to_the_most_engaged_and_the_rest_waits_for_tomorrow(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 6, prefix=uuid.uuid4().hex[:8])
    campaign = list_campaign(conn, owner, people)
    identity = warming(conn, campaign, cap=3)
    assert start(conn, owner, campaign) == 6
    # The last two clicked lately (here, on this campaign's own rows).
    conn.execute(
        "update public.campaign_recipients set last_clicked_at = now() - interval '40 days'"
        " where campaign_id = %s and contact_id = %s",
        (campaign, people[4]),
    )
    conn.execute(
        "update public.campaign_recipients set last_clicked_at = now() - interval '2 days'"
        " where campaign_id = %s and contact_id = %s",
        (campaign, people[5]),
    )

    claimed = claim(conn, campaign)

    sent = {row["contact_id"] for row in claimed}
    assert len(sent) == 3 and {people[4], people[5]} <= sent
    held = conn.execute(
        "select contact_id, status, attempts, error, next_attempt_at"
        " from public.campaign_recipients where campaign_id = %s and status = 'queued'",
        (campaign,),
    ).fetchall()
    assert {row["contact_id"] for row in held} == set(people[:4]) - sent
    assert {(row["status"], row["attempts"]) for row in held} == {("queued", 0)}
    assert {row["error"] for row in held} == {
        "warm-up: today's cap of 3 is used; waiting for tomorrow"
    }
    assert {row["next_attempt_at"] for row in held} == {tomorrow() + timedelta(seconds=3)}
    day = one(
        conn,
        "select cap, claimed from private.sender_warmup_days where sender_identity_id = %s"
        " and day = (now() at time zone 'UTC')::date",
        (identity,),
    )
    assert (day["cap"], day["claimed"]) == (3, 3)
    assert claim(conn, campaign) == []


def claimed_today(conn: Conn, identity: uuid.UUID) -> int:
    return int(
        one(
            conn,
            "select claimed from private.sender_warmup_days where sender_identity_id = %s"
            " and day = (now() at time zone 'UTC')::date",
            (identity,),
        )["claimed"]
    )


def test_a_recipient_claimed_again_the_same_day_counts_once(conn: Conn) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 4, prefix=uuid.uuid4().hex[:8]))
    identity = warming(conn, campaign, cap=5)
    start(conn, owner, campaign)
    first = claim(conn, campaign)
    # SES throttled two of them: given back, due again (no attempt lost).
    as_worker(
        conn,
        "select private.record_email_outcomes(%s, 'default')",
        (
            Jsonb(
                [
                    {
                        "id": str(row["recipient_id"]),
                        "attempt": row["attempts"],
                        "kind": "throttled",
                    }
                    for row in first[:2]
                ]
            ),
        ),
    )
    conn.execute(
        "update public.campaign_recipients set next_attempt_at = now() where campaign_id = %s",
        (campaign,),
    )

    again = claim(conn, campaign)

    assert len(first) == 4 and {row["recipient_id"] for row in again} == {
        row["recipient_id"] for row in first[:2]
    }
    assert claimed_today(conn, identity) == 4


def test_two_workers_claiming_at_once_never_pass_the_cap(conn: Conn, database_url: str) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 8, prefix=uuid.uuid4().hex[:8]))
    identity = warming(conn, campaign, cap=5)
    start(conn, owner, campaign)
    conn.execute("delete from private.ses_accounts")
    query = "select recipient_id from private.claim_email_batch(4, 60, 1000)"
    second: list[Any] = []

    with psycopg.connect(database_url, autocommit=True) as other:
        with conn.transaction():
            conn.execute("set local role service_role")
            first = conn.execute(query).fetchall()
            conn.execute("reset role")  # to see the other session's wait

            def claim_meanwhile() -> None:
                with other.transaction():
                    other.execute("set local role service_role")
                    second.extend(other.execute(query).fetchall())

            worker = threading.Thread(target=claim_meanwhile)
            worker.start()
            # The second claim waits for the first's transaction (the SES account's row).
            while (
                worker.is_alive()
                and not one(
                    conn,
                    "select count(*) > 0 as waiting from pg_stat_activity"
                    " where pid = %s and wait_event_type = 'Lock'",
                    (other.info.backend_pid,),
                )["waiting"]
            ):
                worker.join(0.01)
            waited = worker.is_alive()
        worker.join()

    assert waited and (len(first), len(second)) == (4, 1)
    assert claimed_today(conn, identity) == 5


def test_a_mailbox_provider_gets_half_the_days_cap(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 6, prefix=uuid.uuid4().hex[:8])
    conn.execute(
        "update public.contacts set email = replace(email, '@mail.example.org', '@hotmail.com')"
        " where id = any(%s)",
        (people[:4],),
    )
    campaign = list_campaign(conn, owner, people)
    identity = warming(conn, campaign, cap=4)
    assert start(conn, owner, campaign) == 6

    claimed = claim(conn, campaign)

    sent = {row["contact_id"] for row in claimed}
    assert len(sent) == 4 and {people[4], people[5]} <= sent
    held = conn.execute(
        "select error from public.campaign_recipients where campaign_id = %s and status = 'queued'",
        (campaign,),
    ).fetchall()
    assert [row["error"] for row in held] == [
        "warm-up: today's share for Microsoft (half of the daily cap of 4) is used;"
        " waiting for tomorrow"
    ] * 2
    day = one(
        conn,
        "select claimed, microsoft from private.sender_warmup_days where sender_identity_id = %s",
        (identity,),
    )
    assert (day["claimed"], day["microsoft"]) == (4, 2)


def test_an_established_identity_is_not_capped(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 5, prefix=uuid.uuid4().hex[:8])
    campaign = list_campaign(conn, owner, people)
    identity = warming(conn, campaign, cap=2)
    conn.execute("update public.sender_identities set warmup = false where id = %s", (identity,))
    assert start(conn, owner, campaign) == 5
    assert len(claim(conn, campaign)) == 5


def test_a_warming_campaign_is_frozen_most_engaged_first(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 3, prefix=uuid.uuid4().hex[:8])
    earlier = list_campaign(conn, owner, people)
    assert start(conn, owner, earlier) == 3
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(),"
        " last_clicked_at = now() - interval '1 day' where campaign_id = %s and contact_id = %s",
        (earlier, people[2]),
    )
    conn.execute("update public.campaigns set status = 'paused' where id = %s", (earlier,))
    lists = one(conn, "select list_ids from public.campaigns where id = %s", (earlier,))
    later = draft_campaign(
        conn, owner, list_ids=lists["list_ids"], sender_id=verified_sender(conn, owner)
    )
    warming(conn, later)
    assert start(conn, owner, later) == 3
    due = {
        row["contact_id"]: row["next_attempt_at"]
        for row in conn.execute(
            "select contact_id, next_attempt_at from public.campaign_recipients"
            " where campaign_id = %s",
            (later,),
        )
    }
    assert due[people[0]] - due[people[2]] == timedelta(seconds=3)


def cap_today(conn: Conn, identity: uuid.UUID) -> int:
    return int(
        one(
            conn,
            "select private.warmup_cap(%s, (now() at time zone 'UTC')::date) as cap",
            (identity,),
        )["cap"]
    )


def test_the_cap_steps_up_after_a_clean_full_day_and_back_after_a_warning(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 1, prefix=uuid.uuid4().hex[:8])
    identity = warming(conn, list_campaign(conn, owner, people))
    assert cap_today(conn, identity) == 200

    def yesterday(
        cap: int, claimed: int, sends: int, bounces: int, complaints: int = 0, suppressed: int = 0
    ) -> None:
        conn.execute(
            "delete from private.sender_warmup_days where sender_identity_id = %s", (identity,)
        )
        conn.execute(
            "delete from private.deliverability_counts where sender_identity_id = %s", (identity,)
        )
        conn.execute(
            "insert into private.sender_warmup_days (sender_identity_id, workspace_id, day, cap,"
            " claimed) values (%s, %s, (now() at time zone 'UTC')::date - 1, %s, %s)",
            (identity, owner.workspace_id, cap, claimed),
        )
        conn.execute(
            "insert into private.deliverability_counts (workspace_id, sender_identity_id, hour,"
            " sends, bounces, complaints, suppressed_bounces) values (%s, %s,"
            " ((now() at time zone 'UTC')::date - 1)::timestamp at time zone 'UTC'"
            " + interval '10 hours', %s, %s, %s, %s)",
            (owner.workspace_id, identity, sends, bounces, complaints, suppressed),
        )

    yesterday(cap=200, claimed=200, sends=200, bounces=3)
    assert cap_today(conn, identity) == 300
    yesterday(cap=200, claimed=150, sends=150, bounces=0)
    assert cap_today(conn, identity) == 200
    yesterday(cap=200, claimed=200, sends=200, bounces=4)
    assert cap_today(conn, identity) == 200
    # Suppression-list hits are no eligible sends: 3 bounces in 149 eligible sends are 2.01%.
    yesterday(cap=200, claimed=200, sends=200, bounces=3, suppressed=51)
    assert cap_today(conn, identity) == 200
    yesterday(cap=2000, claimed=2000, sends=2000, bounces=0, complaints=1)
    assert cap_today(conn, identity) == 2000
    yesterday(cap=300, claimed=300, sends=300, bounces=0)
    conn.execute(
        "insert into private.deliverability_warnings (workspace_id, sender_identity_id, warned_at)"
        " values (%s, null, now())",
        (owner.workspace_id,),
    )
    assert cap_today(conn, identity) == 200


@pytest.mark.parametrize("transactional", [False, True])
def test_flow_mail_counts_and_only_transactional_mail_is_never_held(
    conn: Conn, transactional: bool
) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    sender = verified_sender(conn, owner)
    conn.execute("update public.sender_identities set warmup = true where id = %s", (sender,))
    conn.execute(
        "insert into private.sender_warmup_days (sender_identity_id, workspace_id, day, cap)"
        " values (%s, %s, (now() at time zone 'UTC')::date, 1)",
        (sender, owner.workspace_id),
    )
    flow = create_flow(
        conn,
        owner,
        "contact_created",
        [send_step("hello", template(conn, owner), sender)],
        transactional=transactional,
    )
    prefix = uuid.uuid4().hex[:8]
    conn.execute(
        "insert into public.contacts (workspace_id, email, first_name, consent_state)"
        " select %s, format('%s-%%s@mail.example.org', n), 'Ada', 'granted'"
        " from generate_series(1, 2) n".replace("%s-", prefix + "-"),
        (owner.workspace_id,),
    )
    tick(conn)
    campaigns = {
        row["id"]
        for row in conn.execute(
            "select c.id from public.campaigns c join public.flow_steps s on s.id = c.flow_step_id"
            " where s.flow_id = %s",
            (flow,),
        )
    }
    conn.execute("delete from private.ses_accounts")
    claimed = [
        row
        for row in as_worker(conn, "select * from private.claim_email_batch(1000, 60, 1000)")
        if row["campaign_id"] in campaigns
    ]
    conn.execute("update public.flows set status = 'paused' where id = %s", (flow,))

    assert len(claimed) == (2 if transactional else 1)
    day = one(
        conn,
        "select claimed from private.sender_warmup_days where sender_identity_id = %s",
        (sender,),
    )
    assert day["claimed"] == len(claimed)


def test_members_see_their_identities_warm_up_and_others_see_nothing(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 3, prefix=uuid.uuid4().hex[:8])
    conn.execute(
        "update public.contacts set email = replace(email, '@mail.example.org', '@gmail.com')"
        " where id = %s",
        (people[0],),
    )
    campaign = list_campaign(conn, owner, people)
    identity = warming(conn, campaign, cap=10)
    assert start(conn, owner, campaign) == 3
    assert len(claim(conn, campaign)) == 3
    viewer = add_member(conn, owner, "viewer")
    with acting_as(conn, viewer):
        [row] = conn.execute(
            "select sender_identity_id, warmup, daily_cap, claimed, provider_share, gmail"
            " from analytics.sender_warmup where workspace_id = %s",
            (owner.workspace_id,),
        ).fetchall()
    assert dict(row) == {
        "sender_identity_id": identity,
        "warmup": True,
        "daily_cap": 10,
        "claimed": 3,
        "provider_share": 5,
        "gmail": 1,
    }
    stranger = create_user(conn)
    with acting_as(conn, stranger):
        seen = conn.execute(
            "select count(*) as n from analytics.sender_warmup_stats() where workspace_id = %s",
            (owner.workspace_id,),
        ).fetchone()
    assert seen is not None and seen["n"] == 0


def test_engagement_tiers_are_a_click_or_order_within_30_60_90_days(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 6, prefix=uuid.uuid4().hex[:8])
    campaign = list_campaign(conn, owner, people)
    start(conn, owner, campaign)
    for index, days in ((0, 10), (1, 45), (2, 75), (3, 120)):
        conn.execute(
            "update public.campaign_recipients set last_clicked_at = now()"
            " - make_interval(days => %s) where campaign_id = %s and contact_id = %s",
            (days, campaign, people[index]),
        )
    # An order 20 days ago ranks with a click; an open alone (Apple's privacy opens) does not.
    conn.execute(
        "insert into public.customer_facts (contact_id, workspace_id, first_order_id,"
        " first_order_at, first_order_project_id, first_order_source, last_order_id,"
        " last_order_at, orders_count, revenue) values (%s, %s, gen_random_uuid(),"
        " now() - interval '20 days', gen_random_uuid(), 'shoptet', gen_random_uuid(),"
        " now() - interval '20 days', 1, 10)",
        (people[3], owner.workspace_id),
    )
    conn.execute(
        "update public.campaign_recipients set last_opened_at = now()"
        " where campaign_id = %s and contact_id = %s",
        (campaign, people[5]),
    )
    tiers = [
        one(conn, "select private.engagement_tier(%s) as t", (person,))["t"] for person in people
    ]
    assert tiers == [0, 1, 2, 0, 3, 3]


def test_the_big_mailbox_providers_are_told_apart_by_domain(conn: Conn) -> None:
    found = {
        email: one(conn, "select private.mailbox_provider(%s) as p", (email,))["p"]
        for email in (
            "ann@gmail.com",
            "ann@GoogleMail.com",
            "ann@hotmail.co.uk",
            "ann@outlook.com",
            "ann@live.com",
            "ann@msn.com",
            "ann@yahoo.co.jp",
            "ann@aol.com",
            "ann@ymail.com",
            "ann@shop.example",
            "ann@notgmail.com",
        )
    }
    assert found == {
        "ann@gmail.com": "gmail",
        "ann@GoogleMail.com": "gmail",
        "ann@hotmail.co.uk": "microsoft",
        "ann@outlook.com": "microsoft",
        "ann@live.com": "microsoft",
        "ann@msn.com": "microsoft",
        "ann@yahoo.co.jp": "yahoo",
        "ann@aol.com": "yahoo",
        "ann@ymail.com": "yahoo",
        "ann@shop.example": None,
        "ann@notgmail.com": None,
    }
