"""The repository: a run's state, folded from its log, starting from its latest snapshot.

A snapshot is a cache of the log: losing one costs time, never facts. It is data only
(snapshot.py), so reading one back runs no code, whoever wrote it, and it is sealed as
the log's records are. The repository also keeps them, on a schedule (`keep`): a delta
every DELTA events, a full snapshot when the run has doubled since the last one, so
the state at any seq is a full snapshot, the deltas after it, and at most
DELTA events of log to fold.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Protocol

from eventsourcing.persistence import AggregateRecorder, IntegrityError, StoredEvent

from ..errors import BadLogError
from ..schema import Event
from ..state import RunState
from . import snapshot
from .mapper import Mapper
from .records import restore

DELTA = 4096  # events, at least, between two snapshots
FULL_EVERY = 20_000  # events, at least, between two full snapshots


@dataclass(frozen=True)
class Kept:
    """Where a run's chain of snapshots stands: its full one's seq, its last one's seq,
    and how many records the last one held."""

    full: int
    last: int
    tasks: int


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
        self.kept: dict[str, Kept] = {}  # of each run whose state this repository keeps

    def state(self, run_id: str, *, until: int | None = None,
              from_snapshot: bool = True) -> RunState:
        """The run's state at `until` (default: now), folded from its log, starting from
        the latest chain of snapshots at or before it when there is one (then only the
        tail is read; the tail's first decision checks the snapshots' digest). The state
        notes what changes from there, for the next snapshot `keep` takes."""
        with collector_paused():
            layers = self._chain(run_id, until) if from_snapshot else []
            state = restore(layers) if layers else RunState()
            state.changed = set() if layers else None
            for event, recorded in self.log.read_recorded(run_id, after=state.seq,
                                                          until=until):
                state.apply(event, recorded)
        if until is None and layers:
            last = layers[-1]
            self.kept[run_id] = Kept(last.head["full"], last.seq, last.head["tasks"])
        return state

    def keep(self, state: RunState) -> bool:
        """Keep a snapshot of `state` if one is due; True when a full one was kept (a
        delta holds only what changed since the one before, `state.changed`)."""
        kept = self.kept.get(state.run_id)
        if state.seq - (kept.last if kept else 0) < DELTA:
            return False
        full = kept is None or state.changed is None or full_due(state.seq, kept.full)
        self.save_snapshot(state, None if full or kept is None else
                           (kept.full, kept.last, kept.tasks))
        return full

    def save_snapshot(self, state: RunState, base: tuple[int, int, int] | None = None
                      ) -> None:
        """Keep `state` so a later fold of its run can start there: a full snapshot, or
        with `base` (see `snapshot.encode`) a delta. From then on the state notes what
        changes, for the next delta."""
        if not state.seq:
            return
        topic, data = snapshot.encode(state, base)
        stored = StoredEvent(state.run_id, state.seq, topic, self.mapper.sealer.seal(data))
        with suppress(IntegrityError):  # one at this seq exists already: the same state
            self.snapshots.insert_events([stored])
        self.kept[state.run_id] = Kept(state.seq if base is None else base[0], state.seq,
                                       len(state.tasks))
        state.changed = set()

    def _chain(self, run_id: str, until: int | None) -> list[snapshot.Layer]:
        """The latest chain of snapshots at or before `until`: its full one, then each
        delta on the one before it, as far as the chain holds; none when the latest is
        of another layout (an older Baton's, or a pickle, which is never loaded)."""
        found = self.snapshots.select_events(run_id, lte=until, desc=True, limit=1)
        if not found or found[0].topic not in snapshot.TOPICS:
            return []
        latest = self._layer(run_id, found[0])
        if latest.base is None:
            return [latest]
        layers: list[snapshot.Layer] = []
        for stored in self.snapshots.select_events(run_id, gt=latest.head["full"] - 1,
                                                   lte=latest.seq):
            if stored.topic not in snapshot.TOPICS:
                continue
            at = stored.originator_version
            if not layers and at == latest.head["full"] and stored.topic == snapshot.FULL:
                layers.append(self._layer(run_id, stored))
            elif layers and stored.topic == snapshot.DELTA:
                try:
                    layer = latest if at == latest.seq else self._layer(run_id, stored)
                except BadLogError:
                    break  # a damaged link: the chain ends before it (the log folds on)
                if layer.base == layers[-1].seq:  # else a delta of another chain
                    layers.append(layer)
        return layers

    def _layer(self, run_id: str, stored: StoredEvent) -> snapshot.Layer:
        seq = stored.originator_version
        data = self.mapper.sealer.open(stored.state, run_id=run_id, seq=seq, what="snapshot")
        return snapshot.decode(data, run_id=run_id, seq=seq)


def full_due(seq: int, full: int) -> bool:
    """Is a full snapshot due at `seq`, the last having been taken at `full`? They are
    spaced geometrically (each when the run has doubled since the last), so keeping them
    costs O(1) an event however long the run, and a chain is at most half the run."""
    return seq - full >= max(FULL_EVERY, full)


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
