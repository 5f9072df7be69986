"""The repository: a run's state, folded from its log, starting from its latest snapshot.

A snapshot is a cache of the log: losing one costs time, never facts. It is data only
(snapshot.py), so reading one back runs no code, whoever wrote it, and it is sealed as
the log's records are.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Protocol

from eventsourcing.persistence import AggregateRecorder, IntegrityError, StoredEvent

from ..schema import Event
from ..state import RunState
from . import snapshot
from .mapper import Mapper


class Log(Protocol):
    """Where the repository reads a run's events: the event store."""

    def read_recorded(self, run_id: str, *, after: int = 0,
                      until: int | None = None) -> Iterator[tuple[Event, bytes]]: ...


class Repository:
    """Runs' states: folded from the log, from a snapshot when there is one."""

    def __init__(self, log: Log, snapshots: AggregateRecorder, mapper: Mapper):
        self.log = log
        self.snapshots = snapshots
        self.mapper = mapper

    def state(self, run_id: str, *, until: int | None = None,
              from_snapshot: bool = True) -> RunState:
        """The run's state at `until` (default: now), folded from its log, starting from
        the latest snapshot at or before it when there is one (then only the tail is
        read; the tail's first decision checks the snapshot's digest)."""
        with collector_paused():
            state = (self._latest_snapshot(run_id, until) if from_snapshot else None)
            state = state or RunState()
            for event, recorded in self.log.read_recorded(run_id, after=state.seq,
                                                          until=until):
                state.apply(event, recorded)
        return state

    def save_snapshot(self, state: RunState) -> None:
        """Keep `state` so a later fold of its run can start there."""
        if not state.seq:
            return
        stored = StoredEvent(state.run_id, state.seq, snapshot.TOPIC,
                             self.mapper.sealer.seal(snapshot.encode_state(state)))
        with suppress(IntegrityError):  # one at this seq exists already: the same state
            self.snapshots.insert_events([stored])

    def _latest_snapshot(self, run_id: str, until: int | None) -> RunState | None:
        found = self.snapshots.select_events(run_id, lte=until, desc=True, limit=1)
        if not found or found[0].topic != snapshot.TOPIC:
            # None yet, or of another layout (an older Baton's, or a pickle, which is
            # never loaded): the log is folded instead.
            return None
        seq = found[0].originator_version
        data = self.mapper.sealer.open(found[0].state, run_id=run_id, seq=seq,
                                       what="snapshot")
        return snapshot.decode_state(data, run_id=run_id, seq=seq)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a log is folded. A fold allocates
    many long-lived objects and no cycles; left on, the collector rescans the growing
    state again and again, which made folding cost grow with the size of the run."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
