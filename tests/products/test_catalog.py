"""The product catalog: who reads and writes it, how order lines find their products, and what
deleting a product keeps."""

import uuid
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.factories.commerce import add_line, add_order, add_product, add_variant
from tests.factories.workspaces import acting_as, add_member, create_user, make_project, one

Conn = psycopg.Connection[Any]


def test_members_read_their_catalog_and_nobody_writes_it_through_the_data_api(conn: Conn) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    project = make_project(conn, owner)
    product = add_product(conn, owner.workspace_id, project, "p-1", "Mug", sku="MUG")
    add_variant(conn, owner.workspace_id, product, "v-1", sku="MUG-RED")
    with acting_as(conn, viewer):
        seen = conn.execute("select title from public.products").fetchall()
        variants = conn.execute("select sku from public.product_variants").fetchall()
    with acting_as(conn, stranger):
        unseen = conn.execute("select id from public.products").fetchall()
        unseen_variants = conn.execute("select id from public.product_variants").fetchall()
    assert seen == [{"title": "Mug"}]
    assert variants == [{"sku": "MUG-RED"}]
    assert unseen == unseen_variants == []
    for statement, params in (
        ("update public.products set price = 0 where id = %s", (product,)),
        ("delete from public.products where id = %s", (product,)),
        (
            "insert into public.products (workspace_id, project_id, source, external_id, title)"
            " values (%s, %s, 'manual', 'p-2', 'Bowl')",
            (owner.workspace_id, project),
        ),
    ):
        with pytest.raises(errors.InsufficientPrivilege), acting_as(conn, owner):
            conn.execute(statement, params)


def test_external_ids_are_unique_per_shop_and_source(conn: Conn) -> None:
    owner = create_user(conn)
    first, second = make_project(conn, owner, "One"), make_project(conn, owner, "Two")
    add_product(conn, owner.workspace_id, first, "42", "Mug")
    add_product(conn, owner.workspace_id, second, "42", "Plate")
    add_product(conn, owner.workspace_id, first, "42", "Mug (CSV)", source="csv")
    with pytest.raises(errors.UniqueViolation):
        add_product(conn, owner.workspace_id, first, "42", "Mug again")


def test_lines_link_by_shop_ids_then_by_an_unambiguous_sku(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    tag = uuid.uuid4().hex[:8]
    order = add_order(conn, project, f"o-{tag}", f"b-{tag}@example.test", items=[])
    lines = {
        "by_ids": add_line(
            conn, order, "Mug, red", external_product_id="10", external_variant_id="11"
        ),
        "by_variant_sku": add_line(conn, order, "Mug, blue", sku="MUG-BLUE"),
        "by_product_sku": add_line(conn, order, "Plate", sku="PLATE"),
        "ambiguous_sku": add_line(conn, order, "Spoon", sku="SPOON"),
        "unknown": add_line(conn, order, "Gift card", sku="GIFT"),
    }
    mug = add_product(conn, owner.workspace_id, project, "10", "Mug", sku="MUG")
    red = add_variant(conn, owner.workspace_id, mug, "11", sku="MUG-RED")
    blue = add_variant(conn, owner.workspace_id, mug, "12", sku="MUG-BLUE")
    plate = add_product(conn, owner.workspace_id, project, "20", "Plate", sku="PLATE")
    add_product(conn, owner.workspace_id, project, "30", "Spoon", sku="SPOON")
    add_product(conn, owner.workspace_id, project, "31", "Spoon (old)", sku="SPOON")
    other = create_user(conn)
    add_product(conn, other.workspace_id, make_project(conn, other), "40", "Gift", sku="GIFT")

    linked = one(conn, "select private.link_order_items(%s) as n", (project,))["n"]
    again = one(conn, "select private.link_order_items(%s) as n", (project,))["n"]

    rows = {
        r["id"]: (r["product_id"], r["variant_id"])
        for r in conn.execute(
            "select id, product_id, variant_id from public.order_items where order_id = %s",
            (order,),
        )
    }
    assert rows[lines["by_ids"]] == (mug, red)
    assert rows[lines["by_variant_sku"]] == (mug, blue)
    assert rows[lines["by_product_sku"]] == (plate, None)
    assert rows[lines["ambiguous_sku"]] == (None, None)
    assert rows[lines["unknown"]] == (None, None)  # another workspace's product never links
    assert (linked, again) == (3, 0)


def test_deleting_a_product_keeps_its_sales_history(conn: Conn) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    product = add_product(conn, owner.workspace_id, project, "p-1", "Mug")
    variant = add_variant(conn, owner.workspace_id, product, "v-1")
    tag = uuid.uuid4().hex[:8]
    order = add_order(conn, project, f"o-{tag}", f"b-{tag}@example.test", items=[])
    line = add_line(conn, order, "Mug", product=product)
    conn.execute("update public.order_items set variant_id = %s where id = %s", (variant, line))
    conn.execute("delete from public.products where id = %s", (product,))
    kept = one(
        conn,
        "select name, product_id, variant_id, workspace_id from public.order_items where id = %s",
        (line,),
    )
    assert kept == {
        "name": "Mug",
        "product_id": None,
        "variant_id": None,
        "workspace_id": owner.workspace_id,
    }


def test_a_line_cannot_reference_another_workspaces_product(conn: Conn) -> None:
    owner, other = create_user(conn), create_user(conn)
    theirs = add_product(conn, other.workspace_id, make_project(conn, other), "p-1", "Mug")
    tag = uuid.uuid4().hex[:8]
    order = add_order(
        conn, make_project(conn, owner), f"o-{tag}", f"b-{tag}@example.test", items=[]
    )
    with pytest.raises(errors.ForeignKeyViolation):
        add_line(conn, order, "Mug", product=theirs)
