"""Campaign analytics: delivery and engagement counts and rates per variant and per campaign,
last-touch order attribution, and who may see which rows. Campaigns are started for real, then
the ledger rows are updated the way SES's events update them."""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from tests.factories.email import (
    DEFAULT_HTML,
    add_contacts,
    draft_campaign,
    email_list,
    start,
    verified_sender,
)
from tests.factories.workspaces import (
    User,
    acting_as,
    acting_as_anon,
    add_member,
    create_user,
    make_project,
    one,
)

Conn = psycopg.Connection[Any]

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TWO_VARIANTS: list[tuple[str, str, str, str | None, int]] = [
    ("A", "Spring sale", DEFAULT_HTML, None, 1),
    ("B", "Spring sale: 20% off", DEFAULT_HTML, None, 1),
]
COUNTS = (
    "recipients",
    "sent",
    "delivered",
    "bounced",
    "unique_opens",
    "unique_clicks",
    "complained",
    "unsubscribed",
)
RATES = (
    "open_rate",
    "click_rate",
    "click_to_open_rate",
    "bounce_rate",
    "complaint_rate",
    "unsubscribe_rate",
)


def at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def d(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


# --- the ledger, as the worker and SES events write it -----------------------------------------


def ses_sent(conn: Conn, recipient: uuid.UUID, when: datetime = T0) -> None:
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = %s,"
        " ses_message_id = gen_random_uuid()::text where id = %s",
        (when, recipient),
    )


def ses_delivery(conn: Conn, recipient: uuid.UUID, when: datetime = T0) -> None:
    conn.execute(
        "update public.campaign_recipients set delivered_at = coalesce(delivered_at, %s)"
        " where id = %s",
        (when, recipient),
    )


def ses_bounce(conn: Conn, recipient: uuid.UUID, bounce_type: str) -> None:
    conn.execute(
        "update public.campaign_recipients set bounced_at = %s, bounce_type = %s where id = %s",
        (T0, bounce_type, recipient),
    )


def ses_open(conn: Conn, recipient: uuid.UUID, when: datetime = T0) -> None:
    conn.execute(
        "update public.campaign_recipients set opened_at = coalesce(opened_at, %s),"
        " last_opened_at = greatest(last_opened_at, %s), opens = opens + 1 where id = %s",
        (when, when, recipient),
    )


def ses_click(conn: Conn, recipient: uuid.UUID, when: datetime = T0) -> None:
    conn.execute(
        "update public.campaign_recipients set clicked_at = least(clicked_at, %s),"
        " last_clicked_at = greatest(last_clicked_at, %s), clicks = clicks + 1 where id = %s",
        (when, when, recipient),
    )


def ses_complaint(conn: Conn, recipient: uuid.UUID) -> None:
    conn.execute(
        "update public.campaign_recipients set complained_at = %s where id = %s", (T0, recipient)
    )


def unsubscribe(conn: Conn, workspace: uuid.UUID, recipient: uuid.UUID) -> None:
    contact = one(
        conn, "select contact_id from public.campaign_recipients where id = %s", (recipient,)
    )["contact_id"]
    conn.execute("select private.unsubscribe_contact(%s, %s, %s)", (workspace, contact, recipient))


# --- campaigns and orders ----------------------------------------------------------------------


def started_campaign(
    conn: Conn,
    user: User,
    contacts: list[uuid.UUID],
    sender_id: uuid.UUID,
    *,
    domain: str = "news.example.com",
    attribution_days: int | None = None,
) -> uuid.UUID:
    """A two-variant (A/B, equal weights) campaign to `contacts`, started by `user`."""
    campaign = draft_campaign(
        conn,
        user,
        list_ids=[email_list(conn, user, contacts, name=f"List {uuid.uuid4().hex[:8]}")],
        sender_id=sender_id,
        variants=TWO_VARIANTS,
        from_email=f"hello@{domain}",
    )
    if attribution_days is not None:
        with acting_as(conn, user):
            conn.execute(
                "update public.campaigns set attribution_days = %s where id = %s",
                (attribution_days, campaign),
            )
    assert start(conn, user, campaign) == len(contacts)
    return campaign


def by_variant(conn: Conn, campaign: uuid.UUID) -> dict[str, list[uuid.UUID]]:
    """The campaign's recipient ids per variant name, each list in email order."""
    rows = conn.execute(
        "select v.name, r.id from public.campaign_recipients r"
        " join public.campaign_variants v on v.id = r.variant_id"
        " where r.campaign_id = %s order by v.name, r.email",
        (campaign,),
    ).fetchall()
    variants: dict[str, list[uuid.UUID]] = {}
    for row in rows:
        variants.setdefault(row["name"], []).append(row["id"])
    return variants


def recipients_of(conn: Conn, campaign: uuid.UUID) -> dict[uuid.UUID, tuple[uuid.UUID, str]]:
    """contact id -> (recipient id, variant name) for one campaign."""
    return {
        row["contact_id"]: (row["id"], row["name"])
        for row in conn.execute(
            "select r.contact_id, r.id, v.name from public.campaign_recipients r"
            " join public.campaign_variants v on v.id = r.variant_id where r.campaign_id = %s",
            (campaign,),
        )
    }


def place_order(
    conn: Conn,
    project: uuid.UUID,
    email: str,
    placed: datetime,
    total: int,
    *,
    status: str = "paid",
    currency: str = "CZK",
) -> None:
    conn.execute(
        "select private.upsert_order(%s, 'shopify', %s)",
        (
            project,
            Jsonb(
                {
                    "external_id": f"{email}-{placed.isoformat()}",
                    "status": status,
                    "placed_at": placed.isoformat(),
                    "total": str(total),
                    "currency": currency,
                    "customer": {"email": email},
                }
            ),
        ),
    )


def variant_rows(conn: Conn, campaign: uuid.UUID) -> dict[str, dict[str, Any]]:
    return {
        row["variant_name"]: row
        for row in conn.execute(
            "select * from analytics.campaign_variant_performance where campaign_id = %s",
            (campaign,),
        )
    }


def campaign_row(conn: Conn, campaign: uuid.UUID) -> dict[str, Any]:
    return one(
        conn, "select * from analytics.campaign_performance where campaign_id = %s", (campaign,)
    )


def metrics(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row[key] for key in COUNTS + RATES}


def expected(counts: tuple[int, ...], rates: tuple[str | None, ...]) -> dict[str, Any]:
    return dict(zip(COUNTS, counts, strict=True)) | {
        key: d(value) for key, value in zip(RATES, rates, strict=True)
    }


# --- tests -------------------------------------------------------------------------------------


def test_counts_and_rates_per_variant_and_per_campaign(conn: Conn) -> None:
    owner = create_user(conn)
    contacts = add_contacts(conn, owner, 10, prefix="rates")
    sender_id = verified_sender(conn, owner)
    campaign = started_campaign(conn, owner, contacts, sender_id)
    never_started = draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, contacts, name="Drafts")],
        sender_id=sender_id,
        variants=TWO_VARIANTS,
    )
    variants = by_variant(conn, campaign)
    assert {name: len(ids) for name, ids in variants.items()} == {"A": 5, "B": 5}
    a, b = variants["A"], variants["B"]

    # A: a0 opens three times and clicks twice, a1 opens, a2 bounces, a3 opens and complains,
    # a4 was skipped (never sent).
    for recipient in a[:4]:
        ses_sent(conn, recipient)
    for recipient in (a[0], a[1], a[3]):
        ses_delivery(conn, recipient)
    for _ in range(3):
        ses_open(conn, a[0])
    ses_click(conn, a[0])
    ses_click(conn, a[0], at(1))
    ses_open(conn, a[1])
    ses_bounce(conn, a[2], "Permanent")
    ses_open(conn, a[3])
    ses_complaint(conn, a[3])
    conn.execute("update public.campaign_recipients set status = 'skipped' where id = %s", (a[4],))
    # B: b0 opens, clicks and unsubscribes, b1 opens five times and clicks, b2 is delivered,
    # b3 was sent and has no Delivery event yet (still counts as delivered: sent - bounced),
    # b4 bounces (transient: the message still did not arrive).
    for recipient in b:
        ses_sent(conn, recipient)
    for recipient in b[:3]:
        ses_delivery(conn, recipient)
    ses_open(conn, b[0])
    ses_click(conn, b[0])
    unsubscribe(conn, owner.workspace_id, b[0])
    for _ in range(5):
        ses_open(conn, b[1])
    ses_click(conn, b[1])
    ses_bounce(conn, b[4], "Transient")

    with acting_as(conn, owner):
        per_variant = variant_rows(conn, campaign)
        total = campaign_row(conn, campaign)
        listed = {
            r["campaign_id"]
            for r in conn.execute(
                "select campaign_id from analytics.campaign_performance where workspace_id = %s",
                (owner.workspace_id,),
            )
        }
        raw_opens = one(
            conn,
            "select sum(opens) as opens from public.campaign_recipients where id = any(%s)",
            (a,),
        )["opens"]

    assert raw_opens == 5  # a0's three opens count once among the unique opens
    assert metrics(per_variant["A"]) == expected(
        (5, 4, 3, 1, 3, 1, 1, 0),
        # 3/3, 1/3, 1/3, 1/4, 1/3, 0/3
        ("1.0000", "0.3333", "0.3333", "0.2500", "0.3333", "0.0000"),
    )
    assert metrics(per_variant["B"]) == expected(
        (5, 5, 4, 1, 2, 2, 0, 1),
        # 2/4, 2/4, 2/2, 1/5, 0/4, 1/4
        ("0.5000", "0.5000", "1.0000", "0.2000", "0.0000", "0.2500"),
    )
    assert metrics(total) == expected(
        (10, 9, 7, 2, 5, 3, 1, 1),
        # 5/7, 3/7, 3/5, 2/9, 1/7, 1/7
        ("0.7143", "0.4286", "0.6000", "0.2222", "0.1429", "0.1429"),
    )
    assert total["variants"] == 2
    assert (total["attributed_orders"], total["attributed_revenue"]) == (0, Decimal("0.00"))
    assert total["campaign_status"] == "sending"
    assert total["currency"] == "EUR"
    assert per_variant["A"]["campaign_name"] == "November news"
    assert listed == {campaign}
    assert never_started not in listed


def test_rates_are_null_when_nothing_was_delivered(conn: Conn) -> None:
    owner = create_user(conn)
    contacts = add_contacts(conn, owner, 2, prefix="nulls")
    campaign = started_campaign(conn, owner, contacts, verified_sender(conn, owner))
    variants = by_variant(conn, campaign)
    assert {name: len(ids) for name, ids in variants.items()} == {"A": 1, "B": 1}
    ses_sent(conn, variants["A"][0])
    ses_bounce(conn, variants["A"][0], "Permanent")  # B's recipient is still queued

    with acting_as(conn, owner):
        per_variant = variant_rows(conn, campaign)
        total = campaign_row(conn, campaign)

    no_rates = (None, None, None, None, None, None)
    assert metrics(per_variant["A"]) == expected(
        (1, 1, 0, 1, 0, 0, 0, 0), (None, None, None, "1.0000", None, None)
    )
    assert metrics(per_variant["B"]) == expected((1, 0, 0, 0, 0, 0, 0, 0), no_rates)
    assert metrics(total) == expected(
        (2, 1, 0, 1, 0, 0, 0, 0), (None, None, None, "1.0000", None, None)
    )


def test_orders_are_attributed_to_the_last_click_within_its_campaigns_window(conn: Conn) -> None:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set base_currency = 'CZK' where id = %s", (owner.workspace_id,)
    )
    project = make_project(conn, owner)
    names = ["p", "p2", "q", "r", "s", "s2", "t", "u"]
    ids = dict(zip(names, add_contacts(conn, owner, len(names), prefix="buyer"), strict=True))
    email = {
        row["id"]: row["email"]
        for row in conn.execute(
            "select id, email from public.contacts where id = any(%s)", (list(ids.values()),)
        )
    }
    sender_id = verified_sender(conn, owner)
    spring = started_campaign(conn, owner, list(ids.values()), sender_id)  # 5-day window
    flash = started_campaign(conn, owner, list(ids.values()), sender_id, attribution_days=2)
    ledger = {spring: recipients_of(conn, spring), flash: recipients_of(conn, flash)}
    for campaign in ledger:
        for recipient, _ in ledger[campaign].values():
            ses_sent(conn, recipient, at(-1 / 24))
            ses_delivery(conn, recipient, at(-1 / 48))

    clicks = [
        ("p", spring, 0),
        ("p2", spring, 0),
        ("q", spring, 0),
        ("q", flash, 1),
        ("r", spring, 0),
        ("s", spring, 0),
        ("s", spring, 3),  # s clicks spring again after ordering
        ("s2", flash, 0),
        ("s2", spring, 1),
        ("s2", flash, 3),  # ... and s2 clicks flash again after ordering
        ("t", flash, 0),
        ("u", spring, 0),
        ("u", flash, 1),
    ]
    for name, clicked, click_day in clicks:
        ses_click(conn, ledger[clicked][ids[name]][0], at(click_day))

    # (contact, days after T0, total, status, currency, the campaign it goes to)
    orders: list[tuple[str, float, int, str, str, uuid.UUID | None]] = [
        ("p", 1, 20, "paid", "USD", spring),  # no exchange rate: an order, no revenue
        ("p", 4, 100, "paid", "CZK", spring),
        ("p", 5 + 1 / 1440, 50, "paid", "CZK", None),  # a minute past the 5-day window
        ("p2", 1, 500, "cancelled", "CZK", None),
        ("p2", 2, 400, "pending", "CZK", None),
        ("p2", 3, 35, "fulfilled", "CZK", spring),
        ("p2", 5, 30, "paid", "CZK", spring),  # exactly 5 x 24 h after the click
        ("q", 2, 70, "paid", "CZK", flash),  # flash's click is later than spring's
        ("r", -1, 80, "paid", "CZK", None),  # before any click
        ("s", 2, 40, "paid", "CZK", spring),  # the click after it does not count
        ("s2", 2, 60, "paid", "CZK", spring),  # flash's later click is after the order
        ("t", 1, 15, "paid", "CZK", flash),
        ("t", 3, 90, "paid", "CZK", None),  # outside flash's 2-day window
        ("u", 4, 110, "paid", "CZK", None),  # last touch flash expired; spring does not take over
    ]
    for name, day, total, status, currency, _ in orders:
        place_order(
            conn, project, email[ids[name]], at(day), total, status=status, currency=currency
        )
    want: dict[tuple[uuid.UUID, str], tuple[int, Decimal]] = {
        (campaign, variant): (0, Decimal("0.00"))
        for campaign in (spring, flash)
        for variant in ("A", "B")
    }
    for name, _, total, _, currency, target in orders:
        if target is not None:
            key = (target, ledger[target][ids[name]][1])
            count, money = want[key]
            # the USD order has no exchange rate, so no base_total
            want[key] = (count + 1, money + (Decimal(total) if currency == "CZK" else 0))

    with acting_as(conn, owner):
        per_variant = {
            (row["campaign_id"], row["variant_name"]): (
                row["attributed_orders"],
                row["attributed_revenue"],
            )
            for row in conn.execute(
                "select * from analytics.campaign_variant_performance where workspace_id = %s",
                (owner.workspace_id,),
            )
        }
        totals = {
            row["campaign_id"]: (
                row["attributed_orders"],
                row["attributed_revenue"],
                row["currency"],
            )
            for row in conn.execute(
                "select * from analytics.campaign_performance where workspace_id = %s",
                (owner.workspace_id,),
            )
        }

    assert per_variant == want
    assert totals == {
        spring: (6, Decimal("265.00"), "CZK"),
        flash: (2, Decimal("85.00"), "CZK"),
    }
    assert sum(count for count, _ in per_variant.values()) == sum(
        1 for order in orders if order[5] is not None
    )


def test_members_see_their_workspaces_strangers_nothing_and_anon_is_refused(conn: Conn) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    other = create_user(conn)
    stranger = create_user(conn)
    mine = started_campaign(
        conn, owner, add_contacts(conn, owner, 2, prefix="mine"), verified_sender(conn, owner)
    )
    theirs = started_campaign(
        conn,
        other,
        add_contacts(conn, other, 2, prefix="theirs"),
        verified_sender(conn, other, "other-shop.example.com"),
        domain="other-shop.example.com",
    )
    queries = [
        "select workspace_id, campaign_id from analytics.campaign_performance",
        "select workspace_id, campaign_id from analytics.campaign_variant_performance",
        "select workspace_id, campaign_id from analytics.campaign_variant_stats()",
    ]
    seen_by = {owner: mine, viewer: mine, other: theirs}
    for user, campaign in seen_by.items():
        workspace = one(
            conn, "select workspace_id from public.campaigns where id = %s", (campaign,)
        )
        with acting_as(conn, user):
            for query in queries:
                rows = {(r["workspace_id"], r["campaign_id"]) for r in conn.execute(query)}
                assert rows == {(workspace["workspace_id"], campaign)}, query
    with acting_as(conn, stranger):
        for query in queries:
            assert conn.execute(query).fetchall() == [], query
    for query in queries:
        with pytest.raises(errors.InsufficientPrivilege), acting_as_anon(conn):
            conn.execute(query)


def test_analysts_see_every_workspace(conn: Conn, database_url: str) -> None:
    owner = create_user(conn)
    other = create_user(conn)
    mine = started_campaign(
        conn, owner, add_contacts(conn, owner, 3, prefix="an"), verified_sender(conn, owner)
    )
    theirs = started_campaign(
        conn,
        other,
        add_contacts(conn, other, 2, prefix="an"),
        verified_sender(conn, other, "other-shop.example.com"),
        domain="other-shop.example.com",
    )
    ses_sent(conn, by_variant(conn, mine)["A"][0])
    role = sql.Identifier(f"analyst_{uuid.uuid4().hex[:10]}")
    conn.execute(sql.SQL("create role {} login in role growthbase_analyst").format(role))
    analyst_url = psycopg.conninfo.make_conninfo(database_url, user=role.as_string(conn).strip('"'))
    try:
        with psycopg.connect(analyst_url, row_factory=dict_row) as analyst:
            campaigns = {
                r["campaign_id"]: r
                for r in analyst.execute("select * from analytics.campaign_performance")
            }
            variants = analyst.execute(
                "select campaign_id from analytics.campaign_variant_performance"
            ).fetchall()
            with pytest.raises(errors.InsufficientPrivilege):
                analyst.execute("select * from public.campaign_recipients")
    finally:
        conn.execute(sql.SQL("drop role {}").format(role))
    started = {
        r["id"]: r["variants"]
        for r in conn.execute(
            "select c.id, (select count(*) from public.campaign_variants v"
            " where v.campaign_id = c.id) as variants"
            " from public.campaigns c where c.started_at is not null"
        )
    }
    assert {mine, theirs} <= campaigns.keys()
    assert campaigns.keys() == started.keys()
    assert len(variants) == sum(started.values())
    assert (campaigns[mine]["recipients"], campaigns[mine]["sent"]) == (3, 1)
    assert (campaigns[theirs]["recipients"], campaigns[theirs]["sent"]) == (2, 0)
