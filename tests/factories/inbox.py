"""Inbox test data: channels connected with credentials sealed as the edge seals them, and
conversations made by applying a provider-shaped webhook as the edge stores it."""

import hashlib
import json
import time
import uuid
from typing import Any

import psycopg
from cryptography.fernet import Fernet
from psycopg.types.json import Jsonb

from tests.factories.workspaces import User, one
from tests.fakes.whatsapp_server import BUSINESS_ACCOUNT_ID, TOKEN, inbound, text_message

Conn = psycopg.Connection[Any]
APP_SECRET = "app-secret-" + uuid.uuid4().hex
VERIFY_TOKEN = "verify-" + uuid.uuid4().hex
TELEGRAM_SECRET = "tg-" + uuid.uuid4().hex


def telegram_channel(conn: Conn, user: User, key: str, bot_token: str) -> uuid.UUID:
    """A Telegram channel of the user's workspace (a fresh bot id), its webhook secret
    TELEGRAM_SECRET."""
    sealed = Fernet(key.encode()).encrypt(
        json.dumps({"bot_token": bot_token, "secret_token": TELEGRAM_SECRET}).encode()
    )
    row = one(
        conn,
        "select id from private.connect_channel(%s, 'telegram', 'Bot', %s, '{}', %s)",
        (user.workspace_id, str(uuid.uuid4().int % 10**10), sealed.decode()),
    )
    return uuid.UUID(str(row["id"]))


def whatsapp_channel(
    conn: Conn, user: User, key: str, phone_number_id: str | None = None, name: str = "Support"
) -> uuid.UUID:
    """A WhatsApp channel of the user's workspace (a fresh number unless one is given)."""
    sealed = Fernet(key.encode()).encrypt(
        json.dumps(
            {"access_token": TOKEN, "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN},
            sort_keys=True,
        ).encode()
    )
    number = phone_number_id or str(uuid.uuid4().int % 10**15)
    row = one(
        conn,
        "select id from private.connect_channel(%s, 'whatsapp', %s, %s, %s, %s)",
        (
            user.workspace_id,
            name,
            number,
            Jsonb({"business_account_id": BUSINESS_ACCOUNT_ID}),
            sealed.decode(),
        ),
    )
    return uuid.UUID(str(row["id"]))


def email_channel(conn: Conn, user: User) -> str:
    """An email channel of the user's workspace; answers its (fresh) inbound address."""
    address = f"support@in-{uuid.uuid4().hex[:10]}.shop.example"
    conn.execute(
        "select private.connect_channel(%s, 'email', 'Support', %s, '{}', null)",
        (user.workspace_id, address),
    )
    return address


def account_id(conn: Conn, channel: uuid.UUID) -> str:
    return str(
        one(conn, "select account_id from public.channels where id = %s", (channel,))["account_id"]
    )


def apply_whatsapp(conn: Conn, channel: uuid.UUID, body: dict[str, Any]) -> str:
    """Stores a webhook body as the edge does and applies it; answers the outcome."""
    raw = json.dumps(body)
    event = one(
        conn,
        "select id from private.record_webhook_event('whatsapp', %s, %s)",
        (f"{channel}:{hashlib.sha256(raw.encode()).hexdigest()}", raw),
    )["id"]
    return str(one(conn, "select private.apply_whatsapp_event(%s) as o", (event,))["o"])


def whatsapp_conversation(
    conn: Conn, channel: uuid.UUID, wa_id: str | None = None, text: str = "Hello there"
) -> uuid.UUID:
    """A conversation opened by the contact writing to the channel now."""
    sender = wa_id or "4207" + str(uuid.uuid4().int % 10**8).zfill(8)
    apply_whatsapp(
        conn,
        channel,
        inbound(
            sender,
            [text_message(sender, text, timestamp=int(time.time()))],
            phone_number_id=account_id(conn, channel),
        ),
    )
    row = one(
        conn,
        "select c.id from public.conversations c join public.contact_identities i"
        " on i.id = c.identity_id where c.channel_id = %s and i.address = %s",
        (channel, sender),
    )
    return uuid.UUID(str(row["id"]))
