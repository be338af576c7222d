"""Address flags: every insert or change of an address flags role, disposable and hopeless
addresses; marketing audiences leave out the disposable and hopeless ones (role addresses stay,
warned about) and the pre-send checks count what the flags leave out."""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.factories.email import add_contacts, list_campaign, start
from tests.factories.workspaces import acting_as, create_user, one

Conn = psycopg.Connection[Any]


@pytest.fixture(autouse=True)
def idle_ledger(conn: Conn) -> Iterator[None]:
    yield
    # Later tests that claim across the database do not meet these campaigns' rows.
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")


def flag(conn: Conn, email: str) -> str | None:
    found: str | None = one(conn, "select private.address_flag(%s) as f", (email,))["f"]
    return found


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("ann@shop.example", None),
        ("ann.lee+news@mail.shop.co.uk", None),
        ("jiří@příklad.cz", None),
        ("postmaster@shop.example", "role"),
        ("ann@YOPMAIL.com", "disposable"),
        ("ann@", "invalid"),
        ("ann@@shop.example", "invalid"),
        ("ann.@shop.example", "invalid"),
        ("ann@shop", "invalid"),
        ("ann@shop..example", "invalid"),
        ("ann@shop-.example", "invalid"),
        ('"ann"@shop.example', "invalid"),
        ("a" * 65 + "@shop.example", "invalid"),
        ("ann@" + "s" * 250 + ".example", "invalid"),
        ("info@mailinator.com", "disposable"),
    ],
)
def test_the_flag_an_address_earns(conn: Conn, email: str, expected: str | None) -> None:
    assert flag(conn, email) == expected


def test_a_changed_address_is_flagged_anew_and_erasure_clears_it(conn: Conn) -> None:
    owner = create_user(conn)
    [contact] = add_contacts(conn, owner, 1, prefix=uuid.uuid4().hex[:8])
    read = "select address_flag from public.contacts where id = %s"
    assert one(conn, read, (contact,))["address_flag"] is None
    conn.execute(
        "update public.contacts set email = 'sales@shop.example' where id = %s", (contact,)
    )
    assert one(conn, read, (contact,))["address_flag"] == "role"
    conn.execute("update public.contacts set email = null where id = %s", (contact,))
    assert one(conn, read, (contact,))["address_flag"] is None


def test_members_cannot_set_the_flag_themselves(conn: Conn) -> None:
    owner = create_user(conn)
    [contact] = add_contacts(conn, owner, 1, prefix=uuid.uuid4().hex[:8])
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as(conn, owner):
        conn.execute("update public.contacts set address_flag = null where id = %s", (contact,))


def test_audiences_leave_out_disposable_and_hopeless_addresses_and_the_checks_count_them(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    prefix = uuid.uuid4().hex[:8]
    people = add_contacts(conn, owner, 4, prefix=prefix)
    for contact, email in zip(
        people[1:],
        [f"{prefix}@mailinator.com", f"{prefix}..x@shop.example", f"support@{prefix}.example"],
        strict=True,
    ):
        conn.execute("update public.contacts set email = %s where id = %s", (email, contact))
    campaign = list_campaign(conn, owner, people)
    with acting_as(conn, owner):
        checks = one(conn, "select public.campaign_checks(%s) as c", (campaign,))["c"]
    assert checks["audience_sampled"] == 2
    assert checks["flagged_excluded"] == 2
    statuses = {c["check"]: c["status"] for c in checks["checks"]}
    assert statuses["flagged_addresses"] == "warn"
    assert float(checks["shares"]["role_addresses"]) == pytest.approx(0.5)
    assert start(conn, owner, campaign) == 2
    frozen = {
        row["contact_id"]
        for row in conn.execute(
            "select contact_id from public.campaign_recipients where campaign_id = %s", (campaign,)
        )
    }
    assert frozen == {people[0], people[3]}
