"""An erased person comes back only by opting in anew: nothing else can bring their address
back, a member's readmission lifts only that address's hash, and their sign-up is a grant only
once they confirm."""

import uuid

import psycopg
from psycopg.rows import DictRow

from tests.factories.workspaces import acting_as, add_member, create_user, one, refused

Conn = psycopg.Connection[DictRow]


def test_an_erased_person_comes_back_only_by_opting_in_anew_and_confirming(conn: Conn) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    email = f"back-{uuid.uuid4().hex[:8]}@example.test"
    with acting_as(conn, owner):
        erased = one(
            conn,
            "insert into public.contacts (workspace_id, email, phone) values (%s, %s,"
            " '+420777000111') returning id",
            (owner.workspace_id, email),
        )["id"]
        conn.execute("select public.erase_contact(%s)", (erased,))
        # Nothing else brings them back: the insert is skipped.
        again = conn.execute(
            "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
            (owner.workspace_id, email),
        ).fetchall()
    assert again == []

    with acting_as(conn, member):
        back = one(
            conn,
            "select * from public.readmit_contact(%s, %s, 'form', 'Send me news', 'v2')",
            (owner.workspace_id, email.upper()),
        )
    assert back["id"] != erased and back["email"] == email
    assert back["consent_state"] != "granted"
    history = conn.execute(
        "select status, source, wording_version, recorded_by from public.consents"
        " where contact_id = %s",
        (back["id"],),
    ).fetchall()
    assert history == [
        {"status": "pending", "source": "form", "wording_version": "v2", "recorded_by": member.id}
    ]
    # The tombstone stays erased, and the phone stays blocked.
    assert one(
        conn,
        "select email, erased_at is not null as erased from public.contacts where id = %s",
        (erased,),
    ) == {"email": None, "erased": True}
    with acting_as(conn, owner):
        blocked = conn.execute(
            "insert into public.contacts (workspace_id, phone) values (%s, '+420777000111')"
            " returning id",
            (owner.workspace_id,),
        ).fetchall()
    assert blocked == []
    conn.execute(
        "select private.answer_consent(%s, %s, 'email_marketing', 'granted',"
        " 'confirmation_link', '203.0.113.9', 'Mozilla/5.0')",
        (owner.workspace_id, back["id"]),
    )
    assert one(conn, "select consent_state from public.contacts where id = %s", (back["id"],)) == {
        "consent_state": "granted"
    }
    audit = one(
        conn,
        "select actor_id, details from public.audit_log where action = 'contact.readmitted'"
        " and target_id = %s",
        (str(back["id"]),),
    )
    assert audit == {"actor_id": member.id, "details": {"source": "form"}}


def test_readmission_is_refused_to_viewers_outsiders_and_for_addresses_never_erased(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    stranger = create_user(conn)
    email = f"never-{uuid.uuid4().hex[:8]}@example.test"
    call = "select public.readmit_contact(%s, %s, %s)"
    with refused(403, "insufficient_role"), acting_as(conn, viewer):
        conn.execute(call, (owner.workspace_id, email, "form"))
    with refused(404, "workspace_not_found"), acting_as(conn, stranger):
        conn.execute(call, (owner.workspace_id, email, "form"))
    with refused(409, "not_erased"), acting_as(conn, owner):
        conn.execute(call, (owner.workspace_id, email, "form"))
    with refused(422, "invalid_email"), acting_as(conn, owner):
        conn.execute(call, (owner.workspace_id, "not an address", "form"))
    with refused(422, "invalid_source"), acting_as(conn, owner):
        conn.execute(call, (owner.workspace_id, email, "import"))
