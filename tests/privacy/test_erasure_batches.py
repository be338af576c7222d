"""Batch erasure through the edge: many contacts at once, erased in chunks sized to their pace
(each one short transaction, the same set-based erasure as a single contact's), resumable after
a chunk dies, giving way to a writer holding a contact's row, with progress kept on write and
broadcast to admins only; another workspace's contacts are skipped without saying so."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow, dict_row

from api.app import create_app
from api.privacy.erasure_batches import next_chunk_size
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import User, acting_as, add_member, create_user, fund, one, refused
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]
CRON_SECRET = "cron-" + uuid.uuid4().hex
CRON = {"Authorization": f"Bearer {CRON_SECRET}"}


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = edge_settings(database_url, jwks, cron_secret=CRON_SECRET)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def contacts(conn: Conn, owner: User, n: int) -> list[uuid.UUID]:
    fund(conn, owner, 10, "team")
    tag = uuid.uuid4().hex[:8]
    rows = conn.execute(
        "insert into public.contacts (workspace_id, email, first_name, phone)"
        " select %s, 'b' || g || '-' || %s || '@example.test', 'Name' || g,"
        " '+4207' || lpad(g::text, 8, '0')"
        " from generate_series(1, %s) as g returning id",
        (owner.workspace_id, tag, n),
    ).fetchall()
    return [row["id"] for row in rows]


def erased(conn: Conn, ids: list[uuid.UUID]) -> int:
    return int(
        one(
            conn,
            "select count(*) as n from public.contacts where id = any(%s)"
            " and erased_at is not null and email is null and phone is null and first_name is null",
            (ids,),
        )["n"]
    )


def code(answer: Any) -> tuple[int, str]:
    return answer.status_code, answer.json()["error"]["code"]


def test_an_admin_erases_many_contacts_and_others_are_skipped_without_a_word(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    ours = contacts(conn, owner, 4)
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (ours[3],))
    other = create_user(conn)
    theirs = contacts(conn, other, 1)
    named = [*ours, *theirs, uuid.uuid4(), ours[0]]

    request_id = "req-" + uuid.uuid4().hex
    answer = client.post(
        "/api/v1/privacy/erasures",
        headers={
            **bearer(jwks, admin),
            "X-Request-Id": request_id,
            "X-Forwarded-For": "203.0.113.7, 10.0.0.1",
        },
        json={"workspace_id": str(owner.workspace_id), "contact_ids": [str(i) for i in named]},
    )

    assert answer.status_code == 202, answer.text
    batch = answer.json()["data"]
    assert {k: batch[k] for k in ("status", "total", "erased", "skipped", "chunks")} == {
        "status": "done",
        "total": 6,
        "erased": 3,
        "skipped": 3,
        "chunks": 1,
    }
    assert erased(conn, ours) == 4
    assert erased(conn, theirs) == 0
    proofs = one(
        conn,
        "select count(*) as n from public.contact_erasures where contact_id = any(%s)"
        " and requested_by = %s",
        (ours[:3], admin.id),
    )
    assert proofs == {"n": 3}
    actions = [
        row["action"]
        for row in conn.execute(
            "select action from public.audit_log where workspace_id = %s"
            " and target_type = 'erasure_batch' order by id",
            (owner.workspace_id,),
        ).fetchall()
    ]
    assert actions == ["erasure.batch_requested", "erasure.batch_finished"]
    # What the edge does as the user is in the log with the request's id and the client's IP.
    requested = one(
        conn,
        "select actor_id, request_id, host(ip) as ip from public.audit_log"
        " where workspace_id = %s and action = 'erasure.batch_requested'",
        (owner.workspace_id,),
    )
    assert requested == {"actor_id": admin.id, "request_id": request_id, "ip": "203.0.113.7"}
    heard = conn.execute(
        "select payload from realtime.messages where topic = %s and event = 'erasure_progress'"
        " order by inserted_at, id",
        (f"workspace:{owner.workspace_id}:erasures",),
    ).fetchall()
    assert heard[-1]["payload"]["status"] == "done"
    again = client.get(f"/api/v1/privacy/erasures/{batch['id']}", headers=bearer(jwks, owner))
    assert again.status_code == 200 and again.json()["data"]["erased"] == 3


def test_members_outsiders_and_bad_lists_are_refused(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    stranger = create_user(conn)
    ids = contacts(conn, owner, 1)
    body = {"workspace_id": str(owner.workspace_id), "contact_ids": [str(ids[0])]}

    assert code(
        client.post("/api/v1/privacy/erasures", headers=bearer(jwks, member), json=body)
    ) == (
        403,
        "insufficient_role",
    )
    assert code(
        client.post("/api/v1/privacy/erasures", headers=bearer(jwks, stranger), json=body)
    ) == (404, "workspace_not_found")
    assert code(
        client.post(
            "/api/v1/privacy/erasures",
            headers=bearer(jwks, owner),
            json={"workspace_id": str(owner.workspace_id), "contact_ids": []},
        )
    ) == (422, "invalid_input")
    with refused(422, "contact_ids_required"), acting_as(conn, owner):
        conn.execute(
            "select public.request_erasure_batch(%s, array[null]::uuid[])", (owner.workspace_id,)
        )
    with refused(422, "too_many_contacts"), acting_as(conn, owner):
        conn.execute(
            "select public.request_erasure_batch(%s,"
            " array(select gen_random_uuid() from generate_series(1, 100001)))",
            (owner.workspace_id,),
        )
    assert erased(conn, ids) == 0

    done = client.post("/api/v1/privacy/erasures", headers=bearer(jwks, owner), json=body)
    batch = done.json()["data"]["id"]
    for user in (member, stranger):
        assert code(
            client.get(f"/api/v1/privacy/erasures/{batch}", headers=bearer(jwks, user))
        ) == (404, "erasure_batch_not_found")
        with acting_as(conn, user):
            conn.execute(
                "select set_config('realtime.topic', %s, true)",
                (f"workspace:{owner.workspace_id}:erasures",),
            )
            seen = one(
                conn,
                "select (select count(*) from public.erasure_batches) as batches,"
                " (select count(*) from realtime.messages where topic = %s) as messages",
                (f"workspace:{owner.workspace_id}:erasures",),
            )
        assert seen == {"batches": 0, "messages": 0}


def test_a_batch_goes_on_in_chunks_and_a_chunk_that_dies_is_taken_again(
    conn: Conn, database_url: str, client: TestClient
) -> None:
    owner = create_user(conn)
    ids = contacts(conn, owner, 1200)
    with acting_as(conn, owner):
        batch = one(
            conn,
            "select id, status from public.request_erasure_batch(%s, %s)",
            (owner.workspace_id, ids),
        )
    assert batch["status"] == "queued"

    first = one(conn, "select b.* from private.erase_batch_chunk(%s, 500) as b", (batch["id"],))
    assert (first["status"], first["erased"], first["chunks"]) == ("running", 500, 1)
    # A chunk whose transaction dies changes nothing; the next call takes the same contacts.
    with psycopg.connect(database_url, row_factory=dict_row) as dying:
        dying.execute("select private.erase_batch_chunk(%s, 500)", (batch["id"],))
        dying.rollback()
    assert erased(conn, ids) == 500

    cron = client.get("/api/v1/cron/privacy-erasures", headers=CRON)
    assert cron.status_code == 200, cron.text
    assert cron.json()["data"]["finished"] is True and cron.json()["data"]["chunks"] >= 1
    done = one(
        conn,
        "select status, erased, skipped, chunks >= 2 as chunked,"
        " finished_at is not null as finished from public.erasure_batches where id = %s",
        (batch["id"],),
    )
    assert done == {
        "status": "done",
        "erased": 1200,
        "skipped": 0,
        "chunked": True,
        "finished": True,
    }
    assert erased(conn, ids) == 1200
    # The queue shrank as it went: nothing of the batch is left in it.
    queued = one(
        conn,
        "select count(*) as n from private.erasure_batch_items where batch_id = %s",
        (batch["id"],),
    )
    assert queued == {"n": 0}


def test_a_chunk_gives_way_to_a_writer_holding_a_contact_and_goes_on_later(
    conn: Conn, database_url: str, client: TestClient
) -> None:
    owner = create_user(conn)
    ids = contacts(conn, owner, 3)
    with acting_as(conn, owner):
        batch = one(
            conn, "select id from public.request_erasure_batch(%s, %s)", (owner.workspace_id, ids)
        )["id"]
    with psycopg.connect(database_url) as holder:
        holder.execute("select 1 from public.contacts where id = %s for update", (ids[1],))
        cron = client.get("/api/v1/cron/privacy-erasures", headers=CRON)
        assert cron.status_code == 200 and cron.json()["data"]["finished"] is False
        holder.rollback()
    assert erased(conn, ids) == 0
    cron = client.get("/api/v1/cron/privacy-erasures", headers=CRON)
    assert cron.json()["data"]["finished"] is True
    assert erased(conn, ids) == 3
    assert one(conn, "select status from public.erasure_batches where id = %s", (batch,)) == {
        "status": "done"
    }


def test_chunks_follow_their_pace_within_bounds() -> None:
    assert next_chunk_size(500, 0.5) == 1000  # fast: at most doubling
    assert next_chunk_size(500, 4.0) == 250  # slow: at most halving
    assert next_chunk_size(500, 1.25) == 400
    assert next_chunk_size(60, 10.0) == 50
    assert next_chunk_size(2000, 0.1) == 2000
