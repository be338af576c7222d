"""Every function the Data API exposes is public API: any signed-in user may call it through
/rest/v1/rpc with any arguments. Each one executable by `authenticated` (or `anon`) in an
exposed schema is listed here with the test that proves it refuses a caller who may not act
(a lower role, a non-member); a new one fails this test until it is reviewed and listed."""

import ast
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.factories.email import add_contacts, list_campaign
from tests.factories.workspaces import (
    acting_as,
    add_member,
    create_user,
    make_project,
    one,
    refused,
)

Conn = psycopg.Connection[Any]

REPO = Path(__file__).resolve().parents[2]
EXPOSED_SCHEMAS = ["public", "analytics"]

TENANCY = "tests/tenancy/test_tenancy.py"
HERE = "tests/security/test_exposed_functions.py"
LIFECYCLE = f"{HERE}::test_campaign_lifecycle_calls_refuse_viewers_and_outsiders"
BILLING = f"{HERE}::test_billing_checks_refuse_members_and_outsiders"
PRODUCTS = "tests/products/test_product_analytics.py::test_others_see_none_of_it"
FLOWS = "tests/flows/test_flows_db.py::test_flow_calls_refuse_viewers_and_outsiders"
INBOX = "tests/inbox/test_whatsapp.py"
SUPPORT = "tests/inbox/test_support.py"
SUPPORT_ROLES = "test_assignment_status_priority_and_notes_by_members_only"

# signature -> the test that proves its authorization ("path::test_name").
REVIEWED: dict[str, str] = {
    "public.create_workspace(text, text, text)": f"{TENANCY}::test_anon_gets_nothing",
    "public.invite_member(uuid, text, text, interval)": (
        f"{TENANCY}::test_viewers_and_members_cannot_manage_members"
    ),
    "public.revoke_invitation(uuid)": (
        f"{TENANCY}::test_only_the_workspaces_admins_revoke_and_leaving_removes_only_the_caller"
    ),
    "public.accept_invitation(text)": (
        f"{TENANCY}::test_invitation_works_once_for_the_invited_email_only"
    ),
    "public.change_member_role(uuid, uuid, text)": (
        f"{TENANCY}::test_viewers_and_members_cannot_manage_members"
    ),
    "public.remove_member(uuid, uuid)": (
        f"{TENANCY}::test_viewers_and_members_cannot_manage_members"
    ),
    "public.leave_workspace(uuid)": (
        f"{TENANCY}::test_only_the_workspaces_admins_revoke_and_leaving_removes_only_the_caller"
    ),
    "public.enqueue_automation(uuid, text, jsonb, text)": (
        "tests/automations/test_automations_db.py::test_who_may_start_what"
    ),
    "public.import_order(uuid, jsonb)": f"{HERE}::test_import_order_refuses_viewers_and_outsiders",
    "public.disconnect_integration(uuid, text)": (
        "tests/security/test_edge_only_writes.py::test_disconnect_refuses_unknown_sources_and_other_workspaces"
    ),
    "public.assert_billing_manager(uuid)": BILLING,
    "public.purchasable_plan_id(text)": BILLING,
    "public.prepare_subscription(uuid, text)": BILLING,
    "public.take_action_quota(uuid, text)": (
        "tests/security/test_rate_limits.py::test_only_members_at_the_actions_role_spend_a_quota"
    ),
    "public.preview_segment(uuid, jsonb, integer)": (
        "tests/email/test_campaigns_db.py::test_only_members_preview_a_workspace"
    ),
    "public.add_campaign_variant(uuid, uuid, text, integer)": (
        "tests/email/test_campaigns_db.py::test_variants_are_added_to_drafts_only_with_valid_names_and_weights"
    ),
    "public.start_campaign(uuid)": LIFECYCLE,
    "public.save_flow(uuid, jsonb)": FLOWS,
    "public.activate_flow(uuid)": FLOWS,
    "public.pause_flow(uuid)": FLOWS,
    "public.resume_flow(uuid)": FLOWS,
    "public.archive_flow(uuid)": FLOWS,
    "public.copy_flow_template(uuid, text, uuid, text)": (
        "tests/flows/test_flow_tools.py::test_each_ready_made_flow_copies_into_a_valid_draft"
    ),
    "public.test_flow(uuid, uuid, text[])": (
        "tests/flows/test_flow_tools.py::test_test_mode_walks_a_contact_through_and_changes_nothing"
    ),
    "public.backfill_flow(uuid, integer)": (
        "tests/flows/test_flow_tools.py"
        "::test_a_backfill_enrols_existing_matching_contacts_a_batch_at_a_time"
    ),
    "public.flow_contact_history(uuid, uuid)": (
        "tests/flows/test_flow_tools.py::test_why_a_contact_did_not_get_a_step"
    ),
    "analytics.flow_step_stats()": (
        "tests/flows/test_flow_tools.py::test_metrics_per_flow_and_step_for_members_only"
    ),
    "analytics.flow_totals()": (
        "tests/flows/test_flow_tools.py::test_metrics_per_flow_and_step_for_members_only"
    ),
    "public.schedule_campaign(uuid, timestamp with time zone)": LIFECYCLE,
    "public.unschedule_campaign(uuid)": LIFECYCLE,
    "public.pause_campaign(uuid)": LIFECYCLE,
    "public.resume_campaign(uuid)": LIFECYCLE,
    "public.cancel_campaign(uuid)": LIFECYCLE,
    "public.resend_to_failed(uuid)": LIFECYCLE,
    "public.acknowledge_sending_pause(uuid, boolean)": (
        "tests/deliverability/test_guardrails.py::"
        "test_a_bounce_rate_over_the_limit_pauses_every_sending_campaign_until_an_admin_acknowledges"
    ),
    "public.campaign_checks(uuid)": (
        "tests/deliverability/test_presend.py::"
        "test_the_checks_show_role_never_engaged_and_soft_bounced_shares_to_members_only"
    ),
    "analytics.ses_tenant_stats()": (
        "tests/deliverability/test_ses_tenants.py::"
        "test_without_tenants_mail_goes_as_the_account_and_the_workspace_is_told"
    ),
    "analytics.sender_warmup_stats()": (
        "tests/deliverability/test_warmup.py::"
        "test_members_see_their_identities_warm_up_and_others_see_nothing"
    ),
    "analytics.deliverability_stats()": (
        "tests/deliverability/test_guardrails.py::"
        "test_rates_are_kept_per_workspace_and_identity_as_sends_and_bounces_arrive"
    ),
    "public.register_sender_identity(uuid, text)": (
        f"{HERE}::test_only_admins_of_the_workspace_register_sender_identities"
    ),
    "public.mark_notifications_read(uuid[], uuid)": (
        "tests/notifications/test_notifications.py::test_marking_read_touches_only_the_callers_rows"
    ),
    "public.erase_contact(uuid)": (
        "tests/privacy/test_erasure.py"
        "::test_erasure_refuses_other_workspaces_lower_roles_and_a_second_time"
    ),
    "public.record_consent(uuid, text, text, text, text, text)": (
        "tests/privacy/test_consents.py"
        "::test_members_record_consent_and_the_latest_record_is_the_state"
    ),
    "public.delete_workspace(uuid)": (
        "tests/privacy/test_accounts.py"
        "::test_a_deleted_workspace_disappears_for_everyone_and_an_owner_can_restore_it"
    ),
    "public.restore_workspace(uuid)": (
        "tests/privacy/test_accounts.py"
        "::test_a_deleted_workspace_disappears_for_everyone_and_an_owner_can_restore_it"
    ),
    "public.request_contact_export(uuid)": (
        "tests/privacy/test_exports.py::test_viewers_strangers_and_erased_contacts_are_refused"
    ),
    "public.disconnect_channel(uuid)": (
        f"{INBOX}::test_connecting_is_for_admins_and_never_answers_the_secrets"
    ),
    "public.mark_conversation_read(uuid)": (
        f"{INBOX}::test_viewers_read_but_do_not_answer_and_others_see_nothing"
    ),
    "public.reply_to_conversation(uuid, text, jsonb)": (
        f"{INBOX}::test_viewers_read_but_do_not_answer_and_others_see_nothing"
    ),
    "public.assign_conversation(uuid, uuid)": f"{SUPPORT}::{SUPPORT_ROLES}",
    "public.set_conversation_status(uuid, text, timestamp with time zone)": (
        f"{SUPPORT}::{SUPPORT_ROLES}"
    ),
    "public.tag_conversation(uuid, text, text[])": f"{SUPPORT}::{SUPPORT_ROLES}",
    "public.add_conversation_note(uuid, text, uuid[])": f"{SUPPORT}::{SUPPORT_ROLES}",
    "public.set_channel_team(uuid, uuid)": (
        f"{SUPPORT}::test_round_robin_respects_capacity_and_notifies"
    ),
    "public.merge_contacts(uuid, uuid)": (
        f"{SUPPORT}::test_contact_merge_moves_the_inbox_and_is_audited"
    ),
    "analytics.inbox_report(integer)": f"{SUPPORT}::test_sla_clocks_count_business_hours",
    "public.conversation_customer(uuid)": (
        f"{SUPPORT}::test_the_customer_beside_a_conversation_with_segment_and_orders"
    ),
    "analytics.campaign_replies()": (
        "tests/inbox/test_email.py::test_replies_count_for_campaign_performance_and_stop_suppresses"
    ),
    "analytics.flow_step_replies()": (
        "tests/inbox/test_email.py::test_replies_to_a_flow_email_count_for_its_step_and_flow"
    ),
    "public.request_erasure_batch(uuid, uuid[])": (
        "tests/privacy/test_erasure_batches.py::test_members_outsiders_and_bad_lists_are_refused"
    ),
    "public.create_api_key(uuid, text, text, timestamp with time zone)": (
        "tests/api_keys/test_api_keys.py::test_members_and_outsiders_cannot_create_see_or_revoke_keys"
    ),
    "public.revoke_api_key(uuid)": (
        "tests/api_keys/test_api_keys.py::test_members_and_outsiders_cannot_create_see_or_revoke_keys"
    ),
    "public.readmit_contact(uuid, text, text, text, text)": (
        "tests/privacy/test_readmission.py"
        "::test_readmission_is_refused_to_viewers_outsiders_and_for_addresses_never_erased"
    ),
    "public.my_personal_data()": (
        "tests/privacy/test_member_data.py"
        "::test_a_user_gets_their_own_data_from_every_workspace_and_no_one_elses"
    ),
    "public.issue_export_link(uuid)": (
        "tests/privacy/test_export_expiry.py::test_only_admins_of_its_workspace_take_a_link"
    ),
    "analytics.rfm(date)": "tests/rfm/test_rfm.py::test_dashboard_users_see_only_their_workspaces",
    "analytics.rfm_segment_totals(date)": (
        "tests/rfm/test_rfm.py::test_dashboard_users_see_only_their_workspaces"
    ),
    "analytics.verify_customer_facts()": (
        "tests/rfm/test_customer_facts.py::test_members_see_drift_only_in_their_workspaces"
    ),
    "analytics.sales_trend(date, date, text, uuid, uuid, text, text)": (
        "tests/rfm/test_sales_trends.py::test_members_see_their_workspaces_and_outsiders_nothing"
    ),
    "analytics.product_sales()": PRODUCTS,
    "analytics.category_sales()": PRODUCTS,
    "analytics.product_pairs()": PRODUCTS,
    "analytics.segment_product_sales()": PRODUCTS,
    "analytics.ai_usage_summary()": f"{HERE}::test_ai_usage_shows_only_the_callers_workspaces",
    "analytics.campaign_variant_stats()": (
        "tests/email/test_campaign_analytics.py"
        "::test_members_see_their_workspaces_strangers_nothing_and_anon_is_refused"
    ),
}

# has_function_privilege counts grants to PUBLIC too, which is how a forgotten revoke leaks.
EXPOSED_FUNCTIONS = """
select format('%%s.%%s(%%s)', n.nspname, p.proname,
              (select coalesce(string_agg(pg_catalog.format_type(a.type, null), ', '
                                          order by a.position), '')
               from unnest(p.proargtypes::oid[]) with ordinality as a(type, position)))
         as signature,
       has_function_privilege('anon', p.oid, 'execute') as anon
from pg_catalog.pg_proc p
join pg_catalog.pg_namespace n on n.oid = p.pronamespace
where n.nspname = any (%(schemas)s)
  and (has_function_privilege('authenticated', p.oid, 'execute')
       or has_function_privilege('anon', p.oid, 'execute'))
order by 1
"""


def exposed(conn: Conn) -> dict[str, bool]:
    rows = conn.execute(EXPOSED_FUNCTIONS, {"schemas": EXPOSED_SCHEMAS}).fetchall()
    return {r["signature"]: r["anon"] for r in rows}


def test_every_exposed_function_is_reviewed(conn: Conn) -> None:
    functions = exposed(conn)
    unreviewed = sorted(set(functions) - set(REVIEWED))
    assert unreviewed == [], (
        "exposed through /rest/v1/rpc without review: move it to private (service_role only)"
        " or add it to REVIEWED with the test that proves it refuses callers who may not act"
    )
    no_longer_exposed = sorted(set(REVIEWED) - set(functions))
    assert no_longer_exposed == [], "REVIEWED lists functions that are not exposed: remove them"


def test_anon_executes_no_exposed_function(conn: Conn) -> None:
    assert [signature for signature, anon in exposed(conn).items() if anon] == []


def test_every_exposed_function_says_what_it_does(conn: Conn) -> None:
    """Studio and the generated API docs show the comment: it is the function's documentation."""
    undocumented = conn.execute(
        "select p.oid::regprocedure::text as signature"
        " from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname = any (%(schemas)s)"
        "   and has_function_privilege('authenticated', p.oid, 'execute')"
        "   and coalesce(obj_description(p.oid, 'pg_proc'), '') = ''"
        " order by 1",
        {"schemas": EXPOSED_SCHEMAS},
    ).fetchall()
    assert [r["signature"] for r in undocumented] == []


def test_every_function_of_ours_pins_its_search_path(conn: Conn) -> None:
    """Without `set search_path` a caller's objects can shadow what a function calls."""
    unpinned = conn.execute(
        "select p.oid::regprocedure::text as signature"
        " from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace"
        " where n.nspname in ('public', 'private', 'analytics')"
        "   and not exists (select from unnest(p.proconfig) as c(setting)"
        "                   where c.setting like 'search_path=%%')"
        " order by 1"
    ).fetchall()
    assert [r["signature"] for r in unpinned] == []


def module_test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_each_review_names_a_test_that_exists() -> None:
    missing = []
    for signature, proof in REVIEWED.items():
        path, _, name = proof.partition("::")
        file = REPO / path
        if not file.is_file() or name not in module_test_names(file):
            missing.append(f"{signature}: {proof}")
    assert missing == []


# authorization tests for exposed functions no other test covered ----------------------------


def test_import_order_refuses_viewers_and_outsiders(conn: Conn) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    project = make_project(conn, owner)
    order = (
        '{"external_id": "o-1", "status": "paid", "placed_at": "2026-06-01T12:00:00Z",'
        ' "total": "10", "currency": "EUR", "customer": {"email": "buyer@example.test"},'
        ' "items": [{"name": "Thing", "quantity": 1, "unit_price": 10}]}'
    )
    for user, status, code in (
        (viewer, 403, "insufficient_role"),
        (stranger, 404, "project_not_found"),
    ):
        with refused(status, code), acting_as(conn, user):
            conn.execute("select public.import_order(%s, %s)", (project, order))
    orders = one(
        conn, "select count(*) from public.orders where workspace_id = %s", (owner.workspace_id,)
    )
    assert orders["count"] == 0


def test_billing_checks_refuse_members_and_outsiders(conn: Conn) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    member = add_member(conn, owner, "member")
    for call in (
        "select public.assert_billing_manager(%s)",
        "select public.prepare_subscription(%s, 'solo')",
    ):
        with refused(403, "insufficient_role"), acting_as(conn, member):
            conn.execute(call, (owner.workspace_id,))
        with refused(404, "workspace_not_found"), acting_as(conn, stranger):
            conn.execute(call, (owner.workspace_id,))
    # A plan id is no secret (every signed-in user reads public.plans); a tier that cannot be
    # bought is refused.
    with acting_as(conn, stranger):
        plan = one(conn, "select public.purchasable_plan_id('solo') as id")
        listed = one(conn, "select razorpay_plan_id as id from public.plans where tier = 'solo'")
    assert plan == listed
    for tier in ("free", "enterprise", None):
        with refused(422, "plan_not_purchasable"), acting_as(conn, stranger):
            conn.execute("select public.purchasable_plan_id(%s)", (tier,))


LIFECYCLE_CALLS = [
    "select public.start_campaign(%s)",
    "select public.schedule_campaign(%s, now() + interval '1 day')",
    "select public.unschedule_campaign(%s)",
    "select public.pause_campaign(%s)",
    "select public.resume_campaign(%s)",
    "select public.cancel_campaign(%s)",
    "select public.resend_to_failed(%s)",
]


@pytest.mark.parametrize("call", LIFECYCLE_CALLS)
def test_campaign_lifecycle_calls_refuse_viewers_and_outsiders(conn: Conn, call: str) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    campaign = list_campaign(conn, owner, add_contacts(conn, owner, 2))
    with refused(403, "insufficient_role"), acting_as(conn, viewer):
        conn.execute(call, (campaign,))
    with refused(404, "campaign_not_found"), acting_as(conn, stranger):
        conn.execute(call, (campaign,))
    state = one(
        conn, "select status, scheduled_at from public.campaigns where id = %s", (campaign,)
    )
    assert state == {"status": "draft", "scheduled_at": None}


def test_only_admins_of_the_workspace_register_sender_identities(conn: Conn) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    member = add_member(conn, owner, "member")
    identity = f"{uuid.uuid4().hex[:10]}.example.org"
    for user, status, code in (
        (member, 403, "insufficient_role"),
        (stranger, 404, "workspace_not_found"),
    ):
        with refused(status, code), acting_as(conn, user):
            conn.execute(
                "select public.register_sender_identity(%s, %s)", (owner.workspace_id, identity)
            )
    stored = one(
        conn, "select count(*) from public.sender_identities where identity = %s", (identity,)
    )
    assert stored["count"] == 0


def test_ai_usage_shows_only_the_callers_workspaces(conn: Conn) -> None:
    owner, stranger = create_user(conn), create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    conn.execute(
        "insert into public.ai_calls (workspace_id, user_id, feature, model, status,"
        " credits_charged) values (%s, %s, 'content', 'openai/gpt-oss-20b', 'succeeded', 2)",
        (owner.workspace_id, owner.id),
    )
    seen: dict[uuid.UUID, set[uuid.UUID]] = {}
    for user in (viewer, stranger):
        with acting_as(conn, user):
            rows = conn.execute("select workspace_id from analytics.ai_usage_summary()")
            seen[user.id] = {r["workspace_id"] for r in rows}
    assert seen == {viewer.id: {owner.workspace_id}, stranger.id: set()}
