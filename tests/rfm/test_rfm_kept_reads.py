"""RFM reads of workspaces whose kept scores hold untouched (…_rfm_kept_reads_cheaper.sql): their
kept rows and kept segment totals, beside the caller's other workspaces scored as before, in one
read; every number as counting every order gives it."""

import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories.statistics import crowded_customer_facts, forget_statistics
from tests.factories.workspaces import User, acting_as, add_member
from tests.rfm.test_rfm_from_facts import FROM_ORDERS, shop_with_history

Conn = psycopg.Connection[Any]

ROWS = """
select contact_id, first_order_at, last_order_at, recency_days, frequency, monetary,
       r_score, f_score, m_score
from analytics.rfm(%(as_of)s) where workspace_id = %(workspace)s
order by contact_id
"""

# Per workspace, the segment summary as analytics.rfm_segments first defined it: every
# customer's row grouped.
SEGMENTS_FROM_ROWS = """
select r.workspace_id, r.segment, count(*) as customers, sum(r.monetary) as revenue,
       round(sum(r.monetary) / nullif(sum(r.frequency), 0), 2) as average_order_value,
       round(count(*)::numeric / sum(count(*)) over (partition by r.workspace_id), 4)
         as share_of_customers,
       round(sum(r.monetary) / nullif(sum(sum(r.monetary)) over (partition by r.workspace_id), 0),
             4) as share_of_revenue
from analytics.rfm(current_date) r
where r.workspace_id = any (%(workspaces)s)
group by r.workspace_id, r.segment
order by r.workspace_id, r.segment
"""

SEGMENTS = """
select workspace_id, segment, customers, revenue, average_order_value, share_of_customers,
       share_of_revenue
from analytics.rfm_segments
where workspace_id = any (%(workspaces)s)
order by workspace_id, segment
"""


def refresh(conn: Conn, workspace: uuid.UUID) -> int:
    row = conn.execute(
        "select private.refresh_rfm_kept(array[%s]::uuid[]) as n", (workspace,)
    ).fetchone()
    assert row is not None
    return int(row["n"])


def join(conn: Conn, owner: User, user: User) -> None:
    """`user` joins `owner`'s personal workspace as a member, by invitation."""
    with acting_as(conn, owner):
        token = conn.execute(
            "select token from public.invite_member(%s, %s, 'member')",
            (owner.workspace_id, user.email),
        ).fetchone()["token"]
    with acting_as(conn, user):
        conn.execute("select public.accept_invitation(%s)", (token,))


def kept_rows_read(conn: Conn) -> int:
    """Rows of private.rfm_kept_scores read so far in this transaction."""
    row = conn.execute(
        "select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) as n"
        " from pg_catalog.pg_stat_xact_user_tables"
        " where relid = 'private.rfm_kept_scores'::regclass"
    ).fetchone()
    assert row is not None
    return int(row["n"])


def facts_rows_read(conn: Conn) -> int:
    """Rows of public.customer_facts read so far in this transaction."""
    row = conn.execute(
        "select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) as n"
        " from pg_catalog.pg_stat_xact_user_tables"
        " where relid = 'public.customer_facts'::regclass"
    ).fetchone()
    assert row is not None
    return int(row["n"])


def read_alike(
    conn: Conn, user: User | None, workspaces: list[uuid.UUID], dates: list[date]
) -> None:
    """As `user` (None: the analyst, who sees every workspace), each workspace's scores for each
    date equal counting every order, and the segments equal grouping those scores."""
    for as_of in dates:
        for workspace in workspaces:
            params = {"as_of": as_of, "workspace": workspace}
            expected = conn.execute(FROM_ORDERS, params).fetchall()
            if user is None:
                got = conn.execute(ROWS, params).fetchall()
            else:
                with acting_as(conn, user):
                    got = conn.execute(ROWS, params).fetchall()
            assert len(expected) > 20
            assert got == expected, (as_of, workspace)
    params = {"workspaces": workspaces}
    if user is None:
        segments = conn.execute(SEGMENTS, params).fetchall()
        assert segments == conn.execute(SEGMENTS_FROM_ROWS, params).fetchall()
    else:
        with acting_as(conn, user):
            segments = conn.execute(SEGMENTS, params).fetchall()
            assert segments == conn.execute(SEGMENTS_FROM_ROWS, params).fetchall()
    assert {r["workspace_id"] for r in segments} == set(workspaces)


@pytest.fixture
def among_many_shops(database_url: str) -> Iterator[None]:
    """Reads plan as over shops among many: another workspace's 20,000 customers' facts, in a
    transaction kept open and rolled back, and the reads that count facts with the facts as never
    analyzed. A few dozen facts of another workspace, or statistics an earlier analyze took of a
    few workspaces' facts, made every read hash every workspace's facts to find the workspaces
    with customers."""
    with crowded_customer_facts(database_url, 20000):
        yield


@pytest.mark.usefixtures("among_many_shops")
def test_a_kept_workspace_and_a_counted_one_read_together_as_counting_would(
    conn: Conn, database_url: str
) -> None:
    """A member of two shops: one refreshed and untouched since (kept rows and totals), the other
    never refreshed (counted), then refreshed too, then stale after single orders naming their
    customer (kept where its cut points hold), then stale after a deleted customer (counted);
    every read, the member's and the analyst's, today, ahead and in the past, equals counting
    every order. The segments of an untouched kept shop read none of its kept rows, and those of
    a shop whose cut points hold only the changed customers' (before: every kept row, at every
    read); each owner sees their own shop alone."""
    first, _ = shop_with_history(conn, random.Random(30))
    second, second_project = shop_with_history(conn, random.Random(31))
    workspaces = [first.workspace_id, second.workspace_id]
    for owner in (first, second):
        # Orders dated ahead of today keep today on the counting path.
        conn.execute(
            "delete from public.orders where workspace_id = %s and placed_at > now()",
            (owner.workspace_id,),
        )
    member = add_member(conn, first, "member")
    join(conn, second, member)
    today = datetime.now(UTC).date()
    dates = [today, today + timedelta(days=30), today - timedelta(days=9)]

    assert refresh(conn, first.workspace_id) == 1
    read_alike(conn, member, workspaces, dates)  # the second never refreshed: counted
    read_alike(conn, None, workspaces, dates)
    with (
        psycopg.connect(database_url, row_factory=dict_row) as reader,
        acting_as(reader, member),
    ):
        reader.execute(SEGMENTS, {"workspaces": workspaces}).fetchall()
        assert kept_rows_read(reader) == 0

    assert refresh(conn, second.workspace_id) == 1
    read_alike(conn, member, workspaces, dates)
    for owner in (first, second):
        with acting_as(conn, owner):
            for query in (
                "select workspace_id from analytics.customer_rfm",
                "select workspace_id from analytics.rfm_segments",
                "select workspace_id from analytics.rfm(current_date + 30)",
                "select workspace_id from analytics.rfm_segment_totals(current_date)",
            ):
                seen = {r["workspace_id"] for r in conn.execute(query)}
                assert seen == {owner.workspace_id}, query

    # Single orders of known customers, each alone since a refresh: the second is stale, its log
    # naming the customer. Where its cut points hold (no other customer's facts read), the
    # segments take its kept totals and the changed customer's rows alone.
    adjusted = 0
    customers = [
        r["contact_id"]
        for r in conn.execute(
            "select f.contact_id from public.customer_facts f"
            " join public.contacts c on c.id = f.contact_id"
            " where f.workspace_id = %s order by c.email limit 10",
            (second.workspace_id,),
        )
    ]
    for number, customer in enumerate(customers):
        conn.execute(
            "insert into public.orders (workspace_id, project_id, contact_id, source,"
            " external_id, status, placed_at, total, currency, base_total)"
            " values (%s, %s, %s, 'csv', %s, 'paid', now() - interval '3 days', 20, 'EUR', 20)",
            (second.workspace_id, second_project, customer, f"kept-read-{number}"),
        )
        with psycopg.connect(database_url, row_factory=dict_row) as reader:
            forget_statistics(reader, ["public.customer_facts", "private.rfm_kept_scores"])
            with acting_as(reader, member):
                reader.execute(SEGMENTS, {"workspaces": workspaces}).fetchall()
                if facts_rows_read(reader) <= 10:
                    adjusted += 1
                    assert kept_rows_read(reader) <= 10
            reader.rollback()
        read_alike(conn, member, workspaces, dates)
        assert refresh(conn, second.workspace_id) == 1
    read_alike(conn, None, workspaces, dates)
    assert adjusted >= 2, adjusted

    # A customer deleted: the second is stale, its changed customers unknown.
    conn.execute(
        "delete from public.contacts where id = (select contact_id from public.customer_facts"
        " where workspace_id = %s order by revenue desc, contact_id limit 1)",
        (second.workspace_id,),
    )
    read_alike(conn, member, workspaces, dates)
    read_alike(conn, None, workspaces, dates)
    assert refresh(conn, second.workspace_id) == 1
    read_alike(conn, member, workspaces, dates)
