"""The time a synchronous shop call (the Shoptet sync and catalog, the WooCommerce and Shopify
backfills, the cron's Shopify carry-on) may work: Vercel cuts a request at 60 s and the design
keeps every call under ~50 s, so a call works for BUDGET_SECONDS, leaving room for its last page
and its answer. A page count alone cannot bound it: each page is a provider request (with its
own timeout) and an upsert that may wait behind the project's catalog lock.

A call stops before a page that, taking as long as its slowest page so far, would end past its
deadline, and every provider request it makes waits at most the time left, so a stalled provider
cannot carry it past its budget; it answers `finished: false` and the next call resumes at the
saved page. A request the time left cut short (its own timeout not granted) after the call
finished a page is such a stop too, not a provider failure: a provider merely slower than the
time left is no error; one that does not answer before the call wrote anything fails the call
(502), as a stalled provider does. A page's write waits for locks (the project's catalog lock,
which an import's chunk holds while it writes) at most the time left plus LOCK_GRACE_SECONDS; one
that would wait longer rolls back, and the call answers `finished: false` as well.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from api.core.db import Connection

BUDGET_SECONDS = 40.0
# A page's write may wait for a lock this long past the deadline: 40 + 10 s keeps the call
# within the design's ~50 s even when its last page ends at its deadline.
LOCK_GRACE_SECONDS = 10.0

Clock = Callable[[], float]


class BudgetSpentError(Exception):
    """No time is left for a provider request: the page it was for is not written."""


@dataclass
class Deadline:
    """A call's deadline on `clock` (time.monotonic; a test passes its own), and the longest
    page the call has taken, which the next page is expected to take."""

    at: float
    clock: Clock = time.monotonic
    slowest_page: float = field(default=0.0)
    pages: int = field(default=0)  # pages the call has finished

    @classmethod
    def after(cls, seconds: float, clock: Clock = time.monotonic) -> "Deadline":
        return cls(clock() + seconds, clock)

    def left(self) -> float:
        return self.at - self.clock()

    def spent(self) -> bool:
        return self.left() <= 0

    def room_for_page(self) -> bool:
        """Whether a page taking as long as the slowest so far (any time, before the first)
        ends before the deadline."""
        return self.left() > self.slowest_page

    def timeout(self, longest: float) -> float:
        """A provider request's timeout: its own `longest`, cut to the time left;
        BudgetSpentError when none is left."""
        left = self.left()
        if left <= 0:
            raise BudgetSpentError
        return min(longest, left)

    def page_started(self) -> float:
        return self.clock()

    def page_ended(self, started: float) -> None:
        self.slowest_page = max(self.slowest_page, self.clock() - started)
        self.pages += 1

    def out_of_time(self, timeout: float, longest: float) -> bool:
        """Whether a request that timed out after `timeout` (its own being `longest`) ran out
        of the call's time rather than found the provider unreachable: the time left cut its
        timeout, and the call has finished a page (so answering `finished: false` is progress;
        a call that wrote nothing answers the provider's failure, as a stalled one does)."""
        return timeout < longest and self.pages > 0


class DeadlineBoundClient:
    """A provider client whose requests, inside `within(deadline)`, wait at most the time left
    before the deadline (a 429's Retry-After included): a stalled provider fails the request
    (the client's 502) before the call's budget is past, and BudgetSpentError is raised once
    none is left, or when a request the time left cut short times out after the call finished
    a page (the call is out of time, not the provider unreachable: Deadline.out_of_time).
    Outside a block a request waits its own `timeout_seconds`."""

    timeout_seconds: float
    deadline: Deadline | None = None

    @contextmanager
    def within(self, deadline: Deadline) -> Iterator[None]:
        self.deadline = deadline
        try:
            yield
        finally:
            self.deadline = None

    def request_timeout(self) -> float:
        if self.deadline is None:
            return self.timeout_seconds
        return self.deadline.timeout(self.timeout_seconds)


def bound_lock_waits(conn: Connection, deadline: Deadline) -> None:
    """First in a page's transaction: its lock waits end LOCK_GRACE_SECONDS past the deadline
    (psycopg.errors.LockNotAvailable, the page rolled back). lock_timeout 0 would mean no limit,
    so it is at least a millisecond."""
    seconds = max(deadline.left(), 0.0) + LOCK_GRACE_SECONDS
    conn.execute(
        "select set_config('lock_timeout', %s, true)", (f"{max(int(seconds * 1000), 1)}ms",)
    )
