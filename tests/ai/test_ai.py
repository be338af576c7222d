"""AI routes through the real groq SDK against a local server in Groq's API shape: Safe Mode on
the wire, restored answers, validation with one retry, 429 handling, credits and usage."""

import json
import uuid
from collections.abc import Iterator
from html import escape
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow, dict_row

from api.ai import routes as ai_routes
from api.app import create_app
from api.core.settings import Settings
from api.email.templates import EmailContent, render
from tests.factories.edge import bearer, edge_settings
from tests.factories.email import add_contacts, list_campaign, start
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    balance,
    create_user,
    fund,
    ledger,
    one,
)
from tests.fakes.groq_server import GroqServer, Reply, campaign_copy, serve_groq
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]

PROFILE = (
    "Marketing managers like Jana Nováková (jana.novakova@firma.cz, +420 777 123 456, "
    "RČ 736028/5163) paying from CZ65 0800 0000 1920 0014 5399 with card 4111 1111 1111 1111, "
    "office IP 192.168.10.5"
)
SECRETS = [
    "jana.novakova@firma.cz",
    "+420 777 123 456",
    "736028/5163",
    "CZ65 0800 0000 1920 0014 5399",
    "4111 1111 1111 1111",
    "192.168.10.5",
]


@pytest.fixture
def groq() -> Iterator[GroqServer]:
    with serve_groq() as server:
        yield server


def ai_settings(database_url: str, jwks: JwksServer, groq: GroqServer, **extra: Any) -> Settings:
    return edge_settings(
        database_url,
        jwks,
        groq_api_key="gsk_test_" + uuid.uuid4().hex,
        groq_base_url=groq.base_url,
        groq_max_wait_seconds=2,
        **extra,
    )


@pytest.fixture
def client(database_url: str, jwks: JwksServer, groq: GroqServer) -> Iterator[TestClient]:
    with TestClient(create_app(ai_settings(database_url, jwks, groq))) as test_client:
        yield test_client


@pytest.fixture
def owner(conn: Conn) -> User:
    user = create_user(conn)
    fund(conn, user, 20)
    return user


def ask_copy(
    client: TestClient, jwks: JwksServer, user: User, workspace: Any = None, **fields: Any
) -> Any:
    """Campaign copy for `user`, with personal data in the profile; `fields` replace or add to
    the request's."""
    return client.post(
        "/api/v1/ai/campaign-copy",
        headers=bearer(jwks, user),
        json={
            "workspace_id": str(workspace or user.workspace_id),
            "product_url": "https://shop.example/boots",
            "ideal_customer_profile": PROFILE,
            "tone": "warm",
            "language": "cs",
            **fields,
        },
    )


def the_call(conn: Conn, user: User) -> dict[str, Any]:
    """How the one AI call of the user's workspace ended."""
    return one(
        conn,
        "select status, error_code from public.ai_calls where workspace_id = %s",
        (user.workspace_id,),
    )


def test_no_personal_data_leaves_and_the_answer_has_it_back(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    response = ask_copy(client, jwks, owner)
    assert response.status_code == 200, response.text
    sent = json.dumps(groq.requests[0])
    for secret in SECRETS:
        assert secret not in sent
    assert "[EMAIL_1]" in sent and "[BIRTH_NUMBER_1]" in sent
    data = response.json()["data"]
    assert [v["angle"] for v in data["variants"]] == ["problem", "benefit", "question"]
    for secret in SECRETS:
        assert secret in data["variants"][0]["body"]
    assert groq.requests[0]["response_format"]["json_schema"]["strict"] is True
    call = one(
        conn,
        "select status, model, tokens_in, tokens_out, pii_redacted, credits_charged"
        " from public.ai_calls where id = %s",
        (data["ai_call_id"],),
    )
    assert call == {
        "status": "succeeded",
        "model": "openai/gpt-oss-20b",
        "tokens_in": 120,
        "tokens_out": 80,
        "pii_redacted": {"EMAIL": 1, "PHONE": 1, "BIRTH_NUMBER": 1, "IBAN": 1, "CARD": 1, "IP": 1},
        "credits_charged": 3,
    }
    assert balance(conn, owner) == 17


def test_invalid_output_is_retried_once_then_502_and_refunded(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    groq.script.extend([Reply(content="not json"), Reply(content='{"variants": []}')])
    failed = ask_copy(client, jwks, owner)
    assert (failed.status_code, failed.json()["error"]["code"]) == (502, "invalid_model_output")
    assert len(groq.requests) == 2
    assert balance(conn, owner) == 20
    assert ledger(conn, owner) == [("grant", 20), ("ai_charge", -3), ("ai_refund", 3)]
    groq.script.append(Reply(content="{oops"))
    recovered = ask_copy(client, jwks, owner)
    assert recovered.status_code == 200
    assert balance(conn, owner) == 17


def test_a_429_is_waited_out_then_succeeds(
    client: TestClient, jwks: JwksServer, groq: GroqServer, owner: User
) -> None:
    groq.script.append(Reply(status=429, headers={"retry-after": "0"}))
    response = ask_copy(client, jwks, owner)
    assert response.status_code == 200
    assert len(groq.requests) == 2


def test_a_long_429_is_503_provider_busy_and_refunded(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    groq.script.append(Reply(status=429, headers={"retry-after": "30"}))
    response = ask_copy(client, jwks, owner)
    assert (response.status_code, response.json()["error"]["code"]) == (503, "provider_busy")
    assert response.headers["Retry-After"] == "30"
    assert balance(conn, owner) == 20


def test_a_provider_error_is_502_and_refunded(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    groq.script.append(Reply(status=500, error={"message": "boom", "type": "internal_error"}))
    response = ask_copy(client, jwks, owner)
    assert (response.status_code, response.json()["error"]["code"]) == (502, "provider_error")
    assert balance(conn, owner) == 20
    assert the_call(conn, owner) == {"status": "failed", "error_code": "provider_error"}


def test_credits_viewers_and_strangers(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    viewer, stranger = add_member(conn, owner, "viewer"), create_user(conn)
    as_viewer = ask_copy(client, jwks, viewer, owner.workspace_id)
    as_stranger = ask_copy(client, jwks, stranger, owner.workspace_id)
    fund(conn, owner, 2)
    broke = ask_copy(client, jwks, owner)
    assert [r.json()["error"]["code"] for r in (as_viewer, as_stranger, broke)] == [
        "insufficient_role",
        "workspace_not_found",
        "insufficient_credits",
    ]
    assert groq.requests == []


def test_content_generation(
    client: TestClient, jwks: JwksServer, groq: GroqServer, owner: User
) -> None:
    response = client.post(
        "/api/v1/ai/content",
        headers=bearer(jwks, owner),
        json={
            "workspace_id": str(owner.workspace_id),
            "kind": "blog_post",
            "subject": "Trail running for beginners, ask petr@obchod.cz",
            "keywords": ["trail"],
        },
    )
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["kind"] == "blog_post" and data["outline"] == ["Why", "How"]
    assert "petr@obchod.cz" in data["body"]
    assert "petr@obchod.cz" not in json.dumps(groq.requests[0])


def test_bad_requests_and_a_missing_key(
    client: TestClient, jwks: JwksServer, owner: User, database_url: str
) -> None:
    bad = client.post(
        "/api/v1/ai/campaign-copy",
        headers=bearer(jwks, owner),
        json={"workspace_id": str(owner.workspace_id), "product_url": "ftp://x"},
    )
    assert bad.status_code == 422
    fields = {d["field"] for d in bad.json()["error"]["details"]}
    assert {"body.product_url", "body.ideal_customer_profile"} <= fields
    local = ask_copy(
        client,
        jwks,
        owner,
        product_url="http://127.0.0.1:9/admin",
        ideal_customer_profile="shops",
        read_product_page=True,
    )
    assert (local.status_code, local.json()["error"]["code"]) == (422, "url_not_allowed")
    with TestClient(create_app(edge_settings(database_url, jwks))) as unconfigured:
        response = ask_copy(unconfigured, jwks, owner)
    assert (response.status_code, response.json()["error"]["code"]) == (
        503,
        "provider_not_configured",
    )


def test_usage_per_model_and_workspace(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    ask_copy(client, jwks, owner)
    groq.script.append(Reply(status=500))
    ask_copy(client, jwks, owner)
    with acting_as(conn, owner):
        rows = conn.execute(
            "select workspace_id, model, calls, failures, failure_rate from analytics.ai_usage"
        ).fetchall()
    assert rows == [
        {
            "workspace_id": owner.workspace_id,
            "model": "openai/gpt-oss-20b",
            "calls": 2,
            "failures": 1,
            "failure_rate": pytest.approx(0.5),
        }
    ]


def test_variants_are_saved_into_a_draft_campaign_literally(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    readers = add_contacts(conn, owner, 1)
    campaign = list_campaign(conn, owner, readers, [])
    body = "Save {{ 20% }} <today>\n\nSee you"
    groq.script.append(
        Reply(
            content=json.dumps(
                {
                    "variants": [
                        {"angle": angle, "subject": f"{{% {angle} %}}", "body": body}
                        for angle in ("problem", "benefit", "question")
                    ]
                }
            )
        )
    )
    response = ask_copy(
        client, jwks, owner, ideal_customer_profile="runners", campaign_id=str(campaign)
    )

    assert response.status_code == 200, response.text
    assert len(response.json()["data"]["campaign_variant_ids"]) == 3
    saved = conn.execute(
        "select name, subject, html, text from public.campaign_variants where campaign_id = %s"
        " order by name",
        (campaign,),
    ).fetchall()
    assert [row["name"] for row in saved] == ["benefit", "problem", "question"]
    mail = render(
        EmailContent(saved[0]["subject"], saved[0]["html"], saved[0]["text"]),
        {"email": "a@b.example"},
        "https://edge.example/u",
    )
    assert mail.subject == "{% benefit %}"
    assert "<p>Save {{ 20% }} &lt;today&gt;</p><p>See you</p>" in mail.html
    assert mail.text is not None and mail.text.startswith(body)


def test_a_second_copy_into_the_same_draft_is_kept_beside_the_first(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    readers = add_contacts(conn, owner, 1)
    campaign = list_campaign(conn, owner, readers, [])
    answers = []
    for _ in range(2):
        answers.append(
            ask_copy(
                client, jwks, owner, ideal_customer_profile="runners", campaign_id=str(campaign)
            )
        )
    assert [a.status_code for a in answers] == [200, 200], answers[1].text
    names = conn.execute(
        "select name from public.campaign_variants where campaign_id = %s order by name",
        (campaign,),
    ).fetchall()
    assert [row["name"] for row in names] == [
        "benefit",
        "benefit 2",
        "problem",
        "problem 2",
        "question",
        "question 2",
    ]


def test_variants_for_a_campaign_that_is_not_a_draft_cost_nothing(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    readers = add_contacts(conn, owner, 1)
    campaign = list_campaign(conn, owner, readers)
    start(conn, owner, campaign)
    stranger = create_user(conn)
    fund(conn, stranger, 20)
    credits = balance(conn, owner)

    def ask(user: User) -> Any:
        return ask_copy(
            client, jwks, user, ideal_customer_profile="runners", campaign_id=str(campaign)
        )

    assert ask(owner).json()["error"]["code"] == "campaign_not_draft"
    assert ask(stranger).status_code == 404
    assert groq.requests == []
    assert balance(conn, owner) == credits


def test_variants_the_campaign_refuses_after_the_call_cost_nothing(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    """A subject of 200 braces is nine times longer once made literal, past the campaign's
    subject limit: the answer is a 4xx, nothing is saved, and the call is refunded."""
    readers = add_contacts(conn, owner, 1)
    campaign = list_campaign(conn, owner, readers, [])
    credits = balance(conn, owner)
    groq.script.append(Reply(content=campaign_copy("{" * 200, "Body")))
    response = ask_copy(
        client, jwks, owner, ideal_customer_profile="runners", campaign_id=str(campaign)
    )

    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    saved = one(
        conn,
        "select count(*) as n from public.campaign_variants where campaign_id = %s",
        (campaign,),
    )
    assert saved["n"] == 0
    assert balance(conn, owner) == credits


def ask_with_page(
    client: TestClient, jwks: JwksServer, user: User, workspace: Any, url: str
) -> Any:
    return ask_copy(
        client,
        jwks,
        user,
        workspace,
        product_url=url,
        ideal_customer_profile="runners",
        read_product_page=True,
    )


def test_nobody_makes_the_edge_read_a_page_before_the_call_is_authorised_and_paid(
    client: TestClient,
    jwks: JwksServer,
    groq: GroqServer,
    conn: Conn,
    owner: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fetched: list[str] = []

    def fetch(url: str) -> str:
        fetched.append(url)
        return "Trail boots"

    monkeypatch.setattr(ai_routes, "fetch_page_text", fetch)
    viewer, stranger = add_member(conn, owner, "viewer"), create_user(conn)
    broke = create_user(conn)
    fund(conn, broke, 2)
    answers = [
        ask_with_page(client, jwks, stranger, owner.workspace_id, "https://stranger.example/"),
        ask_with_page(client, jwks, viewer, owner.workspace_id, "https://viewer.example/"),
        ask_with_page(client, jwks, broke, broke.workspace_id, "https://broke.example/"),
    ]
    assert [(a.status_code, a.json()["error"]["code"]) for a in answers] == [
        (404, "workspace_not_found"),
        (403, "insufficient_role"),
        (402, "insufficient_credits"),
    ]
    assert fetched == [] and groq.requests == []
    paid = ask_with_page(client, jwks, owner, owner.workspace_id, "https://shop.example/boots")
    assert paid.status_code == 200
    assert fetched == ["https://shop.example/boots"]


def test_a_page_that_cannot_be_read_refunds_the_call(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    refused = ask_with_page(client, jwks, owner, owner.workspace_id, "http://127.0.0.1:9/admin")
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "url_not_allowed")
    assert groq.requests == []
    assert [row for row in ledger(conn, owner) if row[0].startswith("ai_")] == [
        ("ai_charge", -3),
        ("ai_refund", 3),
    ]
    assert the_call(conn, owner) == {"status": "failed", "error_code": "url_not_allowed"}


def test_only_the_service_records_calls_and_only_with_the_configured_model(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    assert ask_copy(client, jwks, owner).status_code == 200
    with acting_as(conn, owner):
        exposed = conn.execute(
            "select p.oid::regprocedure::text as name from pg_proc p"
            " where p.proname = 'start_ai_call'"
            " and has_function_privilege('authenticated', p.oid, 'execute')"
        ).fetchall()
    assert exposed == []
    models = conn.execute(
        "select distinct model from public.ai_calls where workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert models == [{"model": "openai/gpt-oss-20b"}]


# Template code as a product page could make the model write it: leaving a raw block to read
# merge fields, comments, whitespace control, and stray or unbalanced delimiters.
INJECTIONS = [
    "x {% endraw %}{{ attributes }} {{ email }}{% raw %} y",
    "Hi {% endraw %}{{ attributes }}{% raw %} {# hidden #} {%- if true -%}x{%+ endif %}"
    " }} %} #} {{ '{' }} {{{ {%",
]


@pytest.mark.parametrize("injected", INJECTIONS)
def test_template_code_the_ai_writes_is_saved_as_literal_text(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User, injected: str
) -> None:
    readers = add_contacts(conn, owner, 1)
    campaign = list_campaign(conn, owner, readers, [])
    body = f"{injected}\n\nBye {{% endraw %}}{{{{ attributes.city }}}}{{% raw %}}"
    groq.script.append(Reply(content=campaign_copy(injected, body)))
    response = ask_copy(
        client, jwks, owner, ideal_customer_profile="runners", campaign_id=str(campaign)
    )

    assert response.status_code == 200, response.text
    saved = conn.execute(
        "select subject, html, text from public.campaign_variants where campaign_id = %s",
        (campaign,),
    ).fetchall()
    assert len(saved) == 3
    reader = {"email": "reader@shop.example", "attributes": {"city": "Secretville"}}
    for variant in saved:
        mail = render(
            EmailContent(variant["subject"], variant["html"], variant["text"]),
            reader,
            "https://edge.example/u",
        )
        assert mail.subject == " ".join(injected.split())
        paragraphs = [escape(injected), escape("Bye {% endraw %}{{ attributes.city }}{% raw %}")]
        assert "".join(f"<p>{p}</p>" for p in paragraphs) in mail.html
        assert mail.text is not None and mail.text.startswith(body)
        for part in (mail.subject, mail.html, mail.text):
            assert "Secretville" not in part and "reader@shop.example" not in part


def test_a_host_name_that_cannot_be_encoded_is_refused_and_refunded(
    client: TestClient, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    url = "http://" + "a" * 64 + ".example/"
    refused = ask_with_page(client, jwks, owner, owner.workspace_id, url)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "url_not_allowed")
    assert groq.requests == []
    assert balance(conn, owner) == 20
    assert the_call(conn, owner) == {"status": "failed", "error_code": "url_not_allowed"}


def test_an_unexpected_failure_after_the_debit_is_a_500_and_refunded(
    database_url: str,
    jwks: JwksServer,
    groq: GroqServer,
    conn: Conn,
    owner: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_fetch(url: str) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ai_routes, "fetch_page_text", broken_fetch)
    app = create_app(ai_settings(database_url, jwks, groq))
    with TestClient(app, raise_server_exceptions=False) as edge:
        answer = ask_with_page(edge, jwks, owner, owner.workspace_id, "https://shop.example/")
    assert (answer.status_code, answer.json()["error"]["code"]) == (500, "internal_error")
    assert answer.headers["X-Request-Id"]
    assert [row for row in ledger(conn, owner) if row[0].startswith("ai_")] == [
        ("ai_charge", -3),
        ("ai_refund", 3),
    ]
    assert the_call(conn, owner) == {"status": "failed", "error_code": "internal_error"}


def start_call(conn: Conn, owner: User, minutes_ago: int) -> uuid.UUID:
    """A call the edge started (and debited) `minutes_ago`, as if it never came back."""
    call = one(
        conn,
        "select private.start_ai_call(%s, %s, 'campaign_copy', 'openai/gpt-oss-20b') as id",
        (owner.workspace_id, owner.id),
    )["id"]
    conn.execute(
        "update public.ai_calls set created_at = now() - make_interval(mins => %s) where id = %s",
        (minutes_ago, call),
    )
    return uuid.UUID(str(call))


def refunds(conn: Conn, call: uuid.UUID) -> int:
    row = one(
        conn,
        "select count(*) as n from public.credit_ledger"
        " where ai_call_id = %s and reason = 'ai_refund'",
        (call,),
    )
    return int(row["n"])


def finish_failed(conn: Conn, call: uuid.UUID) -> None:
    conn.execute(
        "select private.finish_ai_call(%s, false, 0, 0, 1, 'provider_error', '{}'::jsonb)",
        (call,),
    )


def test_calls_left_pending_are_refunded_once_by_the_cron(
    database_url: str, jwks: JwksServer, groq: GroqServer, conn: Conn, owner: User
) -> None:
    abandoned, running = start_call(conn, owner, 30), start_call(conn, owner, 1)
    finished = start_call(conn, owner, 30)
    finish_failed(conn, finished)
    secret = "cron-" + uuid.uuid4().hex
    settings = ai_settings(database_url, jwks, groq, cron_secret=secret)
    with TestClient(create_app(settings)) as edge:
        for _ in range(2):
            drained = edge.get("/api/v1/cron/outbox", headers={"Authorization": f"Bearer {secret}"})
            assert drained.status_code == 200, drained.text
    # The edge coming back late to a swept call changes nothing.
    finish_failed(conn, abandoned)

    statuses = {
        row["id"]: (row["status"], row["error_code"])
        for row in conn.execute(
            "select id, status, error_code from public.ai_calls where workspace_id = %s",
            (owner.workspace_id,),
        ).fetchall()
    }
    assert statuses == {
        abandoned: ("failed", "abandoned"),
        running: ("pending", None),
        finished: ("failed", "provider_error"),
    }
    assert [refunds(conn, call) for call in (abandoned, running, finished)] == [1, 0, 1]
    assert balance(conn, owner) == 20 - 3


@pytest.fixture
def sole_abandoned_call(conn: Conn, owner: User) -> User:
    """The owner, with every other workspace's pending AI call in the worker's database made
    fresh: the sweep takes every workspace's abandoned calls and answers how many it took, so
    another test's call left pending half an hour back would count in it."""
    conn.execute(
        "update public.ai_calls set created_at = now()"
        " where status = 'pending' and workspace_id <> %s",
        (owner.workspace_id,),
    )
    return owner


def test_the_sweep_skips_a_call_the_edge_is_finishing(
    database_url: str, conn: Conn, sole_abandoned_call: User
) -> None:
    owner = sole_abandoned_call
    call = start_call(conn, owner, 30)
    with psycopg.connect(database_url, row_factory=dict_row) as edge:
        finish_failed(edge, call)  # not yet committed: the edge holds the call
        swept = one(conn, "select private.refund_abandoned_ai_calls(10, 100) as n")
        assert swept == {"n": 0}
    assert one(conn, "select private.refund_abandoned_ai_calls(10, 100) as n") == {"n": 0}
    assert refunds(conn, call) == 1
    assert balance(conn, owner) == 20
    exposed = one(
        conn,
        "select has_function_privilege('authenticated', %(f)s, 'execute') as authenticated,"
        " has_function_privilege('anon', %(f)s, 'execute') as anon,"
        " has_function_privilege('service_role', %(f)s, 'execute') as service",
        {"f": "private.refund_abandoned_ai_calls(integer, integer)"},
    )
    assert exposed == {"authenticated": False, "anon": False, "service": True}
