"""Raw webhook payloads that name no owner on arrival (SES events, inbound mail, Razorpay, Make
callbacks) are attributed to the workspace they were matched to when applied, so its own
retention applies and erasing a person there finds them; a payload that matched nobody, or that
names a person its workspace erased, keeps only its non-personal fields."""

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import psycopg
import pytest
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from api.core.db import Database
from api.inbox.email.webhook import applier as inbound_applier
from api.webhooks.intake import StoredEvent
from tests.factories.email import list_campaign, start
from tests.factories.inbox import email_channel
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
from tests.fakes.ses_inbound import received

Conn = psycopg.Connection[DictRow]


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    db = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=10)
    db.open()
    yield db
    db.close()


def stored(conn: Conn, event_id: uuid.UUID) -> dict[str, Any]:
    return dict(
        one(
            conn,
            "select workspace_id, status, body, identity_keys from private.webhook_events"
            " where id = %s",
            (event_id,),
        )
    )


def key_of(conn: Conn, token: str) -> str:
    return str(one(conn, "select (private.identifier_keys(array[%s]))[1] as k", (token,))["k"])


def ses_event(conn: Conn, email: str, message_id: str, event_type: str = "Delivery") -> uuid.UUID:
    """An SES event as SNS delivers it (the Message a JSON string), stored and applied as the
    intake does after verifying its signature."""
    event = {
        "eventType": event_type,
        "mail": {
            "timestamp": "2026-06-03T10:00:00.000Z",
            "messageId": message_id,
            "source": "hello@news.example.com",
            "destination": [email],
            "commonHeaders": {"to": [f"Jana Dvořák <{email}>"], "subject": "News"},
        },
        "delivery": {"timestamp": "2026-06-03T10:00:01.000Z", "recipients": [email]},
        "complaint": {
            "timestamp": "2026-06-03T12:00:00.000Z",
            "complainedRecipients": [{"emailAddress": email}],
        },
    }
    envelope = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:eu-central-1:123456789012:ses-events",
        "Message": json.dumps(event),
        "Timestamp": "2026-06-03T10:00:02.000Z",
    }
    event_id = one(
        conn,
        "select id from private.record_webhook_event('ses', %s, %s)",
        (envelope["MessageId"], json.dumps(envelope)),
    )["id"]
    conn.execute("select private.apply_ses_event(%s)", (event_id,))
    return uuid.UUID(str(event_id))


def mailed_contact(conn: Conn, owner: User) -> tuple[uuid.UUID, str, str]:
    """A contact sent a campaign: its id, address and the SES message id."""
    fund(conn, owner, 100, "team")
    email = f"jana-{uuid.uuid4().hex[:8]}@mail.example.org"
    with acting_as(conn, owner):
        contact = one(
            conn,
            "insert into public.contacts (workspace_id, email, first_name, consent_state)"
            " values (%s, %s, 'Jana', 'granted') returning id",
            (owner.workspace_id, email),
        )["id"]
    assert start(conn, owner, list_campaign(conn, owner, [contact])) == 1
    message_id = f"0100019{uuid.uuid4().hex}-000000"
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(),"
        " ses_message_id = %s where contact_id = %s",
        (message_id, contact),
    )
    return uuid.UUID(str(contact)), email, message_id


def test_ses_events_are_attributed_when_applied_and_follow_the_workspaces_days(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    _, email, message_id = mailed_contact(conn, owner)
    ours = ses_event(conn, email, message_id)
    stranger = f"someone-{uuid.uuid4().hex[:8]}@elsewhere.example"
    unknown = ses_event(conn, stranger, f"0100019{uuid.uuid4().hex}-111111")

    event = stored(conn, ours)
    assert (event["workspace_id"], event["status"]) == (owner.workspace_id, "applied")
    assert email in event["body"]
    # Matched to no workspace: nobody could erase or export anyone from it, so only what it
    # was is kept (the message id, the event type, times).
    nobodys = stored(conn, unknown)
    assert nobodys["workspace_id"] is None and nobodys["status"] == "ignored"
    assert stranger not in nobodys["body"] and "Jana" not in nobodys["body"]
    skeleton = json.loads(nobodys["body"])
    assert skeleton["stripped"] is True
    assert skeleton["Message"]["eventType"] == "Delivery"
    assert skeleton["Message"]["mail"]["messageId"].endswith("-111111")
    assert key_of(conn, stranger) not in nobodys["identity_keys"]

    with acting_as(conn, owner):
        conn.execute(
            "insert into public.workspace_privacy_settings (workspace_id, webhook_payload_days)"
            " values (%s, 3) on conflict (workspace_id) do update set webhook_payload_days = 3",
            (owner.workspace_id,),
        )
    conn.execute(
        "update private.webhook_events set received_at = now() - interval '5 days'"
        " where id = any(%s)",
        ([ours, unknown],),
    )
    conn.execute("select private.prune_retention(10000)")
    left = conn.execute(
        "select id from private.webhook_events where id = any(%s)", ([ours, unknown],)
    ).fetchall()
    # The workspace's 3 days took its event; the stripped one keeps the platform's 30.
    assert [r["id"] for r in left] == [unknown]


def test_an_ses_event_applied_after_the_erasure_keeps_nothing_of_the_person(conn: Conn) -> None:
    owner = create_user(conn)
    contact, email, message_id = mailed_contact(conn, owner)
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact,))
    late = stored(conn, ses_event(conn, email, message_id, "Complaint"))
    assert late["workspace_id"] == owner.workspace_id
    assert email not in late["body"] and "Jana" not in late["body"]
    assert json.loads(late["body"])["Message"]["eventType"] == "Complaint"


def inbound_mail(sender: str, to: str) -> bytes:
    message = EmailMessage()
    message["From"] = f"Jana Dvořák <{sender}>"
    message["To"] = to
    message["Subject"] = "Please delete my data"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.org>"
    message["Date"] = "Mon, 01 Jun 2026 10:00:00 +0200"
    message.set_content("Hello, I live at Dlouhá 12, Praha.")
    return bytes(message)


def deliver_mail(conn: Conn, database: Database, raw: bytes, to: str | list[str]) -> uuid.UUID:
    """A Received notification (Base64 content, the sender only inside it) as SNS delivers it,
    stored and applied by the edge's inbound-mail applier."""
    body = json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:growthbase-inbound",
            "Message": json.dumps(
                received(
                    raw,
                    to if isinstance(to, list) else [to],
                    encoding="BASE64",
                    at=datetime.now(UTC),
                )
            ),
            "Timestamp": datetime.now(UTC).isoformat(),
        }
    )
    event_id = uuid.UUID(
        str(
            one(
                conn,
                "select id from private.record_webhook_event('ses_inbound', %s, %s)",
                (str(uuid.uuid4()), body),
            )["id"]
        )
    )
    inbound_applier(database)(StoredEvent(event_id, str(event_id), body))
    return event_id


def test_inbound_mail_is_attributed_to_its_channel_and_erasure_finds_the_sender(
    conn: Conn, database: Database
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 100, "team")
    inbound = email_channel(conn, owner)
    sender = f"jana-{uuid.uuid4().hex[:8]}@mail.example.org"
    filed = deliver_mail(conn, database, inbound_mail(sender, inbound), inbound)
    event = stored(conn, filed)
    assert (event["workspace_id"], event["status"]) == (owner.workspace_id, "applied")
    # The sender is only inside the Base64 content, and indexed all the same.
    assert sender not in event["body"]
    assert key_of(conn, sender) in event["identity_keys"]

    stray = f"nobody@in-{uuid.uuid4().hex[:8]}.shop.example"
    unfiled = stored(conn, deliver_mail(conn, database, inbound_mail(sender, stray), stray))
    assert unfiled["workspace_id"] is None and unfiled["status"] == "ignored"
    assert json.loads(unfiled["body"]) == {
        "Type": "Notification",
        "MessageId": json.loads(unfiled["body"])["MessageId"],
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:growthbase-inbound",
        "Timestamp": json.loads(unfiled["body"])["Timestamp"],
        "Message": {
            "notificationType": "Received",
            "mail": {"messageId": json.loads(unfiled["body"])["Message"]["mail"]["messageId"]}
            | {"timestamp": json.loads(unfiled["body"])["Message"]["mail"]["timestamp"]},
        },
        "stripped": True,
    }

    contact = one(
        conn,
        "select contact_id from public.contact_identities where kind = 'email' and address = %s"
        " and workspace_id = %s",
        (sender, owner.workspace_id),
    )["contact_id"]
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact,))
    gone = one(conn, "select count(*) as n from private.webhook_events where id = %s", (filed,))
    assert gone == {"n": 0}


def test_make_callbacks_are_attributed_and_erasure_deletes_those_naming_the_person(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 100, "team")
    project = make_project(conn, owner)
    email = f"petr-{uuid.uuid4().hex[:8]}@mail.example.org"
    with acting_as(conn, owner):
        contact = one(
            conn,
            "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
            (owner.workspace_id, email),
        )["id"]
        job = one(
            conn,
            "select (automation).id as id"
            " from public.enqueue_automation(%s, 'content_gen', %s, null)",
            (project, Jsonb({"brief": "A thank-you note"})),
        )["id"]
    callbacks = []
    for status, result in (("processing", None), ("completed", {"draft": f"Dear {email}"})):
        body = json.dumps({"automation_id": str(job), "status": status, "result": result})
        event_id = one(
            conn,
            "select id from private.record_webhook_event('make', %s, %s)",
            (f"{job}:{status}", body),
        )["id"]
        assert one(conn, "select private.apply_make_callback(%s) as o", (event_id,))["o"] == (
            "applied"
        )
        callbacks.append(event_id)
    assert [stored(conn, c)["workspace_id"] for c in callbacks] == [owner.workspace_id] * 2
    unknown = one(
        conn,
        "select id from private.record_webhook_event('make', %s, %s)",
        (
            str(uuid.uuid4()),
            json.dumps(
                {
                    "automation_id": str(uuid.uuid4()),
                    "status": "completed",
                    "result": {"draft": f"Dear {email}"},
                }
            ),
        ),
    )["id"]
    conn.execute("select private.apply_make_callback(%s)", (unknown,))
    assert email not in stored(conn, unknown)["body"]
    # A callback the replay gave up on is attributed too, and kept whole for its days.
    dead = one(
        conn,
        "select id from private.record_webhook_event('make', %s, %s)",
        (f"{job}:late", json.dumps({"automation_id": str(job), "note": f"for {email}"})),
    )["id"]
    for _ in range(8):
        conn.execute("select private.webhook_event_failed(%s, 'ValueError')", (dead,))
    assert stored(conn, dead)["status"] == "failed"
    assert stored(conn, dead)["workspace_id"] == owner.workspace_id
    assert email in stored(conn, dead)["body"]
    callbacks.append(dead)

    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact,))
    left = conn.execute(
        "select id from private.webhook_events where id = any(%s)", (callbacks,)
    ).fetchall()
    # The callback naming them went; the one that did not stays for its days.
    assert [r["id"] for r in left] == [callbacks[0]]
    # The finished automation was redacted (not refused as a change to a finished one) ...
    result = one(conn, "select result from public.automations where id = %s", (job,))["result"]
    assert result == {"draft": "Dear [erased]"}
    # ... and any other change to it still is.
    for changed in ({"draft": "Dear someone else"}, {"draft": "Dear [erased], and more [erased]"}):
        with refused(409, "illegal_transition"):
            conn.execute(
                "update public.automations set result = %s where id = %s", (Jsonb(changed), job)
            )


def test_razorpay_events_are_attributed_to_the_subscriptions_workspace(conn: Conn) -> None:
    owner = create_user(conn)
    razorpay_id = "sub_" + uuid.uuid4().hex[:14]
    conn.execute(
        "insert into public.subscriptions (workspace_id, plan_tier, razorpay_subscription_id,"
        " status) values (%s, 'solo', %s, 'created')",
        (owner.workspace_id, razorpay_id),
    )
    events = {}
    for name, subscription in (("ours", razorpay_id), ("theirs", "sub_" + uuid.uuid4().hex[:14])):
        body = {
            "entity": "event",
            "event": "subscription.activated",
            "created_at": 1780000000,
            "payload": {
                "subscription": {
                    "entity": {
                        "id": subscription,
                        "status": "active",
                        "notes": {"email": "payer@example.test"},
                    }
                }
            },
        }
        events[name] = one(
            conn,
            "select id from private.record_webhook_event('razorpay', %s, %s)",
            (uuid.uuid4().hex, json.dumps(body)),
        )["id"]
        conn.execute("select private.apply_razorpay_event(%s)", (events[name],))
    assert stored(conn, events["ours"])["workspace_id"] == owner.workspace_id
    theirs = stored(conn, events["theirs"])
    assert theirs["workspace_id"] is None
    assert json.loads(theirs["body"]) == {
        "event": "subscription.activated",
        "created_at": 1780000000,
        "subscription_id": json.loads(theirs["body"])["subscription_id"],
        "stripped": True,
    }


def razorpay_payment(
    conn: Conn, subscription: str, email: str, contact: str = "+919876543210"
) -> uuid.UUID:
    body = {
        "entity": "event",
        "event": "subscription.charged",
        "created_at": 1780000000,
        "payload": {
            "subscription": {"entity": {"id": subscription, "status": "active"}},
            "payment": {
                "entity": {
                    "id": "pay_" + uuid.uuid4().hex[:14],
                    "subscription_id": subscription,
                    "invoice_id": "inv_" + uuid.uuid4().hex[:14],
                    "amount": 249900,
                    "currency": "INR",
                    "status": "captured",
                    "email": email,
                    "contact": contact,
                    "customer_id": "cust_" + subscription[4:],
                }
            },
        },
    }
    event_id = one(
        conn,
        "select id from private.record_webhook_event('razorpay', %s, %s)",
        (uuid.uuid4().hex, json.dumps(body)),
    )["id"]
    conn.execute("select private.apply_razorpay_event(%s)", (event_id,))
    return uuid.UUID(str(event_id))


def test_payloads_leave_with_the_paying_account_and_with_their_workspace(conn: Conn) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    payer = add_member(conn, owner, "admin")
    razorpay_id = "sub_" + uuid.uuid4().hex[:14]
    conn.execute(
        "insert into public.subscriptions (workspace_id, plan_tier, razorpay_subscription_id,"
        " status) values (%s, 'team', %s, 'active')",
        (owner.workspace_id, razorpay_id),
    )
    theirs = razorpay_payment(conn, razorpay_id, payer.email)
    owners = razorpay_payment(conn, razorpay_id, owner.email)
    assert stored(conn, theirs)["workspace_id"] == owner.workspace_id

    conn.execute("delete from auth.users where id = %s", (payer.id,))  # as Auth's admin API does
    left = conn.execute(
        "select id from private.webhook_events where id = any(%s)", ([theirs, owners],)
    ).fetchall()
    # The payer's account took the payloads naming them; the workspace keeps the owner's.
    assert [r["id"] for r in left] == [owners]

    conn.execute("delete from public.workspaces where id = %s", (owner.workspace_id,))
    assert one(
        conn, "select count(*) as n from private.webhook_events where id = %s", (owners,)
    ) == {"n": 0}


def test_a_payer_paying_with_another_address_is_found_by_the_payments_own_fields(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    fund(conn, owner, 10, "team")
    starter = add_member(conn, owner, "admin")
    razorpay_id = "sub_" + uuid.uuid4().hex[:14]
    conn.execute(
        "insert into public.subscriptions (workspace_id, plan_tier, razorpay_subscription_id,"
        " status, created_by) values (%s, 'team', %s, 'active', %s)",
        (owner.workspace_id, razorpay_id, starter.id),
    )
    other = create_user(conn)
    theirs = "sub_" + uuid.uuid4().hex[:14]
    conn.execute(
        "insert into public.subscriptions (workspace_id, plan_tier, razorpay_subscription_id,"
        " status) values (%s, 'team', %s, 'active')",
        (other.workspace_id, theirs),
    )
    # The member who started it paid with a card under another address and phone; a payment
    # for another workspace names only that phone.
    paid = razorpay_payment(conn, razorpay_id, "billing@their-firm.example", "+919812345678")
    elsewhere = razorpay_payment(conn, theirs, "someone@else.example", "+919812345678")
    owners = razorpay_payment(conn, theirs, other.email, "+911111111111")

    with acting_as(conn, starter):
        mine = one(conn, "select public.my_personal_data() as data")["data"]["billing"]
    assert [s["razorpay_subscription_id"] for s in mine["subscriptions_started"]] == [razorpay_id]
    payers = {
        p["payload"]["payload"]["payment"]["entity"]["email"] for p in mine["razorpay_payloads"]
    }
    assert payers == {"billing@their-firm.example", "someone@else.example"}

    conn.execute("delete from auth.users where id = %s", (starter.id,))
    left = conn.execute(
        "select id from private.webhook_events where id = any(%s)", ([paid, elsewhere, owners],)
    ).fetchall()
    assert [r["id"] for r in left] == [owners]


def dead_letter(conn: Conn, email: str) -> uuid.UUID:
    """An SES event about a message nobody sent (it matches no workspace) whose apply kept
    failing until the replay gave up."""
    envelope = {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "Message": json.dumps({"eventType": "Bounce", "mail": {"destination": [email]}}),
    }
    event_id = one(
        conn,
        "select id from private.record_webhook_event('ses', %s, %s)",
        (envelope["MessageId"], json.dumps(envelope)),
    )["id"]
    for _ in range(8):
        conn.execute("select private.webhook_event_failed(%s, 'KeyError')", (event_id,))
    return uuid.UUID(str(event_id))


def test_dead_letters_nobody_owns_are_found_by_erasure_and_stripped_after_a_week(
    conn: Conn,
) -> None:
    owner = create_user(conn)
    email = f"jana-{uuid.uuid4().hex[:8]}@mail.example.org"
    with acting_as(conn, owner):
        contact = one(
            conn,
            "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
            (owner.workspace_id, email),
        )["id"]
    fresh = dead_letter(conn, email)
    stale = dead_letter(conn, f"old-{uuid.uuid4().hex[:8]}@mail.example.org")
    conn.execute(
        "update private.webhook_events set processed_at = now() - interval '8 days' where id = %s",
        (stale,),
    )
    assert stored(conn, fresh)["workspace_id"] is None
    assert stored(conn, fresh)["status"] == "failed" and email in stored(conn, fresh)["body"]

    report = one(conn, "select private.prune_retention(10000) as r")["r"]
    assert report["dead_letters"] >= 1
    assert "@" not in stored(conn, stale)["body"]
    assert json.loads(stored(conn, stale)["body"])["stripped"] is True
    assert email in stored(conn, fresh)["body"], "a dead letter is readable for a week"

    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (contact,))
    gone = one(conn, "select count(*) as n from private.webhook_events where id = %s", (fresh,))
    assert gone == {"n": 0}


def test_mail_to_two_workspaces_is_filed_to_each_with_its_own_copy(
    conn: Conn, database: Database
) -> None:
    owners = [create_user(conn), create_user(conn)]
    addresses = []
    for owner in owners:
        fund(conn, owner, 100, "team")
        addresses.append(email_channel(conn, owner))
    sender = f"jana-{uuid.uuid4().hex[:8]}@mail.example.org"
    mail = EmailMessage()
    mail["From"] = f"Jana Dvořák <{sender}>"
    mail["To"] = ", ".join(addresses)
    mail["Subject"] = "Two shops, one question"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.org>"
    mail.set_content("Hello both.")
    mail.add_attachment(
        b"%PDF-1.4 receipt", maintype="application", subtype="pdf", filename="r.pdf"
    )
    original = deliver_mail(conn, database, bytes(mail), addresses)

    stored_copies = conn.execute(
        "select id, workspace_id, status from private.webhook_events"
        " where id = %s or event_id like %s",
        (
            original,
            "%:"
            + one(conn, "select event_id from private.webhook_events where id = %s", (original,))[
                "event_id"
            ],
        ),
    ).fetchall()
    copies = {r["workspace_id"]: r["id"] for r in stored_copies}
    assert set(copies) == {o.workspace_id for o in owners}
    assert {r["status"] for r in stored_copies} == {"applied"}
    for owner in owners:
        with acting_as(conn, owner):
            seen = conn.execute(
                "select m.workspace_id, m.attachments -> 0 ->> 'provider_media_id' as media"
                " from public.messages m where m.text like 'Hello both%%'"
            ).fetchall()
        # Each workspace sees its own message, its attachment fetched from its own copy.
        assert [r["workspace_id"] for r in seen] == [owner.workspace_id]
        assert seen[0]["media"] == f"{copies[owner.workspace_id]}:0"

    first = owners[0]
    contact = one(
        conn,
        "select contact_id from public.contact_identities where address = %s and workspace_id = %s",
        (sender, first.workspace_id),
    )["contact_id"]
    with acting_as(conn, first):
        conn.execute("select public.erase_contact(%s)", (contact,))
    left = conn.execute(
        "select workspace_id from private.webhook_events where id = any(%s)",
        (list(copies.values()),),
    ).fetchall()
    assert [r["workspace_id"] for r in left] == [owners[1].workspace_id]
