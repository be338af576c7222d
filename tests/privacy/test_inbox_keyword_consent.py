"""An opt-out word in the inbox is a consent withdrawal on record (source `inbox_keyword`), not
only a channel suppression: the channel kind's own purpose (WhatsApp, Telegram, X), or email
marketing with the contact's state."""

import json
import time
import uuid
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from tests.factories.inbox import (
    account_id,
    apply_whatsapp,
    email_channel,
    telegram_channel,
    whatsapp_channel,
    x_channel,
)
from tests.factories.workspaces import User, acting_as, create_user, fund, one
from tests.fakes.telegram_server import message_update
from tests.fakes.whatsapp_server import inbound, text_message
from tests.fakes.x_server import dm_delivery

Conn = psycopg.Connection[DictRow]
KEY = "kPqBfXz3HOuJVD3mD5Gm2o7dE4pCQfVYbX9xO0n9T2U="


def history(conn: Conn, owner: User, contact: Any) -> list[tuple[str, str, str, str | None]]:
    with acting_as(conn, owner):
        rows = conn.execute(
            "select purpose, status, source, source_detail from public.consents"
            " where contact_id = %s order by created_at, id",
            (contact,),
        ).fetchall()
    return [(r["purpose"], r["status"], r["source"], r["source_detail"]) for r in rows]


def test_stop_on_whatsapp_withdraws_the_whatsapp_purpose(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    channel = whatsapp_channel(conn, owner, KEY)
    sender = "4207" + str(uuid.uuid4().int % 10**8).zfill(8)
    for text in ("Hello", "STOP", "stop!"):
        apply_whatsapp(
            conn,
            channel,
            inbound(
                sender,
                [text_message(sender, text, timestamp=int(time.time()))],
                phone_number_id=account_id(conn, channel),
            ),
        )
    contact = one(
        conn,
        "select contact_id from public.contact_identities where workspace_id = %s and address = %s",
        (owner.workspace_id, sender),
    )["contact_id"]
    # One suppression, one record (the second STOP suppresses nothing new).
    assert history(conn, owner, contact) == [("whatsapp", "withdrawn", "inbox_keyword", "stop")]


def test_stop_by_email_withdraws_email_marketing_and_moves_the_contacts_state(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    inbound_address = email_channel(conn, owner)
    email = f"jana-{uuid.uuid4().hex[:8]}@mail.example.org"
    with acting_as(conn, owner):
        contact = one(
            conn,
            "insert into public.contacts (workspace_id, email, consent_state, consent_source)"
            " values (%s, %s, 'granted', 'form') returning id",
            (owner.workspace_id, email),
        )["id"]
    event = one(
        conn,
        "select id from private.record_webhook_event('ses_inbound', %s, %s)",
        (str(uuid.uuid4()), json.dumps({"Type": "Notification"})),
    )["id"]
    outcome = one(
        conn,
        "select private.ingest_inbound_email(%s, %s, %s, now()) as o",
        (
            event,
            [inbound_address],
            Jsonb({"from": email, "text": "Unsubscribe", "message_id": f"<{uuid.uuid4()}@x>"}),
        ),
    )["o"]
    assert outcome == "applied"
    assert history(conn, owner, contact)[-1] == (
        "email_marketing",
        "withdrawn",
        "inbox_keyword",
        "unsubscribe",
    )
    state = one(
        conn,
        "select c.consent_state, cc.status from public.contacts c"
        " join public.contact_consents cc on cc.contact_id = c.id"
        " and cc.purpose = 'email_marketing' where c.id = %s",
        (contact,),
    )
    assert state == {"consent_state": "withdrawn", "status": "withdrawn"}


def test_stop_on_telegram_and_x_withdraws_their_own_purposes(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    telegram = telegram_channel(conn, owner, KEY, "123:bot-token")
    x, x_account = x_channel(conn, owner, KEY, "x-token")
    chat = 700000000 + uuid.uuid4().int % 10**8
    sender = str(uuid.uuid4().int % 10**12)
    deliveries = [
        ("telegram", telegram, f"{telegram}:1", message_update(1, chat, 1, "STOP")),
        ("x", x, f"{x}:dm", dm_delivery(sender, "stop", for_user_id=x_account)),
    ]
    for provider, _, event_id, body in deliveries:
        event = one(
            conn,
            "select id from private.record_webhook_event(%s, %s, %s)",
            (provider, event_id, json.dumps(body)),
        )["id"]
        conn.execute(f"select private.apply_{provider}_event(%s)", (event,))
    for (provider, channel, _, _), address in zip(deliveries, (str(chat), sender), strict=True):
        contact = one(
            conn,
            "select contact_id from public.contact_identities where workspace_id = %s"
            " and address = %s",
            (owner.workspace_id, address),
        )["contact_id"]
        assert contact is not None, channel
        assert history(conn, owner, contact) == [(provider, "withdrawn", "inbox_keyword", "stop")]
