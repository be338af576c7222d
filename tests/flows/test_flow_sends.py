"""A flow's email end to end: enrolment in the contact's own transaction, the cron's tick, and
the campaign send pipeline (one token bucket, suppression, consent, rendering, the unsubscribe
link) into moto's SES."""

from collections.abc import Iterator
from email import message_from_string, policy
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.types.json import Jsonb

from api.app import create_app
from api.core.db import Database
from api.email.sender import SendPolicy, send_due_emails
from api.email.ses import SesClient, message_id_domain
from tests.factories.edge import authorization, edge_settings
from tests.factories.email import SENDER_DOMAIN, add_contacts, send_alone, verified_sender
from tests.factories.flows import create_flow, runs, send_step, skip_waits, template
from tests.factories.flows import tick as flow_tick
from tests.factories.workspaces import acting_as, create_user, one, refused
from tests.fakes.jwks import JwksServer
from tests.fakes.ses_server import REGION, moto_ses, reset, sent_raw_messages

Conn = psycopg.Connection[Any]
CRON_SECRET = "cron-flows-secret"
POLICY = SendPolicy(
    link_secret="flow-link-secret-of-thirty-two-bytes",
    link_days=30,
    max_per_second=1000,
    concurrency=2,
    base_url="https://edge.example.test",
)


@pytest.fixture(scope="module")
def ses_endpoint() -> Iterator[str]:
    with moto_ses() as endpoint:
        yield endpoint


@pytest.fixture
def ses(ses_endpoint: str) -> SesClient:
    reset(ses_endpoint)
    client = SesClient(
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        endpoint_url=ses_endpoint,
        configuration_set=None,
        max_connections=4,
    )
    client.create_identity(SENDER_DOMAIN, adopt_existing=True)
    return client


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url, pool_mode="session", max_size=4, timeout_seconds=10)
    db.open()
    yield db
    db.close()


@pytest.fixture
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = edge_settings(database_url, jwks, cron_secret=CRON_SECRET)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(autouse=True)
def quiet(conn: Conn) -> Iterator[None]:
    """Other tests' flows and campaigns must not move or send in this one, and the platform's
    totals from every other test's mail must not engage the platform brake (which would stop
    this test's sends and every later test's)."""
    conn.execute("update public.flows set status = 'paused' where status = 'active'")
    send_alone(conn)
    yield
    conn.execute("select private.release_platform_brake()")


def test_a_welcome_email_goes_out_through_the_campaign_pipeline(
    conn: Conn, database: Database, ses: SesClient, ses_endpoint: str, client: TestClient
) -> None:
    owner = create_user(conn)
    add_contacts(conn, owner, 0)
    steps = [
        {"key": "settle", "kind": "wait", "config": {"minutes": 10}, "next": "hello"},
        send_step(
            "hello",
            template(conn, owner, "Welcome {{ first_name }}", "<p>Hi {{ first_name }}</p>"),
            verified_sender(conn, owner),
        ),
    ]
    flow = create_flow(conn, owner, "contact_created", steps)
    conn.execute(
        "insert into public.contacts (workspace_id, email, first_name, consent_state) values"
        " (%s, 'ada@mail.example.org', 'Ada', 'granted'),"
        " (%s, 'bob@mail.example.org', 'Bob', 'granted')",
        (owner.workspace_id, owner.workspace_id),
    )
    conn.execute(
        "insert into public.email_suppressions (workspace_id, email, reason)"
        " values (%s, 'bob@mail.example.org', 'manual')",
        (owner.workspace_id,),
    )
    skip_waits(conn, flow)
    assert client.get("/api/v1/cron/flows").status_code == 401
    answer = client.get("/api/v1/cron/flows", headers=authorization(CRON_SECRET))
    assert answer.status_code == 200, answer.text
    assert answer.json()["data"]["steps"] == 4

    report = send_due_emails(database, ses, POLICY, budget_seconds=10)
    assert report.sent == 1
    [message] = sent_raw_messages(ses_endpoint)
    parsed = message_from_string(message["raw_data"], policy=policy.default)
    assert parsed["To"] == "ada@mail.example.org"
    assert parsed["Subject"] == "Welcome Ada"
    assert parsed["List-Unsubscribe"].startswith("<https://edge.example.test/api/v1/unsubscribe?")
    sent_as = conn.execute(
        "select campaign_id from public.campaign_recipients where email = 'ada@mail.example.org'"
        " and workspace_id = %s",
        (owner.workspace_id,),
    ).fetchone()
    assert sent_as is not None
    assert (
        parsed["Feedback-ID"]
        == f"{sent_as['campaign_id']}:{owner.workspace_id}:campaign:growthbase"
    )
    outcomes = {
        r["contact_id"]: r
        for r in conn.execute(
            "select r.contact_id, h.outcome, h.detail from public.flow_run_steps h"
            " join public.flow_runs r on r.id = h.run_id"
            " where h.flow_id = %s and h.kind = 'send_email'",
            (flow,),
        ).fetchall()
    }
    statuses = sorted(o["outcome"] for o in outcomes.values())
    assert statuses == ["queued", "suppressed"]
    assert all(r["status"] == "completed" for r in runs(conn, flow))
    sent = one(
        conn,
        "select status from public.campaign_recipients where email = 'ada@mail.example.org'"
        " and workspace_id = %s",
        (owner.workspace_id,),
    )
    assert sent["status"] == "sent"
    # The send loop leaves the step's campaign open for the next run.
    campaign = one(
        conn,
        "select c.status from public.campaigns c join public.flow_steps s on s.campaign_id = c.id"
        " where s.flow_id = %s",
        (flow,),
    )
    assert campaign["status"] == "sending"


def test_a_flow_email_shows_its_event_such_as_the_cart(
    conn: Conn, database: Database, ses: SesClient, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    [buyer] = add_contacts(conn, owner, 1, prefix="cart")
    html = (
        "<ul>{% for item in event['items'] %}<li>{{ item.quantity }} x {{ item.name }}</li>"
        "{% endfor %}</ul><a href='{{ event.url }}'>back</a>"
    )
    create_flow(
        conn,
        owner,
        "custom",
        [send_step("cart", template(conn, owner, "Your cart", html), verified_sender(conn, owner))],
        trigger_config={"name": "cart"},
    )
    conn.execute(
        "insert into public.contact_events (workspace_id, contact_id, type, name, properties)"
        " values (%s, %s, 'custom', 'cart', %s)",
        (
            owner.workspace_id,
            buyer,
            Jsonb(
                {"items": [{"name": "Green <tea>", "quantity": 2}], "url": "https://s.example/r"}
            ),
        ),
    )
    assert flow_tick(conn) == 1
    assert send_due_emails(database, ses, POLICY, budget_seconds=10).sent == 1
    [message] = sent_raw_messages(ses_endpoint)
    parsed = message_from_string(message["raw_data"], policy=policy.default)
    body = parsed.get_body(preferencelist=("html",))
    assert body is not None
    content = str(body.get_content())
    assert "2 x Green &lt;tea&gt;" in content and "https://s.example/r" in content


def test_in_thread_is_a_boolean_and_its_parent_is_the_runs_first_mail_that_arrived(
    conn: Conn,
) -> None:
    """A send step's `in_thread` is true or false (else 422). At claim, the send round answers
    each in-thread row's parent: the SES id and subject of the earliest mail of an earlier step
    of the same run that SES accepted and that neither bounced nor failed; none for the others,
    and nothing at all for a round without in-thread steps."""
    owner = create_user(conn)
    sender = verified_sender(conn, owner)
    first = template(conn, owner, "Quick question, {{ first_name }}", "<p>Hi</p>")
    later = template(conn, owner, "Following up", "<p>Again</p>")
    draft = create_flow(
        conn, owner, "contact_created", [{"key": "a", "kind": "exit"}], activate=False
    )
    for bad in ("yes", 1, None, {"on": True}):
        with refused(422, "invalid_flow_step"), acting_as(conn, owner):
            conn.execute(
                "select public.save_flow(%s, %s)",
                (draft, Jsonb([send_step("a", later, sender, in_thread=bad)])),
            )
    steps = [
        send_step("first", first, sender, next_key="pause"),
        {"key": "pause", "kind": "wait", "config": {"days": 3}, "next": "again"},
        send_step("again", later, sender, in_thread=True),
    ]
    flow = create_flow(conn, owner, "tag_added", steps, trigger_config={"tag": "seq"})
    contacts = add_contacts(conn, owner, 4, prefix="thread")
    conn.execute("update public.contacts set tags = '{seq}' where id = any(%s)", (contacts,))
    assert flow_tick(conn) >= 4
    # The first mails: sent; sent and bounced; failed; sent to an address the contact has
    # since left.
    firsts = {
        r["contact_id"]: r["id"]
        for r in conn.execute(
            "select id, contact_id from public.campaign_recipients where workspace_id = %s",
            (owner.workspace_id,),
        )
    }
    fates = [
        "status = 'sent', sent_at = now(), ses_message_id = 'first-0'",
        "status = 'sent', sent_at = now(), ses_message_id = 'first-1', bounced_at = now()",
        "status = 'failed', error = 'template_invalid'",
        "status = 'sent', sent_at = now(), ses_message_id = 'first-3'",
    ]
    for contact, fate in zip(contacts, fates, strict=True):
        conn.execute(
            f"update public.campaign_recipients set {fate} where id = %s",
            (firsts[contact],),
        )
    conn.execute(
        "update public.contacts set email = 'moved-' || email where id = %s", (contacts[3],)
    )
    skip_waits(conn, flow)
    assert flow_tick(conn) >= 4
    answer = one(
        conn,
        "select private.send_round(null, 100, 60, 1000, 'thread-test', false, '{}')::jsonb as a",
    )["a"]
    claimed = {row[3]: row[0] for row in answer["rows"]}
    assert set(claimed) == {str(c) for c in contacts}
    assert answer["threads"] == {
        claimed[str(contacts[0])]: ["first-0", "Quick question, {{ first_name }}"]
    }
    # A round of rows without in_thread answers no threads.
    plain = one(
        conn,
        "select private.email_thread_parents(array[%s]::uuid[], array[r.campaign_id]) as t"
        " from public.campaign_recipients r where r.id = %s",
        (firsts[contacts[0]], firsts[contacts[0]]),
    )
    assert plain["t"] is None
    assert message_id_domain("us-east-1") == "email.amazonses.com"
    assert message_id_domain("eu-central-1") == "eu-central-1.amazonses.com"
