"""Campaign test data: mailable contacts, a verified sender, lists and draft campaigns,
created the way a dashboard user creates them (through RLS) where a user would."""

import uuid
from collections import Counter
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from api.email.ses import SesClient
from tests.factories.workspaces import User, acting_as, one
from tests.fakes.ses_server import moto_client_settings, sent_raw_messages

SENDER_DOMAIN = "news.example.com"
FROM_EMAIL = f"hello@{SENDER_DOMAIN}"
DEFAULT_HTML = "<p>Hi {{ first_name }}, {{ attributes.offer | default('news') }}</p>"


def add_contacts(
    conn: psycopg.Connection[Any],
    user: User,
    count: int,
    *,
    prefix: str = "reader",
    consent: str = "granted",
    attributes: dict[str, Any] | None = None,
) -> list[uuid.UUID]:
    """`count` contacts named <prefix>-<n>@mail.example.org (the workspace goes to team, so
    the plan's contact limit does not get in the way)."""
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (user.workspace_id,)
    )
    rows = conn.execute(
        "insert into public.contacts (workspace_id, email, first_name, consent_state, attributes)"
        " select %s, format('%%s-%%s@mail.example.org', %s::text, n), format('Reader %%s', n),"
        " %s, %s"
        " from generate_series(1, %s) n returning id",
        (user.workspace_id, prefix, consent, Jsonb(attributes or {}), count),
    ).fetchall()
    return [row["id"] for row in rows]


def verified_sender(
    conn: psycopg.Connection[Any], user: User, identity: str = SENDER_DOMAIN
) -> uuid.UUID:
    """A sender identity registered by the user and marked verified, as SES would report, and
    established (warm-up off: tests/deliverability/test_warmup.py warms its own). Tests share
    one database and an identity belongs to one workspace, so an earlier test's registration
    of the same identity is removed first (its live campaigns cancelled)."""
    conn.execute(
        "update public.campaigns set status = 'cancelled' where status in"
        " ('scheduled', 'sending', 'paused') and sender_identity_id in"
        " (select id from public.sender_identities where identity = %s)",
        (identity,),
    )
    conn.execute("delete from public.sender_identities where identity = %s", (identity,))
    with acting_as(conn, user):
        identity_id = one(
            conn,
            "select public.register_sender_identity(%s, %s) as id",
            (user.workspace_id, identity),
        )["id"]
    conn.execute(
        "update public.sender_identities set verified = true, dkim_status = 'SUCCESS',"
        " warmup = false where id = %s",
        (identity_id,),
    )
    return uuid.UUID(str(identity_id))


def email_list(
    conn: psycopg.Connection[Any],
    user: User,
    contact_ids: list[uuid.UUID],
    name: str = "Newsletter",
) -> uuid.UUID:
    with acting_as(conn, user):
        list_id = one(
            conn,
            "insert into public.email_lists (workspace_id, name) values (%s, %s) returning id",
            (user.workspace_id, name),
        )["id"]
        conn.execute(
            "insert into public.email_list_members (list_id, workspace_id, contact_id)"
            " select %s, %s, unnest(%s::uuid[])",
            (list_id, user.workspace_id, contact_ids),
        )
    return uuid.UUID(str(list_id))


def draft_campaign(
    conn: psycopg.Connection[Any],
    user: User,
    *,
    list_ids: list[uuid.UUID],
    sender_id: uuid.UUID,
    variants: list[tuple[str, str, str, str | None, int]] | None = None,
    segment_id: uuid.UUID | None = None,
    from_email: str = FROM_EMAIL,
) -> uuid.UUID:
    """A draft with its variants: (name, subject, html, text, weight)."""
    with acting_as(conn, user):
        campaign_id = one(
            conn,
            "insert into public.campaigns (workspace_id, name, sender_identity_id, from_name,"
            " from_email, list_ids, segment_id) values (%s, 'November news', %s, 'Growthbase Shop',"
            " %s, %s, %s) returning id",
            (user.workspace_id, sender_id, from_email, list_ids, segment_id),
        )["id"]
        default = [("A", "News for {{ first_name }}", DEFAULT_HTML, None, 1)]
        for name, subject, html, text, weight in default if variants is None else variants:
            conn.execute(
                "insert into public.campaign_variants (campaign_id, workspace_id, name, subject,"
                " html, text, weight) values (%s, %s, %s, %s, %s, %s, %s)",
                (campaign_id, user.workspace_id, name, subject, html, text, weight),
            )
    return uuid.UUID(str(campaign_id))


def list_campaign(
    conn: psycopg.Connection[Any],
    user: User,
    contact_ids: list[uuid.UUID],
    variants: list[tuple[str, str, str, str | None, int]] | None = None,
) -> uuid.UUID:
    """A draft to a new list of `contact_ids`, from a freshly verified sender."""
    return draft_campaign(
        conn,
        user,
        list_ids=[email_list(conn, user, contact_ids)],
        sender_id=verified_sender(conn, user),
        variants=variants,
    )


def start(conn: psycopg.Connection[Any], user: User, campaign_id: uuid.UUID) -> int:
    with acting_as(conn, user):
        return int(one(conn, "select public.start_campaign(%s) as n", (campaign_id,))["n"])


def send_alone(
    conn: psycopg.Connection[Any], *, forget_counts: bool = True, forget_accounts: bool = True
) -> None:
    """Start a sending test as if its mail were the only mail of the worker's database: claims
    work across the database, so other tests' sending campaigns are paused; their SES accounts
    and deliverability counts are forgotten (unless asked not to), the platform brake that
    their counts may have engaged is released, and their pause emails still queued are dropped
    (the send cron takes every workspace's)."""
    conn.execute("update public.campaigns set status = 'paused' where status = 'sending'")
    conn.execute("delete from private.deliverability_emails where status = 'queued'")
    if forget_accounts:
        conn.execute("delete from private.ses_accounts")
    if forget_counts:
        conn.execute("delete from private.deliverability_counts")
    conn.execute("select private.release_platform_brake()")


def moto_sender(endpoint: str) -> SesClient:
    """The edge's SES client on moto's server, with SENDER_DOMAIN verified there."""
    ses = SesClient(**moto_client_settings(endpoint))
    ses.create_identity(SENDER_DOMAIN, adopt_existing=True)
    return ses


def each_delivered_once(endpoint: str, count: int) -> None:
    """moto accepted exactly one message for each of `count` recipients."""
    recipients = Counter(m["destinations"][0] for m in sent_raw_messages(endpoint))
    assert len(recipients) == count and max(recipients.values()) == 1, recipients
