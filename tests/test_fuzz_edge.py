"""A property-based fuzz of the whole edge from its own OpenAPI, in-process through the ASGI
app, with a real database and a real signed-in user: no input gets a 500 (a 503 for a provider
that is not configured is an honest answer) and every answer carries `X-Request-Id`.

Deterministic (Hypothesis derandomized, no example database) and bounded, so CI sees the same
cases every run and the suite stays fast. Ids the user owns replace generated UUIDs for
`workspace_id` and `project_id`, so cases get past authorization into the code behind it.
"""

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import schemathesis
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row
from pydantic import SecretStr
from schemathesis import Case, GenerationMode
from schemathesis.core.result import Ok
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.schemas import OpenApiSchema

from api.app import create_app
from api.settings import Settings
from tests.factories import User, create_user, fund, make_project
from tests.jwks import JwksServer
from tests.shoptet_server import ShoptetServer, serve_shoptet

EXAMPLES_PER_OPERATION = 25


class Tenant:
    def __init__(self, user: User, project: uuid.UUID, token: str) -> None:
        self.user, self.project, self.token = user, project, token

    def own_ids(self, case: Case[Any]) -> None:
        """Point well-formed workspace and project ids at the tenant's own; keep the rest."""
        own = {"workspace_id": str(self.user.workspace_id), "project_id": str(self.project)}
        for container in (case.path_parameters, case.query, case.body):
            if not isinstance(container, dict):
                continue
            for name, value in own.items():
                generated = container.get(name)
                if isinstance(generated, str) and is_uuid(generated):
                    container[name] = value


def is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@pytest.fixture(scope="module")
def shoptet() -> Iterator[ShoptetServer]:
    with serve_shoptet() as server:
        yield server


@pytest.fixture(scope="module")
def tenant(database_url: str, jwks: JwksServer) -> Iterator[Tenant]:
    """A team-plan user whose plan limits are lifted while the fuzz runs, so every case reaches
    the code behind the rate limits (tests/test_rate_limits.py proves the limits)."""
    with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
        user = create_user(conn)
        fund(conn, user, 1000, tier="team")
        project = make_project(conn, user)
        limits = conn.execute(
            "select action, scope, max_requests from public.plan_rate_limits"
            " where plan_tier = 'team'"
        ).fetchall()
        conn.execute(
            "update public.plan_rate_limits set max_requests = 1000000 where plan_tier = 'team'"
        )
        try:
            yield Tenant(user, project, jwks.sign(jwks.claims(user.id, email=user.email)))
        finally:
            for limit in limits:
                conn.execute(
                    "update public.plan_rate_limits set max_requests = %(max_requests)s"
                    " where plan_tier = 'team' and action = %(action)s and scope = %(scope)s",
                    limit,
                )


@pytest.fixture(scope="module")
def edge_schema(
    database_url: str, jwks: JwksServer, shoptet: ShoptetServer
) -> Iterator[OpenApiSchema]:
    """The edge as deployed, with every webhook secret set, minus the providers it would call
    out to (those answer 503 provider_not_configured). Shoptet is a local fake, so
    connect/test/sync run for real without leaving the machine."""
    edge = create_app(
        Settings(
            database_url=SecretStr(database_url),
            supabase_url=jwks.base_url,
            public_base_url="https://edge.example.test",
            make_signing_secret=SecretStr("make-" + uuid.uuid4().hex),
            razorpay_webhook_secret=SecretStr("rzp-" + uuid.uuid4().hex),
            sns_topic_arns=["arn:aws:sns:eu-central-1:123456789012:growthbase-ses"],
            email_link_secret=SecretStr("links-" + uuid.uuid4().hex),
            integrations_encryption_key=SecretStr(Fernet.generate_key().decode()),
            shoptet_api_url=shoptet.base_url,
            database_timeout_seconds=5,
        )
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", edge)
    # Schemathesis started the app's lifespan (the database pool); close it before the
    # session drops the database.
    asgi.shutdown_lifespans()


def answer_problem(case: Case[Any], tenant: Tenant) -> None:
    """One generated request against the edge; raises AssertionError on a wrong answer."""
    tenant.own_ids(case)
    response = case.call(headers={"Authorization": f"Bearer {tenant.token}"})
    described = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text}"
    assert response.status_code < 500 or response.status_code == 503, described
    assert response.headers.get("x-request-id"), described
    content_type = (response.headers.get("content-type") or [""])[0]
    if response.status_code >= 400 and content_type.startswith("application/json"):
        # The unsubscribe page answers people in HTML; every API answer is the envelope.
        body: Any = response.json()
        assert body["data"] is None and body["error"]["code"], described


def fuzz(operation: APIOperation[Any, Any, Any, Any], tenant: Tenant) -> None:
    cases = st.one_of(*(operation.as_strategy(generation_mode=mode) for mode in GenerationMode))

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    def each_case(case: Case[Any]) -> None:
        answer_problem(case, tenant)

    each_case()


def test_no_input_gets_a_500_and_every_answer_has_a_request_id(
    edge_schema: OpenApiSchema, tenant: Tenant
) -> None:
    results = list(edge_schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results) > 25, "every operation's schema loads"
    problems: list[str] = []
    for operation in operations:
        try:
            fuzz(operation, tenant)
        except Exception as problem:
            problems.append(f"{operation.label}: {problem}")
    assert not problems, "\n\n".join(problems)
