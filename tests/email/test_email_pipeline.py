"""The whole send pipeline against moto's SES server: real boto3 over HTTP, real Postgres."""

import json
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_string, policy
from email.message import EmailMessage
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from api.core.db import Database
from api.core.settings import Settings
from api.email import unsubscribe_tokens
from api.email.sender import SendPolicy, send_due_emails
from api.email.ses import SesClient, SesError
from tests.factories.email import (
    FROM_EMAIL,
    SENDER_DOMAIN,
    add_contacts,
    draft_campaign,
    email_list,
    list_campaign,
    send_alone,
    start,
    verified_sender,
)
from tests.factories.workspaces import acting_as, create_user, one
from tests.fakes.jwks import JwksServer
from tests.fakes.ses_server import (
    REGION,
    moto_client_settings,
    moto_ses,
    reset,
    sent_raw_messages,
)

LINK_SECRET = "test-link-secret-" + uuid.uuid4().hex
EDGE = "https://edge.example.test"


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, not even error handling."""


@pytest.fixture(scope="module")
def ses_endpoint() -> Iterator[str]:
    with moto_ses() as endpoint:
        yield endpoint


@pytest.fixture
def ses(ses_endpoint: str) -> SesClient:
    reset(ses_endpoint)
    client = SesClient(**moto_client_settings(ses_endpoint))
    client.create_identity(SENDER_DOMAIN, adopt_existing=True)
    return client


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url, pool_mode="session", max_size=8, timeout_seconds=10)
    db.open()
    yield db
    db.close()


@pytest.fixture(autouse=True)
def idle_ledger(conn: psycopg.Connection[Any]) -> None:
    """Campaigns of other tests in this database must not be drained by this one, nor their
    counts engage the platform brake."""
    send_alone(conn)


POLICY = SendPolicy(
    link_secret=LINK_SECRET, link_days=30, max_per_second=1000, concurrency=4, base_url=EDGE
)


def parsed(message: dict[str, Any]) -> EmailMessage:
    parsed_message = message_from_string(message["raw_data"], policy=policy.default)
    assert isinstance(parsed_message, EmailMessage)
    return parsed_message


def html_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def test_a_campaign_reaches_each_mailable_contact_once_with_headers_and_merge_fields(
    conn: psycopg.Connection[Any], database: Database, ses: SesClient, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 300, attributes={"offer": "<b>20% off</b>"})
    unsubscribed = add_contacts(conn, owner, 5, prefix="gone")
    conn.execute(
        "update public.contacts set unsubscribed_at = now() where id = any(%s)", (unsubscribed,)
    )
    suppressed = add_contacts(conn, owner, 5, prefix="bounced")
    conn.execute(
        "insert into public.email_suppressions (workspace_id, email, reason)"
        " select workspace_id, email, 'bounce' from public.contacts where id = any(%s)",
        (suppressed,),
    )
    unknown_consent = add_contacts(conn, owner, 5, prefix="unasked", consent="unknown")
    erased = add_contacts(conn, owner, 3, prefix="erased")
    conn.execute("update public.contacts set erased_at = now() where id = any(%s)", (erased,))
    everyone = readers + unsubscribed + suppressed + unknown_consent + erased
    list_id = email_list(conn, owner, everyone)
    campaign = draft_campaign(
        conn,
        owner,
        list_ids=[list_id],
        sender_id=verified_sender(conn, owner),
        variants=[
            (
                "A",
                "News for {{ first_name }}",
                "<p>{{ attributes.offer }}</p>",
                "Offer: {{ attributes.offer }}",
                1,
            ),
            ("B", "{{ first_name }}, this is for you", "<p>B {{ attributes.offer }}</p>", None, 1),
        ],
    )

    assert start(conn, owner, campaign) == 300
    report = send_due_emails(database, ses, POLICY, budget_seconds=60)

    assert report.sent == 300 and report.failed == 0
    messages = sent_raw_messages(ses_endpoint)
    recipients = Counter(m["destinations"][0] for m in messages)
    expected = {f"reader-{n}@mail.example.org" for n in range(1, 301)}
    assert set(recipients) == expected
    assert max(recipients.values()) == 1
    contact_by_email = {
        row["email"]: row["id"]
        for row in conn.execute(
            "select id, email from public.contacts where id = any(%s)", (readers,)
        )
    }
    subjects: Counter[str] = Counter()
    for raw in messages:
        assert (
            "\r\nList-Unsubscribe: <https://edge.example.test/api/v1/unsubscribe?token="
            in raw["raw_data"]
        )
        message = parsed(raw)
        address = str(message["To"])
        number = address.split("@")[0].removeprefix("reader-")
        assert message["From"] == f"Growthbase Shop <{FROM_EMAIL}>"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["Feedback-ID"] == f"{campaign}:{owner.workspace_id}:campaign:growthbase"
        link = str(message["List-Unsubscribe"]).strip("<>")
        assert link.startswith(f"{EDGE}/api/v1/unsubscribe?token=")
        claims = unsubscribe_tokens.verify(LINK_SECRET, parse_qs(urlsplit(link).query)["token"][0])
        assert claims.contact_id == contact_by_email[address]
        assert claims.workspace_id == owner.workspace_id
        html = html_part(message)
        assert "&lt;b&gt;20% off&lt;/b&gt;" in html and "<b>" not in html
        assert link.replace("&", "&amp;") in html or link in html
        subject = str(message["Subject"])
        subjects["A" if subject.startswith("News for") else "B"] += 1
        assert f"Reader {number}" in subject
    assert subjects == {"A": 150, "B": 150}
    status = one(conn, "select status, recipients from public.campaigns where id = %s", (campaign,))
    assert status == {"status": "sent", "recipients": 300}
    ledger = one(
        conn,
        "select count(*) filter (where status = 'sent') as sent,"
        " count(distinct ses_message_id) as ids"
        " from public.campaign_recipients where campaign_id = %s",
        (campaign,),
    )
    assert ledger == {"sent": 300, "ids": 300}


class CrashingSes(SesClient):
    """SES that works for the first `survive` messages, then the process dies."""

    def __init__(self, endpoint: str, survive: int) -> None:
        super().__init__(**moto_client_settings(endpoint))
        self.survive = survive
        self.calls = 0
        self.lock = threading.Lock()

    def send_raw(
        self,
        raw: bytes,
        sender: str,
        recipient: str,
        tags: dict[str, str],
        tenant: str | None = None,
    ) -> str:
        with self.lock:
            self.calls += 1
            if self.calls > self.survive:
                raise Crash
        return super().send_raw(raw, sender, recipient, tags, tenant)


def apply_send_events(
    conn: psycopg.Connection[Any], campaign: uuid.UUID, accepted: list[dict[str, Any]]
) -> None:
    """SES's Send event for each accepted message (tagged with its recipient row, as our sends
    are), stored and applied as the SES webhook does."""
    for message in accepted:
        row = one(
            conn,
            "select id from public.campaign_recipients where campaign_id = %s and email = %s",
            (campaign, message["destinations"][0]),
        )
        event = {
            "eventType": "Send",
            "mail": {
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "messageId": message["id"],
                "destination": message["destinations"],
                "tags": {"campaign_id": [str(campaign)], "recipient_id": [str(row["id"])]},
            },
            "send": {},
        }
        notification = {"Type": "Notification", "MessageId": str(uuid.uuid4())}
        notification["Message"] = json.dumps(event)
        stored = one(
            conn,
            "select id from private.record_webhook_event('ses', %s, %s)",
            (notification["MessageId"], json.dumps(notification)),
        )
        conn.execute("select private.apply_ses_event(%s)", (stored["id"],))


def test_a_crash_half_way_then_a_restart_sends_the_rest_and_nothing_twice(
    conn: psycopg.Connection[Any], database: Database, ses: SesClient, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 200)
    campaign = list_campaign(conn, owner, readers)
    start(conn, owner, campaign)

    with pytest.raises(Crash):
        send_due_emails(database, CrashingSes(ses_endpoint, survive=100), POLICY, budget_seconds=60)

    accepted = sent_raw_messages(ses_endpoint)
    assert len(accepted) == 100
    # Outcomes not yet recorded died with the worker; SES's Send events mark those rows sent.
    apply_send_events(conn, campaign, accepted)
    stranded = one(
        conn,
        "select count(*) filter (where status = 'sent') as sent,"
        " count(*) filter (where status = 'sending') as leased"
        " from public.campaign_recipients where campaign_id = %s",
        (campaign,),
    )
    assert stranded["sent"] == 100 and stranded["leased"] > 0
    # Before the lease runs out nobody touches the crashed worker's rows...
    send_due_emails(database, ses, POLICY, budget_seconds=60)
    assert (
        one(
            conn,
            "select count(*) as n from public.campaign_recipients"
            " where campaign_id = %s and status = 'sending'",
            (campaign,),
        )["n"]
        == stranded["leased"]
    )
    # ...and once it has, a restarted worker finishes the campaign.
    conn.execute(
        "update public.campaign_recipients set locked_until = now() - interval '1 second',"
        " next_attempt_at = now() - interval '1 second'"
        " where campaign_id = %s and status = 'sending'",
        (campaign,),
    )
    send_due_emails(database, ses, POLICY, budget_seconds=60)

    recipients = Counter(m["destinations"][0] for m in sent_raw_messages(ses_endpoint))
    assert len(recipients) == 200 and max(recipients.values()) == 1
    assert (
        one(conn, "select status from public.campaigns where id = %s", (campaign,))["status"]
        == "sent"
    )


class FlakySes(SesClient):
    """SES refusing given addresses: throttled once, or rejected for good."""

    def __init__(self, endpoint: str, throttled: str, rejected: str, timed_out: str) -> None:
        super().__init__(**moto_client_settings(endpoint))
        self.throttled = {throttled}
        self.rejected = rejected
        self.timed_out = {timed_out}

    def send_raw(
        self,
        raw: bytes,
        sender: str,
        recipient: str,
        tags: dict[str, str],
        tenant: str | None = None,
    ) -> str:
        if recipient in self.throttled:
            self.throttled.discard(recipient)
            raise SesError("ThrottlingException", "Maximum sending rate exceeded.", True)
        if recipient == self.rejected:
            raise SesError("MessageRejected", "Email address is not verified.", False)
        if recipient in self.timed_out:
            self.timed_out.discard(recipient)
            raise SesError("ReadTimeoutError", "Read timeout", True, outcome_unknown=True)
        return super().send_raw(raw, sender, recipient, tags, tenant)


def test_throttling_is_retried_later_and_permanent_errors_are_recorded_per_recipient(
    conn: psycopg.Connection[Any], database: Database, ses: SesClient, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 10)
    campaign = list_campaign(conn, owner, readers)
    start(conn, owner, campaign)
    flaky = FlakySes(
        ses_endpoint,
        throttled="reader-3@mail.example.org",
        rejected="reader-7@mail.example.org",
        timed_out="reader-9@mail.example.org",
    )

    first = send_due_emails(database, flaky, POLICY, budget_seconds=60)

    # The throttled send went back at once, without costing an attempt, and went out in the
    # same run; the timed-out one waits for SES's events.
    assert (first.sent, first.retrying, first.failed) == (8, 2, 1)
    rows = {
        row["email"]: row
        for row in conn.execute(
            "select email, status, attempts, error,"
            " next_attempt_at > now() + interval '9 minutes' as after_ses_events"
            " from public.campaign_recipients where campaign_id = %s",
            (campaign,),
        )
    }
    assert rows["reader-3@mail.example.org"]["status"] == "sent"
    assert rows["reader-3@mail.example.org"]["attempts"] == 1
    assert rows["reader-7@mail.example.org"]["status"] == "failed"
    assert "MessageRejected" in rows["reader-7@mail.example.org"]["error"]
    # SES may have taken the timed-out message: its retry waits for SES's events first.
    assert rows["reader-9@mail.example.org"]["status"] == "queued"
    assert rows["reader-9@mail.example.org"]["after_ses_events"]
    assert (
        one(conn, "select status from public.campaigns where id = %s", (campaign,))["status"]
        == "sending"
    )
    throttles = one(
        conn, "select rate, throttles from private.ses_accounts where account = 'default'"
    )
    assert throttles["throttles"] == 1

    conn.execute(
        "update public.campaign_recipients set next_attempt_at = now() where campaign_id = %s"
        " and status = 'queued'",
        (campaign,),
    )
    second = send_due_emails(database, flaky, POLICY, budget_seconds=60)

    assert (second.sent, second.failed) == (1, 0)
    sent_to = Counter(m["destinations"][0] for m in sent_raw_messages(ses_endpoint))
    assert len(sent_to) == 9 and "reader-7@mail.example.org" not in sent_to
    assert max(sent_to.values()) == 1
    assert (
        one(conn, "select status from public.campaigns where id = %s", (campaign,))["status"]
        == "sent"
    )


def test_contacts_who_unsubscribe_or_bounce_mid_campaign_get_nothing_more(
    conn: psycopg.Connection[Any], database: Database, ses: SesClient, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 6)
    campaign = list_campaign(conn, owner, readers)
    start(conn, owner, campaign)
    conn.execute(
        "update public.contacts set unsubscribed_at = now()"
        " where workspace_id = %s and email = 'reader-2@mail.example.org'",
        (owner.workspace_id,),
    )
    conn.execute(
        "insert into public.email_suppressions (workspace_id, email, reason)"
        " values (%s, 'reader-5@mail.example.org', 'complaint')",
        (owner.workspace_id,),
    )

    send_due_emails(database, ses, POLICY, budget_seconds=60)

    sent_to = {m["destinations"][0] for m in sent_raw_messages(ses_endpoint)}
    assert sent_to == {f"reader-{n}@mail.example.org" for n in (1, 3, 4, 6)}
    skipped = conn.execute(
        "select email from public.campaign_recipients where campaign_id = %s and status = 'skipped'"
        " order by email",
        (campaign,),
    ).fetchall()
    assert [row["email"] for row in skipped] == [
        "reader-2@mail.example.org",
        "reader-5@mail.example.org",
    ]


def test_a_missing_merge_field_fails_that_recipient_instead_of_sending_a_blank(
    conn: psycopg.Connection[Any], database: Database, ses: SesClient, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 3)
    conn.execute(
        'update public.contacts set attributes = \'{"city": "Brno"}\' where id = %s', (readers[0],)
    )
    campaign = list_campaign(
        conn, owner, readers, [("A", "Hello", "<p>See you in {{ attributes.city }}</p>", None, 1)]
    )
    start(conn, owner, campaign)

    report = send_due_emails(database, ses, POLICY, budget_seconds=60)

    assert (report.sent, report.failed) == (1, 2)
    failed = conn.execute(
        "select error from public.campaign_recipients where campaign_id = %s and status = 'failed'",
        (campaign,),
    ).fetchall()
    assert all("city" in row["error"] for row in failed)
    assert [m["destinations"][0] for m in sent_raw_messages(ses_endpoint)] == [
        "reader-1@mail.example.org"
    ]


def test_a_template_that_would_run_for_hours_fails_its_recipients_and_the_worker_goes_on(
    conn: psycopg.Connection[Any], database: Database, ses: SesClient, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 5)
    hours = (
        f"{{# {uuid.uuid4()} #}}{{% for i in range(1000) %}}{{% for j in range(1000) %}}"
        "{{ ('x' * 100000) | replace('x', 'yy') | length }}{% endfor %}{% endfor %}"
    )
    campaign = list_campaign(
        conn, owner, readers, [("A", "Hello", hours, None, 4), ("B", "Hello", "<p>Hi</p>", None, 1)]
    )
    start(conn, owner, campaign)

    report = send_due_emails(database, ses, POLICY, budget_seconds=60)

    assert (report.sent, report.failed) == (1, 4)
    errors = [
        row["error"]
        for row in conn.execute(
            "select error from public.campaign_recipients where campaign_id = %s"
            " and status = 'failed'",
            (campaign,),
        )
    ]
    assert len(errors) == 4
    assert all(error.startswith("template_over_budget: ") for error in errors)
    assert len(sent_raw_messages(ses_endpoint)) == 1


def test_the_shared_bucket_hands_out_no_more_than_the_rate(conn: psycopg.Connection[Any]) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 10)
    campaign = list_campaign(conn, owner, readers)
    start(conn, owner, campaign)
    conn.execute("set role service_role")
    try:
        first = conn.execute("select * from private.claim_email_batch(50, 60, 1)").fetchall()
        second = conn.execute("select * from private.claim_email_batch(50, 60, 1)").fetchall()
        wait = one(conn, "select private.email_send_wait(1) as seconds")["seconds"]
    finally:
        conn.execute("reset role")
    assert len(first) == 1 and second == []
    assert 0 < wait <= 1


def test_the_cron_starts_due_scheduled_campaigns_and_sends_them(
    conn: psycopg.Connection[Any],
    database_url: str,
    jwks: JwksServer,
    ses: SesClient,
    ses_endpoint: str,
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 4)
    campaign = list_campaign(conn, owner, readers)
    with acting_as(conn, owner):
        conn.execute("select public.schedule_campaign(%s, now() + interval '1 hour')", (campaign,))
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        cron_secret=SecretStr("cron-secret"),
        ses_region=REGION,
        ses_endpoint_url=ses_endpoint,
        ses_access_key_id="testing",
        ses_secret_access_key=SecretStr("testing"),
        email_link_secret=SecretStr(LINK_SECRET),
        public_base_url=EDGE,
    )
    with TestClient(create_app(settings)) as client:
        early = client.get("/api/v1/cron/email", headers={"Authorization": "Bearer cron-secret"})
        assert early.json()["data"]["email"]["started_campaigns"] == 0
        conn.execute(
            "update public.campaigns set scheduled_at = now() - interval '1 minute' where id = %s",
            (campaign,),
        )
        due = client.get("/api/v1/cron/email", headers={"Authorization": "Bearer cron-secret"})

    assert due.status_code == 200
    assert due.json()["data"]["email"] == {
        "started_campaigns": 1,
        "sent": 4,
        "retrying": 0,
        "failed": 0,
        "finished_campaigns": 1,
        "platform_brake": False,
        "released_first_sends": 0,
        "pause_emails": "platform_from_email_not_configured",
    }
    assert len(sent_raw_messages(ses_endpoint)) == 4


def test_a_campaign_whose_sender_lost_verification_waits_instead_of_failing(
    conn: psycopg.Connection[Any], database: Database, ses: SesClient, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 3)
    sender = verified_sender(conn, owner)
    campaign = draft_campaign(
        conn, owner, list_ids=[email_list(conn, owner, readers)], sender_id=sender
    )
    start(conn, owner, campaign)
    conn.execute("update public.sender_identities set verified = false where id = %s", (sender,))

    waiting = send_due_emails(database, ses, POLICY, budget_seconds=60)

    assert (waiting.sent, waiting.failed) == (0, 0)
    assert sent_raw_messages(ses_endpoint) == []
    conn.execute("update public.sender_identities set verified = true where id = %s", (sender,))
    assert send_due_emails(database, ses, POLICY, budget_seconds=60).sent == 3


def test_batches_that_are_all_skipped_do_not_end_the_run(
    conn: psycopg.Connection[Any], database: Database, ses: SesClient, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 30)
    campaign = list_campaign(conn, owner, readers)
    start(conn, owner, campaign)
    # Twenty unsubscribe after the start, and their rows come up first: whole claims of them.
    conn.execute(
        "update public.contacts set unsubscribed_at = now() where id = any(%s)", (readers[:20],)
    )
    conn.execute(
        "update public.campaign_recipients set next_attempt_at = now() - interval '1 hour'"
        " where contact_id = any(%s)",
        (readers[:20],),
    )

    report = send_due_emails(database, ses, POLICY, budget_seconds=60)

    assert report.sent == 10
    assert {m["destinations"][0] for m in sent_raw_messages(ses_endpoint)} == {
        f"reader-{n}@mail.example.org" for n in range(21, 31)
    }
    assert (
        one(conn, "select status from public.campaigns where id = %s", (campaign,))["status"]
        == "sent"
    )
