"""A store's API access is stored in one project of a workspace at a time: orders are keyed per
project and a store's ids are its own, so one store read by two projects would be every order
twice in revenue, customer facts and RFM. Storing a Shopify shop's or a WooCommerce store's API
access that another project of the workspace stores is a 409 naming that project; its own project
may store it again, another workspace may store it too, and once disconnected it may move."""

import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from api.app import create_app
from tests.factories.edge import bearer, documented_codes, edge_settings
from tests.factories.workspaces import (
    User,
    acting_as,
    create_user,
    make_project,
    refused,
    wait_until_blocked,
)
from tests.fakes.jwks import JwksServer
from tests.fakes.shopify_server import ACCESS_TOKEN

Conn = psycopg.Connection[DictRow]
STORE = "https://shop-a.example"
STORE_WWW = "https://www.shop-a.example"
OTHER_STORE = "https://shop-b.example"
WOO_KEY = {"consumer_key": "ck_4c3b2a190817263544536271", "consumer_secret": "cs_9f8e7d6c5b4a3928"}


@pytest.fixture
def client(database_url: str, jwks: JwksServer) -> Iterator[TestClient]:
    settings = edge_settings(
        database_url,
        jwks,
        integrations_encryption_key=Fernet.generate_key().decode(),
        woocommerce_allowed_origins=[STORE, STORE_WWW, OTHER_STORE],
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def owner_of_two_projects(conn: Conn) -> tuple[User, uuid.UUID, uuid.UUID]:
    owner = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (owner.workspace_id,)
    )
    return owner, make_project(conn, owner, "Old"), make_project(conn, owner, "New")


def store_shopify(
    client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID, domain: str
) -> Any:
    return client.post(
        f"/api/v1/projects/{project}/integrations/shopify/api",
        headers=bearer(jwks, user),
        json={"shop_domain": domain, "access_token": ACCESS_TOKEN},
    )


def store_woocommerce(
    client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID, url: str
) -> Any:
    return client.post(
        f"/api/v1/projects/{project}/integrations/woocommerce/api",
        headers=bearer(jwks, user),
        json={"store_url": url, **WOO_KEY},
    )


def disconnect(
    client: TestClient, jwks: JwksServer, user: User, project: uuid.UUID, source: str
) -> Any:
    return client.post(
        f"/api/v1/projects/{project}/integrations/{source}/disconnect", headers=bearer(jwks, user)
    )


def has_api_access(conn: Conn, project: uuid.UUID, source: str) -> bool:
    row = conn.execute(
        "select api_token_encrypted is not null as stored from private.integrations"
        " where project_id = %s and source = %s",
        (project, source),
    ).fetchone()
    return bool(row and row["stored"])


def assert_connected_elsewhere(answer: Any, elsewhere: uuid.UUID) -> None:
    assert answer.status_code == 409, answer.text
    body = answer.json()
    assert body["data"] is None
    assert body["error"]["code"] == "store_connected_elsewhere"
    assert str(elsewhere) in body["error"]["message"]


def test_a_shopify_shop_another_project_of_the_workspace_reads_is_refused_naming_it(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner, old, new = owner_of_two_projects(conn)
    assert store_shopify(client, jwks, owner, old, "demo-shop.myshopify.com").status_code == 200

    # The same shop, however it is written, in another project of the workspace: refused.
    refused = store_shopify(client, jwks, owner, new, "https://Demo-Shop.myshopify.com/")
    assert_connected_elsewhere(refused, old)
    assert not has_api_access(conn, new, "shopify")
    assert "store_connected_elsewhere" in documented_codes(client, "connect_shopify_api", 409)

    # Its own project stores it again (a new token); another shop is fine in the other project.
    again = store_shopify(client, jwks, owner, old, "demo-shop.myshopify.com")
    assert again.status_code == 200, again.text
    other = store_shopify(client, jwks, owner, new, "other-shop.myshopify.com")
    assert other.status_code == 200, other.text

    # The same shop in another workspace: its orders never meet this workspace's.
    stranger = create_user(conn)
    elsewhere = make_project(conn, stranger)
    answer = store_shopify(client, jwks, stranger, elsewhere, "demo-shop.myshopify.com")
    assert answer.status_code == 200, answer.text

    # Moving the shop: disconnected from the old project, the new one may store it.
    assert disconnect(client, jwks, owner, old, "shopify").json()["data"]["removed"] is True
    moved = store_shopify(client, jwks, owner, new, "demo-shop.myshopify.com")
    assert moved.status_code == 200, moved.text
    assert has_api_access(conn, new, "shopify")


REAL_GETADDRINFO = socket.getaddrinfo


def public_resolver(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    """DNS as the internet would answer for a store's host (one public address); any other
    name (the database's, the test client's) as this machine resolves it."""
    if isinstance(host, str) and host.endswith((".de", ".example")):
        public = ("93.184.216.34", port)
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", public)]
    return REAL_GETADDRINFO(host, port, *args, **kwargs)


def test_one_store_spelt_two_ways_is_one_store(
    conn: Conn, client: TestClient, jwks: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An internationalised host in Unicode or in its IDNA form, in capitals, or with the
    root's trailing dot names one store: stored once, in the spelling httpx and browsers send."""
    monkeypatch.setattr(socket, "getaddrinfo", public_resolver)
    owner, old, new = owner_of_two_projects(conn)
    stored = store_woocommerce(client, jwks, owner, old, "https://münchen-shop.de/")
    assert stored.status_code == 200, stored.text
    assert stored.json()["data"]["store_url"] == "https://xn--mnchen-shop-thb.de"
    for spelling in ("https://XN--MNCHEN-SHOP-THB.DE", "https://münchen-shop.de./"):
        assert_connected_elsewhere(store_woocommerce(client, jwks, owner, new, spelling), old)
    assert store_woocommerce(client, jwks, owner, new, "https://shop-c.example.").status_code == 200
    twice = store_woocommerce(client, jwks, owner, old, "https://Shop-C.example")
    assert_connected_elsewhere(twice, new)
    assert store_woocommerce(client, jwks, owner, new, "https://a..b").status_code == 422
    # `ß` is its own letter in IDNA 2008, as browsers and registries read it: `straße-shop.de`
    # and `strasse-shop.de` are two stores, and the key goes to the one the user named.
    german = store_woocommerce(client, jwks, owner, new, "https://straße-shop.de")
    assert german.json()["data"]["store_url"] == "https://xn--strae-shop-83a.de"
    assert store_woocommerce(client, jwks, owner, old, "https://strasse-shop.de").status_code == 200


def test_a_woocommerce_store_another_project_of_the_workspace_reads_is_refused_naming_it(
    conn: Conn, client: TestClient, jwks: JwksServer
) -> None:
    owner, old, new = owner_of_two_projects(conn)
    assert store_woocommerce(client, jwks, owner, old, STORE).status_code == 200

    # Its www. address with a trailing slash is the same store.
    refused = store_woocommerce(client, jwks, owner, new, STORE_WWW + "/")
    assert_connected_elsewhere(refused, old)
    assert not has_api_access(conn, new, "woocommerce")
    assert "store_connected_elsewhere" in documented_codes(client, "connect_woocommerce_api", 409)

    assert store_woocommerce(client, jwks, owner, old, STORE + "/").status_code == 200
    assert store_woocommerce(client, jwks, owner, new, OTHER_STORE).status_code == 200

    stranger = create_user(conn)
    elsewhere = make_project(conn, stranger)
    assert store_woocommerce(client, jwks, stranger, elsewhere, STORE).status_code == 200


def test_two_projects_storing_one_shop_at_once_the_second_is_refused(
    conn: Conn, database_url: str
) -> None:
    """The check is in the database, serialised per store: the second call waits for the
    first to commit and then finds it, so both cannot pass."""
    owner = create_user(conn)
    old, new = make_project(conn, owner, "Old"), make_project(conn, owner, "New")
    store = "select private.connect_store_api(%s, 'shopify', 'race-shop.myshopify.com', 'sealed')"
    with (
        psycopg.connect(database_url, row_factory=dict_row) as first,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as second,
        ThreadPoolExecutor(max_workers=1) as pool,
    ):
        first.execute(store, (old,))

        def store_in_new() -> psycopg.Error | None:
            try:
                second.execute(store, (new,))
            except psycopg.Error as error:
                return error
            return None

        storing = pool.submit(store_in_new)
        wait_until_blocked(conn, second.info.backend_pid)
        first.commit()
        error = storing.result()
    assert error is not None
    assert (error.sqlstate, error.diag.message_hint) == ("PT409", "store_connected_elsewhere")
    assert str(old) in (error.diag.message_primary or "")
    stored = conn.execute(
        "select project_id from private.integrations"
        " where workspace_id = %s and source = 'shopify'",
        (owner.workspace_id,),
    ).fetchall()
    assert [row["project_id"] for row in stored] == [old]


def test_a_moved_stores_orders_stay_in_the_old_project_until_it_is_deleted(conn: Conn) -> None:
    """What the README promises for a store moved to another project: refused while the old
    project stores it; once disconnected there, the old project keeps its copy of each order
    (both count) until a member deletes the old project."""
    owner, old, new = owner_of_two_projects(conn)
    store = "select private.connect_store_api(%s, 'shopify', 'moved-shop.myshopify.com', 'sealed')"
    conn.execute(store, (old,))
    with refused(409, "store_connected_elsewhere"):
        conn.execute(store, (new,))
    with acting_as(conn, owner):
        conn.execute("select public.disconnect_integration(%s, 'shopify')", (old,))
    conn.execute(store, (new,))
    order = {
        "external_id": "5551234",
        "status": "paid",
        "placed_at": "2026-11-01T10:00:00Z",
        "total": "45.00",
        "currency": "EUR",
        "customer": {"external_id": "77", "email": "jana@example.test"},
    }
    for project in (old, new):
        conn.execute("select private.upsert_orders(%s, 'shopify', %s)", (project, Jsonb([order])))

    def facts() -> tuple[int, Any]:
        row = conn.execute(
            "select f.orders_count, f.revenue from public.customer_facts f"
            " join public.contacts c on c.id = f.contact_id"
            " where c.workspace_id = %s and c.email = 'jana@example.test'",
            (owner.workspace_id,),
        ).fetchone()
        assert row is not None
        return row["orders_count"], row["revenue"]

    assert facts() == (2, Decimal("90.00"))
    with acting_as(conn, owner):
        conn.execute("delete from public.projects where id = %s", (old,))
    orders = conn.execute(
        "select project_id from public.orders where workspace_id = %s", (owner.workspace_id,)
    ).fetchall()
    assert [row["project_id"] for row in orders] == [new]
    assert facts() == (1, Decimal("45.00"))
