"""Running import jobs: reading the file into staging, then merging it chunk by chunk, each step
one transaction of its own that also moves the job's cursor, until the job ends or the call's
time budget is spent. A commit call runs it, and so does the cron (`continue_import_jobs`) for
jobs no call is running; a worker that dies mid-step loses only that step, which the next one
does again.
"""

import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg

from api.core.db import Connection, Database
from api.core.errors import ApiError
from api.imports.columns import KINDS, HeaderError, ImportKind, map_header, read_as
from api.imports.csv_stream import CsvFileError, Record, RecordReader, read_header
from api.imports.product_exports import (
    STORE_KEEPS_CATALOG,
    product_export_of,
    store_catalog_refusal,
)
from api.imports.staging import StagedRows
from api.imports.storage import ImportStorage, StorageError

log = logging.getLogger("growthbase.imports")

# Rows merged per transaction: a small first chunk, then whatever the last chunk's pace says
# takes CHUNK_SECONDS, growing at most GROWTH times a step. Each chunk commits the job's counts,
# which the trigger on import_jobs broadcasts, so a job that imports reports at least every 2 s
# even on a busy database (a slower step than the last one, by up to twice, still fits), and
# no step outlasts a call's budget. A first chunk of a fixed 20,000 rows took 5.6 s on this
# machine under load: the pace must be measured before a chunk is allowed to be large.
CHUNK_RECORDS = 1_000
CHUNK_SECONDS = 1.0
GROWTH = 2
READ_STEP_SECONDS = 2.0
MIN_CHUNK_RECORDS = 1_000
MAX_CHUNK_RECORDS = 50_000
# A commit call and a cron tick stop starting new steps after this many seconds, well inside a
# serverless function's 60.
STEP_BUDGET_SECONDS = 40.0
CHUNK_FUNCTIONS = {
    "orders": "select * from private.import_orders_chunk(%s, %s)",
    "contacts": "select * from private.import_contacts_chunk(%s, %s)",
    "products": "select * from private.import_products_chunk(%s, %s)",
}
VALIDATE_FUNCTIONS = {
    "orders": "select * from private.validate_orders_import(%s)",
    "contacts": "select * from private.validate_contacts_import(%s)",
    "products": "select * from private.validate_products_import(%s)",
}
ENDED = ("done", "failed", "cancelled")
RETRYABLE = (
    psycopg.errors.UniqueViolation,
    psycopg.errors.DeadlockDetected,
    psycopg.errors.SerializationFailure,
)
MAX_CONFLICT_RETRIES = 3
# A value the database refuses though the row checks let it through (a constraint or a limit
# they do not know): the chunk fails the same way on every call, so the job ends failed with
# the reason instead of answering the same error for ever while it holds an import slot and the
# cron's time. What earlier chunks imported stays. (UniqueViolation is retried first.)
REFUSED = (
    psycopg.errors.IntegrityError,
    psycopg.errors.DataError,
    psycopg.errors.ProgramLimitExceeded,
)
# Workers merging one orders job at once, each on its own connection: while one writes a part's
# orders, the other stages the next part (the database server has a core for each).
MERGE_WORKERS = 2
# How long a merge worker with nothing to do waits for the step that holds the next one.
WAIT_SECONDS = 10


@dataclass(frozen=True)
class Runner:
    """What a worker needs: the database, and Storage for jobs that name a file there."""

    database: Database
    storage: ImportStorage | None


def part_blocks(conn: Connection, job_id: UUID, offset: int) -> Iterator[bytes]:
    """The uploaded file from `offset` on, one part at a time (never the whole file)."""
    sizes = conn.execute(
        "select part_number, octet_length(body) as size from private.import_parts"
        " where job_id = %s order by part_number",
        (job_id,),
    ).fetchall()
    start = 0
    for part in sizes:
        end = start + part["size"]
        if end > offset:
            skip = max(offset - start, 0)
            row = conn.execute(
                "select substring(body from %s) as body from private.import_parts"
                " where job_id = %s and part_number = %s",
                (skip + 1, job_id, part["part_number"]),
            ).fetchone()
            if row is not None:
                yield bytes(row["body"])
        start = end


def file_blocks(
    conn: Connection, storage: ImportStorage | None, job: dict[str, Any], offset: int
) -> Iterator[bytes]:
    if job["source"] == "upload":
        return part_blocks(conn, job["id"], offset)
    if storage is None:
        raise StorageError("Supabase Storage is not configured on this edge")
    return storage.stream(job["storage_path"], offset)


def header_targets(
    conn: Connection, storage: ImportStorage | None, job: dict[str, Any], kind: ImportKind
) -> tuple[list[str], str]:
    """The job's column mapping, read from the file's header on the first read."""
    if job["columns"] is not None:
        return list(job["columns"]), job["delimiter"]
    header, delimiter = read_header(file_blocks(conn, storage, job, 0), job["encoding"])
    try:
        targets = map_header(kind, header, job["column_map"])
    except HeaderError as error:
        raise CsvFileError("invalid_csv", str(error)) from error
    conn.execute("select private.set_import_columns(%s, %s, %s)", (job["id"], targets, delimiter))
    return targets, delimiter


def load_step(
    conn: Connection, storage: ImportStorage | None, job: dict[str, Any], deadline: float
) -> None:
    """Reads the file into staging from where the last read stopped, until its end or the
    deadline; saves where it stopped (after a whole record) with the rows it staged. Each block's
    records stream straight into a COPY of their own, so memory holds one block at a time."""
    kind = KINDS[job["kind"]]
    targets, delimiter = header_targets(conn, storage, job, kind)
    offset = job["load_offset"]
    reader = RecordReader(
        job["encoding"], line=job["load_line"], at_file_start=offset == 0, delimiter=delimiter
    )
    # Checked again on every read: the store may have synced since part 1 was checked.
    refusal = store_catalog_refusal(conn, job, targets)
    if refusal is not None:
        raise CsvFileError(STORE_KEEPS_CATALOG, refusal)
    staged = StagedRows(kind, job["id"], targets, store_currency(conn, job, kind, targets))
    records = job["load_record"]
    finished = True
    for block in file_blocks(conn, storage, job, offset):
        records += staged.copy(conn, records + 1, body_records(reader.feed(block), offset))
        if time.monotonic() > deadline:
            finished = False
            break
    if finished:
        records += staged.copy(conn, records + 1, body_records(reader.finish(), offset))
    consumed = offset + reader.consumed
    if finished and consumed != job["size_bytes"]:
        raise CsvFileError(
            "file_changed",
            f"The file has {consumed} bytes, not the {job['size_bytes']} it had when the import"
            " was created",
        )
    conn.execute(
        "select private.save_import_load(%s, %s, %s, %s)",
        (job["id"], consumed, reader.line, records),
    )


def store_currency(
    conn: Connection, job: dict[str, Any], kind: ImportKind, targets: list[str]
) -> str | None:
    """A shop's product export names no currency: its prices are in the currency the export's
    own store's connection to the job's project keeps, as the store's own product webhooks'
    prices are, else the one currency of the prices the store's sync stored on the project's
    products (a WooCommerce connection keeps none; private.import_store_currency); None when
    neither names one (the file's Currency column then gives it)."""
    tool = product_export_of({read_as(target)[0] for target in targets})
    if kind.name != "products" or tool is None:
        return None
    row = conn.execute(
        "select private.import_store_currency(%s, %s) as currency", (job["project_id"], tool)
    ).fetchone()
    return str(row["currency"]) if row and row["currency"] else None


def body_records(records: Iterator[Record], offset: int) -> Iterator[Record]:
    """The file's records without its header (line 1 of a read from the start)."""
    for record in records:
        if not (record.line == 1 and offset == 0):
            yield record


def step(
    runner: Runner, job_id: UUID, deadline: float, chunk_records: int = CHUNK_RECORDS
) -> dict[str, Any] | None:
    """One step of a job, in one transaction: None when another worker holds the job or it is not
    running."""
    with runner.database.as_service() as conn:
        job = conn.execute("select * from private.lock_import_job(%s)", (job_id,)).fetchone()
        if job is None:
            return None
        # The step's commit does not wait for its WAL to reach the disk: a crash can lose the
        # last steps, but each moves the job's cursor in its own transaction, so a lost step is
        # done again, never half or twice.
        conn.execute("set local synchronous_commit = off")
        if job["status"] == "validating" and job["load_offset"] < job["size_bytes"]:
            read_until = min(deadline, time.monotonic() + READ_STEP_SECONDS)
            load_step(conn, runner.storage, job, read_until)
            return job
        if job["status"] == "validating":
            return conn.execute(VALIDATE_FUNCTIONS[job["kind"]], (job_id,)).fetchone()
        if job["kind"] == "orders":
            return job  # merged by merge_orders' workers, in steps of their own
        return conn.execute(CHUNK_FUNCTIONS[job["kind"]], (job_id, chunk_records)).fetchone()


def fail(runner: Runner, job_id: UUID, code: str, message: str) -> None:
    with runner.database.as_service() as conn:
        conn.execute("select private.fail_import_job(%s, %s, %s)", (job_id, code, message))


def refused(runner: Runner, job_id: UUID, error: psycopg.Error) -> None:
    """Fails the job with what the database refused: the constraint or the limit's message,
    never the row's values (the error's detail, which would hold them, is left out)."""
    log.error("import %s failed: the database refused a value (%s)", job_id, error.sqlstate)
    what = error.diag.constraint_name or error.diag.message_primary or error.sqlstate
    fail(
        runner,
        job_id,
        "value_refused",
        f"The database refused a value of this file ({what}) that the row checks let through;"
        " what was imported before stays. Please report this import.",
    )


def paced_chunk(records: int, seconds: float) -> int:
    """The next chunk's rows: what the last chunk's pace does in CHUNK_SECONDS, at most GROWTH
    times the last chunk, within MIN_CHUNK_RECORDS and MAX_CHUNK_RECORDS."""
    paced = records / max(seconds, 0.001) * CHUNK_SECONDS
    return int(min(max(paced, MIN_CHUNK_RECORDS), MAX_CHUNK_RECORDS, records * GROWTH))


def run_job(runner: Runner, job_id: UUID, budget_seconds: float = STEP_BUDGET_SECONDS) -> None:
    """Advances a job until it ends, another worker holds it, or the budget is spent. A file
    that cannot be read fails the job with the reason; Storage being away leaves it for later.
    An orders job that is importing is merged by MERGE_WORKERS workers at once."""
    deadline = time.monotonic() + budget_seconds
    conflicts = 0
    chunk_records = CHUNK_RECORDS
    merging = False  # whether the next step merges a chunk (the last one left the job importing)
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            job = step(runner, job_id, deadline, chunk_records)
        except RETRYABLE as error:
            # Another writer (a shop's webhook) stored the same order or contact meanwhile: the
            # step rolled back whole; run it again, now finding theirs.
            conflicts += 1
            if conflicts > MAX_CONFLICT_RETRIES:
                raise
            log.info("import %s step retried after %s", job_id, type(error).__name__)
            continue
        except CsvFileError as error:
            fail(runner, job_id, error.code, error.message)
            return
        except REFUSED as error:
            refused(runner, job_id, error)
            return
        except StorageError as error:
            if error.missing:
                fail(runner, job_id, "storage_object_not_found", str(error))
            else:
                log.warning("import %s waits for Storage: %s", job_id, error)
            return
        if job is None or job["status"] in ENDED:
            return
        if job["kind"] == "orders" and job["status"] == "importing":
            try:
                merge_orders(runner, job_id, deadline)
            except REFUSED as error:
                refused(runner, job_id, error)
            return
        if merging:
            chunk_records = paced_chunk(chunk_records, time.monotonic() - started)
        merging = job["status"] == "importing"


def orders_step(
    runner: Runner, job_id: UUID, chunk_records: int
) -> tuple[str | None, dict[str, Any] | None]:
    """One step of merging an orders job, each part of it a transaction of its own: writes a
    staged part no other worker holds; else stages the next part (holding the job); else waits
    for the worker holding what comes next. Answers what it did ("written", "staged" or None)
    and the job."""
    with runner.database.as_service() as conn:
        # As in step: a step lost in a crash is done again, never half or twice.
        conn.execute("set local synchronous_commit = off")
        job = conn.execute("select * from private.write_orders_chunk(%s)", (job_id,)).fetchone()
        if job is not None:
            return "written", job
    with runner.database.as_service() as conn:
        conn.execute("set local synchronous_commit = off")
        job = conn.execute("select * from private.lock_import_job(%s)", (job_id,)).fetchone()
        if job is not None and job["status"] == "importing":
            staged = conn.execute(
                "select * from private.stage_orders_chunk(%s, %s)", (job_id, chunk_records)
            ).fetchone()
            if staged is not None:
                return "staged", staged
    try:
        with runner.database.as_service() as conn:
            # Another worker's step holds what comes next for a second or two; whoever holds
            # it longer (not a worker) leaves the job to the next call.
            conn.execute("select set_config('lock_timeout', %s, true)", (f"{WAIT_SECONDS}s",))
            job = conn.execute(
                "select * from private.wait_for_orders_chunk(%s)", (job_id,)
            ).fetchone()
    except psycopg.errors.LockNotAvailable:
        return None, None
    return None, job


class MergePace:
    """The part size an orders job's merge workers share. Parts are staged one at a time in the
    file's order and written as they come, and the member hears of the job at each written part:
    while two workers run, one stages a part while the other writes one, so the news comes about
    every max(stage, write) seconds of a part; a worker alone comes back every stage plus write.
    The next part takes what that does in CHUNK_SECONDS at the last pace of each half, at most
    GROWTH times the smaller of the two parts it was measured on, so a part slower than those by
    up to twice still reports within 2 s. A written part's time is divided by its own rows (a
    worker mostly writes the part the other staged, sized at another moment)."""

    def __init__(self, workers: int) -> None:
        self.lock = threading.Lock()
        self.workers = workers
        self.chunk_records = CHUNK_RECORDS
        self.staged: deque[int] = deque()  # rows of the parts staged here, not yet written
        self.seconds_per_record = {"staged": 0.0, "written": 0.0}
        self.measured_records = {"staged": 0, "written": 0}

    def paced(self) -> int:
        """The next part's rows from the last pace of each half (CHUNK_RECORDS before both are
        known)."""
        if min(self.measured_records.values()) == 0:
            return CHUNK_RECORDS
        stage, write = self.seconds_per_record.values()
        per_record = max(stage, write) if self.workers > 1 else stage + write
        base = min(self.measured_records.values())
        return paced_chunk(base, per_record * base)

    def measured(self, done: str, requested: int, seconds: float) -> None:
        """A step staged `requested` rows, or wrote a part, in `seconds`."""
        with self.lock:
            if done == "staged":
                self.staged.append(requested)
                records = requested
            else:
                records = self.staged.popleft() if self.staged else requested
            self.seconds_per_record[done] = seconds / max(records, 1)
            self.measured_records[done] = records
            self.chunk_records = self.paced()

    def leave(self) -> None:
        """A worker stops: the others' parts are sized for one worker fewer from now on."""
        with self.lock:
            self.workers -= 1
            self.chunk_records = min(self.chunk_records, self.paced())


def merge_orders_worker(
    runner: Runner, job_id: UUID, deadline: float, pace: MergePace, helper: bool
) -> None:
    """Stages and writes an orders job's parts until it ends or the deadline passes, each part
    sized by the pace the workers share. A helper (every worker but the first) that finds the
    edge's pool spent stops: the job goes on with the first worker, as it did before there were
    two."""
    try:
        merge_orders_steps(runner, job_id, deadline, pace, helper)
    finally:
        pace.leave()


def merge_orders_steps(
    runner: Runner, job_id: UUID, deadline: float, pace: MergePace, helper: bool
) -> None:
    conflicts = 0
    while time.monotonic() < deadline:
        started = time.monotonic()
        chunk_records = pace.chunk_records
        try:
            done, job = orders_step(runner, job_id, chunk_records)
        except ApiError as error:
            if helper and error.code == "database_unavailable":
                log.info("import %s merges with one worker: no connection free", job_id)
                return
            raise
        except RETRYABLE as error:
            # A deadlock with another writer, or an order or contact stored meanwhile: the step
            # rolled back whole; run it again.
            conflicts += 1
            if conflicts > MAX_CONFLICT_RETRIES:
                raise
            log.info("import %s merge step retried after %s", job_id, type(error).__name__)
            continue
        if job is None or job["status"] != "importing":
            return
        if done is not None:
            pace.measured(done, chunk_records, time.monotonic() - started)


def merge_orders(runner: Runner, job_id: UUID, deadline: float) -> None:
    """Runs MERGE_WORKERS merge workers on one orders job until it ends or the deadline; the
    first error of a worker is raised once all have stopped."""
    pace = MergePace(MERGE_WORKERS)
    with ThreadPoolExecutor(MERGE_WORKERS, thread_name_prefix="import-merge") as pool:
        workers = [
            pool.submit(merge_orders_worker, runner, job_id, deadline, pace, number > 0)
            for number in range(MERGE_WORKERS)
        ]
    for worker in workers:
        worker.result()


def continue_import_jobs(
    database: Database, storage: ImportStorage | None, budget_seconds: float = STEP_BUDGET_SECONDS
) -> dict[str, int]:
    """The cron's part: expires abandoned uploads, then advances running jobs (oldest first)
    within the budget. Answers how many jobs it advanced and how many uploads expired."""
    runner = Runner(database, storage)
    deadline = time.monotonic() + budget_seconds
    with database.as_service() as conn:
        row = conn.execute("select private.prune_import_jobs() as expired").fetchone()
        jobs = conn.execute("select id from private.running_import_jobs(10)").fetchall()
    advanced = 0
    for job in jobs:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            run_job(runner, job["id"], remaining)
        except psycopg.Error as error:
            log.error("import %s step failed: %s", job["id"], type(error).__name__)
            continue
        advanced += 1
    return {"advanced": advanced, "expired": int(row["expired"]) if row else 0}
