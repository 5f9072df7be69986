"""What a backend gives a store: its recorders, bundled (`Backend`), the abilities a
log recorder may add to the library's (reading a page as plain rows, packing a page,
counting a run's records), and the check each backend makes inside its insert.

A backend is a module that opens a `Backend` from a URL of its scheme: memory.py,
sqlite.py, postgres.py. `opening.py` chooses one by the URL's scheme.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from eventsourcing.persistence import AggregateRecorder, ApplicationRecorder, StoredEvent

from ..errors import ConcurrencyConflictError
from .heartbeats import Heartbeats
from .index import RunsView
from .rows import LogRow, Packed


@dataclass
class Backend:
    """A store's recorders: the runs' logs, and beside them what is derived from them
    (snapshots, query columns, the runs index) and the coordinators' heartbeats."""

    log: ApplicationRecorder
    snapshots: AggregateRecorder
    columns: AggregateRecorder
    index: RunsView
    heartbeats: Heartbeats
    close: Callable[[], None] = lambda: None


@runtime_checkable
class CountingRecorder(Protocol):
    """A recorder that counts a run's records without reading them."""

    def count_events(self, run_id: str) -> int: ...


@runtime_checkable
class PackingRecorder(Protocol):
    """A recorder that packs a page of one run's records in the database."""

    def packed_page(self, run_id: str, after: int, limit: int) -> Packed | None: ...


@runtime_checkable
class PagedRecorder(Protocol):
    """A recorder that reads a page of one run's log as plain rows, with no object made
    per row: what long reads (fold, export, stats) spend most of their time on."""

    def log_page(self, run_id: str, after: int, until: int | None,
                 limit: int) -> Sequence[LogRow]: ...


def log_page(recorder: AggregateRecorder, run_id: str, after: int, until: int | None,
             limit: int) -> Sequence[LogRow]:
    """The run's records with seq in (after, until], at most `limit` of them."""
    if isinstance(recorder, PagedRecorder):
        return recorder.log_page(run_id, after, until, limit)
    return [(s.originator_version, s.topic, s.state)
            for s in recorder.select_events(run_id, gt=after, lte=until, limit=limit)]


def check_expected(stored: Sequence[StoredEvent], kwargs: dict[str, Any], last: int) -> None:
    """Inside the insert's transaction: the run's log must end where the writer thinks."""
    expected = kwargs.get("expected_last_seq")
    if expected is not None and stored and last != expected:
        raise ConcurrencyConflictError(str(stored[0].originator_id), expected, last)
