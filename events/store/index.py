"""The runs index: one row per run (goal, tasks, status, events), kept as a tracked
projection of the store's notification log, in the same database as the logs.

It is the eventsourcing library's projection pattern: each batch of rows is written in
one transaction with a tracking record of the last notification it took in, so every
event changes the index exactly once, and a reader that stopped midway resumes where
the tracking record says. Listing runs then reads this table, not every run's log.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Notification, Tracking

from ..errors import BadLogError
from ..schema import ENDINGS, RunRequested
from ..tree import answers
from .mapper import Mapper

# The index's table, and its name in the tracking table. A new shape of row takes new
# names: a store made by an older Baton then builds the new index from its logs.
TABLE = "baton_runs_v2"
TRACKED_AS = "baton.runs.v2"
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
    parent: str | None = None  # the run it is a child of (events.tree), if any
    parent_assignment: str | None = None  # the parent's assignment it answers


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


def family(listed: Sequence[RunInfo], root: str) -> list[tuple[int, RunInfo]]:
    """The runs under `root` (its children, theirs, and so on), each with its depth (1
    for a child): depth first, each run's children oldest first."""
    return _below(_children(listed), root, 1)


def tree_order(listed: Sequence[RunInfo]) -> list[tuple[int, RunInfo]]:
    """Every run listed, each top run (newest first) followed by the runs under it, with
    depths (0 at the top). A child whose parent is not listed is shown at the top."""
    known = {info.run_id for info in listed}
    children = _children(listed)
    return [shown for info in listed if info.parent is None or info.parent not in known
            for shown in [(0, info), *_below(children, info.run_id, 1)]]


def _children(listed: Sequence[RunInfo]) -> dict[str, list[RunInfo]]:
    children: dict[str, list[RunInfo]] = {}
    for info in sorted(listed, key=lambda i: i.position):
        if info.parent is not None:
            children.setdefault(info.parent, []).append(info)
    return children


def _below(children: dict[str, list[RunInfo]], root: str,
           depth: int) -> list[tuple[int, RunInfo]]:
    found: list[tuple[int, RunInfo]] = []
    below = [(depth, child) for child in reversed(children.get(root, []))]
    while below:
        depth, info = below.pop()
        found.append((depth, info))
        below += [(depth + 1, child) for child in reversed(children.get(info.run_id, []))]
    return found


def info_of(row: Any) -> RunInfo:
    return RunInfo(run_id=row[0], goal=row[1], tasks=row[2], requested_at=row[3],
                   position=row[4], status=row[5], events=row[6], parent=row[7],
                   parent_assignment=row[8])


COLUMNS = "run_id, goal, tasks, requested_at, position, status, events, parent, " \
          "parent_assignment"


def inserted(added: Iterable[RunInfo]) -> list[tuple[Any, ...]]:
    return [(i.run_id, i.goal, i.tasks, i.requested_at, i.position, i.status, i.events,
             i.parent, i.parent_assignment) for i in added]


def as_columns(rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
    """Rows as one list per column: the arrays a single PostgreSQL statement unnests."""
    return [list(column) for column in zip(*rows, strict=True)]


class RunsIndex:
    """The runs index, brought up to date by whoever reads it: a page of the store-wide
    order at a time, each page's rows written with its tracking record."""

    PAGE = 10_000  # notifications taken in at once

    def __init__(self, log: ApplicationRecorder, view: RunsView, mapper: Mapper):
        self.log = log
        self.view = view
        self.mapper = mapper

    def runs(self) -> list[RunInfo]:
        """Every run in the store, newest first, with its status and length, after
        taking in what was recorded since the index was last read."""
        while self._take_page():
            pass
        return [self._as_listed(info) for info in self.view.listed()]

    def _take_page(self) -> bool:
        """Take one page of notifications into the index; False when there were none."""
        after = self.view.max_tracking_id(TRACKED_AS) or 0
        page = cast(IndexedRecorder, self.log).index_page(after, self.PAGE)
        if not page:
            return False
        batch = Batch()
        for note in page:
            run_id, seq = str(note.originator_id), note.originator_version
            if note.topic == READ_WHOLE and seq == 1:  # (elsewhere, folding refuses it)
                batch.request(self._listed(run_id, note.topic, note.state, note.id))
            else:
                batch.event(run_id, note.topic, seq)
        with suppress(IntegrityError):  # another reader took this page in first
            self.view.record(*batch.rows(), Tracking(TRACKED_AS, page[-1].id))
        return True

    def _as_listed(self, info: RunInfo) -> RunInfo:
        if info.status == "unreadable":
            # Read again each time: a newer Baton, or the key it needs, may read it now.
            first = self.log.select_events(info.run_id, lte=1)
            if first:
                fresh = self._listed(info.run_id, first[0].topic, first[0].state,
                                     info.position)
                info = replace(fresh, events=info.events)
        if info.goal.startswith("sealed:"):
            info = replace(info, goal=self.mapper.sealer.open_text(info.goal,
                                                                   run_id=info.run_id))
        return info

    def _listed(self, run_id: str, topic: str, stored: bytes, position: int) -> RunInfo:
        """How the index lists a run from its RunRequested's stored bytes; a record that
        is not one is listed as unreadable (with why), so one damaged run hides no other."""
        try:
            event = self.mapper.to_event(run_id, 1, topic, stored)
        except BadLogError as error:
            return RunInfo(run_id, f"unreadable at seq 1: {error.detail}", 0, None,
                           position, status="unreadable")
        assert isinstance(event, RunRequested)  # decode checked the record's type
        link = event.parent if event.parent and answers(run_id, event.parent) else None
        return RunInfo(run_id, self.mapper.sealer.seal_text(event.goal), len(event.tasks),
                       event.recorded_at, position, parent=link.run_id if link else None,
                       parent_assignment=link.assignment_id if link else None)
