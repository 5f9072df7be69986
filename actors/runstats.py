"""RunStats: what a coordinator counts of its own work, for RunProgress.

Its turns and the time they took deciding and appending, and the decisions of the kinds
a person watches (dispatches, failures, rejections, recoveries). Counted as they
happen; nothing here is recorded: the log holds the same facts, and a restarted
coordinator starts counting again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from baton.events.schema import Envelope, ResultValidated


class RunStats:
    """Counters of one coordinator's turns and decisions."""

    def __init__(self) -> None:
        self.turns = 0
        self.deciding_s = 0.0
        self.appending_s = 0.0
        self._events: Counter[str] = Counter()  # by type
        self._rejections = 0

    def took(self, events: Iterable[Envelope], deciding_s: float, appending_s: float) -> None:
        """Count a turn: the events it recorded and how long deciding and appending took."""
        self.turns += 1
        self.deciding_s += deciding_s
        self.appending_s += appending_s
        counted = self._events
        for event in events:
            counted[event.type] += 1  # type: ignore[attr-defined]
            if isinstance(event, ResultValidated) and event.outcome == "rejected":
                self._rejections += 1

    def progress_fields(self) -> dict[str, Any]:
        """The RunProgress fields these counters fill."""
        return {"dispatched": self._events["AssignmentDispatched"],
                "failures": self._events["FailureReported"], "rejections": self._rejections,
                "recoveries": self._events["RecoveryChosen"], "turns": self.turns,
                "deciding_s": self.deciding_s, "appending_s": self.appending_s}
