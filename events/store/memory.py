"""The memory store (``memory://``): the eventsourcing library's in-memory recorders, for
tests and trials. Nothing outlives the process."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from eventsourcing import persistence
from eventsourcing.persistence import StoredEvent, Tracking
from eventsourcing.popo import (
    POPOAggregateRecorder,
    POPOApplicationRecorder,
    POPOTrackingRecorder,
)

from .backend import Backend, check_expected
from .heartbeats import MemoryHeartbeats
from .index import Changed, RunInfo


def open_backend(url: str) -> Backend:
    """A fresh, empty store of this process's memory."""
    return Backend(log=MemoryRunRecorder(), snapshots=POPOAggregateRecorder(),
                   columns=POPOAggregateRecorder(), index=MemoryRunsView(),
                   heartbeats=MemoryHeartbeats())


class MemoryRunRecorder(POPOApplicationRecorder):
    """The library's in-memory recorder, checking the expected last seq under its lock."""

    def index_page(self, after: int, limit: int) -> Sequence[persistence.Notification]:
        return self.select_notifications(after, limit, inclusive_of_start=False)

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        if stored_events:
            index = self._stored_events_index[str(stored_events[0].originator_id)]
            check_expected(stored_events, kwargs, next(reversed(index), 0))
        super()._assert_uniqueness(stored_events, **kwargs)


class MemoryRunsView(POPOTrackingRecorder):
    """The index of a memory store."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: dict[str, RunInfo] = {}
        self.lock = threading.Lock()

    def record(self, added: Sequence[RunInfo], changed: Sequence[Changed],
               tracking: Tracking) -> None:
        with self.lock:
            self.insert_tracking(tracking)
            for info in added:
                self.runs[info.run_id] = info
            for rid, ending, seq in changed:
                if rid in self.runs:
                    info = self.runs[rid]
                    self.runs[rid] = replace(info, status=ending or info.status, events=seq)

    def listed(self) -> list[RunInfo]:
        with self.lock:
            return sorted(self.runs.values(), key=lambda i: i.position, reverse=True)
