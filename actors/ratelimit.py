"""Rate limits: a handler that may be sent at most N assignments a period, across all its
replicas (a model provider's requests per minute, an API's quota). The coordinator
holds sends back so the limit is never passed; what waits shows as queue wait (from
dispatch to the handler's start) in `baton stats`.

A coordinator that takes a run up again (restarted, or resumed) remembers the sends of
the one before it: each start its workers reported in the last period counts as a send
then (a start is no earlier than its send, so the window is never shorter than it
was). Work in flight at the restart is counted when it is sent again.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from baton.events.errors import BadSpecError
from baton.events.store import EventStore, arrow

_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "min": 60.0, "minute": 60.0,
            "h": 3600.0, "hour": 3600.0}
_WRITTEN = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]+)\s*$")


@dataclass(frozen=True)
class RateLimit:
    """At most `count` sends in any `period_s` seconds."""

    count: int
    period_s: float

    @classmethod
    def parse(cls, written: str, handler: str = "") -> RateLimit:
        """``"60/min"``, ``"10/s"``, ``"1000/h"``, ``"5/10s"``; BadSpecError otherwise."""
        found = _WRITTEN.match(written.lower())
        period = found and _PERIODS.get(found[3].removesuffix("s") if found[3] not in
                                        _PERIODS else found[3])
        if not found or not period or int(found[1]) < 1:
            raise BadSpecError(f"handler {handler!r}: rate_limit {written!r} is not one; "
                               "write N/s, N/min or N/h (at least 1), e.g. '60/min'")
        try:
            times = float(found[2]) if found[2] else 1.0
        except ValueError:
            times = 0.0
        if times <= 0:
            raise BadSpecError(f"handler {handler!r}: rate_limit {written!r} has no period")
        return cls(int(found[1]), period * times)


class Throttle:
    """The sends of one handler in the last period, and how many more may go now."""

    def __init__(self, limit: RateLimit, now: Callable[[], float] = time.monotonic):
        self.limit = limit
        self.sent: deque[float] = deque()  # times of sends, oldest first
        self.now = now

    def room(self) -> int:
        """How many assignments may be sent now."""
        cutoff = self.now() - self.limit.period_s
        while self.sent and self.sent[0] <= cutoff:
            self.sent.popleft()
        return self.limit.count - len(self.sent)

    def took(self, sends: int) -> None:
        at = self.now()
        self.sent.extend([at] * sends)

    def next_in(self) -> float | None:
        """Seconds until one more may be sent; None while the limit has room (then it
        holds nothing back: what waits, waits for a replica)."""
        if self.room() > 0:
            return None
        return max(0.0, self.sent[0] + self.limit.period_s - self.now())


def throttles(limits: Mapping[str, RateLimit] | None, log: EventStore | None = None,
              run_id: str = "", now: Callable[[], float] = time.monotonic,
              wall: Callable[[], float] = time.time) -> dict[str, Throttle]:
    """A throttle per rate-limited handler; given the log of a run taken up again, each
    remembering the starts its workers reported in the last period."""
    made = {handler: Throttle(limit, now) for handler, limit in (limits or {}).items()}
    if not made or log is None:
        return made
    rows = arrow.columns(log, run_id)
    kind = rows.column("type")
    sent = rows.filter(pc.equal(kind, "AssignmentDispatched")).group_by(
        ["assignment_id", "handler"]).aggregate([])  # (once each: a restart sends again)
    answered = pa.array(["ResultReceived", "FailureReported"], pa.string())
    began = rows.filter(pc.is_in(kind, answered)).select(["assignment_id", "started_at"])
    starts = began.join(sent, "assignment_id").to_pydict()
    clock, at = now(), wall()  # a start's wall time, on this process's monotonic clock
    for handler, started in sorted(zip(starts["handler"], starts["started_at"],
                                       strict=True), key=lambda hs: hs[1] or 0):
        throttle = made.get(handler)
        if throttle is not None and started is not None and (
                at - started < throttle.limit.period_s):
            throttle.sent.append(clock - (at - started))
    return made

