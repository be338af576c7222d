"""Two realistic tenants and a catalog-driven map of which rows belong to which workspace, for
the tenancy matrix (tests/security/test_tenancy_matrix.py).

Seeding goes through the factories and the Data API's functions where a user would act, and
through SQL as the superuser where a provider or the edge's service writes (subscriptions,
AI call records, integrations, stored webhooks, snapshots), so it does not depend on which
schema those service functions live in.

The map is built from the catalog, so a new table is covered without touching this file:
a relation with a `workspace_id` column belongs to that workspace; a table without one belongs
to the workspace of the row its foreign key points at; the few exceptions are listed in
EXPLICIT_SCOPES; tables shared by every tenant (price lists, plans) in REFERENCE_TABLES.
Anything else in a schema we own is reported as unclassified, so it cannot slip past.
"""

import json
import secrets
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from cryptography.fernet import Fernet
from psycopg import sql
from psycopg.types.json import Jsonb

from tests.factories.email import add_contacts, draft_campaign, email_list, start, verified_sender
from tests.factories.flows import create_flow, send_step
from tests.factories.inbox import (
    account_id,
    apply_whatsapp,
    whatsapp_channel,
    whatsapp_conversation,
)
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    fund,
    make_project,
    one,
)
from tests.fakes.whatsapp_server import image_message, inbound, status, statuses

Conn = psycopg.Connection[Any]

# Schemas Supabase (or a Postgres extension) owns. Everything else is ours and must be mapped.
PLATFORM_SCHEMAS = frozenset(
    {
        "auth",
        "storage",
        "realtime",
        "supabase_migrations",
        "supabase_functions",
        "extensions",
        "graphql",
        "graphql_public",
        "vault",
        "pgsodium",
        "pgsodium_masks",
        "net",
        "cron",
        "pgbouncer",
        "_realtime",
        "_analytics",
        "information_schema",
    }
)

# Platform relations that hold our tenants' rows all the same.
PLATFORM_RELATIONS_WE_USE = frozenset({"realtime.messages"})

# Shared by every tenant: no tenant's data, readable by design.
REFERENCE_TABLES = frozenset(
    {
        "public.plans",
        "public.plan_rate_limits",
        "public.automation_prices",
        "public.ai_prices",
        "analytics.rfm_segment_map",
        "private.ses_accounts",
        "private.ses_tenancy",
        "private.platform_brake",
        "private.inbox_drain_schedule",
        "private.platform_suppressions",
        "private.disposable_domains",
        "private.personal_data_columns",
        "private.privacy_key",
        "private.time_zones",
        "public.flow_templates",
    }
)

# Relations whose tenant is not a workspace_id column nor a foreign key to a tenant's row:
# (key columns, predicate for the workspace {ws}).
EXPLICIT_SCOPES: dict[str, tuple[tuple[str, ...], str]] = {
    "public.workspaces": (("id",), "id = {ws}"),
    "public.profiles": (
        ("id",),
        "id in (select m.user_id from public.workspace_members m where m.workspace_id = {ws})",
    ),
    "realtime.messages": (("topic",), "topic like 'workspace:' || {ws}::text || ':%'"),
    "private.webhook_events": (("id",), "strpos(body, {ws}::text) > 0"),
    "private.rate_limit_windows": (("bucket",), "strpos(bucket, {ws}::text) > 0"),
    # Export files are kept under their workspace's folder.
    "private.storage_removals": (("object_name",), "object_name like {ws}::text || '/%'"),
    # A deleted workspace's SES tenants wait here to be deleted in SES, named after it.
    "private.ses_tenant_deletions": (
        ("account", "tenant_name"),
        "tenant_name = 'growthbase-' || {ws}::text",
    ),
}
# An import's staging and a chunk's working rows are keyed by their job (no foreign key: they are
# written a million rows at a time).
IMPORT_JOB_SCOPE = "job_id in (select j.id from public.import_jobs j where j.workspace_id = {ws})"
EXPLICIT_SCOPES.update(
    {
        f"private.{name}": (("job_id",), IMPORT_JOB_SCOPE)
        for name in (
            "import_order_rows",
            "import_contact_rows",
            "import_product_rows",
            "import_contact_work",
            "import_order_lines",
            "import_order_heads",
            "import_order_customers",
            "import_order_chunks",
        )
    }
)


@dataclass(frozen=True)
class Relation:
    oid: int
    schema: str
    name: str
    kind: str  # pg_class.relkind: r table, p partitioned, v view, m materialized view, f foreign
    columns: tuple[str, ...]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def is_table(self) -> bool:
        return self.kind in ("r", "p")


@dataclass(frozen=True)
class Scope:
    """Which rows of `relation` belong to a workspace: `key` columns and a predicate."""

    relation: Relation
    key: tuple[str, ...]
    template: str = ""  # SQL with {ws}; empty when derived from `parent`
    parent: "Scope | None" = None
    foreign_key: tuple[str, ...] = ()
    referenced: tuple[str, ...] = ()

    def where(self, workspace_id: uuid.UUID) -> sql.Composable:
        if self.parent is None:
            return sql.SQL(self.template).format(ws=sql.Literal(workspace_id))
        return sql.SQL("({fk}) in (select {ref} from {parent} where {pred})").format(
            fk=sql.SQL(", ").join(map(sql.Identifier, self.foreign_key)),
            ref=sql.SQL(", ").join(map(sql.Identifier, self.referenced)),
            parent=self.parent.relation.identifier,
            pred=self.parent.where(workspace_id),
        )

    @property
    def key_expression(self) -> sql.Composable:
        """A text value per row that identifies its tenant without reading another table, so a
        role can be asked for B's rows under its own row-level security."""
        return sql.SQL("row({})::text").format(sql.SQL(", ").join(map(sql.Identifier, self.key)))


@dataclass
class Catalog:
    relations: list[Relation]
    scopes: dict[str, Scope]
    reference: list[Relation]
    unclassified: list[Relation]

    @property
    def tables(self) -> list[Scope]:
        return [s for s in self.scopes.values() if s.relation.is_table]


def owned_relations(conn: Conn) -> list[Relation]:
    rows = conn.execute(
        """
        select c.oid, n.nspname as schema, c.relname as name, c.relkind::text as kind,
               array(select a.attname::text from pg_catalog.pg_attribute a
                     where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                     order by a.attnum) as columns
        from pg_catalog.pg_class c
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where c.relkind in ('r', 'p', 'v', 'm', 'f') and not c.relispartition
          and n.nspname !~ '^pg_'
          and (not n.nspname = any (%(platform)s) or n.nspname || '.' || c.relname = any (%(used)s))
          and not exists (select 1 from pg_catalog.pg_depend d
                          where d.classid = 'pg_catalog.pg_class'::regclass and d.objid = c.oid
                            and d.deptype = 'e')
        order by 2, 3
        """,
        {"platform": sorted(PLATFORM_SCHEMAS), "used": sorted(PLATFORM_RELATIONS_WE_USE)},
    ).fetchall()
    return [
        Relation(r["oid"], r["schema"], r["name"], r["kind"], tuple(r["columns"])) for r in rows
    ]


def foreign_keys(
    conn: Conn, relation: Relation
) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """(referenced relation, our columns, its columns) for each foreign key of `relation`."""
    rows = conn.execute(
        """
        select n.nspname || '.' || r.relname as referenced,
               array(select a.attname::text from unnest(c.conkey) with ordinality k(num, i)
                     join pg_catalog.pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.num
                     order by k.i) as columns,
               array(select a.attname::text from unnest(c.confkey) with ordinality k(num, i)
                     join pg_catalog.pg_attribute a on a.attrelid = c.confrelid and a.attnum = k.num
                     order by k.i) as referenced_columns
        from pg_catalog.pg_constraint c
        join pg_catalog.pg_class r on r.oid = c.confrelid
        join pg_catalog.pg_namespace n on n.oid = r.relnamespace
        where c.contype = 'f' and c.conrelid = %s
        order by c.conname
        """,
        (relation.oid,),
    ).fetchall()
    return [(r["referenced"], tuple(r["columns"]), tuple(r["referenced_columns"])) for r in rows]


def build_catalog(conn: Conn) -> Catalog:
    relations = owned_relations(conn)
    scopes: dict[str, Scope] = {}
    reference: list[Relation] = []
    pending: list[Relation] = []
    for relation in relations:
        if relation.qualified in REFERENCE_TABLES:
            reference.append(relation)
        elif relation.qualified in EXPLICIT_SCOPES:
            key, template = EXPLICIT_SCOPES[relation.qualified]
            scopes[relation.qualified] = Scope(relation, key, template)
        elif "workspace_id" in relation.columns:
            scopes[relation.qualified] = Scope(relation, ("workspace_id",), "workspace_id = {ws}")
        else:
            pending.append(relation)
    # Tables reaching a workspace only through a parent: follow foreign keys until stable.
    progress = True
    while pending and progress:
        progress = False
        for relation in list(pending):
            for referenced, columns, referenced_columns in foreign_keys(conn, relation):
                parent = scopes.get(referenced)
                if parent is not None:
                    scopes[relation.qualified] = Scope(
                        relation,
                        columns,
                        parent=parent,
                        foreign_key=columns,
                        referenced=referenced_columns,
                    )
                    pending.remove(relation)
                    progress = True
                    break
    return Catalog(relations, scopes, reference, pending)


# tenants ---------------------------------------------------------------------------------------


@dataclass
class Tenant:
    """A seeded workspace: its owner and people in each role."""

    owner: User
    members: dict[str, User] = field(default_factory=dict)

    @property
    def workspace_id(self) -> uuid.UUID:
        return self.owner.workspace_id


def provider_id(prefix: str) -> str:
    """An id shaped like Razorpay's: prefix_ and 14 letters or digits."""
    alphabet = string.ascii_letters + string.digits
    return prefix + "_" + "".join(secrets.choice(alphabet) for _ in range(14))


def seed_tenant(conn: Conn, roles: tuple[str, ...]) -> Tenant:
    """A workspace on the team plan with a row in every tenant table: members in `roles`, a
    pending invitation, a project with a shop integration and its sync position, an automation
    (with its charge, outbox message and broadcast), imported orders, AI calls, a subscription
    with its events, payment and stored webhook, and a sent campaign and a draft with their
    list, segment, template, suppression, sender identity and send ledger, RFM snapshots, consent
    records and privacy settings, an access-request export, a notification, an erased contact
    (its erasure record and keyed hash), a batch erasure, an export file to remove, a
    subscription to cancel and an API key."""
    owner = create_user(conn)
    tenant = Tenant(owner)
    fund(conn, owner, 500, "team")
    for role in roles:
        tenant.members[role] = add_member(conn, owner, role)
    worker = tenant.members.get("member", owner)
    tag = uuid.uuid4().hex[:10]
    with acting_as(conn, owner):
        conn.execute(
            "select public.invite_member(%s, %s, 'viewer')",
            (owner.workspace_id, f"pending-{tag}@example.test"),
        )

    project = make_project(conn, owner, f"Shop {tag}")
    with acting_as(conn, worker):
        conn.execute(
            "select 1 from public.enqueue_automation(%s, 'report', '{}', %s)", (project, tag)
        )
        for number, days_ago in enumerate((40, 2)):
            placed = datetime.now(UTC) - timedelta(days=days_ago)
            conn.execute(
                "select public.import_order(%s, %s)",
                (
                    project,
                    Jsonb(
                        {
                            "external_id": f"order-{tag}-{number}",
                            "status": "paid",
                            "placed_at": placed.isoformat(),
                            "total": "120.00",
                            "currency": "EUR",
                            "customer": {
                                "external_id": f"customer-{tag}-{number}",
                                "email": f"buyer-{number}-{tag}@example.test",
                                "first_name": f"Buyer {number}",
                                "accepts_marketing": True,
                            },
                            "items": [
                                {"sku": "TEA", "name": "Tea", "quantity": 1, "unit_price": 60},
                                {"sku": "CUP", "name": "Cup", "quantity": 2, "unit_price": 30},
                            ],
                        }
                    ),
                ),
            )

    # The shop's catalog arrives after its orders, as a sync would write it; the lines link by SKU.
    product = one(
        conn,
        "insert into public.products (workspace_id, project_id, source, external_id, title, sku,"
        " price, currency, inventory, category) values (%s, %s, 'shoptet', %s, 'Tea', 'TEA-BOX',"
        " 60, 'EUR', 12, 'Drinks') returning id",
        (owner.workspace_id, project, f"product-{tag}"),
    )["id"]
    conn.execute(
        "insert into public.product_variants (workspace_id, product_id, external_id, title, sku,"
        " price, currency) values (%s, %s, %s, 'Tea, loose', 'TEA', 60, 'EUR')",
        (owner.workspace_id, product, f"variant-{tag}"),
    )
    conn.execute("select private.link_order_items(%s)", (project,))
    # Sales so far folded into the day rows; a returning buyer's order after that stays in the log.
    conn.execute("select private.compact_sales_daily(array[%s]::uuid[])", (owner.workspace_id,))
    conn.execute(
        "select private.upsert_order(%s, 'shoptet', %s)",
        (
            project,
            Jsonb(
                {
                    "external_id": f"order-{tag}-again",
                    "status": "fulfilled",
                    "placed_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
                    "total": "60.00",
                    "currency": "EUR",
                    "customer": {"email": f"buyer-0-{tag}@example.test"},
                    "items": [{"sku": "TEA", "name": "Tea", "quantity": 1, "unit_price": 60}],
                }
            ),
        ),
    )

    seed_import(conn, worker, owner.workspace_id, project)

    # Dispatched already, so no later test's outbox drain picks these up.
    conn.execute(
        "update private.outbox set status = 'delivered', delivered_at = now() where automation_id"
        " in (select id from public.automations where workspace_id = %s)",
        (owner.workspace_id,),
    )
    box = Fernet(Fernet.generate_key())
    conn.execute(
        "insert into private.integrations (project_id, source, workspace_id,"
        " api_token_encrypted, webhook_secret_encrypted) values (%s, 'shoptet', %s, %s, %s)",
        (
            project,
            owner.workspace_id,
            box.encrypt(b"shoptet-token").decode(),
            box.encrypt(b"shoptet-secret").decode(),
        ),
    )
    conn.execute(
        "insert into private.sync_streams (project_id, source, stream, cursor, last_synced_at)"
        " values (%s, 'shoptet', 'orders', now() - interval '1 hour', now())",
        (project,),
    )
    # A Shopify backfill whose orders' bulk query has finished (read already, so no cron of a
    # later test carries it on).
    conn.execute(
        "insert into private.integrations (project_id, source, workspace_id,"
        " webhook_secret_encrypted) values (%s, 'shopify', %s, %s)",
        (project, owner.workspace_id, box.encrypt(b"shopify-secret").decode()),
    )
    conn.execute(
        "insert into private.shop_bulk_operations (project_id, source, stream, operation_id,"
        " status, bytes_read, records, read_at) values (%s, 'shopify', 'orders',"
        " 'gid://shopify/BulkOperation/' || (floor(random() * 1e9))::bigint, 'completed', 120,"
        " 1, now())",
        (project,),
    )
    conn.execute(
        "insert into public.ai_calls (workspace_id, user_id, feature, model, status,"
        " credits_charged, tokens_in, tokens_out, latency_ms, finished_at)"
        " values (%s, %s, 'content', 'llama-3.3-70b-versatile', 'succeeded', 2, 300, 500, 900,"
        " now())",
        (owner.workspace_id, worker.id),
    )

    subscription_id = provider_id("sub")
    subscription = one(
        conn,
        "insert into public.subscriptions (workspace_id, plan_tier, razorpay_subscription_id,"
        " status, current_start, current_end, paid_count, created_by, last_event_at)"
        " values (%s, 'team', %s, 'active', now(), now() + interval '1 month', 1, %s, now())"
        " returning id",
        (owner.workspace_id, subscription_id, owner.id),
    )["id"]
    conn.execute(
        "insert into public.subscription_events (subscription_id, workspace_id, event, status,"
        " occurred_at) values (%s, %s, 'subscription.charged', 'active', now())",
        (subscription, owner.workspace_id),
    )
    payment_id = provider_id("pay")
    conn.execute(
        "insert into public.billing_payments (workspace_id, subscription_id, razorpay_payment_id,"
        " razorpay_invoice_id, amount, currency, status, occurred_at)"
        " values (%s, %s, %s, %s, 499900, 'INR', 'captured', now())",
        (owner.workspace_id, subscription, payment_id, provider_id("inv")),
    )
    conn.execute(
        "insert into private.webhook_events (provider, event_id, body, status, outcome,"
        " processed_at) values ('razorpay', %s, %s, 'applied', 'applied', now())",
        (
            provider_id("evt"),
            json.dumps(
                {
                    "event": "subscription.charged",
                    "payload": {
                        "subscription": {
                            "entity": {
                                "id": subscription_id,
                                "status": "active",
                                "notes": {"workspace_id": str(owner.workspace_id)},
                            }
                        },
                        "payment": {"entity": {"id": payment_id, "amount": 499900}},
                    },
                }
            ),
        ),
    )

    domain = f"t{tag}.tenancy.test"
    readers = add_contacts(conn, owner, 3, prefix=f"reader-{tag}")
    sender = verified_sender(conn, owner, domain)
    newsletter = email_list(conn, owner, readers, f"Readers {tag}")
    with acting_as(conn, worker):
        welcome = one(
            conn,
            "insert into public.email_templates (workspace_id, name, subject, html)"
            " values (%s, 'Welcome', 'Welcome {{ first_name }}', '<p>Hello</p>') returning id",
            (owner.workspace_id,),
        )["id"]
        segment = one(
            conn,
            "insert into public.segments (workspace_id, name, rule) values (%s, 'Readers', %s)"
            " returning id",
            (owner.workspace_id, Jsonb({"in_list": str(newsletter)})),
        )["id"]
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.email_suppressions (workspace_id, email, reason, detail)"
            " values (%s, %s, 'manual', 'asked by phone')",
            (owner.workspace_id, f"blocked-{tag}@example.test"),
        )
    sent = draft_campaign(
        conn, owner, list_ids=[newsletter], sender_id=sender, from_email=f"hello@{domain}"
    )
    start(conn, owner, sent)
    conn.execute(
        "update public.campaign_recipients set status = 'sent', sent_at = now(),"
        " opened_at = now(), last_opened_at = now(), opens = 1,"
        " clicked_at = now(), last_clicked_at = now(), clicks = 1 where campaign_id = %s",
        (sent,),
    )
    draft_campaign(
        conn,
        owner,
        list_ids=[newsletter],
        sender_id=sender,
        from_email=f"hello@{domain}",
        segment_id=segment,
    )

    # A live flow with a send step (and its campaign), a contact who entered it by a custom
    # event and left it by its goal (a run, its history and both events).
    flow = create_flow(
        conn,
        owner,
        "custom",
        [
            {"key": "wait", "kind": "wait", "config": {"days": 1}, "next": "hello"},
            send_step("hello", welcome, sender, from_email=f"hello@{domain}"),
        ],
        trigger_config={"name": "signed_up"},
        exit_events=[{"type": "custom", "name": "bought"}],
    )
    # The workspace's secret for signed custom events, sealed as the edge stores it.
    conn.execute(
        "select private.store_event_signing_secret(%s, %s)",
        (owner.workspace_id, "gAAAAAB-sealed-by-the-edge"),
    )
    # A birthday flow the flows cron has scanned today.
    birthdays = create_flow(
        conn,
        owner,
        "date_attribute",
        [{"key": "tag", "kind": "update_contact", "config": {"add_tags": ["birthday"]}}],
        trigger_config={"attribute": "birthday", "offset_days": -3, "yearly": True},
    )
    conn.execute(
        "insert into private.flow_date_scans (flow_id, scanned_on) values (%s, current_date)",
        (birthdays,),
    )
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.flow_send_rules (workspace_id, daily_cap, quiet_from, quiet_until,"
            " timezone) values (%s, 3, '22:00', '07:00', 'Europe/Prague')",
            (owner.workspace_id,),
        )
    conn.execute(
        "select private.upsert_checkout(%s, 'shopify', %s)",
        (
            project,
            Jsonb(
                {
                    "external_id": f"checkout-{tag}",
                    "customer": {"external_id": f"cart-{tag}", "email": f"cart-{tag}@example.test"},
                    "items": [{"name": "Tea", "quantity": 1, "price": "9.90"}],
                    "total": "9.90",
                    "currency": "EUR",
                    "recovery_url": f"https://shop-{tag}.example.com/recover",
                }
            ),
        ),
    )
    for name in ("signed_up", "bought"):
        conn.execute(
            "insert into public.contact_events (workspace_id, contact_id, type, name, event_key,"
            " properties) values (%s, %s, 'custom', %s, %s, %s)",
            (owner.workspace_id, readers[2], name, f"{name}-{tag}", Jsonb({"flow": str(flow)})),
        )

    this_month = date.today().replace(day=1)
    for month in (this_month - timedelta(days=1), this_month):
        conn.execute(
            "insert into analytics.rfm_snapshots (workspace_id, snapshot_month, contact_id,"
            " recency_days, frequency, monetary, r_score, f_score, m_score, segment)"
            " select s.workspace_id, date_trunc('month', %s::date)::date, s.contact_id,"
            " s.recency_days, s.frequency, s.monetary, s.r_score, s.f_score, s.m_score,"
            " m.segment from private.rfm_scores(%s, array[%s]::uuid[]) s"
            " join analytics.rfm_segment_map m on m.r_score = s.r_score and m.f_score = s.f_score",
            (month, month, owner.workspace_id),
        )

    # Its RFM scores kept (as the cron's refresh keeps them) and then left stale by a write, and
    # its SES tenant as if queued for deletion in SES (a workspace's rows queue it when they go).
    conn.execute("select private.refresh_rfm_kept(array[%s]::uuid[])", (owner.workspace_id,))
    conn.execute("insert into private.rfm_stale (workspace_id) values (%s)", (owner.workspace_id,))
    conn.execute(
        "insert into private.ses_tenant_deletions (account, tenant_name)"
        " values ('123456789012', %s)",
        (f"growthbase-{owner.workspace_id}",),
    )

    # The first reader's consent history and the workspace's privacy rules.
    with acting_as(conn, owner):
        conn.execute(
            "select public.record_consent(%s, 'profiling', 'granted', 'form', 'Tailor my offers',"
            " 'v1')",
            (readers[0],),
        )
        conn.execute(
            "insert into public.workspace_privacy_settings (workspace_id, marketing_consent)"
            " values (%s, 'always')",
            (owner.workspace_id,),
        )

    # An access request for the second reader (queued: no file).
    with acting_as(conn, owner):
        conn.execute("select public.request_contact_export(%s)", (readers[1],))

    # Deliverability: the workspace's thresholds, a guardrail pause (which pauses the sent
    # campaign and queues its emails) and a warning.
    with acting_as(conn, owner):
        conn.execute(
            "insert into public.deliverability_settings (workspace_id, min_volume)"
            " values (%s, 200)",
            (owner.workspace_id,),
        )
    conn.execute(
        "select private.pause_sending(%s, null, 'bounce_rate', 'Bounce rate 6%% over 24 hours',"
        " '{}'::jsonb)",
        (owner.workspace_id,),
    )
    conn.execute(
        "insert into private.deliverability_warnings (workspace_id, sender_identity_id,"
        " warned_at) values (%s, %s, now())",
        (owner.workspace_id, sender),
    )
    # The sender's warm-up day.
    conn.execute(
        "insert into private.sender_warmup_days (sender_identity_id, workspace_id, day, cap,"
        " claimed) values (%s, %s, current_date, 200, 1)",
        (sender, owner.workspace_id),
    )
    # A recipient counted in the warm-up day, and the workspace's SES tenant (the account's
    # support left as moto has it, none, for the tests that send after these).
    conn.execute(
        "insert into private.sender_warmup_sends (recipient_id, sender_identity_id, day)"
        " select id, %s, current_date from public.campaign_recipients where campaign_id = %s"
        " limit 1",
        (sender, sent),
    )
    conn.execute(
        "insert into private.ses_tenancy (account, supported) values ('default', false)"
        " on conflict (account) do nothing"
    )
    conn.execute(
        "select private.save_ses_tenant('default', %s, %s, %s, 'ENABLED', '{}')",
        (
            owner.workspace_id,
            f"growthbase-{owner.workspace_id}",
            f"arn:aws:ses:eu-central-1:123456789012:tenant/growthbase-{owner.workspace_id}/tn-1",
        ),
    )
    # A Gmail unsubscribe spike warning.
    conn.execute(
        "insert into private.gmail_unsubscribe_warnings (workspace_id, warned_at)"
        " values (%s, now())",
        (owner.workspace_id,),
    )

    # The owner's notification about the first reader (a customer replied, say).
    conn.execute(
        "select private.notify_users(%s, %s, 'conversation.replied', 'A customer replied',"
        " null, '{}'::jsonb, %s)",
        (owner.workspace_id, [owner.id], readers[0]),
    )

    # A fourth reader asked to be erased: their record and the keyed hash of their address.
    erased = add_contacts(conn, owner, 1, prefix=f"erased-{tag}")
    with acting_as(conn, owner):
        conn.execute("select public.erase_contact(%s)", (erased[0],))

    # A batch erasure waiting for its first chunk, an export file waiting to be removed, and a
    # subscription of the workspace queued for cancellation at Razorpay.
    waiting = add_contacts(conn, owner, 1, prefix=f"batch-{tag}")
    with acting_as(conn, owner):
        conn.execute("select public.request_erasure_batch(%s, %s)", (owner.workspace_id, waiting))
    conn.execute(
        "insert into private.storage_removals (bucket_id, object_name, reason)"
        " values ('exports', %s, 'expired')",
        (f"{owner.workspace_id}/{uuid.uuid4()}.zip",),
    )
    with acting_as(conn, owner):
        conn.execute(
            "select public.create_api_key(%s, 'Zapier', 'member', null)", (owner.workspace_id,)
        )
    conn.execute(
        "insert into private.subscription_cancellations"
        " (razorpay_subscription_id, workspace_id, reason) values (%s, %s, 'workspace_deleted')",
        (provider_id("sub"), owner.workspace_id),
    )
    seed_inbox(conn, owner, worker)
    return tenant


def seed_inbox(conn: Conn, owner: User, worker: User) -> None:
    """A WhatsApp channel with its sealed credentials and template catalog, a conversation the
    contact opened, the worker's reply (sent already, so no later drain picks it up), a status
    waiting for a message nobody knows, and the owner's read position."""
    channel = whatsapp_channel(conn, owner, Fernet.generate_key().decode())
    conversation = whatsapp_conversation(conn, channel, text="Is the tea in stock?")
    conn.execute(
        "select private.sync_whatsapp_templates(%s, %s)",
        (
            channel,
            Jsonb(
                [
                    {
                        "name": "order_update",
                        "language": "en_US",
                        "category": "UTILITY",
                        "status": "APPROVED",
                        "variables": 0,
                        "components": [],
                    }
                ]
            ),
        ),
    )
    with acting_as(conn, worker):
        reply = one(
            conn,
            "select id from public.reply_to_conversation(%s, 'Yes, 12 boxes left', null)",
            (conversation,),
        )["id"]
    conn.execute(
        "update private.inbox_outbox set status = 'sent', attempts = 1 where message_id = %s",
        (reply,),
    )
    apply_whatsapp(
        conn,
        channel,
        statuses(
            [status("wamid.UNKNOWN" + uuid.uuid4().hex.upper(), "delivered", "420777000111", 1)],
            account_id(conn, channel),
        ),
    )
    with acting_as(conn, owner):
        conn.execute("select public.mark_conversation_read(%s)", (conversation,))
    whatsapp_conversation(conn, channel, text="STOP")
    sender = "4207" + str(uuid.uuid4().int % 10**8).zfill(8)
    apply_whatsapp(
        conn,
        channel,
        inbound(sender, [image_message(sender)], phone_number_id=account_id(conn, channel)),
    )
    seed_support(conn, owner, worker, channel, conversation)
    conn.execute(
        "insert into public.message_revisions (workspace_id, message_id, text, replaced_at)"
        " select workspace_id, id, 'Is the tea in stock??', now() from public.messages"
        " where conversation_id = %s and direction = 'inbound'",
        (conversation,),
    )
    # A stored attachment whose message is gone, waiting for its file's removal.
    conn.execute(
        "insert into private.inbox_media_removals (path, workspace_id)"
        " values (%s || '/' || gen_random_uuid() || '/' || gen_random_uuid() || '/0-image', %s)",
        (str(owner.workspace_id), owner.workspace_id),
    )


def seed_import(conn: Conn, worker: User, workspace_id: uuid.UUID, project: uuid.UUID) -> None:
    """An orders import mid-way, as the edge leaves one between steps: a part uploaded, a row
    staged (of each kind), a row error, and a chunk's working rows as a worker holds them."""
    with acting_as(conn, worker):
        job = one(
            conn,
            "select id from private.create_import_job(%s, %s, 'orders', 120, 'orders.csv',"
            " 'utf-8', '{}', null)",
            (workspace_id, project),
        )["id"]
    conn.execute(
        "insert into private.import_parts (job_id, part_number, body) values (%s, 1, %s)",
        (job, b"order_id,placed_at,status,total,currency\nX-1,2026-01-01,paid,1,EUR\n"),
    )
    conn.execute(
        "insert into public.import_errors (job_id, workspace_id, line, column_name, reason)"
        " values (%s, %s, 3, 'status', 'status is empty')",
        (job, workspace_id),
    )
    for statement in (
        "insert into private.import_order_rows (job_id, record, line, order_id)"
        " values (%s, 1, 2, 'X-1')",
        "insert into private.import_contact_rows (job_id, record, line, email)"
        " values (%s, 1, 2, 'x@example.test')",
        "insert into private.import_product_rows (job_id, record, line, product_id)"
        " values (%s, 1, 2, 'P-1')",
        "insert into private.import_contact_work (job_id, record, line, email, tags, attributes)"
        " values (%s, 1, 2, 'x@example.test', '{}', '{}')",
        "insert into private.import_order_lines (job_id, record, line, order_id, order_key,"
        " first_in_order, has_item, order_bad, order_has_items)"
        " values (%s, 1, 2, 'X-1', 1, true, false, false, false)",
        "insert into private.import_order_heads (job_id, order_id, order_key, record, line,"
        " has_items) values (%s, 'X-1', 1, 1, 2, false)",
        "insert into private.import_order_customers (job_id, customer_key, record)"
        " values (%s, 'email:x@example.test', 1)",
        "insert into private.import_order_chunks (job_id, first_record, upto, work_id, lines)"
        " values (%s, 0, 1, gen_random_uuid(), 1)",
    ):
        conn.execute(statement, (job,))


def seed_support(
    conn: Conn, owner: User, worker: User, channel: uuid.UUID, conversation: uuid.UUID
) -> None:
    """A team routing the channel (the worker in it), a conversation it assigned, the SLA
    policy, inbox settings, a canned response, a note, and a merge of two contacts that share a
    phone (and a pair still suggested)."""
    with acting_as(conn, owner):
        team = one(
            conn,
            "insert into public.inbox_teams (workspace_id, name) values (%s, 'Support')"
            " returning id",
            (owner.workspace_id,),
        )["id"]
        conn.execute(
            "insert into public.inbox_team_members (team_id, workspace_id, user_id)"
            " values (%s, %s, %s)",
            (team, owner.workspace_id, worker.id),
        )
        conn.execute("select public.set_channel_team(%s, %s)", (channel, team))
        conn.execute(
            "insert into public.inbox_sla_policies (workspace_id, first_response_minutes)"
            " values (%s, 60)",
            (owner.workspace_id,),
        )
        conn.execute(
            "insert into public.inbox_settings (workspace_id, auto_resolve_days) values (%s, 7)",
            (owner.workspace_id,),
        )
        conn.execute(
            "insert into public.canned_responses (workspace_id, short_code, title, content)"
            " values (%s, 'hello', 'Hello', 'Hello, how can we help?')",
            (owner.workspace_id,),
        )
    whatsapp_conversation(conn, channel, text="Routed to the team")
    with acting_as(conn, worker):
        conn.execute(
            "select public.add_conversation_note(%s, 'Checked stock', null)", (conversation,)
        )
        conn.execute("select public.tag_conversation(%s, 'high', array['stock'])", (conversation,))
    phone = "+4207" + str(uuid.uuid4().int % 10**8).zfill(8)
    twins = add_contacts(conn, owner, 4, prefix=f"twin-{uuid.uuid4().hex[:6]}")
    conn.execute("update public.contacts set phone = %s where id = any(%s)", (phone, twins[:2]))
    conn.execute(
        "update public.contacts set phone = %s where id = any(%s)", (phone + "1", twins[2:])
    )
    with acting_as(conn, owner):
        conn.execute("select public.merge_contacts(%s, %s)", (twins[0], twins[1]))
