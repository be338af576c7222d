"""Billing: subscriptions created with the real razorpay SDK against a local server in
Razorpay's API shape, signed webhooks in the documented shapes (in order, shuffled, replayed),
credits granted once per invoice, and plan limits after a downgrade."""

import hashlib
import hmac
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from api.settings import Settings
from tests.factories import User, acting_as, add_member, create_user, fund, one, refused
from tests.jwks import JwksServer
from tests.razorpay_server import (
    KEY_ID,
    KEY_SECRET,
    RazorpayServer,
    event,
    payment_entity,
    serve_razorpay,
    subscription_entity,
)

Conn = psycopg.Connection[DictRow]
WEBHOOK_SECRET = "whsec_" + uuid.uuid4().hex
PLAN = "plan_growthbase_solo"
T0 = 1_780_000_000
MONTH = 2_592_000


@pytest.fixture
def razorpay_api() -> Iterator[RazorpayServer]:
    with serve_razorpay() as server:
        yield server


@pytest.fixture
def client(
    database_url: str, jwks: JwksServer, razorpay_api: RazorpayServer
) -> Iterator[TestClient]:
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        razorpay_key_id=KEY_ID,
        razorpay_key_secret=SecretStr(KEY_SECRET),
        razorpay_webhook_secret=SecretStr(WEBHOOK_SECRET),
        razorpay_base_url=razorpay_api.base_url,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def auth(jwks: JwksServer, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwks.sign(jwks.claims(user.id))}"}


def subscribe(
    client: TestClient, jwks: JwksServer, user: User, workspace: uuid.UUID | None = None
) -> Any:
    return client.post(
        "/api/v1/billing/subscriptions",
        headers=auth(jwks, user),
        json={"workspace_id": str(workspace or user.workspace_id), "tier": "solo"},
    )


def deliver(
    client: TestClient,
    body: dict[str, Any],
    event_id: str | None = None,
    secret: str = WEBHOOK_SECRET,
    raw: bytes | None = None,
) -> Any:
    content = raw or json.dumps(body).encode()
    signed = hmac.new(secret.encode(), json.dumps(body).encode(), hashlib.sha256).hexdigest()
    return client.post(
        "/api/v1/webhooks/razorpay",
        content=content,
        headers={
            "Content-Type": "application/json",
            "X-Razorpay-Signature": signed,
            "X-Razorpay-Event-Id": event_id or f"evt_{uuid.uuid4().hex[:14]}",
        },
    )


def lifecycle(sub_id: str) -> list[dict[str, Any]]:
    """A subscription's real life: authenticated, activated, two charges, a failed charge
    (pending), a successful retry, then cancellation."""
    series = sub_id.removeprefix("sub_")
    return [
        event(
            "subscription.authenticated",
            subscription_entity(sub_id, PLAN, "authenticated"),
            T0 + 10,
        ),
        event("subscription.activated", subscription_entity(sub_id, PLAN, "active"), T0 + 20),
        event(
            "subscription.charged",
            subscription_entity(sub_id, PLAN, "active", 1),
            T0 + 30,
            payment_entity(series, 1),
        ),
        event(
            "subscription.charged",
            subscription_entity(sub_id, PLAN, "active", 2, 1),
            T0 + MONTH + 30,
            payment_entity(series, 2),
        ),
        event(
            "subscription.pending",
            subscription_entity(sub_id, PLAN, "pending", 2, 2),
            T0 + 2 * MONTH + 30,
            payment_entity(series, 3, status="failed"),
        ),
        event(
            "subscription.charged",
            subscription_entity(sub_id, PLAN, "active", 3, 2),
            T0 + 2 * MONTH + 90_000,
            payment_entity(series, 4),
        ),
        event(
            "subscription.cancelled",
            subscription_entity(sub_id, PLAN, "cancelled", 3, 2),
            T0 + 2 * MONTH + 200_000,
        ),
    ]


def state(conn: Conn, user: User) -> dict[str, Any]:
    return one(
        conn,
        "select s.status, s.paid_count, w.plan_tier, w.credits_remaining,"
        " (select array_agg(p.status order by p.razorpay_payment_id) from public.billing_payments p"
        "   where p.workspace_id = w.id) as payments"
        " from public.workspaces w join public.subscriptions s on s.workspace_id = w.id"
        " where w.id = %s",
        (user.workspace_id,),
    )


def new_subscriber(conn: Conn, client: TestClient, jwks: JwksServer) -> tuple[User, str]:
    user = create_user(conn)
    created = subscribe(client, jwks, user)
    assert created.status_code == 201, created.text
    return user, created.json()["data"]["checkout"]["subscription_id"]


def test_creating_a_subscription_uses_the_razorpay_sdk(
    client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer, conn: Conn
) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    created = subscribe(client, jwks, owner)
    assert created.status_code == 201
    data = created.json()["data"]
    assert data["checkout"]["key"] == KEY_ID
    assert data["checkout"]["short_url"].startswith("https://rzp.io/")
    method, path, body = razorpay_api.requests[-1]
    assert (method, path) == ("POST", "/v1/subscriptions")
    assert body == {
        "plan_id": PLAN,
        "total_count": 120,
        "quantity": 1,
        "customer_notify": 1,
        "notes": {"workspace_id": str(owner.workspace_id)},
    }
    again = subscribe(client, jwks, owner)
    by_viewer = subscribe(client, jwks, viewer, owner.workspace_id)
    assert [again.status_code, by_viewer.status_code] == [409, 403]
    assert len(razorpay_api.requests) == 1
    stored = one(
        conn,
        "select status, plan_tier from public.subscriptions where workspace_id = %s",
        (owner.workspace_id,),
    )
    assert stored == {"status": "created", "plan_tier": "solo"}


def test_cancel_and_change_plan_go_through_the_sdk(
    client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer, conn: Conn
) -> None:
    owner, _ = new_subscriber(conn, client, jwks)
    subscription = one(
        conn, "select id from public.subscriptions where workspace_id = %s", (owner.workspace_id,)
    )["id"]
    change = client.post(
        f"/api/v1/billing/subscriptions/{subscription}/change-plan",
        headers=auth(jwks, owner),
        json={"tier": "team"},
    )
    cancel = client.post(
        f"/api/v1/billing/subscriptions/{subscription}/cancel",
        headers=auth(jwks, owner),
        json={"at_period_end": True},
    )
    assert change.json()["data"]["scheduled_at_period_end"] is True
    assert cancel.json()["data"]["at_period_end"] is True
    assert [(m, b) for m, _, b in razorpay_api.requests[-2:]] == [
        ("PATCH", {"plan_id": "plan_growthbase_team", "schedule_change_at": "cycle_end"}),
        ("POST", {"cancel_at_cycle_end": 1}),
    ]
    flagged = one(
        conn, "select cancel_at_period_end from public.subscriptions where id = %s", (subscription,)
    )
    assert flagged["cancel_at_period_end"] is True


def test_the_lifecycle_in_order(client: TestClient, jwks: JwksServer, conn: Conn) -> None:
    user, sub_id = new_subscriber(conn, client, jwks)
    tiers = []
    for body in lifecycle(sub_id):
        assert deliver(client, body).json()["data"]["outcome"] == "accepted"
        tiers.append(
            one(
                conn, "select plan_tier from public.workspaces where id = %s", (user.workspace_id,)
            )["plan_tier"]
        )
    assert tiers == ["free", "solo", "solo", "solo", "solo", "solo", "free"]
    assert state(conn, user) == {
        "status": "cancelled",
        "paid_count": 3,
        "plan_tier": "free",
        "credits_remaining": 600,
        "payments": ["captured", "captured", "failed", "captured"],
    }
    with acting_as(conn, user):
        history = [r["event"] for r in conn.execute("select event from public.subscription_events")]
    assert len(history) == 7


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_any_arrival_order_ends_in_the_same_state(
    client: TestClient, jwks: JwksServer, conn: Conn, seed: int
) -> None:
    user, sub_id = new_subscriber(conn, client, jwks)
    events = lifecycle(sub_id)
    random.Random(seed).shuffle(events)
    for body in events:
        deliver(client, body)
    assert state(conn, user) == {
        "status": "cancelled",
        "paid_count": 3,
        "plan_tier": "free",
        "credits_remaining": 600,
        "payments": ["captured", "captured", "failed", "captured"],
    }


def test_a_charge_arriving_three_times_grants_credits_once(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    user, sub_id = new_subscriber(conn, client, jwks)
    charged = lifecycle(sub_id)[2]
    outcomes = [
        deliver(client, charged, event_id="evt_same").json()["data"]["outcome"],
        deliver(client, charged, event_id="evt_same").json()["data"]["outcome"],
        deliver(client, charged, event_id="evt_other").json()["data"]["outcome"],
    ]
    assert outcomes == ["accepted", "duplicate", "accepted"]
    assert state(conn, user)["credits_remaining"] == 200
    grants = one(
        conn,
        "select count(*) from public.credit_ledger where workspace_id = %s and reason = 'grant'",
        (user.workspace_id,),
    )
    assert grants["count"] == 1


def test_forged_webhooks_change_nothing(client: TestClient, jwks: JwksServer, conn: Conn) -> None:
    user, sub_id = new_subscriber(conn, client, jwks)
    activated = lifecycle(sub_id)[1]
    tampered_body = json.dumps({**activated, "event": "subscription.halted"}).encode()
    wrong_secret = deliver(client, activated, secret="whsec_guess")
    tampered = deliver(client, activated, raw=tampered_body)
    unsigned = client.post("/api/v1/webhooks/razorpay", json=activated)
    assert [r.status_code for r in (wrong_secret, tampered, unsigned)] == [401, 401, 401]
    assert state(conn, user)["status"] == "created"


def test_limits_after_a_downgrade_block_new_work_but_keep_data(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 0, tier="team")
    members = [add_member(conn, owner, "member") for _ in range(3)]
    conn.execute(
        "insert into public.contacts (workspace_id, email) select %s, 'c' || n || '@example.test'"
        " from generate_series(1, 1000) as n",
        (owner.workspace_id,),
    )
    conn.execute("select private.reserve_monthly_emails(%s, 1500)", (owner.workspace_id,))
    conn.execute(
        "select private.refresh_workspace_tier(%s)", (owner.workspace_id,)
    )  # no plan: free
    counts = one(
        conn,
        "select (select count(*) from public.workspace_members where workspace_id = %s)"
        " as members, (select count(*) from public.contacts where workspace_id = %s)"
        " as contacts",
        (owner.workspace_id, owner.workspace_id),
    )
    assert counts == {"members": 4, "contacts": 1000}
    with refused(402, "plan_limit_reached"), acting_as(conn, owner):
        conn.execute("select public.invite_member(%s, 'more@example.test')", (owner.workspace_id,))
    with refused(402, "plan_limit_reached"), acting_as(conn, owner):
        conn.execute(
            "insert into public.contacts (workspace_id, email) values (%s, 'x@example.test')",
            (owner.workspace_id,),
        )
    with refused(402, "plan_limit_reached"):
        conn.execute("select private.reserve_monthly_emails(%s, 501)", (owner.workspace_id,))
    left = one(
        conn, "select private.reserve_monthly_emails(%s, 500) as left", (owner.workspace_id,)
    )
    assert left["left"] == 0
    with acting_as(conn, owner):
        conn.execute("delete from public.contacts where email = 'c1@example.test'")
        conn.execute(
            "insert into public.contacts (workspace_id, email) values (%s, 'x@example.test')",
            (owner.workspace_id,),
        )
    assert all(m for m in members)


def test_only_owners_and_admins_see_payments_and_history(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner, sub_id = new_subscriber(conn, client, jwks)
    admin, member = add_member(conn, owner, "admin"), add_member(conn, owner, "member")
    for body in lifecycle(sub_id)[:3]:
        deliver(client, body)
    seen = {}
    for user in (owner, admin, member):
        with acting_as(conn, user):
            seen[user.id] = (
                len(conn.execute("select id from public.subscriptions").fetchall()),
                len(conn.execute("select id from public.billing_payments").fetchall()),
                len(conn.execute("select id from public.subscription_events").fetchall()),
            )
    assert seen == {owner.id: (1, 1, 3), admin.id: (1, 1, 3), member.id: (1, 0, 0)}
