"""Issue 18: the database server restarting under the send worker. The shared test server cannot
be stopped (other tests run on it at the same time), so this module starts its own throwaway
cluster (scripts/pg_cluster.py: initdb and pg_ctl of the test server's major version), migrated
as the suite migrates, and stops it for real: every backend killed at once and the transactions
in flight lost (an immediate stop, as in a crash), or every client told the server is shutting
down (a fast stop); connections are refused until it is back. moto's SES server counts what was
really sent: every recipient once, none lost, and the campaign `sent` only when every row is."""

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from api.app import create_app
from api.core.db import Database
from api.core.errors import ApiError
from api.email import sender
from api.email.sender import SendPolicy, send_due_emails
from api.email.ses import SesClient, Tenant
from scripts.migrate import migrate
from scripts.pg_cluster import Cluster, throwaway_cluster
from tests.factories.edge import edge_settings
from tests.factories.email import (
    SENDER_DOMAIN,
    add_contacts,
    draft_campaign,
    each_delivered_once,
    email_list,
    moto_sender,
    send_alone,
    start,
    verified_sender,
)
from tests.factories.workspaces import User, create_user, one
from tests.fakes.jwks import JwksServer
from tests.fakes.ses_server import (
    REGION,
    moto_client_settings,
    moto_ses,
    reset,
)
from tests.fakes.ses_tenants import SesTenants, ses_with_tenants

Conn = psycopg.Connection[Any]

POLICY = SendPolicy(
    link_secret="restart-" + "0" * 32,
    link_days=30,
    max_per_second=1000,
    concurrency=2,
    base_url="https://edge.example.test",
)
# How many of the worker's rounds the server refuses before it comes back: past the pool's
# first reconnection attempts (1 s, then 2 s apart), which is when a pool that backs off
# further would leave the worker waiting after the server is back.
REFUSED_ROUNDS = 3
OTHER_DOMAIN = "letters.shop-b.example"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with throwaway_cluster() as made:
        migrate(made.url)
        yield made


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_ses() as endpoint:
        yield endpoint


@pytest.fixture
def own(cluster: Cluster, moto: str) -> Iterator[Conn]:
    """A superuser connection to the throwaway cluster."""
    reset(moto)
    with psycopg.connect(cluster.url, autocommit=True, row_factory=dict_row) as connection:
        send_alone(connection)
        # Whether the account has SES tenants is asked again (moto alone has none).
        connection.execute("delete from private.ses_tenancy")
        connection.execute("delete from private.ses_tenants")
        yield connection


def campaign_of(
    conn: Conn, owner: User, count: int, prefix: str, sender_id: Any, domain: str = SENDER_DOMAIN
) -> Any:
    """A started campaign to `count` new contacts, on a list of its own."""
    contacts = add_contacts(conn, owner, count, prefix=prefix)
    campaign = draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, contacts, prefix)],
        sender_id=sender_id,
        from_email=f"hello@{domain}",
    )
    start(conn, owner, campaign)
    return campaign


def ledger(url: str, campaign: Any) -> dict[str, Any]:
    """On a new connection: the server may have restarted since the test's own."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        return one(
            conn,
            "select count(*) filter (where r.status = 'sent') as sent,"
            " count(*) filter (where r.status <> 'sent') as other, max(r.attempts) as attempts,"
            " (select c.status from public.campaigns c where c.id = %s) as campaign"
            " from public.campaign_recipients r where r.campaign_id = %s",
            (campaign, campaign),
        )


class RestartingDatabase(Database):
    """The worker's pool on the throwaway cluster. Once the server has crashed (`crash`), it is
    started again when the worker has had `refusals` rounds refused (no connection to be had)."""

    def __init__(self, cluster: Cluster, refusals: int, timeout_seconds: float = 1) -> None:
        super().__init__(
            cluster.url, pool_mode="session", max_size=4, timeout_seconds=timeout_seconds
        )
        self.cluster = cluster
        self.refusals = refusals
        self.down = False
        self.back = False
        self.refused: list[str] = []
        self.refused_when_up: list[str] = []

    def crash(self) -> None:
        self.cluster.stop("immediate")
        self.down = True

    def one_as_service(self, query: str, params: Sequence[Any]) -> DictRow | None:
        try:
            return super().one_as_service(query, params)
        except ApiError as error:
            if not self.down:
                self.refused_when_up.append(error.code)
            else:
                self.refused.append(error.code)
                if len(self.refused) == self.refusals:
                    self.cluster.start()
                    self.down = False
                    self.back = True
            raise


class CrashedDatabase(RestartingDatabase):
    """The first round that records outcomes (of messages SES accepted) and claims the next
    rows is caught mid-claim, waiting for a lock on the contacts (which only the claim reads;
    the outcomes are recorded by then, in the same transaction), and the server crashes under
    it."""

    def __init__(self, cluster: Cluster, refusals: int) -> None:
        super().__init__(cluster, refusals)
        self.cut: list[str] = []

    def one_as_service(self, query: str, params: Sequence[Any]) -> DictRow | None:
        if self.cut or self.down or self.back or not params[0] or not params[1]:
            return super().one_as_service(query, params)
        locked = threading.Event()
        stopper = threading.Thread(target=self.stop_when_blocked, args=(locked,))
        stopper.start()
        try:
            assert locked.wait(10), "the contacts were never locked"
            return super().one_as_service(query, params)
        except psycopg.OperationalError as error:
            self.cut.append(type(error).__name__)
            raise
        finally:
            stopper.join()

    def stop_when_blocked(self, locked: threading.Event) -> None:
        crash_when_waited_for(self.cluster, "public.contacts", locked, self.crash)


def crash_when_waited_for(
    cluster: Cluster, table: str, locked: threading.Event, crash: Callable[[], None]
) -> None:
    """Locks `table`, sets `locked`, waits until a backend waits for the table, and crashes the
    server. On any failure the lock goes with this thread's connection, so nobody waits on."""
    # Closed, not committed: the server is gone by then.
    with (
        closing(psycopg.connect(cluster.url, autocommit=False)) as locker,
        closing(psycopg.connect(cluster.url, autocommit=True, row_factory=dict_row)) as watcher,
    ):
        locker.execute(
            sql.SQL("lock table {} in access exclusive mode").format(
                sql.Identifier(*table.split("."))
            )
        )
        locked.set()
        deadline = time.monotonic() + 10
        while not one(
            watcher,
            "select exists (select from pg_catalog.pg_locks"
            " where relation = %s::regclass and not granted) as blocked",
            (table,),
        )["blocked"]:
            assert time.monotonic() < deadline, f"nobody waited for {table}"
        crash()


def test_the_server_crashing_mid_claim_loses_and_doubles_nothing(
    own: Conn, cluster: Cluster, moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 16: the first claim sends 16, and the round that records its first 8 outcomes
    # claims 8 more; the server goes down under that round. The worker tries again sooner than
    # it would in production, so the test spends its time in the outage, not in sleeps.
    monkeypatch.setattr(sender, "ROWS_PER_THREAD", 8)
    monkeypatch.setattr(sender, "DATABASE_RETRY_SECONDS", 0.1)
    owner = create_user(own)
    campaign = campaign_of(own, owner, 48, "crash", verified_sender(own, owner))

    db = CrashedDatabase(cluster, REFUSED_ROUNDS)
    db.open()
    try:
        report = send_due_emails(db, moto_sender(moto), POLICY, budget_seconds=60)
    finally:
        db.close()

    # The round was lost with the server, then REFUSED_ROUNDS rounds were refused. Once the
    # server was back the worker had a connection within the pool's timeout: at most one more
    # round refused (a reconnection attempt already under way when the server came back), not
    # the several of a pool backing off for seconds.
    assert db.cut == ["OperationalError"]
    assert db.refused == ["database_unavailable"] * REFUSED_ROUNDS
    assert db.back and len(db.refused_when_up) <= 1
    # The lost round's outcomes (and those that came in during the outage) were recorded once
    # the server was back; what its claim had taken was claimed again, and sent once.
    assert report.sent == 48 and report.finished_campaigns == 1
    assert ledger(cluster.url, campaign) == {
        "sent": 48,
        "other": 0,
        "attempts": 1,
        "campaign": "sent",
    }
    each_delivered_once(moto, 48)


def test_the_next_run_after_a_restart_sends_through_the_same_pool(
    own: Conn, cluster: Cluster, moto: str
) -> None:
    owner = create_user(own)
    identity = verified_sender(own, owner)
    first = campaign_of(own, owner, 10, "before", identity)
    ses = moto_sender(moto)

    # A warm worker (the edge's pool outlives a cron run): its idle connections are closed by
    # the restart between two runs.
    db = Database(cluster.url, pool_mode="session", max_size=4, timeout_seconds=1)
    db.open()
    try:
        assert send_due_emails(db, ses, POLICY, budget_seconds=60).sent == 10
        second = campaign_of(own, owner, 12, "after", identity)
        cluster.stop("fast")
        cluster.start()
        report = send_due_emails(db, ses, POLICY, budget_seconds=60)
    finally:
        db.close()

    assert report.sent == 12 and report.finished_campaigns == 1
    assert ledger(cluster.url, first)["campaign"] == "sent"
    assert ledger(cluster.url, second) == {
        "sent": 12,
        "other": 0,
        "attempts": 1,
        "campaign": "sent",
    }
    each_delivered_once(moto, 22)


class CrashingTenants(SesClient):
    """SES with tenants: when it has made the second workspace's tenant, the database crashes
    before the worker can store it."""

    def __init__(self, endpoint: str, db: RestartingDatabase) -> None:
        super().__init__(**moto_client_settings(endpoint))
        self.db = db
        self.made = 0

    def ensure_tenant(self, name: str, identity: str) -> tuple[Tenant, list[str]]:
        made = super().ensure_tenant(name, identity)
        self.made += 1
        if self.made == 2:
            self.db.crash()
        return made


def test_the_server_crashing_while_a_new_tenant_is_stored_loses_and_doubles_nothing(
    own: Conn, cluster: Cluster, moto: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 16: the first claim is shop A's 16 rows, and the round that records 8 of their
    # outcomes claims 8 of shop B's, whose tenant SES makes; the server crashes then.
    monkeypatch.setattr(sender, "ROWS_PER_THREAD", 8)
    monkeypatch.setattr(sender, "DATABASE_RETRY_SECONDS", 0.1)
    shop_a, shop_b = create_user(own), create_user(own)
    first = campaign_of(own, shop_a, 16, "shop-a", verified_sender(own, shop_a))
    second = campaign_of(
        own, shop_b, 16, "shop-b", verified_sender(own, shop_b, OTHER_DOMAIN), OTHER_DOMAIN
    )
    account = SesTenants()

    db = RestartingDatabase(cluster, refusals=1, timeout_seconds=0.5)
    db.open()
    try:
        with ses_with_tenants(moto, account) as endpoint:
            ses = CrashingTenants(endpoint, db)
            ses.create_identity(SENDER_DOMAIN, adopt_existing=True)
            ses.create_identity(OTHER_DOMAIN, adopt_existing=True)
            report = send_due_emails(db, ses, POLICY, budget_seconds=60)
    finally:
        db.close()

    assert ses.made == 3  # shop A's, shop B's, and shop B's again (SES already had it)
    assert db.back and db.refused == ["database_unavailable"] and len(db.refused_when_up) <= 1
    assert report.sent == 32 and report.finished_campaigns == 2
    for campaign in (first, second):
        assert ledger(cluster.url, campaign) == {
            "sent": 16,
            "other": 0,
            "attempts": 1,
            "campaign": "sent",
        }
    name_b = f"growthbase-{shop_b.workspace_id}"
    assert Counter(tenant for tenant, _ in account.sends)[name_b] == 16
    each_delivered_once(moto, 32)


def test_the_cron_answers_503_when_the_server_crashes_under_it_and_sends_on_its_next_run(
    own: Conn, cluster: Cluster, moto: str, jwks: JwksServer
) -> None:
    owner = create_user(own)
    campaign = campaign_of(own, owner, 10, "cron", verified_sender(own, owner))
    moto_sender(moto)
    settings = edge_settings(
        cluster.url,
        jwks,
        cron_secret="cron-secret",
        ses_region=REGION,
        ses_endpoint_url=moto,
        ses_access_key_id="testing",
        ses_secret_access_key="testing",
        email_link_secret=POLICY.link_secret,
        public_base_url=POLICY.base_url,
        database_timeout_seconds=1,
    )
    cron = {"Authorization": "Bearer cron-secret"}

    with TestClient(create_app(settings)) as client:
        # The run's first statement (starting due campaigns) waits for a lock on the campaigns
        # when the server crashes.
        locked = threading.Event()
        crasher = threading.Thread(
            target=crash_when_waited_for,
            args=(cluster, "public.campaigns", locked, lambda: cluster.stop("immediate")),
        )
        crasher.start()
        try:
            assert locked.wait(10)
            crashed = client.get("/api/v1/cron/email", headers=cron)
        finally:
            crasher.join()
        cluster.start()
        again = client.get("/api/v1/cron/email", headers=cron)

    # The database's outage, not our bug: a 503 the cron's next run answers.
    assert crashed.status_code == 503, crashed.text
    assert crashed.json()["error"]["code"] == "database_unavailable"
    assert again.status_code == 200, again.text
    assert again.json()["data"]["email"]["sent"] == 10
    assert ledger(cluster.url, campaign) == {
        "sent": 10,
        "other": 0,
        "attempts": 1,
        "campaign": "sent",
    }
    each_delivered_once(moto, 10)
