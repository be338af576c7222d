"""A spike of unsubscribes from Gmail recipients warns the owner and admins once a day, over
the workspace's threshold and minimum volume, counted as the send ledger changes."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.factories.email import add_contacts, list_campaign, start
from tests.factories.workspaces import acting_as, create_user, one

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def idle_ledger(conn: Conn) -> Iterator[None]:
    yield
    # Later tests that claim across the database do not meet these campaigns' rows.
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")


def gmail_campaign(conn: Conn, sends: int, others: int = 0) -> tuple[uuid.UUID, uuid.UUID, Any]:
    """A started campaign to `sends` Gmail addresses (and `others` elsewhere), all marked sent."""
    owner = create_user(conn)
    prefix = uuid.uuid4().hex[:8]
    people = add_contacts(conn, owner, sends + others, prefix=prefix)
    conn.execute(
        "update public.contacts set email = replace(email, '@mail.example.org', '@gmail.com')"
        " where id = any(%s)",
        (people[others:],),
    )
    campaign = list_campaign(conn, owner, people)
    assert start(conn, owner, campaign) == sends + others
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now()"
        " where campaign_id = %s",
        (campaign,),
    )
    return owner.workspace_id, campaign, owner


def unsubscribe(conn: Conn, campaign: uuid.UUID, count: int) -> None:
    conn.execute(
        "update public.campaign_recipients set unsubscribed_at = now() where id in"
        " (select id from public.campaign_recipients where campaign_id = %s"
        "  and unsubscribed_at is null order by id limit %s)",
        (campaign, count),
    )


def warnings(conn: Conn, workspace: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "select title, body from public.notifications where workspace_id = %s"
        " and kind = 'sending.warning'",
        (workspace,),
    ).fetchall()


def test_a_spike_of_gmail_unsubscribes_warns_once_a_day(conn: Conn) -> None:
    workspace, campaign, _ = gmail_campaign(conn, 600)
    unsubscribe(conn, campaign, 5)
    assert warnings(conn, workspace) == []
    unsubscribe(conn, campaign, 1)
    [warning] = warnings(conn, workspace)
    assert "Gmail" in warning["title"] and "6 of 600" in warning["body"]
    unsubscribe(conn, campaign, 10)
    assert len(warnings(conn, workspace)) == 1


def test_the_threshold_is_the_workspaces_and_low_volume_does_not_warn(conn: Conn) -> None:
    workspace, campaign, owner = gmail_campaign(conn, 300)
    unsubscribe(conn, campaign, 30)
    assert warnings(conn, workspace) == []

    workspace, campaign, owner = gmail_campaign(conn, 600)
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.deliverability_settings (workspace_id,"
            " warn_gmail_unsubscribe_rate) values (%s, 0.05)",
            (workspace,),
        )
    unsubscribe(conn, campaign, 29)
    assert warnings(conn, workspace) == []
    unsubscribe(conn, campaign, 1)
    assert len(warnings(conn, workspace)) == 1
    counted = one(
        conn,
        "select sum(gmail_sends) as sends, sum(gmail_unsubscribes) as unsubscribes"
        " from private.deliverability_counts where workspace_id = %s",
        (workspace,),
    )
    assert (counted["sends"], counted["unsubscribes"]) == (600, 30)


def test_gmail_unsubscribes_are_counted_once(conn: Conn) -> None:
    """The deliverability counts alone hold them; the separate counts table is gone."""
    assert one(conn, "select to_regclass('private.gmail_unsubscribe_counts') as t")["t"] is None
    triggers = [
        row["tgname"]
        for row in conn.execute(
            "select tgname from pg_trigger"
            " where tgrelid = 'public.campaign_recipients'::regclass and not tgisinternal"
            " and tgname like '%%count%%'"
        )
    ]
    assert "campaign_recipients_count_deliverability" in triggers
    assert not [name for name in triggers if "gmail" in name or "unsubscribe" in name]
    workspace, campaign, _ = gmail_campaign(conn, 60, others=40)
    conn.execute(
        "update public.campaign_recipients set unsubscribed_at = now() where campaign_id = %s"
        " and id in ((select id from public.campaign_recipients where campaign_id = %s"
        "  and email like '%%@gmail.com' order by id limit 2)"
        " union all (select id from public.campaign_recipients where campaign_id = %s"
        "  and email not like '%%@gmail.com' order by id limit 1))",
        (campaign, campaign, campaign),
    )
    counted = one(
        conn,
        "select sum(sends) as sends, sum(gmail_sends) as gmail_sends,"
        " sum(unsubscribes) as unsubscribes, sum(gmail_unsubscribes) as gmail_unsubscribes"
        " from private.deliverability_counts where workspace_id = %s",
        (workspace,),
    )
    assert dict(counted) == {
        "sends": 100,
        "gmail_sends": 60,
        "unsubscribes": 3,
        "gmail_unsubscribes": 2,
    }
