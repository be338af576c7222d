"""Where the SES account has tenants, each workspace sends as its own tenant (created once, its
sender identity associated, `TenantName` on every send) and SES's status of the tenant shows
beside ours; where it has none (moto's SES), mail goes as before and the workspace is told."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from api.core.db import Database
from api.email.sender import SendPolicy, send_due_emails
from api.email.ses import SesClient
from tests.factories.email import (
    add_contacts,
    draft_campaign,
    email_list,
    list_campaign,
    start,
    verified_sender,
)
from tests.factories.workspaces import User, acting_as, create_user
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
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")
    conn.execute("delete from private.ses_accounts")
    conn.execute("delete from private.ses_tenancy")
    conn.execute("delete from private.ses_tenants")
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
