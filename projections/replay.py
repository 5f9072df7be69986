"""Replay a recorded log: re-decide every stimulus and compare with what was recorded.

Invariant 7: folding a run's log and re-deciding each recorded stimulus reproduces every
recorded decision, field for field; where it does not, `verify` names the first event
that diverges and shows both versions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from baton.events.decider import RunState, step
from baton.events.errors import BadLog
from baton.events.policy import Policy
from baton.events.schema import Decision, Envelope, Stimulus, encode


@dataclass(frozen=True)
class Divergence:
    """The first place a replay parts from the record: the seq, both versions, the fields."""

    seq: int
    recorded: Envelope | None
    replayed: Envelope | None
    fields: tuple[str, ...] = field(default=())

    def describe(self) -> str:
        """A readable account: which event, which rule, which fields, both values."""
        head = f"seq {self.seq}: "
        if self.recorded is None and self.replayed is not None:
            return head + f"replay decides an extra {_label(self.replayed)} the log lacks"
        if self.replayed is None and self.recorded is not None:
            return head + f"the log records {_label(self.recorded)}, which replay does not decide"
        assert self.recorded is not None and self.replayed is not None
        lines = [head + f"recorded {_label(self.recorded)}, replay decides "
                 f"{_label(self.replayed)}"]
        was, now = self.recorded.model_dump(), self.replayed.model_dump()
        for name in self.fields:
            lines.append(f"  {name}: recorded {was.get(name)!r}")
            lines.append(f"  {' ' * len(name)}  replayed {now.get(name)!r}")
        return "\n".join(lines)


def _label(event: Envelope) -> str:
    rule = f" (rule {event.reason.rule})" if isinstance(event, Decision) else ""
    return f"{type(event).__name__}{rule}"


def _differing(a: Envelope, b: Envelope) -> tuple[str, ...]:
    if type(a) is not type(b):
        return ("type",)
    left: dict[str, Any] = a.model_dump()
    right: dict[str, Any] = b.model_dump()
    return tuple(name for name in left if left[name] != right.get(name))


def verify(
    log: Iterable[Envelope | tuple[Envelope, bytes]], policy: Policy
) -> Divergence | None:
    """Re-decide every stimulus of `log` under `policy`; the first Divergence, or None.

    Items may carry the bytes they were stored as (``(event, bytes)``), so the digest
    chain runs over exactly what was recorded."""
    state = RunState()
    pending: list[Decision] = []  # decisions replay expects next in the log
    for item in log:
        event, recorded = item if isinstance(item, tuple) else (item, None)
        if isinstance(event, Stimulus):
            if pending:
                return Divergence(pending[0].seq, None, pending[0])
            # step() folds the replayed decisions; while they equal the recorded ones
            # (checked below, bytes included) that is the recorded state too.
            pending = step(state, event, policy, recorded)
            continue
        if not pending:
            if state.seq == 0:
                raise BadLog("the log does not open with a stimulus", run_id=event.run_id,
                             seq=event.seq)
            return Divergence(event.seq, event, None)
        expected = pending.pop(0)
        if expected != event or (recorded is not None and encode(expected) != recorded):
            return Divergence(event.seq, event, expected, _differing(event, expected) or
                              ("encoding",))
    if pending:
        return Divergence(pending[0].seq, None, pending[0])
    return None

