"""Customer facts kept on write: what a customer's row says after each kind of order change,
a randomized history of multi-row writes that must leave no drift in the facts nor in the daily
sales, concurrent writers, and who sees the drift check."""

import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from tests.factories.commerce import add_order, add_product, contact_id
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    fund,
    make_project,
    one,
    wait_until_blocked,
)

Conn = psycopg.Connection[Any]
Write = Callable[[Conn], None]


def facts(conn: Conn, contact: uuid.UUID) -> dict[str, Any] | None:
    row = conn.execute(
        "select orders_count, revenue, average_order_value, first_order_at, last_order_at,"
        " last_product_title, last_category from public.customer_facts where contact_id = %s",
        (contact,),
    ).fetchone()
    return dict(row) if row else None


def drift(conn: Conn, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "select * from analytics.verify_customer_facts() where workspace_id = %s", (workspace_id,)
    ).fetchall()


def sales_drift(conn: Conn, workspace_id: uuid.UUID) -> list[dict[str, Any]]:
    return conn.execute(
        "select * from private.verify_sales_daily() where workspace_id = %s", (workspace_id,)
    ).fetchall()


def test_a_customers_row_follows_their_orders(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    email = f"ann-{tag}@example.test"
    add_order(conn, project, f"{tag}-1", email, placed_at="2026-03-01T10:00:00Z", total=40)
    ann = contact_id(conn, email)
    assert facts(conn, ann) == {
        "orders_count": 1,
        "revenue": Decimal("40.00"),
        "average_order_value": Decimal("40.00"),
        "first_order_at": datetime(2026, 3, 1, 10, tzinfo=UTC),
        "last_order_at": datetime(2026, 3, 1, 10, tzinfo=UTC),
        "last_product_title": None,
        "last_category": None,
    }
    mug = add_product(conn, owner.workspace_id, project, "mug", "Mug", category="Kitchen")
    add_order(
        conn,
        project,
        f"{tag}-2",
        email,
        placed_at="2026-05-01T10:00:00Z",
        total=60,
        items=[{"name": "Spoon", "quantity": 1, "unit_price": 5}],
    )
    conn.execute(
        "update public.order_items set product_id = %s where name = 'Spoon' and workspace_id = %s",
        (mug, owner.workspace_id),
    )
    # An older order with pricier lines does not become the last product; a pending one never
    # counts at all.
    add_order(
        conn,
        project,
        f"{tag}-3",
        email,
        placed_at="2026-01-01T10:00:00Z",
        total=500,
        items=[{"name": "Sofa", "quantity": 1, "unit_price": 500}],
    )
    add_order(conn, project, f"{tag}-4", email, placed_at="2026-06-01T10:00:00Z", status="pending")
    row = facts(conn, ann)
    assert row is not None
    assert (row["orders_count"], row["revenue"], row["average_order_value"]) == (3, 600, 200)
    assert (row["first_order_at"].month, row["last_order_at"].month) == (1, 5)
    assert (row["last_product_title"], row["last_category"]) == ("Spoon", "Kitchen")

    conn.execute("update public.products set category = 'Cutlery' where id = %s", (mug,))
    assert facts(conn, ann)["last_category"] == "Cutlery"
    # The pending order is paid later: it is the newest order now, but it has no lines.
    add_order(conn, project, f"{tag}-4", email, placed_at="2026-06-01T10:00:00Z", total=100)
    row = facts(conn, ann)
    assert row is not None
    assert (row["orders_count"], row["revenue"], row["last_order_at"].month) == (4, 700, 6)
    assert row["last_product_title"] == "Spoon"
    # Refunding the order with the spoon makes the sofa the last product bought.
    add_order(conn, project, f"{tag}-2", email, placed_at="2026-05-01T10:00:00Z", status="refunded")
    row = facts(conn, ann)
    assert row is not None
    assert (row["orders_count"], row["revenue"], row["last_product_title"]) == (3, 640, "Sofa")
    conn.execute(
        "delete from public.orders where workspace_id = %s and status in ('paid', 'fulfilled')",
        (owner.workspace_id,),
    )
    assert facts(conn, ann) is None
    assert drift(conn, owner.workspace_id) == []


def test_merging_and_erasing_contacts_moves_their_facts(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    old, new = f"old-{tag}@example.test", f"new-{tag}@example.test"
    add_order(conn, project, f"{tag}-1", old, total=10, placed_at="2026-02-01T00:00:00Z")
    add_order(conn, project, f"{tag}-2", new, total=20, placed_at="2026-04-01T00:00:00Z")
    kept, merged = contact_id(conn, new), contact_id(conn, old)
    # A merge moves the duplicate's orders to the kept contact, then deletes the duplicate.
    conn.execute("update public.orders set contact_id = %s where contact_id = %s", (kept, merged))
    conn.execute("delete from public.contacts where id = %s", (merged,))
    row = facts(conn, kept)
    assert row is not None
    assert (row["orders_count"], row["revenue"], row["first_order_at"].month) == (2, 30, 2)
    # Erasure deletes the contact; its orders stay (without a contact) and so do the sales.
    conn.execute("delete from public.contacts where id = %s", (kept,))
    assert facts(conn, kept) is None
    orders = one(
        conn,
        "select count(*) as n from public.orders where workspace_id = %s and contact_id is null",
        (owner.workspace_id,),
    )
    assert orders["n"] == 2
    assert drift(conn, owner.workspace_id) == []


# a randomized history ---------------------------------------------------------------------------


@dataclass
class Shop:
    owner: User
    projects: list[uuid.UUID]
    contacts: list[uuid.UUID]
    products: list[uuid.UUID]
    orders: list[uuid.UUID] = field(default_factory=list)
    serial: int = 0

    def external_id(self) -> str:
        self.serial += 1
        return f"r-{self.serial}"


def new_contact(conn: Conn, shop: Shop, rng: random.Random) -> uuid.UUID:
    row = one(
        conn,
        "insert into public.contacts (workspace_id, email) values (%s, %s) returning id",
        (shop.owner.workspace_id, f"c-{rng.getrandbits(48):x}@example.test"),
    )
    return uuid.UUID(str(row["id"]))


def new_product(conn: Conn, shop: Shop, rng: random.Random) -> uuid.UUID:
    return add_product(
        conn,
        shop.owner.workspace_id,
        rng.choice(shop.projects),
        f"p-{rng.getrandbits(48):x}",
        "Thing",
        category=rng.choice(["Tea", "Cups", None]),
    )


def some(rng: random.Random, items: list[Any], most: int) -> list[Any]:
    return rng.sample(items, min(len(items), rng.randint(1, most)))


STATUSES = ["paid", "paid", "fulfilled", "pending", "cancelled", "refunded"]


def insert_orders(conn: Conn, shop: Shop, rng: random.Random) -> None:
    rows = []
    for _ in range(rng.randint(1, 8)):
        total = Decimal(rng.randint(0, 50_000)) / 100
        rows.append(
            (
                rng.choice(shop.projects),
                rng.choice([*shop.contacts, None]),
                rng.choice(["shopify", "woocommerce", "csv"]),
                shop.external_id(),
                rng.choice(STATUSES),
                datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randint(0, 24 * 30)),
                total,
                None if rng.random() < 0.2 else total,
            )
        )
    created = conn.execute(
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency, base_total)"
        " select %s, r.project_id, r.contact_id, r.source, r.external_id, r.status, r.placed_at,"
        " r.total, 'EUR', r.base_total"
        " from unnest(%s::uuid[], %s::uuid[], %s::text[], %s::text[], %s::text[],"
        "             %s::timestamptz[], %s::numeric[], %s::numeric[])"
        " as r(project_id, contact_id, source, external_id, status, placed_at, total, base_total)"
        " returning id",
        [shop.owner.workspace_id, *map(list, zip(*rows, strict=True))],
    ).fetchall()
    shop.orders += [r["id"] for r in created]


def add_lines(conn: Conn, shop: Shop, rng: random.Random) -> None:
    if not shop.orders:
        return
    conn.execute(
        "insert into public.order_items (order_id, workspace_id, name, quantity, unit_price,"
        " total, product_id)"
        " select o.id, o.workspace_id, 'line ' || g, 1, g * 3, g * 3,"
        "        (%s::uuid[])[1 + (g + length(o.external_id)) %% cardinality(%s::uuid[])]"
        " from public.orders o, generate_series(1, %s) as g where o.id = any (%s)",
        (
            shop.products,
            shop.products,
            rng.randint(1, 3),
            some(rng, shop.orders, 4),
        ),
    )


def change_status(conn: Conn, shop: Shop, rng: random.Random) -> None:
    conn.execute(
        "update public.orders set status = %s where id = any (%s)",
        (rng.choice(STATUSES), some(rng, shop.orders, 5)),
    )


def merge_contacts(conn: Conn, shop: Shop, rng: random.Random) -> None:
    kept, merged = rng.sample(shop.contacts, 2)
    conn.execute("update public.orders set contact_id = %s where contact_id = %s", (kept, merged))


def retime_and_reprice(conn: Conn, shop: Shop, rng: random.Random) -> None:
    conn.execute(
        "update public.orders set placed_at = placed_at + make_interval(days => %s),"
        " base_total = case when base_total is null then total else null end"
        " where id = any (%s)",
        (rng.randint(-20, 20), some(rng, shop.orders, 4)),
    )


def delete_orders(conn: Conn, shop: Shop, rng: random.Random) -> None:
    gone = some(rng, shop.orders, 3)
    conn.execute("delete from public.orders where id = any (%s)", (gone,))
    shop.orders = [o for o in shop.orders if o not in gone]


def change_lines(conn: Conn, shop: Shop, rng: random.Random) -> None:
    orders = some(rng, shop.orders, 4)
    if rng.random() < 0.5:
        conn.execute("delete from public.order_items where order_id = any (%s)", (orders,))
    else:
        conn.execute(
            "update public.order_items set total = total + 7, product_id = %s"
            " where order_id = any (%s)",
            (rng.choice([*shop.products, None]), orders),
        )


def erase_contact(conn: Conn, shop: Shop, rng: random.Random) -> None:
    erased = rng.choice(shop.contacts)
    conn.execute("delete from public.contacts where id = %s", (erased,))
    shop.contacts = [c for c in shop.contacts if c != erased] + [new_contact(conn, shop, rng)]


def change_catalog(conn: Conn, shop: Shop, rng: random.Random) -> None:
    product = rng.choice(shop.products)
    if rng.random() < 0.7:
        conn.execute(
            "update public.products set category = %s where id = %s",
            (rng.choice(["Tea", "Cups", "Gifts", None]), product),
        )
    else:
        conn.execute("delete from public.products where id = %s", (product,))
        shop.products = [p for p in shop.products if p != product] + [new_product(conn, shop, rng)]


def redeliver(conn: Conn, shop: Shop, rng: random.Random) -> None:
    """A shop re-sends an order through the importers' upsert: status and lines replaced."""
    row = conn.execute(
        "select o.external_id, o.source, o.project_id, o.placed_at, o.total, c.email"
        " from public.orders o join public.contacts c on c.id = o.contact_id"
        " where o.id = any (%s) and o.source <> 'csv' limit 1",
        (shop.orders,),
    ).fetchone()
    if row is None:
        return
    order = {
        "external_id": row["external_id"],
        "status": rng.choice(STATUSES),
        "placed_at": row["placed_at"].isoformat(),
        "total": str(row["total"]),
        "currency": "EUR",
        "customer": {"email": row["email"]},
        "items": [{"name": "again", "quantity": 2, "unit_price": rng.randint(1, 90)}],
    }
    conn.execute(
        "select private.upsert_order(%s, %s, %s)",
        (row["project_id"], row["source"], psycopg.types.json.Jsonb(order)),
    )


def refresh(conn: Conn, shop: Shop) -> None:
    """What the database holds now (a rolled-back savepoint undid some of the changes)."""
    for name, table in (("orders", "orders"), ("contacts", "contacts"), ("products", "products")):
        ids = conn.execute(
            f"select id from public.{table} where workspace_id = %s order by created_at, id",
            (shop.owner.workspace_id,),
        )
        setattr(shop, name, [r["id"] for r in ids])


CHANGES = [
    insert_orders,
    insert_orders,
    add_lines,
    add_lines,
    change_status,
    merge_contacts,
    retime_and_reprice,
    delete_orders,
    change_lines,
    erase_contact,
    change_catalog,
    redeliver,
]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_order_writes_leave_no_drift(conn: Conn, seed: int) -> None:
    rng = random.Random(seed)
    owner = create_user(conn)
    fund(conn, owner, 0, "team")
    shop = Shop(owner, [make_project(conn, owner, "A"), make_project(conn, owner, "B")], [], [])
    shop.contacts = [new_contact(conn, shop, rng) for _ in range(10)]
    shop.products = [new_product(conn, shop, rng) for _ in range(4)]
    for _ in range(3):
        insert_orders(conn, shop, rng)
    checked = 0
    for _ in range(40):
        # Several statements in one transaction; one in four rolls a savepoint back.
        with conn.transaction():
            for change in rng.choices(CHANGES, k=rng.randint(1, 4)):
                if rng.random() < 0.25:
                    with conn.transaction() as savepoint:
                        change(conn, shop, rng)
                        raise psycopg.Rollback(savepoint)
                else:
                    change(conn, shop, rng)
        refresh(conn, shop)
        assert drift(conn, owner.workspace_id) == []
        assert sales_drift(conn, owner.workspace_id) == []
        checked += 1
    customers = one(
        conn,
        "select count(*) as n from public.customer_facts where workspace_id = %s",
        (owner.workspace_id,),
    )
    assert checked == 40 and customers["n"] > 0


def test_the_check_reports_a_tampered_row(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    add_order(conn, project, tag, f"t-{tag}@example.test", total=30)
    customer = contact_id(conn, f"t-{tag}@example.test")
    conn.execute(
        "update public.customer_facts set orders_count = 2 where contact_id = %s", (customer,)
    )
    rows = drift(conn, owner.workspace_id)
    assert [
        (r["contact_id"], r["kept"]["orders_count"], r["counted"]["orders_count"]) for r in rows
    ] == [(customer, 2, 1)]
    conn.execute("delete from public.customer_facts where contact_id = %s", (customer,))
    assert [(r["kept"], r["counted"]["orders_count"]) for r in drift(conn, owner.workspace_id)] == [
        (None, 1)
    ]


def test_members_see_drift_only_in_their_workspaces(conn: Conn) -> None:
    owner, other = create_user(conn), create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    tag = uuid.uuid4().hex[:8]
    add_order(conn, make_project(conn, other), tag, f"o-{tag}@example.test")
    conn.execute(
        "update public.customer_facts set revenue = revenue + 1 where workspace_id = %s",
        (other.workspace_id,),
    )
    with acting_as(conn, viewer):
        seen_by_viewer = conn.execute("select * from analytics.verify_customer_facts()").fetchall()
    with acting_as(conn, other):
        seen_by_owner = conn.execute("select workspace_id from analytics.verify_customer_facts()")
        workspaces = {r["workspace_id"] for r in seen_by_owner}
    assert seen_by_viewer == []
    assert workspaces == {other.workspace_id}
    conn.execute(
        "update public.customer_facts set revenue = revenue - 1 where workspace_id = %s",
        (other.workspace_id,),
    )


def insert_paid_order(
    conn: Conn, project: uuid.UUID, customer: uuid.UUID, external_id: str
) -> None:
    conn.execute(
        "insert into public.orders (workspace_id, project_id, contact_id, source, external_id,"
        " status, placed_at, total, currency, base_total)"
        " select workspace_id, id, %s, 'csv', %s, 'paid', now(), 10, 'EUR', 10"
        " from public.projects where id = %s",
        (customer, external_id, project),
    )


def pay(conn: Conn, project: uuid.UUID, external_id: str) -> None:
    conn.execute(
        "update public.orders set status = 'paid' where project_id = %s and external_id = %s",
        (project, external_id),
    )


def test_concurrent_writers_of_one_customer_both_count(conn: Conn, database_url: str) -> None:
    """The second writer waits for the first one's row, then adds (or counts) on top of what it
    committed: an insert racing an insert, a payment racing an insert and the reverse."""
    owner = create_user(conn)
    project = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    email = f"race-{tag}@example.test"
    add_order(conn, project, f"{tag}-0", email, total=10)
    for pending in ("p1", "p2"):
        add_order(conn, project, f"{tag}-{pending}", email, total=10, status="pending")
    customer = contact_id(conn, email)

    def new(number: int) -> Write:
        return partial(
            insert_paid_order, project=project, customer=customer, external_id=f"{tag}-{number}"
        )

    def paid(pending: str) -> Write:
        return partial(pay, project=project, external_id=f"{tag}-{pending}")

    races = [(new(1), new(2)), (paid("p1"), new(3)), (new(4), paid("p2"))]
    for first, second in races:
        with (
            psycopg.connect(database_url, row_factory=dict_row) as holder,
            psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as racer,
        ):
            first(holder)
            waiting = threading.Thread(target=second, args=(racer,))
            waiting.start()
            wait_until_blocked(conn, racer.info.backend_pid)
            holder.commit()
            waiting.join()
    row = facts(conn, customer)
    assert row is not None
    assert (row["orders_count"], row["revenue"]) == (7, 70)
    assert drift(conn, owner.workspace_id) == []
