"""A value meant to be new for every row (an id, a random delay, a sequence number, the clock) is
drawn in a target list or an expression on the row, never in a subquery of its own without a
FROM: such a subquery is a one-row relation (or, as a scalar, an init plan) that Postgres may run
once for the whole statement, and every row then shares the one value. private.upsert_customers
drew a new customer's contact id so, `cross join lateral (select gen_random_uuid() as id)`, and
with the join order turned every new customer of a page became one contact
(20270206090000_shop_customer_ids_drawn_per_row.sql). Checked on every function as the
migrations leave it."""

import re

import psycopg
from psycopg.rows import DictRow

Conn = psycopg.Connection[DictRow]

PER_ROW_VALUES = re.compile(
    r"\b(gen_random_uuid|uuid_generate_v4|random|random_normal|nextval|clock_timestamp|timeofday)\s*\(",
    re.IGNORECASE,
)
SUBQUERY = re.compile(r"\(\s*select\b", re.IGNORECASE)


def subqueries_without_from(source: str) -> list[str]:
    """Each parenthesised `select …` of `source` whose own level (not its nested parentheses)
    has no FROM; quoted strings skipped."""
    found = []
    for start in (m.start() for m in SUBQUERY.finditer(source)):
        depth, own, position = 0, [], start
        while position < len(source):
            char = source[position]
            if char == "'":
                end = source.find("'", position + 1)
                position = len(source) if end < 0 else end + 1
                continue
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
                if depth == 0:
                    break
            elif depth == 1:
                own.append(char)
            position += 1
        if not re.search(r"\bfrom\b", "".join(own), re.IGNORECASE):
            found.append(source[start : position + 1])
    return found


def test_no_function_draws_a_per_row_value_in_a_subquery_of_its_own(conn: Conn) -> None:
    functions = conn.execute(
        "select n.nspname || '.' || p.proname as name, p.prosrc from pg_catalog.pg_proc p"
        " join pg_catalog.pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname in ('public', 'private', 'analytics')"
        "   and p.prolang in (select oid from pg_catalog.pg_language"
        "                     where lanname in ('sql', 'plpgsql'))"
    ).fetchall()
    assert len(functions) > 100
    shared = [
        (f["name"], " ".join(subquery.split()))
        for f in functions
        for subquery in subqueries_without_from(f["prosrc"])
        if PER_ROW_VALUES.search(subquery)
    ]
    assert shared == []


def test_the_check_finds_a_shared_value_and_passes_a_drawn_one() -> None:
    shared = "from unknown u cross join lateral (select gen_random_uuid() as id) as g"
    drawn = "select u.*, gen_random_uuid() as new_id from unknown u"
    correlated = "cross join lateral (select k.id from t k where k.n = random()) as g"
    scalar = "select (select nextval('s')) from t"
    assert subqueries_without_from(shared) == ["(select gen_random_uuid() as id)"]
    assert subqueries_without_from(drawn) == []
    assert subqueries_without_from(correlated) == []
    assert subqueries_without_from(scalar) == ["(select nextval('s'))"]
    nested = "(select case when x then extract(epoch from now()) end, random())"
    assert subqueries_without_from(nested) == [nested]
