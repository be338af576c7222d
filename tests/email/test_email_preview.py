"""Email previews through the edge: merge fields as a contact will see them, HTML escaping only
where it belongs, missing fields named, and nothing from another workspace."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.app import create_app
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import User, acting_as, add_member, create_user, one
from tests.fakes.jwks import JwksServer

Conn = psycopg.Connection[DictRow]
SCRIPT = "<script>alert(1)</script>"
PLACEHOLDER_LINK = "/api/v1/unsubscribe?token=preview"


@pytest.fixture
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = edge_settings(database_url, jwks)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def add_contact(
    conn: Conn,
    user: User,
    first_name: str | None = None,
    attributes: dict[str, Any] | None = None,
) -> uuid.UUID:
    row = one(
        conn,
        "insert into public.contacts (workspace_id, email, first_name, attributes)"
        " values (%s, %s, %s, %s) returning id",
        (
            user.workspace_id,
            f"c-{uuid.uuid4().hex[:10]}@mail.example.org",
            first_name,
            Jsonb(attributes or {}),
        ),
    )
    return uuid.UUID(str(row["id"]))


def add_template(conn: Conn, user: User, subject: str, html: str, text: str | None) -> uuid.UUID:
    with acting_as(conn, user):
        row = one(
            conn,
            "insert into public.email_templates (workspace_id, name, subject, html, text)"
            " values (%s, 'Welcome', %s, %s, %s) returning id",
            (user.workspace_id, subject, html, text),
        )
    return uuid.UUID(str(row["id"]))


def preview(client: TestClient, jwks: JwksServer, user: User, **body: Any) -> Response:
    return client.post(
        "/api/v1/email/preview",
        headers=bearer(jwks, user),
        json={
            key: str(value) if isinstance(value, uuid.UUID) else value
            for key, value in body.items()
        },
    )


def error_code(response: Response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def test_merge_fields_are_escaped_in_html_but_not_in_subject_or_text(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    contact = add_contact(conn, owner, first_name=SCRIPT)
    answer = preview(
        client,
        jwks,
        owner,
        contact_id=contact,
        subject="Hi {{ first_name }}",
        html="<p>Hi {{ first_name }}</p>",
        text="Hi {{ first_name }}",
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["subject"] == f"Hi {SCRIPT}"
    assert data["html"].startswith("<p>Hi &lt;script&gt;alert(1)&lt;/script&gt;</p>")
    assert SCRIPT not in data["html"]
    assert data["text"].startswith(f"Hi {SCRIPT}")
    # A template without {{ unsubscribe_url }} still shows the unsubscribe link.
    assert PLACEHOLDER_LINK in data["html"]
    assert PLACEHOLDER_LINK in data["text"]


def test_a_saved_template_uses_defaults_and_attributes(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    template = add_template(
        conn,
        owner,
        "{{ first_name | default('there') }}, your {{ attributes.city }} offer",
        '<p>{{ attributes.discount }} off</p><a href="{{ unsubscribe_url }}">Leave</a>',
        None,
    )
    nameless = add_contact(conn, owner, attributes={"city": "Brno", "discount": "20%"})
    named = add_contact(conn, owner, "Jana", {"city": "Praha", "discount": "10%"})

    for_nameless = preview(client, jwks, owner, contact_id=nameless, template_id=template)
    for_named = preview(client, jwks, owner, contact_id=named, template_id=template)

    assert for_nameless.json()["data"]["subject"] == "there, your Brno offer"
    assert for_named.json()["data"]["subject"] == "Jana, your Praha offer"
    html = for_named.json()["data"]["html"]
    assert html.startswith("<p>10% off</p><a href=")
    assert html.count("Leave") == 1 and "Unsubscribe" not in html
    assert for_named.json()["data"]["text"] is None


def test_a_missing_merge_field_is_a_422_naming_it(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    contact = add_contact(conn, owner, attributes={"city": "Brno"})
    no_name = preview(
        client, jwks, owner, contact_id=contact, subject="Hi {{ first_name }}", html="<p>Hi</p>"
    )
    no_tier = preview(
        client,
        jwks,
        owner,
        contact_id=contact,
        subject="Hi",
        html="<p>{{ attributes.loyalty_tier }}</p>",
    )
    assert error_code(no_name) == (422, "merge_field_missing")
    assert "first_name" in no_name.json()["error"]["message"]
    assert error_code(no_tier) == (422, "merge_field_missing")
    assert "loyalty_tier" in no_tier.json()["error"]["message"]


def test_contacts_and_templates_of_another_workspace_are_not_found(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    # A member of the owner's workspace also has a personal workspace of their own.
    member = add_member(conn, owner, "member")
    own_template = add_template(conn, owner, "Hello", "<p>Hello</p>", None)
    own_contact = add_contact(conn, owner, "Jana")
    strangers_template = add_template(conn, stranger, "Hello", "<p>Hello</p>", None)
    strangers_contact = add_contact(conn, stranger, "Petr")
    members_template = add_template(conn, member, "Hello", "<p>Hello</p>", None)

    their_contact = preview(
        client, jwks, owner, contact_id=strangers_contact, template_id=own_template
    )
    their_template = preview(
        client, jwks, owner, contact_id=own_contact, template_id=strangers_template
    )
    across_own_workspaces = preview(
        client, jwks, member, contact_id=own_contact, template_id=members_template
    )
    allowed = preview(client, jwks, member, contact_id=own_contact, template_id=own_template)

    assert error_code(their_contact) == (404, "contact_not_found")
    assert error_code(their_template) == (404, "template_not_found")
    assert error_code(across_own_workspaces) == (404, "template_not_found")
    assert allowed.status_code == 200


def test_a_preview_takes_a_template_or_content_but_not_both(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    contact = add_contact(conn, owner, "Jana")
    template = add_template(conn, owner, "Hello", "<p>Hello</p>", None)
    both = preview(
        client, jwks, owner, contact_id=contact, template_id=template, subject="Hi", html="<p/>"
    )
    neither = preview(client, jwks, owner, contact_id=contact)
    subject_only = preview(client, jwks, owner, contact_id=contact, subject="Hi")
    extra = preview(client, jwks, owner, contact_id=contact, template_id=template, name="x")
    assert [error_code(r) for r in (both, neither, subject_only, extra)] == [
        (422, "invalid_input")
    ] * 4


@pytest.mark.parametrize(
    "html",
    [
        "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        "{{ ('x' * 1000000) | replace('x', 'xxxxxxxxxx') | replace('x', 'xxxxxxxxxx') }}",
        "{% set page %}{% for i in range(1000) %}{{ 'x' * 1000000 }}{% endfor %}{% endset %}",
        "{% set ns = namespace(a=[1]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}"
        "{% endfor %}{{ ns.a | string }}",
    ],
)
def test_a_template_over_the_render_budget_is_a_422(
    client: TestClient, jwks: JwksServer, conn: Conn, html: str
) -> None:
    owner = create_user(conn)
    contact = add_contact(conn, owner, "Jana")
    answer = preview(client, jwks, owner, contact_id=contact, subject="Hi", html=html)
    assert error_code(answer) == (422, "template_over_budget")


def test_a_template_too_long_to_compile_quickly_is_a_422_for_content_and_saved_templates(
    client: TestClient, jwks: JwksServer, conn: Conn
) -> None:
    owner = create_user(conn)
    contact = add_contact(conn, owner, "Jana")
    too_long = "{{ first_name }}" * 30_000
    edited = preview(client, jwks, owner, contact_id=contact, subject="Hi", html=too_long)
    # Within the characters a table allows, but more tags than the edge compiles.
    too_many_tags = "{{a}}" * 13_000
    template = add_template(conn, owner, "Hi", too_many_tags, None)
    saved = preview(client, jwks, owner, contact_id=contact, template_id=template)
    assert error_code(edited) == error_code(saved) == (422, "template_too_large")


def test_a_template_longer_than_the_edge_compiles_is_refused_when_saved(conn: Conn) -> None:
    owner = create_user(conn)
    with pytest.raises(psycopg.errors.CheckViolation):
        add_template(conn, owner, "Hi", "x" * 65_537, None)
    assert add_template(conn, owner, "Hi", "x" * 65_536, None)
