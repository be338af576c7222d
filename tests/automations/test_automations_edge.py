"""Automations through the edge: routes, dispatch to a real local Make.com stand-in, the cron
drain, and Make's callbacks."""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow

from api.app import create_app
from api.core.settings import Settings
from api.core.signatures import callback_token, signature_headers, verify_signature
from api.webhooks.intake import INTAKE, StoredEvent
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import (
    User,
    acting_as,
    balance,
    create_user,
    fund,
    ledger,
    make_project,
    one,
)
from tests.fakes.jwks import JwksServer
from tests.fakes.make_server import Answer, MakeServer, serve_make

Conn = psycopg.Connection[DictRow]
SIGNING_SECRET = "make-signing-" + uuid.uuid4().hex
CRON_SECRET = "cron-" + uuid.uuid4().hex


@pytest.fixture
def make() -> Iterator[MakeServer]:
    with serve_make() as server:
        yield server


@dataclass
class Edge:
    client: TestClient
    jwks: JwksServer
    make: MakeServer

    def headers(self, user: User) -> dict[str, str]:
        return bearer(self.jwks, user)

    def start(
        self,
        user: User,
        project: uuid.UUID,
        kind: str = "seo_audit",
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> Any:
        return self.client.post(
            f"/api/v1/automations/{kind}",
            headers={**self.headers(user), **(headers or {})},
            json={"project_id": str(project), "input": {"keyword": "running shoes"}, **extra},
        )

    def drain(self) -> Any:
        response = self.client.get(
            "/api/v1/cron/outbox", headers={"Authorization": f"Bearer {CRON_SECRET}"}
        )
        assert response.status_code == 200, response.text
        return response.json()["data"]["make"]

    def callback(
        self, body: dict[str, Any], token: str | None = None, event_id: str | None = None
    ) -> Any:
        job = str(body["automation_id"])
        headers = {
            "Content-Type": "application/json",
            "X-Growthbase-Callback-Token": token or callback_token(SIGNING_SECRET, job),
        }
        if event_id:
            headers["X-Growthbase-Event-Id"] = event_id
        return self.client.post(
            "/api/v1/webhooks/result", content=json.dumps(body).encode(), headers=headers
        )


def make_settings(
    database_url: str,
    jwks: JwksServer,
    make: MakeServer | None,
    public_base_url: str | None = "https://edge.example",
) -> Settings:
    return edge_settings(
        database_url,
        jwks,
        database_timeout_seconds=2,
        public_base_url=public_base_url,
        cron_secret=CRON_SECRET,
        make_signing_secret=SIGNING_SECRET if make else None,
        make_webhook_url_seo_audit=make.url("seo") if make else None,
        make_webhook_url_content_gen=make.url("content") if make else None,
        make_webhook_url_report=make.url("report") if make else None,
        # Long enough for a loaded machine to answer; only the hang test waits it out.
        make_timeout_seconds=2,
    )


@pytest.fixture
def edge(database_url: str, jwks: JwksServer, make: MakeServer, conn: Conn) -> Iterator[Edge]:
    """The edge, with every Make.com job other tests left due in the worker's database put off
    for ever: starting an automation and the cron both send every workspace's due jobs to this
    test's Make.com stand-in, so another test's queued job (one queued through the Data API, or
    one whose backoff has passed) would take its scripted answers and count in the drain's
    report and in what Make.com received."""
    conn.execute(
        "update private.outbox set next_attempt_at = 'infinity'"
        " where topic = 'make.dispatch' and status in ('pending', 'sending')"
    )
    app = create_app(make_settings(database_url, jwks, make))
    with TestClient(app) as client:
        yield Edge(client, jwks, make)


@pytest.fixture
def owner(conn: Conn) -> User:
    user = create_user(conn)
    fund(conn, user, 100)
    return user


def outbox(conn: Conn, automation_id: str) -> dict[str, Any]:
    return one(
        conn,
        "select status, attempts, next_attempt_at - now() as wait, last_error"
        " from private.outbox where automation_id = %s",
        (automation_id,),
    )


def automation(conn: Conn, automation_id: str) -> dict[str, Any]:
    return one(
        conn, "select status, result, error from public.automations where id = %s", (automation_id,)
    )


def make_due(conn: Conn, automation_id: str) -> None:
    """Stand in for the passing of the backoff delay."""
    conn.execute(
        "update private.outbox set next_attempt_at = now() where automation_id = %s",
        (automation_id,),
    )


def test_starting_an_automation_dispatches_a_signed_job(
    edge: Edge, conn: Conn, owner: User
) -> None:
    project = make_project(conn, owner)
    response = edge.start(owner, project)
    assert response.status_code == 201
    started = response.json()["data"]
    assert (started["status"], started["type"], started["credits_charged"]) == (
        "queued",
        "seo_audit",
        5,
    )
    assert balance(conn, owner) == 95
    assert len(edge.make.received) == 1
    sent = edge.make.received[0]
    assert sent.path == "/seo"
    verify_signature(
        SIGNING_SECRET,
        sent.headers["X-Growthbase-Timestamp"],
        sent.headers["X-Growthbase-Signature"],
        sent.body,
    )
    job = sent.json()
    assert job["automation"]["id"] == started["id"]
    assert job["automation"]["input"] == {"keyword": "running shoes"}
    assert job["project"]["website_url"] == "https://shop.example"
    assert job["callback"] == {
        "url": "https://edge.example/api/v1/webhooks/result",
        "token": callback_token(SIGNING_SECRET, started["id"]),
    }
    assert outbox(conn, started["id"])["status"] == "delivered"


def test_reading_and_listing_automations_under_rls(edge: Edge, conn: Conn, owner: User) -> None:
    stranger = create_user(conn)
    project = make_project(conn, owner)
    other_project = make_project(conn, owner, "Blog")
    ids = [edge.start(owner, project, kind).json()["data"]["id"] for kind in ("report", "report")]
    ids.append(edge.start(owner, other_project, "content_gen").json()["data"]["id"])
    mine = edge.client.get(f"/api/v1/automations/{ids[0]}", headers=edge.headers(owner))
    assert mine.status_code == 200
    assert mine.json()["data"]["id"] == ids[0]
    theirs = edge.client.get(f"/api/v1/automations/{ids[0]}", headers=edge.headers(stranger))
    assert theirs.status_code == 404
    assert theirs.json()["error"]["code"] == "automation_not_found"
    bad = edge.client.get("/api/v1/automations/not-a-uuid", headers=edge.headers(owner))
    assert bad.status_code == 422
    listing = edge.client.get(
        "/api/v1/automations",
        params={"project_id": str(project), "per_page": 1, "page": 2},
        headers=edge.headers(owner),
    ).json()
    assert listing["meta"] == {"total": 2, "page": 2, "per_page": 1}
    assert [a["id"] for a in listing["data"]] == [ids[0]]
    by_type = edge.client.get(
        "/api/v1/automations", params={"type": "content_gen"}, headers=edge.headers(owner)
    ).json()
    assert [a["id"] for a in by_type["data"]] == [ids[2]]
    nothing = edge.client.get("/api/v1/automations", headers=edge.headers(stranger)).json()
    assert nothing["meta"]["total"] == 0


def test_bad_requests_are_4xx_in_the_envelope(edge: Edge, conn: Conn, owner: User) -> None:
    project = make_project(conn, owner)
    unknown_type = edge.start(owner, project, "mind_reading")
    assert unknown_type.status_code == 422
    assert unknown_type.json()["error"]["details"][0]["field"] == "path.automation_type"
    not_a_project = edge.start(owner, uuid.uuid4())
    assert (not_a_project.status_code, not_a_project.json()["error"]["code"]) == (
        404,
        "project_not_found",
    )
    extra_field = edge.start(owner, project, priority="high")
    assert extra_field.status_code == 422
    fund(conn, owner, 4)
    broke = edge.start(owner, project)
    assert (broke.status_code, broke.json()["error"]["code"]) == (402, "insufficient_credits")
    assert edge.make.received == []


def test_the_rate_limit_answers_429_with_retry_after(edge: Edge, conn: Conn) -> None:
    user = create_user(conn)
    fund(conn, user, 1000, tier="free")
    project = make_project(conn, user)
    statuses = [edge.start(user, project, "report").status_code for _ in range(5)]
    limited = edge.start(user, project, "report")
    assert statuses == [201] * 5
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60


def test_an_idempotency_key_replays_the_first_answer(edge: Edge, conn: Conn, owner: User) -> None:
    project = make_project(conn, owner)
    key = {"Idempotency-Key": "retry-" + uuid.uuid4().hex}
    first = edge.start(owner, project, headers=key)
    again = edge.start(owner, project, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["data"]["id"] == again.json()["data"]["id"]
    assert balance(conn, owner) == 95
    assert len(edge.make.received) == 1


def test_make_not_configured_is_503(database_url: str, jwks: JwksServer, conn: Conn) -> None:
    user = create_user(conn)
    fund(conn, user, 100)
    with TestClient(create_app(make_settings(database_url, jwks, None))) as client:
        response = client.post(
            "/api/v1/automations/report",
            headers=bearer(jwks, user),
            json={"project_id": str(make_project(conn, user))},
        )
    assert (response.status_code, response.json()["error"]["code"]) == (
        503,
        "provider_not_configured",
    )
    assert balance(conn, user) == 100


def test_delivery_survives_errors_throttling_and_timeouts(
    edge: Edge, conn: Conn, owner: User
) -> None:
    edge.make.answer_next(
        Answer(status=500, body="Internal error"),
        Answer(status=429, body="Too many", headers={"Retry-After": "120"}),
        Answer(hang=True),
        Answer(status=503, body="Unavailable"),
    )
    job = edge.start(owner, make_project(conn, owner)).json()["data"]["id"]
    first = outbox(conn, job)
    assert (first["status"], first["attempts"], first["last_error"]) == (
        "pending",
        1,
        "HTTP 500: Internal error",
    )
    make_due(conn, job)
    assert edge.drain()["retrying"] == 1
    throttled = outbox(conn, job)
    assert throttled["wait"].total_seconds() > 115
    make_due(conn, job)
    assert edge.drain()["retrying"] == 1
    assert outbox(conn, job)["last_error"] == "timed out"
    make_due(conn, job)
    edge.drain()
    make_due(conn, job)
    assert edge.drain() == {"delivered": 1, "retrying": 0, "dead": 0, "skipped": []}
    assert len(edge.make.received) == 5
    assert outbox(conn, job)["status"] == "delivered"
    assert automation(conn, job)["status"] == "queued"
    assert edge.drain()["delivered"] == 0
    assert len(edge.make.received) == 5
    assert balance(conn, owner) == 95


def test_a_permanently_down_make_dead_letters_fails_and_refunds_once(
    edge: Edge, conn: Conn, owner: User
) -> None:
    edge.make.answer_next(*[Answer(status=502, body="Bad gateway")] * 8)
    job = edge.start(owner, make_project(conn, owner)).json()["data"]["id"]
    for _ in range(7):
        make_due(conn, job)
        edge.drain()
    message = outbox(conn, job)
    assert (message["status"], message["attempts"]) == ("dead", 8)
    failed = automation(conn, job)
    assert failed["status"] == "failed"
    assert failed["error"].startswith("Could not deliver to Make.com after 8 attempt(s)")
    assert balance(conn, owner) == 100
    assert ledger(conn, owner) == [
        ("grant", 20),
        ("automation_charge", -5),
        ("automation_refund", 5),
    ]
    make_due(conn, job)
    assert edge.drain()["dead"] == 0
    assert len(edge.make.received) == 8


def test_a_rejected_job_is_dead_lettered_at_once(edge: Edge, conn: Conn, owner: User) -> None:
    edge.make.answer_next(Answer(status=410, body="There is no scenario listening"))
    job = edge.start(owner, make_project(conn, owner)).json()["data"]["id"]
    assert outbox(conn, job)["status"] == "dead"
    assert automation(conn, job)["status"] == "failed"
    assert balance(conn, owner) == 100


def test_the_cron_drain_needs_the_secret(edge: Edge) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": CRON_SECRET}):
        response = edge.client.get("/api/v1/cron/outbox", headers=headers)
        assert (response.status_code, response.json()["error"]["code"]) == (
            401,
            "authentication_required",
        )


def test_callbacks_move_the_job_forward_once(edge: Edge, conn: Conn, owner: User) -> None:
    job = edge.start(owner, make_project(conn, owner)).json()["data"]["id"]
    processing = edge.callback({"automation_id": job, "status": "processing"})
    assert processing.json()["data"]["outcome"] == "applied"
    done = {"automation_id": job, "status": "completed", "result": {"score": 87}}
    assert edge.callback(done).json()["data"]["outcome"] == "applied"
    assert edge.callback(done).json()["data"]["outcome"] == "duplicate"
    unknown_field = edge.callback({"automation_id": job, "status": "processing", "note": "x"})
    assert unknown_field.status_code == 422
    late = edge.callback({"automation_id": job, "status": "processing"}, event_id="retry-1")
    assert late.json()["data"]["outcome"] == "stale"
    assert automation(conn, job) == {"status": "completed", "result": {"score": 87}, "error": None}
    events = conn.execute(
        "select status, outcome from private.webhook_events"
        " where provider = 'make' and body::jsonb ->> 'automation_id' = %s order by received_at",
        (job,),
    ).fetchall()
    assert [(e["status"], e["outcome"]) for e in events] == [
        ("applied", "applied"),
        ("applied", "applied"),
        ("ignored", "stale"),
    ]
    assert balance(conn, owner) == 95


def test_a_failed_callback_fails_the_job_and_refunds(edge: Edge, conn: Conn, owner: User) -> None:
    job = edge.start(owner, make_project(conn, owner)).json()["data"]["id"]
    response = edge.callback({"automation_id": job, "status": "failed", "error": "Site offline"})
    assert response.json()["data"]["outcome"] == "applied"
    assert automation(conn, job) == {"status": "failed", "result": None, "error": "Site offline"}
    assert balance(conn, owner) == 100


def test_forged_and_malformed_callbacks_change_nothing(edge: Edge, conn: Conn, owner: User) -> None:
    project = make_project(conn, owner)
    job = edge.start(owner, project).json()["data"]["id"]
    other = edge.start(owner, project).json()["data"]["id"]
    done = {"automation_id": job, "status": "completed", "result": {"score": 1}}
    forged = edge.callback(done, token="0" * 64)
    wrong_job = edge.callback(done, token=callback_token(SIGNING_SECRET, other))
    unsigned = edge.client.post("/api/v1/webhooks/result", json=done)
    assert [r.status_code for r in (forged, wrong_job, unsigned)] == [401, 401, 401]
    assert forged.json()["error"]["code"] == "callback_token_invalid"
    missing_result = edge.callback({"automation_id": job, "status": "completed"})
    assert missing_result.status_code == 422
    assert missing_result.json()["error"]["details"][0]["field"] == "body"
    not_json = edge.client.post(
        "/api/v1/webhooks/result",
        content=b"{oops",
        headers={"X-Growthbase-Callback-Token": callback_token(SIGNING_SECRET, job)},
    )
    assert not_json.status_code == 422
    assert automation(conn, job)["status"] == "queued"
    stored = conn.execute(
        "select count(*) from private.webhook_events where body like %s", (f"%{job}%",)
    ).fetchone()
    assert stored["count"] == 0


def test_callbacks_signed_with_the_shared_secret(edge: Edge, conn: Conn, owner: User) -> None:
    job = edge.start(owner, make_project(conn, owner)).json()["data"]["id"]
    body = json.dumps({"automation_id": job, "status": "processing"}).encode()

    def post(headers: dict[str, str], content: bytes = body) -> Any:
        return edge.client.post(
            "/api/v1/webhooks/result",
            content=content,
            headers={"Content-Type": "application/json", **headers},
        )

    stale = post(signature_headers(SIGNING_SECRET, body, now=time.time() - 3600))
    tampered = post(
        signature_headers(SIGNING_SECRET, body),
        body.replace(b"processing", b"completed"),
    )
    assert [stale.json()["error"]["code"], tampered.json()["error"]["code"]] == [
        "signature_stale",
        "signature_invalid",
    ]
    assert post(signature_headers(SIGNING_SECRET, body)).json()["data"]["outcome"] == "applied"
    assert automation(conn, job)["status"] == "processing"


def test_a_signed_callback_holding_nul_is_refused_before_it_is_stored(
    edge: Edge, conn: Conn, owner: User
) -> None:
    """Postgres's jsonb cannot hold \\u0000: stored, such a callback could never be applied and
    would be retried until dead-lettered."""
    job = edge.start(owner, make_project(conn, owner)).json()["data"]["id"]
    body = json.dumps(
        {"automation_id": job, "status": "completed", "result": {"note": "a\u0000b"}}
    ).encode()
    refused = edge.client.post(
        "/api/v1/webhooks/result",
        content=body,
        headers={"Content-Type": "application/json", **signature_headers(SIGNING_SECRET, body)},
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_input")
    assert "NUL" in refused.json()["error"]["message"]
    stored = conn.execute(
        "select count(*) from private.webhook_events where body like %s", (f"%{job}%",)
    ).fetchone()
    assert stored["count"] == 0
    assert automation(conn, job)["status"] == "queued"


def test_a_callback_whose_apply_fails_answers_the_error_and_counts_an_attempt(
    edge: Edge, conn: Conn, owner: User
) -> None:
    """The callback is applied by the intake's registered applier, so a failed apply is
    recorded like the replay's (the cron tries it again) before Make.com is answered."""
    job = edge.start(owner, make_project(conn, owner)).json()["data"]["id"]
    intake = edge.client.app.state.slots[INTAKE.name]  # type: ignore[attr-defined]
    registered = intake.appliers["make"]

    def timing_out(event: StoredEvent) -> str:
        raise psycopg.errors.QueryCanceled("canceling statement due to statement timeout")

    intake.register("make", timing_out)
    try:
        answer = edge.callback({"automation_id": job, "status": "processing"})
    finally:
        intake.register("make", registered)
    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "database_timeout")
    event = one(
        conn,
        "select status, attempts, last_error from private.webhook_events"
        " where provider = 'make' and body::jsonb ->> 'automation_id' = %s",
        (job,),
    )
    assert event == {
        "status": "received",
        "attempts": 1,
        "last_error": "psycopg QueryCanceled 57014",
    }
    assert automation(conn, job)["status"] == "queued"


def test_concurrent_drains_never_send_a_job_twice(edge: Edge, conn: Conn, owner: User) -> None:
    edge.make.answer_next(*[Answer(status=500, body="down")] * 6)
    project = make_project(conn, owner)
    jobs = {edge.start(owner, project, "report").json()["data"]["id"] for _ in range(6)}
    edge.make.script.clear()
    edge.make.received.clear()
    conn.execute(
        "update private.outbox set status = 'pending', next_attempt_at = now(),"
        " locked_until = null where automation_id = any(%s)",
        (list(jobs),),
    )
    start = threading.Barrier(4)

    def drain() -> Any:
        start.wait()
        return edge.drain()

    with ThreadPoolExecutor(max_workers=4) as pool:
        reports = list(pool.map(lambda _: drain(), range(4)))
    assert sum(r["delivered"] for r in reports) == 6
    delivered = [r.json()["automation"]["id"] for r in edge.make.received]
    assert sorted(delivered) == sorted(jobs)


def enqueue_as(conn: Conn, user: User, project: uuid.UUID) -> str:
    """A job queued through the Data API (no edge, so nothing drains it at once)."""
    with acting_as(conn, user):
        row = one(
            conn,
            "select (r.automation).id from public.enqueue_automation(%s, 'report') r",
            (project,),
        )
    return str(row["id"])


def test_the_host_header_never_chooses_where_jobs_call_back(
    edge: Edge, conn: Conn, owner: User
) -> None:
    other = create_user(conn)
    fund(conn, other, 100)
    queued = enqueue_as(conn, other, make_project(conn, other))
    forged = {"Host": "attacker.example", "X-Forwarded-Host": "attacker.example"}
    assert edge.start(owner, make_project(conn, owner), headers=forged).status_code == 201
    edge.client.get(
        "/api/v1/cron/outbox", headers={"Authorization": f"Bearer {CRON_SECRET}", **forged}
    )
    callbacks = {sent.json()["callback"]["url"] for sent in edge.make.received}
    assert callbacks == {"https://edge.example/api/v1/webhooks/result"}
    assert outbox(conn, queued)["status"] == "delivered"


def test_without_public_base_url_nothing_is_charged_sent_or_drained(
    database_url: str, jwks: JwksServer, make: MakeServer, conn: Conn, owner: User
) -> None:
    other = create_user(conn)
    fund(conn, other, 100)
    queued = enqueue_as(conn, other, make_project(conn, other))
    settings = make_settings(database_url, jwks, make, public_base_url=None)
    with TestClient(create_app(settings)) as client:
        edge = Edge(client, jwks, make)
        refused = edge.start(owner, make_project(conn, owner), headers={"Host": "attacker.example"})
        drained = client.get(
            "/api/v1/cron/outbox",
            headers={"Authorization": f"Bearer {CRON_SECRET}", "Host": "attacker.example"},
        )
    assert (refused.status_code, refused.json()["error"]["code"]) == (
        503,
        "public_base_url_not_configured",
    )
    assert balance(conn, owner) == 100
    assert drained.json()["data"] == {"make": "public_base_url_not_configured"}
    assert make.received == []
    assert outbox(conn, queued)["status"] == "pending"
