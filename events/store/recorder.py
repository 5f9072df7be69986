"""EventStore: a run's log kept by the eventsourcing library's recorders.

One stream per run: the run id is the originator id and `seq` the originator version,
so the recorder's unique (originator, version) key is what turns a second writer's
append into a ConcurrencyConflict. The recorder's notification log is the store-wide
order that projections follow. Selected by URL: ``memory://``, ``sqlite:///path``,
``postgresql://USER:PASSWORD@HOST:PORT/DB`` (see postgres.py).
"""

from __future__ import annotations

import difflib
import fcntl
import gc
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable
from urllib.parse import urlparse
from uuid import UUID

from eventsourcing import persistence
from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    InfrastructureFactory,
    IntegrityError,
    StoredEvent,
    Tracking,
)
from eventsourcing.popo import POPOAggregateRecorder, POPOApplicationRecorder
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor, SQLiteFactory

from ..errors import BadLog, BadStoreURL, ConcurrencyConflict, UnknownRun
from ..schema import ENDINGS, Envelope, Event, RunRequested
from ..state import RunState
from . import chunks, faults, snapshot
from .codec import Codec
from .heartbeats import Heartbeat, MemoryHeartbeats, SQLiteHeartbeats
from .index import (
    READ_WHOLE,
    TRACKED_AS,
    Batch,
    IndexedRecorder,
    MemoryRunsView,
    RunInfo,
    RunsView,
    SQLiteRunsView,
)
from .rows import LogRow, Packed
from .sealing import MARKER, Sealer
from .urls import masked_url, store_url

PAGE = 10_000


class Recorded(NamedTuple):
    """One stored record of a run's log, as bytes: its place, its type, its data."""

    run_id: str
    seq: int
    type: str
    data: bytes


@dataclass(frozen=True)
class Notification:
    """One event at its position in the store-wide order."""

    position: int
    event: Event


class EventStore:
    """Append and read runs' logs. Open one with `open_store(url)`."""

    def __init__(
        self,
        recorder: ApplicationRecorder,
        url: str,
        codec: Codec | None = None,
        close: Callable[[], None] = lambda: None,
        snapshots: AggregateRecorder | None = None,
        index: RunsView | None = None,
        sealer: Sealer | None = None,
        columns: AggregateRecorder | None = None,
        heartbeats: Heartbeats | None = None,
    ):
        self.recorder = recorder
        self._heartbeats = heartbeats
        self.sealer = sealer or Sealer(None)
        self.snapshots = snapshots
        self.columns = columns  # the query columns' chunks (chunks.py)
        self._unchunked: dict[str, chunks.Pending] = {}
        self.index = index
        self.url = url
        self.codec = codec or Codec()
        self._close = close

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, kind: object, error: BaseException | None, tb: object) -> None:
        try:
            self.close()
        except Exception as closing:
            if error is None and not faults.is_store_error(closing):
                raise
            error = error or closing
        if error is not None and faults.is_store_error(error):
            # What the database said, in one line naming this store, not its traceback.
            raise faults.fault(faults.cause_of(error), self.shown_url) from error

    def close(self) -> None:
        try:
            for run_id, pending in list(self._unchunked.items()):
                if len(pending.lines) >= chunks.KEPT_AT_CLOSE:
                    self._write_chunk(run_id)
        finally:
            self._close()

    def __repr__(self) -> str:
        return f"EventStore({masked_url(self.url)!r})"

    @property
    def shown_url(self) -> str:
        """The store's URL with any password masked: the one to print."""
        return masked_url(self.url)

    # --- writing -----------------------------------------------------------------------

    def append(
        self,
        run_id: str,
        events: Sequence[Envelope],
        expected_last_seq: int,
        recorded: Sequence[bytes] | None = None,
        *,
        keep_columns: bool = True,
    ) -> None:
        """Append `events` to the run's log in one transaction, provided the log still ends
        at `expected_last_seq`; otherwise raise ConcurrencyConflict and write nothing.
        `recorded` may give the events' bytes when the caller has them already; without
        `keep_columns` the events' query columns are not kept (chunks.py)."""
        if not events:
            return
        for offset, event in enumerate(events, start=1):
            if event.run_id != run_id or event.seq != expected_last_seq + offset:
                raise BadLog(
                    f"cannot append {type(event).__name__} for run {event.run_id!r} at seq "
                    f"{event.seq}: expected run {run_id!r} seq {expected_last_seq + offset}",
                    run_id=run_id,
                    seq=event.seq,
                )
        if recorded is None:
            recorded = [self.codec.encode(event) for event in events]
        seal = self.sealer.seal
        stored = [
            StoredEvent(
                originator_id=run_id,
                originator_version=event.seq,
                topic=event.type,  # type: ignore[attr-defined]
                state=seal(recorded[i]),
            )
            for i, event in enumerate(events)
        ]
        try:
            self.recorder.insert_events(stored, expected_last_seq=expected_last_seq)
        except IntegrityError:
            # A writer in another process took one of these seqs after our check, inside
            # its own transaction; the recorder rolled our whole batch back.
            raise ConcurrencyConflict(run_id, expected_last_seq, self.last_seq(run_id)) from None
        if self.columns is not None and keep_columns:
            try:
                self._chunk(run_id, expected_last_seq + 1, events)
            except Exception:
                # The events are recorded, and a cache never undoes that: readers will
                # derive what these columns would have held.
                self._unchunked.pop(run_id, None)

    def _chunk(self, run_id: str, first: int, events: Sequence[Envelope]) -> None:
        """Keep the appended events' query columns, a chunk at a time."""
        pending = self._unchunked.get(run_id)
        if pending is not None and pending.next_seq != first:
            # Another writer appended in between: what each kept is still right, and
            # readers derive the events neither did.
            self._write_chunk(run_id)
            pending = None
        if pending is None:
            pending = self._unchunked[run_id] = chunks.Pending(first)
        pending.lines.extend(map(chunks.line, events))
        if len(pending.lines) >= chunks.SIZE or events[-1].type in ENDINGS:  # type: ignore[attr-defined]
            self._write_chunk(run_id)

    def _write_chunk(self, run_id: str) -> None:
        pending = self._unchunked.pop(run_id)
        assert self.columns is not None
        lines = chunks.encode(run_id, pending.first, pending.lines)
        if lines is None:  # left for readers to derive
            return
        stored = StoredEvent(run_id, pending.first, chunks.TOPIC, self.sealer.seal(lines))
        # One from this seq may exist already (the same columns), or the database may
        # refuse the write for now: either way readers derive what is not kept.
        with suppress(persistence.PersistenceError):
            self.columns.insert_events([stored])

    # --- reading -----------------------------------------------------------------------

    def last_seq(self, run_id: str) -> int:
        """The seq the run's log ends at (0 when the run has no events)."""
        last = self.recorder.select_events(run_id, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def require_run(self, run_id: str) -> int:
        """The seq the run's log ends at; UnknownRun when the store has no such run."""
        last = self.last_seq(run_id)
        if not last:
            raise UnknownRun(run_id, self.shown_url)
        return last

    def require_every_seq(self, run_id: str) -> int:
        """The seq the run's log ends at, having checked that it holds every seq up to
        there (BadLog naming the first missing one otherwise), without reading them."""
        last = self.last_seq(run_id)
        if isinstance(self.recorder, CountingRecorder):
            held = self.recorder.count_events(run_id)
        else:
            held = len(self.recorder.select_events(run_id))
        if held != last:
            for _ in self.read_pages(run_id, opened=False):  # raises, naming the gap
                pass
        return last

    def last_event(self, run_id: str) -> Event | None:
        """The run's last recorded event, or None when it has none."""
        last = self.recorder.select_events(run_id, desc=True, limit=1)
        if not last:
            return None
        stored = last[0]
        seq = stored.originator_version
        return self.decode(Recorded(run_id, seq, stored.topic,
                                    self.sealer.open(stored.state, run_id=run_id, seq=seq)))

    def read_recorded(
        self, run_id: str, *, after: int = 0, until: int | None = None
    ) -> Iterator[tuple[Event, bytes]]:
        """The run's events with seq in (after, until], each with its bytes as stored."""
        for record in self.read_raw(run_id, after=after, until=until):
            yield self.decode(record), record.data

    def read_raw(
        self, run_id: str, *, after: int = 0, until: int | None = None
    ) -> Iterator[Recorded]:
        """The run's records with seq in (after, until], not yet decoded (`decode` does
        that): for readers that need only some of them as events."""
        open_, plain = self.sealer.open, not self.sealer.sealing
        for page in self.read_pages(run_id, after=after, until=until, opened=False):
            for seq, topic, data in page:
                if not (plain and data[:1] != MARKER[:1]):  # else: plain, as stored
                    data = open_(data, run_id=run_id, seq=seq)
                yield Recorded(run_id, seq, topic, data)

    def read_pages(
        self, run_id: str, *, after: int = 0, until: int | None = None, size: int = PAGE,
        opened: bool = True,
    ) -> Iterator[Sequence[LogRow]]:
        """The run's records with seq in (after, until] as rows (seq, type, bytes),
        up to `size` a page, each page checked whole (and, `opened`, decrypted whole):
        for long reads (export), which would spend more on an object per record than on
        reading it. The records before a gap are given, then BadLog names its seq."""
        position = after
        open_, plain = self.sealer.open, not self.sealer.sealing
        while until is None or position < until:
            limit = size if until is None else min(size, until - position)
            page = _log_page(self.recorder, run_id, position, until, limit)
            found = None  # the seq after a gap
            if page and (page[0][0] != position + 1 or page[-1][0] != position + len(page)):
                # Seqs are unique and in order, so the first and last tell whether any
                # is missing; which one is, only a walk tells. What precedes it is read.
                gap = next(at for at, (seq, _, _) in enumerate(page)
                           if seq != position + 1 + at)
                found, page = page[gap][0], page[:gap]
            if opened and page and (not plain or MARKER[:1] in {row[2][:1] for row in page}):
                page = [(seq, topic, open_(data, run_id=run_id, seq=seq))
                        for seq, topic, data in page]
            if found is not None:
                if page:
                    yield page
                raise BadLog(f"expected seq {position + len(page) + 1}, found {found}: "
                             "the log has a gap", run_id=run_id, seq=found)
            if page:
                yield page
                position = page[-1][0]
            if len(page) < limit:
                return

    def read_packed(
        self, run_id: str, *, size: int = PAGE
    ) -> Iterator[Packed | Sequence[LogRow]] | None:
        """The run's records packed a page at a time (a page too large to pack comes
        as rows), checked as `read_pages` checks them; None when this store cannot pack
        them (its recorder does not, or it is sealed: each record is opened on its own),
        and then `read_pages` reads them."""
        if self.sealer.sealing or not isinstance(self.recorder, PackingRecorder):
            return None
        return self._packed(self.recorder, run_id, size)

    def _packed(self, recorder: PackingRecorder, run_id: str,
                size: int) -> Iterator[Packed | Sequence[LogRow]]:
        position = 0
        while True:
            try:
                page = recorder.packed_page(run_id, position, size)
            except persistence.PersistenceError:
                # More bytes than the database puts in one value (SQLite: 1e9): as rows.
                read = 0
                for rows in self.read_pages(run_id, after=position, until=position + size):
                    yield rows
                    read += len(rows)
                if read < size:
                    return
                position += size
                continue
            if page is None:
                return
            # Seqs are unique: the least, the greatest and how many tell whether any is
            # missing.
            if (page.first != position + 1 or page.last != position + page.records
                    or page.nul):
                # A gap, or a sealed record in a store with no key: read so as to say
                # which, as a reader of records would.
                for _ in self.read_pages(run_id, after=position, until=page.last):
                    pass
            yield page
            if page.records < size:
                return
            position = page.last

    def decode(self, record: Recorded) -> Event:
        """The event a raw record holds (BadLog when it is malformed or misfiled)."""
        event = self.codec.decode(record.data, run_id=record.run_id, seq=record.seq)
        if event.type != record.type:
            raise BadLog(f"record holds a {event.type} but is filed as a {record.type}; "
                         "the store was edited", run_id=record.run_id, seq=record.seq)
        return event

    def read(self, run_id: str, *, after: int = 0, until: int | None = None) -> list[Event]:
        """The run's events with seq in (after, until], in order."""
        return [event for event, _ in self.read_recorded(run_id, after=after, until=until)]

    def state(
        self, run_id: str, *, until: int | None = None, from_snapshot: bool = True
    ) -> RunState:
        """The run's state at `until` (default: now), folded from its log, starting from
        the latest snapshot at or before it when there is one (then only the tail is
        read; the tail's first decision checks the snapshot's digest)."""
        with collector_paused():
            state = (self._latest_snapshot(run_id, until) if from_snapshot else None)
            state = state or RunState()
            for event, recorded in self.read_recorded(run_id, after=state.seq, until=until):
                state.apply(event, recorded)
        return state

    def save_snapshot(self, state: RunState) -> None:
        """Keep `state` so a later fold of its run can start there (a cache of the log:
        losing it costs time, never facts). It is data only (snapshot.py): reading it
        back runs no code, whoever wrote it."""
        if self.snapshots is None or not state.seq:
            return
        stored = StoredEvent(state.run_id, state.seq, snapshot.TOPIC,
                             self.sealer.seal(snapshot.encode_state(state)))
        with suppress(IntegrityError):  # one at this seq exists already: the same state
            self.snapshots.insert_events([stored])

    def column_chunks(self, run_id: str) -> list[tuple[int, int, bytes]]:
        """The run's kept query columns (chunks.py): (first seq, events, lines), in seq
        order, none overlapping; the events between them are for the reader to derive."""
        if self.columns is None:
            return []
        found: list[tuple[int, int, bytes]] = []
        covered = 0
        for stored in self.columns.select_events(run_id):
            first = stored.originator_version
            if stored.topic != chunks.TOPIC or first <= covered:
                continue
            kept = chunks.lines_of(self.sealer.open(stored.state, run_id=run_id, seq=first,
                                                    what="query columns"), run_id, first)
            if kept is not None:
                found.append((first, *kept))
                covered = first + kept[0] - 1
        return found

    def _latest_snapshot(self, run_id: str, until: int | None) -> RunState | None:
        if self.snapshots is None:
            return None
        found = self.snapshots.select_events(run_id, lte=until, desc=True, limit=1)
        if not found or found[0].topic != snapshot.TOPIC:
            # None yet, or of another layout (an older Baton's, or a pickle, which is
            # never loaded): the log is folded instead.
            return None
        seq = found[0].originator_version
        data = self.sealer.open(found[0].state, run_id=run_id, seq=seq, what="snapshot")
        return snapshot.decode_state(data, run_id=run_id, seq=seq)

    def runs(self) -> list[RunInfo]:
        """Every run in the store, newest first, with its status and length: read from
        the runs index, after taking in what was recorded since it was last read."""
        assert self.index is not None, "every opener gives its store an index"
        while self._take_into_index(self.index):
            pass
        return [self._as_listed(info) for info in self.index.listed()]

    def _as_listed(self, info: RunInfo) -> RunInfo:
        if info.status == "unreadable":
            # Read again each time: a newer Baton, or the key it needs, may read it now.
            first = self.recorder.select_events(info.run_id, lte=1)
            if first:
                fresh = self._listed(info.run_id, first[0].topic, first[0].state,
                                     info.position)
                info = replace(fresh, events=info.events)
        if info.goal.startswith("sealed:"):
            info = replace(info, goal=self.sealer.open_text(info.goal, run_id=info.run_id))
        return info

    def _take_into_index(self, index: RunsView) -> bool:
        """Take one page of notifications into the index; False when there were none."""
        after = index.max_tracking_id(TRACKED_AS) or 0
        page = cast(IndexedRecorder, self.recorder).index_page(after, PAGE)
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
            index.record(*batch.rows(), Tracking(TRACKED_AS, page[-1].id))
        return True

    def _listed(self, run_id: str, topic: str, stored: bytes, position: int) -> RunInfo:
        """How the index lists a run from its RunRequested's stored bytes; a record that
        is not one is listed as unreadable (with why), so one damaged run hides no other."""
        try:
            data = self.sealer.open(stored, run_id=run_id, seq=1)
            event = self.decode(Recorded(run_id, 1, topic, data))
        except BadLog as error:
            return RunInfo(run_id, f"unreadable at seq 1: {error.detail}", 0, None,
                           position, status="unreadable")
        assert isinstance(event, RunRequested)  # decode checked the record's type
        return RunInfo(run_id, self.sealer.seal_text(event.goal), len(event.tasks),
                       event.recorded_at, position)

    def notifications(
        self, after: int = 0, *, topics: Sequence[str] = (), page: int = PAGE
    ) -> Iterator[Notification]:
        """Every event in the store after position `after`, in the order recorded."""
        position = after
        while True:
            batch = self.recorder.select_notifications(
                position, page, topics=topics, inclusive_of_start=False
            )
            for note in batch:
                run_id, seq = str(note.originator_id), note.originator_version
                data = self.sealer.open(note.state, run_id=run_id, seq=seq)
                event = self.decode(Recorded(run_id, seq, note.topic, data))
                yield Notification(note.id, event)
                position = note.id
            if len(batch) < page:
                return

    def beat(self, beat: Heartbeat) -> None:
        """Record a coordinator's heartbeat for its run (heartbeats.py), over the last."""
        if self._heartbeats is not None:
            self._heartbeats.beat(beat)

    def heartbeats(self) -> dict[str, Heartbeat]:
        """The last heartbeat of each run that has one, by run id."""
        return self._heartbeats.read() if self._heartbeats is not None else {}

    def max_position(self) -> int:
        """The position of the last event recorded in the store (0 when empty)."""
        return self.recorder.max_notification_id() or 0


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


def check_expected(stored: Sequence[StoredEvent], kwargs: dict[str, Any], last: int) -> None:
    """Inside the insert's transaction: the run's log must end where the writer thinks."""
    expected = kwargs.get("expected_last_seq")
    if expected is not None and stored and last != expected:
        raise ConcurrencyConflict(str(stored[0].originator_id), expected, last)


class Heartbeats(Protocol):
    """Where a store keeps its coordinators' heartbeats (heartbeats.py)."""

    def beat(self, beat: Heartbeat) -> None: ...

    def read(self) -> dict[str, Heartbeat]: ...


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


def _log_page(recorder: AggregateRecorder, run_id: str, after: int, until: int | None,
              limit: int) -> Sequence[LogRow]:
    """The run's records with seq in (after, until], at most `limit` of them."""
    if isinstance(recorder, PagedRecorder):
        return recorder.log_page(run_id, after, until, limit)
    return [(s.originator_version, s.topic, s.state)
            for s in recorder.select_events(run_id, gt=after, lte=until, limit=limit)]


def _stream(originator_id: UUID | str) -> str:
    """A stream's id as the library's SQLite recorder keeps it (a run id is kept as is)."""
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


class _SQLiteRunRecorder(SQLiteApplicationRecorder):
    """The library's SQLite recorder, checking the expected last seq in the same
    transaction as the insert, and inserting a batch with one executemany."""

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if stored_events:
            c.execute(
                f"SELECT MAX(originator_version) FROM {self.events_table_name} "
                "WHERE originator_id=?",
                (_stream(stored_events[0].originator_id),),
            )
            check_expected(stored_events, kwargs, c.fetchone()[0] or 0)
        c.executemany(
            self.insert_events_statement,
            [(_stream(s.originator_id), s.originator_version, s.topic, s.state)
             for s in stored_events],
        )
        if not stored_events:
            return []
        # One writer at a time (the write lock is held), so the batch's rowids, its
        # notification ids, run consecutively up to the last one inserted.
        c.execute("SELECT last_insert_rowid()")
        last = int(c.fetchone()[0])
        return list(range(last - len(stored_events) + 1, last + 1))

    def log_page(self, run_id: str, after: int, until: int | None,
                 limit: int) -> Sequence[LogRow]:
        statement = (f"SELECT originator_version, topic, state FROM {self.events_table_name} "
                     "WHERE originator_id=? AND originator_version>? ")
        params: list[Any] = [run_id, after]
        if until is not None:
            statement += "AND originator_version<=? "
            params.append(until)
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples
            cursor.execute(statement + "ORDER BY originator_version LIMIT ?", [*params, limit])
            return cast(list[LogRow], cursor.fetchall())

    def count_events(self, run_id: str) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT count(*) FROM {self.events_table_name} WHERE originator_id=?",
                      (run_id,))
            return int(c.fetchone()[0])

    def packed_page(self, run_id: str, after: int, limit: int) -> Packed | None:
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None
            cursor.execute(
                "SELECT min(originator_version), max(originator_version), count(*), "
                "group_concat(originator_version), "
                "group_concat(length(state)), CAST(group_concat(state, '') AS BLOB), "
                "max(substr(state, 1, 1) = x'00') FROM (SELECT originator_version, state "
                f"FROM {self.events_table_name} WHERE originator_id=? AND "
                "originator_version>? ORDER BY originator_version LIMIT ?)",
                (run_id, after, limit))
            row = cursor.fetchone()
        first, last, records, seqs, lengths, data, nul = row
        return Packed(first, last, records, seqs, lengths, data, bool(nul)) if records else None

    def index_page(self, after: int, limit: int) -> Sequence[persistence.Notification]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT rowid, originator_id, originator_version, topic, "
                f"CASE WHEN topic = ? THEN state ELSE x'' END FROM {self.events_table_name} "
                "WHERE rowid > ? ORDER BY rowid LIMIT ?", (READ_WHOLE, after, limit))
            return [persistence.Notification(
                id=row[0], originator_id=row[1], originator_version=row[2], topic=row[3],
                state=row[4]) for row in c.fetchall()]


class _MemoryRunRecorder(POPOApplicationRecorder):
    """The library's in-memory recorder, checking the expected last seq under its lock."""

    def index_page(self, after: int, limit: int) -> Sequence[persistence.Notification]:
        return self.select_notifications(after, limit, inclusive_of_start=False)

    def _assert_uniqueness(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        if stored_events:
            index = self._stored_events_index[str(stored_events[0].originator_id)]
            check_expected(stored_events, kwargs, next(reversed(index), 0))
        super()._assert_uniqueness(stored_events, **kwargs)


def _open_memory(url: str) -> EventStore:
    return EventStore(_MemoryRunRecorder(), url, snapshots=POPOAggregateRecorder(),
                      index=MemoryRunsView(), columns=POPOAggregateRecorder(),
                      heartbeats=MemoryHeartbeats())


def _open_sqlite(url: str) -> EventStore:
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not path:
        raise BadStoreURL(
            f"store URL {url!r} names no file; write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    file = Path(path)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadStoreURL(f"cannot create the directory for {url!r}: {error}") from None
    factory = InfrastructureFactory.construct(
        {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(file),
            "ORIGINATOR_ID_TYPE": "text",
            "APPLICATION_RECORDER_TOPIC": f"{__name__}:_SQLiteRunRecorder",
        }
    )
    # Stores opened at once on a new file (runs launched together) would race to create
    # its tables; one creates them while the others wait.
    with _opening(file):
        return EventStore(
            factory.application_recorder(), url, close=factory.close,
            snapshots=factory.aggregate_recorder("snapshots"),
            columns=factory.aggregate_recorder("columns"),
            index=cast(SQLiteRunsView, factory.tracking_recorder(SQLiteRunsView)),
            heartbeats=SQLiteHeartbeats(cast(SQLiteFactory, factory).datastore))


@contextmanager
def _opening(file: Path) -> Iterator[None]:
    """Hold an exclusive flock on the database's directory, across threads and
    processes; none when it cannot be had (no permission, where SQLite will say so
    itself; a filesystem that has no flock).
    Not on the file: closing any descriptor of it would drop the POSIX locks SQLite
    holds on it in this process."""
    try:
        fd = os.open(file.parent, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with suppress(OSError):  # a filesystem without flock (NFS, Lustre): unlocked
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and the lock with it


def _open_postgres(url: str) -> EventStore:
    from .postgres import open_postgres  # it imports this module

    return open_postgres(url)


_OPENERS: dict[str, Callable[[str], EventStore]] = {
    "memory": _open_memory,
    "sqlite": _open_sqlite,
    "postgresql": _open_postgres,
    "postgres": _open_postgres,
}


def open_store(url: str | None = None, *, sealer: Sealer | None = None) -> EventStore:
    """Open the event store at `url` (else $BATON_STORE, else ``sqlite:///.baton/baton.db``),
    sealing with `sealer`, or by default with the key in BATON_ENCRYPTION_KEY, if there
    is one."""
    url = store_url(url)
    scheme = urlparse(url).scheme
    opener = _OPENERS.get(scheme)
    if opener is None:
        near = difflib.get_close_matches(scheme, _OPENERS, n=1)
        hint = f"did you mean {near[0]}://? " if near and scheme else ""
        raise BadStoreURL(
            f"unknown store URL {masked_url(url)!r}; {hint}use sqlite:///path/to/file.db, "
            "postgresql://USER:PASSWORD@HOST:PORT/DATABASE or memory://"
        )
    # A key that is not one is refused before the store opens.
    sealer = sealer if sealer is not None else Sealer.from_env()
    try:
        store = opener(url)
    except Exception as error:
        if faults.is_store_error(error):
            raise faults.fault(faults.cause_of(error), masked_url(url),
                               passing=faults.passes(error)) from None
        raise
    store.sealer = sealer
    return store
