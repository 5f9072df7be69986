"""Coordinators' heartbeats: whether anyone is still driving a run, and how it stands.

A log says what a run decided; it cannot say whether a coordinator is still deciding.
So a coordinator writes a beat (when, the run's phase as it sees it, the tasks of the
current plan and how many are accepted, who it is) into a small table beside the runs
index: when it starts, every BEAT_EVERY_S while it drives, and when it stops. A reader
that finds a run still running in its log but no beat for STALE_AFTER_S knows that no
coordinator drives it: the run is `stalled`, and `baton resume` continues it.

Beats are not events: nothing is decided from them, each overwrites the last, and one
lost costs nothing. Times are the writer's wall clock, so a reader on another machine
trusts clocks to agree within a few seconds, well inside STALE_AFTER_S.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import astuple, dataclass
from typing import Any, Protocol

from eventsourcing.sqlite import SQLiteDatastore, SQLiteRecorder

BEAT_EVERY_S = 3.0
STALE_AFTER_S = 15.0

_COLUMNS = "run_id, at, phase, tasks, accepted, coordinator"


@dataclass(frozen=True)
class Heartbeat:
    """A coordinator's last word on its run."""

    run_id: str
    at: float  # wall-clock time it was written
    phase: str  # running, waiting (on people), completed, failed, stopped (interrupted), or
    # queued (its launcher waits for the cluster to grant its workers)
    tasks: int  # in the current plan
    accepted: int
    coordinator: str  # which process: "pid N on HOST"


class Heartbeats(Protocol):
    """Where a store keeps its coordinators' heartbeats."""

    def beat(self, beat: Heartbeat) -> None: ...

    def read(self) -> dict[str, Heartbeat]: ...


def this_process() -> str:
    """Who is beating: "pid N on HOST"."""
    return f"pid {os.getpid()} on {socket.gethostname()}"


def standing(status: str, beat: Heartbeat | None, now: float, *, exact: bool = True) -> str:
    """How a run stands for a reader. `status` is the log's: running, waiting (on
    people), completed or failed. A run still going is `stalled` when no coordinator has
    beaten for it within STALE_AFTER_S (or its last was stopped), and `queued` while its
    launcher waits for the cluster. `exact` when `status` was folded from the log and its
    inbox; the runs index says only `running` for a run that has not ended, so there the
    coordinator's last word tells a run waiting on people."""
    if status not in ("running", "waiting"):
        return status
    if status == "waiting" or (not exact and beat is not None and beat.phase == "waiting"):
        return "waiting"
    fresh = beat is not None and now - beat.at <= STALE_AFTER_S and beat.phase != "stopped"
    if beat is not None and fresh:
        return "queued" if beat.phase == "queued" else "running"
    return "stalled"


class SQLiteHeartbeats(SQLiteRecorder):
    """The beats in a SQLite file, beside the logs."""

    def __init__(self, datastore: SQLiteDatastore):
        super().__init__(datastore)
        self.create_table()

    def construct_create_table_statements(self) -> list[str]:
        return ["CREATE TABLE IF NOT EXISTS baton_heartbeats (run_id TEXT PRIMARY KEY, "
                "at REAL, phase TEXT, tasks INTEGER, accepted INTEGER, coordinator TEXT)"]

    def beat(self, beat: Heartbeat) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(f"INSERT OR REPLACE INTO baton_heartbeats ({_COLUMNS}) "
                      "VALUES (?, ?, ?, ?, ?, ?)", astuple(beat))

    def read(self) -> dict[str, Heartbeat]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {_COLUMNS} FROM baton_heartbeats")
            return {row[0]: Heartbeat(*row) for row in c.fetchall()}


class PostgresHeartbeats:
    """The beats in a PostgreSQL database, beside the logs."""

    def __init__(self, datastore: Any):
        from eventsourcing.postgres import PostgresRecorder
        from psycopg.rows import tuple_row
        from psycopg.sql import SQL, Identifier

        self.datastore = datastore
        self.rows = tuple_row
        table = SQL("{}.{}").format(Identifier(datastore.schema),
                                    Identifier("baton_heartbeats"))
        creator = PostgresRecorder(datastore)
        creator.sql_create_statements.append(SQL(
            "CREATE TABLE IF NOT EXISTS {} (run_id text PRIMARY KEY, at double precision, "
            "phase text, tasks bigint, accepted bigint, coordinator text)").format(table))
        creator.create_table()
        self.beat_statement = SQL(
            f"INSERT INTO {{}} ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (run_id) DO UPDATE SET at = excluded.at, phase = excluded.phase, "
            "tasks = excluded.tasks, accepted = excluded.accepted, "
            "coordinator = excluded.coordinator").format(table)
        self.read_statement = SQL(f"SELECT {_COLUMNS} FROM {{}}").format(table)

    def beat(self, beat: Heartbeat) -> None:
        with self.datastore.get_connection() as conn:
            conn.execute(self.beat_statement, astuple(beat))

    def read(self) -> dict[str, Heartbeat]:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=self.rows) as c:
            c.execute(self.read_statement)
            return {row[0]: Heartbeat(*row) for row in c.fetchall()}


class MemoryHeartbeats:
    """The beats of a memory store."""

    def __init__(self) -> None:
        self.beats: dict[str, Heartbeat] = {}
        self.lock = threading.Lock()

    def beat(self, beat: Heartbeat) -> None:
        with self.lock:
            self.beats[beat.run_id] = beat

    def read(self) -> dict[str, Heartbeat]:
        with self.lock:
            return dict(self.beats)
