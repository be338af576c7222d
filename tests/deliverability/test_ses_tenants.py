"""Where the SES account has tenants, each workspace sends as its own tenant (created once, its
sender identity associated, `TenantName` on every send, inbox replies too) and SES's status of
the tenant shows beside ours; where it has none (moto's SES), mail goes as before and the
workspace is told. A tenant SES lost is made again at once, an account that lost the tenant API
sends without tenants at once, a deleted workspace's tenant is deleted in SES, and the
platform's own notices go under the account."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from api.core.db import Database
from api.email.notices import send_pause_emails
from api.email.sender import SendPolicy, send_due_emails
from api.email.ses import SesClient
from api.email.tenants import TenantMail
from api.inbox.email.mailer import Mailer
from api.inbox.outbox import Providers, send_email
from api.inbox.telegram.client import TelegramClient
from api.inbox.whatsapp.client import WhatsAppClient
from api.inbox.x.client import XClient
from tests.factories.email import (
    add_contacts,
    draft_campaign,
    email_list,
    list_campaign,
    send_alone,
    start,
    verified_sender,
)
from tests.factories.workspaces import User, acting_as, create_user, one
from tests.fakes.ses_server import REGION, moto_ses, reset
from tests.fakes.ses_tenants import SesTenants, ses_with_tenants

Conn = psycopg.Connection[Any]
OTHER_DOMAIN = "letters.shop-b.example"
POLICY = SendPolicy(
    link_secret="tenants-" + uuid.uuid4().hex,
    link_days=30,
    max_per_second=1000,
    concurrency=4,
    base_url="https://edge.example.test",
)


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    with moto_ses() as endpoint:
        yield endpoint


@pytest.fixture
def db(conn: Conn, database_url: str, moto: str) -> Iterator[Database]:
    send_alone(conn)
    conn.execute("delete from private.ses_tenancy")
    conn.execute("delete from private.ses_tenants")
    conn.execute("delete from private.ses_tenant_deletions")
    reset(moto)
    database = Database(database_url, pool_mode="session", max_size=4, timeout_seconds=10)
    database.open()
    yield database
    database.close()
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")
    # Later tests send to moto, which has no tenants: they must find the question open.
    conn.execute("delete from private.ses_tenancy")
    conn.execute("delete from private.ses_tenants")


def ses(endpoint: str) -> SesClient:
    client = SesClient(
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        endpoint_url=endpoint,
        configuration_set=None,
        max_connections=4,
    )
    return client


def campaign(conn: Conn, owner: User, identity: str, recipients: int) -> uuid.UUID:
    """A started campaign to new contacts, from the workspace's verified `identity`."""
    contacts = add_contacts(conn, owner, recipients, prefix=uuid.uuid4().hex[:8])
    sender = conn.execute(
        "select id from public.sender_identities where identity = %s and workspace_id = %s",
        (identity, owner.workspace_id),
    ).fetchone()
    found = draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, contacts, name=uuid.uuid4().hex)],
        sender_id=sender["id"] if sender else verified_sender(conn, owner, identity),
        from_email=f"hello@{identity}",
    )
    start(conn, owner, found)
    return found


def tenant_view(conn: Conn, user: User) -> list[dict[str, Any]]:
    with acting_as(conn, user):
        return [dict(row) for row in conn.execute("select * from analytics.ses_tenants")]


def test_without_tenants_mail_goes_as_the_account_and_the_workspace_is_told(
    conn: Conn, db: Database, moto: str
) -> None:
    owner, outsider = create_user(conn), create_user(conn)
    start(conn, owner, list_campaign(conn, owner, add_contacts(conn, owner, 3)))
    client = ses(moto)
    client.create_identity("news.example.com", adopt_existing=True)

    report = send_due_emails(db, client, POLICY, budget_seconds=30)

    assert report.sent == 3
    [row] = tenant_view(conn, owner)
    assert row["tenants_supported"] is False and row["tenant_name"] is None
    assert "no tenants" in row["detail"] and "shared reputation" in row["detail"]
    # Another workspace's member sees only their own workspace.
    assert [seen["workspace_id"] for seen in tenant_view(conn, outsider)] == [outsider.workspace_id]


def test_each_workspace_sends_as_its_own_tenant_created_once_with_ses_status_beside_ours(
    conn: Conn, db: Database, moto: str
) -> None:
    shop_a, shop_b = create_user(conn), create_user(conn)
    campaign(conn, shop_a, "news.example.com", 3)
    campaign(conn, shop_b, OTHER_DOMAIN, 2)
    account = SesTenants()
    with ses_with_tenants(moto, account) as endpoint:
        client = ses(endpoint)
        client.create_identity("news.example.com", adopt_existing=True)
        client.create_identity(OTHER_DOMAIN, adopt_existing=True)
        first = send_due_emails(db, client, POLICY, budget_seconds=30)
        # Our record of the tenants lost: SES's AlreadyExists answers are taken as done.
        conn.execute(
            "delete from private.ses_tenants where workspace_id = %s", (shop_b.workspace_id,)
        )
        campaign(conn, shop_a, "news.example.com", 2)
        campaign(conn, shop_b, OTHER_DOMAIN, 1)
        second = send_due_emails(db, client, POLICY, budget_seconds=30)

    assert (first.sent, second.sent) == (5, 3)
    name_a, name_b = (f"growthbase-{user.workspace_id}" for user in (shop_a, shop_b))
    # Every send named its workspace's tenant.
    assert sorted(account.sends) == sorted(
        [(name_a, "hello@news.example.com")] * 5 + [(name_b, f"hello@{OTHER_DOMAIN}")] * 3
    )
    assert set(account.tenants) == {name_a, name_b}
    assert account.calls["/v2/email/tenants"] == 3  # a, b, and b again (AlreadyExists)
    assert account.tenants[name_a]["SuppressionAttributes"] == {
        "SuppressedReasons": ["BOUNCE", "COMPLAINT"],
        "SuppressionScope": "TENANT",
    }
    assert account.resources[name_b] == {
        f"arn:aws:ses:{REGION}:123456789012:identity/{OTHER_DOMAIN}"
    }

    [row] = tenant_view(conn, shop_a)
    assert (row["tenants_supported"], row["tenant_name"], row["ses_sending_status"]) == (
        True,
        name_a,
        "ENABLED",
    )
    assert row["detail"] == f"Sends as SES tenant {name_a}; SES reports its sending enabled"


def test_ses_status_of_a_tenant_is_read_again_and_a_tenant_gone_from_ses_is_made_anew(
    conn: Conn, db: Database, moto: str
) -> None:
    owner = create_user(conn)
    campaign(conn, owner, "news.example.com", 1)
    name = f"growthbase-{owner.workspace_id}"
    account = SesTenants()
    with ses_with_tenants(moto, account) as endpoint:
        client = ses(endpoint)
        client.create_identity("news.example.com", adopt_existing=True)
        send_due_emails(db, client, POLICY, budget_seconds=30)
        account.tenants[name]["SendingStatus"] = "DISABLED"
        conn.execute("update private.ses_tenants set checked_at = now() - interval '1 hour'")
        send_due_emails(db, client, POLICY, budget_seconds=30)
        [disabled] = tenant_view(conn, owner)
        # SES lost the tenant: the next status read forgets it, the next send makes it again.
        del account.tenants[name]
        conn.execute("update private.ses_tenants set checked_at = now() - interval '1 hour'")
        campaign(conn, owner, "news.example.com", 1)
        report = send_due_emails(db, client, POLICY, budget_seconds=30)

    assert disabled["ses_sending_status"] == "DISABLED"
    assert disabled["detail"].endswith("SES reports its sending disabled")
    assert report.sent == 1 and account.sends[-1] == (name, "hello@news.example.com")
    assert account.tenants[name]["SendingStatus"] == "ENABLED"


def test_a_tenant_ses_lost_is_made_again_in_the_same_run_and_its_row_costs_nothing(
    conn: Conn, db: Database, moto: str
) -> None:
    owner = create_user(conn)
    campaign(conn, owner, "news.example.com", 1)
    name = f"growthbase-{owner.workspace_id}"
    account = SesTenants()
    with ses_with_tenants(moto, account) as endpoint:
        client = ses(endpoint)
        client.create_identity("news.example.com", adopt_existing=True)
        send_due_emails(db, client, POLICY, budget_seconds=30)
        # SES loses the tenant while our record of it is fresh (no status read is due).
        del account.tenants[name]
        later = campaign(conn, owner, "news.example.com", 2)
        report = send_due_emails(db, client, POLICY, budget_seconds=30)

    # The refused sends gave their claims back (counted as retrying), the tenant was made
    # again, and both went out in the same run on their one counted attempt.
    assert (report.sent, report.failed) == (2, 0)
    assert account.sends[-2:] == [(name, "hello@news.example.com")] * 2
    assert account.calls["/v2/email/tenants"] == 2
    attempts = conn.execute(
        "select attempts from public.campaign_recipients where campaign_id = %s", (later,)
    ).fetchall()
    assert [row["attempts"] for row in attempts] == [1, 1]


def test_an_account_that_loses_the_tenant_api_mid_day_sends_without_tenants_at_once(
    conn: Conn, db: Database, moto: str
) -> None:
    first, second = create_user(conn), create_user(conn)
    campaign(conn, first, "news.example.com", 1)
    account = SesTenants()
    with ses_with_tenants(moto, account) as endpoint:
        client = ses(endpoint)
        client.create_identity("news.example.com", adopt_existing=True)
        client.create_identity(OTHER_DOMAIN, adopt_existing=True)
        send_due_emails(db, client, POLICY, budget_seconds=30)
        # Hours before the next daily ListTenants, the tenant operations answer 404.
        account.api_gone = True
        campaign(conn, second, OTHER_DOMAIN, 2)
        report = send_due_emails(db, client, POLICY, budget_seconds=30)

    assert (report.sent, report.retrying, report.failed) == (2, 0, 0)
    assert account.sends[-2:] == [(None, f"hello@{OTHER_DOMAIN}")] * 2
    [row] = tenant_view(conn, second)
    assert row["tenants_supported"] is False and "no tenants" in row["detail"]


def test_a_deleted_workspaces_tenant_is_deleted_in_ses(conn: Conn, db: Database, moto: str) -> None:
    leaving, staying = create_user(conn), create_user(conn)
    campaign(conn, leaving, "news.example.com", 1)
    campaign(conn, staying, OTHER_DOMAIN, 1)
    account = SesTenants()
    with ses_with_tenants(moto, account) as endpoint:
        client = ses(endpoint)
        client.create_identity("news.example.com", adopt_existing=True)
        client.create_identity(OTHER_DOMAIN, adopt_existing=True)
        send_due_emails(db, client, POLICY, budget_seconds=30)
        assert len(account.tenants) == 2
        # The workspace's rows go (its purge after 30 days, or its owner's account deleted).
        conn.execute("delete from public.workspaces where id = %s", (leaving.workspace_id,))
        send_due_emails(db, client, POLICY, budget_seconds=30)

    assert set(account.tenants) == {f"growthbase-{staying.workspace_id}"}
    assert account.calls["/v2/email/tenants/delete"] == 1
    assert one(conn, "select count(*) as n from private.ses_tenant_deletions")["n"] == 0


def test_inbox_replies_go_as_the_workspaces_tenant_and_platform_notices_under_the_account(
    conn: Conn, db: Database, moto: str
) -> None:
    owner = create_user(conn)
    verified_sender(conn, owner, "news.example.com")
    conn.execute("select private.save_ses_tenancy('default', true)")
    pause = one(
        conn,
        "insert into public.sending_pauses (workspace_id, reason, detail, metrics)"
        " values (%s, 'bounce_rate', 'Bounce rate over 5%%', '{}') returning id",
        (owner.workspace_id,),
    )
    conn.execute(
        "insert into private.deliverability_emails (pause_id, user_id, subject, body)"
        " values (%s, %s, 'Sending paused', 'Your bounce rate is over 5%%.')",
        (pause["id"], owner.id),
    )
    reply: dict[str, Any] = {
        "message_id": str(uuid.uuid4()),
        "workspace_id": str(owner.workspace_id),
        "conversation_id": str(uuid.uuid4()),
        "account_id": "support@news.example.com",
        "settings": {},
        "to": "reader@mail.example.org",
        "subject": "Your order",
        "text": "It left the warehouse today.",
        "last_inbound": None,
    }
    account = SesTenants()
    with ses_with_tenants(moto, account) as endpoint:
        client = ses(endpoint)
        client.create_identity("news.example.com", adopt_existing=True)
        mailer = Mailer(TenantMail(db, client, "default").send_raw)
        clients = ("https://unused.example.test", 5.0)
        providers = Providers(
            None, WhatsAppClient(*clients), TelegramClient(*clients), mailer, XClient(*clients)
        )
        send_email(providers, reply)
        notices = send_pause_emails(db, client, "notices@news.example.com")

    name = f"growthbase-{owner.workspace_id}"
    assert (name, "support@news.example.com") in account.sends
    assert account.resources[name] == {
        f"arn:aws:ses:{REGION}:123456789012:identity/news.example.com"
    }
    assert notices >= 1
    assert {tenant for tenant, sender in account.sends if sender.startswith("notices@")} == {None}
