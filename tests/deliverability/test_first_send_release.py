"""A campaign's first send to a fresh import holds the contacts beyond its probe only until
the probe has answered: released at once when its bounces stay under the warning rate, held
(and the admins told, once) when they do not."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.factories.email import add_contacts, list_campaign, start
from tests.factories.workspaces import User, create_user, one

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def idle_ledger(conn: Conn) -> Iterator[None]:
    yield
    # Later tests that claim across the database do not meet these campaigns' rows.
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")


def fresh_import_campaign(conn: Conn) -> tuple[User, uuid.UUID]:
    """A started campaign to 1,003 freshly imported contacts: a probe of 1,000, 3 held."""
    owner = create_user(conn)
    people = add_contacts(conn, owner, 1003, prefix=uuid.uuid4().hex[:8])
    conn.execute("update public.contacts set imported_at = now() where id = any(%s)", (people,))
    campaign = list_campaign(conn, owner, people)
    assert start(conn, owner, campaign) == 1003
    return owner, campaign


def rows(conn: Conn, campaign: uuid.UUID) -> dict[str, int]:
    found = conn.execute(
        "select coalesce(first_send, 'proven') || ':' ||"
        " case when next_attempt_at <= now() then 'due' else 'waiting' end as state,"
        " count(*) as n from public.campaign_recipients where campaign_id = %s group by 1",
        (campaign,),
    ).fetchall()
    return {row["state"]: row["n"] for row in found}


def answer_probe(conn: Conn, campaign: uuid.UUID, bounces: int, unanswered: int = 0) -> None:
    """The probe is sent; SES answers each (the first `bounces` bounce permanently), bar the
    last `unanswered`."""
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now()"
        " where campaign_id = %s and first_send = 'probe'",
        (campaign,),
    )
    conn.execute(
        "with ranked as (select id, row_number() over (order by id) as n,"
        "  count(*) over () as total from public.campaign_recipients"
        "  where campaign_id = %s and first_send = 'probe')"
        " update public.campaign_recipients r"
        " set bounced_at = case when k.n <= %s then now() end,"
        "     bounce_type = case when k.n <= %s then 'Permanent' end,"
        "     delivered_at = case when k.n > %s then now() end"
        " from ranked k where k.id = r.id and k.n <= k.total - %s",
        (campaign, bounces, bounces, bounces, unanswered),
    )


def release(conn: Conn) -> int:
    with conn.transaction():
        conn.execute("set local role service_role")
        return int(one(conn, "select private.release_first_sends() as n")["n"])


def held_notices(conn: Conn, owner: User) -> list[dict[str, Any]]:
    return conn.execute(
        "select title, body from public.notifications where workspace_id = %s"
        " and kind = 'sending.first_send_held'",
        (owner.workspace_id,),
    ).fetchall()


def verdict(conn: Conn, campaign: uuid.UUID) -> Any:
    return one(conn, "select first_send_verdict from public.campaigns where id = %s", (campaign,))[
        "first_send_verdict"
    ]


def test_the_probe_and_the_held_rows_are_marked(conn: Conn) -> None:
    _, campaign = fresh_import_campaign(conn)
    assert rows(conn, campaign) == {"probe:due": 1000, "held:waiting": 3}
    assert verdict(conn, campaign) is None


def test_a_clean_probe_releases_the_held_rows_at_once(conn: Conn) -> None:
    _, campaign = fresh_import_campaign(conn)
    answer_probe(conn, campaign, bounces=10, unanswered=1)
    release(conn)
    assert rows(conn, campaign)["held:waiting"] == 3
    assert verdict(conn, campaign) is None

    answer_probe(conn, campaign, bounces=10)
    assert release(conn) >= 3
    assert rows(conn, campaign)["held:due"] == 3
    assert verdict(conn, campaign) == "released"


def test_a_probe_still_sending_holds_the_rest(conn: Conn) -> None:
    _, campaign = fresh_import_campaign(conn)
    release(conn)
    assert rows(conn, campaign) == {"probe:due": 1000, "held:waiting": 3}


def test_a_probe_that_bounces_too_much_keeps_the_rest_held_and_tells_the_admins_once(
    conn: Conn,
) -> None:
    owner, campaign = fresh_import_campaign(conn)
    answer_probe(conn, campaign, bounces=20)
    release(conn)
    release(conn)
    assert rows(conn, campaign)["held:waiting"] == 3
    assert verdict(conn, campaign) == "held"
    [notice] = held_notices(conn, owner)
    assert "20 of the 1000" in notice["body"] and "2.00%" in notice["body"]


def test_the_probes_rate_leaves_suppression_list_hits_out_of_its_sends(conn: Conn) -> None:
    owner, campaign = fresh_import_campaign(conn)
    answer_probe(conn, campaign, bounces=19)  # 1.9% of 1,000 sent
    # 50 more went to addresses on a suppression list: no eligible sends, so 19 / 950 = 2%.
    conn.execute(
        "with ranked as (select id, row_number() over (order by id) as n"
        "  from public.campaign_recipients where campaign_id = %s and first_send = 'probe')"
        " update public.campaign_recipients r set bounced_at = now(), bounce_type = 'Permanent',"
        " bounce_subtype = 'OnAccountSuppressionList', delivered_at = null"
        " from ranked k where k.id = r.id and k.n between 20 and 69",
        (campaign,),
    )
    release(conn)
    assert verdict(conn, campaign) == "held"
    [notice] = held_notices(conn, owner)
    assert "19 of the 950" in notice["body"] and "2.00%" in notice["body"]


def test_the_workspace_threshold_decides(conn: Conn) -> None:
    owner, campaign = fresh_import_campaign(conn)
    conn.execute(
        "insert into public.deliverability_settings (workspace_id, warn_bounce_rate)"
        " values (%s, 0.03)",
        (owner.workspace_id,),
    )
    answer_probe(conn, campaign, bounces=20)
    release(conn)
    assert rows(conn, campaign)["held:due"] == 3
    assert held_notices(conn, owner) == []
