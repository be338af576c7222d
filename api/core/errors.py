"""One error type for the edge, so every failure leaves as the same JSON envelope.

Database errors are translated here, once: our SQL functions raise SQLSTATE `PT<status>` with
a snake_case code in HINT (the convention PostgREST also honours); the standard SQLSTATEs a
caller's input can cause map, by code or by class, to a 4xx as PostgREST answers them (data
exceptions, integrity violations, a plain RAISE, program limits), with a fixed message so no
internal detail leaks; a value psycopg refuses to send (text with NUL) is the caller's input
error, and a connection lost mid-statement the database's outage (a 503). Anything else is our
bug: a 500.
"""

import json
from typing import Any

import psycopg

STATUS_CODES = {
    400: "bad_request",
    401: "authentication_required",
    402: "payment_required",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    422: "invalid_input",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}

# SQLSTATE (or its two-character class) -> (HTTP status, code, message shown to the client).
DATABASE_ERRORS: dict[str, tuple[int, str, str]] = {
    "42501": (403, "forbidden", "You do not have permission to do that"),
    "23505": (409, "conflict", "That conflicts with an existing record"),
    "23503": (409, "conflict", "That refers to a record that does not exist or is still in use"),
    "23514": (422, "invalid_input", "A value is not allowed"),
    "23502": (422, "invalid_input", "A required value is missing"),
    "23": (409, "conflict", "That conflicts with the rules for existing records"),
    "22": (422, "invalid_input", "A value has the wrong format"),
    # A plain RAISE (P0001) is an input refusal written without our convention; its message
    # is ours, so it is shown (see from_database_error).
    "P0001": (400, "bad_request", "The request was refused"),
    "54": (413, "too_large", "The request is too large or complex to process"),
    # Too many connections is load; a full disk or exhausted memory is an outage: a logged 500.
    "53300": (503, "database_busy", "The database is short of resources; try again"),
    "40": (503, "database_busy", "The database was busy; try again"),
    "57014": (503, "database_timeout", "The database took too long; try again"),
    "08": (503, "database_unavailable", "The database cannot be reached; try again shortly"),
    "57": (503, "database_unavailable", "The database cannot be reached; try again shortly"),
}


class CodedError(Exception):
    """A failure a provider client or domain module raises with a stable snake_case code; its
    feature maps it to the envelope (they never raise HTTP errors themselves)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ApiError(Exception):
    """A failure a client can act on: an HTTP status plus a stable snake_case code."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def from_database_error(error: psycopg.Error) -> ApiError | None:
    """The client-facing error for a database error, or None when it is our bug (a 500)."""
    sqlstate = error.sqlstate or ""
    if isinstance(error, psycopg.DataError) and not sqlstate:
        # Raised by psycopg before anything is sent: a value Postgres cannot take, such as text
        # with a NUL character (Postgres text never holds one). The input's fault, not ours.
        return ApiError(422, "invalid_input", "A value cannot be stored: text may not contain NUL")
    if isinstance(error, psycopg.OperationalError) and not sqlstate:
        # Raised by psycopg, not the server: the connection failed or was lost mid-statement
        # (a crash or restart of the server). The database's outage, not our bug.
        return ApiError(*DATABASE_ERRORS["08"])
    if sqlstate.startswith("PT") and sqlstate[2:].isdigit():
        status = int(sqlstate[2:])
        code = error.diag.message_hint or STATUS_CODES.get(status, "error")
        return ApiError(status, code, error.diag.message_primary or code, json_detail(error))
    known = DATABASE_ERRORS.get(sqlstate) or DATABASE_ERRORS.get(sqlstate[:2])
    if known is None:
        return None
    status, code, message = known
    if sqlstate == "P0001":
        message = error.diag.message_primary or message
    constraint = error.diag.constraint_name
    return ApiError(status, code, message, {"constraint": constraint} if constraint else None)


def json_detail(error: psycopg.Error) -> Any:
    """Our functions put machine-readable details (such as retry_after) in DETAIL as JSON."""
    try:
        return json.loads(error.diag.message_detail or "null")
    except ValueError:
        return None
