"""The runs index: one row per run (goal, tasks, status, events), kept as a tracked
projection of the store's notification log, in the same database as the logs.

It is the eventsourcing library's projection pattern: each batch of rows is written in
one transaction with a tracking record of the last notification it took in, so every
event changes the index exactly once, and a reader that stopped midway resumes where
the tracking record says. Listing runs then reads this table, not every run's log.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from eventsourcing.persistence import Notification, Tracking
from eventsourcing.popo import POPOTrackingRecorder
from eventsourcing.sqlite import SQLiteCursor, SQLiteTrackingRecorder

from ..schema import ENDINGS

TRACKED_AS = "baton.runs"  # the index's name in the tracking table
READ_WHOLE = "RunRequested"  # the one type whose body the index reads; of the rest, the head


@dataclass(frozen=True)
class RunInfo:
    """A run as the store lists it."""

    run_id: str
    goal: str
    tasks: int
    requested_at: float | None
    position: int  # of its RunRequested in the store-wide order
    status: str = "running"  # running, completed or failed
    events: int = 1


Changed = tuple[str, str | None, int]  # run id, its new ending if it ended, its last seq


class IndexedRecorder(Protocol):
    """A recorder that can give the index a page of the store-wide order without the
    bodies it does not read (most of a log's bytes)."""

    def index_page(self, after: int, limit: int) -> Sequence[Notification]:
        """Notifications after position `after`, in order; only a RunRequested keeps
        its body, the others' are empty."""


class RunsView(Protocol):
    """Where the index is kept: a tracking recorder with the runs table beside it."""

    def max_tracking_id(self, application_name: str) -> int | None: ...

    def record(self, added: Sequence[RunInfo], changed: Sequence[Changed],
               tracking: Tracking) -> None:
        """Write the rows and the tracking record in one transaction; IntegrityError
        when another reader has already taken in this batch."""

    def listed(self) -> list[RunInfo]:
        """Every run, newest first."""


class Batch:
    """What one page of notifications changes in the index."""

    def __init__(self) -> None:
        self.added: dict[str, RunInfo] = {}
        self.changed: dict[str, tuple[str | None, int]] = {}  # run -> (ending, last seq)

    def request(self, info: RunInfo) -> None:
        self.added[info.run_id] = info

    def event(self, run_id: str, topic: str, seq: int) -> None:
        ending = ENDINGS.get(topic)
        if ending is None and run_id in self.changed:
            ending = self.changed[run_id][0]
        self.changed[run_id] = ending, seq

    def rows(self) -> tuple[list[RunInfo], list[Changed]]:
        """Runs requested in this page (with what followed folded in), and the runs
        requested before it that it changed."""
        added = []
        for run_id, info in self.added.items():
            ending, seq = self.changed.pop(run_id, (None, info.events))
            added.append(replace(info, events=seq, status=ending or info.status))
        return added, [(rid, ending, seq) for rid, (ending, seq) in self.changed.items()]


def info_of(row: Any) -> RunInfo:
    return RunInfo(run_id=row[0], goal=row[1], tasks=row[2], requested_at=row[3],
                   position=row[4], status=row[5], events=row[6])


COLUMNS = "run_id, goal, tasks, requested_at, position, status, events"


def inserted(added: Iterable[RunInfo]) -> list[tuple[Any, ...]]:
    return [(i.run_id, i.goal, i.tasks, i.requested_at, i.position, i.status, i.events)
            for i in added]


def as_columns(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Rows as one list per column: the arrays a single PostgreSQL statement unnests."""
    return [list(column) for column in zip(*rows, strict=True)]


class SQLiteRunsView(SQLiteTrackingRecorder):
    """The index in a SQLite file, beside the logs."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                "CREATE TABLE IF NOT EXISTS baton_runs (run_id TEXT PRIMARY KEY, goal TEXT, "
                "tasks INTEGER, requested_at REAL, position INTEGER, status TEXT, "
                "events INTEGER)",
                "CREATE INDEX IF NOT EXISTS baton_runs_position ON baton_runs (position)"]

    def record(self, added: Sequence[RunInfo], changed: Sequence[Changed],
               tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:
            self._write(c, added, changed)
            self._insert_tracking(c, tracking)

    def _write(self, c: SQLiteCursor, added: Sequence[RunInfo],
               changed: Sequence[Changed]) -> None:
        c.executemany(f"INSERT INTO baton_runs ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                      inserted(added))
        c.executemany("UPDATE baton_runs SET status = COALESCE(?, status), events = ? "
                      "WHERE run_id = ?", [(ending, seq, rid) for rid, ending, seq in changed])

    def listed(self) -> list[RunInfo]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {COLUMNS} FROM baton_runs ORDER BY position DESC")
            return [info_of(row) for row in c.fetchall()]


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

