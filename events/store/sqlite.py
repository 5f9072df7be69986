"""The SQLite store (``sqlite:///path``): the eventsourcing library's SQLite recorders, in
one file holding the runs' logs and everything kept beside them."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, cast
from uuid import UUID

from eventsourcing import persistence
from eventsourcing.persistence import InfrastructureFactory, StoredEvent, Tracking
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteCursor,
    SQLiteFactory,
    SQLiteTrackingRecorder,
)

from ..errors import BadStoreURLError
from .backend import Backend, check_expected
from .heartbeats import SQLiteHeartbeats
from .index import COLUMNS, READ_WHOLE, TABLE, Changed, RunInfo, info_of, inserted
from .rows import LogRow, Packed


def open_backend(url: str) -> Backend:
    """The store in the file a sqlite:/// URL names, created with its tables if new."""
    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not path:
        raise BadStoreURLError(
            f"store URL {url!r} names no file; write sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    file = Path(path)
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BadStoreURLError(f"cannot create the directory for {url!r}: {error}") from None
    factory = InfrastructureFactory.construct(
        {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(file),
            "ORIGINATOR_ID_TYPE": "text",
            "APPLICATION_RECORDER_TOPIC": f"{__name__}:SQLiteRunRecorder",
        }
    )
    # Stores opened at once on a new file (runs launched together) would race to create
    # its tables; one creates them while the others wait.
    with _opening(file):
        return Backend(
            log=factory.application_recorder(),
            snapshots=factory.aggregate_recorder("snapshots"),
            columns=factory.aggregate_recorder("columns"),
            index=cast(SQLiteRunsView, factory.tracking_recorder(SQLiteRunsView)),
            heartbeats=SQLiteHeartbeats(cast(SQLiteFactory, factory).datastore),
            close=factory.close)


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


def _stream(originator_id: UUID | str) -> str:
    """A stream's id as the library's SQLite recorder keeps it (a run id is kept as is)."""
    return originator_id.hex if isinstance(originator_id, UUID) else originator_id


class SQLiteRunRecorder(SQLiteApplicationRecorder):
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


class SQLiteRunsView(SQLiteTrackingRecorder):
    """The index in a SQLite file, beside the logs."""

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(),
                f"CREATE TABLE IF NOT EXISTS {TABLE} (run_id TEXT PRIMARY KEY, goal TEXT, "
                "tasks INTEGER, requested_at REAL, position INTEGER, status TEXT, "
                "events INTEGER, parent TEXT, parent_assignment TEXT)",
                f"CREATE INDEX IF NOT EXISTS {TABLE}_position ON {TABLE} (position)"]

    def record(self, added: Sequence[RunInfo], changed: Sequence[Changed],
               tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as c:
            self._write(c, added, changed)
            self._insert_tracking(c, tracking)

    def _write(self, c: SQLiteCursor, added: Sequence[RunInfo],
               changed: Sequence[Changed]) -> None:
        c.executemany(f"INSERT INTO {TABLE} ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      inserted(added))
        c.executemany(f"UPDATE {TABLE} SET status = COALESCE(?, status), events = ? "
                      "WHERE run_id = ?", [(ending, seq, rid) for rid, ending, seq in changed])

    def listed(self) -> list[RunInfo]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {COLUMNS} FROM {TABLE} ORDER BY position DESC")
            return [info_of(row) for row in c.fetchall()]
