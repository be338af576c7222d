"""What the edge fuzz sends beyond what the OpenAPI describes, so generated cases get past the
signature, token and parsing checks into the code behind them: provider signatures computed
over the exact bytes sent, provider-shaped webhook bodies with fuzzed fields, signed unsubscribe
and consent links, the cron secret and CSV files. Every choice is a Hypothesis draw, so the fuzz
stays deterministic."""

import base64
import csv
import hashlib
import hmac
import io
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from cryptography.fernet import Fernet
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.core import NotSet

from api.email import unsubscribe_tokens
from api.imports.columns import ORDER_STATUSES as STATUSES
from api.imports.columns import ORDERS
from api.privacy import consent_links
from api.shops.shoptet.webhook import CUSTOMER_EVENTS, ORDER_EVENTS
from api.shops.webhooks import SHOPS
from tests.factories.inbox import APP_SECRET, TELEGRAM_SECRET, VERIFY_TOKEN, X_CONSUMER_SECRET
from tests.fakes.razorpay_server import event as razorpay_event
from tests.fakes.razorpay_server import payment_entity, subscription_entity
from tests.fakes.ses_inbound import received
from tests.fakes.sns_signing import Certificate
from tests.fakes.telegram_server import message_update, photo_update
from tests.fakes.whatsapp_server import (
    hub_signature,
    image_message,
    inbound,
    status,
    statuses,
    text_message,
)
from tests.fakes.x_server import dm_delivery, x_signature
from tests.shops.test_customer_webhooks import shopify_customer_body, woocommerce_customer_body
from tests.shops.test_product_webhooks import shopify_product_body, woocommerce_product_body
from tests.shops.test_shop_webhooks import shopify_order, woocommerce_order

SNS_TOPIC = "arn:aws:sns:eu-central-1:123456789012:growthbase-ses"
RAZORPAY_EVENTS = (
    "subscription.authenticated",
    "subscription.activated",
    "subscription.charged",
    "subscription.pending",
    "subscription.halted",
    "subscription.cancelled",
    "subscription.completed",
    "subscription.updated",
    "payment.failed",
)
SUBSCRIPTION_STATUSES = ("created", "authenticated", "active", "pending", "halted", "cancelled")
MAKE_STATUSES = ("processing", "completed", "failed")
STATES = ("sent", "delivered", "read", "failed")
# Any JSON, small: what a fuzzed field of a provider-shaped body may hold instead.
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@dataclass(frozen=True)
class Secrets:
    """Every secret the fuzzed edge is configured with, so the fuzz can sign as providers do."""

    make: str = "make-" + uuid.uuid4().hex
    razorpay_webhook: str = "rzp-" + uuid.uuid4().hex
    cron: str = "cron-" + uuid.uuid4().hex
    email_links: str = "links-" + uuid.uuid4().hex
    encryption_key: str = field(default_factory=lambda: Fernet.generate_key().decode())
    shop_webhook: str = "shop-" + uuid.uuid4().hex
    shoptet_signature_key: str = "shoptet-" + uuid.uuid4().hex


@dataclass(frozen=True)
class Seeded:
    """The tenant's own rows the fuzz aims its cases at."""

    workspace_id: uuid.UUID
    project_id: uuid.UUID
    shop_project_id: uuid.UUID  # connected once for webhooks; the fuzz never reconnects it
    contact_id: uuid.UUID
    template_id: uuid.UUID
    campaign_id: uuid.UUID
    subscription_id: uuid.UUID
    razorpay_subscription_id: str
    razorpay_plan_id: str
    automation_id: uuid.UUID
    identity_id: uuid.UUID
    import_job_id: uuid.UUID
    shoptet_order_code: str
    shoptet_customer_guid: str
    export_id: uuid.UUID
    erasure_batch_id: uuid.UUID
    api_key: str
    link_contact_id: uuid.UUID  # named only inside consent links, so no fuzzed erasure reaches it
    channel_id: uuid.UUID  # a WhatsApp channel
    phone_number_id: str
    conversation_id: uuid.UUID
    telegram_channel_id: uuid.UUID
    email_address: str  # an email channel's inbound address
    x_channel_id: uuid.UUID
    x_account_id: str


@dataclass(frozen=True)
class Sending:
    """Headers to add and, when the fuzz serialised it itself, the exact body to send."""

    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class Context:
    secrets: Secrets
    seeded: Seeded
    sns_certificate: Certificate
    sns_certificate_url: str


Draw = Callable[[st.SearchStrategy[Any]], Any]
# How a webhook case is sent: as generated (signature headers as generated, so refused), the
# generated body signed, or a body in the provider's shape with fuzzed fields, signed.
WEBHOOK_MODES = st.sampled_from(["shaped", "signed", "as_generated"])


def json_bytes(body: Any) -> bytes:
    """The bytes a JSON case body goes out as (an absent body is an empty one)."""
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body).encode()


def hmac_sha256(secret: str, body: bytes) -> bytes:
    return hmac.new(secret.encode(), body, hashlib.sha256).digest()


def with_fuzzed_fields(draw: Draw, document: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The document with up to two of `names` replaced by any JSON value."""
    changes = draw(st.dictionaries(st.sampled_from(names), JSON_VALUES, max_size=2))
    return {**document, **changes}


# webhooks -----------------------------------------------------------------------------------


def razorpay(case: Case[Any], draw: Draw, context: Context) -> Sending:
    mode = draw(WEBHOOK_MODES)
    if mode == "as_generated":
        return Sending()
    body = json_bytes(case.body)
    if mode == "shaped":
        seeded = context.seeded
        subscription = subscription_entity(
            seeded.razorpay_subscription_id,
            seeded.razorpay_plan_id,
            draw(st.sampled_from(SUBSCRIPTION_STATUSES)),
            paid_count=draw(st.integers(0, 3)),
            period=draw(st.integers(0, 3)),
        )
        subscription["notes"] = {"workspace_id": str(seeded.workspace_id)}
        subscription = with_fuzzed_fields(
            draw, subscription, ["status", "plan_id", "current_start", "current_end", "notes"]
        )
        payment = draw(st.none() | st.builds(payment_entity, st.just("fz"), st.integers(0, 9999)))
        document = razorpay_event(
            draw(st.sampled_from(RAZORPAY_EVENTS)), subscription, 1_780_000_000, payment
        )
        body = json.dumps(with_fuzzed_fields(draw, document, ["event", "payload"])).encode()
    signature = hmac.new(context.secrets.razorpay_webhook.encode(), body, hashlib.sha256)
    return Sending({"X-Razorpay-Signature": signature.hexdigest()}, body)


def shop(case: Case[Any], draw: Draw, context: Context) -> Sending:
    mode = draw(WEBHOOK_MODES)
    source = case.path_parameters.get("source") if case.path_parameters else None
    if mode == "as_generated" or source not in SHOPS:
        return Sending()
    webhook = SHOPS[source]
    body = json_bytes(case.body)
    headers = {}
    if mode == "shaped":
        order_id = draw(st.integers(1, 10**9))
        kind = draw(st.sampled_from(["order", "customer", "product"]))
        if kind == "order" and source == "shopify":
            document = shopify_order(order_id)
            fuzzed = ["customer", "line_items", "billing_address", "total_price", "created_at"]
        elif kind == "order":
            document = woocommerce_order(order_id)
            fuzzed = ["billing", "line_items", "total", "status", "date_created_gmt"]
        elif kind == "customer" and source == "shopify":
            document = shopify_customer_body(order_id)
            fuzzed = ["id", "email", "phone", "default_address", "email_marketing_consent"]
        elif kind == "customer":
            document = woocommerce_customer_body(order_id)
            fuzzed = ["id", "email", "first_name", "billing"]
        elif source == "shopify":
            document = shopify_product_body(order_id)
            fuzzed = ["id", "title", "status", "image", "variants"]
        else:
            document = woocommerce_product_body(order_id)
            fuzzed = ["id", "name", "price", "stock_quantity", "categories", "images"]
        body = json.dumps(with_fuzzed_fields(draw, document, fuzzed)).encode()
        topics = [
            topic
            for topic, applied in webhook.topics.items()
            if applied.removesuffix("_deleted") == kind
        ]
        headers[webhook.topic_header] = draw(st.sampled_from(sorted(topics)))
        headers[webhook.delivery_header] = str(draw(st.uuids()))
    signature = base64.b64encode(hmac_sha256(context.secrets.shop_webhook, body)).decode()
    return Sending({**headers, webhook.signature_header: signature}, body)


def shoptet(case: Case[Any], draw: Draw, context: Context) -> Sending:
    mode = draw(WEBHOOK_MODES)
    if mode == "as_generated":
        return Sending()
    body = json_bytes(case.body)
    if mode == "shaped":
        # An order event names an order code, a customer event a customer GUID: the ones the
        # Shoptet fake serves, or any text.
        seeded = context.seeded
        name, instance = draw(
            st.sampled_from(
                [
                    *((name, seeded.shoptet_order_code) for name in sorted(ORDER_EVENTS)),
                    *((name, seeded.shoptet_customer_guid) for name in sorted(CUSTOMER_EVENTS)),
                    ("eshop:mandatory", "470000"),
                ]
            )
        )
        event = {
            "eshopId": 470_000,
            "event": name,
            "eventCreated": draw(st.sampled_from(["2026-06-01T10:05:00+0200"]) | st.text()),
            "eventInstance": draw(st.just(instance) | st.text(max_size=12)),
        }
        body = json.dumps(with_fuzzed_fields(draw, event, ["eshopId", "eventInstance"])).encode()
    key = context.secrets.shoptet_signature_key.encode()
    signature = hmac.new(key, body, hashlib.sha1).hexdigest()
    return Sending({"Shoptet-Webhook-Signature": signature}, body)


def make(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """Signed with the shared signature, or authenticated by the job's callback token."""
    mode = draw(WEBHOOK_MODES)
    if mode == "as_generated":
        return Sending()
    body = json_bytes(case.body)
    job = str(context.seeded.automation_id)
    if mode == "shaped":
        callback: dict[str, Any] = {
            "automation_id": job,
            "status": draw(st.sampled_from(MAKE_STATUSES)),
        }
        if callback["status"] == "completed" or draw(st.booleans()):
            callback["result"] = draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3))
        if callback["status"] == "failed" or draw(st.booleans()):
            callback["error"] = draw(st.text(min_size=1, max_size=40))
        body = json.dumps(callback).encode()
    secret = context.secrets.make
    if draw(st.booleans()):
        token = hmac.new(secret.encode(), f"callback:{job}".encode(), hashlib.sha256)
        return Sending({"X-Growthbase-Callback-Token": token.hexdigest()}, body)
    timestamp = int(time.time())
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return Sending(
        {
            "X-Growthbase-Timestamp": str(timestamp),
            "X-Growthbase-Signature": f"v1={mac.hexdigest()}",
        },
        body,
    )


def ses(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """An SNS notification signed as SNS signs it, carrying the generated body as its message."""
    mode = draw(WEBHOOK_MODES)
    if mode == "as_generated":
        return Sending()
    published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    notification = context.sns_certificate.sign(
        {
            "Type": "Notification",
            "MessageId": str(draw(st.uuids())),
            "TopicArn": SNS_TOPIC,
            "Message": json_bytes(case.body).decode("utf-8", "replace"),
            "Timestamp": published,
            "SigningCertURL": context.sns_certificate_url,
            "UnsubscribeURL": f"https://sns.eu-central-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={SNS_TOPIC}:1",
        },
        draw(st.sampled_from(["1", "2"])),
    )
    return Sending({"x-amz-sns-message-type": "Notification"}, json.dumps(notification).encode())


def whatsapp(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """Signed with the channel's app secret as Meta signs; shaped bodies carry inbound messages
    of each type and statuses for the channel's number, with fuzzed fields."""
    mode = draw(WEBHOOK_MODES)
    if mode == "as_generated":
        return Sending()
    body = json_bytes(case.body)
    if mode == "shaped":
        sender = draw(st.sampled_from(["420777123456", "16505551234"]) | st.text(max_size=16))
        message = draw(
            st.sampled_from(
                [
                    text_message(sender, "Is it in stock?"),
                    image_message(sender),
                    {"from": sender, "id": "wamid.X", "timestamp": "1", "type": "unsupported"},
                ]
            )
        )
        message = with_fuzzed_fields(draw, message, ["type", "timestamp", "text", "id", "image"])
        number = context.seeded.phone_number_id
        document = draw(
            st.sampled_from(
                [
                    inbound(sender, [message], phone_number_id=number),
                    statuses(
                        [
                            with_fuzzed_fields(
                                draw,
                                status("wamid.X", draw(st.sampled_from(STATES)), sender, 1, 131026),
                                ["status", "timestamp", "errors", "id"],
                            )
                        ],
                        number,
                    ),
                ]
            )
        )
        body = json.dumps(with_fuzzed_fields(draw, document, ["entry", "object"])).encode()
    return Sending({"X-Hub-Signature-256": hub_signature(APP_SECRET, body)}, body)


def telegram(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """With the bot's secret token as Telegram sends it; shaped bodies are message updates
    (new, edited, with a photo) with fuzzed fields."""
    mode = draw(WEBHOOK_MODES)
    if mode == "as_generated":
        return Sending()
    body = json_bytes(case.body)
    if mode == "shaped":
        update_id = draw(st.integers(0, 10**9))
        chat = draw(st.sampled_from([123456789, -1001234567890]))
        update = draw(
            st.sampled_from(
                [
                    message_update(update_id, chat, 5, "hello"),
                    message_update(update_id, chat, 5, "hello!", edited=True),
                    photo_update(update_id, chat, 6),
                ]
            )
        )
        key = "edited_message" if "edited_message" in update else "message"
        update[key] = with_fuzzed_fields(
            draw, update[key], ["chat", "from", "text", "message_id", "date", "photo"]
        )
        body = json.dumps(with_fuzzed_fields(draw, update, ["update_id", key])).encode()
    return Sending({"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET}, body)


def ses_inbound(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """An SNS notification signed as SNS signs it, carrying SES's Received notification for
    the tenant's email channel (raw MIME, UTF-8 or Base64, fuzzed fields) or the generated body
    as its message."""
    mode = draw(WEBHOOK_MODES)
    if mode == "as_generated":
        return Sending()
    message = json_bytes(case.body).decode("utf-8", "replace")
    if mode == "shaped":
        raw = draw(
            st.sampled_from(
                [
                    b"From: Jana <jana@example.org>\r\nTo: "
                    + context.seeded.email_address.encode()
                    + b"\r\nSubject: Hi\r\nMessage-ID: <a1@example.org>\r\n\r\nHello\r\n",
                    b"From: broken\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
                ]
            )
            | st.binary(max_size=200)
        )
        notice = received(
            raw,
            [context.seeded.email_address],
            encoding=draw(st.sampled_from(["UTF8", "BASE64"])),
            spam=draw(st.sampled_from(["PASS", "FAIL"])),
        )
        notice["receipt"] = with_fuzzed_fields(draw, notice["receipt"], ["recipients", "action"])
        message = json.dumps(with_fuzzed_fields(draw, notice, ["mail", "content"]))
    published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    notification = context.sns_certificate.sign(
        {
            "Type": "Notification",
            "MessageId": str(draw(st.uuids())),
            "TopicArn": SNS_TOPIC,
            "Message": message,
            "Timestamp": published,
            "SigningCertURL": context.sns_certificate_url,
        },
        draw(st.sampled_from(["1", "2"])),
    )
    return Sending({"x-amz-sns-message-type": "Notification"}, json.dumps(notification).encode())


def x_account(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """Signed with the consumer secret as X signs; shaped bodies are direct message deliveries
    for the connected account, with fuzzed fields."""
    mode = draw(WEBHOOK_MODES)
    if mode == "as_generated":
        return Sending()
    body = json_bytes(case.body)
    if mode == "shaped":
        sender = draw(
            st.sampled_from(["3001969357", context.seeded.x_account_id]) | st.text(max_size=8)
        )
        delivery = dm_delivery(
            sender, draw(st.text(max_size=40)), for_user_id=context.seeded.x_account_id
        )
        delivery["direct_message_events"][0] = with_fuzzed_fields(
            draw,
            delivery["direct_message_events"][0],
            ["id", "type", "created_timestamp", "message_create"],
        )
        body = json.dumps(with_fuzzed_fields(draw, delivery, ["for_user_id", "users"])).encode()
    return Sending({"x-twitter-webhooks-signature": x_signature(X_CONSUMER_SECRET, body)}, body)


def x_crc(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """A share of cases carry a token of the shape X sends."""
    if draw(st.booleans()) and isinstance(case.query, dict):
        case.query["crc_token"] = draw(st.from_regex(r"[A-Za-z0-9_-]{8,40}", fullmatch=True))
    return Sending()


def whatsapp_verification(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """A share of cases carry the channel's verify token, as Meta does."""
    if draw(st.booleans()) and isinstance(case.query, dict):
        case.query["hub.mode"] = "subscribe"
        case.query["hub.verify_token"] = VERIFY_TOKEN
        case.query["hub.challenge"] = str(draw(st.integers(0, 10**10)))
    return Sending()


# other routes -------------------------------------------------------------------------------


def cron(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """Vercel Cron's bearer token instead of the user's."""
    return Sending({"Authorization": f"Bearer {context.secrets.cron}"})


def api_key(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """The tenant's live workspace API key in most cases, a generated one in the rest."""
    if draw(st.integers(0, 3)):
        return Sending({"X-Api-Key": context.seeded.api_key})
    return Sending()


def unsubscribe(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """A share of cases carry a link signed for the tenant's contact."""
    if draw(st.booleans()) and isinstance(case.query, dict):
        case.query["token"] = unsubscribe_tokens.issue(
            context.secrets.email_links,
            workspace_id=context.seeded.workspace_id,
            contact_id=context.seeded.contact_id,
            recipient_id=None,
            valid_days=1,
        )
    return Sending()


def custom_events(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """Most cases carry the workspace's API key, some name the seeded contact."""
    if draw(st.booleans()) and isinstance(case.body, dict):
        events = case.body.get("events")
        if isinstance(events, list):
            for event in events:
                if isinstance(event, dict):
                    event["contact"] = {"id": str(context.seeded.contact_id)}
    if draw(st.integers(0, 3)):
        return Sending({"X-Api-Key": context.seeded.api_key})
    return Sending()


def consent_link(kind: consent_links.Kind) -> Callable[[Case[Any], Draw, Context], Sending]:
    """A share of cases carry a confirmation or preference link signed for the tenant's
    contact."""

    def prepare_link(case: Case[Any], draw: Draw, context: Context) -> Sending:
        if draw(st.booleans()) and isinstance(case.query, dict):
            case.query["token"], _ = consent_links.issue(
                context.secrets.email_links,
                workspace_id=context.seeded.workspace_id,
                contact_id=context.seeded.link_contact_id,
                kind=kind,
                purpose="email_marketing" if kind == "confirm" else None,
            )
        return Sending()

    return prepare_link


def campaign_copy(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """A product page is only ever read from 127.0.0.1, which the page fetch refuses: the fuzz
    exercises the check and the refund without reaching the internet."""
    body = case.body
    url = body.get("product_url") if isinstance(body, dict) else None
    if isinstance(body, dict) and body.get("read_product_page") and isinstance(url, str):
        body["product_url"] = urlunsplit(urlsplit(url)._replace(netloc="127.0.0.1"))
    return Sending()


def sender_identity(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """A share of cases register a domain or address of the fuzz's own, which SES (moto)
    creates."""
    if draw(st.booleans()) and isinstance(case.body, dict):
        name = draw(st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True))
        domain = f"{name}.fuzz.example.com"
        case.body["identity"] = draw(st.sampled_from([domain, f"hello@{domain}"]))
    return Sending()


CSV_CELLS = {
    "order_id": st.sampled_from(["A-1", "1002"]),
    "placed_at": st.sampled_from(["2026-06-01", "2026-06-01T10:00:00+02:00"]),
    "status": st.sampled_from(STATUSES),
    "total": st.sampled_from(["12.50", "0", "-1", "1e3"]),
    "currency": st.sampled_from(["EUR", "CZK", "eur"]),
    "email": st.sampled_from(["Jana@Example.test", "not-an-email"]),
    "exchange_rate": st.sampled_from(["1", "0.04", "x"]),
}


def order_csv(case: Case[Any], draw: Draw, context: Context) -> Sending:
    """The import reads a raw CSV the OpenAPI does not describe: a share of cases send one with
    the required columns, some optional ones and cells plausible or arbitrary."""
    if not draw(st.booleans()):
        return Sending()
    optional = [name for name in (*ORDERS.columns, "country") if name not in ORDERS.required]
    columns = [
        *ORDERS.required,
        *draw(st.lists(st.sampled_from(optional), unique=True, max_size=3)),
    ]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for _ in range(draw(st.integers(1, 3))):
        writer.writerow(
            [draw(CSV_CELLS.get(column, st.nothing()) | st.text(max_size=10)) for column in columns]
        )
    return Sending({"Content-Type": "text/csv"}, out.getvalue().encode())


PREPARE: dict[str, Callable[[Case[Any], Draw, Context], Sending]] = {
    "/api/v1/webhooks/razorpay": razorpay,
    "/api/v1/webhooks/{source}/{project_id}": shop,
    "/api/v1/webhooks/shoptet/{project_id}": shoptet,
    "/api/v1/webhooks/result": make,
    "/api/v1/webhooks/ses": ses,
    "/api/v1/webhooks/whatsapp/{channel_id}": whatsapp,
    "/api/v1/webhooks/telegram/{channel_id}": telegram,
    "/api/v1/webhooks/ses-inbound": ses_inbound,
    "/api/v1/webhooks/x/{channel_id}": x_account,
    "/api/v1/cron/inbox": cron,
    "/api/v1/cron/outbox": cron,
    "/api/v1/cron/email": cron,
    "/api/v1/cron/rfm-snapshot": cron,
    "/api/v1/cron/rfm-kept": cron,
    "/api/v1/cron/webhook-replay": cron,
    "/api/v1/cron/monthly-credits": cron,
    "/api/v1/cron/privacy-retention": cron,
    "/api/v1/cron/imports": cron,
    "/api/v1/cron/shop-backfills": cron,
    "/api/v1/cron/privacy-exports": cron,
    "/api/v1/cron/flows": cron,
    "/api/v1/events": custom_events,
    "/api/v1/cron/subscription-cancellations": cron,
    "/api/v1/cron/privacy-erasures": cron,
    "/api/v1/api-keys/current": api_key,
    "/api/v1/privacy/consents/confirm": consent_link("confirm"),
    "/api/v1/privacy/preferences": consent_link("preferences"),
    "/api/v1/unsubscribe": unsubscribe,
    "/api/v1/ai/campaign-copy": campaign_copy,
    "/api/v1/email/identities": sender_identity,
    "/api/v1/projects/{project_id}/orders/import": order_csv,
}


def prepare(case: Case[Any], draw: Draw, context: Context) -> Sending:
    if case.operation.path == "/api/v1/webhooks/whatsapp/{channel_id}" and case.method == "GET":
        return whatsapp_verification(case, draw, context)
    if case.operation.path == "/api/v1/webhooks/x/{channel_id}" and case.method == "GET":
        return x_crc(case, draw, context)
    preparer = PREPARE.get(case.operation.path)
    return preparer(case, draw, context) if preparer else Sending()
