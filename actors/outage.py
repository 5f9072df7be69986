"""Waiting out a store that fails for a while.

A coordinator's calls to its store go through `Patience`: an error that passes (a
PostgreSQL server restarting, a connection cut, a SQLite file busy) is tried again after
a growing pause, for as long as the run's patience lasts, and the outage is there for
`progress` to report meanwhile. An error that does not pass (a full disk, no permission,
a damaged file), or one that outlasts the patience, becomes a StoreFaultError that says how
far the run is recorded and the `baton resume` that continues it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from baton.events.errors import ConcurrencyConflictError, StoreFaultError
from baton.events.schema import Envelope
from baton.events.store import EventStore, faults

STORE_PATIENCE_S = 120.0  # how long a coordinator waits for its store to come back
FIRST_PAUSE_S, LONGEST_PAUSE_S = 0.25, 5.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outage:
    """The store has failed every call since `since` (wall-clock time), with `cause`."""

    since: float
    began: float  # monotonic, for the patience
    cause: str


class Patience:
    """Calls to one run's store, tried again while their errors pass."""

    def __init__(self, store: str, run_id: str, patience_s: float = STORE_PATIENCE_S,
                 sleep: Callable[[float], None] = time.sleep):
        self.store = store  # its URL as shown, the password masked
        self.run_id = run_id
        self.patience_s = patience_s
        self.sleep = sleep
        self.outage: Outage | None = None

    def call(self, operation: Callable[[], T], recorded_to: int,
             again: Callable[[], T] | None = None) -> T:
        """What `operation` returns, once the store lets it run; `again` (by default
        `operation`) is what is tried after a failure, for a call whose first try may
        have taken effect unseen. `recorded_to` is the run's last seq known stored, for
        the StoreFaultError's message."""
        pause, attempt = FIRST_PAUSE_S, operation
        while True:
            try:
                value = attempt()
            except Exception as error:
                if not faults.passes(error):
                    self.outage = None
                    if not (faults.is_store_error(error) or isinstance(error, StoreFaultError)):
                        raise
                    raise self._fault(error, recorded_to) from error
                now = time.monotonic()
                if self.outage is None:
                    self.outage = Outage(time.time(), now, faults.cause_of(error))
                elif now - self.outage.began >= self.patience_s:
                    waited, self.outage = now - self.outage.began, None
                    raise self._fault(error, recorded_to, waited=waited) from error
                self.sleep(pause)
                pause = min(pause * 2, LONGEST_PAUSE_S)
                attempt = again or operation
                continue
            self.outage = None
            return value

    def append(self, store: EventStore, events: Sequence[Envelope], expected: int,
               recorded: Sequence[bytes] | None = None) -> None:
        """Append one turn of the run's events. A try that failed may have committed all
        the same (the connection was cut before the answer came): the run's last seq
        says whether it did, so the turn is stored once, with no gap, and its effects
        follow once."""
        end = expected + len(events)

        def append() -> None:
            store.append(self.run_id, events, expected, recorded)

        def again() -> None:
            last = store.last_seq(self.run_id)
            if last == end:
                return  # stored: its commit happened, unseen
            if last != expected:
                raise ConcurrencyConflictError(self.run_id, expected, last)
            try:
                append()
            except ConcurrencyConflictError:
                # The first try's commit was still under way when the log was read.
                if store.last_seq(self.run_id) != end:
                    raise

        self.call(append, expected, again)

    def _fault(self, error: BaseException, recorded_to: int,
               waited: float | None = None) -> StoreFaultError:
        cause = error.cause if isinstance(error, StoreFaultError) else faults.cause_of(error)
        if waited is not None:
            cause = f"unreachable for {waited:.0f}s, the run's patience ({cause})"
        return faults.fault(cause, self.store, run_id=self.run_id, recorded_to=recorded_to)
