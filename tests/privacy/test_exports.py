"""Access requests: an admin's export of one contact holds every row about them, from their
own workspace only, zipped as JSON and CSV into the private exports bucket with a 24-hour
download URL; progress goes to admins only; a Storage failure is a failed job with its reason."""

import io
import json
import uuid
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from api.app import create_app
from api.core.settings import Settings
from tests.factories.inbox import email_channel
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    fund,
    make_project,
    one,
)
from tests.fakes.jwks import JwksServer
from tests.fakes.storage_server import SERVICE_KEY, StorageServer, serve_storage

Conn = psycopg.Connection[DictRow]


@pytest.fixture(scope="module")
def storage() -> Iterator[StorageServer]:
    with serve_storage() as server:
        yield server


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer, storage: StorageServer) -> Iterator[TestClient]:
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        supabase_storage_url=storage.base_url,
        supabase_service_key=SecretStr(SERVICE_KEY),
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def bearer(jwks: JwksServer, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwks.sign(jwks.claims(user.id))}"}


def shared_customer(conn: Conn, owner: User, email: str) -> uuid.UUID:
    """A customer with an order, a consent and a stored shop webhook in the owner's workspace."""
    fund(conn, owner, 10, "team")
    project = make_project(conn, owner)
    contact = one(
        conn,
        "select private.upsert_order(%s, 'shopify', %s) as order_id",
        (
            project,
            Jsonb(
                {
                    "external_id": uuid.uuid4().hex[:12],
                    "status": "paid",
                    "placed_at": "2026-06-01T10:00:00Z",
                    "total": "10.00",
                    "currency": "EUR",
                    "customer": {"email": email, "first_name": "Eva", "accepts_marketing": True},
                    "items": [{"name": "Tea", "quantity": 1, "unit_price": 10}],
                }
            ),
        ),
    )
    conn.execute(
        "select * from private.record_webhook_event('shopify', %s, %s)",
        (f"{project}:{uuid.uuid4().hex}", json.dumps({"email": email, "note": "raw"})),
    )
    assert contact["order_id"] is not None
    return uuid.UUID(
        str(
            one(
                conn,
                "select id from public.contacts where workspace_id = %s and email = %s",
                (owner.workspace_id, email),
            )["id"]
        )
    )


def test_an_admin_exports_everything_about_a_contact_and_nothing_of_another_workspace(
    conn: Conn, client: TestClient, jwks: JwksServer, storage: StorageServer
) -> None:
    email = f"eva-{uuid.uuid4().hex[:8]}@example.test"
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    contact = shared_customer(conn, owner, email)
    other = create_user(conn)
    shared_customer(conn, other, email)  # the same person, a customer of another shop too

    answer = client.post(f"/api/v1/privacy/contacts/{contact}/exports", headers=bearer(jwks, admin))
    assert answer.status_code == 201, answer.text
    export = answer.json()["data"]
    assert (export["status"], export["progress"]) == ("done", 100)
    assert export["tables"]["orders"] == 1 and export["tables"]["consents"] == 1
    assert export["tables"]["webhook_events"] == 1
    path = f"{owner.workspace_id}/{export['id']}.zip"
    assert f"/storage/v1/object/sign/exports/{path}?token=" in export["download_url"]
    downloaded = httpx.get(export["download_url"]).content
    assert downloaded == storage.objects[("exports", path)]
    archive = zipfile.ZipFile(io.BytesIO(downloaded))
    names = set(archive.namelist())
    assert {"export.json", "contacts.csv", "orders.csv", "order_items.csv", "consents.csv"} <= names
    document = json.loads(archive.read("export.json"))
    assert document["contact_id"] == str(contact)
    assert document["tables"]["contacts"][0]["email"] == email
    every_workspace = {
        row.get("workspace_id")
        for rows in document["tables"].values()
        for row in rows
        if row.get("workspace_id")
    }
    assert every_workspace == {str(owner.workspace_id)}
    assert email in archive.read("contacts.csv").decode()

    again = client.get(f"/api/v1/privacy/exports/{export['id']}", headers=bearer(jwks, owner))
    assert httpx.get(again.json()["data"]["download_url"]).content == downloaded
    progress = [
        r["payload"]["progress"]
        for r in conn.execute(
            "select payload from realtime.messages where topic = %s and event = 'export_progress'"
            " and payload ->> 'id' = %s order by inserted_at",
            (f"workspace:{owner.workspace_id}:exports", export["id"]),
        ).fetchall()
    ]
    assert progress[0] == 0 and progress[-1] == 100 and 50 in progress


def test_viewers_strangers_and_erased_contacts_are_refused(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    stranger = create_user(conn)
    contact = shared_customer(conn, owner, f"x-{uuid.uuid4().hex[:8]}@example.test")
    url = f"/api/v1/privacy/contacts/{contact}/exports"

    def code(answer: Any) -> tuple[int, str]:
        return answer.status_code, answer.json()["error"]["code"]

    assert code(client.post(url, headers=bearer(jwks, member))) == (403, "insufficient_role")
    assert code(client.post(url, headers=bearer(jwks, stranger))) == (404, "contact_not_found")
    done = client.post(url, headers=bearer(jwks, owner)).json()["data"]
    assert code(
        client.get(f"/api/v1/privacy/exports/{done['id']}", headers=bearer(jwks, member))
    ) == (404, "export_not_found")
    with acting_as(conn, member):
        seen = conn.execute("select count(*) as n from public.contact_exports").fetchone()
    assert seen == {"n": 0}
    topic = f"workspace:{owner.workspace_id}:exports"
    with acting_as(conn, member):
        conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
        heard = conn.execute(
            "select count(*) as n from realtime.messages where topic = %s", (topic,)
        ).fetchone()
    assert heard == {"n": 0}
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact,))
    assert code(client.post(url, headers=bearer(jwks, owner))) == (409, "contact_erased")


def test_a_storage_failure_fails_the_job_with_its_reason(
    conn: Conn, client: TestClient, jwks: JwksServer, storage: StorageServer
) -> None:
    owner = create_user(conn)
    contact = shared_customer(conn, owner, f"s-{uuid.uuid4().hex[:8]}@example.test")
    storage.fail_uploads = 500
    try:
        answer = client.post(
            f"/api/v1/privacy/contacts/{contact}/exports", headers=bearer(jwks, owner)
        )
    finally:
        storage.fail_uploads = None
    export = answer.json()["data"]
    assert (export["status"], export["error_code"], export["download_url"]) == (
        "failed",
        "storage_error",
        None,
    )


@pytest.fixture
def no_other_stalled_exports(conn: Conn) -> None:
    """Every export other tests left queued or running in the worker's database is made fresh
    (not stalled for two minutes yet): the cron runs the ten stalled exports asked for longest
    ago, whichever workspace's, so ten such leftovers older than this test's export left it
    unrun (proven with eleven run first)."""
    conn.execute(
        "update public.contact_exports set created_at = now() where status in ('queued', 'running')"
    )


@pytest.mark.usefixtures("no_other_stalled_exports")
def test_the_cron_finishes_an_export_whose_request_died(
    conn: Conn, database_url: str, jwks: JwksServer, storage: StorageServer
) -> None:
    owner = create_user(conn)
    contact = shared_customer(conn, owner, f"c-{uuid.uuid4().hex[:8]}@example.test")
    with acting_as(conn, owner):
        export = one(conn, "select id from public.request_contact_export(%s)", (contact,))["id"]
    conn.execute(
        "update public.contact_exports set created_at = now() - interval '5 minutes' where id = %s",
        (export,),
    )
    secret = "cron-" + uuid.uuid4().hex
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        supabase_storage_url=storage.base_url,
        supabase_service_key=SecretStr(SERVICE_KEY),
        cron_secret=SecretStr(secret),
    )
    with TestClient(create_app(settings)) as cron:
        answer = cron.get(
            "/api/v1/cron/privacy-exports", headers={"Authorization": f"Bearer {secret}"}
        )
    assert answer.status_code == 200 and answer.json()["data"]["resumed"] >= 1
    status = one(conn, "select status from public.contact_exports where id = %s", (export,))
    assert status == {"status": "done"}


def test_the_export_holds_the_files_of_the_persons_attachments(
    conn: Conn, client: TestClient, jwks: JwksServer, storage: StorageServer
) -> None:
    owner = create_user(conn)
    email = f"eva-{uuid.uuid4().hex[:8]}@example.test"
    contact = shared_customer(conn, owner, email)
    inbound = email_channel(conn, owner)
    event = one(
        conn,
        "select id from private.record_webhook_event('ses_inbound', %s, %s)",
        (str(uuid.uuid4()), json.dumps({"Type": "Notification"})),
    )["id"]
    mail = {
        "from": email,
        "text": "My receipt and a photo",
        "message_id": f"<{uuid.uuid4()}@mail.example.test>",
        "attachments": [
            {"file_name": "receipt.pdf", "provider_media_id": f"{event}:0"},
            {"file_name": "photo.jpg", "provider_media_id": f"{event}:1"},
        ],
    }
    conn.execute(
        "select private.ingest_inbound_email(%s, %s, %s, now())", (event, [inbound], Jsonb(mail))
    )
    message = one(
        conn, "select id, conversation_id from public.messages where text = %s", (mail["text"],)
    )
    paths = [
        f"{owner.workspace_id}/{message['conversation_id']}/{message['id']}/{name}"
        for name in ("receipt.pdf", "photo.jpg")
    ]
    for position, path in enumerate(paths):
        conn.execute(
            "select private.inbox_media_done(%s, %s, 'stored', %s, 16, null)",
            (message["id"], position, path),
        )
    storage.put("inbox", paths[0], b"%PDF-1.4 receipt")  # the photo is no longer in Storage

    answer = client.post(f"/api/v1/privacy/contacts/{contact}/exports", headers=bearer(jwks, owner))
    assert answer.status_code == 201, answer.text
    archive = zipfile.ZipFile(io.BytesIO(httpx.get(answer.json()["data"]["download_url"]).content))
    listed = json.loads(archive.read("export.json"))["attachment_files"]
    assert [(a["storage_path"], a["file"]) for a in listed] == [
        (paths[0], f"attachments/{message['id']}/0-receipt.pdf"),
        (paths[1], None),
    ]
    assert archive.read(f"attachments/{message['id']}/0-receipt.pdf") == b"%PDF-1.4 receipt"
