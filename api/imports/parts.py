"""Receiving an uploaded part: at most 4 MiB, text in the job's encoding (a part may begin or end
inside a character, never hold a broken one), the header checked as soon as part 1 brings it,
and the bytes streamed into the job's staging with COPY, replacing an earlier copy of the part.
"""

from typing import Any
from uuid import UUID

from api.core.db import Connection, become_service
from api.core.errors import ApiError
from api.imports.columns import KINDS, HeaderError, map_header
from api.imports.csv_stream import ENCODINGS, CsvFileError, read_header
from api.imports.product_exports import STORE_KEEPS_CATALOG, store_catalog_refusal

MAX_PART_BYTES = 4 * 1024 * 1024
COPY_SLICE_BYTES = 256 * 1024
# A UTF-8 character has at most 4 bytes, so at most 3 may hang over a part's edge.
UTF8_CONTINUATION = range(0x80, 0xC0)


def check_encoding(body: bytes, encoding: str, part_number: int) -> None:
    """422 invalid_encoding when the part holds bytes that are not text in `encoding`."""
    start = 0
    if encoding == "utf-8":
        while start < min(3, len(body)) and body[start] in UTF8_CONTINUATION:
            start += 1
    try:
        body[start:].decode(ENCODINGS[encoding])
    except UnicodeDecodeError as error:
        if encoding == "utf-8" and error.reason == "unexpected end of data":
            return  # a character continued in the next part
        raise ApiError(
            422,
            "invalid_encoding",
            f"Part {part_number} is not valid {encoding} text (byte {start + error.start});"
            " save the file as CSV UTF-8, or name its encoding when you create the import",
            {"part_number": part_number, "byte": start + error.start, "encoding": encoding},
        ) from error


def check_header(conn: Connection, job: dict[str, Any], body: bytes) -> None:
    """Part 1 holds the header: a file without the columns it needs is refused before the rest
    of it is sent, and so is a shop's products export into the project its store's sync keeps
    the catalog of (409 store_keeps_catalog)."""
    if b"\n" not in body:
        return
    try:
        header, _ = read_header([body], job["encoding"])
        targets = map_header(KINDS[job["kind"]], header, job["column_map"])
    except (CsvFileError, HeaderError) as error:
        raise ApiError(
            422, "invalid_csv", str(error), [{"line": 1, "reason": str(error)}]
        ) from error
    refusal = store_catalog_refusal(conn, job, targets)
    if refusal is not None:
        raise ApiError(409, STORE_KEEPS_CATALOG, refusal)


def store_part(conn: Connection, job_id: UUID, part_number: int, body: bytes) -> dict[str, Any]:
    """In the caller's transaction, already checked as the user: the part's bytes replace any
    earlier copy, as the service. Answers the job with its received counts."""
    if len(body) > MAX_PART_BYTES:
        raise ApiError(
            413, "part_too_large", f"A part may have at most {MAX_PART_BYTES} bytes (4 MiB)"
        )
    if not body:
        raise ApiError(422, "empty_part", "A part must hold at least one byte")
    become_service(conn)
    job = conn.execute(
        "select * from private.begin_import_part(%s, %s)", (job_id, part_number)
    ).fetchone()
    assert job is not None
    check_encoding(body, job["encoding"], part_number)
    if part_number == 1:
        check_header(conn, job, body)
    with (
        conn.cursor() as cursor,
        cursor.copy("copy private.import_parts (job_id, part_number, body) from stdin") as copy,
    ):
        copy.write(f"{job_id}\t{part_number}\t\\\\x")
        for start in range(0, len(body), COPY_SLICE_BYTES):
            copy.write(body[start : start + COPY_SLICE_BYTES].hex())
        copy.write("\n")
    finished = conn.execute(
        "select * from private.finish_import_part(%s, %s)", (job_id, part_number)
    ).fetchone()
    assert finished is not None
    return dict(finished)
