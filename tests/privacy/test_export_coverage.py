"""The access request covers every table that holds a contact's data: a standing check against
the privacy register (a new table marked as a contact's data must be exported or listed here
with its reason), and a person seeded through the inbox, events, a checkout and a flow whose
export holds all of it and nothing of another workspace."""

import time
import uuid
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from tests.factories.flows import create_flow, skip_waits, tick
from tests.factories.inbox import account_id, apply_whatsapp, whatsapp_channel
from tests.factories.workspaces import User, acting_as, create_user, fund, make_project, one
from tests.fakes.whatsapp_server import inbound, text_message

Conn = psycopg.Connection[DictRow]
KEY = "kPqBfXz3HOuJVD3mD5Gm2o7dE4pCQfVYbX9xO0n9T2U="

# Tables the register marks as holding a contact's data that the export leaves out, and why.
NOT_EXPORTED = {
    "public.contact_erasures": "the proof of an erasure; an erased contact has no export",
}


def export_document(conn: Conn, owner: User, contact: uuid.UUID) -> dict[str, list[Any]]:
    with acting_as(conn, owner):
        export = one(conn, "select id from public.request_contact_export(%s)", (contact,))["id"]
    document = one(conn, "select private.contact_export_data(%s) as d", (export,))["d"]
    return dict(document)


def test_every_table_holding_a_contacts_data_is_exported_or_explained(conn: Conn) -> None:
    owner = create_user(conn)
    with acting_as(conn, owner):
        contact = one(
            conn,
            "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
            (owner.workspace_id, f"reg-{uuid.uuid4().hex[:8]}@example.test"),
        )["id"]
    exported = set(export_document(conn, owner, contact))
    registered = {
        (r["table_schema"], r["table_name"])
        for r in conn.execute(
            "select distinct table_schema, table_name from private.personal_data_columns"
            " where subject = 'contact' and table_schema in ('public', 'analytics')"
        ).fetchall()
    }
    missing = sorted(
        f"{schema}.{table}"
        for schema, table in registered
        if table not in exported and f"{schema}.{table}" not in NOT_EXPORTED
    )
    assert missing == []


def whatsapp_person(conn: Conn, owner: User, number: str, text: str) -> uuid.UUID:
    """The person writes to the workspace's WhatsApp number; answers their contact."""
    channel = whatsapp_channel(conn, owner, KEY)
    apply_whatsapp(
        conn,
        channel,
        inbound(
            number,
            [text_message(number, text, timestamp=int(time.time()))],
            name="Eva Svobodová",
            phone_number_id=account_id(conn, channel),
        ),
    )
    return uuid.UUID(
        str(
            one(
                conn,
                "select contact_id from public.contact_identities"
                " where workspace_id = %s and kind = 'whatsapp' and address = %s",
                (owner.workspace_id, number),
            )["contact_id"]
        )
    )


def test_the_export_holds_inbox_events_checkouts_and_flows_of_its_workspace_only(
    conn: Conn,
) -> None:
    number = "4207" + str(uuid.uuid4().int % 10**8).zfill(8)
    email = f"eva-{uuid.uuid4().hex[:8]}@example.test"
    owner = create_user(conn)
    other = create_user(conn)
    for user in (owner, other):
        fund(conn, user, 100, "team")
    contact = whatsapp_person(conn, owner, number, "Where is my parcel?")
    theirs = whatsapp_person(conn, other, number, "Another shop's question")
    project = make_project(conn, owner)
    flow = create_flow(
        conn,
        owner,
        "custom",
        [{"key": "w", "kind": "wait", "config": {"days": 1}}],
        trigger_config={"name": f"viewed-{uuid.uuid4().hex[:6]}"},
    )
    name = one(
        conn, "select trigger_config ->> 'name' as n from public.flows where id = %s", (flow,)
    )
    for user, person in ((owner, contact), (other, theirs)):
        conn.execute("update public.contacts set email = %s where id = %s", (email, person))
        conn.execute(
            "insert into public.contact_events (workspace_id, contact_id, type, name, properties)"
            " values (%s, %s, 'custom', %s, %s)",
            (user.workspace_id, person, name["n"], Jsonb({"product": "Tea"})),
        )
        conn.execute(
            "insert into public.email_suppressions (workspace_id, email, reason)"
            " values (%s, %s, 'manual')",
            (user.workspace_id, email),
        )
    conn.execute(
        "select private.upsert_checkout(%s, 'shopify', %s)",
        (
            project,
            Jsonb(
                {
                    "external_id": f"checkout-{uuid.uuid4().hex[:8]}",
                    "customer": {"external_id": uuid.uuid4().hex[:8], "email": email},
                    "items": [{"name": "Tea", "quantity": 1, "price": "9.90"}],
                    "total": "9.90",
                    "currency": "EUR",
                }
            ),
        ),
    )
    tick(conn)
    skip_waits(conn, flow)
    tick(conn)  # the wait is over: the run's step history has it

    document = export_document(conn, owner, contact)
    counts = {table: len(rows) for table, rows in document.items()}
    for table in (
        "contact_identities",
        "conversations",
        "messages",
        "contact_events",
        "email_suppressions",
        "checkouts",
        "flow_runs",
        "flow_run_steps",
        "webhook_events",
    ):
        assert counts[table] >= 1, table
    assert [m["text"] for m in document["messages"]] == ["Where is my parcel?"]
    assert "Where is my parcel?" in document["webhook_events"][0]["body"]
    # Nothing of the other workspace: not their rows, not their payload.
    assert not any(
        row.get("workspace_id") not in (None, str(owner.workspace_id))
        for rows in document.values()
        for row in rows
    )
    assert "Another shop" not in str(document)
