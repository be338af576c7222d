"""Consent records: an append-only history whose latest record is the current state, written by
members, by the person through signed links, and by every path that sets a contact's consent;
campaigns mail only contacts with a grant where the workspace's rule requires one."""

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from tests.factories.email import list_campaign, start
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    fund,
    make_project,
    one,
    refused,
)

Conn = psycopg.Connection[DictRow]


def new_contact(
    conn: Conn, user: User, consent: str = "unknown", attributes: dict[str, Any] | None = None
) -> uuid.UUID:
    with acting_as(conn, user):
        row = one(
            conn,
            "insert into public.contacts (workspace_id, email, consent_state, attributes)"
            " values (%s, %s, %s, %s) returning id",
            (
                user.workspace_id,
                f"c-{uuid.uuid4().hex[:10]}@example.test",
                consent,
                Jsonb(attributes or {}),
            ),
        )
    return uuid.UUID(str(row["id"]))


def history(conn: Conn, contact_id: uuid.UUID) -> list[tuple[str, str, str]]:
    rows = conn.execute(
        "select purpose, status, source from public.consents where contact_id = %s"
        " order by created_at, id",
        (contact_id,),
    ).fetchall()
    return [(r["purpose"], r["status"], r["source"]) for r in rows]


def state(conn: Conn, contact_id: uuid.UUID) -> str:
    return str(
        one(conn, "select consent_state from public.contacts where id = %s", (contact_id,))[
            "consent_state"
        ]
    )


def test_members_record_consent_and_the_latest_record_is_the_state(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    member = add_member(conn, owner, "member")
    viewer = add_member(conn, owner, "viewer")
    stranger = create_user(conn)
    contact = new_contact(conn, owner)
    call = "select * from public.record_consent(%s, %s, %s, %s, %s, %s)"

    with acting_as(conn, member):
        conn.execute(call, (contact, "email_marketing", "granted", "admin", "Yes, news", "v3"))
    assert state(conn, contact) == "granted"
    with acting_as(conn, member):
        conn.execute(call, (contact, "profiling", "denied", "form", None, None))
        conn.execute(call, (contact, "email_marketing", "withdrawn", "api", None, None))
        current = conn.execute(
            "select purpose, status from public.contact_consents where contact_id = %s"
            " order by purpose",
            (contact,),
        ).fetchall()
    assert [(r["purpose"], r["status"]) for r in current] == [
        ("email_marketing", "withdrawn"),
        ("profiling", "denied"),
    ]
    assert state(conn, contact) == "withdrawn"
    assert history(conn, contact) == [
        ("email_marketing", "granted", "admin"),
        ("profiling", "denied", "form"),
        ("email_marketing", "withdrawn", "api"),
    ]
    wording = one(
        conn,
        "select wording, wording_version, recorded_by from public.consents"
        " where contact_id = %s and status = 'granted'",
        (contact,),
    )
    assert wording == {"wording": "Yes, news", "wording_version": "v3", "recorded_by": member.id}

    with refused(403, "insufficient_role"), acting_as(conn, viewer):
        conn.execute(call, (contact, "email_marketing", "granted", "admin", None, None))
    with refused(404, "contact_not_found"), acting_as(conn, stranger):
        conn.execute(call, (contact, "email_marketing", "granted", "admin", None, None))
    with refused(422, "invalid_purpose"), acting_as(conn, member):
        conn.execute(call, (contact, "carrier_pigeon", "granted", "admin", None, None))
    with refused(422, "invalid_source"), acting_as(conn, member):
        conn.execute(call, (contact, "email_marketing", "granted", "confirmation_link", None, None))
    with acting_as(conn, stranger):
        seen = conn.execute(
            "select count(*) as n from public.consents where contact_id = %s", (contact,)
        )
        assert seen.fetchone() == {"n": 0}


def test_the_history_is_never_changed_nor_deleted(conn: Conn) -> None:
    owner = create_user(conn)
    contact = new_contact(conn, owner, "granted")
    assert history(conn, contact) == [("email_marketing", "granted", "admin")]
    with refused(409, "consent_history_is_append_only"):
        conn.execute(
            "update public.consents set status = 'denied' where contact_id = %s", (contact,)
        )
    with refused(409, "consent_history_is_append_only"):
        conn.execute("delete from public.consents where contact_id = %s", (contact,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute("delete from public.consents where contact_id = %s", (contact,))
    # Deleting the contact takes its history with it.
    conn.execute("delete from public.contacts where id = %s", (contact,))
    assert history(conn, contact) == []


def test_a_form_sign_up_waits_for_confirmation_when_the_workspace_asks_for_double_opt_in(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    contact = new_contact(conn, owner)
    with acting_as(conn, owner):
        record = one(
            conn,
            "select * from public.record_consent(%s, 'email_marketing', 'granted', 'form',"
            " 'Send me news', null)",
            (contact,),
        )
    assert record["status"] == "pending" and state(conn, contact) == "unknown"

    confirmed = one(
        conn,
        "select * from private.answer_consent(%s, %s, 'email_marketing', 'granted',"
        " 'confirmation_link', '203.0.113.7', 'Mozilla/5.0')",
        (owner.workspace_id, contact),
    )
    assert (str(confirmed["ip"]), confirmed["user_agent"]) == ("203.0.113.7", "Mozilla/5.0")
    assert state(conn, contact) == "granted"

    # Without double opt-in the form's grant counts at once.
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.workspace_privacy_settings (workspace_id, double_opt_in)"
            " values (%s, false)",
            (owner.workspace_id,),
        )
    other = new_contact(conn, owner)
    with acting_as(conn, owner):
        conn.execute(
            "select public.record_consent(%s, 'email_marketing', 'granted', 'form')", (other,)
        )
    assert state(conn, other) == "granted"
    # A confirmation link with nothing waiting is refused.
    third = new_contact(conn, owner)
    with refused(409, "nothing_to_confirm"):
        conn.execute(
            "select private.answer_consent(%s, %s, 'email_marketing', 'granted',"
            " 'confirmation_link', null, null)",
            (owner.workspace_id, third),
        )


def test_shop_syncs_imports_and_unsubscribes_leave_records(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    project = make_project(conn, owner)
    contact = one(
        conn,
        "select private.upsert_shop_customer(%s, 'shopify', %s) as id",
        (
            project,
            Jsonb(
                {
                    "external_id": uuid.uuid4().hex,
                    "email": f"s-{uuid.uuid4().hex[:8]}@example.test",
                    "accepts_marketing": True,
                }
            ),
        ),
    )["id"]
    no_answer = one(
        conn,
        "select private.upsert_shop_customer(%s, 'shopify', %s) as id",
        (project, Jsonb({"email": f"n-{uuid.uuid4().hex[:8]}@example.test"})),
    )["id"]
    conn.execute("select private.unsubscribe_contact(%s, %s, null)", (owner.workspace_id, contact))
    assert history(conn, contact) == [
        ("email_marketing", "granted", "shop_checkout"),
        ("email_marketing", "withdrawn", "unsubscribe"),
    ]
    source = one(
        conn, "select source_detail from public.consents where contact_id = %s limit 1", (contact,)
    )
    assert source["source_detail"] == "shopify"
    # No answer from the shop invents no record.
    assert history(conn, no_answer) == []


@pytest.mark.parametrize(
    ("rule", "mailed"),
    [
        ("eu_only", {"granted CZ", "unknown US", "granted US"}),
        ("always", {"granted CZ", "granted US"}),
        ("never", {"granted CZ", "unknown US", "granted US", "unknown CZ", "unknown anywhere"}),
    ],
)
def test_marketing_goes_only_where_the_workspaces_rule_finds_a_grant(
    conn: Conn, rule: str, mailed: set[str]
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    people = {
        "granted CZ": ("granted", {"country": "CZ"}),
        "granted US": ("granted", {"Country": "us"}),
        "unknown US": ("unknown", {"country": "US", "timezone": "America/Chicago"}),
        "unknown CZ": ("unknown", {"timezone": "Europe/Prague"}),
        "unknown anywhere": ("unknown", {}),
        "withdrawn US": ("withdrawn", {"country": "US"}),
        "denied US": ("denied", {"country": "US"}),
    }
    ids = {
        name: new_contact(conn, owner, consent, attrs) for name, (consent, attrs) in people.items()
    }
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.workspace_privacy_settings (workspace_id, marketing_consent)"
            " values (%s, %s)",
            (owner.workspace_id, rule),
        )
    campaign = list_campaign(conn, owner, list(ids.values()))
    assert start(conn, owner, campaign) == len(mailed)
    got = {
        r["contact_id"]
        for r in conn.execute(
            "select contact_id from public.campaign_recipients where campaign_id = %s", (campaign,)
        ).fetchall()
    }
    assert {name for name, contact in ids.items() if contact in got} == mailed


def test_a_consent_withdrawn_after_launch_is_skipped_at_send_time(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    contact = new_contact(conn, owner, "granted", {"country": "CZ"})
    campaign = list_campaign(conn, owner, [contact])
    assert start(conn, owner, campaign) == 1
    with acting_as(conn, owner):
        conn.execute(
            "select public.record_consent(%s, 'email_marketing', 'withdrawn', 'admin')",
            (contact,),
        )
    # Rolled back, so other tests' campaigns claimed alongside are left as they were.
    with conn.transaction(force_rollback=True):
        conn.execute("select * from private.claim_email_batch(1000, 60, 100000)")
        recipient = one(
            conn,
            "select status from public.campaign_recipients where campaign_id = %s",
            (campaign,),
        )
    assert recipient["status"] == "skipped"


def test_erasure_takes_the_consent_history(conn: Conn) -> None:
    owner = create_user(conn)
    contact = new_contact(conn, owner, "granted")
    with acting_as(conn, owner):
        conn.execute("select public.record_consent(%s, 'profiling', 'granted', 'form')", (contact,))
        conn.execute("select public.erase_contact(%s)", (contact,))
    assert history(conn, contact) == []
