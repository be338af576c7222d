"""Exports expire: after the workspace's `export_days` no link is signed (410 at once, before any
job runs), links never outlive the export, the cron removes the Storage object (against the
provider-shaped Storage server, as supabase-py's `remove` calls it) and retries a failed
removal; an erased contact's export and a purged workspace's exports lose their files too, and
every link taken is in the audit log."""

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.app import create_app
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import User, acting_as, add_member, create_user, one, refused
from tests.fakes.jwks import JwksServer
from tests.fakes.storage_server import SERVICE_KEY, StorageServer, serve_storage
from tests.privacy.test_exports import shared_customer

Conn = psycopg.Connection[DictRow]
CRON_SECRET = "cron-" + uuid.uuid4().hex
CRON = {"Authorization": f"Bearer {CRON_SECRET}"}


@pytest.fixture(scope="module")
def storage() -> Iterator[StorageServer]:
    with serve_storage() as server:
        yield server


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer, storage: StorageServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        supabase_storage_url=storage.base_url,
        supabase_service_key=SERVICE_KEY,
        cron_secret=CRON_SECRET,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def exported(conn: Conn, client: TestClient, jwks: JwksServer, owner: User) -> dict[str, Any]:
    contact = shared_customer(conn, owner, f"x-{uuid.uuid4().hex[:8]}@example.test")
    answer = client.post(f"/api/v1/privacy/contacts/{contact}/exports", headers=bearer(jwks, owner))
    assert answer.status_code == 201, answer.text
    export: dict[str, Any] = answer.json()["data"]
    assert export["status"] == "done" and export["download_url"]
    return export


def lapse(conn: Conn, export_id: str) -> None:
    conn.execute(
        "update public.contact_exports set expires_at = now() - interval '1 second' where id = %s",
        (export_id,),
    )


def state(conn: Conn, export_id: str) -> dict[str, Any]:
    return one(
        conn,
        "select status, storage_path, error_code from public.contact_exports where id = %s",
        (export_id,),
    )


def code(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def test_an_expired_export_is_refused_at_once_and_the_cron_removes_its_file(
    conn: Conn, client: TestClient, jwks: JwksServer, storage: StorageServer
) -> None:
    owner = create_user(conn)
    export = exported(conn, client, jwks, owner)
    path = f"{owner.workspace_id}/{export['id']}.zip"
    kept = one(
        conn,
        "select expires_at - finished_at as kept from public.contact_exports where id = %s",
        (export["id"],),
    )
    assert kept["kept"].days == 7
    old_link = export["download_url"]
    assert httpx.get(old_link).status_code == 200

    lapse(conn, export["id"])
    # Refused before any job has run.
    read = client.get(f"/api/v1/privacy/exports/{export['id']}", headers=bearer(jwks, owner))
    assert code(read) == (410, "export_expired")

    cron = client.get("/api/v1/cron/privacy-exports", headers=CRON)
    assert cron.status_code == 200, cron.text
    report = cron.json()["data"]
    assert report["expired"] >= 1 and report["removed"] >= 1
    assert ("exports", path) not in storage.objects
    assert httpx.get(old_link).status_code == 404
    assert state(conn, export["id"]) == {
        "status": "expired",
        "storage_path": None,
        "error_code": None,
    }
    assert code(
        client.get(f"/api/v1/privacy/exports/{export['id']}", headers=bearer(jwks, owner))
    ) == (410, "export_expired")
    left = one(
        conn, "select count(*) as n from private.storage_removals where object_name = %s", (path,)
    )
    assert left == {"n": 0}


def test_the_workspace_sets_how_long_exports_are_kept_and_links_never_outlive_them(
    conn: Conn, client: TestClient, jwks: JwksServer, storage: StorageServer
) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    with acting_as(conn, admin):
        conn.execute(
            "insert into public.workspace_privacy_settings (workspace_id, export_days)"
            " values (%s, 2)",
            (owner.workspace_id,),
        )
    export = exported(conn, client, jwks, owner)
    kept = one(
        conn,
        "select expires_at - finished_at as kept from public.contact_exports where id = %s",
        (export["id"],),
    )
    assert kept["kept"].days == 2
    assert storage.signed_for[-1] == 24 * 3600

    conn.execute(
        "update public.contact_exports set expires_at = now() + interval '1 hour' where id = %s",
        (export["id"],),
    )
    read = client.get(f"/api/v1/privacy/exports/{export['id']}", headers=bearer(jwks, admin))
    assert read.status_code == 200 and read.json()["data"]["download_url"]
    assert 3500 <= storage.signed_for[-1] <= 3600

    links = conn.execute(
        "select actor_id, target_id, details from public.audit_log"
        " where workspace_id = %s and action = 'export.link_issued' order by id",
        (owner.workspace_id,),
    ).fetchall()
    assert [row["actor_id"] for row in links] == [owner.id, admin.id]
    assert {row["details"]["export_id"] for row in links} == {export["id"]}


def test_erasing_the_contact_removes_their_export_file(
    conn: Conn, client: TestClient, jwks: JwksServer, storage: StorageServer
) -> None:
    owner = create_user(conn)
    export = exported(conn, client, jwks, owner)
    path = f"{owner.workspace_id}/{export['id']}.zip"
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (export["contact_id"],))
    assert state(conn, export["id"]) == {
        "status": "expired",
        "storage_path": None,
        "error_code": "contact_erased",
    }
    assert code(
        client.get(f"/api/v1/privacy/exports/{export['id']}", headers=bearer(jwks, owner))
    ) == (410, "export_expired")
    client.get("/api/v1/cron/privacy-exports", headers=CRON)
    assert ("exports", path) not in storage.objects


def test_an_export_whose_contact_is_erased_while_it_runs_keeps_no_file(conn: Conn) -> None:
    owner = create_user(conn)
    contact = shared_customer(conn, owner, f"r-{uuid.uuid4().hex[:8]}@example.test")
    with acting_as(conn, owner):
        export = one(conn, "select id from public.request_contact_export(%s)", (contact,))["id"]
    conn.execute("select private.claim_contact_export(%s)", (export,))
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact,))
    path = f"{owner.workspace_id}/{export}.zip"
    finished = one(
        conn,
        "select (private.finish_contact_export(%s, %s, %s, null, null)).id as id",
        (export, path, Jsonb({})),
    )
    assert finished["id"] is None
    assert state(conn, str(export)) == {
        "status": "failed",
        "storage_path": None,
        "error_code": "contact_erased",
    }
    queued = one(
        conn, "select reason from private.storage_removals where object_name = %s", (path,)
    )
    assert queued == {"reason": "orphaned"}


def test_a_failed_removal_stays_queued_and_is_retried(
    conn: Conn, client: TestClient, jwks: JwksServer, storage: StorageServer
) -> None:
    owner = create_user(conn)
    export = exported(conn, client, jwks, owner)
    path = f"{owner.workspace_id}/{export['id']}.zip"
    lapse(conn, export["id"])
    storage.fail_removals = 500
    try:
        cron = client.get("/api/v1/cron/privacy-exports", headers=CRON)
    finally:
        storage.fail_removals = None
    assert cron.status_code == 200
    assert ("exports", path) in storage.objects
    queued = one(
        conn,
        "select attempts, last_error is not null as noted, next_attempt_at > now() as later"
        " from private.storage_removals where object_name = %s",
        (path,),
    )
    assert queued == {"attempts": 1, "noted": True, "later": True}
    conn.execute(
        "update private.storage_removals set next_attempt_at = now() where object_name = %s",
        (path,),
    )
    client.get("/api/v1/cron/privacy-exports", headers=CRON)
    assert ("exports", path) not in storage.objects


def test_a_purged_workspace_leaves_no_export_file(
    conn: Conn, client: TestClient, jwks: JwksServer, storage: StorageServer
) -> None:
    owner = create_user(conn)
    with acting_as(conn, owner):
        team = one(conn, "select id from public.create_workspace('Team', 'EUR')")["id"]
    team_owner = User(owner.id, owner.email, team)
    export = exported(conn, client, jwks, team_owner)
    path = f"{team}/{export['id']}.zip"
    with acting_as(conn, owner):
        conn.execute("select public.delete_workspace(%s)", (team,))
    conn.execute(
        "update public.workspaces set purge_after = now() - interval '1 second' where id = %s",
        (team,),
    )
    conn.execute("select private.purge_deleted_workspaces(5)")
    client.get("/api/v1/cron/privacy-exports", headers=CRON)
    assert ("exports", path) not in storage.objects


def test_only_admins_of_its_workspace_take_a_link(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    stranger = create_user(conn)
    export = exported(conn, client, jwks, owner)
    for user in (member, stranger):
        with refused(404, "export_not_found"), acting_as(conn, user):
            conn.execute("select * from public.issue_export_link(%s)", (export["id"],))
    with refused(404, "export_not_found"), acting_as(conn, owner):
        conn.execute("select * from public.issue_export_link(%s)", (uuid.uuid4(),))
