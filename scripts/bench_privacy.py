"""Benchmark: erasing one contact who has 10,000 orders and 10,000 stored webhooks that mention
them (order webhooks with their address, SES events with their email), in a workspace with other
customers' orders and payloads around them, against erasing a contact with no history (the fixed
cost), in one run on a throwaway database. Each erasure is one transaction, timed to its commit.

    scripts/bench_privacy [--orders N] [--background-orders N] [--background-webhooks N]
"""

import argparse
import json
import sys
import time
import uuid
from typing import Any

import psycopg

from scripts import postgres
from scripts.migrate import migrate


def generate(conn: psycopg.Connection[Any], orders: int, others: int, webhooks: int) -> uuid.UUID:
    """One workspace; the person with `orders` orders and as many stored webhooks; `others`
    orders and `webhooks` payloads of 20,000 other customers."""
    user_id = uuid.uuid4()
    conn.execute(
        "insert into auth.users (id, aud, role, email) values (%s, 'authenticated',"
        " 'authenticated', 'bench@example.test')",
        (user_id,),
    )
    workspace = conn.execute(
        "select id from public.workspaces where created_by = %s", (user_id,)
    ).fetchone()
    assert workspace is not None
    workspace_id = workspace[0]
    conn.execute(
        "insert into public.projects (workspace_id, name, type) values (%s, 'Bench shop', 'eshop')",
        (workspace_id,),
    )
    conn.execute("update public.plans set contact_limit = 1000000")
    conn.execute(
        "insert into public.contacts (workspace_id, email, first_name, last_name, attributes)"
        " select %s, 'c' || n || '@example.test', 'First' || n, 'Last' || n,"
        " jsonb_build_object('street', 'Street ' || n)"
        " from generate_series(0, 20000) as n",
        (workspace_id,),
    )
    conn.execute(
        "update public.contacts set phone = '+420603123456' where email = 'c0@example.test'"
    )
    conn.execute(
        """
        insert into public.orders (workspace_id, project_id, contact_id, source, external_id,
                                   status, placed_at, total, currency, base_total)
        select c.workspace_id, p.id, c.id, 'shopify', 'o' || c.email || '-' || n, 'paid',
               now() - n * interval '1 hour', 10, 'EUR', 10
        from public.contacts c join public.projects p on p.workspace_id = c.workspace_id,
             generate_series(1, %s) as n
        where c.email = 'c0@example.test'
        """,
        (orders,),
    )
    conn.execute(
        """
        insert into public.orders (workspace_id, project_id, contact_id, source, external_id,
                                   status, placed_at, total, currency, base_total)
        select p.workspace_id, p.id, c.id,
               'shopify', 'b' || n, 'paid', now() - n * interval '1 minute', 10, 'EUR', 10
        from public.projects p, generate_series(1, %s) as n
        join public.contacts c on c.email = 'c' || (1 + n %% 20000) || '@example.test'
        """,
        (others,),
    )
    payload = json.dumps(
        {
            "email": "c0@example.test",
            "customer": {"first_name": "First0", "last_name": "Last0", "phone": "+420603123456"},
            "billing_address": {"address1": "Street 0", "city": "Praha"},
            "line_items": [{"title": "Tea", "quantity": 1, "price": "10.00"}] * 5,
        }
    )
    conn.execute(
        "insert into private.webhook_events (provider, event_id, body, status, outcome)"
        " select 'shopify', p.id || ':p' || n, %s, 'applied', 'applied'"
        " from public.projects p, generate_series(1, %s) as n",
        (payload, orders),
    )
    conn.execute(
        "insert into private.webhook_events (provider, event_id, body, status, outcome)"
        " select 'shopify', p.id || ':b' || n,"
        " replace(replace(%s, 'c0@', 'c' || (1 + n %% 20000) || '@'),"
        " '+420603123456', '+42060' || lpad((n %% 1000000)::text, 7, '0')),"
        " 'applied', 'applied' from public.projects p, generate_series(1, %s) as n",
        (payload, webhooks),
    )
    conn.execute("analyze")
    return uuid.UUID(str(workspace_id))


def erase(url: str, workspace_id: uuid.UUID, email: str) -> tuple[float, dict[str, Any]]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select id from public.contacts where workspace_id = %s and email = %s",
            (workspace_id, email),
        ).fetchone()
        assert row is not None
        started = time.perf_counter()
        conn.execute(
            "select private.erase_contacts(%s, array[%s]::uuid[], null)", (workspace_id, row[0])
        )
        conn.commit()
        seconds = time.perf_counter() - started
        counts = conn.execute(
            "select rows_changed from public.contact_erasures where contact_id = %s", (row[0],)
        ).fetchone()
    assert counts is not None
    return seconds, counts[0]


def unlink_orders_alone(url: str, workspace_id: uuid.UUID, email: str) -> float:
    """The floor under erasure: the one statement it cannot avoid (unlinking the orders, as
    erasure writes it), rolled back."""
    with psycopg.connect(url) as conn:
        started = time.perf_counter()
        conn.execute(
            "update public.orders set contact_id = null, updated_at = now()"
            " where workspace_id = %s and contact_id ="
            " (select id from public.contacts where workspace_id = %s and email = %s)",
            (workspace_id, workspace_id, email),
        )
        seconds = time.perf_counter() - started
        conn.rollback()
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--background-orders", type=int, default=200_000)
    parser.add_argument("--background-webhooks", type=int, default=100_000)
    args = parser.parse_args(argv)
    with postgres.throwaway_database("growthbase_bench") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            workspace_id = generate(
                conn, args.orders, args.background_orders, args.background_webhooks
            )
            generated = time.perf_counter() - started
        baseline, _ = erase(url, workspace_id, "c20000@example.test")
        floor = unlink_orders_alone(url, workspace_id, "c0@example.test")
        seconds, counts = erase(url, workspace_id, "c0@example.test")
        with psycopg.connect(url) as conn:
            left = conn.execute(
                "select count(*) from private.webhook_events"
                " where strpos(body, 'c0@example.test') > 0"
            ).fetchone()
    print(
        f"data: {args.orders} orders and {args.orders} webhooks of the person; "
        f"{args.background_orders} orders and {args.background_webhooks} webhooks of 20,000 others"
        f" (generated in {generated:.1f} s)"
    )
    print(f"baseline: erase a contact with no history   {baseline * 1000:8.1f} ms")
    print(f"floor: unlink their {args.orders} orders alone     {floor * 1000:8.1f} ms")
    print(
        f"erase the contact with {args.orders} orders       {seconds * 1000:8.1f} ms"
        f"  (target <= 1000 ms)"
    )
    print(f"rows changed: {json.dumps(counts, sort_keys=True)}")
    print(f"payloads still naming the person: {left[0] if left else '?'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
