"""Sender identities through the edge against moto's SES server (real boto3 over HTTP): what
SES is asked to create, what is stored, who may register or refresh, and how SES failures
reach the client."""

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest
from botocore.stub import Stubber
from fastapi.testclient import TestClient
from httpx2 import Response
from psycopg.rows import DictRow

from api.app import create_app
from api.core.settings import Settings
from api.email.deps import SES
from api.email.ses import IdentityState, SesClient, SesError, dkim_records
from tests.factories.edge import bearer, documented_codes, edge_settings
from tests.factories.email import add_contacts, draft_campaign, email_list, start, verified_sender
from tests.factories.workspaces import User, add_member, create_user
from tests.fakes.dns_server import shared_dns
from tests.fakes.jwks import JwksServer
from tests.fakes.ses_server import REGION, free_port, moto_ses

Conn = psycopg.Connection[DictRow]


@pytest.fixture(scope="module")
def ses_endpoint() -> Iterator[str]:
    with moto_ses() as endpoint:
        yield endpoint


def ses_settings(database_url: str, jwks: JwksServer, ses_endpoint: str | None) -> Settings:
    """The edge with SES at `ses_endpoint` (moto accepts any credentials), or without SES
    (explicitly, whatever a local .env says)."""
    return edge_settings(
        database_url,
        jwks,
        ses_region=REGION if ses_endpoint else None,
        ses_endpoint_url=ses_endpoint,
        ses_access_key_id="testing",
        ses_secret_access_key="testing",
    )


def edge(database_url: str, jwks: JwksServer, ses_endpoint: str | None) -> TestClient:
    return TestClient(create_app(ses_settings(database_url, jwks, ses_endpoint)))


@pytest.fixture
def client(database_url: str, jwks: JwksServer, ses_endpoint: str) -> Iterator[TestClient]:
    with edge(database_url, jwks, ses_endpoint) as test_client:
        yield test_client


def new_domain() -> str:
    """Identities are unique across workspaces and tests share one database."""
    return f"mail-{uuid.uuid4().hex[:10]}.example.com"


def register(
    client: TestClient, jwks: JwksServer, user: User, identity: str, workspace: uuid.UUID | None
) -> Response:
    return client.post(
        "/api/v1/email/identities",
        headers=bearer(jwks, user),
        json={"workspace_id": str(workspace or user.workspace_id), "identity": identity},
    )


def plain_ses(endpoint: str) -> Any:
    return boto3.client(
        "sesv2",
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def ses_identities(endpoint: str) -> set[str]:
    listed = plain_ses(endpoint).list_email_identities(PageSize=1000)["EmailIdentities"]
    return {identity["IdentityName"] for identity in listed}


def stored(conn: Conn, identity: str) -> dict[str, Any] | None:
    row = conn.execute(
        "select workspace_id, verified, dkim_records, last_checked_at is not null as checked"
        " from public.sender_identities where identity = %s",
        (identity,),
    ).fetchone()
    return dict(row) if row else None


def test_an_admin_registers_a_domain_in_ses_and_it_is_stored_verified(
    client: TestClient, jwks: JwksServer, conn: Conn, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    domain = new_domain()
    created = register(client, jwks, admin, f"  {domain.upper()} ", owner.workspace_id)
    assert created.status_code == 201, created.text
    data = created.json()["data"]
    assert (data["identity"], data["kind"], data["verified"]) == (domain, "domain", True)
    assert data["dkim_records"] == []  # moto issues no DKIM tokens
    assert domain in ses_identities(ses_endpoint)
    assert stored(conn, domain) == {
        "workspace_id": owner.workspace_id,
        "verified": True,
        "dkim_records": [],
        "checked": True,
    }


def test_an_identity_belongs_to_one_workspace_and_only_admins_register(
    client: TestClient, jwks: JwksServer, conn: Conn, ses_endpoint: str
) -> None:
    owner, other = create_user(conn), create_user(conn)
    member = add_member(conn, owner, "member")
    domain = new_domain()
    assert register(client, jwks, owner, domain, None).status_code == 201
    taken = register(client, jwks, other, domain, None)
    assert (taken.status_code, taken.json()["error"]["code"]) == (409, "identity_taken")
    unclaimed = new_domain()
    by_member = register(client, jwks, member, unclaimed, owner.workspace_id)
    assert (by_member.status_code, by_member.json()["error"]["code"]) == (403, "insufficient_role")
    assert unclaimed not in ses_identities(ses_endpoint)
    assert stored(conn, unclaimed) is None
    assert stored(conn, domain)["workspace_id"] == owner.workspace_id


def test_a_lapsed_identity_a_live_campaign_still_sends_from_is_not_released(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    """Unverified for over 72 hours, another workspace's identity is released to whoever
    registers it, unless a campaign of its own is live on it: then 409 identity_in_use."""
    holder, newcomer = create_user(conn), create_user(conn)
    domain = new_domain()
    campaign = draft_campaign(
        conn,
        holder,
        list_ids=[email_list(conn, holder, add_contacts(conn, holder, 1))],
        sender_id=verified_sender(conn, holder, domain),
        from_email=f"hello@{domain}",
    )
    start(conn, holder, campaign)
    conn.execute(
        "update public.sender_identities set verified = false,"
        " created_at = now() - interval '4 days' where identity = %s",
        (domain,),
    )
    refused = register(client, jwks, newcomer, domain, None)
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "identity_in_use")
    assert "identity_in_use" in documented_codes(client, "register_identity", 409)
    assert stored(conn, domain)["workspace_id"] == holder.workspace_id


def test_invalid_requests_are_refused_before_ses(
    client: TestClient, jwks: JwksServer, conn: Conn, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    extra = client.post(
        "/api/v1/email/identities",
        headers=bearer(jwks, owner),
        json={"workspace_id": str(owner.workspace_id), "identity": new_domain(), "verified": True},
    )
    not_a_domain = register(client, jwks, owner, "not a domain", None)
    with_nul = register(client, jwks, owner, "evil\u0000.example.com", None)
    assert [extra.status_code, not_a_domain.status_code, with_nul.status_code] == [422, 422, 422]
    assert extra.json()["error"]["details"][0]["field"] == "body.verified"
    assert "not a domain" not in ses_identities(ses_endpoint)


def test_any_member_refreshes_from_ses_and_strangers_get_404(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    domain = new_domain()
    identity_id = register(client, jwks, owner, domain, None).json()["data"]["id"]
    conn.execute(
        "update public.sender_identities set verified = false, last_checked_at = null"
        " where id = %s",
        (identity_id,),
    )
    refreshed = client.post(
        f"/api/v1/email/identities/{identity_id}/refresh", headers=bearer(jwks, viewer)
    )
    assert refreshed.status_code == 200, refreshed.text
    assert refreshed.json()["data"]["verified"] is True
    assert stored(conn, domain)["checked"] is True
    by_stranger = client.post(
        f"/api/v1/email/identities/{identity_id}/refresh", headers=bearer(jwks, stranger)
    )
    assert (by_stranger.status_code, by_stranger.json()["error"]["code"]) == (
        404,
        "identity_not_found",
    )


def test_registering_and_refreshing_look_up_the_domains_dmarc_in_dns(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    domain = new_domain()
    zone = shared_dns().zone
    zone.txt[f"_dmarc.{domain}"] = ["v=DMARC1; p=reject; adkim=s; rua=mailto:agg@" + domain]
    created = register(client, jwks, owner, domain, None).json()["data"]
    assert {k: created["dmarc"][k] for k in ("status", "domain", "policy", "adkim")} == {
        "status": "found",
        "domain": domain,
        "policy": "reject",
        "adkim": "s",
    }
    del zone.txt[f"_dmarc.{domain}"]
    refreshed = client.post(
        f"/api/v1/email/identities/{created['id']}/refresh", headers=bearer(jwks, owner)
    ).json()["data"]
    assert (refreshed["dmarc"]["status"], refreshed["dmarc"]["policy"]) == ("missing", None)


def test_without_ses_configured_identities_answer_503(
    database_url: str, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    domain = new_domain()
    with edge(database_url, jwks, None) as unconfigured:
        created = register(unconfigured, jwks, owner, domain, None)
        refreshed = unconfigured.post(
            f"/api/v1/email/identities/{uuid.uuid4()}/refresh", headers=bearer(jwks, owner)
        )
    assert [created.status_code, refreshed.status_code] == [503, 503]
    assert created.json()["error"]["code"] == "provider_not_configured"
    assert stored(conn, domain) is None


def test_unreachable_ses_is_a_502_and_registering_again_recovers(
    client: TestClient, database_url: str, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    domain = new_domain()
    with edge(database_url, jwks, f"http://127.0.0.1:{free_port()}") as unreachable:
        failed = register(unreachable, jwks, owner, domain, None)
    assert failed.status_code == 502
    assert failed.json()["error"]["code"] == "provider_error"
    assert failed.json()["error"]["details"]["retryable"] is True
    assert stored(conn, domain)["verified"] is False
    again = register(client, jwks, owner, domain, None)
    assert (again.status_code, again.json()["data"]["verified"]) == (201, True)


class RefusingSes:
    """SES refusing the identity itself, which moto never does for a well-formed name."""

    def create_identity(self, identity: str, *, adopt_existing: bool) -> IdentityState:
        raise SesError("BadRequestException", f"{identity} is not allowed", retryable=False)


def test_ses_refusing_the_identity_is_a_422(
    database_url: str, jwks: JwksServer, conn: Conn, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    app = create_app(ses_settings(database_url, jwks, ses_endpoint))
    app.dependency_overrides[SES.required] = RefusingSes
    with TestClient(app) as refusing:
        refused = register(refusing, jwks, owner, new_domain(), None)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "identity_rejected"
    assert "is not allowed" in refused.json()["error"]["message"]


def test_dkim_records_are_the_cnames_easy_dkim_asks_for() -> None:
    tokens = ["abc123", "def456"]
    expected = [
        {"type": "CNAME", "name": f"{t}._domainkey.example.com", "value": f"{t}.dkim.amazonses.com"}
        for t in tokens
    ]
    assert dkim_records("example.com", tokens) == expected
    assert dkim_records("hello@example.com", tokens) == expected
    assert dkim_records("example.com", []) == []


def test_registering_an_address_creates_that_address_in_ses(
    client: TestClient, jwks: JwksServer, conn: Conn, ses_endpoint: str
) -> None:
    owner = create_user(conn)
    address = f"hello@{new_domain()}"
    created = register(client, jwks, owner, address, None)
    assert created.status_code == 201, created.text
    assert created.json()["data"]["kind"] == "email_address"
    assert address in ses_identities(ses_endpoint)
    assert address.split("@")[1] not in ses_identities(ses_endpoint)
    assert stored(conn, address)["verified"] is True


@pytest.mark.parametrize("adopt_existing", [False, True])
def test_an_identity_already_in_ses_is_recreated_unless_it_is_ours(adopt_existing: bool) -> None:
    """Real SES answers AlreadyExistsException (moto silently overwrites, so botocore's own
    Stubber plays SES here): an identity another workspace left behind is deleted and created
    afresh, with new DKIM tokens to publish, instead of passing on its verification."""
    client = SesClient(
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        endpoint_url="https://email.eu-central-1.amazonaws.com",
        configuration_set=None,
        max_connections=1,
    )
    domain = "left-behind.example.com"
    with Stubber(client.client) as ses:
        ses.add_client_error(
            "create_email_identity",
            service_error_code="AlreadyExistsException",
            http_status_code=400,
            expected_params={"EmailIdentity": domain},
        )
        if not adopt_existing:
            ses.add_response("delete_email_identity", {}, {"EmailIdentity": domain})
            ses.add_response(
                "create_email_identity",
                {"IdentityType": "DOMAIN", "VerifiedForSendingStatus": False},
                {"EmailIdentity": domain},
            )
        ses.add_response(
            "get_email_identity",
            {
                "IdentityType": "DOMAIN",
                "VerifiedForSendingStatus": adopt_existing,
                "DkimAttributes": {"Status": "PENDING", "Tokens": ["t1", "t2", "t3"]},
                "MailFromAttributes": {
                    "MailFromDomain": f"bounce.{domain}",
                    "MailFromDomainStatus": "PENDING",
                    "BehaviorOnMxFailure": "USE_DEFAULT_VALUE",
                },
            },
            {"EmailIdentity": domain},
        )

        state = client.create_identity(domain, adopt_existing=adopt_existing)

        ses.assert_no_pending_responses()
    assert state.verified is adopt_existing
    assert [record["name"] for record in state.dkim_records] == [
        f"t{n}._domainkey.{domain}" for n in (1, 2, 3)
    ]
    assert (state.mail_from_domain, state.mail_from_status) == (f"bounce.{domain}", "PENDING")
