"""Freezing a campaign's audience in chunks: counted and reserved at the start, frozen a chunk
per transaction while the frozen rows are sent, the audience of the start and no more, and the
campaign sent only once it is frozen whole."""

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from api.core.db import Database
from api.email.sender import SendPolicy, send_due_emails
from api.email.ses import SesClient
from tests.factories.email import SENDER_DOMAIN, add_contacts, list_campaign, send_alone, start
from tests.factories.workspaces import create_user, one
from tests.fakes.ses_server import REGION, moto_ses, reset, sent_raw_messages

Conn = psycopg.Connection[Any]
POLICY = SendPolicy(
    link_secret="freeze-" + uuid.uuid4().hex,
    link_days=30,
    max_per_second=1000,
    concurrency=4,
    base_url="https://edge.example.test",
)


@pytest.fixture(autouse=True)
def small_chunks(conn: Conn) -> Iterator[None]:
    """Other tests' campaigns stay out, and their counts cannot engage the platform brake
    (send_alone); this connection's starts freeze 50 contacts at first."""
    send_alone(conn)
    conn.execute("set growthbase.freeze_chunk_rows = 50")
    yield
    conn.execute("reset growthbase.freeze_chunk_rows")
    # Later tests that claim across the database do not meet these campaigns' rows.
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")


def as_service(conn: Conn, query: str, params: Any = ()) -> dict[str, Any]:
    with conn.transaction():
        conn.execute("set local role service_role")
        return one(conn, query, params)


def campaign_state(conn: Conn, campaign: uuid.UUID) -> dict[str, Any]:
    return one(
        conn,
        "select status, freezing, frozen, recipients,"
        " (select count(*) from public.campaign_recipients r where r.campaign_id = c.id) as rows"
        " from public.campaigns c where c.id = %s",
        (campaign,),
    )


def usage(conn: Conn, workspace: uuid.UUID) -> int:
    return int(
        one(
            conn,
            "select emails from private.monthly_email_usage where workspace_id = %s"
            " and month = date_trunc('month', now())::date",
            (workspace,),
        )["emails"]
    )


def test_a_large_audience_is_frozen_a_chunk_at_a_time_as_it_was_at_the_start(conn: Conn) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 130)
    campaign = list_campaign(
        conn, owner, readers, [("A", "A", "<p>A</p>", None, 3), ("B", "B", "<p>B</p>", None, 1)]
    )

    assert start(conn, owner, campaign) == 130
    assert campaign_state(conn, campaign) == {
        "status": "sending",
        "freezing": True,
        "frozen": 50,
        "recipients": 130,
        "rows": 50,
    }
    assert usage(conn, owner.workspace_id) == 130
    # A contact added to the list after the start is not in the audience; five of the rest
    # unsubscribe before their chunk.
    late = add_contacts(conn, owner, 1, prefix="late")
    list_id = one(conn, "select list_ids[1] as id from public.campaigns where id = %s", (campaign,))
    conn.execute(
        "insert into public.email_list_members (list_id, workspace_id, contact_id)"
        " values (%s, %s, %s)",
        (list_id["id"], owner.workspace_id, late[0]),
    )
    frozen_ids = {
        row["contact_id"]
        for row in conn.execute(
            "select contact_id from public.campaign_recipients where campaign_id = %s", (campaign,)
        )
    }
    leaving = [contact for contact in readers if contact not in frozen_ids][:5]
    conn.execute(
        "update public.contacts set unsubscribed_at = now() where id = any(%s)", (leaving,)
    )
    # Not sent while freezing, even with every frozen row answered.
    conn.execute(
        "update public.campaign_recipients set status = 'sent' where campaign_id = %s",
        (campaign,),
    )
    assert as_service(conn, "select private.finish_sent_campaigns() as n")["n"] == 0

    chunk = "select private.freeze_campaign_chunk(%s, 50) as n"
    assert as_service(conn, chunk, (campaign,))["n"] == 50
    assert as_service(conn, chunk, (campaign,))["n"] == 25
    assert as_service(conn, chunk, (campaign,))["n"] == 0

    state = campaign_state(conn, campaign)
    assert state == {
        "status": "sending",
        "freezing": False,
        "frozen": 125,
        "recipients": 125,
        "rows": 125,
    }
    # What was reserved and not frozen went back to the month.
    assert usage(conn, owner.workspace_id) == 125
    contacts = {
        row["contact_id"]
        for row in conn.execute(
            "select contact_id from public.campaign_recipients where campaign_id = %s", (campaign,)
        )
    }
    assert contacts == set(readers) - set(leaving)
    split = Counter(
        row["name"]
        for row in conn.execute(
            "select v.name from public.campaign_recipients r"
            " join public.campaign_variants v on v.id = r.variant_id where r.campaign_id = %s",
            (campaign,),
        )
    )
    # The n-th contact across chunks takes variant n mod 4 (A: 0-2, B: 3), the unsubscribed
    # leaving their places to the next.
    assert split == {"A": 94, "B": 31}


def test_the_send_cron_freezes_the_rest_and_sends_it_all(conn: Conn, database_url: str) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 120)
    campaign = list_campaign(conn, owner, readers)
    start(conn, owner, campaign)
    assert campaign_state(conn, campaign)["rows"] == 50

    with moto_ses() as endpoint:
        # moto keeps its state per process, across servers.
        reset(endpoint)
        ses = SesClient(
            region=REGION,
            access_key_id="testing",
            secret_access_key="testing",
            endpoint_url=endpoint,
            configuration_set=None,
            max_connections=8,
        )
        ses.create_identity(SENDER_DOMAIN, adopt_existing=True)
        database = Database(database_url, pool_mode="session", max_size=4, timeout_seconds=10)
        database.open()
        try:
            report = send_due_emails(database, ses, POLICY, budget_seconds=60)
        finally:
            database.close()
        recipients = Counter(m["destinations"][0] for m in sent_raw_messages(endpoint))

    assert report.sent == 120 and report.finished_campaigns == 1
    assert len(recipients) == 120 and max(recipients.values()) == 1
    assert campaign_state(conn, campaign)["status"] == "sent"
