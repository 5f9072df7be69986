"""The event store: runs' logs, appended and read through one mapper.

One stream per run: the run id is the originator id and `seq` the originator version,
so the recorder's unique (originator, version) key is what turns a second writer's
append into a ConcurrencyConflictError. The recorder's notification log is the store-wide
order that projections follow. Beside the logs, from the same backend: the repository
(runs' states and snapshots), the runs index and the query columns (projections of the
logs), and the coordinators' heartbeats. Open one with `open_store(url)` (opening.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from eventsourcing.persistence import IntegrityError, PersistenceError

from ..errors import BadLogError, ConcurrencyConflictError, UnknownRunError
from ..schema import Envelope, Event
from ..state import RunState
from . import faults
from .backend import Backend, CountingRecorder, PackingRecorder, log_page
from .chunks import ColumnChunks
from .codec import Codec
from .heartbeats import Heartbeat
from .index import RunInfo, RunsIndex, family
from .mapper import Mapper, Recorded
from .repository import Repository
from .rows import LogRow, Packed
from .sealing import MARKER, Sealer
from .urls import masked_url

PAGE = 10_000


@dataclass(frozen=True)
class Notification:
    """One event at its position in the store-wide order."""

    position: int
    event: Event


class EventStore:
    """Append and read runs' logs."""

    def __init__(self, url: str, backend: Backend, mapper: Mapper | None = None):
        self.url = url
        self.mapper = mapper or Mapper()
        self.recorder = backend.log
        self.repository = Repository(self, backend.snapshots, self.mapper)
        self.index = RunsIndex(backend.log, backend.index, self.mapper)
        self.columns = ColumnChunks(backend.columns, self.mapper.sealer)
        self._heartbeats = backend.heartbeats
        self._close = backend.close

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
            self.columns.close()
        finally:
            self._close()

    def __repr__(self) -> str:
        return f"EventStore({masked_url(self.url)!r})"

    @property
    def sealer(self) -> Sealer:
        """How records are sealed and opened: the mapper's."""
        return self.mapper.sealer

    @property
    def codec(self) -> Codec:
        """How events are encoded and decoded: the mapper's."""
        return self.mapper.codec

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
        at `expected_last_seq`; otherwise raise ConcurrencyConflictError and write nothing.
        `recorded` may give the events' bytes when the caller has them already; without
        `keep_columns` the events' query columns are not kept (chunks.py)."""
        if not events:
            return
        for offset, event in enumerate(events, start=1):
            if event.run_id != run_id or event.seq != expected_last_seq + offset:
                raise BadLogError(
                    f"cannot append {type(event).__name__} for run {event.run_id!r} at seq "
                    f"{event.seq}: expected run {run_id!r} seq {expected_last_seq + offset}",
                    run_id=run_id,
                    seq=event.seq,
                )
        stored = self.mapper.to_stored(run_id, events, recorded)
        try:
            self.recorder.insert_events(stored, expected_last_seq=expected_last_seq)
        except IntegrityError:
            # A writer in another process took one of these seqs after our check, inside
            # its own transaction; the recorder rolled our whole batch back.
            raise ConcurrencyConflictError(run_id, expected_last_seq,
                                           self.last_seq(run_id)) from None
        if keep_columns:
            self.columns.appended(run_id, expected_last_seq + 1, events)

    # --- reading -----------------------------------------------------------------------

    def last_seq(self, run_id: str) -> int:
        """The seq the run's log ends at (0 when the run has no events)."""
        last = self.recorder.select_events(run_id, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def require_run(self, run_id: str) -> int:
        """The seq the run's log ends at; UnknownRunError when the store has no such run."""
        last = self.last_seq(run_id)
        if not last:
            raise UnknownRunError(run_id, self.shown_url)
        return last

    def require_every_seq(self, run_id: str) -> int:
        """The seq the run's log ends at, having checked that it holds every seq up to
        there (BadLogError naming the first missing one otherwise), without reading them."""
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
        return self.mapper.to_event(run_id, stored.originator_version, stored.topic,
                                    stored.state)

    def read(self, run_id: str, *, after: int = 0, until: int | None = None) -> list[Event]:
        """The run's events with seq in (after, until], in order."""
        return [event for event, _ in self.read_recorded(run_id, after=after, until=until)]

    def read_recorded(
        self, run_id: str, *, after: int = 0, until: int | None = None
    ) -> Iterator[tuple[Event, bytes]]:
        """The run's events with seq in (after, until], each with its bytes as stored."""
        decode = self.mapper.decode
        for record in self.read_raw(run_id, after=after, until=until):
            yield decode(record), record.data

    def read_raw(
        self, run_id: str, *, after: int = 0, until: int | None = None
    ) -> Iterator[Recorded]:
        """The run's records with seq in (after, until], not yet decoded (`decode` does
        that): for readers that need only some of them as events."""
        open_, plain = self.mapper.sealer.open, not self.mapper.sealer.sealing
        for page in self.read_pages(run_id, after=after, until=until, opened=False):
            for seq, topic, data in page:
                if not (plain and data[:1] != MARKER[:1]):  # else: plain, as stored
                    data = open_(data, run_id=run_id, seq=seq)
                yield Recorded(run_id, seq, topic, data)

    def decode(self, record: Recorded) -> Event:
        """The event a raw record holds (BadLogError when it is malformed or misfiled)."""
        return self.mapper.decode(record)

    def read_pages(
        self, run_id: str, *, after: int = 0, until: int | None = None, size: int = PAGE,
        opened: bool = True,
    ) -> Iterator[Sequence[LogRow]]:
        """The run's records with seq in (after, until] as rows (seq, type, bytes),
        up to `size` a page, each page checked whole (and, `opened`, decrypted whole):
        for long reads (export), which would spend more on an object per record than on
        reading it. The records before a gap are given, then BadLogError names its seq."""
        position = after
        open_, plain = self.mapper.sealer.open, not self.mapper.sealer.sealing
        while until is None or position < until:
            limit = size if until is None else min(size, until - position)
            page = log_page(self.recorder, run_id, position, until, limit)
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
                raise BadLogError(f"expected seq {position + len(page) + 1}, found {found}: "
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
        if self.mapper.sealer.sealing or not isinstance(self.recorder, PackingRecorder):
            return None
        return self._packed(self.recorder, run_id, size)

    def _packed(self, recorder: PackingRecorder, run_id: str,
                size: int) -> Iterator[Packed | Sequence[LogRow]]:
        position = 0
        while True:
            try:
                page = recorder.packed_page(run_id, position, size)
            except PersistenceError:
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
                event = self.mapper.to_event(str(note.originator_id), note.originator_version,
                                             note.topic, note.state)
                yield Notification(note.id, event)
                position = note.id
            if len(batch) < page:
                return

    def max_position(self) -> int:
        """The position of the last event recorded in the store (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    # --- what is kept beside the logs, each by its own part -------------------------------

    def state(self, run_id: str, *, until: int | None = None,
              from_snapshot: bool = True) -> RunState:
        """The run's state at `until` (default: now): `Repository.state`."""
        return self.repository.state(run_id, until=until, from_snapshot=from_snapshot)

    def save_snapshot(self, state: RunState) -> None:
        """Keep `state` for later folds to start from, now: `Repository.save_snapshot`."""
        self.repository.save_snapshot(state)

    def keep_state(self, state: RunState) -> bool:
        """Keep a snapshot of `state` if one is due (True: a full one):
        `Repository.keep`."""
        return self.repository.keep(state)

    def runs(self) -> list[RunInfo]:
        """Every run in the store, newest first: `RunsIndex.runs`."""
        return self.index.runs()

    def tree(self, run_id: str) -> list[tuple[int, RunInfo]]:
        """The runs under `run_id`, with their depths: `index.family`."""
        return family(self.runs(), run_id)

    def column_chunks(self, run_id: str) -> list[tuple[int, int, bytes]]:
        """The run's kept query columns: `ColumnChunks.kept`."""
        return self.columns.kept(run_id)

    def beat(self, beat: Heartbeat) -> None:
        """Record a coordinator's heartbeat for its run (heartbeats.py), over the last."""
        self._heartbeats.beat(beat)

    def heartbeats(self) -> dict[str, Heartbeat]:
        """The last heartbeat of each run that has one, by run id."""
        return self._heartbeats.read()
