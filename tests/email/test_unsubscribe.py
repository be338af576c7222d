"""Unsubscribe links through the edge: one-click POSTs (RFC 8058) and the confirmation page
unsubscribe, GET never does, and forged, foreign or expired links change nobody."""

import base64
import html
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urljoin

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from psycopg.rows import DictRow, dict_row
from pydantic import SecretStr

from api.app import create_app
from api.core.db import become_service
from api.core.settings import Settings
from api.email import unsubscribe_tokens
from tests.factories.email import add_contacts, draft_campaign, email_list, start, verified_sender
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    one,
    refused,
    wait_until_blocked,
)
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]
LINK_SECRET = "test-link-secret-" + uuid.uuid4().hex
UNSUBSCRIBE = "/api/v1/unsubscribe"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
DAY = 86400


def edge(database_url: str, jwks: JwksServer, link_secret: str | None) -> TestClient:
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        email_link_secret=SecretStr(link_secret) if link_secret else None,
    )
    return TestClient(create_app(settings))


@pytest.fixture
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    with edge(database_url, jwks, LINK_SECRET) as test_client:
        yield test_client


def link_token(
    user: User,
    contact_id: uuid.UUID,
    *,
    recipient_id: uuid.UUID | None = None,
    secret: str = LINK_SECRET,
    issued_at: float | None = None,
) -> str:
    return unsubscribe_tokens.issue(
        secret,
        workspace_id=user.workspace_id,
        contact_id=contact_id,
        recipient_id=recipient_id,
        valid_days=30,
        now=issued_at,
    )


def one_click(client: TestClient, token: str, accept: str = "*/*") -> Response:
    """What a mailbox provider sends for the List-Unsubscribe-Post header."""
    return client.post(
        UNSUBSCRIBE,
        params={"token": token},
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": accept},
    )


def unsubscribed_at(conn: Conn, contact_ids: list[uuid.UUID]) -> list[datetime | None]:
    rows = conn.execute(
        "select unsubscribed_at from public.contacts where id = any(%s) order by id",
        (contact_ids,),
    ).fetchall()
    return [row["unsubscribed_at"] for row in rows]


def error_code(response: Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def with_contact(token: str, contact_id: uuid.UUID) -> str:
    """The token with its contact id edited and the original signature kept."""
    header, payload, signature = token.split(".")
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    claims["sub"] = str(contact_id)
    edited = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{edited}.{signature}"


def test_one_click_unsubscribes_and_later_campaigns_leave_the_contact_out(
    client: TestClient, conn: Conn
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 3)
    sender = verified_sender(conn, owner)
    newsletter = email_list(conn, owner, readers)
    first = draft_campaign(conn, owner, list_ids=[newsletter], sender_id=sender)
    assert start(conn, owner, first) == 3
    recipient_id = one(
        conn,
        "select id from public.campaign_recipients where campaign_id = %s and contact_id = %s",
        (first, readers[0]),
    )["id"]

    answer = one_click(client, link_token(owner, readers[0], recipient_id=recipient_id))

    assert answer.status_code == 200
    assert answer.json() == {"data": {"outcome": "unsubscribed"}, "error": None}
    assert one(
        conn,
        "select unsubscribed_at is not null as done from public.campaign_recipients where id = %s",
        (recipient_id,),
    ) == {"done": True}
    second = draft_campaign(conn, owner, list_ids=[newsletter], sender_id=sender)
    assert start(conn, owner, second) == 2
    mailed = conn.execute(
        "select contact_id from public.campaign_recipients where campaign_id = %s", (second,)
    ).fetchall()
    assert {row["contact_id"] for row in mailed} == set(readers[1:])


def test_opening_the_link_only_asks_and_the_page_button_unsubscribes(
    client: TestClient, conn: Conn
) -> None:
    owner = create_user(conn)
    reader = add_contacts(conn, owner, 1)[0]
    token = link_token(owner, reader)

    page = client.get(UNSUBSCRIBE, params={"token": token}, headers={"Accept": BROWSER})
    fetched_twice = client.get(UNSUBSCRIBE, params={"token": token})

    assert [page.status_code, fetched_twice.status_code] == [200, 200]
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert unsubscribed_at(conn, [reader]) == [None]
    form = re.search(r'<form method="post" action="([^"]+)">', page.text)
    assert form is not None
    submitted = client.post(
        urljoin(UNSUBSCRIBE, html.unescape(form.group(1))),
        data={"List-Unsubscribe": "One-Click"},
        headers={"Accept": BROWSER},
    )
    assert submitted.status_code == 200
    assert "You are unsubscribed" in submitted.text
    assert unsubscribed_at(conn, [reader]) != [None]


def test_forged_and_foreign_links_change_nobody(client: TestClient, conn: Conn) -> None:
    owner, other = create_user(conn), create_user(conn)
    reader, bystander = add_contacts(conn, owner, 2)
    outsider = add_contacts(conn, other, 1)[0]
    genuine = link_token(owner, reader)

    edited = one_click(client, with_contact(genuine, bystander))
    other_secret = one_click(
        client, link_token(owner, reader, secret="a-secret-that-is-not-ours-" + uuid.uuid4().hex)
    )
    garbage = one_click(client, "not-a-token")
    missing = client.post(UNSUBSCRIBE, content=b"List-Unsubscribe=One-Click")
    # Signed by us, but naming a contact of a different workspace than the link's.
    foreign = one_click(client, link_token(other, reader))
    forged_page = client.get(
        UNSUBSCRIBE, params={"token": with_contact(genuine, bystander)}, headers={"Accept": BROWSER}
    )

    assert [error_code(r) for r in (edited, other_secret, garbage, missing)] == [
        (400, "link_invalid")
    ] * 4
    assert error_code(foreign) == (404, "contact_not_found")
    assert forged_page.status_code == 400
    assert "not valid" in forged_page.text
    assert "<form" not in forged_page.text
    assert unsubscribed_at(conn, [reader, bystander, outsider]) == [None, None, None]


def test_expired_links_are_refused_as_json_or_as_a_page(client: TestClient, conn: Conn) -> None:
    owner = create_user(conn)
    reader = add_contacts(conn, owner, 1)[0]
    expired = link_token(owner, reader, issued_at=time.time() - 31 * DAY)

    as_json = one_click(client, expired)
    as_page = one_click(client, expired, accept=BROWSER)

    assert error_code(as_json) == (410, "link_expired")
    assert as_page.status_code == 410
    assert as_page.headers["content-type"].startswith("text/html")
    assert "expired" in as_page.text
    assert unsubscribed_at(conn, [reader]) == [None]


def test_opening_a_bad_link_is_a_page_for_browsers_and_the_envelope_for_other_clients(
    client: TestClient, conn: Conn
) -> None:
    owner = create_user(conn)
    reader = add_contacts(conn, owner, 1)[0]
    expired = link_token(owner, reader, issued_at=time.time() - 31 * DAY)

    forged_json = client.get(UNSUBSCRIBE, params={"token": "not-a-token"})
    expired_json = client.get(UNSUBSCRIBE, params={"token": expired}, headers={"Accept": "*/*"})
    expired_page = client.get(UNSUBSCRIBE, params={"token": expired}, headers={"Accept": BROWSER})

    assert error_code(forged_json) == (400, "link_invalid")
    assert error_code(expired_json) == (410, "link_expired")
    assert expired_page.status_code == 410
    assert expired_page.headers["content-type"].startswith("text/html")
    assert "expired" in expired_page.text
    assert unsubscribed_at(conn, [reader]) == [None]


def test_unsubscribing_twice_is_harmless(client: TestClient, conn: Conn) -> None:
    owner = create_user(conn)
    reader = add_contacts(conn, owner, 1)[0]
    token = link_token(owner, reader)

    first = one_click(client, token)
    when = unsubscribed_at(conn, [reader])
    second = one_click(client, token)

    assert [first.status_code, second.status_code] == [200, 200]
    assert [first.json()["data"]["outcome"], second.json()["data"]["outcome"]] == [
        "unsubscribed",
        "already_unsubscribed",
    ]
    assert when != [None]
    assert unsubscribed_at(conn, [reader]) == when


def test_without_a_link_secret_unsubscribe_answers_503(
    database_url: str, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    reader = add_contacts(conn, owner, 1)[0]
    with edge(database_url, jwks, None) as unconfigured:
        answer = one_click(unconfigured, link_token(owner, reader))
        page = unconfigured.get(UNSUBSCRIBE, params={"token": link_token(owner, reader)})
    assert error_code(answer) == (503, "provider_not_configured")
    assert page.status_code == 503
    assert unsubscribed_at(conn, [reader]) == [None]


def test_an_unsubscribe_outlives_the_contact_being_deleted_and_imported_again(
    client: TestClient, conn: Conn
) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 2)
    assert one_click(client, link_token(owner, readers[0])).status_code == 200
    email = one(conn, "select email from public.contacts where id = %s", (readers[0],))["email"]
    conn.execute("delete from public.contacts where id = %s", (readers[0],))
    again = add_contacts(conn, owner, 1)  # reader-1 again, as a shop sync would bring it back
    assert (
        one(conn, "select email from public.contacts where id = %s", (again[0],))["email"] == email
    )

    campaign = draft_campaign(
        conn,
        owner,
        list_ids=[email_list(conn, owner, [again[0], readers[1]])],
        sender_id=verified_sender(conn, owner),
    )

    assert start(conn, owner, campaign) == 1
    assert one(
        conn,
        "select reason from public.email_suppressions where workspace_id = %s and email = %s",
        (owner.workspace_id, email),
    ) == {"reason": "unsubscribe"}


def suppression_reason(conn: Conn, user: User, email: str) -> str | None:
    row = conn.execute(
        "select reason from public.email_suppressions where workspace_id = %s and email = %s",
        (user.workspace_id, email),
    ).fetchone()
    return None if row is None else str(row["reason"])


def test_an_unsubscribe_outranks_a_manual_suppression_and_no_workspace_user_can_lift_it(
    client: TestClient, conn: Conn
) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    member = add_member(conn, owner, "member")
    reader = add_contacts(conn, owner, 1)[0]
    email = str(one(conn, "select email from public.contacts where id = %s", (reader,))["email"])
    with acting_as(conn, admin):
        conn.execute(
            "insert into public.email_suppressions (workspace_id, email, reason)"
            " values (%s, %s, 'manual')",
            (owner.workspace_id, email),
        )

    assert one_click(client, link_token(owner, reader)).status_code == 200

    assert suppression_reason(conn, owner, email) == "unsubscribe"
    with acting_as(conn, admin):
        lifted = conn.execute(
            "delete from public.email_suppressions where workspace_id = %s", (owner.workspace_id,)
        ).rowcount
    assert lifted == 0
    for user in (member, owner):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, user):
            conn.execute(
                "update public.contacts set unsubscribed_at = null where id = %s", (reader,)
            )
    assert unsubscribed_at(conn, [reader]) != [None]
    assert suppression_reason(conn, owner, email) == "unsubscribe"


def test_the_address_of_an_unsubscribed_contact_cannot_be_changed(
    client: TestClient, conn: Conn
) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    reader = add_contacts(conn, owner, 1)[0]
    assert one_click(client, link_token(owner, reader)).status_code == 200

    with acting_as(conn, member), refused(409, "contact_unsubscribed"):
        conn.execute(
            "update public.contacts set email = 'someone-else@mail.example.org' where id = %s",
            (reader,),
        )

    assert suppression_reason(conn, owner, "someone-else@mail.example.org") is None
    assert suppression_reason(conn, owner, "reader-1@mail.example.org") == "unsubscribe"


def test_members_cannot_mark_anyone_unsubscribed(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    reader = add_contacts(conn, owner, 1)[0]

    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, member):
        conn.execute(
            "insert into public.contacts (workspace_id, email, unsubscribed_at)"
            " values (%s, 'victim@mail.example.org', now())",
            (owner.workspace_id,),
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, member):
        conn.execute("update public.contacts set unsubscribed_at = now() where id = %s", (reader,))

    assert unsubscribed_at(conn, [reader]) == [None]
    assert suppression_reason(conn, owner, "victim@mail.example.org") is None
    assert suppression_reason(conn, owner, "reader-1@mail.example.org") is None


def test_an_unsubscribe_waiting_on_an_admins_uncommitted_manual_suppression_still_wins(
    conn: Conn, database_url: str
) -> None:
    owner = create_user(conn)
    admin = add_member(conn, owner, "admin")
    reader = add_contacts(conn, owner, 1)[0]
    email = "reader-1@mail.example.org"
    outcome: dict[str, Any] = {}
    with (
        psycopg.connect(database_url, row_factory=dict_row) as first,
        psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as second,
    ):
        with acting_as(first, admin):
            first.execute(
                "insert into public.email_suppressions (workspace_id, email, reason)"
                " values (%s, %s, 'manual')",
                (owner.workspace_id, email),
            )

            def unsubscribe() -> None:
                with second.transaction():
                    become_service(second)
                    outcome.update(
                        one(
                            second,
                            "select private.unsubscribe_contact(%s, %s, null) as outcome",
                            (owner.workspace_id, reader),
                        )
                    )

            racer = threading.Thread(target=unsubscribe)
            racer.start()
            wait_until_blocked(conn, second.info.backend_pid)
        racer.join()

    assert outcome == {"outcome": "unsubscribed"}
    assert suppression_reason(conn, owner, email) == "unsubscribe"
    with acting_as(conn, admin):
        lifted = conn.execute(
            "delete from public.email_suppressions where workspace_id = %s", (owner.workspace_id,)
        ).rowcount
    assert lifted == 0


def test_only_the_service_erases_an_unsubscribe_suppression(client: TestClient, conn: Conn) -> None:
    owner = create_user(conn)
    readers = add_contacts(conn, owner, 2)
    for reader in readers:
        assert one_click(client, link_token(owner, reader)).status_code == 200
    first, second = "reader-1@mail.example.org", "reader-2@mail.example.org"
    with acting_as(conn, owner):
        lifted = conn.execute(
            "delete from public.email_suppressions where workspace_id = %s", (owner.workspace_id,)
        ).rowcount
    assert lifted == 0

    with conn.transaction():
        become_service(conn)
        conn.execute(
            "delete from public.email_suppressions where workspace_id = %s and email = %s",
            (owner.workspace_id, first),
        )
        conn.execute(
            "update public.email_suppressions"
            " set email = 'erased-' || md5(email) || '@erased.invalid'"
            " where workspace_id = %s and email = %s",
            (owner.workspace_id, second),
        )

    remaining = conn.execute(
        "select email like 'erased-%%@erased.invalid' as anonymised, reason"
        " from public.email_suppressions where workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert remaining == [{"anonymised": True, "reason": "unsubscribe"}]
