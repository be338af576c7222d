"""Before a campaign goes out: the sunset leaves out contacts with no click or order in the
window, a sender whose domain does not sign with DKIM is refused, and the pre-send checks show
the audience's risky shares and the From domain's DMARC policy and alignment from DNS."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from api.email.dmarc import DmarcLookup
from tests.factories.email import add_contacts, draft_campaign, email_list, list_campaign, start
from tests.factories.workspaces import acting_as, add_member, create_user, one, refused
from tests.fakes.dns_server import shared_dns

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def idle_ledger(conn: Conn) -> Iterator[None]:
    yield
    # Later tests that claim across the database do not meet these campaigns' rows.
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")


def age(conn: Conn, contacts: list[uuid.UUID], days: int) -> None:
    conn.execute(
        "update public.contacts set created_at = now() - make_interval(days => %s)"
        " where id = any(%s)",
        (days, contacts),
    )


def test_the_sunset_leaves_out_contacts_without_a_click_or_order_in_the_window(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    prefix = f"s{uuid.uuid4().hex[:8]}"
    old = add_contacts(conn, owner, 6, prefix=prefix)
    # The first clicked a campaign 100 days ago; the second clicked 200 days ago; the third
    # ordered 30 days ago; the fourth only opened yesterday (opens do not count).
    earlier = list_campaign(conn, owner, old)
    start(conn, owner, earlier)
    age(conn, old, 400)
    for index, column, days in (
        (0, "last_clicked_at", 100),
        (1, "last_clicked_at", 200),
        (3, "last_opened_at", 1),
    ):
        conn.execute(
            f"update public.campaign_recipients set status = 'sent', {column} = now()"
            " - make_interval(days => %s) where campaign_id = %s and contact_id = %s",
            (days, earlier, old[index]),
        )
    conn.execute(
        "insert into public.customer_facts (contact_id, workspace_id, first_order_id,"
        " first_order_at, first_order_project_id, first_order_source, last_order_id,"
        " last_order_at, orders_count, revenue) values (%s, %s, gen_random_uuid(),"
        " now() - interval '30 days', gen_random_uuid(), 'shoptet', gen_random_uuid(),"
        " now() - interval '30 days', 1, 10)",
        (old[2], owner.workspace_id),
    )
    new = add_contacts(conn, owner, 2, prefix=f"{prefix}-new")
    conn.execute("update public.campaigns set status = 'sent' where id = %s", (earlier,))

    sender = one(conn, "select sender_identity_id from public.campaigns where id = %s", (earlier,))
    campaign = draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, old + new, name="Second")],
        sender_id=sender["sender_identity_id"],
    )
    with acting_as(conn, owner):
        checks = one(conn, "select public.campaign_checks(%s) as c", (campaign,))["c"]
    assert checks["sunset_excluded"] == 4
    assert start(conn, owner, campaign) == 4
    frozen = {
        row["contact_id"]
        for row in conn.execute(
            "select contact_id from public.campaign_recipients where campaign_id = %s", (campaign,)
        )
    }
    assert frozen == {old[0], old[2], *new}

    # The workspace may widen the window.
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.deliverability_settings (workspace_id, sunset_days)"
            " values (%s, 365)",
            (owner.workspace_id,),
        )
        widened = one(conn, "select public.campaign_checks(%s) as c", (campaign,))["c"]
    assert widened["sunset_excluded"] == 3


def test_a_sender_whose_domain_does_not_sign_with_dkim_is_refused(conn: Conn) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 3, prefix=uuid.uuid4().hex[:8]))
    sender = one(conn, "select sender_identity_id from public.campaigns where id = %s", (campaign,))
    conn.execute(
        "update public.sender_identities set dkim_status = 'PENDING' where id = %s",
        (sender["sender_identity_id"],),
    )
    with acting_as(conn, owner):
        checks = one(conn, "select public.campaign_checks(%s) as c", (campaign,))["c"]
    assert checks["may_start"] is False
    assert {c["check"]: c["status"] for c in checks["checks"]}["dkim_aligned"] == "fail"
    with refused(409, "sender_not_aligned"), acting_as(conn, owner):
        conn.execute("select public.start_campaign(%s)", (campaign,))
    conn.execute(
        "update public.sender_identities set dkim_status = 'SUCCESS' where id = %s",
        (sender["sender_identity_id"],),
    )
    assert start(conn, owner, campaign) == 3


def test_the_checks_show_role_never_engaged_and_soft_bounced_shares_to_members_only(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    stranger = create_user(conn)
    people = add_contacts(conn, owner, 8, prefix=uuid.uuid4().hex[:8])
    roles = add_contacts(conn, owner, 2, prefix="x")
    conn.execute(
        "update public.contacts set email = case when email like 'x-1@%%' then"
        " 'info-' || gen_random_uuid() || '@shop.example' else email end where id = any(%s)",
        (roles,),
    )
    conn.execute(
        "update public.contacts set email = 'noreply@' || gen_random_uuid() || '.example'"
        " where id = %s",
        (roles[1],),
    )
    campaign = list_campaign(conn, owner, people + roles)

    with acting_as(conn, viewer):
        checks = one(conn, "select public.campaign_checks(%s) as c", (campaign,))["c"]
    assert checks["audience_sampled"] == 10
    assert float(checks["shares"]["role_addresses"]) == pytest.approx(0.1)
    assert float(checks["shares"]["never_engaged"]) == 1.0
    statuses = {c["check"]: c["status"] for c in checks["checks"]}
    assert statuses["never_engaged"] == "warn" and statuses["role_addresses"] == "warn"
    assert statuses["sender_verified"] == "pass" and checks["may_start"] is True
    with refused(404, "campaign_not_found"), acting_as(conn, stranger):
        conn.execute("select public.campaign_checks(%s)", (campaign,))


def test_dmarc_policy_and_alignment_from_dns_show_in_the_checks(conn: Conn) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 2, prefix=uuid.uuid4().hex[:8]))
    identity = one(
        conn, "select sender_identity_id from public.campaigns where id = %s", (campaign,)
    )
    dns = shared_dns()
    lookup = DmarcLookup(dns.address)

    def dmarc(
        from_email: str | None = None, mail_from: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any], bool]:
        """As the edge does on a refresh: the identity's domain looked up and SES's MAIL FROM
        saved, then the checks."""
        found = lookup.lookup("news.example.com")
        conn.execute(
            "select private.save_sender_alignment(%s, %s, %s, %s)",
            (
                identity["sender_identity_id"],
                Jsonb(found.as_json()),
                mail_from,
                "SUCCESS" if mail_from else None,
            ),
        )
        if from_email:
            conn.execute(
                "update public.campaigns set from_email = %s where id = %s", (from_email, campaign)
            )
        with acting_as(conn, owner):
            checks = one(conn, "select public.campaign_checks(%s) as c", (campaign,))["c"]
        [check] = [c for c in checks["checks"] if c["check"] == "dmarc"]
        spf.update(next(c for c in checks["checks"] if c["check"] == "spf"))
        return check, checks["dmarc"], checks["may_start"]

    spf: dict[str, Any] = {}

    with acting_as(conn, owner):
        checks = one(conn, "select public.campaign_checks(%s) as c", (campaign,))["c"]
    assert {c["check"]: c["status"] for c in checks["checks"]}["dmarc"] == "warn"

    # No record at the domain or its parent: a warning, not a refusal.
    dns.zone.txt.pop("_dmarc.example.com", None)
    check, found, may_start = dmarc()
    assert (check["status"], found["policy"], may_start) == ("warn", "missing", True)
    assert check["detail"].startswith("No DMARC record for news.example.com")

    # The parent's record covers the subdomain (its sp=), DKIM signs as the From domain.
    dns.zone.txt["_dmarc.example.com"] = ["v=DMARC1; p=quarantine; sp=none; rua=mailto:d@x.example"]
    check, found, may_start = dmarc()
    assert (check["status"], found["policy"], found["alignment"]) == ("pass", "none", "aligned")
    assert check["detail"] == "DMARC p=none (_dmarc.example.com), aligned with news.example.com"
    # Without a custom MAIL FROM, SPF is SES's own: a warning, DMARC rests on DKIM.
    assert spf["status"] == "warn" and "amazonses.com" in spf["detail"]

    # Strict DKIM alignment and a From on a subdomain of the signing domain: fails.
    dns.zone.txt["_dmarc.example.com"] = ["v=DMARC1; p=reject; adkim=s"]
    check, found, may_start = dmarc("offers@eu.news.example.com")
    assert (check["status"], found["policy"], found["alignment"]) == ("fail", "reject", "unaligned")
    assert may_start is False and "adkim=s" in check["detail"]
    # A custom MAIL FROM under the From domain aligns SPF (aspf relaxed): DMARC passes again.
    check, found, may_start = dmarc("offers@eu.news.example.com", "bounce.eu.news.example.com")
    assert (check["status"], found["alignment"], may_start) == ("pass", "aligned", True)
    assert (spf["status"], spf["detail"]) == (
        "pass",
        "SPF aligned with eu.news.example.com through the custom MAIL FROM"
        " bounce.eu.news.example.com",
    )

    # DNS failing is said as such, never taken as a missing record.
    dns.zone.failing.add("_dmarc.news.example.com")
    try:
        check, found, may_start = dmarc("hello@news.example.com")
    finally:
        dns.zone.failing.discard("_dmarc.news.example.com")
        dns.zone.txt.pop("_dmarc.example.com", None)
    assert (check["status"], found["alignment"], may_start) == ("warn", "unknown", True)
    assert "could not be looked up" in check["detail"]


def test_the_soft_bounced_share_counts_transient_bounces_of_the_last_90_days(conn: Conn) -> None:
    owner = create_user(conn)
    people = add_contacts(conn, owner, 10, prefix=uuid.uuid4().hex[:8])
    earlier = list_campaign(conn, owner, people)
    start(conn, owner, earlier)
    # One soft bounce 10 days ago, one 100 days ago (too old), one permanent (suppressed, gone).
    for index, kind, days in ((0, "Transient", 10), (1, "Transient", 100), (2, "Permanent", 5)):
        conn.execute(
            "update public.campaign_recipients set status = 'sent', bounce_type = %s,"
            " bounced_at = now() - make_interval(days => %s)"
            " where campaign_id = %s and contact_id = %s",
            (kind, days, earlier, people[index]),
        )
    conn.execute("update public.campaigns set status = 'sent' where id = %s", (earlier,))
    sender = one(conn, "select sender_identity_id from public.campaigns where id = %s", (earlier,))
    campaign = draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, people, name="Again")],
        sender_id=sender["sender_identity_id"],
    )
    with acting_as(conn, owner):
        checks = one(conn, "select public.campaign_checks(%s) as c", (campaign,))["c"]
    assert float(checks["shares"]["soft_bounced"]) == pytest.approx(1 / checks["audience_sampled"])
    soft = {c["check"]: c for c in checks["checks"]}["soft_bounced"]
    assert soft["status"] == "warn" and "soft-bounced in the last 90 days" in soft["detail"]
