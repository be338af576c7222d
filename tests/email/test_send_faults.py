"""Issue 18's faults, each through the real path (the send worker, Postgres, moto's SES server):
the database cutting the worker's connection in the middle of a round, a pool that has no
connection to give, SES down for ten minutes, and a complaint that pauses the workspace while its
campaign sends. Nothing is lost, nothing goes twice, no campaign is marked sent early, and neither
throttling nor pool timeouts count towards the breaker."""

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import DictRow, dict_row

from api.core.db import Connection, Database
from api.core.errors import ApiError
from api.email.notices import send_pause_emails
from api.email.sender import SendPolicy, send_due_emails
from api.email.ses import SesClient, SesError
from tests.factories.email import (
    SENDER_DOMAIN,
    add_contacts,
    draft_campaign,
    each_delivered_once,
    email_list,
    list_campaign,
    moto_sender,
    send_alone,
    start,
    verified_sender,
)
from tests.factories.workspaces import acting_as, add_member, create_user, one, wait_until_blocked
from tests.fakes.ses_front import SesFront, ses_front
from tests.fakes.ses_server import moto_client_settings, moto_ses, reset

Conn = psycopg.Connection[Any]

EDGE = "https://edge.example.test"
POLICY = SendPolicy(
    link_secret="faults-" + uuid.uuid4().hex,
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
def idle_ledger(conn: Conn, moto: str) -> Iterator[None]:
    send_alone(conn)
    reset(moto)
    yield
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")


@contextmanager
def opened(db: Database) -> Iterator[Database]:
    db.open()
    try:
        yield db
    finally:
        db.close()


def pool(url: str, max_size: int = 4, timeout_seconds: float = 10) -> Database:
    return Database(url, pool_mode="session", max_size=max_size, timeout_seconds=timeout_seconds)


def another_campaign(conn: Conn, owner: Any, count: int, prefix: str) -> uuid.UUID:
    """A second started campaign of the workspace, to new contacts, from its verified sender."""
    known = conn.execute(
        "select id from public.sender_identities where workspace_id = %s and identity = %s",
        (owner.workspace_id, SENDER_DOMAIN),
    ).fetchone()
    campaign = draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, add_contacts(conn, owner, count, prefix=prefix), prefix)],
        sender_id=known["id"] if known else verified_sender(conn, owner),
    )
    start(conn, owner, campaign)
    return campaign


def ledger(conn: Conn, campaign: uuid.UUID) -> dict[str, Any]:
    return one(
        conn,
        "select count(*) filter (where r.status = 'sent') as sent,"
        " count(*) filter (where r.status = 'queued') as queued,"
        " count(*) filter (where r.status = 'failed') as failed,"
        " max(r.attempts) as attempts, (select c.status from public.campaigns c where c.id = %s)"
        " as campaign from public.campaign_recipients r where r.campaign_id = %s",
        (campaign, campaign),
    )


def breaker(conn: Conn) -> dict[str, Any]:
    return one(
        conn,
        "select error_streak, paused_until from private.ses_accounts where account = 'default'",
    )


class CutDatabase(Database):
    """The first round that carries outcomes has its connection terminated by the server while
    the round waits on a row lock: the round's transaction is lost whole, as in a restart."""

    def __init__(self, url: str) -> None:
        super().__init__(url, pool_mode="session", max_size=4, timeout_seconds=10)
        self.url = url
        self.armed = False
        self.cut = 0
        self.backend: int | None = None
        self.taken = threading.Event()
        self.terminated = False

    @contextmanager
    def connection(self, timeout_seconds: float | None = None) -> Iterator[Connection]:
        with super().connection(timeout_seconds) as conn:
            if self.armed:
                self.backend = conn.info.backend_pid
                self.taken.set()
            yield conn

    def one_as_service(self, query: str, params: Sequence[Any]) -> DictRow | None:
        if self.cut or not params[0]:
            return super().one_as_service(query, params)
        self.cut += 1
        first = json.loads(params[0])[0]["id"]
        with psycopg.connect(self.url, autocommit=False, row_factory=dict_row) as locker:
            locker.execute(
                "select id from public.campaign_recipients where id = %s for update", (first,)
            )

            def terminate() -> None:
                with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as watcher:
                    self.taken.wait(10)
                    assert self.backend is not None
                    wait_until_blocked(watcher, self.backend)
                    self.terminated = one(
                        watcher, "select pg_terminate_backend(%s) as done", (self.backend,)
                    )["done"]

            killer = threading.Thread(target=terminate)
            killer.start()
            self.armed = True
            try:
                return super().one_as_service(query, params)
            finally:
                self.armed = False
                killer.join()
                locker.rollback()


def test_the_database_cutting_the_workers_connection_mid_round_loses_and_doubles_nothing(
    conn: Conn, database_url: str, moto: str
) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 40))
    start(conn, owner, campaign)

    with opened(CutDatabase(database_url)) as db:
        assert isinstance(db, CutDatabase)
        report = send_due_emails(db, moto_sender(moto), POLICY, budget_seconds=60)

    assert db.cut == 1 and db.terminated
    # The lost round's outcomes were kept by the worker and recorded again on a new connection.
    assert report.sent == 40
    assert ledger(conn, campaign) == {
        "sent": 40,
        "queued": 0,
        "failed": 0,
        "attempts": 1,
        "campaign": "sent",
    }
    each_delivered_once(moto, 40)


class StarvedDatabase(Database):
    """A pool of one connection, which a send thread takes away at the first send and gives back
    only when the worker has met a pool timeout."""

    def __init__(self, url: str) -> None:
        super().__init__(url, pool_mode="session", max_size=1, timeout_seconds=0.5)
        self.held: Any = None
        self.timeouts = 0

    def starve(self) -> None:
        if self.timeouts == 0 and self.held is None:
            self.held = self.pool.getconn(timeout=10)

    @contextmanager
    def connection(self, timeout_seconds: float | None = None) -> Iterator[Connection]:
        try:
            cm = super().connection(timeout_seconds)
            conn = cm.__enter__()
        except ApiError as error:
            if error.code == "database_unavailable" and self.held is not None:
                self.timeouts += 1
                self.pool.putconn(self.held)
                self.held = None
            raise
        try:
            yield conn
        except BaseException as error:
            if not cm.__exit__(type(error), error, error.__traceback__):
                raise
        else:
            cm.__exit__(None, None, None)


class StarvingSes(SesClient):
    def __init__(self, endpoint: str, db: StarvedDatabase) -> None:
        super().__init__(**moto_client_settings(endpoint))
        self.db = db
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
            self.db.starve()
        return super().send_raw(raw, sender, recipient, tags, tenant)


class ThrottlingSes(SesClient):
    """SES answering its first `throttles` sends as over the account's rate."""

    def __init__(self, endpoint: str, throttles: int) -> None:
        super().__init__(**moto_client_settings(endpoint))
        self.left = throttles
        self.throttled = 0
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
            if self.left > 0:
                self.left -= 1
                self.throttled += 1
                raise SesError("TooManyRequestsException", "Maximum sending rate exceeded.", True)
        return super().send_raw(raw, sender, recipient, tags, tenant)


def test_pool_timeouts_and_throttling_never_count_towards_the_breaker(
    conn: Conn, database_url: str, moto: str
) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 30))
    start(conn, owner, campaign)

    # The pool has nothing to give while the first sends go out.
    with opened(StarvedDatabase(database_url)) as db:
        assert isinstance(db, StarvedDatabase)
        ses = StarvingSes(moto, db)
        ses.create_identity(SENDER_DOMAIN, adopt_existing=True)
        starved = send_due_emails(db, ses, POLICY, budget_seconds=60)
    assert db.timeouts >= 1
    assert starved.sent == 30
    assert breaker(conn) == {"error_streak": 0, "paused_until": None}
    assert ledger(conn, campaign)["attempts"] == 1

    # SES throttling (TooManyRequestsException, its answer over the account's rate) the first
    # eight sends: slowed down and retried, never an error.
    again = another_campaign(conn, owner, 20, "again")
    with opened(pool(database_url)) as db:
        throttling = ThrottlingSes(moto, throttles=8)
        throttled = send_due_emails(db, throttling, POLICY, budget_seconds=60)
    assert throttling.throttled == 8 and throttled.sent == 20
    assert breaker(conn) == {"error_streak": 0, "paused_until": None}
    assert ledger(conn, again) == {
        "sent": 20,
        "queued": 0,
        "failed": 0,
        "attempts": 1,
        "campaign": "sent",
    }
    each_delivered_once(moto, 50)


def test_ses_down_for_ten_minutes_loses_nothing_and_the_campaign_waits_unsent(
    conn: Conn, database_url: str, moto: str
) -> None:
    owner = create_user(conn)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 20))
    start(conn, owner, campaign)
    front = SesFront(max_send_rate=1000)

    with ses_front(moto, front) as endpoint, opened(pool(database_url)) as db:
        down = moto_sender(endpoint)
        front.down = True
        # Ten minutes of the cron's runs: each time the breaker's pause has run out, a probe
        # fails again (the pause doubles: 15 s, 30 s, ... 5 min, 5 min).
        for _ in range(6):
            conn.execute(
                "update private.ses_accounts set paused_until = now() - interval '1 second'"
            )
            conn.execute(
                "update public.campaign_recipients set next_attempt_at = now()"
                " where campaign_id = %s and status = 'queued'",
                (campaign,),
            )
            outage = send_due_emails(db, down, POLICY, budget_seconds=0.3)
            assert outage.sent == 0 and outage.failed == 0 and outage.finished_campaigns == 0
            # Nobody's fault: no attempt spent, nothing failed, the campaign still sending.
            assert ledger(conn, campaign) == {
                "sent": 0,
                "queued": 20,
                "failed": 0,
                "attempts": 0,
                "campaign": "sending",
            }
        paused = one(
            conn,
            "select error_streak, paused_until - now() as left from private.ses_accounts"
            " where account = 'default'",
        )
        assert paused["error_streak"] >= 10
        assert paused["left"].total_seconds() > 200  # at the five-minute ceiling

        front.down = False
        conn.execute("update private.ses_accounts set paused_until = now() - interval '1 second'")
        conn.execute(
            "update public.campaign_recipients set next_attempt_at = now() where campaign_id = %s",
            (campaign,),
        )
        resumed = send_due_emails(db, down, POLICY, budget_seconds=60)

    assert resumed.sent == 20 and resumed.finished_campaigns == 1
    assert ledger(conn, campaign) == {
        "sent": 20,
        "queued": 0,
        "failed": 0,
        "attempts": 1,
        "campaign": "sent",
    }
    assert breaker(conn)["error_streak"] == 0
    each_delivered_once(moto, 20)


def complain(url: str, campaign: uuid.UUID, email: str) -> None:
    """SES's complaint for an earlier message, through the webhook's store and apply, on its own
    connection (a webhook request beside the worker)."""
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as hook:
        row = one(
            hook,
            "select id, ses_message_id from public.campaign_recipients"
            " where campaign_id = %s and email = %s",
            (campaign, email),
        )
        message = {
            "eventType": "Complaint",
            "mail": {
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "messageId": row["ses_message_id"],
                "destination": [email],
                "tags": {"recipient_id": [str(row["id"])]},
            },
            "complaint": {"complainedRecipients": [{"emailAddress": email}]},
        }
        notification = {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "Message": json.dumps(message),
        }
        stored = one(
            hook,
            "select id from private.record_webhook_event('ses', %s, %s)",
            (notification["MessageId"], json.dumps(notification)),
        )
        hook.execute("select private.apply_ses_event(%s)", (stored["id"],))


class ComplainedAboutSes(SesClient):
    """At its tenth send, a complaint about an earlier campaign of the workspace arrives."""

    def __init__(self, endpoint: str, url: str, earlier: uuid.UUID, email: str) -> None:
        super().__init__(**moto_client_settings(endpoint))
        self.url = url
        self.earlier = earlier
        self.email = email
        self.sends = 0
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
            self.sends += 1
            if self.sends == 10:
                complain(self.url, self.earlier, self.email)
        return super().send_raw(raw, sender, recipient, tags, tenant)


def test_a_complaint_arriving_while_the_campaign_sends_pauses_it_and_nothing_goes_twice(
    conn: Conn, database_url: str, moto: str
) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    conn.execute(
        "insert into public.deliverability_settings (workspace_id, min_volume) values (%s, 100)",
        (owner.workspace_id,),
    )
    earlier = list_campaign(conn, owner, add_contacts(conn, owner, 150, prefix="earlier"))
    start(conn, owner, earlier)
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(),"
        " ses_message_id = gen_random_uuid()::text where campaign_id = %s",
        (earlier,),
    )
    live = another_campaign(conn, owner, 200, "live")
    # A second's sends a claim: the pause finds most of the audience still unclaimed.
    slow = SendPolicy(
        link_secret=POLICY.link_secret,
        link_days=30,
        max_per_second=60,
        concurrency=4,
        base_url=EDGE,
    )

    with opened(pool(database_url)) as db:
        ses = ComplainedAboutSes(moto, database_url, earlier, "earlier-7@mail.example.org")
        ses.create_identity(SENDER_DOMAIN, adopt_existing=True)
        during = send_due_emails(db, ses, slow, budget_seconds=30)

        pause = one(
            conn,
            "select id, reason, detail from public.sending_pauses where workspace_id = %s",
            (owner.workspace_id,),
        )
        assert pause["reason"] == "complaint_rate"
        state = ledger(conn, live)
        # What was claimed before the pause went out and was recorded; the rest waits unclaimed,
        # at no cost; the campaign is paused with the reason, not sent.
        assert 10 <= state["sent"] < 200 and state["sent"] == during.sent
        assert state["queued"] == 200 - state["sent"] and state["failed"] == 0
        assert state["campaign"] == "paused"
        assert one(conn, "select error from public.campaigns where id = %s", (live,)) == {
            "error": pause["detail"]
        }
        # Nothing is claimed while the pause holds.
        assert send_due_emails(db, ses, slow, budget_seconds=0.5).sent == 0
        # The owner and the admin are emailed (the send cron's next step), from the platform.
        assert send_pause_emails(db, ses, f"notices@{SENDER_DOMAIN}") == 2
        notices = httpx.get(f"{moto}/moto-api/data.json", timeout=30).json()["ses"]["Message"]
        assert sorted(json.dumps(m["destinations"]) for m in notices) == sorted(
            json.dumps({"ToAddresses": [user.email]}) for user in (owner, admin)
        ), notices
        assert all("complaint rate" in m["subject"] for m in notices), notices

        with acting_as(conn, admin):
            conn.execute(
                "select public.acknowledge_sending_pause(%s, p_accept_over_limit => true)",
                (pause["id"],),
            )
        fast = send_due_emails(db, ses, POLICY, budget_seconds=60)

    # Both campaigns it paused finish now (the earlier one had all its rows sent).
    assert during.sent + fast.sent == 200 and fast.finished_campaigns == 2
    assert ledger(conn, live) == {
        "sent": 200,
        "queued": 0,
        "failed": 0,
        "attempts": 1,
        "campaign": "sent",
    }
    each_delivered_once(moto, 200)
