"""Every function the Data API exposes is safe for every argument: called by the owner of a
seeded workspace with arguments generated from its parameter types (junk inside the JSON keys
it reads, extremes, SQL null), it either succeeds or refuses with our client error convention
(SQLSTATE PT4xx, which the edge and PostgREST answer as a 4xx with a code). A raw SQL error
(22xxx, 23xxx, ...) would reach PostgREST as a bare 400/409 and the edge as a 500."""

import datetime
import json
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.types.json import Jsonb

from api.core.db import become_user
from api.core.errors import from_database_error
from tests.factories.email import add_contacts, list_campaign
from tests.factories.inbox import whatsapp_channel, whatsapp_conversation
from tests.factories.workspaces import (
    User,
    acting_as,
    create_user,
    fund,
    make_project,
    one,
    refused,
)

Conn = psycopg.Connection[Any]

EXAMPLES_PER_FUNCTION = 50
# Slow is an honest answer (the Data API's statement timeout), and it keeps the test fast.
STATEMENT_TIMEOUT = "2s"
ALLOWED_SQLSTATES = ("PT4", "57014")

EXPOSED_FUNCTIONS = """
select n.nspname as schema, p.proname as name,
       array(select pg_catalog.format_type(t, null) from unnest(p.proargtypes::oid[]) t)
         as types,
       coalesce(p.proargnames[1:p.pronargs], array[]::text[]) as names
from pg_catalog.pg_proc p
join pg_catalog.pg_namespace n on n.oid = p.pronamespace
where n.nspname in ('public', 'analytics')
  and (has_function_privilege('authenticated', p.oid, 'execute')
       or has_function_privilege('anon', p.oid, 'execute'))
order by 1, 2
"""


@dataclass(frozen=True)
class ExposedFunction:
    schema: str
    name: str
    types: list[str]
    names: list[str]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


# Numbers JSON can carry but Python's json cannot write: put in as placeholders, then unquoted.
# (The most extreme jsonb still takes; 1e131072 or 1e-20000 fail at jsonb input, before any
# function runs, which PostgREST answers itself.)
RAW_NUMBERS = ["1e131071", "-1e100000", "1e-16383", "123456789012345678901234567890.5"]


def raw_number_placeholder(number: str) -> str:
    return f"@@raw:{number}@@"


def json_text(value: Any) -> str:
    text = json.dumps(value, allow_nan=False)
    for number in RAW_NUMBERS:
        text = text.replace(json.dumps(raw_number_placeholder(number)), number)
    return text


# Postgres text holds no NUL (psycopg refuses it before sending, jsonb refuses \u0000) and
# UTF-8 no lone surrogate.
texts = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=40),
    st.sampled_from(["", " ", "-1", "1e999", "NaN", "infinity"]),
    st.sampled_from(["x", "é😀"]).map(lambda unit: unit * 10_000),  # long, built lazily
)
junk_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 2**31, -(2**63), 10**30, 10**400]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([raw_number_placeholder(number) for number in RAW_NUMBERS]),
    texts,
    st.sampled_from(["2026-11-30T10:00:00Z", "294277-01-01", "infinity", "-infinity", "x"]),
)
junk_json = st.recursive(
    junk_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(texts, children, max_size=4)
    ),
    max_leaves=12,
)


def objects_with_keys(fields: dict[str, list[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects using the keys a function reads, each missing, plausible (so the call gets past
    the first check) or junk."""
    return st.fixed_dictionaries(
        {},
        optional={key: st.sampled_from(plausible) | junk_json for key, plausible in fields.items()},
    )


ORDER_FIELDS: dict[str, list[Any]] = {
    "external_id": ["o-1", "x" * 201],
    "status": ["paid", "pending", "zzz"],
    "placed_at": ["2026-11-30T10:00:00Z", "x", "infinity"],
    "total": ["10", 10, "abc", 1e20, -1],
    "currency": ["EUR", "CZK", "eur", "EURO"],
    "exchange_rate": [1.5, 0, 1e12],
}
CUSTOMER_FIELDS: dict[str, list[Any]] = {
    "external_id": ["c-1", "", "x" * 201],
    "email": ["reader@mail.example.org", "bad", ""],
    "phone": ["+420123456789", "123"],
    "first_name": ["Ann", "x" * 201],
    "last_name": ["Lee"],
    "accepts_marketing": [True, "yes", "maybe"],
}
ITEM_FIELDS: dict[str, list[Any]] = {
    "sku": ["a"],
    "name": ["Mug"],
    "quantity": [1, "2.5", 0, 1e15],
    "unit_price": [2, "9.99", -1, 1e15],
}
VALID_DOCUMENT = {
    "external_id": "o-1",
    "status": "paid",
    "placed_at": "2026-11-30T10:00:00Z",
    "total": "10",
    "currency": "EUR",
    "customer": {"email": "reader@mail.example.org", "first_name": "Ann"},
    "items": [{"sku": "a", "name": "Mug", "quantity": 1, "unit_price": 10}],
}


def with_one_field(
    document: dict[str, Any], fields: dict[str, list[Any]], at: str | None = None
) -> st.SearchStrategy[dict[str, Any]]:
    """A valid document with one field (of its own, or of the nested object `at`) replaced by
    a plausible value or junk, so every field's check is reached."""

    def replace(key: str, value: Any) -> dict[str, Any]:
        if at is None:
            return {**document, key: value}
        nested = document[at][0] if isinstance(document[at], list) else document[at]
        changed = {**nested, key: value}
        return {**document, at: [changed] if isinstance(document[at], list) else changed}

    return st.sampled_from(sorted(fields)).flatmap(
        lambda key: st.builds(
            lambda value: replace(key, value), st.sampled_from(fields[key]) | junk_json
        )
    )


orders = st.one_of(
    with_one_field(VALID_DOCUMENT, ORDER_FIELDS),
    with_one_field(VALID_DOCUMENT, CUSTOMER_FIELDS, at="customer"),
    with_one_field(VALID_DOCUMENT, ITEM_FIELDS, at="items"),
    st.builds(
        lambda order, rest: {**order, **rest},
        objects_with_keys(ORDER_FIELDS),
        st.fixed_dictionaries(
            {},
            optional={
                "customer": objects_with_keys(CUSTOMER_FIELDS) | junk_json,
                "items": st.lists(objects_with_keys(ITEM_FIELDS), max_size=3) | junk_json,
            },
        ),
    ),
)
SEGMENT_NUMBERS = [1, 90, 0, -5, 1.5, 1e20, raw_number_placeholder("1e131071")]
ORDERS_RULE_FIELDS = dict.fromkeys(
    ["min_count", "max_count", "min_revenue", "within_days"], SEGMENT_NUMBERS
)
segment_rules = st.recursive(
    st.one_of(
        objects_with_keys(
            {
                "field": ["email", "first_name", "created_at", "nope"],
                "attribute": ["tier"],
                "op": ["eq", "gt", "lte", "in", "contains", "exists", "zz"],
                "value": ["x", 5, 1e20, raw_number_placeholder("1e131071"), ["a"]],
            }
        ),
        st.builds(lambda orders: {"orders": orders}, objects_with_keys(ORDERS_RULE_FIELDS)),
        objects_with_keys(
            {
                "in_list": [str(uuid.uuid4()), "not-a-uuid"],
                "rfm_segment": ["At Risk", "Nope"],
                "opened_within_days": SEGMENT_NUMBERS,
                "clicked_within_days": SEGMENT_NUMBERS,
            }
        ),
        junk_json,
    ),
    lambda children: st.one_of(
        st.builds(lambda rules: {"all": rules}, st.lists(children, max_size=3)),
        st.builds(lambda rules: {"any": rules}, st.lists(children, max_size=3)),
        st.builds(lambda rule: {"not": rule}, children),
    ),
    max_leaves=6,
)
# Parameters whose valid values are few: plausible ones get the call past the first check.
PLAUSIBLE_BY_NAME: dict[str, list[Any]] = {
    "p_weight": [1, 50, 100, 101],
    "p_sample": [10, 0, 101],
    "p_valid_for": [datetime.timedelta(days=7), datetime.timedelta(days=400), "-1 day"],
    "p_at": ["tomorrow", "yesterday"],
}
# Text parameters whose valid values are few: plausible ones get the call past the first check.
PLAUSIBLE_TEXT: dict[str, list[str]] = {
    "p_type": ["seo_audit", "content_gen", "report"],
    "p_source": ["shoptet", "shopify", "woocommerce"],
    "p_role": ["owner", "admin", "member", "viewer"],
    "p_min_role": ["member"],
    "p_tier": ["free", "solo", "team"],
    "p_action": ["preview", "import", "shop_sync", "sender_identity", "billing"],
    "p_idempotency_key": ["", "k-1", "x" * 129],
    "p_name": ["B", "Variant B", "Shop"],
    "p_email": ["new@example.org", "NEW@Example.org ", "bad"],
    "p_identity": ["shop.example.net", "hello@shop.example.net", "-bad-.example"],
    "p_base_currency": ["EUR", "CZK", "eur"],
    "p_slug": ["my-shop", "My Shop"],
    "p_template_key": ["welcome_series", "abandoned_cart", "win_back", "nope"],
    "p_from_email": ["hello@news.example.com", "bad"],
    "p_status": ["open", "pending", "snoozed", "resolved"],
    "p_priority": ["none", "high", "urgent"],
    "p_text": ["Thanks!", "  "],
}
JSON_BY_PARAMETER = {
    "p_order": orders,
    "p_rule": segment_rules,
    "p_input": st.dictionaries(texts, junk_json, max_size=4),
}

SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "text": texts,
    "integer": st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 2**31 - 1])),
    "timestamp with time zone": st.one_of(
        st.datetimes(timezones=st.just(datetime.UTC)),
        st.sampled_from(["infinity", "-infinity", "4713-01-01 BC", "294276-12-31"]),
    ),
    "interval": st.one_of(
        st.timedeltas(), st.sampled_from(["178000000 years", "-178000000 years", "0"])
    ),
    "date": st.one_of(st.dates(), st.sampled_from(["infinity", "-infinity", "5874897-12-31"])),
    "boolean": st.booleans(),
    "text[]": st.lists(texts | st.none(), max_size=25),
    "uuid[]": st.one_of(
        st.lists(st.uuids() | st.none(), max_size=3),
        st.just([uuid.UUID(int=n) for n in range(1001)]),
    ),
}


OWN_ID_PARAMETERS = {"p_workspace_id", "p_project_id", "p_campaign_id"}


@dataclass(frozen=True)
class Seed:
    owner: User
    ids: dict[str, list[uuid.UUID]]  # parameter name -> the owner's own ids for it


def argument_strategy(seed: Seed, name: str, type_name: str) -> st.SearchStrategy[Any]:
    if type_name == "uuid" and name in OWN_ID_PARAMETERS:
        # The owner's own, so calls get past the membership check: others' and unknown ids
        # are the tenancy matrix's business, null the null pass's.
        return st.sampled_from(seed.ids[name])
    value: st.SearchStrategy[Any]
    if type_name == "uuid":
        value = st.sampled_from(seed.ids.get(name, [seed.owner.id])) | st.uuids()
    elif type_name == "jsonb":
        value = st.builds(json_text, JSON_BY_PARAMETER.get(name, junk_json) | junk_json)
    elif type_name == "text" and name in PLAUSIBLE_TEXT:
        value = st.sampled_from(PLAUSIBLE_TEXT[name]) | texts
    elif name in PLAUSIBLE_BY_NAME:
        value = st.sampled_from(PLAUSIBLE_BY_NAME[name]) | SCALARS[type_name]
    else:
        assert type_name in SCALARS, f"no strategy for parameter type {type_name}: add one"
        value = SCALARS[type_name]
    return value | st.none()


def call_sql(function: ExposedFunction) -> sql.Composed:
    arguments = [
        sql.SQL("{}::{}").format(sql.Placeholder(), sql.SQL(type_name))
        for type_name in function.types
    ]
    return sql.SQL("select * from {}.{}({})").format(
        sql.Identifier(function.schema),
        sql.Identifier(function.name),
        sql.SQL(", ").join(arguments),
    )


def outcome(conn: Conn, seed: Seed, function: ExposedFunction, arguments: list[Any]) -> str | None:
    """The SQLSTATE of the call as the owner (rolled back either way), or None on success."""
    try:
        with conn.transaction(force_rollback=True):
            become_user(conn, seed.owner.claims, "POST", f"/rpc/{function.name}")
            conn.execute(sql.SQL("set local statement_timeout = {}").format(STATEMENT_TIMEOUT))
            conn.execute(call_sql(function), arguments).fetchall()
    except psycopg.Error as error:
        return error.sqlstate or f"client-side {type(error).__name__}"
    return None


def seeded_workspace(conn: Conn) -> Seed:
    owner = create_user(conn)
    project = make_project(conn, owner)
    fund(conn, owner, 1000)
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 3))
    with acting_as(conn, owner):
        invitation = one(
            conn,
            "select invitation_id from public.invite_member(%s, 'invited@example.org')",
            (owner.workspace_id,),
        )["invitation_id"]
    with acting_as(conn, owner):
        template = one(
            conn,
            "insert into public.email_templates (workspace_id, name, subject, html)"
            " values (%s, 'Welcome', 'Hi', '<p>Hi</p>') returning id",
            (owner.workspace_id,),
        )["id"]
        flow = one(
            conn,
            "insert into public.flows (workspace_id, name, trigger_type)"
            " values (%s, 'Welcome', 'contact_created') returning id",
            (owner.workspace_id,),
        )["id"]
    channel = whatsapp_channel(conn, owner, Fernet.generate_key().decode())
    conversation = whatsapp_conversation(conn, channel)
    ids = {
        "p_flow_id": [flow],
        "p_conversation_id": [conversation],
        "p_channel_id": [channel],
        "p_assignee_id": [owner.id],
        "p_keep_id": add_contacts(conn, owner, 1, prefix="keep"),
        "p_merge_id": add_contacts(conn, owner, 1, prefix="merge"),
        "p_workspace_id": [owner.workspace_id],
        "p_project_id": [project],
        "p_campaign_id": [campaign],
        "p_user_id": [owner.id],
        "p_invitation_id": [invitation],
        "p_template_id": [template],
    }
    return Seed(owner, ids)


def exposed_functions(conn: Conn) -> list[ExposedFunction]:
    return [ExposedFunction(**row) for row in conn.execute(EXPOSED_FUNCTIONS).fetchall()]


def check_function(
    conn: Conn, seed: Seed, function: ExposedFunction, raw_errors: list[str]
) -> None:
    """Calls the function with generated arguments, noting every answer outside our convention
    (collected rather than raised, so one run lists every function's every raw error)."""
    arguments = st.tuples(
        *(
            argument_strategy(seed, name, type_name)
            for name, type_name in zip(function.names, function.types, strict=True)
        )
    )

    @settings(
        max_examples=EXAMPLES_PER_FUNCTION,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(arguments)
    def call(values: tuple[Any, ...]) -> None:
        sqlstate = outcome(conn, seed, function, list(values))
        if sqlstate is not None and not sqlstate.startswith(ALLOWED_SQLSTATES):
            shown = [repr(value)[:200] for value in values]
            raw_errors.append(f"{function.qualified}({', '.join(shown)}) -> {sqlstate}")

    call()


PLAUSIBLE_BY_TYPE: dict[str, Any] = {
    "text": "x",
    "jsonb": "{}",
    "integer": 10,
    "timestamp with time zone": "tomorrow",
    "interval": "1 day",
    "date": "today",
    "boolean": True,
    "uuid[]": [],
    "text[]": ["vip"],
}


def plausible_argument(seed: Seed, name: str, type_name: str) -> Any:
    if type_name == "uuid":
        return (seed.ids.get(name) or [seed.owner.workspace_id])[0]
    if type_name == "text" and name in PLAUSIBLE_TEXT:
        return PLAUSIBLE_TEXT[name][0]
    return PLAUSIBLE_BY_TYPE[type_name]


def check_nulls(conn: Conn, seed: Seed, function: ExposedFunction, raw_errors: list[str]) -> None:
    """Each argument in turn SQL null, the others plausible (PostgREST passes JSON null so)."""
    for position in range(len(function.types)):
        values = [
            None if index == position else plausible_argument(seed, name, type_name)
            for index, (name, type_name) in enumerate(
                zip(function.names, function.types, strict=True)
            )
        ]
        sqlstate = outcome(conn, seed, function, values)
        if sqlstate is not None and not sqlstate.startswith(ALLOWED_SQLSTATES):
            raw_errors.append(f"{function.qualified}({', '.join(map(repr, values))}) -> {sqlstate}")


def test_every_exposed_function_answers_any_argument_with_success_or_a_4xx(conn: Conn) -> None:
    seed = seeded_workspace(conn)
    raw_errors: list[str] = []
    for function in exposed_functions(conn):
        check_nulls(conn, seed, function, raw_errors)
        check_function(conn, seed, function, raw_errors)
    assert raw_errors == [], "\n".join(raw_errors)


VALID_ORDER = {
    "external_id": "o",
    "status": "paid",
    "placed_at": "2026-11-30T10:00:00Z",
    "total": "10",
    "currency": "EUR",
}
BAD_ORDERS = [
    {**VALID_ORDER, "placed_at": "x"},
    {**VALID_ORDER, "total": "abc"},
    {**VALID_ORDER, "total": 1e20},
    {key: value for key, value in VALID_ORDER.items() if key != "placed_at"},
    {**VALID_ORDER, "status": "zzz"},
    {**VALID_ORDER, "items": [{"sku": "a"}]},
    {**VALID_ORDER, "customer": {"email": "bad"}},
    {**VALID_ORDER, "external_id": "x" * 10_000},
    {"op": 1},
]


@pytest.mark.parametrize("order", BAD_ORDERS)
def test_import_order_refuses_malformed_fields_with_422(conn: Conn, order: dict[str, Any]) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    with acting_as(conn, owner), refused(422, "invalid_order"):
        conn.execute("select public.import_order(%s, %s)", (project, Jsonb(order)))


@pytest.mark.parametrize("key", ["", "x" * 200])
def test_enqueue_automation_refuses_idempotency_keys_outside_1_to_128(conn: Conn, key: str) -> None:
    owner = create_user(conn)
    project = make_project(conn, owner)
    fund(conn, owner, 100)
    with acting_as(conn, owner), refused(422, "invalid_idempotency_key"):
        conn.execute("select public.enqueue_automation(%s, 'seo_audit', '{}', %s)", (project, key))


@pytest.mark.parametrize("number", ["1e131071", "1e20", "-1e20", "1e-16383"])
def test_segment_numbers_out_of_range_are_refused_as_invalid_rules(conn: Conn, number: str) -> None:
    owner = create_user(conn)
    rule = '{"orders": {"min_revenue": NUMBER}}'.replace("NUMBER", number)
    with acting_as(conn, owner), refused(422, "invalid_segment_rule"):
        conn.execute("select public.preview_segment(%s, %s::jsonb)", (owner.workspace_id, rule))


# The edge's class fix: a raw SQL error that still reaches it is a 4xx with a stable code -----

CLIENT_CAUSED = [
    ("select 1 / 0", 422, "invalid_input"),
    ("select 'x'::timestamptz", 422, "invalid_input"),
    ("do $$ begin raise exception 'Nope, not that'; end $$", 400, "bad_request"),
    ("select array_fill(1, array[200000000])", 413, "too_large"),
    ("select 1 from public.projects for update", 403, "forbidden"),
]


@pytest.mark.parametrize(("query", "status", "code"), CLIENT_CAUSED)
def test_client_caused_database_errors_reach_the_edge_as_4xx(
    conn: Conn, query: str, status: int, code: str
) -> None:
    with pytest.raises(psycopg.Error) as caught, conn.transaction():
        conn.execute("set local role anon")
        conn.execute(query)
    translated = from_database_error(caught.value)
    assert translated is not None, caught.value.sqlstate
    assert (translated.status, translated.code) == (status, code)


def test_a_plain_raise_shows_its_own_message_and_integrity_conflicts_are_409(conn: Conn) -> None:
    with pytest.raises(psycopg.Error) as raised:
        conn.execute("do $$ begin raise exception 'Nope, not that'; end $$")
    translated = from_database_error(raised.value)
    assert translated is not None and translated.message == "Nope, not that"
    with pytest.raises(psycopg.Error) as excluded, conn.transaction():
        conn.execute("create temp table spans (s int4range, exclude using gist (s with &&))")
        conn.execute("insert into spans values ('[1,5)'), ('[2,3)')")
    translated = from_database_error(excluded.value)
    assert translated is not None
    assert (translated.status, translated.code) == (409, "conflict")
    assert translated.details == {"constraint": "spans_s_excl"}


def test_our_own_bugs_stay_500s(conn: Conn) -> None:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute("select * from public.no_such_table")
    assert from_database_error(caught.value) is None
