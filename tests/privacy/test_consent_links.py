"""Consent links through the edge: members make them, contacts follow them without signing in;
the token is the only credential, and a forged, expired or misused one is refused."""

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from api.core.settings import Settings
from api.privacy import consent_links
from tests.factories.email import email_list
from tests.factories.workspaces import User, acting_as, add_member, create_user, fund, one
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]
SECRET = "consent-link-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        public_base_url="https://edge.example.test",
        email_link_secret=SecretStr(SECRET),
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def bearer(jwks: JwksServer, user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwks.sign(jwks.claims(user.id))}"}


def make_link(
    client: TestClient, jwks: JwksServer, user: User, contact: Any, body: dict[str, Any]
) -> Any:
    return client.post(
        f"/api/v1/privacy/contacts/{contact}/consent-links", headers=bearer(jwks, user), json=body
    )


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def signed_up(conn: Conn, owner: User) -> uuid.UUID:
    """A contact who signed up on a form and has not confirmed yet."""
    with acting_as(conn, owner):
        contact = one(
            conn,
            "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
            (owner.workspace_id, f"f-{uuid.uuid4().hex[:8]}@example.test"),
        )["id"]
        conn.execute(
            "select public.record_consent(%s, 'email_marketing', 'granted', 'form')", (contact,)
        )
    return uuid.UUID(str(contact))


def test_a_confirmation_link_turns_a_pending_sign_up_into_a_grant(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    contact = signed_up(conn, owner)
    made = make_link(
        client, jwks, member, contact, {"kind": "confirm", "purpose": "email_marketing"}
    )
    assert made.status_code == 201, made.text
    url = made.json()["data"]["url"]
    assert url.startswith("https://edge.example.test/api/v1/privacy/consents/confirm?token=")
    token = token_of(url)

    shown = client.get("/api/v1/privacy/consents/confirm", params={"token": token})
    assert shown.json()["data"] == {"purpose": "email_marketing", "status": "pending"}
    done = client.post(
        "/api/v1/privacy/consents/confirm",
        params={"token": token},
        headers={"User-Agent": "Mail/1.0"},
    )
    assert done.json()["data"] == {"purpose": "email_marketing", "status": "granted"}
    record = one(
        conn,
        "select source, user_agent from public.consents where contact_id = %s"
        " order by created_at desc limit 1",
        (contact,),
    )
    assert record == {"source": "confirmation_link", "user_agent": "Mail/1.0"}
    assert one(conn, "select consent_state from public.contacts where id = %s", (contact,)) == {
        "consent_state": "granted"
    }
    # Clicking again records nothing more.
    again = client.post("/api/v1/privacy/consents/confirm", params={"token": token})
    assert again.status_code == 200
    count = one(conn, "select count(*) as n from public.consents where contact_id = %s", (contact,))
    assert count == {"n": 2}


def test_bad_links_and_callers_are_refused(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    stranger = create_user(conn)
    contact = signed_up(conn, owner)
    confirm = {"kind": "confirm", "purpose": "email_marketing"}

    def code(answer: Any) -> tuple[int, str]:
        return answer.status_code, answer.json()["error"]["code"]

    assert code(make_link(client, jwks, viewer, contact, confirm)) == (403, "insufficient_role")
    assert code(make_link(client, jwks, stranger, contact, confirm)) == (404, "contact_not_found")
    assert code(make_link(client, jwks, owner, contact, {"kind": "confirm"})) == (
        422,
        "purpose_required",
    )
    good = token_of(make_link(client, jwks, owner, contact, confirm).json()["data"]["url"])
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    expired, _ = consent_links.issue(
        SECRET,
        workspace_id=owner.workspace_id,
        contact_id=contact,
        kind="confirm",
        purpose="email_marketing",
        now=time.time() - 8 * 86400,
    )
    other_secret, _ = consent_links.issue(
        "not-our-secret-but-as-long-as-a-real-one",
        workspace_id=owner.workspace_id,
        contact_id=contact,
        kind="confirm",
        purpose="email_marketing",
    )
    preferences = token_of(
        make_link(client, jwks, owner, contact, {"kind": "preferences"}).json()["data"]["url"]
    )
    post = "/api/v1/privacy/consents/confirm"
    assert code(client.post(post, params={"token": forged})) == (400, "link_invalid")
    assert code(client.post(post, params={"token": other_secret})) == (400, "link_invalid")
    assert code(client.post(post, params={"token": expired})) == (410, "link_expired")
    assert code(client.post(post, params={"token": preferences})) == (400, "link_invalid")
    assert code(client.post(post)) == (400, "link_invalid")
    assert one(conn, "select consent_state from public.contacts where id = %s", (contact,)) == {
        "consent_state": "unknown"
    }
    # An erased contact's links stop working.
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact,))
    assert code(client.post(post, params={"token": good})) == (404, "contact_not_found")
    assert code(make_link(client, jwks, owner, contact, confirm)) == (409, "contact_erased")


def test_the_preference_page_lists_and_saves_answers_and_lists(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    with acting_as(conn, owner):
        contact = one(
            conn,
            "insert into public.contacts (workspace_id, email, consent_state) values (%s, %s,"
            " 'granted') returning id",
            (owner.workspace_id, f"p-{uuid.uuid4().hex[:8]}@example.test"),
        )["id"]
    news = email_list(conn, owner, [contact], "News")
    offers = email_list(conn, owner, [], "Offers")
    stranger = create_user(conn)
    foreign = email_list(conn, stranger, [], "Theirs")
    token = token_of(
        make_link(client, jwks, owner, contact, {"kind": "preferences"}).json()["data"]["url"]
    )

    page = client.get("/api/v1/privacy/preferences", params={"token": token}).json()["data"]
    assert page["purposes"][0] == {"purpose": "email_marketing", "status": "granted"}
    assert [(item["name"], item["member"]) for item in page["lists"]] == [
        ("News", True),
        ("Offers", False),
    ]
    saved = client.post(
        "/api/v1/privacy/preferences",
        params={"token": token},
        json={
            "purposes": {"email_marketing": "withdrawn", "profiling": "granted"},
            "lists": {str(news): False, str(offers): True},
        },
    )
    assert saved.status_code == 200, saved.text
    state = saved.json()["data"]
    assert {p["purpose"]: p["status"] for p in state["purposes"]} == {
        "email_marketing": "withdrawn",
        "sms_marketing": "none",
        "whatsapp": "none",
        "telegram": "none",
        "x": "none",
        "profiling": "granted",
    }
    assert [(item["name"], item["member"]) for item in state["lists"]] == [
        ("News", False),
        ("Offers", True),
    ]
    assert one(conn, "select consent_state from public.contacts where id = %s", (contact,)) == {
        "consent_state": "withdrawn"
    }
    refused = client.post(
        "/api/v1/privacy/preferences",
        params={"token": token},
        json={"lists": {str(foreign): True}},
    )
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_preferences")
    not_ours = client.post(
        "/api/v1/privacy/preferences",
        params={"token": token},
        json={"purposes": {"fax": "granted"}},
    )
    assert not_ours.status_code == 422


def test_without_a_link_secret_links_are_unavailable(database_url: str, jwks: JwksServer) -> None:
    settings = Settings(database_url=SecretStr(database_url), supabase_url=jwks.base_url)
    with TestClient(create_app(settings)) as bare:
        answer = bare.get("/api/v1/privacy/preferences", params={"token": "x"})
    assert (answer.status_code, answer.json()["error"]["code"]) == (503, "provider_not_configured")
