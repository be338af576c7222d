"""A property-based fuzz of the whole edge from its own OpenAPI, in-process through the ASGI
app, with a real database, a real signed-in user and local stand-ins for every provider: no
input gets a 500, a 503 only says which provider or secret is not configured, every answer
carries `X-Request-Id`, and every error is the envelope.

Deterministic (Hypothesis derandomized, no example database) and bounded, so CI sees the same
cases every run and the suite stays fast. So that cases reach the code behind validation:
ids the tenant owns replace generated UUIDs (workspace, project, contact, template, campaign,
subscription, automation, sender identity), and tests/security/edge_fuzz_requests.py signs a
share of webhook cases as each provider does, signs unsubscribe links, sends the cron secret and
CSV files. The fuzz then asserts it got past validation on every operation, so that coverage
cannot silently disappear.
"""

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb
from pydantic import SecretStr
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from api.app import create_app
from api.core.secrets_box import SecretBox
from api.core.settings import Settings
from tests.factories.email import add_contacts, draft_campaign, email_list, verified_sender
from tests.factories.inbox import (
    account_id,
    email_channel,
    telegram_channel,
    whatsapp_channel,
    whatsapp_conversation,
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
)
from tests.fakes.groq_server import GroqServer, serve_groq
from tests.fakes.jwks import JwksServer
from tests.fakes.make_server import MakeServer, serve_make
from tests.fakes.razorpay_server import KEY_ID, KEY_SECRET, RazorpayServer, serve_razorpay
from tests.fakes.ses_server import REGION, moto_ses
from tests.fakes.shopify_server import ShopifyServer, serve_shopify
from tests.fakes.shoptet_server import TOKEN, ShoptetServer, serve_shoptet, shoptet_order
from tests.fakes.sns_signing import Certificate, SnsHost, serve_sns
from tests.fakes.storage_server import SERVICE_KEY, StorageServer, serve_storage
from tests.fakes.supabase_auth_server import AuthServer, serve_auth
from tests.fakes.telegram_server import TOKEN as TELEGRAM_TOKEN
from tests.fakes.telegram_server import TelegramServer, serve_telegram
from tests.fakes.whatsapp_server import GraphServer, serve_whatsapp
from tests.fakes.x_server import TOKEN as X_TOKEN
from tests.fakes.x_server import XServer, serve_x
from tests.security.edge_fuzz_requests import SNS_TOPIC, Context, Secrets, Seeded, prepare

Conn = psycopg.Connection[DictRow]
EXAMPLES_PER_OPERATION = 15
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
SECRETS = Secrets()
TEAM_PLAN = "plan_growthbase_team"
SHOPTET_CUSTOMER = "c0ffee00-0000-4000-8000-000000000042"

# Answers that stop at validation or authentication: they do not count as reaching the code.
SHALLOW_CODES = frozenset(
    {
        "invalid_input",
        "bad_request",
        "not_found",
        "method_not_allowed",
        "payload_too_large",
        "invalid_csv",
        "link_invalid",
        "link_expired",
        "message_type_mismatch",
    }
)
# Operations no case can get past validation on, and why.
UNREACHABLE: dict[str, str] = {}


@dataclass(frozen=True)
class Tenant:
    user: User
    token: str
    seeded: Seeded

    def own_ids(self, case: Case[Any]) -> None:
        """Point well-formed ids of the kinds the tenant owns at its own rows; keep the rest.
        Webhooks go to the project whose shop connections the fuzz never changes."""
        seeded = self.seeded
        webhook = case.operation.path.startswith("/api/v1/webhooks/")
        own = {
            "workspace_id": seeded.workspace_id,
            "project_id": seeded.shop_project_id if webhook else seeded.project_id,
            "contact_id": seeded.contact_id,
            "template_id": seeded.template_id,
            "campaign_id": seeded.campaign_id,
            "subscription_id": seeded.subscription_id,
            "automation_id": seeded.automation_id,
            "identity_id": seeded.identity_id,
            "job_id": seeded.import_job_id,
            "export_id": seeded.export_id,
            "channel_id": (
                seeded.telegram_channel_id
                if case.operation.path.startswith("/api/v1/webhooks/telegram/")
                else seeded.x_channel_id
                if case.operation.path.startswith("/api/v1/webhooks/x/")
                else seeded.channel_id
            ),
            "conversation_id": seeded.conversation_id,
            "batch_id": seeded.erasure_batch_id,
        }
        for container in (case.path_parameters, case.query, case.body):
            if not isinstance(container, dict):
                continue
            for name, value in own.items():
                generated = container.get(name)
                if isinstance(generated, str) and is_uuid(generated):
                    container[name] = str(value)


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


# providers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shoptet() -> Iterator[ShoptetServer]:
    """Accepts any API token, so whatever token a fuzzed connect stored reaches test and sync."""
    with serve_shoptet() as server:
        server.token = None
        server.orders.append(shoptet_order(1))
        server.customers[SHOPTET_CUSTOMER] = {
            "guid": SHOPTET_CUSTOMER,
            "email": "eva@example.test",
            "billingAddress": {"fullName": "Eva Svobodová", "countryCode": "CZ"},
        }
        yield server


@pytest.fixture(scope="module")
def groq() -> Iterator[GroqServer]:
    with serve_groq() as server:
        yield server


@pytest.fixture(scope="module")
def razorpay() -> Iterator[RazorpayServer]:
    with serve_razorpay() as server:
        yield server


@pytest.fixture(scope="module")
def make() -> Iterator[MakeServer]:
    with serve_make() as server:
        yield server


@pytest.fixture(scope="module")
def ses() -> Iterator[str]:
    with moto_ses() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def storage() -> Iterator[StorageServer]:
    with serve_storage() as server:
        yield server


@pytest.fixture(scope="module")
def auth(database_url: str) -> Iterator[AuthServer]:
    with serve_auth(database_url) as server:
        yield server


@pytest.fixture(scope="module")
def bot_api() -> Iterator[TelegramServer]:
    with serve_telegram() as server:
        yield server


@pytest.fixture(scope="module")
def x_api() -> Iterator[XServer]:
    with serve_x() as server:
        yield server


@pytest.fixture(scope="module")
def shopify() -> Iterator[ShopifyServer]:
    """Accepts any access token, so whatever a fuzzed `shopify/api` stored reaches the backfill."""
    with serve_shopify() as server:
        server.token = None
        yield server


@pytest.fixture(scope="module")
def graph() -> Iterator[GraphServer]:
    with serve_whatsapp() as server:
        yield server


@pytest.fixture(scope="module")
def sns() -> Iterator[tuple[Certificate, SnsHost]]:
    certificate = Certificate()
    with serve_sns(certificate) as host:
        yield certificate, host


# the tenant ---------------------------------------------------------------------------------


def connect_shops(conn: Conn, box: SecretBox, project: uuid.UUID, workspace: uuid.UUID) -> None:
    """Every shop connected, with credentials sealed as the edge seals them."""
    credentials = {
        "shopify": (None, SECRETS.shop_webhook),
        "woocommerce": (None, SECRETS.shop_webhook),
        "shoptet": (TOKEN, SECRETS.shoptet_signature_key),
    }
    for source, (token, secret) in credentials.items():
        conn.execute(
            "insert into private.integrations (project_id, source, workspace_id,"
            " api_token_encrypted, webhook_secret_encrypted) values (%s, %s, %s, %s, %s)",
            (project, source, workspace, token and box.seal(token), box.seal(secret)),
        )


def seed(conn: Conn, user: User, razorpay: RazorpayServer, ses: str) -> Seeded:
    """One of each row the edge's operations name by id, in the user's personal workspace."""
    workspace = user.workspace_id
    project, shop_project = make_project(conn, user), make_project(conn, user, "Webhooks")
    box = SecretBox(SECRETS.encryption_key)
    connect_shops(conn, box, project, workspace)
    connect_shops(conn, box, shop_project, workspace)
    [contact] = add_contacts(conn, user, 1, prefix=f"fuzz-{uuid.uuid4().hex[:8]}")
    domain = f"fuzz-{uuid.uuid4().hex[:8]}.example.com"
    identity = verified_sender(conn, user, domain)
    boto3.client(
        "sesv2",
        region_name=REGION,
        endpoint_url=ses,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_email_identity(EmailIdentity=domain)
    campaign = draft_campaign(
        conn,
        user,
        list_ids=[email_list(conn, user, [contact])],
        sender_id=identity,
        from_email=f"hello@{domain}",
    )
    with acting_as(conn, user):
        template = one(
            conn,
            "insert into public.email_templates (workspace_id, name, subject, html)"
            " values (%s, 'Welcome', 'Welcome {{ first_name }}', '<p>Hi {{ email }}</p>')"
            " returning id",
            (workspace,),
        )["id"]
        automation = one(
            conn,
            "select (r.automation).id from public.enqueue_automation(%s, 'report', '{}', null) r",
            (project,),
        )["id"]
        import_job = one(
            conn,
            "select id from private.create_import_job(%s, %s, 'orders', 1000, 'fuzz.csv',"
            " 'utf-8', '{}', null)",
            (workspace, project),
        )["id"]
        export = one(conn, "select id from public.request_contact_export(%s)", (contact,))["id"]
        erasure_batch = one(
            conn,
            "select id from public.request_erasure_batch(%s, %s)",
            (workspace, [uuid.uuid4()]),
        )["id"]
        api_key = one(
            conn,
            "select secret from public.create_api_key(%s, 'Fuzz', 'member', null)",
            (workspace,),
        )["secret"]
        link_contact = one(
            conn,
            "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
            (workspace, f"links-{uuid.uuid4().hex[:8]}@example.test"),
        )["id"]
        conn.execute(
            "select public.record_consent(%s, 'email_marketing', 'granted', 'form')",
            (link_contact,),
        )
    channel = whatsapp_channel(conn, user, SECRETS.encryption_key)
    x_seeded = x_channel(conn, user, SECRETS.encryption_key, X_TOKEN)
    razorpay_id = razorpay.hold(TEAM_PLAN, str(workspace))
    subscription = one(
        conn,
        "select id from private.record_subscription(%s, %s, %s)",
        (workspace, user.id, Jsonb(razorpay.subscriptions[razorpay_id])),
    )["id"]
    return Seeded(
        workspace_id=workspace,
        project_id=project,
        shop_project_id=shop_project,
        contact_id=contact,
        template_id=template,
        campaign_id=campaign,
        subscription_id=subscription,
        razorpay_subscription_id=razorpay_id,
        razorpay_plan_id=TEAM_PLAN,
        automation_id=automation,
        identity_id=identity,
        import_job_id=import_job,
        shoptet_order_code=shoptet_order(1)["code"],
        shoptet_customer_guid=SHOPTET_CUSTOMER,
        export_id=export,
        erasure_batch_id=erasure_batch,
        api_key=api_key,
        link_contact_id=link_contact,
        channel_id=channel,
        phone_number_id=account_id(conn, channel),
        conversation_id=whatsapp_conversation(conn, channel),
        telegram_channel_id=telegram_channel(conn, user, SECRETS.encryption_key, TELEGRAM_TOKEN),
        email_address=email_channel(conn, user),
        x_channel_id=x_seeded[0],
        x_account_id=x_seeded[1],
    )


@pytest.fixture(scope="module")
def tenant(
    database_url: str, jwks: JwksServer, razorpay: RazorpayServer, ses: str
) -> Iterator[Tenant]:
    """A team-plan user with one of everything. Every plan's limits are lifted while the fuzz
    runs (fuzzed Razorpay events and cancellations move the workspace between plans), so every
    case reaches the code behind the rate limits (tests/security/test_rate_limits.py proves the
    limits)."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        user = create_user(conn)
        fund(conn, user, 1000, tier="team")
        # Someone else in the workspace, so deleting the account is refused (sole_owner)
        # instead of ending the fuzz's user.
        add_member(conn, user, "member")
        seeded = seed(conn, user, razorpay, ses)
        limits = conn.execute(
            "select plan_tier, action, scope, max_requests from public.plan_rate_limits"
        ).fetchall()
        conn.execute("update public.plan_rate_limits set max_requests = 1000000")
        try:
            yield Tenant(user, jwks.sign(jwks.claims(user.id, email=user.email)), seeded)
        finally:
            for limit in limits:
                conn.execute(
                    "update public.plan_rate_limits set max_requests = %(max_requests)s"
                    " where plan_tier = %(plan_tier)s and action = %(action)s"
                    " and scope = %(scope)s",
                    limit,
                )


@pytest.fixture(scope="module")
def edge_schema(
    database_url: str,
    jwks: JwksServer,
    shoptet: ShoptetServer,
    shopify: ShopifyServer,
    groq: GroqServer,
    razorpay: RazorpayServer,
    make: MakeServer,
    ses: str,
    sns: tuple[Certificate, SnsHost],
    storage: StorageServer,
    auth: AuthServer,
    graph: GraphServer,
    bot_api: TelegramServer,
    x_api: XServer,
) -> Iterator[OpenApiSchema]:
    """The edge as deployed, every secret set and every provider a local stand-in, so no case
    leaves the machine and none stops at `provider_not_configured`."""
    edge = create_app(
        Settings(
            database_url=SecretStr(database_url),
            supabase_url=jwks.base_url,
            public_base_url="https://edge.example.test",
            cron_secret=SecretStr(SECRETS.cron),
            make_signing_secret=SecretStr(SECRETS.make),
            make_webhook_url_seo_audit=make.url("seo"),
            make_webhook_url_content_gen=make.url("content"),
            make_webhook_url_report=make.url("report"),
            make_timeout_seconds=2,
            groq_api_key=SecretStr("gsk_test_" + uuid.uuid4().hex),
            groq_base_url=groq.base_url,
            groq_max_wait_seconds=0,
            razorpay_key_id=KEY_ID,
            razorpay_key_secret=SecretStr(KEY_SECRET),
            razorpay_webhook_secret=SecretStr(SECRETS.razorpay_webhook),
            razorpay_base_url=razorpay.base_url,
            ses_region=REGION,
            ses_endpoint_url=ses,
            ses_access_key_id="testing",
            ses_secret_access_key=SecretStr("testing"),
            sns_topic_arns=[SNS_TOPIC],
            sns_certificate_origins=[sns[1].base_url],
            email_link_secret=SecretStr(SECRETS.email_links),
            email_send_budget_seconds=2,
            integrations_encryption_key=SecretStr(SECRETS.encryption_key),
            shoptet_api_url=shoptet.base_url,
            shopify_admin_url=shopify.base_url,
            supabase_service_key=SecretStr(SERVICE_KEY),
            supabase_storage_url=storage.base_url,
            supabase_auth_url=auth.base_url,
            whatsapp_graph_url=graph.base_url,
            telegram_api_url=bot_api.base_url,
            x_api_url=x_api.base_url,
            inbox_timeout_seconds=2,
            database_timeout_seconds=5,
        )
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", edge)
    # Schemathesis started the app's lifespan (the database pool); close it before the
    # session drops the database.
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def context(tenant: Tenant, sns: tuple[Certificate, SnsHost]) -> Context:
    certificate, host = sns
    return Context(
        SECRETS,
        tenant.seeded,
        certificate,
        f"{host.base_url}/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem",
    )


# the fuzz -----------------------------------------------------------------------------------


def outcome(status: int, code: str | None) -> str:
    return f"{status} {code or '-'}"


def got_past_validation(outcome: str) -> bool:
    """A 2xx, or a 4xx that is not about the request's shape, credentials, limits or an id."""
    status, code = outcome.split(" ", 1)
    if status.startswith("2"):
        return True
    return (
        status.startswith("4")
        and status not in ("401", "403", "429")
        and code not in SHALLOW_CODES
        and not code.endswith("_not_found")
    )


def answer_problem(case: Case[Any], draw: Any, tenant: Tenant, context: Context) -> str:
    """Sends one generated request to the edge and answers its outcome; raises
    AssertionError on a wrong answer."""
    tenant.own_ids(case)
    sending = prepare(case, draw, context)
    headers = {"Authorization": f"Bearer {tenant.token}", **sending.headers}
    if sending.body is None:
        response = case.call(headers=headers)
    else:
        response = case.call(headers=headers, data=sending.body)
    described = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
    assert response.headers.get("x-request-id"), described
    content_type = (response.headers.get("content-type") or [""])[0]
    code = None
    if response.status_code >= 400 and content_type.startswith("application/json"):
        # The unsubscribe page answers people in HTML; every API answer is the envelope.
        body: Any = response.json()
        assert body["data"] is None and body["error"]["code"], described
        code = body["error"]["code"]
    assert response.status_code < 500 or (
        response.status_code == 503 and str(code).endswith("_not_configured")
    ), described
    # The contract holds for every answer: a documented status, media type and headers, and a
    # body that matches the schema the operation declares for that status.
    case.validate_response(response, checks=CONFORMANCE)
    if code is not None:
        documented = case.operation.definition.raw["responses"][str(response.status_code)]
        assert code in documented["x-error-codes"], f"undocumented error code: {described}"
    return outcome(response.status_code, code)


def fuzz(
    operation: APIOperation[Any, Any, Any, Any],
    tenant: Tenant,
    context: Context,
    outcomes: Counter[str],
) -> None:
    cases = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in GenerationMode))

    @given(case=cases, data=st.data())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def each_case(case: Case[Any], data: st.DataObject) -> None:
        outcomes[answer_problem(case, data.draw, tenant, context)] += 1

    each_case()


def test_no_input_gets_a_500_and_every_operation_is_reached(
    edge_schema: OpenApiSchema, tenant: Tenant, context: Context
) -> None:
    results = list(edge_schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) > 25, "every operation's schema loads"
    outcomes: defaultdict[str, Counter[str]] = defaultdict(Counter)
    problems: list[str] = []
    for operation in operations:
        try:
            fuzz(operation, tenant, context, outcomes[operation.label])
        except BaseException as problem:
            # Schemathesis reports conformance failures as an exception group, which is not an
            # Exception; every operation's problems are collected before the test fails.
            if isinstance(problem, KeyboardInterrupt | SystemExit):
                raise
            problems.append(f"{operation.label}: {problem}")
    assert not problems, "\n\n".join(problems)

    unreached = [
        f"{operation.label}: {dict(outcomes[operation.label])}"
        for operation in operations
        if operation.label not in UNREACHABLE
        and not any(got_past_validation(seen) for seen in outcomes[operation.label])
    ]
    assert not unreached, "no case got past validation:\n" + "\n".join(unreached)
