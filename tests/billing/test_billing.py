"""Billing: subscriptions created with the real razorpay SDK against a local server in
Razorpay's API shape, signed webhooks in the documented shapes (in order, shuffled, replayed,
redelivered during an apply), subscription rows and tiers only from what Razorpay reported,
credits granted once per invoice and the free plan's once per month, and plan limits after a
downgrade."""

import hashlib
import hmac
import json
import random
import threading
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from api.app import create_app
from api.billing.errors import billing_failure
from api.billing.razorpay_billing import RazorpayBilling, RazorpayError
from api.core.db import become_service
from tests.factories.edge import bearer, documented_codes, edge_settings
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    balance,
    create_user,
    fund,
    one,
    refused,
    wait_until_blocked,
)
from tests.fakes.jwks import JwksServer
from tests.fakes.razorpay_server import (
    KEY_ID,
    KEY_SECRET,
    RazorpayServer,
    event,
    new_subscription_id,
    payment_entity,
    serve_razorpay,
    subscription_entity,
)

Conn = psycopg.Connection[DictRow]
WEBHOOK_SECRET = "whsec_" + uuid.uuid4().hex
CRON_SECRET = "cron-" + uuid.uuid4().hex
PLAN = "plan_growthbase_solo"
T0 = 1_780_000_000
MONTH = 2_592_000
FREE_CREDITS = 20  # the free plan's monthly credits, granted when a workspace is created


@pytest.fixture
def razorpay_api() -> Iterator[RazorpayServer]:
    with serve_razorpay() as server:
        yield server


def edge(database_url: str, jwks: JwksServer, razorpay_base_url: str) -> TestClient:
    """The edge with every billing secret set, calling Razorpay at `razorpay_base_url`."""
    settings = edge_settings(
        database_url,
        jwks,
        razorpay_key_id=KEY_ID,
        razorpay_key_secret=KEY_SECRET,
        razorpay_webhook_secret=WEBHOOK_SECRET,
        razorpay_base_url=razorpay_base_url,
        cron_secret=CRON_SECRET,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(
    database_url: str, jwks: JwksServer, razorpay_api: RazorpayServer
) -> Iterator[TestClient]:
    with edge(database_url, jwks, razorpay_api.base_url) as test_client:
        yield test_client


def subscribe(
    client: TestClient, jwks: JwksServer, user: User, workspace: uuid.UUID | None = None
) -> Any:
    return client.post(
        "/api/v1/billing/subscriptions",
        headers=bearer(jwks, user),
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


def legacy_subscription(
    conn: Conn, workspace_id: uuid.UUID, razorpay_id: str, status: str, tier: str = "solo"
) -> uuid.UUID:
    """A row as the removed `public.record_subscription` let any admin write it: no user can
    write one any more, so the superuser stands in for rows written before that."""
    row = one(
        conn,
        "insert into public.subscriptions (workspace_id, plan_tier, razorpay_subscription_id,"
        " status) values (%s, %s, %s, %s) returning id",
        (workspace_id, tier, razorpay_id, status),
    )
    return uuid.UUID(str(row["id"]))


def grants(conn: Conn, workspace_id: uuid.UUID) -> list[tuple[int, str]]:
    rows = conn.execute(
        "select delta, grant_reference from public.credit_ledger"
        " where workspace_id = %s and reason = 'grant' order by id",
        (workspace_id,),
    ).fetchall()
    return [(r["delta"], r["grant_reference"]) for r in rows]


def test_a_second_live_subscription_is_refused_and_the_first_one_stays(conn: Conn) -> None:
    """Two creates that both passed prepare_subscription: the second record answers 409
    subscription_exists (never a raw unique violation) and stores nothing."""
    owner = create_user(conn)

    def record(razorpay_id: str) -> dict[str, Any]:
        response = {
            "id": razorpay_id,
            "plan_id": PLAN,
            "short_url": "https://rzp.io/i/" + razorpay_id,
            "notes": {"workspace_id": str(owner.workspace_id)},
        }
        with conn.transaction():
            become_service(conn)
            return one(
                conn,
                "select razorpay_subscription_id, status, plan_tier"
                " from private.record_subscription(%s, %s, %s)",
                (owner.workspace_id, owner.id, Jsonb(response)),
            )

    first = record("sub_" + "A" * 14)
    assert first == {
        "razorpay_subscription_id": "sub_" + "A" * 14,
        "status": "created",
        "plan_tier": "solo",
    }
    with refused(409, "subscription_exists"):
        record("sub_" + "B" * 14)
    stored = conn.execute(
        "select razorpay_subscription_id, status, plan_tier from public.subscriptions"
        " where workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert stored == [first]


def free_reference(conn: Conn, workspace_id: uuid.UUID, months_ago: int = 0) -> str:
    """The ledger reference of a workspace's free-plan grant for a calendar month (UTC)."""
    month = one(
        conn,
        "select to_char(date_trunc('month', now() at time zone 'utc')"
        " - make_interval(months => %s), 'YYYY-MM') as month",
        (months_ago,),
    )["month"]
    return f"free:{month}:{workspace_id}"


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
    owner, sub_id = new_subscriber(conn, client, jwks)
    subscription = one(
        conn, "select id from public.subscriptions where workspace_id = %s", (owner.workspace_id,)
    )["id"]
    change = client.post(
        f"/api/v1/billing/subscriptions/{subscription}/change-plan",
        headers=bearer(jwks, owner),
        json={"tier": "team"},
    )
    cancel = client.post(
        f"/api/v1/billing/subscriptions/{subscription}/cancel",
        headers=bearer(jwks, owner),
        json={"at_period_end": True},
    )
    assert change.json()["data"]["scheduled_at_period_end"] is True
    assert cancel.json()["data"]["at_period_end"] is True
    sub_path = f"/v1/subscriptions/{sub_id}"
    assert razorpay_api.requests[-4:] == [
        ("GET", sub_path, {}),
        ("PATCH", sub_path, {"plan_id": "plan_growthbase_team", "schedule_change_at": "cycle_end"}),
        ("GET", sub_path, {}),
        ("POST", f"{sub_path}/cancel", {"cancel_at_cycle_end": 1}),
    ]
    flagged = one(
        conn, "select cancel_at_period_end from public.subscriptions where id = %s", (subscription,)
    )
    assert flagged["cancel_at_period_end"] is True


def test_outsiders_cannot_tell_a_subscription_exists(
    client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer, conn: Conn
) -> None:
    """Its row is read under RLS first, so an outsider gets the 404 of a subscription that is
    not there (never the workspace's), and Razorpay is not asked."""
    owner, stranger = create_user(conn), create_user(conn)
    row = legacy_subscription(conn, owner.workspace_id, new_subscription_id(), "active")
    calls = [("cancel", {"at_period_end": False}), ("change-plan", {"tier": "team"})]
    answers = [
        client.post(
            f"/api/v1/billing/subscriptions/{row}/{action}",
            headers=bearer(jwks, stranger),
            json=body,
        )
        for action, body in calls
    ]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (404, "subscription_not_found")
    ] * 2
    assert razorpay_api.requests == []
    for operation in ("cancel_subscription", "change_plan"):
        assert documented_codes(client, operation, 404) == ["subscription_not_found"]


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
        "credits_remaining": FREE_CREDITS + 3 * 200,
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
        "credits_remaining": FREE_CREDITS + 3 * 200,
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
    assert state(conn, user)["credits_remaining"] == FREE_CREDITS + 200
    assert [reference for _, reference in grants(conn, user.workspace_id)] == [
        free_reference(conn, user.workspace_id),
        f"razorpay:{charged['payload']['payment']['entity']['invoice_id']}",
    ]


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


def test_no_user_can_write_a_subscription_or_its_provider_state(conn: Conn) -> None:
    """Finding 1 and 2: subscription rows and their cancel flag come only from Razorpay's
    answers, written by the service; nothing a signed-in user can call writes them."""
    owner = create_user(conn)
    with pytest.raises(psycopg.errors.UndefinedFunction), acting_as(conn, owner):
        conn.execute(
            "select public.record_subscription(%s, 'team', 'sub_MadeUp12345678', 'active', null)",
            (owner.workspace_id,),
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute(
            "insert into public.subscriptions (workspace_id, plan_tier, razorpay_subscription_id,"
            " status) values (%s, 'team', 'sub_MadeUp12345678', 'active')",
            (owner.workspace_id,),
        )
    writers = conn.execute(
        "select p.oid::regprocedure::text as name,"
        " has_function_privilege('authenticated', p.oid, 'execute') as by_users,"
        " has_function_privilege('anon', p.oid, 'execute') as by_anon,"
        " has_function_privilege('service_role', p.oid, 'execute') as by_service"
        " from pg_catalog.pg_proc p"
        " where p.proname in ('record_subscription', 'mark_cancel_at_period_end')"
        " order by 1"
    ).fetchall()
    assert [tuple(r.values()) for r in writers] == [
        ("private.mark_cancel_at_period_end(uuid)", False, False, True),
        ("private.record_subscription(uuid,uuid,jsonb)", False, False, True),
    ]


def test_subscription_ids_have_razorpays_shape_before_they_reach_the_sdk(
    conn: Conn, razorpay_api: RazorpayServer
) -> None:
    owner = create_user(conn)
    forged_ids = [
        "sub_b_real/cancel#",
        "../../v1/payments/pay_x/refund#",
        "sub_AAAAAAAAAAAAAA\n",
        "sub_AAAAAAAAAAAAA",
    ]
    for forged in forged_ids:
        with pytest.raises(psycopg.errors.CheckViolation):
            legacy_subscription(conn, owner.workspace_id, forged, "created")
    billing = RazorpayBilling(key_id=KEY_ID, key_secret=KEY_SECRET, base_url=razorpay_api.base_url)
    for forged in forged_ids:
        for call in (
            partial(billing.cancel, forged, at_period_end=False),
            partial(billing.change_plan, forged, "plan_growthbase_team"),
            partial(billing.fetch_for_workspace, forged, owner.workspace_id),
        ):
            with pytest.raises(RazorpayError) as refused_call:
                call()
            assert refused_call.value.reason == "id_invalid"
    assert razorpay_api.requests == []


def test_cancel_and_change_plan_refuse_a_subscription_razorpay_holds_for_another_workspace(
    client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer, conn: Conn
) -> None:
    owner, victim = create_user(conn), create_user(conn)
    theirs = razorpay_api.hold(PLAN, str(victim.workspace_id))
    row = legacy_subscription(conn, owner.workspace_id, theirs, "active")
    answers = [
        client.post(
            f"/api/v1/billing/subscriptions/{row}/cancel",
            headers=bearer(jwks, owner),
            json={"at_period_end": False},
        ),
        client.post(
            f"/api/v1/billing/subscriptions/{row}/change-plan",
            headers=bearer(jwks, owner),
            json={"tier": "team"},
        ),
    ]
    assert [(a.status_code, a.json()["data"], a.json()["error"]["code"]) for a in answers] == [
        (409, None, "subscription_not_in_workspace")
    ] * 2
    assert [(method, path) for method, path, _ in razorpay_api.requests] == [
        ("GET", f"/v1/subscriptions/{theirs}")
    ] * 2
    assert razorpay_api.subscriptions[theirs]["status"] == "active"


def test_razorpay_refusing_a_call_is_a_422_quoting_razorpay(
    client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer, conn: Conn
) -> None:
    owner = create_user(conn)
    unknown = legacy_subscription(
        conn, owner.workspace_id, "sub_" + uuid.uuid4().hex[:14], "active"
    )
    answer = client.post(
        f"/api/v1/billing/subscriptions/{unknown}/cancel",
        headers=bearer(jwks, owner),
        json={"at_period_end": True},
    )
    assert (answer.status_code, answer.json()) == (
        422,
        {
            "data": None,
            "error": {
                "code": "billing_request_refused",
                "message": "Razorpay refused the request: The id provided does not exist",
                "details": None,
            },
        },
    )
    assert [method for method, _, _ in razorpay_api.requests] == ["GET"]
    flagged = one(
        conn, "select cancel_at_period_end from public.subscriptions where id = %s", (unknown,)
    )
    assert flagged == {"cancel_at_period_end": False}


def test_an_unreachable_razorpay_is_a_502_and_records_no_subscription(
    database_url: str, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    with serve_razorpay() as stopped:
        pass
    with edge(database_url, jwks, stopped.base_url) as unreachable:
        answer = subscribe(unreachable, jwks, owner)
    assert (answer.status_code, answer.json()["error"]) == (
        502,
        {
            "code": "provider_error",
            "message": "Razorpay could not be reached or failed",
            "details": None,
        },
    )
    rows = conn.execute(
        "select id from public.subscriptions where workspace_id = %s", (owner.workspace_id,)
    ).fetchall()
    assert rows == []


def test_a_stored_id_razorpay_never_issues_is_a_409() -> None:
    """Such an id cannot be stored any more (a check constraint), so no request can carry one;
    the answer is what the edge would give for a row that predates the constraint."""
    refused = billing_failure(RazorpayError("id_invalid"))
    assert (refused.status, refused.code) == (409, "subscription_id_invalid")


def test_the_documented_webhook_body_is_what_razorpay_sends(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/webhooks/razorpay"]["post"]
    body = operation["requestBody"]["content"]["application/json"]
    validator = Draft202012Validator(body["schema"])
    sent = lifecycle(new_subscription_id())
    assert [list(validator.iter_errors(event)) for event in sent] == [[]] * len(sent)
    assert operation["security"] == [{"razorpaySignature": []}]


@pytest.mark.parametrize("action", ["", "/{id}/cancel", "/{id}/change-plan"])
def test_a_body_that_is_not_utf8_is_a_documented_400(client: TestClient, action: str) -> None:
    path = "/api/v1/billing/subscriptions" + action
    answer = client.post(
        path.format(id=uuid.uuid4()),
        content=b"\xff{",
        headers={"Content-Type": "application/json"},
    )
    assert (answer.status_code, answer.json()["error"]["code"]) == (400, "bad_request")
    documented = client.get("/openapi.json").json()["paths"][path.format(id="{subscription_id}")][
        "post"
    ]["responses"]["400"]
    assert documented["x-error-codes"] == ["bad_request"]


def test_a_row_razorpay_never_reported_does_not_set_the_tier(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    user, sub_id = new_subscriber(conn, client, jwks)
    events = lifecycle(sub_id)
    for body in (events[1], events[-1]):
        deliver(client, body)
    made_up = "sub_" + uuid.uuid4().hex[:14]
    legacy_subscription(conn, user.workspace_id, made_up, "active", "team")
    assert deliver(client, events[1]).json()["data"]["outcome"] == "accepted"
    outcome = one(
        conn,
        "select outcome from private.webhook_events where provider = 'razorpay'"
        " order by received_at desc limit 1",
    )
    assert outcome == {"outcome": "stale"}
    assert state(conn, user)["plan_tier"] == "free"


def test_a_redelivery_arriving_during_the_first_apply_is_applied_once(
    client: TestClient, jwks: JwksServer, conn: Conn, database_url: str
) -> None:
    user, sub_id = new_subscriber(conn, client, jwks)
    stored = one(
        conn,
        "select id from private.record_webhook_event('razorpay', %s, %s)",
        (f"evt_{uuid.uuid4().hex[:14]}", json.dumps(lifecycle(sub_id)[1])),
    )["id"]
    redelivered: dict[str, Any] = {}
    with (
        psycopg.connect(database_url, row_factory=dict_row) as first,
        psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as second,
    ):
        become_service(first)
        first.execute("select private.apply_razorpay_event(%s)", (stored,))

        def apply_again() -> None:
            with second.transaction():
                become_service(second)
                redelivered.update(
                    one(second, "select private.apply_razorpay_event(%s) as outcome", (stored,))
                )

        racer = threading.Thread(target=apply_again)
        racer.start()
        wait_until_blocked(conn, second.info.backend_pid)
        first.commit()
        racer.join()
    with acting_as(conn, user):
        history = conn.execute("select event from public.subscription_events").fetchall()
    assert history == [{"event": "subscription.activated"}]
    assert redelivered == {"outcome": "applied"}
    assert state(conn, user)["status"] == "active"


def test_a_new_account_starts_with_the_free_plans_monthly_credits(conn: Conn) -> None:
    user = create_user(conn)
    credits = one(
        conn, "select credits_remaining from public.workspaces where id = %s", (user.workspace_id,)
    )
    assert credits == {"credits_remaining": FREE_CREDITS}
    assert grants(conn, user.workspace_id) == [
        (FREE_CREDITS, free_reference(conn, user.workspace_id))
    ]
    with acting_as(conn, user):
        seen = conn.execute(
            "select reason, delta, balance_after from public.credit_ledger where workspace_id = %s",
            (user.workspace_id,),
        ).fetchall()
    assert seen == [{"reason": "grant", "delta": FREE_CREDITS, "balance_after": FREE_CREDITS}]


def test_workspaces_created_after_sign_up_mint_no_free_credits(
    client: TestClient, conn: Conn
) -> None:
    user = create_user(conn)
    with acting_as(conn, user):
        extra = [
            one(conn, "select id from public.create_workspace(%s)", (f"Shop {n}",))["id"]
            for n in range(3)
        ]
        conn.execute("delete from public.workspaces where id = %s", (extra[0],))
        extra.append(one(conn, "select id from public.create_workspace('Shop again')")["id"])
    granted_last_month(conn, user)
    cron = {"Authorization": f"Bearer {CRON_SECRET}"}
    assert client.get("/api/v1/cron/monthly-credits", headers=cron).status_code == 200
    for workspace in extra[1:]:
        credits = one(
            conn, "select credits_remaining from public.workspaces where id = %s", (workspace,)
        )
        assert credits == {"credits_remaining": 0}
        assert grants(conn, workspace) == []
    assert balance(conn, user) == 2 * FREE_CREDITS
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, user):
        conn.execute("update public.workspaces set personal = true where id = %s", (extra[1],))


def granted_last_month(conn: Conn, user: User) -> None:
    """Moves the workspace's sign-up grant to last month, as if it had signed up then."""
    conn.execute(
        "update public.credit_ledger set grant_reference = %s where grant_reference = %s",
        (
            free_reference(conn, user.workspace_id, months_ago=1),
            free_reference(conn, user.workspace_id),
        ),
    )


def test_the_cron_grants_the_free_plan_once_per_workspace_each_month(
    client: TestClient, conn: Conn
) -> None:
    free, paid = create_user(conn), create_user(conn)
    fund(conn, paid, 0, tier="team")
    for user in (free, paid):
        granted_last_month(conn, user)
    cron = {"Authorization": f"Bearer {CRON_SECRET}"}
    assert client.get("/api/v1/cron/monthly-credits").status_code == 401
    runs = [client.get("/api/v1/cron/monthly-credits", headers=cron) for _ in range(2)]
    assert [r.status_code for r in runs] == [200, 200]
    assert runs[0].json()["data"]["granted"] >= 1
    assert runs[1].json()["data"] == {"granted": 0}
    assert balance(conn, free) == 2 * FREE_CREDITS
    assert grants(conn, free.workspace_id) == [
        (FREE_CREDITS, free_reference(conn, free.workspace_id, months_ago=1)),
        (FREE_CREDITS, free_reference(conn, free.workspace_id)),
    ]
    assert balance(conn, paid) == 0
    assert grants(conn, paid.workspace_id) == [
        (FREE_CREDITS, free_reference(conn, paid.workspace_id, months_ago=1))
    ]


def test_two_grant_runs_at_once_grant_a_workspace_once(conn: Conn, database_url: str) -> None:
    user = create_user(conn)
    granted_last_month(conn, user)
    with (
        psycopg.connect(database_url, row_factory=dict_row) as first,
        psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as second,
    ):
        become_service(first)
        first.execute("select private.grant_free_monthly_credits(1000)")
        with second.transaction():
            become_service(second)
            second.execute("select private.grant_free_monthly_credits(1000)")
        first.commit()
    assert balance(conn, user) == 2 * FREE_CREDITS
    assert [r for _, r in grants(conn, user.workspace_id)].count(
        free_reference(conn, user.workspace_id)
    ) == 1
