"""Plan rate limits on every endpoint that costs a provider call or a scan of a workspace's
data: once a free workspace's limit is spent the endpoint answers 429 `rate_limited` with
Retry-After (without calling the provider), while other workspaces go on; the Data API's segment
preview is limited the same way, and `take_action_quota` only ever spends the caller's own
workspace's quota."""

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from httpx2 import Response
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from api.app import create_app
from tests.factories.edge import bearer, edge_settings
from tests.factories.workspaces import (
    User,
    acting_as,
    acting_as_anon,
    add_member,
    create_user,
    make_project,
    one,
    refused,
)
from tests.fakes.jwks import JwksServer
from tests.fakes.razorpay_server import KEY_ID, KEY_SECRET, RazorpayServer, serve_razorpay
from tests.fakes.ses_server import REGION, moto_ses
from tests.fakes.shoptet_server import TOKEN, ShoptetServer, serve_shoptet

Conn = psycopg.Connection[DictRow]
# Long enough that no window boundary falls inside a test: the counts cannot reset mid-test.
TEN_YEARS = 10 * 365 * 86400
CSV = "order_id,placed_at,status,total,currency,email\nR-1,2026-06-01,paid,10,CZK,r@example.test\n"


@pytest.fixture(scope="module")
def shoptet() -> Iterator[ShoptetServer]:
    with serve_shoptet() as server:
        yield server


@pytest.fixture(scope="module")
def ses_endpoint() -> Iterator[str]:
    with moto_ses() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def razorpay_api() -> Iterator[RazorpayServer]:
    with serve_razorpay() as server:
        yield server


@pytest.fixture(scope="module")
def client(
    database_url: str,
    jwks: JwksServer,
    shoptet: ShoptetServer,
    ses_endpoint: str,
    razorpay_api: RazorpayServer,
) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        public_base_url="https://edge.example.test",
        integrations_encryption_key=SecretStr(Fernet.generate_key().decode()),
        shoptet_api_url=shoptet.base_url,
        ses_region=REGION,
        ses_endpoint_url=ses_endpoint,
        ses_access_key_id="testing",
        ses_secret_access_key=SecretStr("testing"),
        razorpay_key_id=KEY_ID,
        razorpay_key_secret=SecretStr(KEY_SECRET),
        razorpay_base_url=razorpay_api.base_url,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@contextmanager
def free_tier_limits(conn: Conn, action: str, per_user: int, per_workspace: int) -> Iterator[None]:
    """The free tier's limits of `action`, small and over a long window, while the block runs."""
    saved = conn.execute(
        "select scope, max_requests, window_seconds from public.plan_rate_limits"
        " where plan_tier = 'free' and action = %s",
        (action,),
    ).fetchall()
    conn.execute(
        "update public.plan_rate_limits"
        " set max_requests = case scope when 'user' then %s else %s end, window_seconds = %s"
        " where plan_tier = 'free' and action = %s",
        (per_user, per_workspace, TEN_YEARS, action),
    )
    try:
        yield
    finally:
        for row in saved:
            conn.execute(
                "update public.plan_rate_limits set max_requests = %s, window_seconds = %s"
                " where plan_tier = 'free' and action = %s and scope = %s",
                (row["max_requests"], row["window_seconds"], action, row["scope"]),
            )


class Edge:
    def __init__(self, client: TestClient, jwks: JwksServer) -> None:
        self.client, self.jwks = client, jwks

    def post(self, user: User, path: str, **kwargs: Any) -> Response:
        headers = bearer(self.jwks, user)
        return self.client.post(path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)


@pytest.fixture
def edge(client: TestClient, jwks: JwksServer) -> Edge:
    return Edge(client, jwks)


def assert_rate_limited(response: Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["data"] is None
    assert response.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(response.headers["Retry-After"]) <= TEN_YEARS


def shoptet_requests(edge: Edge, user: User, project: uuid.UUID) -> dict[str, Callable[[], Any]]:
    base = f"/api/v1/projects/{project}/integrations"
    return {
        "connect": lambda: edge.post(user, f"{base}/shoptet/connect", json={"api_token": TOKEN}),
        "test": lambda: edge.post(user, f"{base}/shoptet/test"),
        "sync": lambda: edge.post(user, f"{base}/shoptet/sync"),
        "shopify": lambda: edge.post(
            user, f"{base}/shopify/connect", json={"webhook_secret": "shopify-" + "s" * 20}
        ),
    }


def test_shop_connect_test_and_sync_share_the_shop_limit(
    edge: Edge, conn: Conn, shoptet: ShoptetServer
) -> None:
    user, other = create_user(conn), create_user(conn)
    project, other_project = make_project(conn, user), make_project(conn, other)
    calls = shoptet_requests(edge, user, project)
    with free_tier_limits(conn, "shop_sync", per_user=3, per_workspace=10):
        assert [calls[name]().status_code for name in ("connect", "test", "sync")] == [200] * 3
        asked_shoptet = len(shoptet.requests)
        for name in ("connect", "test", "sync", "shopify"):
            assert_rate_limited(calls[name]())
        assert len(shoptet.requests) == asked_shoptet
        others = shoptet_requests(edge, other, other_project)
        assert [others[name]().status_code for name in ("connect", "test")] == [200, 200]


def test_csv_imports_are_limited(edge: Edge, conn: Conn) -> None:
    user, other = create_user(conn), create_user(conn)
    project, other_project = make_project(conn, user), make_project(conn, other)

    def upload(who: User, into: uuid.UUID) -> Response:
        return edge.post(
            who,
            f"/api/v1/projects/{into}/orders/import",
            content=CSV.encode(),
            headers={"Content-Type": "text/csv"},
        )

    with free_tier_limits(conn, "import", per_user=2, per_workspace=10):
        assert [upload(user, project).status_code for _ in range(2)] == [200, 200]
        assert_rate_limited(upload(user, project))
        assert upload(other, other_project).status_code == 200


def add_contact(conn: Conn, user: User) -> uuid.UUID:
    row = one(
        conn,
        "insert into public.contacts (workspace_id, email, first_name) values (%s, %s, 'Ada')"
        " returning id",
        (user.workspace_id, f"c-{uuid.uuid4().hex[:10]}@mail.example.org"),
    )
    return uuid.UUID(str(row["id"]))


def test_email_previews_are_limited(edge: Edge, conn: Conn) -> None:
    user, other = create_user(conn), create_user(conn)
    contact, other_contact = add_contact(conn, user), add_contact(conn, other)

    def preview(who: User, contact_id: uuid.UUID) -> Response:
        body = {
            "contact_id": str(contact_id),
            "subject": "Hi {{ first_name }}",
            "html": "<p>Hi</p>",
        }
        return edge.post(who, "/api/v1/email/preview", json=body)

    with free_tier_limits(conn, "preview", per_user=2, per_workspace=10):
        assert [preview(user, contact).status_code for _ in range(2)] == [200, 200]
        assert_rate_limited(preview(user, contact))
        assert preview(other, other_contact).status_code == 200


def test_sender_identity_registration_and_refresh_are_limited(edge: Edge, conn: Conn) -> None:
    user, other = create_user(conn), create_user(conn)
    domain = f"mail-{uuid.uuid4().hex[:10]}.example.com"

    def register(who: User, identity: str) -> Response:
        body = {"workspace_id": str(who.workspace_id), "identity": identity}
        return edge.post(who, "/api/v1/email/identities", json=body)

    with free_tier_limits(conn, "sender_identity", per_user=2, per_workspace=10):
        created = register(user, domain)
        assert created.status_code == 201, created.text
        identity_id = created.json()["data"]["id"]
        refreshed = edge.post(user, f"/api/v1/email/identities/{identity_id}/refresh")
        assert refreshed.status_code == 200
        assert_rate_limited(register(user, domain))
        assert_rate_limited(edge.post(user, f"/api/v1/email/identities/{identity_id}/refresh"))
        assert register(other, f"mail-{uuid.uuid4().hex[:10]}.example.com").status_code == 201


def test_razorpay_calls_are_limited(edge: Edge, conn: Conn, razorpay_api: RazorpayServer) -> None:
    user, other = create_user(conn), create_user(conn)

    def subscribe(who: User) -> Response:
        body = {"workspace_id": str(who.workspace_id), "tier": "solo"}
        return edge.post(who, "/api/v1/billing/subscriptions", json=body)

    with free_tier_limits(conn, "billing", per_user=1, per_workspace=10):
        assert subscribe(user).status_code == 201
        asked_razorpay = len(razorpay_api.requests)
        assert_rate_limited(subscribe(user))
        assert len(razorpay_api.requests) == asked_razorpay
        assert subscribe(other).status_code == 201


def preview_segment(conn: Conn, user: User, workspace_id: uuid.UUID | None = None) -> Any:
    with acting_as(conn, user):
        return one(
            conn,
            "select public.preview_segment(%s, %s) as preview",
            (workspace_id or user.workspace_id, Jsonb({"field": "email", "op": "exists"})),
        )["preview"]


def test_the_data_api_segment_preview_is_limited(conn: Conn) -> None:
    user, other = create_user(conn), create_user(conn)
    add_contact(conn, user)
    with free_tier_limits(conn, "preview", per_user=2, per_workspace=10):
        assert [preview_segment(conn, user)["count"] for _ in range(2)] == [1, 1]
        with refused(429, "rate_limited"):
            preview_segment(conn, user)
        assert preview_segment(conn, other)["count"] == 0


def test_the_workspace_limit_is_shared_by_its_members_and_by_no_one_else(conn: Conn) -> None:
    owner, outsider = create_user(conn), create_user(conn)
    member = add_member(conn, owner, "member")
    with free_tier_limits(conn, "import", per_user=5, per_workspace=2):
        for who in (owner, member):
            with acting_as(conn, who):
                conn.execute("select public.take_action_quota(%s, 'import')", (owner.workspace_id,))
        with refused(429, "rate_limited"), acting_as(conn, member):
            conn.execute("select public.take_action_quota(%s, 'import')", (owner.workspace_id,))
        with acting_as(conn, outsider):
            conn.execute("select public.take_action_quota(%s, 'import')", (outsider.workspace_id,))


def test_a_spent_limit_says_when_to_retry(conn: Conn) -> None:
    user = create_user(conn)
    with free_tier_limits(conn, "preview", per_user=1, per_workspace=10):
        with acting_as(conn, user):
            conn.execute("select public.take_action_quota(%s, 'preview')", (user.workspace_id,))
        with pytest.raises(psycopg.Error) as caught, acting_as(conn, user):
            conn.execute("select public.take_action_quota(%s, 'preview')", (user.workspace_id,))
    assert caught.value.sqlstate == "PT429"
    assert caught.value.diag.message_detail is not None
    assert '"retry_after"' in caught.value.diag.message_detail


def test_only_members_at_the_actions_role_spend_a_quota(conn: Conn) -> None:
    owner, outsider = create_user(conn), create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    attempts: list[tuple[User, Any, str | None, int, str]] = [
        (outsider, owner.workspace_id, "preview", 404, "workspace_not_found"),
        (outsider, None, "preview", 404, "workspace_not_found"),
        (outsider, uuid.uuid4(), "import", 404, "workspace_not_found"),
        (viewer, owner.workspace_id, "import", 403, "insufficient_role"),
        (viewer, owner.workspace_id, "shop_sync", 403, "insufficient_role"),
        (viewer, owner.workspace_id, "billing", 403, "insufficient_role"),
        (owner, owner.workspace_id, "automation", 422, "invalid_action"),
        (owner, owner.workspace_id, "x" * 10_000, 422, "invalid_action"),
        (owner, owner.workspace_id, None, 422, "invalid_action"),
    ]
    for who, workspace_id, action, status, code in attempts:
        with refused(status, code), acting_as(conn, who):
            conn.execute("select public.take_action_quota(%s, %s)", (workspace_id, action))
    with acting_as(conn, viewer):
        conn.execute("select public.take_action_quota(%s, 'preview')", (owner.workspace_id,))
    spent = conn.execute(
        "select bucket from private.rate_limit_windows where bucket like any (%s)",
        ([f"%:{owner.workspace_id}", f"%:{viewer.id}", f"%:{outsider.id}"],),
    ).fetchall()
    assert sorted(r["bucket"] for r in spent) == sorted(
        [f"preview:user:{viewer.id}", f"preview:workspace:{owner.workspace_id}"]
    )


def test_anon_cannot_spend_a_quota(conn: Conn) -> None:
    owner = create_user(conn)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), acting_as_anon(conn):
        conn.execute("select public.take_action_quota(%s, 'preview')", (owner.workspace_id,))
