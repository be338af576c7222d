"""The send pipeline against SES's limits: GetAccount's quota, throttling (and AIMD), outages
(the breaker) and outcomes recorded in batches, through a front that plays what moto's SES
server does not (tests/fakes/ses_front.py)."""

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from api.core.db import Connection, Database
from api.email.sender import SendPolicy, send_due_emails
from api.email.ses import SesClient, SesError
from tests.factories.email import SENDER_DOMAIN, add_contacts, list_campaign, send_alone, start
from tests.factories.workspaces import acting_as, create_user, one
from tests.fakes.ses_front import SesFront, ses_front
from tests.fakes.ses_server import REGION, moto_ses, reset, sent_raw_messages

EDGE = "https://edge.example.test"
POLICY = SendPolicy(
    link_secret="pacing-" + uuid.uuid4().hex,
    link_days=30,
    max_per_second=1000,
    concurrency=4,
    base_url=EDGE,
)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_ses() as endpoint:
        yield endpoint


@pytest.fixture(autouse=True)
def idle_ledger(conn: psycopg.Connection[Any], moto: str) -> Iterator[None]:
    """Campaigns of other tests in this database must not be drained by this one, nor this
    one's by later tests that claim across the database; other tests' mail must not have
    engaged the platform brake."""
    send_alone(conn)
    reset(moto)
    yield
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")


def client(endpoint: str) -> SesClient:
    ses = SesClient(
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        endpoint_url=endpoint,
        configuration_set=None,
        max_connections=8,
    )
    ses.create_identity(SENDER_DOMAIN, adopt_existing=True)
    return ses


class CountingDatabase(Database):
    """Counts connection uses."""

    def __init__(self, url: str) -> None:
        super().__init__(url, pool_mode="session", max_size=4, timeout_seconds=10)
        self.uses = 0

    @contextmanager
    def connection(self, timeout_seconds: float | None = None) -> Iterator[Connection]:
        self.uses += 1
        with super().connection(timeout_seconds) as conn:
            yield conn


@contextmanager
def database(url: str) -> Iterator[CountingDatabase]:
    db = CountingDatabase(url)
    db.open()
    try:
        yield db
    finally:
        db.close()


def account(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    return one(conn, "select * from private.ses_accounts where account = 'default'")


def test_outcomes_go_back_in_batches_on_the_claims_connection(
    conn: psycopg.Connection[Any], database_url: str, moto: str
) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 300))
    start(conn, owner, campaign)

    with database(database_url) as db:
        report = send_due_emails(db, client(moto), POLICY, budget_seconds=60)

    assert report.sent == 300
    # Start-up (due campaigns, the account's age), a claim of all 300, outcomes flushed at most
    # once a second while they go out, and the last outcomes with the finish: not one a row.
    # The flushes follow the clock, so a loaded machine adds some: one use per ten rows at most.
    assert db.uses <= report.sent // 10
    recipients = Counter(m["destinations"][0] for m in sent_raw_messages(moto))
    assert len(recipients) == 300 and max(recipients.values()) == 1


def test_getaccount_sets_the_ceiling_and_throttling_slows_down_without_costing_attempts(
    conn: psycopg.Connection[Any], database_url: str, moto: str
) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 30))
    start(conn, owner, campaign)
    # SES at 14 a second, throttling every send for 0.4 s in every 1.5 s; two workers at once.
    front = SesFront(max_send_rate=14, burst_every=1.5, burst_seconds=0.4)

    reports: list[Any] = []
    with (
        ses_front(moto, front) as endpoint,
        database(database_url) as first,
        database(database_url) as second,
    ):

        def drain(db: Database) -> None:
            reports.append(send_due_emails(db, client(endpoint), POLICY, budget_seconds=60))

        workers = [threading.Thread(target=drain, args=(db,)) for db in (first, second)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    assert sum(report.sent for report in reports) == 30
    state = account(conn)
    assert state["max_send_rate"] == 14 and state["max_24_hour_send"] == 50000
    assert state["rate"] <= 14
    assert front.throttled > 0 and state["throttles"] == front.throttled
    recipients = Counter(m["destinations"][0] for m in sent_raw_messages(moto))
    assert len(recipients) == 30 and max(recipients.values()) == 1
    rows = one(
        conn,
        "select count(*) filter (where status = 'sent') as sent, max(attempts) as attempts"
        " from public.campaign_recipients where campaign_id = %s",
        (campaign,),
    )
    # Throttled sends were given back: every row went out on its one counted attempt.
    assert rows == {"sent": 30, "attempts": 1}
    assert (
        one(conn, "select status from public.campaigns where id = %s", (campaign,))["status"]
        == "sent"
    )


def test_ses_down_opens_the_breaker_and_costs_no_recipient_then_sending_resumes(
    conn: psycopg.Connection[Any], database_url: str, moto: str
) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 20))
    start(conn, owner, campaign)
    front = SesFront(max_send_rate=1000)

    with ses_front(moto, front) as endpoint, database(database_url) as db:
        ses = client(moto)
        ses_down = client(endpoint)
        front.down = True
        outage = send_due_emails(db, ses_down, POLICY, budget_seconds=3)

        assert outage.sent == 0 and outage.failed == 0
        paused = account(conn)
        assert paused["error_streak"] >= 5 and paused["paused_until"] is not None
        rows = one(
            conn,
            "select count(*) filter (where status = 'queued') as queued, max(attempts) as attempts"
            " from public.campaign_recipients where campaign_id = %s",
            (campaign,),
        )
        # SES's outage is nobody's fault: no attempt counted, nothing failed.
        assert rows == {"queued": 20, "attempts": 0}
        # While the pause lasts nothing is claimed, even with SES back.
        front.down = False
        assert send_due_emails(db, ses_down, POLICY, budget_seconds=1).sent == 0
        # The pause has run out: one probe, then everyone.
        conn.execute("update private.ses_accounts set paused_until = now() - interval '1 second'")
        conn.execute(
            "update public.campaign_recipients set next_attempt_at = now() where campaign_id = %s",
            (campaign,),
        )
        resumed = send_due_emails(db, ses, POLICY, budget_seconds=60)

    assert resumed.sent == 20
    assert account(conn)["error_streak"] == 0
    recipients = Counter(m["destinations"][0] for m in sent_raw_messages(moto))
    assert len(recipients) == 20 and max(recipients.values()) == 1


def test_the_daily_quota_is_never_claimed_past(
    conn: psycopg.Connection[Any], database_url: str, moto: str
) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 30))
    start(conn, owner, campaign)
    conn.execute(
        "select private.save_ses_account('default', 1000, %s)",
        ('{"MaxSendRate": 1000, "Max24HourSend": 200, "SentLast24Hours": 190}',),
    )

    with database(database_url) as db:
        report = send_due_emails(db, client(moto), POLICY, budget_seconds=2)

    assert report.sent == 10
    assert len(sent_raw_messages(moto)) == 10


def test_a_paused_campaigns_rows_do_not_stand_before_a_sending_one(
    conn: psycopg.Connection[Any],
) -> None:
    owner = create_user(conn)
    paused = list_campaign(conn, owner, add_contacts(conn, owner, 300, prefix="old"))
    start(conn, owner, paused)
    conn.execute("update public.campaigns set status = 'paused' where id = %s", (paused,))
    conn.execute(
        "update public.campaign_recipients set next_attempt_at = now() - interval '1 day'"
        " where campaign_id = %s",
        (paused,),
    )
    other = create_user(conn)
    sending = list_campaign(conn, other, add_contacts(conn, other, 5))
    start(conn, other, sending)

    conn.execute("set role service_role")
    try:
        rows = conn.execute("select * from private.claim_email_batch(10, 60, 1000)").fetchall()
    finally:
        conn.execute("reset role")

    assert {row["campaign_id"] for row in rows} == {sending}
    assert len(rows) == 5


class RejectingSes(SesClient):
    """SES refusing one address for good."""

    def __init__(self, endpoint: str, rejected: str) -> None:
        super().__init__(
            region=REGION,
            access_key_id="testing",
            secret_access_key="testing",
            endpoint_url=endpoint,
            configuration_set=None,
            max_connections=8,
        )
        self.rejected = rejected

    def send_raw(
        self,
        raw: bytes,
        sender: str,
        recipient: str,
        tags: dict[str, str],
        tenant: str | None = None,
    ) -> str:
        if recipient == self.rejected:
            raise SesError("MessageRejected", "Email address is not verified.", False)
        return super().send_raw(raw, sender, recipient, tags, tenant)


def test_resend_to_failed_sends_to_the_failed_rows_alone(
    conn: psycopg.Connection[Any], database_url: str, moto: str
) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 5))
    start(conn, owner, campaign)
    verified = client(moto)
    with database(database_url) as db:
        first = send_due_emails(
            db, RejectingSes(moto, "reader-2@mail.example.org"), POLICY, budget_seconds=60
        )
        assert (first.sent, first.failed, first.finished_campaigns) == (4, 1, 1)
        failed = one(
            conn,
            "select status, error from public.campaign_recipients"
            " where campaign_id = %s and email = 'reader-2@mail.example.org'",
            (campaign,),
        )
        assert failed["status"] == "failed" and "MessageRejected" in failed["error"]

        with acting_as(conn, owner):
            assert one(conn, "select public.resend_to_failed(%s) as n", (campaign,))["n"] == 1
        assert (
            one(conn, "select status from public.campaigns where id = %s", (campaign,))["status"]
            == "sending"
        )
        again = send_due_emails(db, verified, POLICY, budget_seconds=60)

    assert (again.sent, again.failed, again.finished_campaigns) == (1, 0, 1)
    recipients = Counter(m["destinations"][0] for m in sent_raw_messages(moto))
    assert len(recipients) == 5 and max(recipients.values()) == 1
    with acting_as(conn, owner):
        assert one(conn, "select public.resend_to_failed(%s) as n", (campaign,))["n"] == 0
    # Nothing to resend: the campaign stays sent.
    assert (
        one(conn, "select status from public.campaigns where id = %s", (campaign,))["status"]
        == "sent"
    )
