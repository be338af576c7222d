"""Benchmark: a batch erasure of N contacts (default 100,000), each with an order and a stored
webhook naming them, run chunk by chunk as the cron runs it (private.erase_batch_chunk, one
transaction per chunk, sized to about a second as the edge sizes them), while another
connection keeps writing to contacts of the same workspace (as a sync would). Printed beside
their baselines from the same run on the same data:

- the batch's wall time and contacts per second, against the floor of clearing the same
  contacts' personal fields alone in 500-row chunks (what any erasure must do);
- the longest chunk (how long a row can stay locked), against the median chunk;
- the concurrent writer's updates and inserts during the batch, against before it.

    scripts/bench_erasure_batch [--contacts N] [--chunk N (default: sized as the edge does)]"""

import argparse
import json
import statistics
import threading
import time
import uuid
from typing import Any

import psycopg

from api.privacy.erasure_batches import CHUNK_CONTACTS, next_chunk_size
from scripts import postgres
from scripts.migrate import migrate


def generate(conn: psycopg.Connection[Any], contacts: int) -> uuid.UUID:
    """One workspace with twice `contacts` customers (half to erase, half to keep, whose rows the
    concurrent writer touches), an order and a stored webhook each."""
    user_id = uuid.uuid4()
    conn.execute(
        "insert into auth.users (id, aud, role, email) values (%s, 'authenticated',"
        " 'authenticated', 'bench@example.test')",
        (user_id,),
    )
    row = conn.execute(
        "select id from public.workspaces where created_by = %s", (user_id,)
    ).fetchone()
    assert row is not None
    workspace_id = row[0]
    conn.execute("update public.plans set contact_limit = 10000000")
    conn.execute(
        "insert into public.projects (workspace_id, name, type) values (%s, 'Bench shop', 'eshop')",
        (workspace_id,),
    )
    conn.execute(
        "insert into public.contacts (workspace_id, email, first_name, last_name, phone)"
        " select %s, 'c' || n || '@example.test', 'First' || n, 'Last' || n,"
        " '+4206' || lpad(n::text, 8, '0') from generate_series(1, %s) as n",
        (workspace_id, 2 * contacts),
    )
    conn.execute(
        """
        insert into public.orders (workspace_id, project_id, contact_id, source, external_id,
                                   status, placed_at, total, currency, base_total)
        select c.workspace_id, p.id, c.id, 'shopify', 'o-' || c.email, 'paid',
               now() - interval '1 day', 10, 'EUR', 10
        from public.contacts c join public.projects p on p.workspace_id = c.workspace_id
        """
    )
    payload = json.dumps({"email": "EMAIL", "customer": {"first_name": "NAME"}})
    conn.execute(
        "insert into private.webhook_events (provider, event_id, body, status, outcome)"
        " select 'shopify', p.id || ':' || c.id, replace(replace(%s, 'EMAIL', c.email),"
        " 'NAME', c.first_name), 'applied', 'applied'"
        " from public.contacts c join public.projects p on p.workspace_id = c.workspace_id",
        (payload,),
    )
    conn.execute("analyze")
    return uuid.UUID(str(workspace_id))


HALVES = {
    "erase": "select id from public.contacts where workspace_id = %s"
    " and substr(email, 2, strpos(email, '@') - 2)::integer <= %s",
    "keep": "select id from public.contacts where workspace_id = %s"
    " and substr(email, 2, strpos(email, '@') - 2)::integer > %s",
}


def ids(conn: psycopg.Connection[Any], workspace_id: uuid.UUID, half: str, n: int) -> list[Any]:
    """The first (`erase`) or second (`keep`) half of the contacts."""
    return [r[0] for r in conn.execute(HALVES[half], (workspace_id, n)).fetchall()]


class Writer(threading.Thread):
    """As a sync would: updates one kept contact, then adds a new one, in turn, noting each
    write's latency by kind. Adding a contact takes the workspace's contact counter, which an
    erasure chunk holds from the moment it clears its contacts until it commits."""

    def __init__(self, url: str, workspace_id: uuid.UUID, targets: list[Any]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.workspace_id = workspace_id
        self.targets = targets
        self.latencies: dict[str, list[float]] = {"update": [], "insert": []}
        self.stop = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            index = 0
            while not self.stop.is_set() and index < 1_000_000:
                started = time.perf_counter()
                conn.execute(
                    "update public.contacts set attributes = jsonb_build_object('seen', %s)"
                    " where id = %s",
                    (index, self.targets[index % len(self.targets)]),
                )
                self.latencies["update"].append(time.perf_counter() - started)
                started = time.perf_counter()
                conn.execute(
                    "insert into public.contacts (workspace_id, email) values (%s, %s)",
                    (self.workspace_id, f"new-{index}@example.test"),
                )
                self.latencies["insert"].append(time.perf_counter() - started)
                index += 1
                self.stop.wait(0.02)

    def mark(self) -> dict[str, int]:
        return {kind: len(values) for kind, values in self.latencies.items()}


def clear_alone(url: str, contacts: list[Any], chunk: int) -> float:
    """The floor: clearing the personal fields of the same contacts in the same chunks, rolled
    back."""
    total = 0.0
    with psycopg.connect(url) as conn:
        for start in range(0, len(contacts), chunk):
            part = contacts[start : start + chunk]
            began = time.perf_counter()
            conn.execute(
                "update public.contacts set email = null, phone = null, first_name = null,"
                " last_name = null where id = any(%s)",
                (part,),
            )
            total += time.perf_counter() - began
        conn.rollback()
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=0, help="fixed size; 0 follows the pace")
    args = parser.parse_args(argv)
    with postgres.throwaway_database("growthbase_bench") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            workspace_id = generate(conn, args.contacts)
            print(
                f"generated {2 * args.contacts:,} contacts in {time.perf_counter() - started:.1f} s"
            )
            to_erase = ids(conn, workspace_id, "erase", args.contacts)
            to_keep = ids(conn, workspace_id, "keep", args.contacts)
        floor = clear_alone(url, to_erase, args.chunk or CHUNK_CONTACTS)

        writer = Writer(url, workspace_id, to_keep)
        writer.start()
        time.sleep(3)  # the writer's latency before the batch: the baseline
        before = writer.mark()

        with psycopg.connect(url) as conn:
            row = conn.execute(
                "insert into public.erasure_batches (workspace_id, total) values (%s, %s)"
                " returning id",
                (workspace_id, len(to_erase)),
            ).fetchone()
            assert row is not None
            batch = row[0]
            conn.execute(
                "insert into private.erasure_batch_items (batch_id, contact_id)"
                " select %s, unnest(%s::uuid[])",
                (batch, to_erase),
            )
            conn.commit()

        during_from = writer.mark()
        chunks: list[float] = []
        sizes: list[int] = []
        size = args.chunk or CHUNK_CONTACTS
        started = time.perf_counter()
        with psycopg.connect(url) as conn:
            while True:
                began = time.perf_counter()
                done = conn.execute(
                    "select b.status from private.erase_batch_chunk(%s, %s) as b", (batch, size)
                ).fetchone()
                conn.commit()
                if done is None or done[0] is None:
                    break
                chunks.append(time.perf_counter() - began)
                sizes.append(size)
                if done[0] == "done":
                    break
                if not args.chunk:
                    size = next_chunk_size(size, chunks[-1])
        wall = time.perf_counter() - started
        writer.stop.set()
        writer.join()

        with psycopg.connect(url) as conn:
            state = conn.execute(
                "select erased, skipped, chunks from public.erasure_batches where id = %s",
                (batch,),
            ).fetchone()
            left = conn.execute(
                "select count(*) from private.webhook_events where event_id like '%%:' || %s",
                (str(to_erase[0]),),
            ).fetchone()
        print(f"batch: {state} (erased, skipped, chunks); webhooks left for the first: {left}")
        print(
            f"batch erasure of {len(to_erase):,} contacts: {wall:.1f} s"
            f" ({len(to_erase) / wall:,.0f} contacts/s)"
            f" vs clearing their fields alone in the same chunks: {floor:.1f} s"
            f" (ratio {wall / floor:.1f}x)"
        )
        print(
            f"{len(chunks)} chunks of {min(sizes)}-{max(sizes)} contacts"
            f" (median {int(statistics.median(sizes))}):"
            f" median {statistics.median(chunks) * 1000:.0f} ms,"
            f" longest {max(chunks) * 1000:.0f} ms"
            f" (ratio {max(chunks) / statistics.median(chunks):.1f}x)"
        )
        for kind, values in writer.latencies.items():
            base = values[: before[kind]]
            during = values[during_from[kind] :]
            print(
                f"a concurrent {kind} of a contact: slowest {max(during) * 1000:.0f} ms,"
                f" median {statistics.median(during) * 1000:.1f} ms during the batch"
                f" ({len(during)} writes) vs slowest {max(base) * 1000:.0f} ms,"
                f" median {statistics.median(base) * 1000:.1f} ms before it ({len(base)} writes)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
