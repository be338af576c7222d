"""Reading a CSV file of any size from a stream of byte blocks, a record at a time, with the
line each record starts on, without ever holding more than a block and one unfinished record.

A record ends at a line break outside quotes. In every encoding we accept, `"` and the line
feed are single bytes that never occur inside another character, so counting quotes in the
bytes finds record boundaries before decoding, and each run of whole records is decoded and
parsed on its own: a block may end anywhere (mid-record, mid-character).
"""

import codecs
import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

ENCODINGS = {
    "utf-8": "utf-8",
    "windows-1250": "cp1250",
    "windows-1252": "cp1252",
    "iso-8859-1": "latin-1",
    "iso-8859-2": "iso8859_2",
}
DELIMITERS = (",", ";", "\t", "|")
# A record (a row, with its quoted line breaks) larger than this is not a CSV row we can take.
MAX_RECORD_BYTES = 16 * 1024 * 1024
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
csv.field_size_limit(MAX_RECORD_BYTES)


class CsvFileError(ValueError):
    """The file as a whole cannot be read: the job fails with this code and message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Record:
    line: int
    fields: list[str]


def last_boundary(data: bytes | bytearray) -> int:
    """The index just past the last line feed outside quotes (0 when there is none); `data`
    starts at a record boundary."""
    end = data.rfind(b"\n")
    while end >= 0:
        if data.count(b'"', 0, end) % 2 == 0:
            return end + 1
        end = data.rfind(b"\n", 0, end)
    return 0


def guess_delimiter(header: str) -> str:
    """The delimiter the header uses most outside quotes (spreadsheets in many locales write
    semicolons)."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


class RecordReader:
    """Feeds byte blocks in, gives whole records out, and says how far it has consumed, so a read
    can stop after any record and a later one resume at that byte offset and line."""

    def __init__(self, encoding: str, *, line: int, at_file_start: bool, delimiter: str) -> None:
        self.codec = ENCODINGS[encoding]
        self.encoding = encoding
        self.delimiter = delimiter
        self.line = line
        self.consumed = 0
        self.pending = bytearray()
        self.at_file_start = at_file_start

    def feed(self, block: bytes) -> Iterator[Record]:
        self.pending += block
        if self.at_file_start and not self.strip_bom():
            return
        cut = last_boundary(self.pending)
        if cut == 0:
            if len(self.pending) > MAX_RECORD_BYTES:
                raise CsvFileError(
                    "invalid_csv",
                    f"line {self.line}: a row longer than 16 MiB, an unclosed quote, or a file"
                    " without line feeds",
                )
            return
        whole = bytes(self.pending[:cut])
        del self.pending[:cut]
        yield from self.parse(whole)

    def finish(self) -> Iterator[Record]:
        """The last record, when the file does not end with a line break."""
        if self.at_file_start and not self.strip_bom(final=True):
            return
        if self.pending:
            whole = bytes(self.pending)
            self.pending.clear()
            if whole.count(b'"') % 2:
                raise CsvFileError("invalid_csv", f"line {self.line}: a quote is never closed")
            yield from self.parse(whole)

    def strip_bom(self, final: bool = False) -> bool:
        """Drops a UTF-8 byte-order mark at the file's start; refuses UTF-16. False while too few
        bytes have arrived to tell."""
        if len(self.pending) < 3 and not final:
            return False
        if self.pending.startswith(UTF16_BOMS):
            raise CsvFileError(
                "invalid_encoding", "UTF-16 files are not supported: save the file as CSV UTF-8"
            )
        if self.pending.startswith(codecs.BOM_UTF8):
            del self.pending[:3]
            self.consumed += 3
        self.at_file_start = False
        return True

    def parse(self, whole: bytes) -> Iterator[Record]:
        try:
            text = whole.decode(self.codec)
        except UnicodeDecodeError as error:
            bad_line = self.line + whole.count(b"\n", 0, error.start)
            raise CsvFileError(
                "invalid_encoding",
                f"line {bad_line} is not valid {self.encoding}: save the file as CSV UTF-8, or"
                " name its encoding when you create the import",
            ) from error
        base = self.line
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=self.delimiter)
        started = 0
        try:
            for fields in reader:
                if fields:
                    yield Record(base + started, fields)
                started = reader.line_num
        except csv.Error as error:
            raise CsvFileError(
                "invalid_csv", f"line {base + started}: the row cannot be read ({error})"
            ) from error
        self.line = base + whole.count(b"\n")
        self.consumed += len(whole)


def read_header(blocks: Iterable[bytes], encoding: str) -> tuple[list[str], str]:
    """The column names on a file's first line and the delimiter they are separated by, from the
    file's first blocks."""
    collected = bytearray()
    for block in blocks:
        collected += block
        if b"\n" in collected or len(collected) > MAX_RECORD_BYTES:
            break
    end = collected.find(b"\n")
    head = bytes(collected if end < 0 else collected[: end + 1])
    text = head.removeprefix(codecs.BOM_UTF8).decode(ENCODINGS[encoding], errors="replace")
    delimiter = guess_delimiter(text)
    reader = RecordReader(encoding, line=1, at_file_start=True, delimiter=delimiter)
    records = list(reader.feed(head)) or list(reader.finish())
    if not records or not any(name.strip() for name in records[0].fields):
        raise CsvFileError("invalid_csv", "The file is empty: the first line must name the columns")
    return [name.strip() for name in records[0].fields], delimiter
