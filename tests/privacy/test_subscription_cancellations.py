"""A workspace that goes stops paying: deleting a workspace or an account cancels its Razorpay
subscriptions through the billing feature's `razorpay` SDK client, against the local server in
Razorpay's API shape (as the billing tests do), at once and for good; an outage leaves them
queued for the cron, which retries with backoff; a restore withdraws what was not yet sent;
a subscription Razorpay holds for another workspace is never cancelled."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.app import create_app
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import User, acting_as, add_member, create_user, fund, one
from tests.fakes.jwks import JwksServer
from tests.fakes.razorpay_server import KEY_ID, KEY_SECRET, RazorpayServer, serve_razorpay
from tests.fakes.supabase_auth_server import SERVICE_KEY, AuthServer, serve_auth

Conn = psycopg.Connection[DictRow]
CRON_SECRET = "cron-" + uuid.uuid4().hex
CRON = {"Authorization": f"Bearer {CRON_SECRET}"}


@pytest.fixture(scope="module")
def razorpay_api() -> Iterator[RazorpayServer]:
    with serve_razorpay() as server:
        yield server


@pytest.fixture(scope="module")
def auth(database_url: str) -> Iterator[AuthServer]:
    with serve_auth(database_url) as server:
        yield server


@pytest.fixture(scope="module")
def client(
    database_url: str, jwks: JwksServer, razorpay_api: RazorpayServer, auth: AuthServer
) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        razorpay_key_id=KEY_ID,
        razorpay_key_secret=KEY_SECRET,
        razorpay_base_url=razorpay_api.base_url,
        supabase_auth_url=auth.base_url,
        supabase_service_key=SERVICE_KEY,
        cron_secret=CRON_SECRET,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def team_workspace(conn: Conn, owner: User) -> uuid.UUID:
    with acting_as(conn, owner):
        row = one(conn, "select id from public.create_workspace('Team', 'EUR')")
    return uuid.UUID(str(row["id"]))


def subscribed(
    client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer, owner: User, workspace: Any
) -> str:
    """Subscribes through the billing route; Razorpay then holds it active."""
    answer = client.post(
        "/api/v1/billing/subscriptions",
        headers=bearer(jwks, owner),
        json={"workspace_id": str(workspace), "tier": "solo"},
    )
    assert answer.status_code == 201, answer.text
    sub_id: str = answer.json()["data"]["checkout"]["subscription_id"]
    razorpay_api.subscriptions[sub_id].update(status="active", paid_count=1)
    return sub_id


def cancel_calls(razorpay_api: RazorpayServer, sub_id: str) -> list[Any]:
    return [
        body
        for method, path, body in razorpay_api.requests
        if method == "POST" and path == f"/v1/subscriptions/{sub_id}/cancel"
    ]


def queued(conn: Conn, sub_id: str) -> dict[str, Any] | None:
    return conn.execute(
        "select status, reason, attempts, razorpay_status from private.subscription_cancellations"
        " where razorpay_subscription_id = %s",
        (sub_id,),
    ).fetchone()


def audited(conn: Conn, workspace: Any) -> list[str]:
    rows = conn.execute(
        "select action from public.audit_log where workspace_id = %s and action like 'billing.%%'"
        " order by id",
        (workspace,),
    ).fetchall()
    return [row["action"] for row in rows]


@pytest.fixture
def no_other_due_cancellations(conn: Conn) -> None:
    """Every cancellation other tests left pending in the worker's database is put off for
    ever: the cron claims the 20 due longest ago, whichever workspace's, so twenty such
    leftovers ahead of this test's row left it unclaimed (proven with twenty-one run first)."""
    conn.execute(
        "update private.subscription_cancellations set next_attempt_at = 'infinity'"
        " where status = 'pending'"
    )


def test_deleting_a_workspace_cancels_its_subscription_at_razorpay_at_once(
    conn: Conn, client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer
) -> None:
    owner = create_user(conn)
    team = team_workspace(conn, owner)
    sub_id = subscribed(client, jwks, razorpay_api, owner, team)

    deleted = client.post(f"/api/v1/privacy/workspaces/{team}/delete", headers=bearer(jwks, owner))

    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["data"]["subscriptions"] == {"cancelled": 1, "pending": 0, "failed": 0}
    # Ended now, not at the period's end: nothing more is charged for a deleted workspace.
    assert cancel_calls(razorpay_api, sub_id) == [{"cancel_at_cycle_end": 0}]
    assert razorpay_api.subscriptions[sub_id]["status"] == "cancelled"
    assert queued(conn, sub_id) == {
        "status": "cancelled",
        "reason": "workspace_deleted",
        "attempts": 1,
        "razorpay_status": "cancelled",
    }
    assert audited(conn, team)[-1] == "billing.subscription_cancelled"

    # The cron has nothing left to do for it, and a restore does not resurrect it.
    again = client.get("/api/v1/cron/subscription-cancellations", headers=CRON)
    assert again.status_code == 200
    assert (
        client.post(
            f"/api/v1/privacy/workspaces/{team}/restore", headers=bearer(jwks, owner)
        ).status_code
        == 200
    )
    assert cancel_calls(razorpay_api, sub_id) == [{"cancel_at_cycle_end": 0}]
    assert queued(conn, sub_id)["status"] == "cancelled"


@pytest.mark.usefixtures("no_other_due_cancellations")
def test_an_outage_leaves_it_queued_for_the_cron_which_retries_until_razorpay_answers(
    conn: Conn, client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer
) -> None:
    owner = create_user(conn)
    team = team_workspace(conn, owner)
    sub_id = subscribed(client, jwks, razorpay_api, owner, team)

    razorpay_api.fail_with = 503
    try:
        deleted = client.post(
            f"/api/v1/privacy/workspaces/{team}/delete", headers=bearer(jwks, owner)
        )
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["data"]["subscriptions"] == {
            "cancelled": 0,
            "pending": 1,
            "failed": 0,
        }
        # Not due yet: the cron leaves it alone until its backoff has passed. (Its counts also
        # cover what other test files on this database queued, so the row itself is asked.)
        cron = client.get("/api/v1/cron/subscription-cancellations", headers=CRON)
        assert cron.status_code == 200, cron.text
        state = queued(conn, sub_id)
        assert state is not None and (state["status"], state["attempts"]) == ("pending", 1)
        conn.execute(
            "update private.subscription_cancellations set next_attempt_at = now()"
            " where razorpay_subscription_id = %s",
            (sub_id,),
        )
        cron = client.get("/api/v1/cron/subscription-cancellations", headers=CRON)
        assert cron.json()["data"]["razorpay"]["retrying"] >= 1
    finally:
        razorpay_api.fail_with = None
    state = queued(conn, sub_id)
    assert state is not None and (state["status"], state["attempts"]) == ("pending", 2)
    assert razorpay_api.subscriptions[sub_id]["status"] == "active"

    conn.execute(
        "update private.subscription_cancellations set next_attempt_at = now()"
        " where razorpay_subscription_id = %s",
        (sub_id,),
    )
    cron = client.get("/api/v1/cron/subscription-cancellations", headers=CRON)
    assert cron.json()["data"]["razorpay"]["cancelled"] >= 1
    assert razorpay_api.subscriptions[sub_id]["status"] == "cancelled"
    assert queued(conn, sub_id)["status"] == "cancelled"


@pytest.mark.usefixtures("no_other_due_cancellations")
def test_after_ten_failed_attempts_it_is_a_dead_letter_in_the_audit_log(
    conn: Conn, client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer
) -> None:
    owner = create_user(conn)
    team = team_workspace(conn, owner)
    sub_id = subscribed(client, jwks, razorpay_api, owner, team)
    razorpay_api.fail_with = 500
    try:
        client.post(f"/api/v1/privacy/workspaces/{team}/delete", headers=bearer(jwks, owner))
        conn.execute(
            "update private.subscription_cancellations set attempts = 9, next_attempt_at = now()"
            " where razorpay_subscription_id = %s",
            (sub_id,),
        )
        cron = client.get("/api/v1/cron/subscription-cancellations", headers=CRON)
    finally:
        razorpay_api.fail_with = None
    assert cron.json()["data"]["razorpay"]["failed"] >= 1
    assert queued(conn, sub_id)["status"] == "failed"
    assert audited(conn, team)[-1] == "billing.subscription_cancel_failed"


def test_restoring_a_workspace_withdraws_a_cancellation_razorpay_has_not_carried_out(
    conn: Conn, client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer
) -> None:
    owner = create_user(conn)
    team = team_workspace(conn, owner)
    sub_id = subscribed(client, jwks, razorpay_api, owner, team)
    razorpay_api.fail_with = 503
    try:
        client.post(f"/api/v1/privacy/workspaces/{team}/delete", headers=bearer(jwks, owner))
    finally:
        razorpay_api.fail_with = None
    assert queued(conn, sub_id)["status"] == "pending"

    restored = client.post(
        f"/api/v1/privacy/workspaces/{team}/restore", headers=bearer(jwks, owner)
    )
    assert restored.status_code == 200
    assert queued(conn, sub_id) is None
    conn.execute("update private.subscription_cancellations set next_attempt_at = now()")
    client.get("/api/v1/cron/subscription-cancellations", headers=CRON)
    assert cancel_calls(razorpay_api, sub_id) == []
    assert razorpay_api.subscriptions[sub_id]["status"] == "active"


def test_deleting_an_account_cancels_the_subscriptions_of_the_workspaces_that_go_with_it(
    conn: Conn, client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer
) -> None:
    leaver = create_user(conn)
    sub_id = subscribed(client, jwks, razorpay_api, leaver, leaver.workspace_id)
    # A shared workspace they do not own keeps its own subscription.
    other = create_user(conn)
    fund(conn, other, 10, "team")
    kept_sub = subscribed(client, jwks, razorpay_api, other, other.workspace_id)
    with acting_as(conn, other):
        token = one(
            conn,
            "select token from public.invite_member(%s, %s, 'member')",
            (other.workspace_id, leaver.email),
        )["token"]
    with acting_as(conn, leaver):
        conn.execute("select public.accept_invitation(%s)", (token,))

    answer = client.delete("/api/v1/privacy/account", headers=bearer(jwks, leaver))

    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["subscriptions"] == {"cancelled": 1, "pending": 0, "failed": 0}
    assert cancel_calls(razorpay_api, sub_id) == [{"cancel_at_cycle_end": 0}]
    assert queued(conn, sub_id)["reason"] == "workspace_removed"
    assert cancel_calls(razorpay_api, kept_sub) == []
    assert queued(conn, kept_sub) is None


@pytest.mark.usefixtures("no_other_due_cancellations")
def test_the_retention_purge_queues_a_subscription_left_live(
    conn: Conn, client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer
) -> None:
    """A live subscription whose row goes any other way (here a purge of a workspace deleted
    before this queue existed) is queued by the row's own trigger."""
    owner = create_user(conn)
    team = team_workspace(conn, owner)
    sub_id = subscribed(client, jwks, razorpay_api, owner, team)
    conn.execute(
        "update public.workspaces set deleted_at = now() - interval '31 days',"
        " purge_after = now() - interval '1 day' where id = %s",
        (team,),
    )
    conn.execute(
        "delete from private.subscription_cancellations where razorpay_subscription_id = %s",
        (sub_id,),
    )
    conn.execute("delete from public.workspaces where id = %s", (team,))
    assert queued(conn, sub_id)["status"] == "pending"
    cron = client.get("/api/v1/cron/subscription-cancellations", headers=CRON)
    assert cron.json()["data"]["razorpay"]["cancelled"] >= 1
    assert queued(conn, sub_id)["status"] == "cancelled"
    assert razorpay_api.subscriptions[sub_id]["status"] == "cancelled"


def test_a_subscription_razorpay_holds_for_another_workspace_is_never_cancelled(
    conn: Conn, client: TestClient, jwks: JwksServer, razorpay_api: RazorpayServer
) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    team = team_workspace(conn, owner)
    theirs = razorpay_api.hold("plan_growthbase_solo", str(stranger.workspace_id))
    # A stored row naming another workspace's Razorpay subscription (as a forged import would).
    conn.execute(
        "select private.record_subscription(%s, %s, %s)",
        (
            team,
            owner.id,
            Jsonb(
                {
                    "id": theirs,
                    "plan_id": "plan_growthbase_solo",
                    "notes": {"workspace_id": str(team)},
                }
            ),
        ),
    )
    deleted = client.post(f"/api/v1/privacy/workspaces/{team}/delete", headers=bearer(jwks, owner))
    assert deleted.json()["data"]["subscriptions"] == {"cancelled": 0, "pending": 0, "failed": 1}
    assert cancel_calls(razorpay_api, theirs) == []
    assert razorpay_api.subscriptions[theirs]["status"] == "active"
    assert audited(conn, team)[-1] == "billing.subscription_cancel_failed"


def test_a_member_cannot_read_or_write_the_queue(conn: Conn) -> None:
    user = create_user(conn)
    add_member(conn, user, "admin")
    with acting_as(conn, user), pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("select * from private.subscription_cancellations")
