"""Retention: what is past its time goes in bounded batches, what is not stays, and the
workspace's own settings decide the per-workspace kinds."""

import json
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from api.core.db import Database
from api.core.settings import Settings
from api.privacy.retention import prune
from tests.factories.email import add_contacts, draft_campaign, email_list, start, verified_sender
from tests.factories.workspaces import (
    User,
    acting_as,
    create_user,
    fund,
    make_project,
    one,
    refused,
)
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]
CRON_SECRET = "cron-" + uuid.uuid4().hex


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=10)
    db.open()
    yield db
    db.close()


def old_webhooks(conn: Conn, days: int, count: int, status: str = "applied") -> str:
    tag = uuid.uuid4().hex[:8]
    conn.execute(
        "insert into private.webhook_events (provider, event_id, body, status, received_at)"
        " select 'shopify', %s || n, %s, %s, now() - make_interval(days => %s)"
        " from generate_series(1, %s) n",
        (tag, json.dumps({"email": f"{tag}@example.test"}), status, days, count),
    )
    return tag


def webhooks_left(conn: Conn, tag: str) -> int:
    row = one(
        conn,
        "select count(*) as n from private.webhook_events where event_id like %s",
        (tag + "%",),
    )
    return int(row["n"])


def sent_campaign(conn: Conn, owner: User, days_ago: int) -> uuid.UUID:
    fund(conn, owner, 10, "team")
    readers = add_contacts(conn, owner, 2, prefix=f"r-{uuid.uuid4().hex[:6]}")
    campaign = draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, readers, f"List {uuid.uuid4().hex[:6]}")],
        sender_id=verified_sender(conn, owner),
    )
    start(conn, owner, campaign)
    conn.execute(
        "update public.campaign_recipients set status = 'sent',"
        " sent_at = now() - make_interval(days => %s), opened_at = now() - interval '1 day'"
        " where campaign_id = %s",
        (days_ago, campaign),
    )
    conn.execute("update public.campaigns set status = 'sent' where id = %s", (campaign,))
    return campaign


def addresses(conn: Conn, campaign: uuid.UUID) -> tuple[int, int]:
    row = one(
        conn,
        "select count(email) as kept, count(opened_at) as opened from public.campaign_recipients"
        " where campaign_id = %s",
        (campaign,),
    )
    return int(row["kept"]), int(row["opened"])


def test_pruning_removes_only_what_is_past_its_time_in_batches(
    conn: Conn, database: Database
) -> None:
    stale = old_webhooks(conn, 31, 5)
    fresh = old_webhooks(conn, 29, 2)
    waiting = old_webhooks(conn, 40, 1, status="received")
    owner = create_user(conn)
    old = sent_campaign(conn, owner, 400)
    recent = sent_campaign(conn, owner, 100)
    strict = create_user(conn)
    with acting_as(conn, strict):
        conn.execute(
            "insert into public.workspace_privacy_settings (workspace_id, email_event_days)"
            " values (%s, 60)",
            (strict.workspace_id,),
        )
    strict_campaign = sent_campaign(conn, strict, 100)

    report = prune(database, budget_seconds=30, batch_rows=2)
    assert report["finished"] is True
    assert report["calls"] >= 3  # five stale payloads, two per statement
    assert webhooks_left(conn, stale) == 0
    assert webhooks_left(conn, fresh) == 2
    assert webhooks_left(conn, waiting) == 1
    # Addresses go, the campaign's counts stay.
    assert addresses(conn, old) == (0, 2)
    assert addresses(conn, recent) == (2, 2)
    assert addresses(conn, strict_campaign) == (0, 2)


def test_old_audit_entries_go_by_the_workspaces_setting(conn: Conn, database: Database) -> None:
    owner = create_user(conn)
    keeper = create_user(conn)
    with acting_as(conn, keeper):
        conn.execute(
            "insert into public.workspace_privacy_settings (workspace_id, audit_log_days)"
            " values (%s, 3650)",
            (keeper.workspace_id,),
        )
    for user in (owner, keeper):
        conn.execute(
            "insert into public.audit_log (workspace_id, action, target_type, created_at)"
            " values (%s, 'member.added', 'user', now() - interval '800 days')",
            (user.workspace_id,),
        )
    prune(database, budget_seconds=30)

    def old_entries(user: User) -> int:
        row = one(
            conn,
            "select count(*) as n from public.audit_log where workspace_id = %s"
            " and created_at < now() - interval '700 days'",
            (user.workspace_id,),
        )
        return int(row["n"])

    assert old_entries(owner) == 0
    assert old_entries(keeper) == 1


def test_only_admins_set_retention_within_bounds(conn: Conn) -> None:
    owner = create_user(conn)
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.workspace_privacy_settings (workspace_id) values (%s)",
            (owner.workspace_id,),
        )
    with pytest.raises(psycopg.errors.CheckViolation), acting_as(conn, owner):
        conn.execute(
            "update public.workspace_privacy_settings set email_event_days = 5"
            " where workspace_id = %s",
            (owner.workspace_id,),
        )
    stranger = create_user(conn)
    with acting_as(conn, stranger):
        changed = conn.execute(
            "update public.workspace_privacy_settings set audit_log_days = 90"
            " where workspace_id = %s",
            (owner.workspace_id,),
        )
        assert changed.rowcount == 0
    with refused(409, "audit_log_is_append_only"):
        conn.execute("delete from public.audit_log where workspace_id = %s", (owner.workspace_id,))


def test_the_cron_endpoint_runs_the_job(database_url: str, jwks: JwksServer, conn: Conn) -> None:
    stale = old_webhooks(conn, 45, 3)
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        cron_secret=SecretStr(CRON_SECRET),
    )
    with TestClient(create_app(settings)) as client:
        denied = client.get("/api/v1/cron/privacy-retention")
        answer = client.get(
            "/api/v1/cron/privacy-retention", headers={"Authorization": f"Bearer {CRON_SECRET}"}
        )
    assert denied.status_code == 401
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["finished"] is True
    assert answer.json()["data"]["removed"]["webhook_events"] >= 3
    assert webhooks_left(conn, stale) == 0


def test_a_workspace_keeps_its_own_webhook_payloads_fewer_days(conn: Conn) -> None:
    owner = create_user(conn)
    other = create_user(conn)
    project = make_project(conn, owner)
    theirs = make_project(conn, other)
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.workspace_privacy_settings (workspace_id, webhook_payload_days)"
            " values (%s, 3)"
            " on conflict (workspace_id) do update set webhook_payload_days = 3",
            (owner.workspace_id,),
        )
    with pytest.raises(psycopg.errors.CheckViolation), acting_as(conn, owner):
        conn.execute(
            "update public.workspace_privacy_settings set webhook_payload_days = 31"
            " where workspace_id = %s",
            (owner.workspace_id,),
        )
    tag = uuid.uuid4().hex[:8]
    rows = [
        (f"{project}:orders/create:{tag}-old", "applied", 5),
        (f"{project}:orders/create:{tag}-waiting", "received", 5),
        (f"{project}:orders/create:{tag}-new", "applied", 1),
        (f"{theirs}:orders/create:{tag}-theirs", "applied", 5),
        (f"{tag}-ses", "applied", 5),
    ]
    for event_id, status, days in rows:
        conn.execute(
            "insert into private.webhook_events (provider, event_id, body, status, received_at)"
            " values ('shopify', %s, '{}', %s, now() - make_interval(days => %s))",
            (event_id, status, days),
        )
    attributed = {
        r["event_id"]: r["workspace_id"]
        for r in conn.execute(
            "select event_id, workspace_id from private.webhook_events where event_id like %s",
            (f"%{tag}%",),
        ).fetchall()
    }
    assert attributed[f"{project}:orders/create:{tag}-old"] == owner.workspace_id
    assert attributed[f"{theirs}:orders/create:{tag}-theirs"] == other.workspace_id
    assert attributed[f"{tag}-ses"] is None

    conn.execute("select private.prune_retention(10000)")
    left = {
        r["event_id"]
        for r in conn.execute(
            "select event_id from private.webhook_events where event_id like %s", (f"%{tag}%",)
        ).fetchall()
    }
    # Only the owner's applied payload older than their 3 days went; one still waiting to be
    # applied stays, as do another workspace's and an unattributed one (30 days for those).
    assert left == {event_id for event_id, _, _ in rows} - {f"{project}:orders/create:{tag}-old"}
