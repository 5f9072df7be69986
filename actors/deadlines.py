"""Deadlines: when each timed assignment runs out of time, as the coordinator keeps them.

An assignment's deadline is set when it is sent (its time is its handler's, not the
queue's), and set again when it is sent again; only the latest counts. Those that pass
become TimerFired stimuli. One still running past its deadline is `overdue` until its
call returns or its worker is replaced: a later timeout on that worker names it stuck.
Times are the caller's monotonic clock, so this needs neither Ray nor a clock to test.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class Deadlines:
    """The current deadline of each timed assignment, soonest first."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []  # (time, assignment); stale ones linger
        self._current: dict[str, float] = {}  # the deadline that counts, by assignment
        self.overdue: set[str] = set()  # sent, past their deadline, their call still out

    def set(self, assignment_id: str, at: float) -> None:
        """`assignment_id` runs out of time at `at`, whatever was set for it before."""
        self._current[assignment_id] = at
        heapq.heappush(self._heap, (at, assignment_id))

    def next_at(self) -> float | None:
        """The soonest deadline (possibly one since superseded), or None."""
        return self._heap[0][0] if self._heap else None

    def passed(self, now: float) -> list[str]:
        """The assignments whose current deadline is `now` or earlier, soonest first;
        each is forgotten (until set again)."""
        passed = []
        while self._heap and self._heap[0][0] <= now:
            at, assignment_id = heapq.heappop(self._heap)
            if self._current.get(assignment_id) == at:
                del self._current[assignment_id]
                passed.append(assignment_id)
        return passed

    def ran_late(self, assignment_id: str) -> None:
        """`assignment_id` is still out past its deadline."""
        self.overdue.add(assignment_id)

    def returned(self, assignment_ids: Iterable[str]) -> None:
        """Their call came back (or was dropped): none of them is overdue any more."""
        self.overdue.difference_update(assignment_ids)
