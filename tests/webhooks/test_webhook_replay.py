"""The webhook replay cron: every stored event is tried on its own, a failure is counted and
retried later with exponential backoff and jitter, an event that keeps failing is dead-lettered,
and no event's or provider's failure stops the replay of the others."""

import json
import logging
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from api.app import create_app
from tests.factories.workspaces import acting_as, create_user, fund, make_project, one
from tests.fakes.jwks import JwksServer
from tests.fakes.shoptet_server import TOKEN, ShoptetServer, serve_shoptet, shoptet_order
from tests.shops.test_shoptet import CRON, SIGNATURE_KEY, Shop, shoptet_settings

Conn = psycopg.Connection[DictRow]
MAX_ATTEMPTS = 8
# The replay's log line may name the event and the error's class, never the payload: this
# marker sits in a payload value that also ends up in the database's error message.
PAYLOAD_MARKER = "payload-marker-jan.novak@example.test"


@pytest.fixture
def shoptet() -> Iterator[ShoptetServer]:
    with serve_shoptet() as server:
        yield server


@pytest.fixture
def client(database_url: str, jwks: JwksServer, shoptet: ShoptetServer) -> Iterator[TestClient]:
    with TestClient(create_app(shoptet_settings(database_url, jwks, shoptet))) as test_client:
        yield test_client


@pytest.fixture
def shop(conn: Conn, client: TestClient, jwks: JwksServer) -> Shop:
    owner = create_user(conn)
    shop = Shop(client, jwks, owner, make_project(conn, owner))
    connected = shop.post("connect", api_token=TOKEN, webhook_signature_key=SIGNATURE_KEY)
    assert connected.status_code == 200
    return shop


@pytest.fixture(autouse=True)
def only_this_tests_events(conn: Conn) -> Iterator[None]:
    """The replay reads every provider's due events, so no test's leftovers reach the next."""
    conn.execute("delete from private.webhook_events")
    yield
    conn.execute("delete from private.webhook_events")


def store(conn: Conn, provider: str, event_id: str, body: Any, age_minutes: int = 2) -> uuid.UUID:
    """An event stored at intake whose own apply never finished (the instance stopped)."""
    stored = one(
        conn,
        "select id from private.record_webhook_event(%s, %s, %s)",
        (provider, event_id, json.dumps(body)),
    )["id"]
    conn.execute(
        "update private.webhook_events set received_at = now() - %s where id = %s",
        (timedelta(minutes=age_minutes), stored),
    )
    return uuid.UUID(str(stored))


def store_shoptet(conn: Conn, shop: Shop, code: str, age_minutes: int = 2) -> uuid.UUID:
    created = "2026-06-01T10:06:00+0200"
    body = {"eshopId": 1, "event": "order:create", "eventCreated": created, "eventInstance": code}
    key = f"{shop.project}:order:create:{code}:{created}"
    return store(conn, "shoptet", key, body, age_minutes)


def razorpay_event(created_at: Any) -> dict[str, Any]:
    subscription = {"id": "sub_" + uuid.uuid4().hex[:14], "status": "active"}
    return {
        "event": "subscription.activated",
        "created_at": created_at,
        "payload": {"subscription": {"entity": subscription}},
    }


def failing_razorpay_event() -> dict[str, Any]:
    """Its apply raises in SQL (a creation time that is not a number), and the database's error
    message quotes the value."""
    return razorpay_event(PAYLOAD_MARKER)


def ses_event() -> dict[str, Any]:
    message = {"eventType": "Open", "mail": {"messageId": "unknown-" + uuid.uuid4().hex}}
    return {"Type": "Notification", "MessageId": str(uuid.uuid4()), "Message": json.dumps(message)}


def replay(client: TestClient) -> dict[str, int]:
    answer = client.get("/api/v1/cron/webhook-replay", headers={"Authorization": f"Bearer {CRON}"})
    assert answer.status_code == 200, answer.text
    outcomes: dict[str, int] = answer.json()["data"]["outcomes"]
    return outcomes


def state(conn: Conn, event: uuid.UUID) -> dict[str, Any]:
    return one(
        conn,
        "select status, outcome, attempts, last_error,"
        " extract(epoch from next_attempt_at - now())::float as wait_seconds"
        " from private.webhook_events where id = %s",
        (event,),
    )


def test_a_failing_event_stops_neither_the_next_event_nor_the_next_provider(
    shop: Shop, shoptet: ShoptetServer, client: TestClient, conn: Conn
) -> None:
    shoptet.orders = [shoptet_order(1), shoptet_order(2)]
    shoptet.hollow_orders.add("2026000001")  # Shoptet answers this detail without its order
    hollow = store_shoptet(conn, shop, "2026000001", age_minutes=3)
    good_order = store_shoptet(conn, shop, "2026000002")
    broken_payment = store(conn, "razorpay", "evt_broken", failing_razorpay_event(), 3)
    payment = store(conn, "razorpay", "evt_fine", razorpay_event(1780000000))
    ses = store(conn, "ses", "ses-message-1", ses_event())

    assert replay(client) == {
        "shoptet:failed:retrying": 1,
        "shoptet:applied": 1,
        "razorpay:failed:retrying": 1,
        "razorpay:unknown_subscription": 1,
        "ses:ignored:unknown_recipient": 1,
    }
    finished = [state(conn, e) for e in (good_order, payment, ses)]
    assert [(f["status"], f["outcome"]) for f in finished] == [
        ("applied", "applied"),
        ("ignored", "unknown_subscription"),
        ("ignored", "ignored:unknown_recipient"),
    ]
    failed = [state(conn, e) for e in (hollow, broken_payment)]
    assert [(f["status"], f["attempts"]) for f in failed] == [("received", 1)] * 2
    assert [f["last_error"] for f in failed] == [
        "ShoptetError shoptet_bad_response",
        "psycopg InvalidTextRepresentation 22P02",
    ]
    assert all(150 <= f["wait_seconds"] <= 300 for f in failed)


def test_events_that_keep_failing_do_not_starve_newer_ones(client: TestClient, conn: Conn) -> None:
    failing = [
        store(conn, "razorpay", f"evt_failing_{n}", failing_razorpay_event(), age_minutes=120 - n)
        for n in range(50)
    ]
    newest = store(conn, "razorpay", "evt_newest", razorpay_event(1780000000))

    assert replay(client) == {"razorpay:failed:retrying": 50}
    assert replay(client) == {"razorpay:unknown_subscription": 1}
    assert state(conn, newest)["outcome"] == "unknown_subscription"
    assert {state(conn, e)["attempts"] for e in failing} == {1}


def test_an_event_is_dead_lettered_after_eight_failed_attempts_with_growing_backoff(
    client: TestClient, conn: Conn
) -> None:
    event = store(conn, "razorpay", "evt_doomed", failing_razorpay_event())
    waits = []
    for _ in range(MAX_ATTEMPTS - 1):
        assert replay(client) == {"razorpay:failed:retrying": 1}
        waits.append(state(conn, event)["wait_seconds"])
        assert replay(client) == {}  # not due again yet
        conn.execute(
            "update private.webhook_events set next_attempt_at = now() where id = %s", (event,)
        )
    for attempt, wait in enumerate(waits):
        full = 300 * 2**attempt
        assert full / 2 - 1 <= wait <= full, (attempt, waits)

    assert replay(client) == {"razorpay:failed:dead_letter": 1}
    final = state(conn, event)
    assert (final["status"], final["outcome"], final["attempts"], final["wait_seconds"]) == (
        "failed",
        "dead_letter",
        MAX_ATTEMPTS,
        None,
    )
    assert replay(client) == {}
    redelivered = one(
        conn,
        "select duplicate from private.record_webhook_event('razorpay', 'evt_doomed', '{}')",
    )
    assert redelivered["duplicate"] is True


def test_the_failure_is_logged_by_event_id_and_error_class_never_the_payload(
    client: TestClient, conn: Conn, caplog: pytest.LogCaptureFixture
) -> None:
    event = store(conn, "razorpay", "evt_logged", failing_razorpay_event())
    with caplog.at_level(logging.WARNING, logger="growthbase.webhooks"):
        replay(client)
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("growthbase.webhooks")]
    assert any(str(event) in line and "InvalidTextRepresentation" in line for line in lines)
    assert not any(PAYLOAD_MARKER in line for line in lines)
    assert PAYLOAD_MARKER not in (state(conn, event)["last_error"] or "")


def test_only_the_service_may_record_a_failed_apply(conn: Conn) -> None:
    allowed = one(
        conn,
        "select role, has_function_privilege(role, 'private.webhook_event_failed(uuid, text)',"
        " 'execute') as may from unnest(array['anon', 'authenticated', 'service_role']) as role"
        " where has_function_privilege(role, 'private.webhook_event_failed(uuid, text)',"
        " 'execute')",
    )
    assert allowed == {"role": "service_role", "may": True}


def test_the_replay_reads_due_events_through_the_partial_index(conn: Conn) -> None:
    """The replay runs every few minutes over a table that keeps every event ever received:
    the function's own query, planned with its arguments, reads the partial index in the order
    it returns the events. Scans other than by index and sorts are ruled out, so the plan does
    not depend on what earlier tests left in the table (a few due events, analyzed, are cheaper
    to sort than to read in order): a query the index cannot serve, or not in its order, still
    needs one."""
    index = one(
        conn,
        "select indexdef from pg_indexes"
        " where schemaname = 'private' and indexname = 'webhook_events_due_idx'",
    )["indexdef"]
    assert index.endswith("WHERE (status = 'received'::text)")
    body = one(
        conn,
        "select prosrc from pg_proc"
        " where oid = 'private.unprocessed_webhook_events(text, integer)'::regprocedure",
    )["prosrc"]
    query = body.replace("p_provider", "$1").replace("p_limit", "$2")
    with conn.transaction():
        conn.execute("set local enable_seqscan = off")
        conn.execute("set local enable_sort = off")
        conn.execute(f"prepare due_events(text, integer) as {query}")
        plan = "\n".join(
            row["QUERY PLAN"]
            for row in conn.execute("explain execute due_events('razorpay', 50)").fetchall()
        )
        conn.execute("deallocate due_events")
    assert "webhook_events_due_idx" in plan
    assert "Sort" not in plan


def test_a_make_callback_whose_apply_never_finished_is_applied_by_the_replay(
    client: TestClient, conn: Conn
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10)
    project = make_project(conn, owner)
    with acting_as(conn, owner):
        automation = one(
            conn,
            "select (r.automation).id from public.enqueue_automation(%s, 'report', '{}', null) r",
            (project,),
        )["id"]
    callback = {"automation_id": str(automation), "status": "completed", "result": {"pages": 3}}
    event = store(conn, "make", f"make-{automation}", callback)

    assert replay(client) == {"make:applied": 1}
    row = one(conn, "select status, result from public.automations where id = %s", (automation,))
    assert (row["status"], row["result"]) == ("completed", {"pages": 3})
    assert state(conn, event)["status"] == "applied"
    assert replay(client) == {}
