"""Contacts import: a file from another tool merged into the workspace's contacts, deduplicated by
email, within the plan's contact limit (exact while others insert), with progress broadcast to
the workspace's members only."""

import threading
import time
import uuid
from typing import Any

import psycopg
import pytest
from psycopg.rows import DictRow, dict_row

from api.core.db import Database
from api.imports.jobs import Runner, run_job
from api.imports.parts import store_part
from tests.factories.email import add_contacts, list_campaign, start
from tests.factories.imports import importing_job
from tests.factories.workspaces import (
    User,
    acting_as,
    create_user,
    fund,
    one,
)

Conn = psycopg.Connection[DictRow]

FILE = (
    "Email,First Name,Last Name,Phone,Country,Tags,Consent,City\n"
    ' Ann@Example.TEST ,Ann,Lee,603 123 456,CZ,"vip, newsletter",yes,Brno\n'
    "bob@example.test,Bob,,+44 20 7946 0958,,,no,London\n"
    "not-an-email,X,,,,,,\n"
    "ann@example.test,Annie,,,,,,Praha\n"
    "cid@example.test,Cid,,12,CZ,,,\n"
    "dee@example.test,Dee,,,,,maybe,\n"
)


def import_contacts(
    database: Database, user: User, text: str, column_map: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The edge's path without HTTP: create, one part, commit, run."""
    data = text.encode()
    with database.as_user(user.claims) as conn:
        job = conn.execute(
            "select * from private.create_import_job(%s, null, 'contacts', %s, 'crm.csv',"
            " 'utf-8', %s, null)",
            (user.workspace_id, len(data), psycopg.types.json.Jsonb(column_map or {})),
        ).fetchone()
    assert job is not None
    with database.as_user(user.claims) as conn:
        store_part(conn, job["id"], 1, data)
    with database.as_user(user.claims) as conn:
        conn.execute("select private.commit_import_job(%s)", (job["id"],))
    run_job(Runner(database, None), job["id"], 60)
    with database.as_user(user.claims) as conn:
        done = conn.execute("select * from public.import_jobs where id = %s", (job["id"],))
        row = done.fetchone()
        errors = conn.execute(
            "select line, column_name, reason from public.import_errors where job_id = %s"
            " order by line",
            (job["id"],),
        ).fetchall()
    assert row is not None
    return {**row, "errors": [tuple(e.values()) for e in errors]}


def contacts(conn: Conn, user: User) -> dict[str, dict[str, Any]]:
    rows = conn.execute(
        "select email, first_name, last_name, phone, tags, attributes, consent_state,"
        " consent_source, consent_at is not null as consent_dated"
        " from public.contacts where workspace_id = %s",
        (user.workspace_id,),
    ).fetchall()
    return {r["email"]: dict(r) for r in rows}


def test_contacts_are_normalised_deduplicated_and_reported(database: Database, conn: Conn) -> None:
    user = create_user(conn)
    with acting_as(conn, user):
        conn.execute(
            "insert into public.contacts (workspace_id, email, first_name, consent_state,"
            " consent_source, consent_at, tags)"
            " values (%s, 'bob@example.test', 'Robert', 'granted', 'signup form', now(), '{old}')",
            (user.workspace_id,),
        )
    report = import_contacts(database, user, FILE)
    assert report["status"] == "done"
    assert (report["created"], report["updated"], report["rows_failed"]) == (1, 1, 4)
    assert report["errors"] == [
        (4, "email", "email is not an email address"),
        (5, "email", "email repeats line 2"),
        (
            6,
            "phone",
            "phone is not a valid phone number (write it with its country code,"
            " or add a country column)",
        ),
        (7, "consent", "consent must be granted, denied, withdrawn or unknown (or yes/no)"),
    ]
    stored = contacts(conn, user)
    ann = stored["ann@example.test"]
    assert (ann["first_name"], ann["last_name"], ann["phone"]) == ("Ann", "Lee", "+420603123456")
    assert ann["tags"] == ["newsletter", "vip"]
    assert ann["attributes"] == {"City": "Brno"}
    assert (ann["consent_state"], ann["consent_source"], ann["consent_dated"]) == (
        "granted",
        "import: crm.csv",
        True,
    )
    bob = stored["bob@example.test"]
    # The file fills and adds; it never overrides a consent the contact already gave.
    assert (bob["first_name"], bob["phone"], bob["tags"]) == ("Bob", "+442079460958", ["old"])
    assert (bob["consent_state"], bob["consent_source"]) == ("granted", "signup form")
    again = import_contacts(database, user, FILE)
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 2)


def test_no_consent_column_means_no_consent_is_written(database: Database, conn: Conn) -> None:
    user = create_user(conn)
    import_contacts(database, user, "email,first_name\nnew@example.test,New\n")
    fresh = contacts(conn, user)["new@example.test"]
    assert (fresh["consent_state"], fresh["consent_source"], fresh["consent_dated"]) == (
        "unknown",
        None,
        False,
    )


def test_the_plan_limit_is_checked_per_chunk_and_holds_under_concurrent_inserts(
    database: Database, conn: Conn, database_url: str
) -> None:
    user = create_user(conn)
    fund(conn, user, 0, "free")
    limit = one(conn, "select contact_limit from public.plans where tier = 'free'")
    limit_value = int(limit["contact_limit"])
    conn.execute(
        "insert into public.contacts (workspace_id, email)"
        " select %s, 'seed' || n || '@example.test' from generate_series(1, %s) as n",
        (user.workspace_id, limit_value - 3),
    )
    text = "email\n" + "".join(f"new{n}@example.test\n" for n in range(5))
    # Another writer adds a contact while the import waits for the counter it holds.
    writer = psycopg.connect(database_url, autocommit=False)
    writer.execute(
        "insert into public.contacts (workspace_id, email) values (%s, 'racer@example.test')",
        (user.workspace_id,),
    )
    result: dict[str, Any] = {}
    importing = threading.Thread(
        target=lambda: result.update(import_contacts(database, user, text)), daemon=True
    )
    importing.start()
    deadline = time.monotonic() + 20
    while not conn.execute(
        "select exists (select 1 from pg_stat_activity where datname = current_database()"
        " and application_name = 'growthbase-edge' and wait_event_type = 'Lock') as waiting"
    ).fetchone()["waiting"]:
        assert time.monotonic() < deadline, "the import never waited for the counter"
        conn.execute("select pg_stat_clear_snapshot()")
    writer.commit()
    writer.close()
    importing.join(30)
    assert (result["created"], result["rows_failed"]) == (2, 3)
    assert (
        result["errors"][0][2] == f"Your plan allows {limit_value} contacts; upgrade to import more"
    )
    total = one(
        conn,
        "select count(*) as n from public.contacts where workspace_id = %s",
        (user.workspace_id,),
    )
    assert total["n"] == limit_value
    drift = conn.execute("select * from private.verify_contact_counts()").fetchall()
    assert drift == []


def test_progress_reaches_the_workspaces_members_only(database: Database, conn: Conn) -> None:
    user, stranger = create_user(conn), create_user(conn)
    report = import_contacts(database, user, "email\nz@example.test\n")
    topic = f"workspace:{user.workspace_id}:imports"

    def progress(who: User) -> list[dict[str, Any]]:
        with acting_as(conn, who):
            conn.execute("select set_config('realtime.topic', %s, true)", (topic,))
            rows = conn.execute(
                "select payload from realtime.messages where topic = %s"
                " and event = 'import_progress' order by inserted_at",
                (topic,),
            ).fetchall()
        return [r["payload"] for r in rows if r["payload"]["id"] == str(report["id"])]

    seen = progress(user)
    assert seen[0]["status"] == "uploading"
    assert seen[-1]["status"] == "done" and seen[-1]["created"] == 1
    assert {"validating", "importing"} <= {p["status"] for p in seen}
    assert progress(stranger) == []


def test_a_job_id_that_is_not_ours_is_unknown(database: Database, conn: Conn) -> None:
    user = create_user(conn)
    with database.as_user(user.claims) as c, pytest.raises(psycopg.Error) as caught:
        c.execute("select private.import_job_as(%s, 'viewer')", (uuid.uuid4(),))
    assert caught.value.diag.message_hint == "import_job_not_found"


def test_imported_role_disposable_and_hopeless_addresses_are_flagged(
    database: Database, conn: Conn
) -> None:
    user = create_user(conn)
    text = (
        "Email\n"
        "ann@example.test\n"
        "Info@Shop.example\n"
        "noreply@shop.example\n"
        "zed@mailinator.com\n"
        "a..b@example.test\n"
        ".dot@example.test\n"
        "x@-bad.example\n"
        "x@shop.123\n"
    )
    assert import_contacts(database, user, text)["status"] == "done"
    flags = {
        row["email"]: row["address_flag"]
        for row in conn.execute(
            "select email, address_flag from public.contacts where workspace_id = %s",
            (user.workspace_id,),
        )
    }
    assert flags == {
        "ann@example.test": None,
        "info@shop.example": "role",
        "noreply@shop.example": "role",
        "zed@mailinator.com": "disposable",
        "a..b@example.test": "invalid",
        ".dot@example.test": "invalid",
        "x@-bad.example": "invalid",
        "x@shop.123": "invalid",
    }


def test_a_campaigns_first_send_to_a_fresh_import_is_capped(database: Database, conn: Conn) -> None:
    user = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (user.workspace_id,)
    )
    text = "Email,Consent\n" + "".join(f"fresh-{n}@example.test,yes\n" for n in range(1003))
    assert import_contacts(database, user, text)["status"] == "done"
    imported = [
        row["id"]
        for row in conn.execute(
            "select id from public.contacts where workspace_id = %s and imported_at is not null",
            (user.workspace_id,),
        )
    ]
    assert len(imported) == 1003
    # A contact that was there before the import is not capped.
    [old] = add_contacts(conn, user, 1, prefix=uuid.uuid4().hex[:8])
    campaign = list_campaign(conn, user, [*imported, old])
    assert start(conn, user, campaign) == 1004
    counts = one(
        conn,
        "select count(*) filter (where next_attempt_at <= now()) as now,"
        " count(*) filter (where next_attempt_at > now() + interval '23 hours') as held,"
        " bool_or(contact_id = %s and next_attempt_at <= now()) as old_now"
        " from public.campaign_recipients where campaign_id = %s",
        (old, campaign),
    )
    assert (counts["now"], counts["held"], counts["old_now"]) == (1001, 3, True)
    assert (
        one(conn, "select unproven_probed from public.campaigns where id = %s", (campaign,))[
            "unproven_probed"
        ]
        == 1000
    )
    conn.execute("update public.campaigns set status = 'paused' where id = %s", (campaign,))


def emails_file(emails: list[str]) -> bytes:
    return ("Email\n" + "".join(f"{email}\n" for email in emails)).encode()


def test_chunks_into_contacts_without_statistics_read_each_contact_a_few_times(
    database: Database, database_url: str, conn: Conn
) -> None:
    """A new project's contacts table has no planner statistics (never analyzed). Stamping a
    chunk's new contacts as imported once joined the chunk to the workspace's contacts by a
    plan that read all of them for every row (rows x contacts); a chunk's reads of `contacts`
    stay a small multiple of its rows whatever the statistics, into an empty workspace and
    into one that has contacts already."""
    user = create_user(conn)
    conn.execute(
        "update public.workspaces set plan_tier = 'team' where id = %s", (user.workspace_id,)
    )
    rows = 3000
    # A contact the workspace had before: the file updates it, it is not stamped as imported.
    conn.execute(
        "insert into public.contacts (workspace_id, email) values (%s, 'bulk-0@example.test')",
        (user.workspace_id,),
    )
    first = importing_job(
        database,
        user,
        "contacts",
        None,
        emails_file([f"bulk-{n}@example.test" for n in range(rows)]),
    )
    second = importing_job(
        database,
        user,
        "contacts",
        None,
        emails_file([f"bulk-{n}@example.test" for n in range(rows // 2, rows * 3 // 2)]),
    )
    reads = (
        "select coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) as tuples"
        " from pg_catalog.pg_stat_xact_user_tables where relid = 'public.contacts'::regclass"
    )
    # The claim's own analyze then finds nothing changed since this one, and the statistics
    # are removed, as in a table never analyzed (rolled back with the chunks).
    conn.execute("analyze public.contacts")
    with psycopg.connect(database_url, row_factory=dict_row) as tx:
        tx.execute(
            "delete from pg_catalog.pg_statistic where starelid = 'public.contacts'::regclass"
        )
        tx.execute(
            "update pg_catalog.pg_class set reltuples = -1, relpages = 0"
            " where oid = 'public.contacts'::regclass"
        )
        before = one(tx, reads)["tuples"]
        done = one(tx, "select * from private.import_contacts_chunk(%s, %s)", (first["id"], rows))
        between = one(tx, reads)["tuples"]
        again = one(tx, "select * from private.import_contacts_chunk(%s, %s)", (second["id"], rows))
        after = one(tx, reads)["tuples"]
        stamped = one(
            tx,
            "select count(*) filter (where imported_at is not null) as stamped, count(*) as total,"
            " bool_or(email = 'bulk-0@example.test' and imported_at is null) as kept"
            " from public.contacts where workspace_id = %s",
            (user.workspace_id,),
        )
        tx.rollback()
    assert (done["status"], done["created"]) == ("done", rows - 1)
    assert (again["status"], again["created"], again["unchanged"]) == ("done", rows // 2, rows // 2)
    assert (stamped["stamped"], stamped["total"], stamped["kept"]) == (
        rows * 3 // 2 - 1,
        rows * 3 // 2,
        True,
    )
    assert between - before <= 10 * rows
    assert after - between <= 10 * rows
