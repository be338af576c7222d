"""Counting customers' facts again reads the counted customers once per statement: the customers
left without qualifying orders were found by an anti-join that rescanned the counted rows once
per customer, so a statement that deleted or refunded the orders of n customers compared n² ids
(about 7 minutes for the 80,000 customers of 100,000 orders). The plans are read through
auto_explain, which reports how many times each node ran."""

import re
from typing import Any

import psycopg
from psycopg.rows import dict_row

from tests.factories.workspaces import create_user, make_project, one

Conn = psycopg.Connection[Any]

CUSTOMERS = 300


def plans_of(database_url: str, statement: str, params: tuple[Any, ...]) -> list[str]:
    """The text of every plan (nested statements included) the statement ran, with row counts
    and loops, from auto_explain's notices."""
    notices: list[str] = []
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as tx:
        tx.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        tx.execute("load 'auto_explain'")
        for setting, value in (
            ("auto_explain.log_min_duration", "0"),
            ("auto_explain.log_analyze", "on"),
            ("auto_explain.log_timing", "off"),
            ("auto_explain.log_nested_statements", "on"),
            ("auto_explain.log_level", "notice"),
        ):
            tx.execute("select set_config(%s, %s, false)", (setting, value))
        tx.execute(statement, params)
    return notices


def test_a_recount_of_many_customers_reads_the_counted_ones_once(
    conn: Conn, database_url: str
) -> None:
    """300 customers of two paid orders each; one statement deletes the newer order of every
    customer and both orders of a third of them. The recount keeps 200 customers' facts, one
    order each, removes the other 100, and reads its counted customers once (before: once per
    customer, 300 scans)."""
    user = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (user.workspace_id,)
    )
    project = make_project(conn, user)
    params = {"ws": user.workspace_id, "project": project, "customers": CUSTOMERS}
    conn.execute(
        "insert into public.contacts (workspace_id, email)"
        " select %(ws)s, 'c' || n || '@example.test' from generate_series(1, %(customers)s) n",
        params,
    )
    conn.execute(
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency, base_total)"
        " select %(ws)s, %(project)s, c.id, 'csv', c.email || '-' || k, 'paid',"
        " now() - k * interval '1 day', 10 * k, 'EUR', 10 * k"
        " from public.contacts c cross join generate_series(1, 2) as k"
        " where c.workspace_id = %(ws)s",
        params,
    )
    plans = plans_of(
        database_url,
        "delete from public.orders o where o.workspace_id = %s"
        " and (o.external_id like '%%-1' or split_part(o.external_id, '@', 1) in"
        "  (select 'c' || n from generate_series(1, %s, 3) as n))",
        (user.workspace_id, CUSTOMERS),
    )
    facts = one(
        conn,
        "select count(*) as customers, sum(orders_count) as orders, sum(revenue) as revenue"
        " from public.customer_facts where workspace_id = %s",
        (user.workspace_id,),
    )
    assert facts == {"customers": 200, "orders": 200, "revenue": 4000}
    drift = one(
        conn,
        "select count(*) as rows from analytics.verify_customer_facts() where workspace_id = %s",
        (user.workspace_id,),
    )
    assert drift["rows"] == 0
    counted_scans = [
        int(loops)
        for plan in plans
        for loops in re.findall(r"CTE Scan on counted \w+ .*?\(actual rows=\d+ loops=(\d+)\)", plan)
    ]
    assert counted_scans, "\n".join(plans)
    assert max(counted_scans) == 1, counted_scans
