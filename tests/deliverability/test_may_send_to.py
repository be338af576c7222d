"""The claim asks private.may_send_to, once per claim, whether each locked row may be sent;
its verdicts (send, skip with a reason, hold until a time) are all the claim acts on."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.factories.email import add_contacts, list_campaign, start
from tests.factories.workspaces import create_user

Conn = psycopg.Connection[Any]

NOT_MAILABLE = "no longer mailable (unsubscribed, suppressed or without consent)"


@pytest.fixture(autouse=True)
def idle_ledger(conn: Conn) -> Iterator[None]:
    yield
    # Later tests that claim across the database do not meet these campaigns' rows.
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")
    conn.execute("delete from private.platform_suppressions where reason = 'complaint'")


def as_worker(conn: Conn, query: str, params: Any = ()) -> list[dict[str, Any]]:
    with conn.transaction():
        conn.execute("set local role service_role")
        return [dict(row) for row in conn.execute(query, params).fetchall()]


def claim(conn: Conn, campaign: uuid.UUID) -> list[dict[str, Any]]:
    conn.execute("delete from private.ses_accounts")
    rows = as_worker(conn, "select * from private.claim_email_batch(1000, 60, 1000)")
    return [row for row in rows if row["campaign_id"] == campaign]


def test_each_rule_of_the_claim_is_a_verdict(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 6, prefix=uuid.uuid4().hex[:8])
    campaign = list_campaign(conn, owner, people)
    assert start(conn, owner, campaign) == 6
    fine, unsubscribed, suppressed, platform, moved, withdrawn = people
    conn.execute(
        "update public.contacts set unsubscribed_at = now() where id = %s", (unsubscribed,)
    )
    conn.execute(
        "insert into public.email_suppressions (workspace_id, email, reason)"
        " select workspace_id, email, 'manual' from public.contacts where id = %s",
        (suppressed,),
    )
    conn.execute(
        "insert into private.platform_suppressions (email_hash, reason)"
        " select sha256(convert_to(email, 'UTF8')), 'complaint' from public.contacts"
        " where id = %s",
        (platform,),
    )
    conn.execute("update public.contacts set email = 'moved-' || email where id = %s", (moved,))
    conn.execute(
        "update public.contacts set consent_state = 'withdrawn' where id = %s", (withdrawn,)
    )
    rows = {
        row["contact_id"]: row
        for row in conn.execute(
            "select id, contact_id from public.campaign_recipients where campaign_id = %s",
            (campaign,),
        )
    }
    verdicts = {
        row["recipient_id"]: (row["verdict"], row["reason"], row["hold_until"])
        for row in as_worker(
            conn,
            "select * from private.may_send_to(%s)",
            ([row["id"] for row in rows.values()],),
        )
    }
    assert verdicts == {
        rows[fine]["id"]: ("send", None, None),
        **{
            rows[person]["id"]: ("skip", NOT_MAILABLE, None)
            for person in (unsubscribed, suppressed, platform, moved, withdrawn)
        },
    }

    [claimed] = claim(conn, campaign)
    assert claimed["contact_id"] == fine
    states = conn.execute(
        "select status, error, count(*) as n from public.campaign_recipients"
        " where campaign_id = %s group by status, error order by status",
        (campaign,),
    ).fetchall()
    assert [dict(row) for row in states] == [
        {"status": "sending", "error": None, "n": 1},
        {"status": "skipped", "error": NOT_MAILABLE, "n": 5},
    ]


def test_a_hold_puts_the_row_back_unclaimed_until_its_time(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 3, prefix=uuid.uuid4().hex[:8])
    campaign = list_campaign(conn, owner, people)
    assert start(conn, owner, campaign) == 3
    with conn.transaction():
        # A later rule, as a redefinition of may_send_to would add it: hold the first person.
        conn.execute(
            """
            create or replace function private.may_send_to(p_recipients uuid[])
            returns table (recipient_id uuid, verdict text, reason text, hold_until timestamptz)
            language sql stable security definer set search_path = '' as $$
              select r.id,
                     case when r.contact_id = %(held)s::uuid then 'hold' else 'send' end,
                     case when r.contact_id = %(held)s::uuid then 'waiting for the test' end,
                     case when r.contact_id = %(held)s::uuid then now() + interval '1 hour' end
              from public.campaign_recipients r where r.id = any (p_recipients)
            $$
            """.replace("%(held)s", f"'{people[0]}'")
        )
        claimed = claim(conn, campaign)
        held = conn.execute(
            "select status, attempts, locked_until, error,"
            " next_attempt_at > now() + interval '59 minutes' as later"
            " from public.campaign_recipients where campaign_id = %s and contact_id = %s",
            (campaign, people[0]),
        ).fetchone()
        raise psycopg.Rollback
    assert sorted(row["contact_id"] for row in claimed) == sorted(people[1:])
    assert held is not None and dict(held) == {
        "status": "queued",
        "attempts": 0,
        "locked_until": None,
        "error": "waiting for the test",
        "later": True,
    }


def test_a_contact_whose_address_was_removed_is_not_sent_the_frozen_one(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 2, prefix=uuid.uuid4().hex[:8])
    campaign = list_campaign(conn, owner, people)
    assert start(conn, owner, campaign) == 2
    conn.execute("update public.contacts set email = null where id = %s", (people[0],))

    [claimed] = claim(conn, campaign)

    assert claimed["contact_id"] == people[1]
    removed = conn.execute(
        "select status, error from public.campaign_recipients where contact_id = %s",
        (people[0],),
    ).fetchone()
    assert removed is not None and dict(removed) == {"status": "skipped", "error": NOT_MAILABLE}
