"""RFM read from customer facts gives, for any as-of date, what counting every order gives:
today (facts only), dates in the past (customers who bought since are counted from orders),
and with orders dated ahead of today."""

import itertools
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import dict_row
from pydantic import SecretStr

from api.app import create_app
from api.core.settings import Settings
from tests.factories.statistics import crowded_customer_facts, forget_statistics
from tests.factories.workspaces import User, acting_as, create_user, fund, make_project

Conn = psycopg.Connection[Any]

# The scoring as the first RFM migration wrote it: every qualifying order, grouped and ranked.
FROM_ORDERS = """
with per_contact as (
  select o.workspace_id, o.contact_id,
         min(o.placed_at) as first_order_at, max(o.placed_at) as last_order_at,
         %(as_of)s::date - (max(o.placed_at) at time zone 'UTC')::date as recency_days,
         count(*)::integer as frequency,
         coalesce(sum(o.base_total), 0)::numeric(14, 2) as monetary
  from public.orders o
  where o.status in ('paid', 'fulfilled') and o.contact_id is not null
    and o.placed_at < ((%(as_of)s::date + 1)::timestamp at time zone 'UTC')
    and o.workspace_id = %(workspace)s
  group by o.workspace_id, o.contact_id
),
ranked as (
  select c.*,
         rank() over (partition by c.workspace_id order by c.recency_days desc) as r_rank,
         rank() over (partition by c.workspace_id order by c.frequency) as f_rank,
         rank() over (partition by c.workspace_id order by c.monetary) as m_rank,
         count(*) over (partition by c.workspace_id) as customers
  from per_contact c
)
select r.contact_id, r.first_order_at, r.last_order_at, r.recency_days, r.frequency, r.monetary,
       (1 + 5 * (r.r_rank - 1) / r.customers)::integer as r_score,
       (1 + 5 * (r.f_rank - 1) / r.customers)::integer as f_score,
       (1 + 5 * (r.m_rank - 1) / r.customers)::integer as m_score
from ranked r
order by r.contact_id
"""

FROM_FACTS = """
select contact_id, first_order_at, last_order_at, recency_days, frequency, monetary,
       r_score, f_score, m_score
from analytics.rfm(%(as_of)s) where workspace_id = %(workspace)s
order by contact_id
"""


def shop_with_history(conn: Conn, rng: random.Random) -> tuple[User, uuid.UUID]:
    """A workspace with 60 contacts and 400 orders of every status, some dated ahead of today,
    some without a contact or known revenue; returns its owner and project."""
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    project = make_project(conn, owner)
    contacts = [
        r["id"]
        for r in conn.execute(
            "insert into public.contacts (workspace_id, email)"
            " select %s, 'rfm-' || n || '-' || gen_random_uuid() || '@example.test'"
            " from generate_series(1, 60) as n returning id",
            (owner.workspace_id,),
        )
    ]
    today = datetime.now(UTC).date()
    rows = []
    for number in range(400):
        # Many customers share a day or an order count, so the ties are exercised; some orders
        # are dated after today, some have no contact or no known revenue.
        placed = datetime.combine(today, datetime.min.time(), UTC) - timedelta(
            days=rng.choice([rng.randint(0, 400), rng.randint(0, 30)]) - 5,
            hours=rng.randint(0, 23),
        )
        total = Decimal(rng.choice([10, 20, 20, 35, rng.randint(1, 300)]))
        rows.append(
            (
                rng.choice([*contacts[: rng.randint(1, 60)], None]),
                f"f-{number}",
                rng.choice(["paid", "paid", "fulfilled", "pending", "refunded"]),
                placed,
                total,
                None if rng.random() < 0.1 else total,
            )
        )
    conn.execute(
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency, base_total)"
        " select %s, %s, r.contact_id, 'csv', r.external_id, r.status, r.placed_at, r.total,"
        " 'EUR', r.base_total from unnest(%s::uuid[], %s::text[], %s::text[], %s::timestamptz[],"
        " %s::numeric[], %s::numeric[])"
        " as r(contact_id, external_id, status, placed_at, total, base_total)",
        [owner.workspace_id, project, *map(list, zip(*rows, strict=True))],
    )
    return owner, project


def scored_alike(conn: Conn, owner: User, dates: list[date]) -> int:
    """Asserts analytics.rfm gives, for each date, what counting every order gives; returns how
    many customer rows were compared."""
    compared = 0
    for as_of in dates:
        params = {"as_of": as_of, "workspace": owner.workspace_id}
        expected = conn.execute(FROM_ORDERS, params).fetchall()
        with acting_as(conn, owner):
            got = conn.execute(FROM_FACTS, params).fetchall()
        assert got == expected, as_of
        compared += len(got)
    return compared


# The segment summary as analytics.rfm_segments first defined it: every customer's row grouped.
SEGMENTS_FROM_ROWS = """
select r.segment, count(*) as customers, sum(r.monetary) as revenue,
       round(sum(r.monetary) / nullif(sum(r.frequency), 0), 2) as average_order_value,
       round(count(*)::numeric / sum(count(*)) over (), 4) as share_of_customers,
       round(sum(r.monetary) / nullif(sum(sum(r.monetary)) over (), 0), 4) as share_of_revenue
from analytics.rfm(current_date) r
group by r.segment
order by r.segment
"""

SEGMENTS = """
select segment, customers, revenue, average_order_value, share_of_customers, share_of_revenue
from analytics.rfm_segments
order by segment
"""


def segments_alike(conn: Conn, owner: User) -> None:
    with acting_as(conn, owner):
        assert conn.execute(SEGMENTS).fetchall() == conn.execute(SEGMENTS_FROM_ROWS).fetchall()


def refresh(conn: Conn, owner: User) -> int:
    row = conn.execute(
        "select private.refresh_rfm_kept(array[%s]::uuid[]) as n", (owner.workspace_id,)
    ).fetchone()
    assert row is not None
    return int(row["n"])


def test_every_as_of_date_scores_as_counting_every_order_would(conn: Conn) -> None:
    rng = random.Random(14)
    owner, _ = shop_with_history(conn, rng)
    today = datetime.now(UTC).date()
    dates = [today, today + timedelta(days=3), today - timedelta(days=1), date(2025, 12, 31)]
    dates += [today - timedelta(days=rng.randint(2, 420)) for _ in range(4)]
    assert scored_alike(conn, owner, dates) > 200
    # The same from kept scores, once refreshed.
    assert refresh(conn, owner) == 1
    assert scored_alike(conn, owner, dates) > 200


def test_counted_scores_hold_when_cut_points_coincide(conn: Conn) -> None:
    """Counted scores are a CASE over the four cut points, worst first: with most customers
    alike, several cut points are one value, and a customer must still score as ranking does."""
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    project = make_project(conn, owner)
    # 20 customers: 17 with one order of 20 on one day, then 2 and 3 orders, and one bigger.
    conn.execute(
        "with c as (insert into public.contacts (workspace_id, email)"
        " select %(ws)s, 'tie-' || n || '@example.test' from generate_series(1, 20) as n"
        " returning id, email)"
        " insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency, base_total)"
        " select %(ws)s, %(project)s, c.id, 'csv', c.email || '-' || k, 'paid',"
        " now() - interval '10 days' + (k - 1) * interval '1 day', t, 'EUR', t"
        " from c, lateral (select case c.email when 'tie-18@example.test' then 2"
        " when 'tie-19@example.test' then 3 when 'tie-20@example.test' then 1 else 1 end as n,"
        " case c.email when 'tie-20@example.test' then 500 else 20 end as t) as x,"
        " generate_series(1, x.n) as k",
        {"ws": owner.workspace_id, "project": project},
    )
    today = datetime.now(UTC).date()
    assert scored_alike(conn, owner, [today, today - timedelta(days=5)]) > 30
    with acting_as(conn, owner):
        scores = conn.execute(
            "select f_score, count(*) as n from analytics.rfm(current_date)"
            " where workspace_id = %s group by f_score order by f_score",
            (owner.workspace_id,),
        ).fetchall()
    assert [(r["f_score"], r["n"]) for r in scores] == [(1, 18), (5, 2)]


def test_kept_scores_hold_through_writes_and_refreshes(conn: Conn) -> None:
    rng = random.Random(15)
    owner, project = shop_with_history(conn, rng)
    today = datetime.now(UTC).date()
    # Orders dated ahead of today keep today on the counting path; without them, kept scores
    # serve today and any later date.
    conn.execute(
        "delete from public.orders where workspace_id = %s and placed_at > now()",
        (owner.workspace_id,),
    )
    dates = [today, today + timedelta(days=40), today - timedelta(days=9)]
    assert refresh(conn, owner) == 1
    assert refresh(conn, owner) == 0  # nothing changed since
    scored_alike(conn, owner, dates)
    writes = [
        # a new customer and a returning one, in one statement
        (
            "insert into public.orders (workspace_id, project_id, contact_id, source,"
            " external_id, status, placed_at, total, currency, base_total)"
            " select %(ws)s, %(project)s, c.id, 'csv', 'k-' || c.id, 'paid',"
            " now() - interval '2 days', 20, 'EUR', 20"
            " from (select id from public.contacts where workspace_id = %(ws)s"
            " order by email limit 2) as c"
        ),
        # a refund
        (
            "update public.orders set status = 'refunded' where id = (select id from"
            " public.orders where workspace_id = %(ws)s and status = 'paid'"
            " and contact_id is not null order by external_id limit 1)"
        ),
        # a customer's only orders deleted: one customer fewer
        (
            "delete from public.orders where contact_id = (select contact_id from"
            " public.customer_facts where workspace_id = %(ws)s order by orders_count,"
            " contact_id limit 1)"
        ),
        # a customer deleted (their orders stay, without a contact)
        (
            "delete from public.contacts where id = (select contact_id from"
            " public.customer_facts where workspace_id = %(ws)s order by revenue desc,"
            " contact_id limit 1)"
        ),
    ]
    segments_alike(conn, owner)
    for write in writes:
        conn.execute(write, {"ws": owner.workspace_id, "project": project})
        scored_alike(conn, owner, dates)
        segments_alike(conn, owner)
        assert refresh(conn, owner) == 1
        scored_alike(conn, owner, dates)
        segments_alike(conn, owner)


def test_a_write_the_refresh_did_not_see_is_not_lost(conn: Conn, database_url: str) -> None:
    owner, _ = shop_with_history(conn, random.Random(16))
    conn.execute(
        "delete from public.orders where workspace_id = %s and placed_at > now()",
        (owner.workspace_id,),
    )
    today = datetime.now(UTC).date()
    with psycopg.connect(database_url) as writer:
        # A refund not yet committed when the refresh reads the facts.
        writer.execute(
            "update public.orders set status = 'refunded' where id = (select id from"
            " public.orders where workspace_id = %s and status = 'paid'"
            " and contact_id is not null order by external_id limit 1)",
            (owner.workspace_id,),
        )
        with conn.transaction():
            conn.execute("set local lock_timeout = '5s'")
            assert refresh(conn, owner) == 1  # without waiting for the writer
        scored_alike(conn, owner, [today])
        writer.commit()
    scored_alike(conn, owner, [today])
    assert refresh(conn, owner) == 1
    scored_alike(conn, owner, [today])


def test_the_cron_endpoint_refreshes_stale_workspaces(conn: Conn, database_url: str) -> None:
    """Where pg_cron is missing, Vercel Cron keeps the scores fresh through the edge."""
    owner, _ = shop_with_history(conn, random.Random(17))
    conn.execute(
        "delete from public.orders where workspace_id = %s and placed_at > now()",
        (owner.workspace_id,),
    )
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url="http://127.0.0.1:54321",
        cron_secret=SecretStr("cron-test-secret"),
    )
    with TestClient(create_app(settings)) as client:
        refused = client.get("/api/v1/cron/rfm-kept")
        answered = client.get(
            "/api/v1/cron/rfm-kept", headers={"Authorization": "Bearer cron-test-secret"}
        )
    assert refused.status_code == 401
    assert answered.status_code == 200
    assert answered.json()["data"]["refreshed_workspaces"] >= 1
    assert refresh(conn, owner) == 0  # the cron left nothing stale in this workspace
    scored_alike(conn, owner, [datetime.now(UTC).date()])


def facts_rows_read(conn: Conn) -> int:
    row = conn.execute(
        "select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) as n"
        " from pg_catalog.pg_stat_xact_user_tables where relid = 'public.customer_facts'::regclass"
    ).fetchone()
    assert row is not None
    return int(row["n"])


@pytest.fixture
def among_many_shops(database_url: str) -> Iterator[None]:
    """Reads plan as over a shop among many: another workspace's 20,000 customers' facts, in a
    transaction kept open and rolled back, and each read with the facts as never analyzed (see
    the reader below). Statistics an earlier test's analyze (autovacuum's, an import's) took of
    a few workspaces' facts made every read hash every workspace's facts."""
    with crowded_customer_facts(database_url, 20000):
        yield


@pytest.mark.usefixtures("among_many_shops")
def test_kept_scores_serve_reads_right_after_a_few_customers_changed(
    conn: Conn, database_url: str
) -> None:
    """A shop of 300 customers whose orders share a few days and amounts (as a real shop's
    customers share them: large ties at the cut points), refreshed, then 30 small writes in a
    seeded order: an order of a customer (some carry the customer across a cut point, some
    not), a new customer's order, a
    refund, an order deleted, two orders in one transaction, a customer deleted. After each,
    every customer's scores, today and ahead, equal counting every order, as do the segments;
    and most reads take the kept scores, reading the changed customers' facts and no other
    (before: every stale read counted all 300)."""
    rng = random.Random(28)
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    project = make_project(conn, owner)
    params = {"ws": owner.workspace_id, "project": project}
    conn.execute(
        "insert into public.contacts (workspace_id, email)"
        " select %(ws)s, 'kept-' || lpad(n::text, 3, '0') || '@example.test'"
        " from generate_series(1, 320) as n",
        params,
    )
    emails = [f"kept-{n:03d}@example.test" for n in range(1, 321)]
    history = [
        (
            emails[min(int(rng.random() ** 2 * 300), 299)],
            f"h-{number}",
            rng.choice(range(10, 400, 10)),
            Decimal(rng.choice([20, 20, 35, 50])),
        )
        for number in range(1200)
    ]
    conn.execute(
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency, base_total)"
        " select %s, %s, c.id, 'csv', r.external_id, 'paid', now() - r.days * interval '1 day',"
        " r.total, 'EUR', r.total"
        " from unnest(%s::text[], %s::text[], %s::integer[], %s::numeric[])"
        "  as r(email, external_id, days, total)"
        " join public.contacts c on c.workspace_id = %s and c.email = r.email",
        [owner.workspace_id, project, *map(list, zip(*history, strict=True)), owner.workspace_id],
    )
    today = datetime.now(UTC).date()
    dates = [today, today + timedelta(days=30)]
    assert refresh(conn, owner) == 1

    def order(email: str, days: int, total: int) -> None:
        """A paid order of the customer with this address, `days` days old."""
        conn.execute(
            "insert into public.orders (workspace_id, project_id, contact_id, source,"
            " external_id, status, placed_at, total, currency, base_total)"
            " select %s, %s, c.id, 'csv', %s, 'paid', now() - %s * interval '1 day', %s,"
            " 'EUR', %s from public.contacts c where c.workspace_id = %s and c.email = %s",
            (
                owner.workspace_id,
                project,
                f"w-{next(numbers):03d}",
                days,
                total,
                total,
                owner.workspace_id,
                email,
            ),
        )

    numbers = itertools.count()
    kept_reads = 0
    for step in range(30):
        kind = rng.choice(["order", "order", "order", "new", "refund", "delete", "two", "gone"])
        if kind == "order":
            order(rng.choice(emails[:300]), rng.choice([10, 20, 200]), rng.choice([20, 35, 400]))
        elif kind == "new":
            order(emails[300 + step % 20], rng.choice([10, 50]), 20)
        elif kind == "refund":
            conn.execute(
                "update public.orders set status = 'refunded' where id = (select o.id"
                " from public.orders o join public.contacts c on c.id = o.contact_id"
                " where o.workspace_id = %s and o.status = 'paid' and c.email = %s"
                " order by o.external_id limit 1)",
                (owner.workspace_id, rng.choice(emails[:300])),
            )
        elif kind == "delete":
            conn.execute(
                "delete from public.orders where id = (select o.id"
                " from public.orders o join public.contacts c on c.id = o.contact_id"
                " where o.workspace_id = %s and c.email = %s order by o.external_id limit 1)",
                (owner.workspace_id, rng.choice(emails[:300])),
            )
        elif kind == "two":
            with conn.transaction():
                order(rng.choice(emails[:300]), 10, 20)
                order(rng.choice(emails[:300]), 20, 35)
        else:
            conn.execute(
                "delete from public.contacts where workspace_id = %s and email = %s",
                (owner.workspace_id, emails.pop(rng.randrange(300))),
            )
        # A connection of its own, so its counts are this read's alone; the facts as never
        # analyzed in it (rolled back).
        with psycopg.connect(database_url, row_factory=dict_row) as reader:
            forget_statistics(reader, ["public.customer_facts"])
            with acting_as(reader, owner):
                reader.execute(FROM_FACTS, {"as_of": today, "workspace": owner.workspace_id})
                read = facts_rows_read(reader)
            reader.rollback()
        kept_reads += read <= 10
        scored_alike(conn, owner, dates)
        segments_alike(conn, owner)
        if step % 3 == 2:
            assert refresh(conn, owner) == 1
    assert kept_reads >= 10, kept_reads
