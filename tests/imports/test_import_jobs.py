"""Import jobs through the edge: a file uploaded in parts (any order, retried parts), committed
and imported set-based; and every kind of bad input answered with a 4xx or an import error,
never a 500, a half-imported order, or a row in another workspace."""

import csv
import hashlib
import io
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from psycopg.rows import DictRow
from pydantic import SecretStr

from api.app import create_app
from api.core.db import Database
from api.core.settings import Settings
from api.imports import jobs
from api.imports import storage as import_storage
from api.imports.jobs import (
    Runner,
    continue_import_jobs,
    load_step,
    orders_step,
    run_job,
    step,
)
from api.imports.storage import ImportStorage
from tests.factories.workspaces import (
    User,
    acting_as,
    add_member,
    create_user,
    fund,
    make_project,
    one,
)
from tests.fakes.jwks import JwksServer
from tests.fakes.storage_server import SERVICE_KEY, StorageServer, serve_storage

Conn = psycopg.Connection[DictRow]
HEADER = "order_id,placed_at,status,total,currency,email,first_name,customer_id\n"


@pytest.fixture(scope="module")
def storage() -> Iterator[StorageServer]:
    with serve_storage() as server:
        yield server


@pytest.fixture(scope="module")
def client(database_url: str, jwks: JwksServer, storage: StorageServer) -> Iterator[TestClient]:
    settings = Settings(
        database_url=SecretStr(database_url),
        supabase_url=jwks.base_url,
        supabase_service_key=SecretStr(SERVICE_KEY),
        supabase_storage_url=storage.base_url,
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


class Api:
    def __init__(self, client: TestClient, jwks: JwksServer, user: User) -> None:
        self.client, self.jwks, self.user = client, jwks, user

    def call(self, method: str, path: str, **kwargs: Any) -> Response:
        headers = {"Authorization": f"Bearer {self.jwks.sign(self.jwks.claims(self.user.id))}"}
        headers.update(kwargs.pop("headers", {}))
        return self.client.request(method, path, headers=headers, **kwargs)

    def create(self, **body: Any) -> Response:
        return self.call("POST", "/api/v1/imports", json=body)

    def part(self, job: str, number: int, data: bytes) -> Response:
        return self.call(
            "PUT",
            f"/api/v1/imports/{job}/parts/{number}",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    def commit(self, job: str) -> Response:
        return self.call("POST", f"/api/v1/imports/{job}/commit")

    def orders_job(self, project: uuid.UUID, data: bytes, part_size: int = 1 << 22) -> str:
        created = self.create(
            workspace_id=str(self.user.workspace_id),
            kind="orders",
            project_id=str(project),
            size_bytes=len(data),
            file_name="orders.csv",
        )
        assert created.status_code == 201, created.json()
        job = created.json()["data"]["id"]
        for number, start in enumerate(range(0, len(data), part_size), start=1):
            sent = self.part(job, number, data[start : start + part_size])
            assert sent.status_code == 200, sent.json()
        return str(job)


def orders_csv(count: int, start: int = 1, status: str = "paid") -> bytes:
    rows = [
        f"O-{n},2026-05-{1 + n % 28:02d}T10:00:00Z,{status},{n % 90 + 10}.50,EUR,"
        f"c{n % 7}@example.test,Name{n % 7},C{n % 7}\n"
        for n in range(start, start + count)
    ]
    return (HEADER + "".join(rows)).encode()


def orders_of(conn: Conn, project: uuid.UUID) -> dict[str, Any]:
    rows = conn.execute(
        "select o.external_id, o.status, o.total, c.email from public.orders o"
        " left join public.contacts c on c.id = o.contact_id where o.project_id = %s",
        (project,),
    ).fetchall()
    return {r["external_id"]: (r["status"], str(r["total"]), r["email"]) for r in rows}


def errors_of(api: Api, job: str) -> list[list[str]]:
    response = api.call("GET", f"/api/v1/imports/{job}/errors.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.text)))


@pytest.fixture
def owner(conn: Conn) -> User:
    user = create_user(conn)
    fund(conn, user, 0, "team")
    return user


def test_parts_in_any_order_and_retried_import_once_and_again_change_nothing(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    data = orders_csv(300)
    created = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=len(data),
    )
    job = created.json()["data"]["id"]
    size = 4000
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    order = list(reversed(range(len(parts))))
    for index in order:
        assert api.part(job, index + 1, parts[index]).status_code == 200
    # A retried part replaces itself: first a wrong body, then the right one.
    assert api.part(job, 2, b"x" * 10).status_code == 200
    retried = api.part(job, 2, parts[1])
    assert retried.json()["data"]["parts_received"] == len(parts)
    assert retried.json()["data"]["bytes_received"] == len(data)
    done = api.commit(job)
    assert done.status_code == 200, done.json()
    report = done.json()["data"]
    assert (report["status"], report["rows_total"], report["created"]) == ("done", 300, 300)
    assert report["rows_failed"] == 0
    imported = orders_of(conn, project)
    assert len(imported) == 300 and imported["O-1"] == ("paid", "11.50", "c1@example.test")
    contacts = one(
        conn,
        "select count(*) as n from public.contacts where workspace_id = %s",
        (owner.workspace_id,),
    )
    assert contacts["n"] == 7

    again = api.commit(api.orders_job(project, data))
    assert again.json()["data"]["unchanged"] == 300
    assert (again.json()["data"]["created"], again.json()["data"]["updated"]) == (0, 0)
    assert orders_of(conn, project) == imported
    assert api.commit(job).json()["data"]["status"] == "done"  # committing again is harmless


def test_a_commit_with_a_part_missing_or_short_is_refused(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    data = orders_csv(50)
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=len(data),
    ).json()["data"]["id"]
    assert api.part(job, 1, data[:1000]).status_code == 200
    assert api.part(job, 3, data[2000:]).status_code == 200
    missing = api.commit(job)
    assert missing.status_code == 409
    assert missing.json()["error"]["code"] == "import_part_missing"
    assert missing.json()["error"]["details"] == {"missing_parts": [2]}
    assert api.part(job, 2, data[1000:1500]).status_code == 200
    short = api.commit(job)
    assert (short.status_code, short.json()["error"]["code"]) == (409, "import_size_mismatch")
    assert orders_of(conn, project) == {}


def test_a_2_gib_file_and_parts_past_the_declared_size_are_refused(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    huge = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=2 * 1024**3,
    )
    assert (huge.status_code, huge.json()["error"]["code"]) == (413, "file_too_large")
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=100,
    ).json()["data"]["id"]
    over = api.part(job, 1, HEADER.encode() + b"x" * 100)
    assert (over.status_code, over.json()["error"]["code"]) == (413, "import_size_exceeded")
    too_big = api.part(job, 2, b"x" * (4 * 1024 * 1024 + 1))
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "part_too_large")
    number = api.part(job, 10001, b"x")
    assert number.status_code == 422


def test_wrong_encoding_is_refused_and_a_named_encoding_is_read(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    data = (HEADER + "O-1,2026-05-01,paid,10,CZK,jiri@example.test,Jiří,C1\n").encode("cp1250")
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=len(data),
    ).json()["data"]["id"]
    refused = api.part(job, 1, data)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_encoding")
    named = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=len(data),
        encoding="windows-1250",
    ).json()["data"]["id"]
    assert api.part(named, 1, data).status_code == 200
    assert api.commit(named).json()["data"]["created"] == 1
    name = one(conn, "select first_name from public.contacts where email = 'jiri@example.test'")
    assert name["first_name"] == "Jiří"


def test_missing_and_renamed_columns_are_refused_unless_mapped(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    data = (
        b"Order ID;Date;Status;Amount;Currency\n"
        b"O-1;2026-05-01;paid;10,5;EUR\n"
        b"O-2;2026-05-01;paid;1.250,50;EUR\n"
    )
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=len(data),
    ).json()["data"]["id"]
    refused = api.part(job, 1, data)
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "invalid_csv"
    assert "missing columns: placed_at, total" in refused.json()["error"]["message"]
    mapped = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=len(data),
        column_map={"Date": "placed_at", "Amount": "total"},
    ).json()["data"]["id"]
    assert api.part(mapped, 1, data).status_code == 200
    report = api.commit(mapped).json()["data"]
    # Semicolon files are read, and a decimal comma that cannot be a thousands separator (one or
    # two digits after it); a thousands separator is a row error, not a guess.
    assert (report["status"], report["created"], report["rows_failed"]) == ("done", 1, 1)
    assert errors_of(api, mapped)[1] == ["3", "total", "total is not a number below 1000000000000"]
    assert orders_of(conn, project)["O-1"][1] == "10.50"


def test_another_workspaces_job_and_storage_path_are_not_reachable(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    job = api.orders_job(project, orders_csv(5))
    stranger = Api(client, jwks, create_user(conn))
    for method, path in (
        ("GET", f"/api/v1/imports/{job}"),
        ("GET", f"/api/v1/imports/{job}/errors.csv"),
        ("POST", f"/api/v1/imports/{job}/commit"),
        ("POST", f"/api/v1/imports/{job}/cancel"),
        ("PUT", f"/api/v1/imports/{job}/parts/1"),
    ):
        answer = stranger.call(method, path, content=b"x")
        assert (answer.status_code, answer.json()["error"]["code"]) == (
            404,
            "import_job_not_found",
        ), path
    viewer = Api(client, jwks, add_member(conn, owner, "viewer"))
    assert viewer.call("GET", f"/api/v1/imports/{job}").status_code == 200
    assert viewer.commit(job).json()["error"]["code"] == "insufficient_role"
    into_other = stranger.create(
        workspace_id=str(stranger.user.workspace_id),
        kind="contacts",
        storage_path=f"{owner.workspace_id}/contacts.csv",
    )
    assert (into_other.status_code, into_other.json()["error"]["code"]) == (
        403,
        "storage_path_not_allowed",
    )
    into_theirs = stranger.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=10,
    )
    assert into_theirs.status_code == 404
    assert orders_of(conn, project) == {}


def test_a_file_in_storage_is_streamed_into_the_import(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, storage: StorageServer
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    data = orders_csv(120)
    path = f"{owner.workspace_id}/history/orders.csv"
    storage.put("imports", path, data)
    with acting_as(conn, owner):
        conn.execute(
            "insert into storage.objects (bucket_id, name, owner, metadata)"
            " values ('imports', %s, %s, jsonb_build_object('size', %s::bigint))",
            (path, owner.id, len(data)),
        )
    created = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        storage_path=path,
    )
    assert created.status_code == 201, created.json()
    assert created.json()["data"]["size_bytes"] == len(data)
    report = api.commit(created.json()["data"]["id"]).json()["data"]
    assert (report["status"], report["created"]) == ("done", 120)
    signed_reads = [p for method, p, _ in storage.requests if method == "GET"]
    assert any(p.startswith("/storage/v1/object/sign/imports/") for p in signed_reads)
    missing = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        storage_path=f"{owner.workspace_id}/nothing.csv",
    )
    assert (missing.status_code, missing.json()["error"]["code"]) == (
        404,
        "storage_object_not_found",
    )


def stored_file(conn: Conn, storage: StorageServer, owner: User, name: str, data: bytes) -> str:
    """A file the SPA put in the imports bucket, with the size Storage records."""
    path = f"{owner.workspace_id}/{name}"
    storage.put("imports", path, data)
    with acting_as(conn, owner):
        conn.execute(
            "insert into storage.objects (bucket_id, name, owner, metadata)"
            " values ('imports', %s, %s, jsonb_build_object('size', %s::bigint))",
            (path, owner.id, len(data)),
        )
    return path


def test_a_file_in_storage_that_cannot_be_read_is_a_422_and_too_big_or_foreign_a_4xx(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, storage: StorageServer
) -> None:
    """A file in Storage is read only at commit: one in another encoding or without our columns
    fails its job with a 422 that says why; one over 1 GiB, or outside the workspace's folder
    (however its path is spelled), is refused when the job is created."""
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    files = {
        "invalid_encoding": (HEADER + "O-1,2026-05-01,paid,10,CZK,a@example.test,Jiří,C1\n").encode(
            "cp1250"
        ),
        "invalid_csv": b"Order ID,Date\nO-1,2026-05-01\n",
    }
    for code, data in files.items():
        path = stored_file(conn, storage, owner, f"{code}.csv", data)
        job = api.create(
            workspace_id=str(owner.workspace_id),
            kind="orders",
            project_id=str(project),
            storage_path=path,
        ).json()["data"]["id"]
        refused = api.commit(job)
        assert (refused.status_code, refused.json()["error"]["code"]) == (422, code), code
        assert refused.json()["error"]["details"]["job"]["status"] == "failed"
    huge = f"{owner.workspace_id}/huge.csv"
    with acting_as(conn, owner):
        conn.execute(
            "insert into storage.objects (bucket_id, name, owner, metadata)"
            " values ('imports', %s, %s, jsonb_build_object('size', %s::bigint))",
            (huge, owner.id, 2 * 1024**3),
        )
    too_big = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        storage_path=huge,
    )
    assert (too_big.status_code, too_big.json()["error"]["code"]) == (413, "file_too_large")
    other = create_user(conn)
    for path in (f"{owner.workspace_id}/../{other.workspace_id}/x.csv", f"{other.workspace_id}"):
        climbing = api.create(
            workspace_id=str(owner.workspace_id), kind="contacts", storage_path=path
        )
        assert (climbing.status_code, climbing.json()["error"]["code"]) == (
            403,
            "storage_path_not_allowed",
        ), path
    assert orders_of(conn, project) == {}


@pytest.mark.parametrize(
    ("kind", "header", "missing"),
    [
        ("contacts", "Name,Phone", "missing columns: email"),
        ("products", "SKU,Price,Currency", "missing columns: product_id, title"),
    ],
)
def test_a_contacts_or_products_file_without_its_columns_is_refused_at_part_1(
    client: TestClient,
    jwks: JwksServer,
    conn: Conn,
    owner: User,
    kind: str,
    header: str,
    missing: str,
) -> None:
    api = Api(client, jwks, owner)
    data = f"{header}\nAnn,1\n".encode()
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind=kind,
        project_id=str(make_project(conn, owner)),
        size_bytes=len(data),
    ).json()["data"]["id"]
    refused = api.part(job, 1, data)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_csv")
    assert missing in refused.json()["error"]["message"]
    assert api.call("GET", f"/api/v1/imports/{job}").json()["data"]["parts_received"] == 0


def test_a_character_split_by_a_part_is_read_and_a_bad_byte_in_a_later_part_refused(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    data = (HEADER + "O-1,2026-05-01,paid,10,CZK,jiri@example.test,Jiří,C1\n").encode()
    cut = data.index("ř".encode()) + 1  # between the two bytes of ř
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=len(data),
    ).json()["data"]["id"]
    assert api.part(job, 2, data[cut:]).status_code == 200
    assert api.part(job, 1, data[:cut]).status_code == 200
    assert api.commit(job).json()["data"]["created"] == 1
    name = one(conn, "select first_name from public.contacts where email = 'jiri@example.test'")
    assert name["first_name"] == "Jiří"
    latin = (HEADER + "O-2,2026-05-01,paid,10,CZK,o@example.test,Jiří,C2\n").encode("cp1250")
    other = api.create(
        workspace_id=str(owner.workspace_id),
        kind="orders",
        project_id=str(project),
        size_bytes=len(latin),
    ).json()["data"]["id"]
    assert api.part(other, 1, latin[: len(HEADER)]).status_code == 200
    refused = api.part(other, 2, latin[len(HEADER) :])
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "invalid_encoding")
    assert refused.json()["error"]["details"]["part_number"] == 2
    short = api.commit(other)  # the refused part was not kept
    assert (short.status_code, short.json()["error"]["code"]) == (409, "import_size_mismatch")
    assert set(orders_of(conn, project)) == {"O-1"}


def test_members_write_only_their_own_workspaces_folder(conn: Conn, owner: User) -> None:
    stranger = create_user(conn)
    viewer = add_member(conn, owner, "viewer")
    with acting_as(conn, stranger), pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "insert into storage.objects (bucket_id, name) values ('imports', %s)",
            (f"{owner.workspace_id}/x.csv",),
        )
    with acting_as(conn, viewer), pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "insert into storage.objects (bucket_id, name) values ('imports', %s)",
            (f"{owner.workspace_id}/y.csv",),
        )
    with acting_as(conn, owner):
        conn.execute(
            "insert into storage.objects (bucket_id, name) values ('imports', %s)",
            (f"{owner.workspace_id}/z.csv",),
        )
    with acting_as(conn, stranger):
        seen = conn.execute(
            "select count(*) as n from storage.objects where name like %s",
            (f"{owner.workspace_id}/%",),
        ).fetchone()
    assert seen is not None and seen["n"] == 0


def long_address() -> str:
    """An address of some 6,400 characters that does not compress: longer than any mailbox's,
    and than a row of the contacts' email index may be."""
    local = "".join(hashlib.sha256(str(n).encode()).hexdigest() for n in range(100))
    return f"{local}@example.test"


def test_a_spreadsheets_export_is_read_as_the_shop_owner_means_it(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """What Excel, a Czech shop or Shopify writes: a byte-order mark, CRLF line ends,
    semicolons, a name with a line break in quotes, lower-case currency codes, capitalised
    statuses, a decimal comma, a date with a space before its offset (`2026-06-01 10:22:33
    +0200`), sent in parts cut inside the mark and between CR and LF. What cannot be read for
    sure (a thousands separator, a date written 01.06.2026, an address longer than any
    mailbox's, a repeated order) is a row error on its line; the rest imports, and importing it
    again changes nothing."""
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    text = (
        "\ufeffOrder ID;Placed at;Status;Total;Currency;E-mail;First name\r\n"
        'S-1;2026-06-01 10:22:33 +0200;PAID;1250,50;czk;jana@example.test;"Jana\r\nMarie"\r\n'
        "S-2;2026-06-02;Fulfilled;99;eur;Petr@Example.test;Petr\r\n"
        "S-3;2026-06-03;paid;1.250,50;CZK;eva@example.test;Eva\r\n"
        "S-4;01.06.2026;paid;10;CZK;eva@example.test;Eva\r\n"
        f"S-5;2026-06-05;paid;10;CZK;{long_address()};Long\r\n"
        "S-2;2026-06-06;paid;5;EUR;petr@example.test;Petr\r\n"
        "S-6;2026-06-07;refunded;0;CZK;;\r\n"
    )
    data = text.encode()
    between_cr_and_lf = data.index(b"Petr\r\n") + len(b"Petr\r")
    parts = [data[:2], data[2:between_cr_and_lf], data[between_cr_and_lf:]]

    def run() -> dict[str, Any]:
        job = api.create(
            workspace_id=str(owner.workspace_id),
            kind="orders",
            project_id=str(project),
            size_bytes=len(data),
            column_map={"E-mail": "email"},
        ).json()["data"]["id"]
        for number in (3, 1, 2):
            sent = api.part(job, number, parts[number - 1])
            assert sent.status_code == 200, sent.json()
        done = api.commit(job)
        assert done.status_code == 200, done.json()
        return dict(done.json()["data"])

    report = run()
    assert (report["status"], report["rows_total"], report["created"]) == ("done", 7, 3)
    assert errors_of(api, report["id"])[1:] == [
        ["5", "total", "total is not a number below 1000000000000"],
        ["6", "placed_at", "placed_at must be an ISO date or date-time"],
        ["7", "email", "email may have at most 254 characters"],
        ["8", "order_id", "order_id repeats line 4"],
    ]
    assert orders_of(conn, project) == {
        "S-1": ("paid", "1250.50", "jana@example.test"),
        "S-2": ("fulfilled", "99.00", "petr@example.test"),
        "S-6": ("refunded", "0.00", None),
    }
    jana = one(
        conn,
        "select first_name from public.contacts where workspace_id = %s"
        " and email = 'jana@example.test'",
        (owner.workspace_id,),
    )
    assert jana["first_name"] == "Jana\r\nMarie"
    placed = one(
        conn,
        "select placed_at from public.orders where project_id = %s and external_id = 'S-1'",
        (project,),
    )
    assert placed["placed_at"] == datetime(2026, 6, 1, 8, 22, 33, tzinfo=UTC)
    again = run()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)


def test_an_address_longer_than_any_mailboxs_is_a_contacts_row_error(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """Before, such an address failed its chunk whole (413 too_large) on every commit and the
    job never ended; now the row is reported and the others import."""
    api = Api(client, jwks, owner)
    data = f"email,first_name\r\n{long_address()},Long\r\nann@example.test,Ann\r\n".encode()
    job = api.create(
        workspace_id=str(owner.workspace_id), kind="contacts", size_bytes=len(data)
    ).json()["data"]["id"]
    assert api.part(job, 1, data).status_code == 200
    report = api.commit(job).json()["data"]
    assert (report["status"], report["created"], report["rows_failed"]) == ("done", 1, 1)
    assert errors_of(api, job)[1:] == [["2", "email", "email may have at most 254 characters"]]
    emails = conn.execute(
        "select email from public.contacts where workspace_id = %s", (owner.workspace_id,)
    ).fetchall()
    assert [row["email"] for row in emails] == ["ann@example.test"]


def test_a_contact_list_with_blank_phones_imports_and_keeps_known_numbers(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """A newsletter tool's export, where most people left the phone empty: they import without
    one, and a known contact keeps the number it has. Before, a blank phone was staged as blank
    text, which the contacts' check refuses: the whole file was a 422 on every commit and the
    job never ended."""
    api = Api(client, jwks, owner)
    conn.execute(
        "insert into public.contacts (workspace_id, email, phone) values (%s, %s, %s)",
        (owner.workspace_id, "bob@example.test", "+420603123457"),
    )
    data = (
        b"Email Address,First Name,Phone Number,Country\r\n"
        b"ann@example.test,Ann,,\r\n"
        b"bob@example.test,Bob, ,CZ\r\n"
        b"cid@example.test,Cid,603 123 456,CZ\r\n"
    )
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind="contacts",
        size_bytes=len(data),
        column_map={"Email Address": "email", "Phone Number": "phone"},
    ).json()["data"]["id"]
    assert api.part(job, 1, data).status_code == 200
    done = api.commit(job)
    assert done.status_code == 200, done.json()
    report = done.json()["data"]
    assert (report["status"], report["created"], report["updated"], report["rows_failed"]) == (
        "done",
        2,
        1,
        0,
    )
    people = conn.execute(
        "select email, first_name, phone from public.contacts where workspace_id = %s"
        " order by email",
        (owner.workspace_id,),
    ).fetchall()
    assert [tuple(row.values()) for row in people] == [
        ("ann@example.test", "Ann", None),
        ("bob@example.test", "Bob", "+420603123457"),
        ("cid@example.test", "Cid", "+420603123456"),
    ]


@pytest.fixture
def poisoned_name(conn: Conn) -> Iterator[str]:
    """A contact named Poison is refused by a check the import's row checks do not know, as
    the email index and the phone check refused rows they let through before."""
    conn.execute(
        "create function private.refuse_poison() returns trigger language plpgsql as"
        " $$ begin raise check_violation using constraint = 'contacts_poison_check',"
        " message = 'no poison'; end $$"
    )
    conn.execute(
        "create trigger contacts_refuse_poison before insert on public.contacts for each row"
        " when (new.first_name = 'Poison') execute function private.refuse_poison()"
    )
    try:
        yield "Poison"
    finally:
        conn.execute("drop trigger contacts_refuse_poison on public.contacts")
        conn.execute("drop function private.refuse_poison()")


@pytest.mark.parametrize("kind", ["orders", "contacts"])
def test_a_value_the_database_refuses_fails_the_job_once_with_the_reason(
    client: TestClient,
    jwks: JwksServer,
    conn: Conn,
    owner: User,
    poisoned_name: str,
    kind: str,
) -> None:
    """The job ends failed (value_refused, naming the constraint, not the row's values): it no
    longer stays running, answering the same error to every commit while it holds one of the
    workspace's three import slots and the cron's time. An orders job, merged by two workers,
    ends the same way."""
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    if kind == "orders":
        data = (HEADER + f"O-1,2026-05-01,paid,10,EUR,p@example.test,{poisoned_name},C1\n").encode()
    else:
        data = f"email,first_name\np@example.test,{poisoned_name}\n".encode()
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind=kind,
        project_id=str(project),
        size_bytes=len(data),
    ).json()["data"]["id"]
    assert api.part(job, 1, data).status_code == 200
    refused = api.commit(job)
    assert (refused.status_code, refused.json()["error"]["code"]) == (422, "value_refused")
    assert "contacts_poison_check" in refused.json()["error"]["message"]
    assert "p@example.test" not in refused.text
    failed = api.call("GET", f"/api/v1/imports/{job}").json()["data"]
    assert (failed["status"], failed["error_code"]) == ("failed", "value_refused")
    again = api.commit(job)
    assert (again.status_code, again.json()["error"]["code"]) == (422, "value_refused")
    running = one(
        conn, "select count(*) as n from private.running_import_jobs(100) where id = %s", (job,)
    )
    assert running["n"] == 0
    assert orders_of(conn, project) == {}


@pytest.mark.parametrize("source", ["upload", "storage"])
def test_a_read_stopped_mid_file_resumes_at_its_byte_and_doubles_nothing(
    client: TestClient,
    jwks: JwksServer,
    conn: Conn,
    owner: User,
    storage: StorageServer,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    source: str,
) -> None:
    """A read step stops when its time is up (here after its first block) and saves the byte
    and line it stopped at; a worker that dies mid-read loses only its step. The next steps read
    on from the saved byte (a file in Storage with a Range), so every order is imported once."""
    monkeypatch.setattr(import_storage, "BLOCK_BYTES", 4096)
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    data = orders_csv(400)
    if source == "upload":
        job = api.orders_job(project, data, part_size=4096)
    else:
        path = stored_file(conn, storage, owner, f"resume-{uuid.uuid4().hex}.csv", data)
        job = api.create(
            workspace_id=str(owner.workspace_id),
            kind="orders",
            project_id=str(project),
            storage_path=path,
        ).json()["data"]["id"]
    with acting_as(conn, owner):
        conn.execute("select private.commit_import_job(%s)", (job,))
    files = ImportStorage(storage.base_url, SERVICE_KEY, 10)
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=10)
    database.open()
    try:
        runner = Runner(database, files)
        job_id = uuid.UUID(job)
        assert step(runner, job_id, deadline=0.0) is not None
        with database.as_service() as dying:
            held = dying.execute("select * from private.lock_import_job(%s)", (job_id,)).fetchone()
            assert held is not None
            load_step(dying, files, dict(held), deadline=0.0)
            dying.rollback()
        saved = one(
            conn, "select status, load_offset from public.import_jobs where id = %s", (job,)
        )
        assert saved["status"] == "validating" and 0 < saved["load_offset"] < len(data)
        run_job(runner, job_id, 60)
    finally:
        database.close()
        files.close()
    report = one(
        conn, "select status, rows_total, created from public.import_jobs where id = %s", (job,)
    )
    assert tuple(report.values()) == ("done", 400, 400)
    assert len(orders_of(conn, project)) == 400
    if source == "storage":
        ranges = [wanted for method, _, wanted in storage.requests if method == "GET" and wanted]
        assert f"bytes={saved['load_offset']}-" in ranges


def test_a_fourth_running_import_waits_until_one_ends(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """A workspace runs at most 3 imports at once: the fourth is a 409 that says so, and is
    accepted once one of the three is cancelled or done."""
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)

    def create() -> Response:
        return api.create(
            workspace_id=str(owner.workspace_id),
            kind="orders",
            project_id=str(project),
            size_bytes=len(HEADER),
        )

    jobs = [create().json()["data"]["id"] for _ in range(3)]
    fourth = create()
    assert (fourth.status_code, fourth.json()["error"]["code"]) == (409, "too_many_import_jobs")
    assert api.call("POST", f"/api/v1/imports/{jobs[0]}/cancel").status_code == 200
    assert api.part(jobs[1], 1, HEADER.encode()).status_code == 200
    assert api.commit(jobs[1]).json()["data"]["status"] == "done"
    assert [create().status_code for _ in range(2)] == [201, 201]
    assert create().json()["error"]["code"] == "too_many_import_jobs"


@pytest.mark.parametrize(
    ("kind", "header"),
    [
        ("orders", HEADER),
        ("contacts", "email,first_name\r\n"),
        ("products", "product_id,title"),
    ],
)
def test_a_file_with_only_its_header_ends_done_with_nothing_imported(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, kind: str, header: str
) -> None:
    """A shop's export of a day without orders: the job ends done (an orders job stayed
    importing for ever, holding one of the workspace's three import slots), and so does the
    small import of such a file."""
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    data = header.encode()
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind=kind,
        project_id=str(project),
        size_bytes=len(data),
    ).json()["data"]["id"]
    assert api.part(job, 1, data).status_code == 200
    report = api.commit(job).json()["data"]
    assert (report["status"], report["rows_total"], report["created"]) == ("done", 0, 0)
    assert report["finished_at"] is not None
    if kind == "orders":
        small = api.call(
            "POST",
            f"/api/v1/projects/{project}/orders/import",
            content=data,
            headers={"Content-Type": "text/csv"},
        )
        assert small.status_code == 200, small.json()
        assert (small.json()["data"]["status"], small.json()["data"]["imported"]) == ("done", 0)
    running = one(
        conn,
        "select count(*) as n from public.import_jobs where workspace_id = %s"
        " and status not in ('done', 'failed', 'cancelled')",
        (owner.workspace_id,),
    )
    assert running["n"] == 0


def test_all_invalid_rows_are_counted_and_their_errors_capped(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    data = orders_csv(25_000, status="shipped")
    report = api.commit(api.orders_job(project, data)).json()["data"]
    assert (report["status"], report["rows_failed"], report["created"]) == ("done", 25_000, 0)
    rows = errors_of(api, report["id"])
    assert len(rows) == 1 + 1000
    assert rows[1][:2] == ["2", "status"]
    assert orders_of(conn, project) == {}


def test_an_order_with_a_bad_line_is_rejected_whole_and_lines_link_products(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    conn.execute(
        "insert into public.products (workspace_id, project_id, source, external_id, title, sku)"
        " values (%s, %s, 'csv', 'P-TEA', 'Green tea', 'TEA-1')",
        (owner.workspace_id, project),
    )
    text = (
        "order_id,placed_at,status,total,currency,email,item_sku,item_name,item_quantity,"
        "item_unit_price,item_product_id\n"
        "A-1,2026-05-01,paid,,EUR,ann@example.test,TEA-1,Green tea,2,5.50,P-TEA\n"
        "A-1,,,,,,CUP-1,Cup,1,3.00,\n"
        "B-1,2026-05-02,paid,20,EUR,bob@example.test,CUP-1,Cup,1,3.00,\n"
        "B-1,,,,,,TEA-1,Green tea,-1,5.50,\n"
        "C-1,2026-05-03,paid,9,EUR,cid@example.test,,,,,\n"
    )
    job = api.orders_job(project, text.encode())
    report = api.commit(job).json()["data"]
    assert (report["created"], report["rows_failed"]) == (2, 2)
    assert errors_of(api, job)[1:] == [
        ["4", "", "not imported: order B-1 has an error on line 5"],
        ["5", "item_quantity", "item_quantity must be a number above 0 with at most 3 decimals"],
    ]
    assert set(orders_of(conn, project)) == {"A-1", "C-1"}
    assert orders_of(conn, project)["A-1"][1] == "14.00"  # the sum of its lines
    lines = conn.execute(
        "select i.sku, i.quantity, i.product_id is not null as linked from public.order_items i"
        " join public.orders o on o.id = i.order_id where o.external_id = 'A-1'"
        " and o.project_id = %s order by i.sku",
        (project,),
    ).fetchall()
    assert [tuple(r.values()) for r in lines] == [
        ("CUP-1", pytest.approx(1), False),
        ("TEA-1", pytest.approx(2), True),
    ]
    ids = conn.execute(
        "select array_agg(i.id order by i.id) as ids from public.order_items i"
        " join public.orders o on o.id = i.order_id where o.project_id = %s",
        (project,),
    ).fetchone()
    again = api.commit(api.orders_job(project, text.encode())).json()["data"]
    assert (again["unchanged"], again["updated"]) == (2, 0)
    same = conn.execute(
        "select array_agg(i.id order by i.id) as ids from public.order_items i"
        " join public.orders o on o.id = i.order_id where o.project_id = %s",
        (project,),
    ).fetchone()
    assert same == ids  # lines that did not change were not rewritten


def test_a_worker_that_dies_mid_chunk_leaves_nothing_doubled(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, database_url: str
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    job = api.orders_job(project, orders_csv(45_000))
    with acting_as(conn, owner):
        conn.execute("select private.commit_import_job(%s)", (job,))
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=10)
    database.open()
    try:
        runner = Runner(database, None)
        job_id = uuid.UUID(job)
        while (stepped := step(runner, job_id, deadline=float("inf"))) is not None:
            if stepped["status"] == "importing":
                break
        # A chunk's work rolled back as a dying worker's would be: nothing of it stays.
        with database.as_service() as dying:
            dying.execute("select private.import_orders_chunk(%s, 20000)", (job_id,))
            dying.rollback()
        run_job(runner, job_id, 120)
    finally:
        database.close()
    finished = one(conn, "select * from public.import_jobs where id = %s", (job,))
    assert (finished["status"], finished["created"], finished["rows_processed"]) == (
        "done",
        45_000,
        45_000,
    )
    counted = one(conn, "select count(*) as n from public.orders where project_id = %s", (project,))
    assert counted["n"] == 45_000


def test_a_catalog_imports_as_products_and_links_lines_imported_before_it(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    orders = (
        "order_id,placed_at,status,total,currency,item_sku,item_name,item_quantity,"
        "item_unit_price,item_product_id\n"
        "A-1,2026-05-01,paid,,EUR,TEA-1,Green tea,1,5.50,P-TEA\n"
    )
    assert api.commit(api.orders_job(project, orders.encode())).json()["data"]["created"] == 1
    catalog = (
        b"Product ID,Title,SKU,Price,Currency,Inventory,Category,Status\n"
        b"P-TEA,Green tea,TEA-1,5.50,eur,12,Drinks,\n"
        b'P-CUP,Cup,CUP-1,"3,90",EUR,,Kitchen,archived\n'
        b"P-TEA,Green tea again,TEA-1,5.50,EUR,12,Drinks,\n"
        b"P-BAD,Bad,,-1,EUR,x,,\n"
    )
    job = api.create(
        workspace_id=str(owner.workspace_id),
        kind="products",
        project_id=str(project),
        size_bytes=len(catalog),
    ).json()["data"]["id"]
    assert api.part(job, 1, catalog).status_code == 200
    report = api.commit(job).json()["data"]
    assert (report["status"], report["created"], report["rows_failed"]) == ("done", 2, 2)
    assert errors_of(api, job)[1:] == [
        ["4", "product_id", "product_id repeats line 2"],
        ["5", "price", "price must be zero or more"],
    ]
    products = conn.execute(
        "select external_id, title, price, currency, inventory, status from public.products"
        " where project_id = %s order by external_id",
        (project,),
    ).fetchall()
    assert [tuple(p.values()) for p in products] == [
        ("P-CUP", "Cup", Decimal("3.90"), "EUR", None, "archived"),
        ("P-TEA", "Green tea", pytest.approx(5.5), "EUR", 12, "active"),
    ]
    linked = one(
        conn,
        "select p.external_id from public.order_items i join public.products p"
        " on p.id = i.product_id join public.orders o on o.id = i.order_id"
        " where o.project_id = %s",
        (project,),
    )
    assert linked["external_id"] == "P-TEA"
    again = api.create(
        workspace_id=str(owner.workspace_id),
        kind="products",
        project_id=str(project),
        size_bytes=len(catalog),
    ).json()["data"]["id"]
    api.part(again, 1, catalog)
    assert api.commit(again).json()["data"]["unchanged"] == 2


def test_a_catalog_with_variants_imports_one_row_per_variant(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    """As shops export a catalog: a product's first row carries its fields, its other rows only
    the product id and the variant's."""
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    orders = (
        "order_id,placed_at,status,total,currency,item_sku,item_name,item_quantity,"
        "item_unit_price,item_product_id,item_variant_id\n"
        "V-1,2026-05-01,paid,,EUR,SH-42,Shoe 42,1,80,P-SHOE,V-42\n"
    )
    assert api.commit(api.orders_job(project, orders.encode())).json()["data"]["created"] == 1
    catalog = (
        b"Product ID,Title,Price,Currency,Category,Variant ID,Variant Title,Variant SKU,"
        b"Variant Price,Variant Inventory,Variant Status\n"
        b"P-SHOE,Running shoe,80,EUR,Shoes,V-41,41,SH-41,80,3,\n"
        b"P-SHOE,,,,,V-42,42,SH-42,85.50,0,active\n"
        b"P-SHOE,,,,,V-42,42 again,SH-42,85.50,0,\n"
        b"P-SHOE,,,,,V-43,43,SH-43,-1,,\n"
        b"P-NONE,,,,,V-1,One,NO-1,,,\n"
        b"P-CAP,Cap,,,Hats,,,,,,\n"
    )

    def run() -> dict[str, Any]:
        job = api.create(
            workspace_id=str(owner.workspace_id),
            kind="products",
            project_id=str(project),
            size_bytes=len(catalog),
        ).json()["data"]["id"]
        assert api.part(job, 1, catalog).status_code == 200
        report = api.commit(job).json()["data"]
        report["errors"] = errors_of(api, job)[1:]
        return dict(report)

    first = run()
    assert (first["status"], first["created"], first["rows_failed"]) == ("done", 3, 3)
    assert first["errors"] == [
        ["4", "variant_id", "variant_id repeats line 3 for this product"],
        ["5", "variant_price", "variant_price must be zero or more"],
        ["6", "variant_id", "variant_id: its product has no row with a title"],
    ]
    variants = conn.execute(
        "select p.external_id as product, v.external_id, v.title, v.sku, v.price, v.currency,"
        " v.inventory, v.status from public.product_variants v"
        " join public.products p on p.id = v.product_id where p.project_id = %s"
        " order by v.external_id",
        (project,),
    ).fetchall()
    assert [tuple(v.values()) for v in variants] == [
        ("P-SHOE", "V-41", "41", "SH-41", pytest.approx(80), "EUR", 3, "active"),
        ("P-SHOE", "V-42", "42", "SH-42", pytest.approx(85.5), "EUR", 0, "active"),
    ]
    products = conn.execute(
        "select external_id, title, category from public.products where project_id = %s"
        " order by external_id",
        (project,),
    ).fetchall()
    assert [tuple(p.values()) for p in products] == [
        ("P-CAP", "Cap", "Hats"),
        ("P-SHOE", "Running shoe", "Shoes"),
    ]
    linked = one(
        conn,
        "select v.external_id from public.order_items i join public.product_variants v"
        " on v.id = i.variant_id join public.orders o on o.id = i.order_id"
        " where o.project_id = %s",
        (project,),
    )
    assert linked["external_id"] == "V-42"
    again = run()
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)


def test_a_cancelled_job_takes_no_more_parts_nor_commits(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    data = orders_csv(10)
    job = api.orders_job(project, data)
    cancelled = api.call("POST", f"/api/v1/imports/{job}/cancel")
    assert (cancelled.status_code, cancelled.json()["data"]["status"]) == (200, "cancelled")
    assert api.part(job, 1, data).json()["error"]["code"] == "import_not_uploading"
    assert api.commit(job).json()["error"]["code"] == "import_job_cancelled"
    again = api.call("POST", f"/api/v1/imports/{job}/cancel")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "import_job_finished")
    parts = one(conn, "select count(*) as n from private.import_parts where job_id = %s", (job,))
    assert parts["n"] == 0 and orders_of(conn, project) == {}


@pytest.mark.parametrize("kind", ["orders", "contacts", "products"])
def test_a_chunk_whose_staged_rows_are_gone_fails_the_job_and_another_kind_is_left_alone(
    conn: Conn, owner: User, kind: str
) -> None:
    """Each kind's chunk claims its part the same way (private.claim_import_chunk): a job of
    another kind is answered untouched, and a part whose staged rows a restart emptied fails
    the job as staging_lost, keeping what earlier parts imported."""
    project = make_project(conn, owner)
    job = one(
        conn,
        "insert into public.import_jobs (workspace_id, project_id, kind, status, source,"
        " size_bytes, rows_total, merge_record, created)"
        " values (%s, %s, %s, 'importing', 'upload', 100, 30, 10, 10) returning id",
        (owner.workspace_id, project, kind),
    )["id"]
    other = "contacts" if kind != "contacts" else "orders"
    untouched = one(conn, f"select * from private.import_{other}_chunk(%s, 5)", (job,))
    assert (untouched["status"], untouched["merge_record"]) == ("importing", 10)
    failed = one(conn, f"select * from private.import_{kind}_chunk(%s, 5)", (job,))
    assert (failed["status"], failed["error_code"], failed["merge_record"], failed["created"]) == (
        "failed",
        "staging_lost",
        10,
        10,
    )


def test_a_chunk_analyzes_the_tables_an_import_has_grown(conn: Conn) -> None:
    """Foreign-key checks are planned once per connection from the planner's statistics; a
    table an import grew from nearly empty is analyzed by the next chunk, so those plans are
    made again instead of reading every contact of the workspace for each check. Autovacuum
    leaves the table alone (CI's runs it; 300 rows on 500 are past its threshold): an analyze
    between a step's insert and its call would be what the second step asserts did not happen."""
    table = f"private.grown_{uuid.uuid4().hex[:12]}"
    conn.execute(f"create table {table} (id integer) with (autovacuum_enabled = false)")
    try:
        conn.execute(f"insert into {table} select generate_series(1, 500)")
        conn.execute("select pg_stat_force_next_flush()")
        conn.execute("select private.analyze_grown_tables(array[%s::regclass])", (table,))
        assert (
            one(conn, "select reltuples from pg_class where oid = %s::regclass", (table,))[
                "reltuples"
            ]
            == 500
        )

        conn.execute(f"insert into {table} select generate_series(1, 300)")
        conn.execute("select pg_stat_force_next_flush()")
        conn.execute("select private.analyze_grown_tables(array[%s::regclass])", (table,))
        assert (
            one(conn, "select reltuples from pg_class where oid = %s::regclass", (table,))[
                "reltuples"
            ]
            == 500
        )

        conn.execute(f"insert into {table} select generate_series(1, 300)")
        conn.execute("select pg_stat_force_next_flush()")
        conn.execute("select private.analyze_grown_tables(array[%s::regclass])", (table,))
        assert (
            one(conn, "select reltuples from pg_class where oid = %s::regclass", (table,))[
                "reltuples"
            ]
            == 1100
        )
    finally:
        conn.execute(f"drop table {table}")


def importing_job(api: Api, conn: Conn, runner: Runner, project: uuid.UUID, data: bytes) -> str:
    """A committed orders job read into staging and validated, waiting for its first part."""
    job = api.orders_job(project, data)
    with acting_as(conn, api.user):
        conn.execute("select private.commit_import_job(%s)", (job,))
    while (stepped := step(runner, uuid.UUID(job), deadline=float("inf"))) is not None:
        if stepped["status"] == "importing":
            break
    return job


def imported(conn: Conn, job: str) -> dict[str, Any]:
    """What a job made, without ids: its counts and errors, its orders with their customers, the
    customers' contacts and facts (and whether facts agree with the orders)."""
    counts = one(
        conn,
        "select status, rows_total, rows_processed, merge_record, rows_failed, errors_stored,"
        " created, updated, unchanged from public.import_jobs where id = %s",
        (job,),
    )
    scope = "(select j.workspace_id from public.import_jobs j where j.id = %s)"
    errors = conn.execute(
        "select line, column_name, reason from public.import_errors where job_id = %s"
        " order by line",
        (job,),
    ).fetchall()
    orders = orders_of(
        conn,
        one(conn, "select project_id from public.import_jobs where id = %s", (job,))["project_id"],
    )
    contacts = conn.execute(
        "select c.email, c.first_name, x.external_id, f.orders_count, f.revenue,"
        " fo.external_id as first_order, lo.external_id as last_order,"
        " f.orders_count = (select count(*) from public.orders o where o.contact_id = c.id"
        "   and o.status in ('paid', 'fulfilled')) as facts_agree"
        " from public.contacts c"
        " left join public.contact_external_ids x on x.contact_id = c.id and x.source = 'manual'"
        " left join public.customer_facts f on f.contact_id = c.id"
        " left join public.orders fo on fo.id = f.first_order_id"
        " left join public.orders lo on lo.id = f.last_order_id"
        f" where c.workspace_id = {scope} and c.email like 'c%%'"
        " order by c.email",
        (job,),
    ).fetchall()
    staged = one(
        conn, "select count(*) as n from private.import_order_chunks where job_id = %s", (job,)
    )["n"]
    return {
        "counts": counts,
        "errors": errors,
        "orders": orders,
        "contacts": contacts,
        "staged": staged,
    }


def test_a_job_cancelled_while_importing_keeps_whole_orders_and_imports_no_more(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, database_url: str
) -> None:
    """Cancelled after its first part was written and its second staged: the first part's
    orders stay, each with all its lines; the staged part and the rest of the file are not
    imported, neither by a commit nor by the cron."""
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    rows = "".join(
        f"O-{n},2026-05-01,paid,,EUR,c{n % 7}@example.test,S-{n},2,5.00\nO-{n},,,,,,T-{n},1,3.00\n"
        for n in range(1, 1501)
    )
    header = "order_id,placed_at,status,total,currency,email,item_sku,item_quantity,item_unit_price"
    data = f"{header}\n{rows}".encode()
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=10)
    database.open()
    try:
        runner = Runner(database, None)
        job = importing_job(api, conn, runner, project, data)
        done = [orders_step(runner, uuid.UUID(job), 1000)[0] for _ in range(3)]
        assert done == ["staged", "written", "staged"]
        cancelled = api.call("POST", f"/api/v1/imports/{job}/cancel")
        assert (cancelled.status_code, cancelled.json()["data"]["status"]) == (200, "cancelled")
        refused = api.commit(job)
        assert (refused.status_code, refused.json()["error"]["code"]) == (
            409,
            "import_job_cancelled",
        )
        # The cron's run (it may advance other tests' jobs in this database): this job's
        # counts and orders below show it took nothing more.
        continue_import_jobs(database, None)
    finally:
        database.close()
    kept = one(
        conn,
        "select status, rows_processed, created from public.import_jobs where id = %s",
        (job,),
    )
    assert tuple(kept.values()) == ("cancelled", 1000, 500)
    orders = orders_of(conn, project)
    assert len(orders) == 500 and {total for _, total, _ in orders.values()} == {"13.00"}
    lines = one(
        conn,
        "select count(*) as n from public.order_items i join public.orders o on o.id = i.order_id"
        " where o.project_id = %s",
        (project,),
    )
    assert lines["n"] == 1000
    staged = one(
        conn, "select count(*) as n from private.import_order_chunks where job_id = %s", (job,)
    )
    assert staged["n"] == 0
    # The member's cancel pays no RFM refresh (it runs under their statement timeout): the
    # written part leaves the workspace's scores stale until pg_cron's refresh makes them kept.
    stale = "select count(*) as n from private.rfm_stale where workspace_id = %s"
    assert one(conn, stale, (owner.workspace_id,))["n"] > 0
    conn.execute("select private.refresh_rfm_kept()")
    assert one(conn, stale, (owner.workspace_id,))["n"] == 0


def test_an_imports_parts_link_their_lines_as_they_write_them(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User, database_url: str
) -> None:
    """A part's lines are linked to the catalog in the insert that writes them, whatever their
    number (they used to wait for the job's end, which read every unlinked line of the
    workspace and which a cancelled job never reached); at the end every line names its catalog
    product."""
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    conn.execute(
        "insert into public.products (workspace_id, project_id, source, external_id, title, sku)"
        " values (%s, %s, 'shopify', 'tea', 'Tea', 'TEA')",
        (owner.workspace_id, project),
    )
    header = "order_id,placed_at,status,total,currency,email,item_sku,item_quantity,item_unit_price"
    rows = "".join(f"L-{n},2026-05-01,paid,,EUR,c{n}@example.test,TEA,1,5.00\n" for n in range(4))
    linked = (
        "select count(i.product_id) as linked, count(*) as lines from public.order_items i"
        " join public.orders o on o.id = i.order_id where o.project_id = %s"
    )
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=10)
    database.open()
    try:
        runner = Runner(database, None)
        job = importing_job(api, conn, runner, project, f"{header}\n{rows}".encode())
        assert [orders_step(runner, uuid.UUID(job), 2)[0] for _ in range(2)] == [
            "staged",
            "written",
        ]
        assert tuple(one(conn, linked, (project,)).values()) == (2, 2)
        for _ in range(10):
            stepped = orders_step(runner, uuid.UUID(job), 2)[1]
            if stepped is not None and stepped["status"] == "done":
                break
    finally:
        database.close()
    assert tuple(one(conn, linked, (project,)).values()) == (4, 4)


def test_two_workers_on_one_job_make_exactly_what_one_worker_makes(
    client: TestClient, jwks: JwksServer, conn: Conn, database_url: str
) -> None:
    """Two workers merge one orders job at once (one writes a part's orders while the other
    stages the next, their customers shared), one dies mid-write, and the job ends with exactly
    the rows, counts and errors of the same file merged one part at a time: no doubled order or
    contact, contacts deduplicated by email, the plan's contact limit exact, facts agreeing."""
    limit = int(
        one(conn, "select contact_limit from public.plans where tier = 'free'")["contact_limit"]
    )
    rows = [
        f"O-{n},2026-05-{1 + n % 28:02d}T10:00:00Z,{'shipped' if n % 101 == 0 else 'paid'},"
        f"{n % 90 + 10}.50,EUR,c{n % 400}@example.test,Name{n % 400},C{n % 400}\n"
        for n in range(1, 3001)
    ]
    data = (HEADER + "".join(rows)).encode()
    made = {}
    database = Database(database_url, pool_mode="session", max_size=3, timeout_seconds=10)
    database.open()
    try:
        runner = Runner(database, None)
        for arm in ("one", "two"):
            user = create_user(conn)
            fund(conn, user, 0, "free")
            # Room for 150 of the file's 400 customers: the rest's orders are refused.
            conn.execute(
                "insert into public.contacts (workspace_id, email)"
                " select %s, 'seed' || n || '@example.test' from generate_series(1, %s) as n",
                (user.workspace_id, limit - 150),
            )
            job = importing_job(
                Api(client, jwks, user), conn, runner, make_project(conn, user), data
            )
            if arm == "one":
                while (
                    one(conn, "select status from private.import_orders_chunk(%s, 500)", (job,))[
                        "status"
                    ]
                    == "importing"
                ):
                    pass
            else:
                two_workers(database_url, conn, job)
                run_job(runner, uuid.UUID(job), 60)
            made[arm] = imported(conn, job)
    finally:
        database.close()
    assert made["two"] == made["one"]
    one_arm = made["one"]
    assert one_arm["counts"]["status"] == "done" and one_arm["staged"] == 0
    assert (one_arm["counts"]["rows_processed"], one_arm["counts"]["merge_record"]) == (3000, 3000)
    assert len([c for c in one_arm["contacts"] if c["email"].startswith("c")]) == 150
    assert all(c["facts_agree"] for c in one_arm["contacts"])
    accepted = len(one_arm["orders"])
    assert one_arm["counts"]["created"] == accepted
    assert one_arm["counts"]["rows_failed"] == 3000 - accepted
    assert conn.execute("select * from private.verify_contact_counts()").fetchall() == []


def two_workers(database_url: str, conn: Conn, job: str) -> None:
    """Parts 1 and 2 staged, then written at once on two connections (the second waits for the
    facts rows of their shared customers), then part 3 staged and its writer dying mid-write."""
    first = psycopg.connect(database_url)
    second = psycopg.connect(database_url)
    try:
        for worker in (first, second):
            worker.execute("select * from private.lock_import_job(%s)", (job,))
            staged = worker.execute("select * from private.stage_orders_chunk(%s, 500)", (job,))
            assert staged.fetchone() is not None
            worker.commit()
        first.execute("select * from private.write_orders_chunk(%s)", (job,))
        writing = threading.Thread(
            target=lambda: second.execute("select * from private.write_orders_chunk(%s)", (job,)),
            daemon=True,
        )
        writing.start()
        deadline = time.monotonic() + 20
        while not one(
            conn,
            "select exists (select 1 from pg_stat_activity where datname = current_database()"
            " and pid = %s and wait_event_type = 'Lock') as waiting",
            (second.info.backend_pid,),
        )["waiting"]:
            assert time.monotonic() < deadline, "the second writer never waited for the first"
            conn.execute("select pg_stat_clear_snapshot()")
        first.commit()
        writing.join(30)
        second.commit()
        first.execute("select * from private.lock_import_job(%s)", (job,))
        first.execute("select * from private.stage_orders_chunk(%s, 500)", (job,))
        first.commit()
        first.execute("select * from private.write_orders_chunk(%s)", (job,))
        first.rollback()
        assert (
            one(
                conn,
                "select count(*) as n from private.import_order_chunks"
                " where job_id = %s and not written",
                (job,),
            )["n"]
            == 1
        )
    finally:
        first.close()
        second.close()


def test_a_merge_worker_waits_for_a_held_job_only_so_long(
    client: TestClient,
    jwks: JwksServer,
    conn: Conn,
    owner: User,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker with nothing to do waits for whoever holds the job's next step; one that holds
    it longer than a step (not a worker) leaves the job to the next call instead of the call
    outliving its budget."""
    monkeypatch.setattr(jobs, "WAIT_SECONDS", 0.2)
    database = Database(database_url, pool_mode="session", max_size=2, timeout_seconds=10)
    database.open()
    holder = psycopg.connect(database_url)
    try:
        runner = Runner(database, None)
        job = importing_job(
            Api(client, jwks, owner), conn, runner, make_project(conn, owner), orders_csv(50)
        )
        holder.execute("select 1 from public.import_jobs where id = %s for update", (job,))
        assert jobs.orders_step(runner, uuid.UUID(job), 500) == (None, None)
        holder.rollback()
        done, state = jobs.orders_step(runner, uuid.UUID(job), 500)
        assert (done, state and state["status"]) == ("staged", "importing")
    finally:
        holder.close()
        database.close()


def test_the_errors_download_is_a_quoted_csv_attachment_for_members_only(
    client: TestClient, jwks: JwksServer, conn: Conn, owner: User
) -> None:
    api = Api(client, jwks, owner)
    project = make_project(conn, owner)
    # An order id with a quote and a comma and a bad second line: the reason of its first line
    # names the id, so the download must quote that cell for a reader to get it back.
    data = (
        b"order_id,placed_at,status,total,currency,email,item_sku,item_name,item_quantity,"
        b"item_unit_price\n"
        b'"Q""1,2",2026-05-01,paid,,EUR,ann@example.test,TEA-1,Tea,2,5.50\n'
        b'"Q""1,2",,,,,,CUP-1,Cup,-1,3.00\n'
        b"O-2,2026-05-01,shipped,5.00,EUR,bob@example.test,,,,\n"
    )
    job = api.orders_job(project, data)
    assert api.commit(job).json()["data"]["rows_failed"] == 3
    response = api.call("GET", f"/api/v1/imports/{job}/errors.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        f'attachment; filename="import-{job}-errors.csv"'
    )
    assert response.headers["x-request-id"]
    assert response.text.startswith("line,column,reason\r\n")
    assert ',"not imported: order Q""1,2 has an error on line 3"\r\n' in response.text
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows == [
        ["line", "column", "reason"],
        ["2", "", 'not imported: order Q"1,2 has an error on line 3'],
        ["3", "item_quantity", "item_quantity must be a number above 0 with at most 3 decimals"],
        ["4", "status", "status must be one of pending, paid, fulfilled, cancelled, refunded"],
    ]
    assert orders_of(conn, project) == {}
    # A viewer of the workspace may read it; nobody else learns that the job exists.
    viewer = Api(client, jwks, add_member(conn, owner, "viewer"))
    assert viewer.call("GET", f"/api/v1/imports/{job}/errors.csv").text == response.text
    stranger = Api(client, jwks, create_user(conn))
    foreign = stranger.call("GET", f"/api/v1/imports/{job}/errors.csv")
    assert (foreign.status_code, foreign.json()["error"]["code"]) == (404, "import_job_not_found")
    assert "Q" not in foreign.text
    unknown = api.call("GET", f"/api/v1/imports/{uuid.uuid4()}/errors.csv")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "import_job_not_found")
