"""Erasure of a contact reaches every table: one person arrives through every path that stores
personal data today (a CSV import, Shopify and WooCommerce order webhooks through the edge, a
Shopify checkout webhook (abandoned cart), a Shoptet customer sync and its webhook, SES events, a
campaign, an unsubscribe, a Make.com automation, a segment, RFM snapshots, a signed inbound
WhatsApp message, a custom event through POST /api/v1/events and the flow run it starts, with
history), is erased, and then no text, JSON or binary column of any
table in any schema holds their email, phone, name or address."""

import base64
import hashlib
import hmac
import json
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg import sql
from psycopg.rows import DictRow, tuple_row
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from api.app import create_app
from api.core.db import Database
from api.core.settings import Settings
from api.imports.jobs import Runner, run_job
from api.imports.parts import store_part
from tests.factories.email import list_campaign, start
from tests.factories.flows import create_flow, runs, skip_waits, tick
from tests.factories.inbox import (
    APP_SECRET,
    TELEGRAM_SECRET,
    X_CONSUMER_SECRET,
    account_id,
    email_channel,
    telegram_channel,
    whatsapp_channel,
    x_channel,
)
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
from tests.fakes import sns_signing
from tests.fakes.jwks import JwksServer
from tests.fakes.ses_inbound import TOPIC, notification, received
from tests.fakes.sns_signing import Certificate, SnsHost, serve_sns
from tests.fakes.telegram_server import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram_server import message_update
from tests.fakes.whatsapp_server import hub_signature, inbound, text_message
from tests.fakes.x_server import TOKEN as X_TOKEN
from tests.fakes.x_server import dm_delivery, x_signature

Conn = psycopg.Connection[DictRow]
SHOP_SECRET = "shpss_" + uuid.uuid4().hex
ENCRYPTION_KEY = Fernet.generate_key().decode()
TEXT_TYPES = ("text", "varchar", "bpchar", "json", "jsonb", "citext", "xml", "name")


class Person:
    """One customer with identifiers unique to this test run."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.email = f"jana.{tag}@example.test"
        self.phone = "+420603" + str(100000 + int(tag[:6], 16) % 900000)
        self.first_name = f"Jana{tag}"
        self.last_name = f"Testovská{tag}"
        self.street = f"Vodičkova {tag} 17"
        self.shopify_id = str(7_000_000_000 + int(tag[:6], 16))
        self.shoptet_guid = str(uuid.uuid4())

    @property
    def needles(self) -> dict[str, str]:
        """What must be nowhere after erasure: address, phone (as stored and as digits), names,
        street, shop customer ids."""
        return {
            "email": self.email,
            "phone": self.phone,
            "phone digits": self.phone[1:],
            "name": f"{self.first_name} {self.last_name}",
            "first name": self.first_name,
            "last name": self.last_name,
            "street": self.street,
            "shopify customer id": self.shopify_id,
            "shoptet customer guid": self.shoptet_guid,
        }


certificate = sns_signing.certificate


@pytest.fixture(scope="module")
def sns_host(certificate: Certificate) -> Iterator[SnsHost]:
    with serve_sns(certificate) as host:
        yield host


@pytest.fixture(scope="module")
def sns(certificate: Certificate, sns_host: SnsHost) -> tuple[Certificate, SnsHost]:
    return certificate, sns_host


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer, sns_host: SnsHost) -> Iterator[TestClient]:
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        integrations_encryption_key=SecretStr(ENCRYPTION_KEY),
        public_base_url="https://edge.example.test",
        sns_topic_arns=[TOPIC],
        sns_certificate_origins=[sns_host.base_url],
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def signed(body: bytes) -> str:
    return base64.b64encode(hmac.new(SHOP_SECRET.encode(), body, hashlib.sha256).digest()).decode()


def import_csv(database: Database, user: User, text: str) -> None:
    """The imports feature's path without HTTP: create, one part, commit, run."""
    data = text.encode()
    with database.as_user(user.claims) as conn:
        job = conn.execute(
            "select * from private.create_import_job(%s, null, 'contacts', %s, 'crm.csv',"
            " 'utf-8', '{}', null)",
            (user.workspace_id, len(data)),
        ).fetchone()
    assert job is not None
    with database.as_user(user.claims) as conn:
        store_part(conn, job["id"], 1, data)
    with database.as_user(user.claims) as conn:
        conn.execute("select private.commit_import_job(%s)", (job["id"],))
    run_job(Runner(database, None), job["id"], 60)


def shop_webhooks(
    client: TestClient, jwks: JwksServer, owner: User, project: uuid.UUID, person: Person
) -> None:
    token = jwks.sign(jwks.claims(owner.id))
    for source in ("shopify", "woocommerce"):
        answer = client.post(
            f"/api/v1/projects/{project}/integrations/{source}/connect",
            headers={"Authorization": f"Bearer {token}"},
            json={"webhook_secret": SHOP_SECRET},
        )
        assert answer.status_code == 200, answer.text
    address = {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "address1": person.street,
        "city": "Praha",
        "zip": "110 00",
        "phone": person.phone,
        "country_code": "CZ",
    }
    for number in range(3):
        order_id = int(person.shopify_id) - 3_000_000_000 + number
        order = {
            "id": order_id,
            "email": person.email,
            "created_at": "2026-06-01T10:15:00+02:00",
            "currency": "CZK",
            "total_price": "1299.00",
            "financial_status": "paid",
            "name": f"#{order_id}",
            "customer": {
                "id": int(person.shopify_id),
                "email": person.email,
                "first_name": person.first_name,
                "last_name": person.last_name,
                "phone": person.phone,
                "default_address": address,
            },
            "billing_address": address,
            "shipping_address": address,
            "line_items": [{"id": 1, "title": "Tea", "sku": "TEA", "quantity": 1, "price": "1299"}],
        }
        body = json.dumps(order).encode()
        answer = client.post(
            f"/api/v1/webhooks/shopify/{project}",
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Shop-Domain": "demo.myshopify.com",
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "X-Shopify-Hmac-Sha256": signed(body),
            },
        )
        assert answer.status_code == 200, answer.text
    woo = {
        "id": 88,
        "status": "processing",
        "currency": "EUR",
        "date_created_gmt": "2026-06-02T07:00:00",
        "total": "45.90",
        "customer_id": 0,
        "billing": {
            "first_name": person.first_name,
            "last_name": person.last_name,
            "email": person.email,
            "phone": person.phone,
            "address_1": person.street,
            "country": "CZ",
        },
        "line_items": [{"id": 5, "name": "Mug", "sku": "MUG", "quantity": 1, "total": "45.90"}],
    }
    body = json.dumps(woo).encode()
    answer = client.post(
        f"/api/v1/webhooks/woocommerce/{project}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-WC-Webhook-Source": "https://shop.example/",
            "X-WC-Webhook-Topic": "order.created",
            "X-WC-Webhook-Resource": "order",
            "X-WC-Webhook-Event": "created",
            "X-WC-Webhook-ID": "3",
            "X-WC-Webhook-Delivery-ID": uuid.uuid4().hex,
            "X-WC-Webhook-Signature": signed(body),
        },
    )
    assert answer.status_code == 200, answer.text


def shopify_checkout(client: TestClient, project: uuid.UUID, person: Person) -> None:
    """An abandoned checkout as Shopify's checkouts/create webhook sends it (trimmed)."""
    checkout_id = int(person.shopify_id) - 2_000_000_000
    address = {
        "first_name": person.first_name,
        "last_name": person.last_name,
        "address1": person.street,
        "city": "Praha",
        "phone": person.phone,
        "country_code": "CZ",
    }
    document = {
        "id": checkout_id,
        "token": uuid.uuid4().hex,
        "cart_token": uuid.uuid4().hex,
        "email": person.email,
        "phone": person.phone,
        "created_at": "2026-12-08T10:00:00+01:00",
        "completed_at": None,
        "currency": "EUR",
        "total_price": "39.90",
        "abandoned_checkout_url": f"https://shop.example.com/checkouts/{checkout_id}/recover",
        "line_items": [
            {"title": "Green tea", "sku": "TEA-1", "quantity": 2, "price": "9.95", "product_id": 7}
        ],
        "shipping_address": address,
        "billing_address": address,
        "customer": {
            "id": int(person.shopify_id),
            "email": person.email,
            "first_name": person.first_name,
            "last_name": person.last_name,
            "phone": person.phone,
        },
    }
    body = json.dumps(document).encode()
    answer = client.post(
        f"/api/v1/webhooks/shopify/{project}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-Shopify-Topic": "checkouts/create",
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Hmac-Sha256": signed(body),
        },
    )
    assert answer.json()["data"]["outcome"] == "accepted", answer.text


def whatsapp_message(conn: Conn, client: TestClient, owner: User, person: Person) -> None:
    """The person writes to the workspace's WhatsApp number from their phone (signed webhook)."""
    channel = whatsapp_channel(conn, owner, ENCRYPTION_KEY)
    sender = person.phone[1:]
    text = f"Hi, {person.first_name} {person.last_name} here ({person.email}), {person.street}"
    body = json.dumps(
        inbound(
            sender,
            [text_message(sender, text, timestamp=int(datetime.now(UTC).timestamp()))],
            name=f"{person.first_name} {person.last_name}",
            phone_number_id=account_id(conn, channel),
        )
    ).encode()
    answer = client.post(
        f"/api/v1/webhooks/whatsapp/{channel}",
        content=body,
        headers={
            "X-Hub-Signature-256": hub_signature(APP_SECRET, body),
            "Content-Type": "application/json",
        },
    )
    assert answer.json()["data"] == {"outcome": "accepted"}, answer.text


def inbound_email(
    conn: Conn, client: TestClient, sns: tuple[Certificate, SnsHost], owner: User, person: Person
) -> None:
    """The person mails the workspace's inbound address (SES receiving, signed SNS)."""
    inbox = email_channel(conn, owner)
    raw = (
        f"From: {person.first_name} {person.last_name} <{person.email}>\r\n"
        f"To: {inbox}\r\nSubject: My order\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.test>\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Please call me on {person.phone}, I live at {person.street}.\r\n"
    ).encode()
    certificate, host = sns
    signed = notification(
        certificate,
        f"{host.base_url}/SimpleNotificationService-inbound.pem",
        json.dumps(received(raw, [inbox])),
    )
    answer = client.post(
        "/api/v1/webhooks/ses-inbound",
        content=json.dumps(signed),
        headers={"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain"},
    )
    assert answer.status_code == 200, answer.text


def telegram_and_x_messages(
    conn: Conn, client: TestClient, owner: User, person: Person, contact_id: uuid.UUID
) -> None:
    """The person writes to the workspace's Telegram bot and X account under their name; the
    owner merges the two new contacts into theirs, as the merge suggestions offer."""
    telegram = telegram_channel(conn, owner, ENCRYPTION_KEY, TELEGRAM_TOKEN)
    chat = int(uuid.uuid4().int % 10**9)
    update = message_update(int(chat % 10**6), chat, 1, f"{person.email}, {person.street}")
    names = {"first_name": person.first_name, "last_name": person.last_name}
    update["message"]["from"].update(names)
    update["message"]["chat"].update(names)
    answer = client.post(
        f"/api/v1/webhooks/telegram/{telegram}",
        json=update,
        headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET},
    )
    assert answer.json()["data"] == {"outcome": "accepted"}, answer.text
    x, account = x_channel(conn, owner, ENCRYPTION_KEY, X_TOKEN)
    sender = str(uuid.uuid4().int % 10**12)
    delivery = dm_delivery(sender, f"Call {person.phone}", for_user_id=account)
    delivery["users"][sender]["name"] = f"{person.first_name} {person.last_name}"
    raw = json.dumps(delivery).encode()
    answer = client.post(
        f"/api/v1/webhooks/x/{x}",
        content=raw,
        headers={"x-twitter-webhooks-signature": x_signature(X_CONSUMER_SECRET, raw)},
    )
    assert answer.status_code == 200, answer.text
    others = conn.execute(
        "select distinct contact_id from public.conversations where channel_id = any(%s)",
        ([telegram, x],),
    ).fetchall()
    assert len(others) == 2
    with acting_as(conn, owner):
        for other in others:
            conn.execute("select public.merge_contacts(%s, %s)", (contact_id, other["contact_id"]))


def custom_event_and_flow(conn: Conn, client: TestClient, owner: User, person: Person) -> None:
    """A custom event through the API starts a flow; the run waits, moves on and keeps history."""
    conn.execute("update public.flows set status = 'paused' where status = 'active'")
    flow = create_flow(
        conn,
        owner,
        "custom",
        [
            {"key": "w", "kind": "wait", "config": {"days": 1}, "next": "w2"},
            {"key": "w2", "kind": "wait", "config": {"days": 1}},
        ],
        trigger_config={"name": "viewed_product"},
    )
    with acting_as(conn, owner):
        key = one(
            conn,
            "select secret from public.create_api_key(%s, 'Make', 'member', null)",
            (owner.workspace_id,),
        )["secret"]
    answer = client.post(
        "/api/v1/events",
        headers={"X-Api-Key": key},
        json={
            "events": [
                {
                    "id": f"view-{person.shopify_id}",
                    "name": "viewed_product",
                    "contact": {"email": person.email.upper()},
                    "properties": {
                        "viewer": f"{person.first_name} {person.last_name}",
                        "phone": person.phone,
                        "ship_to": person.street,
                    },
                }
            ]
        },
    )
    assert answer.json()["data"] == {"recorded": 1, "duplicates": 0}, answer.text
    skip_waits(conn, flow)
    tick(conn)
    assert len(runs(conn, flow)) == 1


def shoptet_customer(conn: Conn, project: uuid.UUID, person: Person) -> None:
    """What the Shoptet sync writes for a customer, and the webhook that announced it."""
    conn.execute(
        "select private.upsert_shop_customer(%s, 'shoptet', %s)",
        (
            project,
            Jsonb(
                {
                    "external_id": person.shoptet_guid,
                    "email": person.email,
                    "phone": person.phone,
                    "first_name": person.first_name,
                    "last_name": person.last_name,
                }
            ),
        ),
    )
    conn.execute(
        "select * from private.record_webhook_event('shoptet', %s, %s)",
        (
            uuid.uuid4().hex,
            json.dumps(
                {"eshopId": 1, "event": "customer:update", "eventInstance": person.shoptet_guid}
            ),
        ),
    )


def ses_event(conn: Conn, person: Person, message_id: str, event_type: str) -> None:
    """An SES event as SNS delivers it (the Message is a JSON string), applied as the intake
    applies it after verifying the signature."""
    event = {
        "eventType": event_type,
        "mail": {
            "timestamp": "2026-06-03T10:00:00.000Z",
            "messageId": message_id,
            "source": "hello@news.example.com",
            "destination": [person.email],
            "commonHeaders": {
                "to": [f"{person.first_name} {person.last_name} <{person.email}>"],
                "subject": "News",
            },
        },
        "delivery": {"timestamp": "2026-06-03T10:00:01.000Z", "recipients": [person.email]},
        "open": {"timestamp": "2026-06-03T11:00:00.000Z", "userAgent": "Mail"},
    }
    envelope = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:eu-central-1:123456789012:ses-events",
        "Message": json.dumps(event),
        "Timestamp": "2026-06-03T10:00:02.000Z",
    }
    stored = one(
        conn,
        "select id from private.record_webhook_event('ses', %s, %s)",
        (envelope["MessageId"], json.dumps(envelope)),
    )
    conn.execute("select private.apply_ses_event(%s)", (stored["id"],))


def seed_person_everywhere(
    conn: Conn,
    database: Database,
    client: TestClient,
    jwks: JwksServer,
    sns: tuple[Certificate, SnsHost],
    owner: User,
    person: Person,
) -> uuid.UUID:
    fund(conn, owner, 500, "team")
    project = make_project(conn, owner)
    import_csv(
        database,
        owner,
        "Email,First Name,Last Name,Phone,Street,Consent\n"
        f"{person.email},{person.first_name},{person.last_name},{person.phone},"
        f"{person.street},yes\n",
    )
    contact_id = one(
        conn,
        "select id from public.contacts where workspace_id = %s and email = %s",
        (owner.workspace_id, person.email),
    )["id"]
    with acting_as(conn, owner):
        conn.execute(
            "update public.contacts set attributes = attributes || %s where id = %s",
            (Jsonb({"address": {"street": person.street, "city": "Praha"}}), contact_id),
        )
    shop_webhooks(client, jwks, owner, project, person)
    shopify_checkout(client, project, person)
    shoptet_customer(conn, project, person)
    whatsapp_message(conn, client, owner, person)
    inbound_email(conn, client, sns, owner, person)
    telegram_and_x_messages(conn, client, owner, person, contact_id)
    custom_event_and_flow(conn, client, owner, person)

    campaign = list_campaign(conn, owner, [contact_id])
    assert start(conn, owner, campaign) == 1
    recipient = one(
        conn, "select id from public.campaign_recipients where contact_id = %s", (contact_id,)
    )["id"]
    message_id = f"0100019{uuid.uuid4().hex}-000000"
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(),"
        " ses_message_id = %s, error = %s where id = %s",
        (message_id, f"first try refused for {person.email}", recipient),
    )
    for event_type in ("Delivery", "Open"):
        ses_event(conn, person, message_id, event_type)
    conn.execute(
        "select private.unsubscribe_contact(%s, %s, %s)",
        (owner.workspace_id, contact_id, recipient),
    )

    with acting_as(conn, owner):
        conn.execute(
            "select 1 from public.enqueue_automation(%s, 'content_gen', %s, null)",
            (
                project,
                Jsonb(
                    {
                        "brief": f"A thank-you to {person.first_name} {person.last_name}"
                        f" ({person.email}, {person.phone})"
                    }
                ),
            ),
        )
        conn.execute(
            "insert into public.segments (workspace_id, name, rule) values (%s, 'VIP', %s)",
            (
                owner.workspace_id,
                Jsonb({"field": "email", "op": "eq", "value": person.email}),
            ),
        )
    conn.execute(
        "update public.automations set result = %s where project_id = %s",
        (Jsonb({"draft": f"Dear {person.first_name}, thank you"}), project),
    )
    conn.execute("select analytics.take_rfm_snapshot(%s)", (date.today().replace(day=1),))
    return uuid.UUID(str(contact_id))


def text_columns(conn: Conn) -> list[dict[str, Any]]:
    """Every text, JSON, binary or array-of-those column of every table and materialized view in
    every schema but the catalogs."""
    return conn.execute(
        "select n.nspname as schema, c.relname as table, a.attname as column,"
        " coalesce(e.typname, t.typname) as type, t.typcategory = 'A' as is_array"
        " from pg_attribute a join pg_class c on c.oid = a.attrelid"
        " join pg_namespace n on n.oid = c.relnamespace"
        " join pg_type t on t.oid = a.atttypid"
        " left join pg_type e on e.oid = t.typelem and t.typcategory = 'A'"
        " where c.relkind in ('r', 'p', 'm') and a.attnum > 0 and not a.attisdropped"
        " and n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast')"
        " and coalesce(e.typname, t.typname) = any(%s)"
        " order by 1, 2, 3",
        ([*TEXT_TYPES, "bytea"],),
    ).fetchall()


def traces(conn: Conn, needles: dict[str, str]) -> list[str]:
    """`schema.table.column: what` for every column holding any needle (case-insensitive), as
    written or JSON-escaped (a raw payload keeps `\\u010d` for `č`)."""
    variants = dict(needles)
    for what, needle in needles.items():
        escaped = json.dumps(needle)[1:-1]
        if escaped != needle:
            variants[f"{what} (escaped)"] = escaped
    by_table: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for column in text_columns(conn):
        by_table[(column["schema"], column["table"])].append(column)
    found: list[str] = []
    # One scan per table answers every column and needle at once.
    for (schema, table), columns in by_table.items():
        labels: list[str] = []
        conditions: list[sql.Composable] = []
        values: list[str] = []
        for column in columns:
            name = sql.Identifier(column["column"])
            for what, needle in variants.items():
                if column["type"] == "bytea" and not column["is_array"]:
                    condition = sql.SQL("position(convert_to(%s, 'UTF8') in {}) > 0").format(name)
                else:
                    condition = sql.SQL("strpos(lower({}::text), lower(%s)) > 0").format(name)
                labels.append(f"{schema}.{table}.{column['column']}: {what}")
                conditions.append(sql.SQL("coalesce(bool_or({}), false)").format(condition))
                values.append(needle)
        query = sql.SQL("select {} from {}.{}").format(
            sql.SQL(", ").join(conditions), sql.Identifier(schema), sql.Identifier(table)
        )
        with conn.cursor(row_factory=tuple_row) as cursor:
            hits = cursor.execute(query, values).fetchone() or ()
        found.extend(label for label, hit in zip(labels, hits, strict=True) if hit)
    return found


def test_every_text_json_and_binary_column_is_in_the_register(conn: Conn) -> None:
    assert conn.execute("select * from private.unregistered_columns()").fetchall() == []


def test_a_new_column_that_is_not_registered_is_named(conn: Conn) -> None:
    with conn.transaction(force_rollback=True):
        conn.execute("alter table public.orders add column shipping_note text")
        conn.execute("delete from private.personal_data_columns where table_name = 'segments'")
        problems = {
            (r["table_name"], r["column_name"], r["problem"])
            for r in conn.execute("select * from private.unregistered_columns()").fetchall()
        }
    assert ("orders", "shipping_note", "not registered") in problems
    assert ("segments", "rule", "not registered") in problems


def test_after_erasure_nothing_anywhere_holds_the_person(
    conn: Conn,
    database: Database,
    client: TestClient,
    jwks: JwksServer,
    sns: tuple[Certificate, SnsHost],
) -> None:
    owner = create_user(conn)
    person = Person()
    contact_id = seed_person_everywhere(conn, database, client, jwks, sns, owner, person)
    bystander = Person()
    other = create_user(conn)
    fund(conn, other, 100, "team")
    with acting_as(conn, other):
        conn.execute(
            "insert into public.contacts (workspace_id, email, first_name) values (%s, %s, %s)",
            (other.workspace_id, bystander.email, bystander.first_name),
        )

    before = traces(conn, person.needles)
    # The seeding reached every kind of place erasure must clean.
    for place in (
        "public.contacts.email",
        "public.contacts.attributes: street",
        "public.campaign_recipients.email",
        "public.campaign_recipients.error",
        "public.email_suppressions.email",
        "public.contact_external_ids.external_id: shoptet customer guid",
        "private.webhook_events.body: street",
        "private.webhook_events.body: shoptet customer guid",
        "public.automations.input",
        "public.automations.result: first name",
        "public.segments.rule",
        "public.contact_events.properties: street",
        "public.contact_identities.address: phone digits",
        "public.contact_identities.display_name: name",
        "public.messages.text: email",
        "public.flow_runs.context: street",
        "private.webhook_events.body: phone digits",
    ):
        assert any(hit.startswith(place) for hit in before), (place, before)
    orders = one(
        conn, "select count(*) as n from public.orders where contact_id = %s", (contact_id,)
    )["n"]
    assert orders == 4
    linked = one(
        conn,
        "select (select count(*) from public.checkouts where contact_id = %(c)s) as checkouts,"
        " (select count(*) from public.flow_run_steps h join public.flow_runs r on r.id = h.run_id"
        "   where r.contact_id = %(c)s) as history,"
        " (select count(*) from public.conversations where contact_id = %(c)s) as conversations",
        {"c": contact_id},
    )
    # WhatsApp, email, and the Telegram and X conversations merged in.
    assert linked["checkouts"] == 1 and linked["history"] >= 1 and linked["conversations"] == 4

    with acting_as(conn, owner):
        erasure = one(conn, "select * from public.erase_contact(%s)", (contact_id,))
    assert erasure["rows_changed"]["orders"] == 4
    assert erasure["rows_changed"]["webhook_events"] >= 6

    assert traces(conn, person.needles) == []
    # Revenue stays, unlinked; the person's row is a tombstone that no longer counts.
    kept = one(
        conn,
        "select count(*) as n, count(contact_id) as linked from public.orders"
        " where workspace_id = %s",
        (owner.workspace_id,),
    )
    assert (kept["n"], kept["linked"]) == (4, 0)
    tombstone = one(conn, "select * from public.contacts where id = %s", (contact_id,))
    assert tombstone["erased_at"] is not None and tombstone["email"] is None
    assert conn.execute("select * from private.verify_contact_counts()").fetchall() == []
    # Another workspace's contact is untouched.
    assert traces(conn, {"bystander": bystander.email}) == ["public.contacts.email: bystander"]


def test_an_erased_person_is_not_imported_or_synced_again(conn: Conn, database: Database) -> None:
    owner = create_user(conn)
    fund(conn, owner, 100, "team")
    person = Person()
    project = make_project(conn, owner)
    customer = {
        "external_id": person.shoptet_guid,
        "email": person.email,
        "phone": person.phone,
        "first_name": person.first_name,
    }
    conn.execute(
        "select private.upsert_shop_customer(%s, 'shoptet', %s)", (project, Jsonb(customer))
    )
    contact_id = one(conn, "select id from public.contacts where email = %s", (person.email,))["id"]
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact_id,))

    # A shop sync and an order for them: the order is kept without a contact.
    conn.execute(
        "select private.upsert_shop_customer(%s, 'shoptet', %s)", (project, Jsonb(customer))
    )
    conn.execute(
        "select private.upsert_order(%s, 'shoptet', %s)",
        (
            project,
            Jsonb(
                {
                    "external_id": "2026000123",
                    "status": "paid",
                    "placed_at": "2026-06-01T10:00:00Z",
                    "total": "10.00",
                    "currency": "EUR",
                    "customer": {**customer, "email": person.email.upper()},
                }
            ),
        ),
    )
    import_csv(
        database, owner, f"Email,Phone\n{person.email},\nnew-{person.email},{person.phone}\n"
    )
    rows = conn.execute(
        "select email, erased_at is not null as erased from public.contacts"
        " where workspace_id = %s",
        (owner.workspace_id,),
    ).fetchall()
    assert [(r["email"], r["erased"]) for r in rows] == [(None, True)]
    assert traces(conn, {"email": person.email}) == []
    order = one(conn, "select contact_id from public.orders where external_id = '2026000123'")
    assert order["contact_id"] is None
    # Nobody can give a contact the erased address by hand either.
    with acting_as(conn, owner):
        other_id = one(
            conn,
            "insert into public.contacts (workspace_id, email) values (%s, 'x@example.test')"
            " returning id",
            (owner.workspace_id,),
        )["id"]
    with refused(409, "contact_erased"), acting_as(conn, owner):
        conn.execute(
            "update public.contacts set email = %s where id = %s", (person.email, other_id)
        )
    with refused(409, "contact_erased"), acting_as(conn, owner):
        conn.execute("update public.contacts set first_name = 'Back' where id = %s", (contact_id,))


def test_erasure_refuses_other_workspaces_lower_roles_and_a_second_time(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 100, "team")
    member = add_member(conn, owner, "member")
    admin = add_member(conn, owner, "admin")
    stranger = create_user(conn)
    with acting_as(conn, owner):
        contact_id = one(
            conn,
            "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
            (owner.workspace_id, f"erase-{uuid.uuid4().hex[:8]}@example.test"),
        )["id"]
    with refused(404, "contact_not_found"), acting_as(conn, stranger):
        conn.execute("select public.erase_contact(%s)", (contact_id,))
    with refused(403, "insufficient_role"), acting_as(conn, member):
        conn.execute("select public.erase_contact(%s)", (contact_id,))
    with refused(404, "contact_not_found"), acting_as(conn, admin):
        conn.execute("select public.erase_contact(%s)", (uuid.uuid4(),))
    with acting_as(conn, admin):
        erasure = one(conn, "select * from public.erase_contact(%s)", (contact_id,))
    assert erasure["requested_by"] == admin.id
    with refused(409, "contact_already_erased"), acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact_id,))
    # Admins read the record; members do not.
    with acting_as(conn, owner):
        assert conn.execute(
            "select count(*) as n from public.contact_erasures where contact_id = %s",
            (contact_id,),
        ).fetchone() == {"n": 1}
    with acting_as(conn, member):
        assert conn.execute(
            "select count(*) as n from public.contact_erasures where contact_id = %s",
            (contact_id,),
        ).fetchone() == {"n": 0}


def test_staged_import_rows_of_the_person_are_blanked_and_refused(conn: Conn) -> None:
    """A staged row of the person keeps nothing of them and is refused when merged; it is not
    deleted, as a chunk takes its part's missing last row for a staging a restart emptied."""
    owner = create_user(conn)
    fund(conn, owner, 100, "team")
    email = f"staged-{uuid.uuid4().hex[:8]}@example.test"
    with acting_as(conn, owner):
        contact_id = one(
            conn,
            "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
            (owner.workspace_id, email),
        )["id"]
        job = one(
            conn,
            "select id from private.create_import_job(%s, null, 'contacts', 10, 'a.csv',"
            " 'utf-8', '{}', null)",
            (owner.workspace_id,),
        )["id"]
    conn.execute(
        "insert into private.import_contact_rows (job_id, record, line, email, first_name)"
        " values (%s, 1, 2, %s, 'Staged'), (%s, 2, 3, 'other@example.test', 'Other')",
        (job, email.upper(), job),
    )
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact_id,))
    left = conn.execute(
        "select record, email, first_name, problem from private.import_contact_rows"
        " where job_id = %s order by record",
        (job,),
    ).fetchall()
    assert [tuple(row.values()) for row in left] == [
        (1, None, None, "not imported: the person on this line was erased"),
        (2, "other@example.test", "Other", None),
    ]


def test_erasure_in_one_workspace_leaves_another_workspaces_customer_of_the_same_name(
    conn: Conn,
) -> None:
    email = f"twice-{uuid.uuid4().hex[:8]}@example.test"
    stores = []
    for _ in range(2):
        owner = create_user(conn)
        fund(conn, owner, 10, "team")
        project = make_project(conn, owner)
        contact_id = one(
            conn,
            "select private.upsert_shop_customer(%s, 'shopify', %s) as id",
            (project, Jsonb({"external_id": uuid.uuid4().hex, "email": email})),
        )["id"]
        conn.execute(
            "select * from private.record_webhook_event('shopify', %s, %s)",
            (f"{project}:{uuid.uuid4().hex}", json.dumps({"customer": {"email": email}})),
        )
        stores.append((owner, contact_id))
    (first, first_contact), (second, _) = stores
    with acting_as(conn, first):
        conn.execute("select public.erase_contact(%s)", (first_contact,))
    assert sorted(traces(conn, {"email": email})) == [
        "private.webhook_events.body: email",
        "public.contacts.email: email",
    ]
    kept = one(
        conn,
        "select count(*) as n from public.contacts where workspace_id = %s and email = %s",
        (second.workspace_id, email),
    )
    assert kept == {"n": 1}
    payloads = one(
        conn,
        "select count(*) as n from private.webhook_events where strpos(body, %s) > 0",
        (email,),
    )
    assert payloads == {"n": 1}


def test_a_dashboard_delete_is_an_erasure(
    conn: Conn,
    database: Database,
    client: TestClient,
    jwks: JwksServer,
    sns: tuple[Certificate, SnsHost],
) -> None:
    owner = create_user(conn)
    member = add_member(conn, owner, "member")
    person = Person()
    contact_id = seed_person_everywhere(conn, database, client, jwks, sns, owner, person)

    with acting_as(conn, member), refused(403, "insufficient_role"):
        conn.execute("delete from public.contacts where id = %s", (contact_id,))
    assert traces(conn, person.needles) != []

    with acting_as(conn, owner):
        deleted = conn.execute("delete from public.contacts where id = %s", (contact_id,))
    assert deleted.rowcount == 0
    assert traces(conn, person.needles) == []
    tombstone = one(conn, "select * from public.contacts where id = %s", (contact_id,))
    assert tombstone["erased_at"] is not None and tombstone["email"] is None
    proof = one(
        conn,
        "select requested_by from public.contact_erasures where contact_id = %s",
        (contact_id,),
    )
    assert proof["requested_by"] == owner.id
    # The keyed hash keeps the person out: the next import does not bring them back.
    conn.execute(
        "insert into public.contacts (workspace_id, email) values (%s, %s)",
        (owner.workspace_id, person.email),
    )
    assert (
        one(
            conn,
            "select count(*) as n from public.contacts where workspace_id = %s and email = %s",
            (owner.workspace_id, person.email),
        )["n"]
        == 0
    )
    # A second delete of the tombstone changes nothing and fails nothing.
    with acting_as(conn, owner):
        again = conn.execute("delete from public.contacts where id = %s", (contact_id,))
    assert again.rowcount == 0
    # The service still deletes outright.
    conn.execute("delete from public.contacts where id = %s", (contact_id,))
    assert (
        conn.execute("select 1 from public.contacts where id = %s", (contact_id,)).fetchone()
        is None
    )
