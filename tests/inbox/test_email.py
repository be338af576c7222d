"""Email end to end: mail SES receives arrives through a signed SNS notification (shapes from
AWS's documentation), is parsed with the standard library, sanitised with nh3 and filed into
the right conversation — a reply to our reply, to a campaign message (only from the recipient
it went to), to a `reply+` address, or the sender's thread within the join window — and
replies go out through SES (moto) in the thread."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import boto3
import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from api.app import create_app
from api.core.db import Database
from api.email.sender import SendPolicy, reply_address, send_due_emails
from api.email.ses import SesClient
from api.inbox.email import mime
from tests.factories.edge import bearer, edge_settings
from tests.factories.email import (
    SENDER_DOMAIN,
    add_contacts,
    list_campaign,
    send_alone,
    start,
    verified_sender,
)
from tests.factories.flows import create_flow, send_step, template, tick
from tests.factories.workspaces import User, acting_as, add_member, create_user, one
from tests.fakes import sns_signing
from tests.fakes.jwks import JwksServer
from tests.fakes.ses_inbound import TOPIC, notification, received
from tests.fakes.ses_server import REGION, moto_ses, sent_raw_messages
from tests.fakes.sns_signing import Certificate, SnsHost, serve_sns
from tests.fakes.storage_server import SERVICE_KEY, serve_storage

Conn = psycopg.Connection[DictRow]
certificate = sns_signing.certificate
CRON = "cron-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def sns_host(certificate: Certificate) -> Iterator[SnsHost]:
    with serve_sns(certificate) as host:
        yield host


@pytest.fixture(scope="module")
def ses() -> Iterator[str]:
    with moto_ses() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def client(
    database_url: str, jwks: JwksServer, sns_host: SnsHost, ses: str
) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        public_base_url="https://edge.example.test",
        sns_topic_arns=[TOPIC],
        sns_certificate_origins=[sns_host.base_url],
        ses_region=REGION,
        ses_endpoint_url=ses,
        ses_access_key_id="testing",
        ses_secret_access_key=SecretStr("testing"),
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


class Mailbox:
    def __init__(self, client: TestClient, certificate: Certificate, host: SnsHost) -> None:
        self.client = client
        self.certificate = certificate
        self.url = f"{host.base_url}/SimpleNotificationService-inbound.pem"

    def deliver(self, raw: bytes, recipients: list[str], **options: Any) -> Any:
        signed = notification(
            self.certificate, self.url, json.dumps(received(raw, recipients, **options))
        )
        return self.post(signed)

    def post(self, signed: dict[str, Any]) -> Any:
        return self.client.post(
            "/api/v1/webhooks/ses-inbound",
            content=json.dumps(signed),
            headers={"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain"},
        )


@pytest.fixture
def mailbox(client: TestClient, certificate: Certificate, sns_host: SnsHost) -> Mailbox:
    return Mailbox(client, certificate, sns_host)


def address(prefix: str = "support") -> str:
    return f"{prefix}@in-{uuid.uuid4().hex[:8]}.shop.example"


def connect(client: TestClient, jwks: JwksServer, user: User, inbound: str, **extra: Any) -> str:
    answer = client.post(
        "/api/v1/inbox/channels/email",
        json={
            "workspace_id": str(user.workspace_id),
            "name": "Support",
            "address": inbound,
            **extra,
        },
        headers=bearer(jwks, user),
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["data"]["channel"]["id"])


def mail(
    sender: str,
    to: str,
    body: str,
    *,
    subject: str = "Where is my order?",
    html: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    message = EmailMessage()
    message["From"] = f"Jana Nováková <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.org>"
    message["Date"] = "Mon, 01 Jun 2026 10:00:00 +0200"
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    message.add_attachment(
        b"%PDF-1.4 invoice", maintype="application", subtype="pdf", filename="invoice.pdf"
    )
    return bytes(message)


def messages(conn: Conn, channel: str) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            "select m.*, c.campaign_recipient_id as conversation_recipient, i.address"
            " from public.messages m join public.conversations c on c.id = m.conversation_id"
            " join public.contact_identities i on i.id = c.identity_id"
            " where m.channel_id = %s order by m.received_at, m.id",
            (channel,),
        ).fetchall()
    ]


def test_inbound_mail_is_parsed_sanitised_and_filed_once(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox
) -> None:
    owner = create_user(conn)
    inbound = address()
    channel = connect(client, jwks, owner, inbound)
    raw = mail(
        "Jana@Example.org",
        inbound,
        "Hello, order 1001 has not arrived.\n\n"
        "On Mon, 1 Jun 2026 Shop wrote:\n> Your order shipped",
        html='<p onclick="steal()">Hello<script>alert(1)</script>'
        '<a href="javascript:alert(2)">click</a><a href="https://track.example">track</a></p>',
    )
    signed = notification(mailbox.certificate, mailbox.url, json.dumps(received(raw, [inbound])))
    assert mailbox.post(signed).json()["data"] == {"outcome": "accepted"}
    assert mailbox.post(signed).json()["data"] == {"outcome": "duplicate"}
    [row] = messages(conn, channel)
    assert row["address"] == "jana@example.org"
    assert row["text"] == "Hello, order 1001 has not arrived."
    assert row["quoted_text"].startswith("On Mon, 1 Jun 2026 Shop wrote:")
    assert "script" not in row["html"] and "javascript" not in row["html"]
    assert "onclick" not in row["html"] and 'href="https://track.example"' in row["html"]
    [attachment] = row["attachments"]
    event = one(
        conn,
        "select id from private.webhook_events where provider = 'ses_inbound' and event_id = %s",
        (signed["MessageId"],),
    )["id"]
    assert attachment == {
        "kind": "file",
        "filename": "invoice.pdf",
        "mime_type": "application/pdf",
        "size": 16,
        # The stored mail and the part: the media cron takes the file from there.
        "provider_media_id": f"{event}:0",
    }
    assert row["context"]["subject"] == "Where is my order?"
    # Base64 content (SNS action encoding) reads the same.
    again = mail("jana@example.org", inbound, "Second one")
    assert mailbox.deliver(again, [inbound], encoding="BASE64").status_code == 200
    assert [m["text"] for m in messages(conn, channel)][-1] == "Second one"
    assert len({m["conversation_id"] for m in messages(conn, channel)}) == 1


def test_forged_stale_and_unlisted_topics_are_refused(
    conn: Conn, client: TestClient, mailbox: Mailbox, certificate: Certificate
) -> None:
    raw = mail("x@example.org", "nobody@example.test", "hi")
    message = json.dumps(received(raw, ["nobody@example.test"]))
    signed = notification(certificate, mailbox.url, message)
    assert mailbox.post({**signed, "Message": message.replace("hi", "ho")}).status_code == 401
    stale = notification(
        certificate, mailbox.url, message, published=datetime.now(UTC) - timedelta(hours=3)
    )
    assert mailbox.post(stale).json()["error"]["code"] == "signature_stale"
    other_topic = certificate.sign({**signed, "TopicArn": TOPIC + "-other"}, "2")
    assert mailbox.post(other_topic).status_code == 403
    unknown = mailbox.deliver(raw, ["nobody@example.test"])
    assert unknown.status_code == 200  # stored and skipped: no channel has the address
    outcome = one(
        conn,
        "select outcome from private.webhook_events where provider = 'ses_inbound'"
        " order by received_at desc limit 1",
    )
    assert outcome["outcome"] == "ignored:no_channel"


def test_a_reply_to_a_campaign_is_linked_only_from_its_recipient(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox
) -> None:
    owner = create_user(conn)
    inbound = address()
    channel = connect(client, jwks, owner, inbound)
    readers = add_contacts(conn, owner, 2)
    campaign = list_campaign(conn, owner, readers)
    start(conn, owner, campaign)
    rows = conn.execute(
        "select id, email from public.campaign_recipients where campaign_id = %s order by email",
        (campaign,),
    ).fetchall()
    ses_ids = {}
    for row in rows:
        ses_id = f"0107019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000"
        conn.execute(
            "update public.campaign_recipients set status = 'sent', sent_at = now(),"
            " ses_message_id = %s where id = %s",
            (ses_id, row["id"]),
        )
        ses_ids[row["email"]] = (row["id"], ses_id)
    first, second = rows[0]["email"], rows[1]["email"]
    thread = {"In-Reply-To": f"<{ses_ids[first][1]}@eu-central-1.amazonses.com>"}
    mailbox.deliver(
        mail(first, inbound, "Yes please!", subject="Re: News", headers=thread), [inbound]
    )
    # The second reader forwards the first one's mail and answers it: not the first's reply.
    mailbox.deliver(mail(second, inbound, "Me too", subject="Re: News", headers=thread), [inbound])
    # An out-of-office answer to the second's own mail is kept but flagged.
    own = {
        "In-Reply-To": f"<{ses_ids[second][1]}@eu-central-1.amazonses.com>",
        "Auto-Submitted": "auto-replied",
    }
    mailbox.deliver(
        mail(second, inbound, "I am away", subject="Out of Office: News", headers=own), [inbound]
    )
    found = {(m["address"], m["text"]): m for m in messages(conn, channel)}
    assert found[(first, "Yes please!")]["campaign_recipient_id"] == ses_ids[first][0]
    assert found[(first, "Yes please!")]["conversation_recipient"] == ses_ids[first][0]
    assert found[(second, "Me too")]["campaign_recipient_id"] is None
    away = found[(second, "I am away")]
    assert away["auto_reply"] is True and away["campaign_recipient_id"] == ses_ids[second][0]
    # Beside the conversation: the campaign the reply answers (no flow sent it).
    with acting_as(conn, owner):
        panel = one(
            conn,
            "select public.conversation_customer(%s) as p",
            (found[(first, "Yes please!")]["conversation_id"],),
        )["p"]
    assert panel["answers"]["campaign_id"] == str(campaign)
    assert panel["answers"]["flow_id"] is None
    # A bounce report is no conversation.
    bounce = mail("MAILER-DAEMON@example.org", inbound, "Delivery failed", subject="Undelivered")
    mailbox.deliver(bounce, [inbound])
    assert not any(m["address"].startswith("mailer-daemon") for m in messages(conn, channel))


def test_signatures_are_set_apart_and_a_references_only_reply_links_its_recipient(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox
) -> None:
    """A signature (`-- ` or "Sent from my …") is kept apart from the new text, like quoted
    history. A client that keeps only `References` (no `In-Reply-To`) still links the reply to
    the campaign recipient it answers, when it comes from that recipient; the same header from
    someone else links nothing."""
    owner = create_user(conn)
    inbound = address()
    channel = connect(client, jwks, owner, inbound)
    [reader, forwarded_to] = add_contacts(conn, owner, 2, prefix="refs")
    campaign = list_campaign(conn, owner, [reader, forwarded_to])
    start(conn, owner, campaign)
    recipient = one(
        conn,
        "select r.id, r.email from public.campaign_recipients r"
        " where r.campaign_id = %s and r.contact_id = %s",
        (campaign, reader),
    )
    other = one(conn, "select email from public.contacts where id = %s", (forwarded_to,))["email"]
    ses_id = f"0107019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000"
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(),"
        " ses_message_id = %s where id = %s",
        (ses_id, recipient["id"]),
    )
    references = {
        "References": f"<older-{uuid.uuid4().hex}@mail.example.org>"
        f" <{ses_id}@eu-central-1.amazonses.com>"
    }
    signed_off = "Yes, size 42 please.\n\n-- \nJana Nováková\nShop Ltd, Brno"
    mailbox.deliver(
        mail(recipient["email"], inbound, signed_off, subject="Re: News", headers=references),
        [inbound],
    )
    mailbox.deliver(
        mail(other, inbound, "Me too!\n\nSent from my iPhone", headers=references), [inbound]
    )
    found = {m["address"]: m for m in messages(conn, channel)}
    mine, theirs = found[recipient["email"]], found[other]
    assert mine["text"] == "Yes, size 42 please."
    assert mine["quoted_text"].startswith("--") and "Shop Ltd, Brno" in mine["quoted_text"]
    assert mine["campaign_recipient_id"] == recipient["id"]
    assert theirs["text"] == "Me too!" and theirs["quoted_text"] == "Sent from my iPhone"
    assert theirs["campaign_recipient_id"] is None


def test_an_auto_reply_is_kept_but_never_acts_as_the_customer(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox
) -> None:
    """An `X-Autoreply` answer to a campaign, and an out-of-office subject with no header at
    all, are kept in the sender's conversation, flagged, and change nothing: a resolved
    conversation stays resolved, a snoozed one snoozed, the assignee hears nothing and the
    campaign counts no reply. The customer's own answer then does all of that."""
    owner = create_user(conn)
    teammate = add_member(conn, owner, "member")
    inbound = address()
    channel = connect(client, jwks, owner, inbound)
    [reader] = add_contacts(conn, owner, 1, prefix="away")
    campaign = list_campaign(conn, owner, [reader])
    start(conn, owner, campaign)
    recipient = one(
        conn, "select id, email from public.campaign_recipients where campaign_id = %s", (campaign,)
    )
    ses_id = f"0107019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000"
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(),"
        " ses_message_id = %s where id = %s",
        (ses_id, recipient["id"]),
    )
    sender = recipient["email"]
    mailbox.deliver(mail(sender, inbound, "Is my parcel on its way?"), [inbound])
    conversation = messages(conn, channel)[0]["conversation_id"]
    conn.execute(
        "update public.conversations set assignee_id = %s, status = 'resolved',"
        " resolved_at = now(), last_message_at = now() - interval '5 days' where id = %s",
        (teammate.id, conversation),
    )

    def state() -> tuple[str, int, Any]:
        row = one(
            conn,
            "select c.status, c.message_count, r.replied_at from public.conversations c,"
            " public.campaign_recipients r where c.id = %s and r.id = %s",
            (conversation, recipient["id"]),
        )
        return row["status"], row["message_count"], row["replied_at"]

    thread = {"In-Reply-To": f"<{ses_id}@eu-central-1.amazonses.com>"}
    away = mail(
        sender,
        inbound,
        "I am travelling until Monday.",
        subject="Re: News",
        headers={**thread, "X-Autoreply": "yes"},
    )
    assert mailbox.deliver(away, [inbound]).status_code == 200
    assert state() == ("resolved", 2, None)
    conn.execute(
        "update public.conversations set status = 'snoozed',"
        " snoozed_until = now() + interval '1 day' where id = %s",
        (conversation,),
    )
    mailbox.deliver(mail(sender, inbound, "Back on Monday.", subject="Out of office"), [inbound])
    assert state() == ("snoozed", 3, None)
    with acting_as(conn, teammate):
        assert conn.execute("select kind from public.notifications").fetchall() == []
    kept = [(m["text"], m["auto_reply"]) for m in messages(conn, channel)]
    assert kept == [
        ("Is my parcel on its way?", False),
        ("I am travelling until Monday.", True),
        ("Back on Monday.", True),
    ]
    replies = "select replies from analytics.campaign_performance where campaign_id = %s"
    assert one(conn, replies, (campaign,))["replies"] == 0

    mailbox.deliver(
        mail(sender, inbound, "Yes, order me one", subject="Re: News", headers=thread), [inbound]
    )
    status, count, replied_at = state()
    assert (status, count) == ("open", 4) and replied_at is not None
    with acting_as(conn, teammate):
        notified = conn.execute("select kind from public.notifications").fetchall()
    assert [n["kind"] for n in notified] == ["conversation.replied"]
    assert one(conn, replies, (campaign,))["replies"] == 1


def test_auto_reply_headers_are_read_as_rfc_3834_and_vendors_write_them() -> None:
    """`Auto-Submitted: no` is a person's mail (RFC 3834); any other value, `X-Autoreply`,
    `X-Autorespond`, `Precedence: auto_reply` and out-of-office subjects are auto-replies."""

    def flagged(subject: str = "Re: News", **headers: str) -> bool:
        return mime.parse(
            mail("a@example.org", "b@example.test", "x", subject=subject, headers=headers)
        ).auto_reply

    assert not flagged()
    assert not flagged(**{"Auto-Submitted": "no"})
    assert flagged(**{"Auto-Submitted": "auto-replied"})
    assert flagged(**{"X-Autoreply": "yes"})
    assert flagged(**{"X-Autorespond": "Out of office"})
    assert flagged(Precedence="auto_reply")
    assert flagged(subject="Automatic reply: News")
    assert flagged(subject="Out of Office: News")


def test_campaign_mail_carries_its_recipients_reply_address_and_the_reply_threads_back(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    mailbox: Mailbox,
    ses: str,
    database_url: str,
) -> None:
    """The send worker gives each campaign email `Reply-To: reply+r<recipient>@<the inbox's
    domain>`; a reply from a client that drops the thread headers still lands in the inbox,
    linked to that recipient, and counts in the campaign's reply rate."""
    owner = create_user(conn)
    inbound = address()
    domain = inbound.split("@")[1]
    channel = connect(client, jwks, owner, inbound)
    readers = add_contacts(conn, owner, 2)
    campaign = list_campaign(conn, owner, readers)
    # Only this campaign is sending, and the deliverability counts other tests left in this
    # database cannot hold it back with the platform brake.
    send_alone(conn)
    start(conn, owner, campaign)
    sender = SesClient(
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        endpoint_url=ses,
        configuration_set=None,
        max_connections=4,
    )
    sender.create_identity(SENDER_DOMAIN, adopt_existing=True)
    database = Database(database_url, pool_mode="session", max_size=4, timeout_seconds=10)
    database.open()
    try:
        policy_ = SendPolicy(
            link_secret="link-" + uuid.uuid4().hex,
            link_days=30,
            max_per_second=1000,
            concurrency=2,
            base_url="https://edge.example.test",
        )
        report = send_due_emails(database, sender, policy_, budget_seconds=60)
    finally:
        database.close()
    assert report.sent >= 2
    recipients = {
        r["email"]: r["id"]
        for r in conn.execute(
            "select id, email from public.campaign_recipients where campaign_id = %s", (campaign,)
        )
    }
    sent = {
        m["destinations"][0]: BytesParser(policy=policy.default).parsebytes(m["raw_data"].encode())
        for m in sent_raw_messages(ses)
        if m["destinations"][0] in recipients
    }
    assert set(sent) == set(recipients)
    for email, recipient in recipients.items():
        assert sent[email]["Reply-To"] == f"reply+r{recipient.hex}@{domain}"

    first = sorted(recipients)[0]
    reply_to = str(sent[first]["Reply-To"])
    mailbox.deliver(mail(first, reply_to, "Count me in!", subject="Re: News"), [reply_to])
    [reply] = messages(conn, channel)
    assert reply["text"] == "Count me in!" and reply["address"] == first
    assert reply["campaign_recipient_id"] == recipients[first]
    performance = one(
        conn,
        "select replies, reply_rate from analytics.campaign_performance where campaign_id = %s",
        (campaign,),
    )
    assert (performance["replies"], float(performance["reply_rate"])) == (1, 0.5)


def test_the_reply_address_keeps_a_campaigns_own_reply_to_on_another_domain() -> None:
    recipient = uuid.uuid4()
    row = {"recipient_id": recipient, "from_email": "news@shop.example", "reply_to": None}
    assert reply_address(row, []) is None
    assert reply_address(row, ["in.shop.example", "shop.example"]) == (
        f"reply+r{recipient.hex}@shop.example"
    )
    assert reply_address(row, ["in.shop.example"]) == f"reply+r{recipient.hex}@in.shop.example"
    chosen = {**row, "reply_to": "sales@Other.example"}
    assert reply_address(chosen, ["shop.example"]) == "sales@Other.example"
    assert reply_address(chosen, ["other.example", "shop.example"]) == (
        f"reply+r{recipient.hex}@other.example"
    )


def test_replies_go_out_in_the_thread_and_answers_come_back_to_it(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox, ses: str
) -> None:
    owner = create_user(conn)
    inbound = address()
    domain = inbound.split("@")[1]
    boto3.client(
        "sesv2",
        region_name=REGION,
        endpoint_url=ses,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_email_identity(EmailIdentity=domain)
    channel = connect(client, jwks, owner, inbound, from_name="Shop support")
    first = mail("petra@example.org", inbound, "Can I return shoes?", subject="Returns")
    mailbox.deliver(first, [inbound])
    conversation = messages(conn, channel)[0]["conversation_id"]
    answer = client.post(
        f"/api/v1/inbox/conversations/{conversation}/messages",
        json={"text": "Yes, within 30 days."},
        headers=bearer(jwks, owner),
    )
    assert answer.status_code == 201, answer.text
    sent = answer.json()["data"]
    assert sent["status"] == "sent"
    raw = [m for m in sent_raw_messages(ses) if "Yes, within 30 days." in m["raw_data"]][-1][
        "raw_data"
    ]
    outgoing = BytesParser(policy=policy.default).parsebytes(raw.encode())
    original = messages(conn, channel)[0]["context"]["email_message_id"]
    assert outgoing["Subject"] == "Re: Returns"
    assert outgoing["In-Reply-To"] == f"<{original}>"
    assert outgoing["Reply-To"] == f"reply+c{uuid.UUID(str(conversation)).hex}@{domain}"
    assert outgoing["From"] == f"Shop support <{inbound}>"
    ours = one(conn, "select context from public.messages where id = %s", (sent["id"],))["context"]

    # The customer answers our reply in the thread...
    reply = mail(
        "petra@example.org",
        inbound,
        "Thanks!",
        subject="Re: Returns",
        headers={"In-Reply-To": f"<{ours['email_message_id']}>"},
    )
    # ...and, from a client that drops the headers, to the Reply-To address.
    dropped = mail(
        "petra.other@example.org",
        f"reply+c{uuid.UUID(str(conversation)).hex}@{domain}",
        "One more thing",
    )
    mailbox.deliver(reply, [inbound])
    mailbox.deliver(dropped, [f"reply+c{uuid.UUID(str(conversation)).hex}@{domain}"])
    rows = messages(conn, channel)
    assert {r["conversation_id"] for r in rows} == {conversation}
    assert [r["text"] for r in rows if r["direction"] == "inbound"] == [
        "Can I return shoes?",
        "Thanks!",
        "One more thing",
    ]


def test_a_conversations_reply_address_counts_only_on_its_own_domain(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox
) -> None:
    """`reply+c<conversation>@…` names a conversation only on its channel's domain: the same
    token on another workspace's receiving domain files nothing into that conversation."""
    other, owner = create_user(conn), create_user(conn)
    theirs, ours = address(), address()
    connect(client, jwks, other, theirs)
    channel = connect(client, jwks, owner, ours)
    mailbox.deliver(mail("karel@example.org", ours, "Where is my refund?"), [ours])
    conversation = uuid.UUID(str(messages(conn, channel)[0]["conversation_id"]))
    elsewhere = f"reply+c{conversation.hex}@{theirs.split('@')[1]}"
    answer = mailbox.deliver(mail("karel@example.org", elsewhere, "Slipped in?"), [elsewhere])
    assert answer.status_code == 200
    assert [m["text"] for m in messages(conn, channel)] == ["Where is my refund?"]
    outcome = one(
        conn,
        "select outcome from private.webhook_events where provider = 'ses_inbound'"
        " order by received_at desc limit 1",
    )
    assert outcome["outcome"] == "ignored:no_channel"
    home = f"reply+c{conversation.hex}@{ours.split('@')[1]}"
    mailbox.deliver(mail("karel@example.org", home, "Any news?"), [home])
    assert [m["text"] for m in messages(conn, channel)] == ["Where is my refund?", "Any news?"]


def ses_event(kind: str, message: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
    """An SES event record (configuration-set event publishing) for an inbox reply."""
    return {
        "eventType": kind,
        "mail": {
            "timestamp": datetime.now(UTC).isoformat(),
            "source": "support@shop.example",
            "messageId": message["provider_message_id"],
            "destination": ["petra@example.org"],
            "tags": {
                "ses:configuration-set": ["growthbase"],
                "inbox_message": [message["id"]],
            },
        },
        kind.lower(): {"timestamp": datetime.now(UTC).isoformat(), **details},
    }


def test_an_email_replys_status_follows_ses_events(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox, ses: str
) -> None:
    """SES's events for a reply sent from the inbox move it forward like Meta's statuses do:
    delivered, then read on an open (in any order, twice: the furthest wins), and a bounce
    fails it with the recipient server's answer for the member to see."""
    owner = create_user(conn)
    inbound = address()
    boto3.client(
        "sesv2",
        region_name=REGION,
        endpoint_url=ses,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_email_identity(EmailIdentity=inbound.split("@")[1])
    channel = connect(client, jwks, owner, inbound)
    mailbox.deliver(mail("petra@example.org", inbound, "Do you ship abroad?"), [inbound])
    conversation = messages(conn, channel)[0]["conversation_id"]
    sent = []
    for text in ("Yes, everywhere in the EU.", "And to Norway."):
        answer = client.post(
            f"/api/v1/inbox/conversations/{conversation}/messages",
            json={"text": text},
            headers=bearer(jwks, owner),
        )
        assert answer.status_code == 201 and answer.json()["data"]["status"] == "sent"
        sent.append(answer.json()["data"])

    def publish(record: dict[str, Any]) -> None:
        signed = notification(mailbox.certificate, mailbox.url, json.dumps(record))
        answer = client.post(
            "/api/v1/webhooks/ses",
            content=json.dumps(signed),
            headers={"x-amz-sns-message-type": "Notification", "Content-Type": "text/plain"},
        )
        assert answer.status_code == 200, answer.text

    delivered = ses_event("Delivery", sent[0], {"recipients": ["petra@example.org"]})
    opened = ses_event("Open", sent[0], {"userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"})
    for record in (opened, delivered, opened):
        publish(record)
    bounced = {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [
            {"emailAddress": "petra@example.org", "diagnosticCode": "smtp; 550 5.1.1 user unknown"}
        ],
    }
    publish(ses_event("Bounce", sent[1], bounced))
    with acting_as(conn, owner):
        rows = {
            str(r["id"]): (r["status"], r["error_code"], r["error_text"])
            for r in conn.execute(
                "select id, status, error_code, error_text from public.messages"
                " where conversation_id = %s and direction = 'outbound'",
                (conversation,),
            ).fetchall()
        }
    assert rows == {
        sent[0]["id"]: ("read", None, None),
        sent[1]["id"]: ("failed", "bounce:Permanent:General", "smtp; 550 5.1.1 user unknown"),
    }


def test_a_new_mail_after_the_join_window_starts_a_new_conversation(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox
) -> None:
    owner = create_user(conn)
    inbound = address()
    channel = connect(client, jwks, owner, inbound, join_window_hours=24)
    mailbox.deliver(mail("eva@example.org", inbound, "First"), [inbound])
    mailbox.deliver(mail("eva@example.org", inbound, "Soon after"), [inbound])
    conn.execute(
        "update public.conversations set last_message_at = now() - interval '2 days'"
        " where channel_id = %s",
        (channel,),
    )
    mailbox.deliver(mail("eva@example.org", inbound, "Days later"), [inbound])
    rows = conn.execute(
        "select status, message_count from public.conversations where channel_id = %s"
        " order by created_at",
        (channel,),
    ).fetchall()
    assert [(r["status"], r["message_count"]) for r in rows] == [("resolved", 2), ("open", 1)]


def test_malformed_mime_and_spam_are_stored_and_never_a_500(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox
) -> None:
    owner = create_user(conn)
    inbound = address()
    channel = connect(client, jwks, owner, inbound)
    broken = (
        b"From: =?utf-8?B?not base64?= <broken@example.org>\r\nTo: "
        + inbound.encode()
        + b'\r\nContent-Type: multipart/mixed; boundary="never-closed"\r\n\r\n--never-closed\r\n'
        b"Content-Type: text/plain; charset=unknown-8bit-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        b"!!!not-base64!!!\r\n"
    )
    assert mailbox.deliver(broken, [inbound]).status_code == 200
    assert (
        mailbox.deliver(
            mail("spam@example.org", inbound, "Buy now"), [inbound], spam="FAIL"
        ).status_code
        == 200
    )
    senders = {m["address"] for m in messages(conn, channel)}
    assert "spam@example.org" not in senders
    failed = one(
        conn,
        "select count(*) as n from private.webhook_events where provider = 'ses_inbound'"
        " and status not in ('applied', 'ignored')",
    )
    assert failed["n"] == 0


def test_replies_count_for_campaign_performance_and_stop_suppresses(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox
) -> None:
    owner = create_user(conn)
    stranger = create_user(conn)
    inbound = address()
    connect(client, jwks, owner, inbound)
    readers = add_contacts(conn, owner, 4)
    campaign = list_campaign(conn, owner, readers)
    start(conn, owner, campaign)
    rows = conn.execute(
        "select id, email from public.campaign_recipients where campaign_id = %s order by email",
        (campaign,),
    ).fetchall()
    ids = {}
    for row in rows:
        ses_id = f"0107019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000"
        conn.execute(
            "update public.campaign_recipients set status = 'sent', sent_at = now(),"
            " ses_message_id = %s where id = %s",
            (ses_id, row["id"]),
        )
        ids[row["email"]] = ses_id
    emails = [r["email"] for r in rows]

    def answer(sender: str, text: str, **headers: str) -> None:
        thread = {"In-Reply-To": f"<{ids[sender]}@eu-central-1.amazonses.com>", **headers}
        mailbox.deliver(mail(sender, inbound, text, subject="Re: News", headers=thread), [inbound])

    answer(emails[0], "Interested!")
    answer(emails[0], "Also, one more question")
    answer(emails[1], "Out of office until Monday", **{"Auto-Submitted": "auto-replied"})
    answer(emails[2], "STOP")
    performance = one(
        conn,
        "select sent, replies, reply_rate from analytics.campaign_performance"
        " where campaign_id = %s",
        (campaign,),
    )
    assert (performance["sent"], performance["replies"], str(performance["reply_rate"])) == (
        4,
        2,
        "0.5000",
    )
    suppressed = one(
        conn,
        "select reason, detail from public.email_suppressions"
        " where workspace_id = %s and email = %s",
        (owner.workspace_id, emails[2]),
    )
    assert suppressed["reason"] == "unsubscribe" and "STOP" in suppressed["detail"].upper()
    opt_out = one(
        conn,
        "select kind, keyword, source_message_id from public.channel_suppressions"
        " where workspace_id = %s and address = %s",
        (owner.workspace_id, emails[2]),
    )
    assert (opt_out["kind"], opt_out["keyword"]) == ("email", "stop")
    assert opt_out["source_message_id"] is not None
    with acting_as(conn, stranger):
        seen = conn.execute(
            "select count(*) as n from analytics.campaign_replies() where campaign_id = %s",
            (campaign,),
        ).fetchone()
    assert seen["n"] == 0


def test_a_reply_is_a_replied_contact_event_flows_can_exit_on(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox
) -> None:
    owner = create_user(conn)
    inbound = address()
    connect(client, jwks, owner, inbound)
    [reader] = add_contacts(conn, owner, 1, prefix="sequence")
    campaign = list_campaign(conn, owner, [reader])
    start(conn, owner, campaign)
    recipient = one(
        conn, "select id, email from public.campaign_recipients where campaign_id = %s", (campaign,)
    )
    ses_id = f"0107019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000"
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(),"
        " ses_message_id = %s where id = %s",
        (ses_id, recipient["id"]),
    )
    thread = {"In-Reply-To": f"<{ses_id}@eu-central-1.amazonses.com>"}
    away = {**thread, "Auto-Submitted": "auto-replied"}
    mailbox.deliver(mail(recipient["email"], inbound, "Away", headers=away), [inbound])
    mailbox.deliver(mail(recipient["email"], inbound, "Not interested", headers=thread), [inbound])
    events = conn.execute(
        "select type, name, properties from public.contact_events"
        " where contact_id = %s and type = 'custom'",
        (reader,),
    ).fetchall()
    assert len(events) == 1
    assert events[0]["name"] == "replied"
    assert events[0]["properties"]["campaign_id"] == str(campaign)
    assert events[0]["properties"]["channel"] == "email"


def test_replies_to_a_flow_email_count_for_its_step_and_flow(
    conn: Conn, client: TestClient, jwks: JwksServer, mailbox: Mailbox
) -> None:
    """A flow's send step mails as its own campaign: a reply to it (auto-replies excepted)
    counts in analytics.flow_step_reply_rates and flow_reply_rates, for members only, and
    ends the replier's run when the flow exits on `replied` (a cold-email sequence stops)."""
    conn.execute("update public.flows set status = 'paused' where status = 'active'")
    owner, stranger = create_user(conn), create_user(conn)
    inbound = address()
    connect(client, jwks, owner, inbound)
    sender = verified_sender(conn, owner)
    steps = [
        send_step("hello", template(conn, owner), sender, next_key="follow_up_later"),
        {"key": "follow_up_later", "kind": "wait", "config": {"days": 3}},
    ]
    flow = create_flow(
        conn,
        owner,
        "tag_added",
        steps,
        trigger_config={"tag": "new"},
        exit_events=[{"type": "custom", "name": "replied"}],
    )
    conn.execute(
        "insert into public.contacts (workspace_id, email, consent_state, tags)"
        " select %s, 'flow' || n || '-' || %s || '@mail.example.org', 'granted', '{new}'"
        " from generate_series(1, 4) n",
        (owner.workspace_id, uuid.uuid4().hex[:8]),
    )
    tick(conn)
    rows = conn.execute(
        "select r.id, r.email from public.campaign_recipients r"
        " join public.flow_steps s on s.campaign_id = r.campaign_id"
        " where s.flow_id = %s order by r.email",
        (flow,),
    ).fetchall()
    assert len(rows) == 4
    ses_ids = {}
    for row in rows:
        ses_id = f"0107019{uuid.uuid4().hex[:9]}-{uuid.uuid4()}-000000"
        conn.execute(
            "update public.campaign_recipients set status = 'sent', sent_at = now(),"
            " ses_message_id = %s where id = %s",
            (ses_id, row["id"]),
        )
        ses_ids[row["email"]] = ses_id
    emails = [r["email"] for r in rows]

    def answer(address_: str, text: str, **headers: str) -> None:
        thread = {"In-Reply-To": f"<{ses_ids[address_]}@eu-central-1.amazonses.com>", **headers}
        raw = mail(address_, inbound, text, subject="Re: Welcome", headers=thread)
        mailbox.deliver(raw, [inbound])

    answer(emails[0], "Thanks, a question about sizes")
    answer(emails[0], "And one more")
    answer(emails[1], "I am out of office", **{"Auto-Submitted": "auto-replied"})
    with acting_as(conn, owner):
        [step] = conn.execute(
            "select step_key, sent, replies, reply_rate from analytics.flow_step_reply_rates"
            " where flow_id = %s",
            (flow,),
        ).fetchall()
        [total] = conn.execute(
            "select sent, replies, reply_rate from analytics.flow_reply_rates where flow_id = %s",
            (flow,),
        ).fetchall()
    assert (step["step_key"], step["sent"], step["replies"], str(step["reply_rate"])) == (
        "hello",
        4,
        1,
        "0.2500",
    )
    assert (total["sent"], total["replies"], str(total["reply_rate"])) == (4, 1, "0.2500")
    tick(conn)
    ended = {
        r["email"]: (r["status"], r["exit_reason"])
        for r in conn.execute(
            "select c.email, r.status, r.exit_reason from public.flow_runs r"
            " join public.contacts c on c.id = r.contact_id where r.flow_id = %s",
            (flow,),
        ).fetchall()
    }
    assert ended[emails[0]] == ("converted", "goal")
    # Beside the replier's conversation: the flow and the step their reply answers.
    replied = one(
        conn,
        "select m.conversation_id, s.id as step from public.messages m"
        " join public.campaign_recipients r on r.id = m.campaign_recipient_id"
        " join public.flow_steps s on s.campaign_id = r.campaign_id"
        " where r.email = %s and m.direction = 'inbound' limit 1",
        (emails[0],),
    )
    with acting_as(conn, owner):
        panel = one(
            conn, "select public.conversation_customer(%s) as p", (replied["conversation_id"],)
        )["p"]
    assert (panel["answers"]["flow_id"], panel["answers"]["flow_step_id"]) == (
        str(flow),
        str(replied["step"]),
    )
    assert ended[emails[1]] == ("active", None)  # an auto-reply does not stop the sequence
    with acting_as(conn, stranger):
        assert (
            conn.execute(
                "select * from analytics.flow_step_reply_rates where flow_id = %s", (flow,)
            ).fetchall()
            == []
        )
        assert conn.execute("select * from analytics.flow_step_replies()").fetchall() == []


def test_attachments_are_stored_in_the_inbox_bucket_and_active_content_is_refused(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    mailbox: Mailbox,
    database_url: str,
) -> None:
    owner = create_user(conn)
    inbound = address()
    channel = connect(client, jwks, owner, inbound)
    message = EmailMessage()
    message["From"] = "petra@example.org"
    message["To"] = inbound
    message["Subject"] = "Two files"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.org>"
    message.set_content("Please see the attached.")
    message.add_attachment(
        b"%PDF-1.4 the order", maintype="application", subtype="pdf", filename="order.pdf"
    )
    message.add_attachment(
        b"<script>steal()</script>", maintype="text", subtype="html", filename="view.html"
    )
    assert mailbox.deliver(bytes(message), [inbound]).status_code == 200
    with serve_storage() as storage:
        settings = edge_settings(
            database_url,
            jwks,
            integrations_encryption_key=SecretStr(Fernet.generate_key().decode()),
            cron_secret=SecretStr(CRON),
            supabase_service_key=SecretStr(SERVICE_KEY),
            supabase_storage_url=storage.base_url,
        )
        with TestClient(create_app(settings)) as edge:
            while one(
                conn,
                "select count(*) as n from private.inbox_media_queue"
                " where status = 'pending' and next_attempt_at <= now()",
            )["n"]:
                answer = edge.get("/api/v1/cron/inbox", headers={"Authorization": f"Bearer {CRON}"})
                assert answer.status_code == 200, answer.text
        stored = {p: d for (bucket, p), d in storage.objects.items() if bucket == "inbox"}
    [row] = messages(conn, channel)
    pdf, page = row["attachments"]
    path = f"{owner.workspace_id}/{row['conversation_id']}/{row['id']}/0-order.pdf"
    assert (pdf["status"], pdf["storage_path"], pdf["size"]) == ("stored", path, 18)
    assert stored[path] == b"%PDF-1.4 the order"
    assert page["status"] == "refused" and "storage_path" not in page
    assert [p for p in stored if p.startswith(f"{owner.workspace_id}/")] == [path]


def test_a_cold_email_sequence_follows_up_in_the_first_mails_thread_until_answered(
    conn: Conn,
    client: TestClient,
    jwks: JwksServer,
    mailbox: Mailbox,
    ses: str,
    database_url: str,
) -> None:
    """A sequence (first mail, three days, a follow-up with `in_thread`) through the flow
    engine, the send worker and moto's SES: the follow-up answers the first mail's Message-ID
    (SES's, `<SES id>@<region>.amazonses.com`) with `Re: <its subject as the contact got it>`;
    the contact who answered in between exits and gets none; a contact whose first mail failed
    and a step without `in_thread` get a plain mail; a reply to the follow-up is its own."""
    conn.execute("update public.flows set status = 'paused' where status = 'active'")
    owner = create_user(conn)
    inbound = address()
    connect(client, jwks, owner, inbound)
    sender = verified_sender(conn, owner)
    # The first mail needs the contact's city: a contact without one fails it.
    first = template(
        conn, owner, "Quick question, {{ first_name }}", "<p>{{ attributes.city }}</p>"
    )
    later = template(conn, owner, "Following up", "<p>Any thoughts?</p>")

    def sequence(tag: str, **follow_up: Any) -> uuid.UUID:
        steps = [
            send_step("first", first, sender, next_key="pause"),
            {"key": "pause", "kind": "wait", "config": {"days": 3}, "next": "again"},
            send_step("again", later, sender, **follow_up),
        ]
        return create_flow(
            conn,
            owner,
            "tag_added",
            steps,
            trigger_config={"tag": tag},
            exit_events=[{"type": "custom", "name": "replied"}],
        )

    threaded, plain = sequence("cold", in_thread=True), sequence("plain")
    run = uuid.uuid4().hex[:8]
    people = {name: f"{name}-{run}@mail.example.org" for name in ("ada", "bob", "cy", "dan")}
    for name, email in people.items():
        conn.execute(
            "insert into public.contacts (workspace_id, email, first_name, consent_state, tags,"
            " attributes) values (%s, %s, %s, 'granted', %s, %s)",
            (
                owner.workspace_id,
                email,
                name.capitalize(),
                ["plain" if name == "dan" else "cold"],
                Jsonb({} if name == "cy" else {"city": "Brno"}),
            ),
        )
    paused = [
        r["id"]
        for r in conn.execute(
            "update public.campaigns c set status = 'paused' where c.status = 'sending'"
            " and c.workspace_id <> %s returning id",
            (owner.workspace_id,),
        )
    ]
    sender_ses = SesClient(
        region=REGION,
        access_key_id="testing",
        secret_access_key="testing",
        endpoint_url=ses,
        configuration_set=None,
        max_connections=4,
    )
    sender_ses.create_identity(SENDER_DOMAIN, adopt_existing=True)
    database = Database(database_url, pool_mode="session", max_size=4, timeout_seconds=10)
    database.open()
    policy_ = SendPolicy(
        link_secret="link-" + uuid.uuid4().hex,
        link_days=30,
        max_per_second=1000,
        concurrency=2,
        base_url="https://edge.example.test",
    )

    def sent(step: str) -> dict[str, Any]:
        """The raw messages moto got for the step, by recipient."""
        rows = conn.execute(
            "select r.email, r.ses_message_id from public.campaign_recipients r"
            " join public.flow_steps s on s.campaign_id = r.campaign_id"
            " where s.flow_id = any(%s) and s.key = %s and r.status = 'sent'",
            ([threaded, plain], step),
        ).fetchall()
        ours = {r["email"] for r in rows}
        return {
            m["destinations"][0]: BytesParser(policy=policy.default).parsebytes(
                m["raw_data"].encode()
            )
            for m in sent_raw_messages(ses)
            if m["destinations"][0] in ours
            and ("Any thoughts?" in m["raw_data"]) == (step == "again")
        }

    try:
        tick(conn)
        assert send_due_emails(database, sender_ses, policy_, budget_seconds=60).sent == 3
        ses_ids = {
            r["email"]: r["ses_message_id"]
            for r in conn.execute(
                "select r.email, r.ses_message_id, r.status from public.campaign_recipients r"
                " where r.workspace_id = %s",
                (owner.workspace_id,),
            )
        }
        assert ses_ids[people["cy"]] is None  # rendering failed: no first mail
        firsts = sent("first")
        assert set(firsts) == {people["ada"], people["bob"], people["dan"]}
        assert firsts[people["ada"]]["Subject"] == "Quick question, Ada"
        assert firsts[people["ada"]]["In-Reply-To"] is None  # a step without in_thread
        message_id = {
            email: f"<{ses_id}@{REGION}.amazonses.com>" for email, ses_id in ses_ids.items()
        }
        # Bob answers the first mail: his run ends and he gets no follow-up.
        answer = mail(
            people["bob"],
            inbound,
            "Not now, thanks",
            subject="Re: Quick question, Bob",
            headers={"In-Reply-To": message_id[people["bob"]]},
        )
        assert mailbox.deliver(answer, [inbound]).status_code < 300
        tick(conn)
        for flow in (threaded, plain):
            conn.execute(
                "update public.flow_runs set due_at = now() - interval '1 second'"
                " where flow_id = %s and status = 'active'",
                (flow,),
            )
        tick(conn)
        assert send_due_emails(database, sender_ses, policy_, budget_seconds=60).sent == 3
    finally:
        database.close()
        conn.execute("update public.campaigns set status = 'sending' where id = any(%s)", (paused,))

    again = sent("again")
    assert set(again) == {people["ada"], people["cy"], people["dan"]}
    ada = again[people["ada"]]
    assert ada["In-Reply-To"] == message_id[people["ada"]]
    assert ada["References"] == message_id[people["ada"]]
    assert ada["Subject"] == "Re: Quick question, Ada"
    # No first mail went to Cy, and Dan's follow-up is not in_thread: plain mail, own subject.
    for name in ("cy", "dan"):
        assert again[people[name]]["In-Reply-To"] is None, name
        assert again[people[name]]["References"] is None, name
        assert again[people[name]]["Subject"] == "Following up", name
    ended = {
        r["email"]: r["status"]
        for r in conn.execute(
            "select c.email, r.status from public.flow_runs r"
            " join public.contacts c on c.id = r.contact_id where r.flow_id = %s",
            (threaded,),
        )
    }
    assert ended[people["bob"]] == "converted"

    # Ada answers the follow-up (her client quotes the whole thread): the reply is the
    # follow-up's, from her address.
    follow_up = one(
        conn,
        "select r.id, r.ses_message_id from public.campaign_recipients r"
        " join public.flow_steps s on s.campaign_id = r.campaign_id"
        " where s.flow_id = %s and s.key = 'again' and r.email = %s",
        (threaded, people["ada"]),
    )
    follow_up_id = f"<{follow_up['ses_message_id']}@{REGION}.amazonses.com>"
    thread = {
        "In-Reply-To": follow_up_id,
        "References": f"{message_id[people['ada']]} {follow_up_id}",
    }
    raw = mail(
        people["ada"], inbound, "Yes, let's talk", subject=str(ada["Subject"]), headers=thread
    )
    assert mailbox.deliver(raw, [inbound]).status_code < 300
    replied = one(
        conn,
        "select campaign_recipient_id from public.messages"
        " where direction = 'inbound' and text = %s",
        ("Yes, let's talk",),
    )
    assert replied["campaign_recipient_id"] == follow_up["id"]
