"""The PostgreSQL store: the eventsourcing library's PostgreSQL recorders (psycopg 3 and
its pool), for a log shared by every node of a cluster and every person reading it.

``postgresql://USER:PASSWORD@HOST:PORT/DB[?schema=NAME]``. Tables (and the schema, when
one is named) are created on first use. A server that cannot be reached, a wrong
password or a missing database is one clear BadStoreURLError or StoreUnavailableError,
with the password masked, before anything is read or written.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlparse

import psycopg
from eventsourcing.persistence import (
    InfrastructureFactory,
    Notification,
    PersistenceError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import (
    PostgresApplicationRecorder,
    PostgresFactory,
    PostgresTrackingRecorder,
)
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from ..errors import BadStoreURLError, ConcurrencyConflictError, StoreUnavailableError
from . import faults
from .backend import Backend
from .heartbeats import PostgresHeartbeats
from .index import COLUMNS, READ_WHOLE, TABLE, Changed, RunInfo, as_columns, info_of, inserted
from .rows import LogRow
from .urls import masked_url

DEFAULT_PORT = 5432
CONNECT_TIMEOUT_S = 5
POOL_SIZE = 1  # connections a store keeps open: a coordinator appends from one thread
POOL_OVERFLOW = 4  # more, opened while readers and the writer overlap
CREATE_LOCK = 0x6261746F6E  # "baton": the advisory lock held while tables are created
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresRunRecorder(PostgresApplicationRecorder):
    """The library's PostgreSQL recorder, with writers to different runs committing at
    once instead of one after another, each append one round trip to the server.

    The library takes an EXCLUSIVE lock on the events table for every insert, until its
    commit, so that notification ids become visible in the order they were issued:
    a reader tailing the store-wide order never passes a gap that fills in later. That
    lock, held through each commit's flush to disk, serialized every run writing to one
    database. Here a writer holds only
      - a lock on its own run, under which the expected last seq is checked (so two
        writers to one run are still rejected inside the insert's transaction), and
      - a shared hold on the table's barrier, which writers never contend for.
    A reader of the store-wide order takes the barrier exclusively for an instant: that
    waits for the inserts in flight to commit or roll back, so every notification id
    issued by then is settled, and the reader reads no further than the last of them.
    Gaps below that position are ids of rolled-back inserts, never filled in later.
    And a batch takes its notification ids all at once, under a lock held for no longer
    than that (a subtransaction's, so nothing can leave it held), so one append's ids
    are consecutive, never shared with another's: a reader of the store-wide order sees
    each append whole and in one piece.

    The locks, the check, the NOTIFY and the insert are one server-side function, so an
    append costs one statement and its commit, whatever the size of the batch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        schema, table = Identifier(self.datastore.schema), Identifier(self.events_table_name)
        # Advisory locks are per database: the keys name this schema's table, so stores
        # in other schemas of the same database do not wait for each other.
        table_key = _int32(zlib.crc32(
            f"{self.datastore.schema}.{self.events_table_name}".encode()))
        self.sql_create_statements.append(SQL(_APPEND_FUNCTION).format(
            schema=schema, table=table, event=Identifier(self.stored_event_type_name),
            barrier=table_key, run=table_key ^ 1, reserve=table_key ^ 2,
            channel=self.channel_name))
        self.append_statement = SQL("SELECT * FROM {}.baton_append(%s, %s, %s)").format(
            schema)
        self.barrier_statement = SQL("SELECT pg_advisory_xact_lock({}, 0)").format(table_key)
        self.index_page_statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, "
            "CASE WHEN topic = %s THEN state ELSE ''::bytea END AS state FROM {}.{} "
            "WHERE notification_id > %s AND notification_id <= %s "
            "ORDER BY notification_id LIMIT %s").format(schema, table)
        self.count_statement = SQL(
            "SELECT count(*) FROM {}.{} WHERE originator_id = %s").format(schema, table)
        self.log_page_statement = SQL(
            "SELECT originator_version, topic, state FROM {}.{} "
            "WHERE originator_id = %s AND originator_version > %s").format(schema, table)

    def count_events(self, run_id: str) -> int:
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self.count_statement, (run_id,), prepare=True)
            row = curs.fetchone()
            return int(row[0]) if row else 0

    def log_page(self, run_id: str, after: int, until: int | None,
                 limit: int) -> Sequence[LogRow]:
        statement = self.log_page_statement + (SQL(" AND originator_version <= %s")
                                               if until is not None else SQL(""))
        params = [run_id, after, *([until] if until is not None else []), limit]
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(statement + SQL(" ORDER BY originator_version LIMIT %s"), params)
            return [(seq, topic, bytes(state)) for seq, topic, state in curs.fetchall()]

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return self.append(curs, stored_events, kwargs.get("expected_last_seq"))

    def append(self, curs: psycopg.Cursor[DictRow], stored_events: Sequence[StoredEvent],
               expected_last_seq: int | None) -> list[int]:
        """Insert one run's events in the cursor's transaction (its own, on an autocommit
        connection); ConcurrencyConflictError when the log does not end at the expected seq."""
        events = [self.construct_pg_stored_event(e.originator_id, e.originator_version,
                                                 e.topic, e.state) for e in stored_events]
        run_id = str(stored_events[0].originator_id)
        try:
            curs.execute(self.append_statement, (events, run_id, expected_last_seq),
                         prepare=True)
        except psycopg.Error as error:
            if error.sqlstate != _CONFLICT or expected_last_seq is None:
                raise
            last = int(error.diag.message_primary or 0)
            raise ConcurrencyConflictError(run_id, expected_last_seq, last) from None
        return [row["baton_append"] for row in curs.fetchall()]

    def settled_position(self) -> int | None:
        """The last notification id issued before now, once every insert in flight has
        committed or rolled back: nothing at or below it can appear later."""
        with (self.datastore.get_connection() as conn, conn.transaction(),
              conn.cursor() as curs):
            curs.execute(self.barrier_statement, prepare=True)
            curs.execute(self.max_notification_id_statement, prepare=True)
            row = curs.fetchone()
            return row["max"] if row else None

    def max_notification_id(self) -> int | None:
        return self.settled_position()

    def index_page(self, after: int, limit: int) -> Sequence[Notification]:
        settled = self.settled_position()
        if settled is None:
            return []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.index_page_statement, (READ_WHOLE, after, settled, limit),
                         prepare=True)
            return [Notification(id=row["notification_id"], originator_id=row["originator_id"],
                                 originator_version=row["originator_version"],
                                 topic=row["topic"], state=bytes(row["state"]))
                    for row in curs.fetchall()]

    def select_notifications(
        self, start: int | None, limit: int, stop: int | None = None,
        topics: Sequence[str] = (), *, inclusive_of_start: bool = True
    ) -> Sequence[Notification]:
        settled = self.settled_position()
        if settled is None:
            return []
        notes: Sequence[Notification] = super().select_notifications(
            start, limit, settled if stop is None else min(stop, settled), topics,
            inclusive_of_start=inclusive_of_start)
        return notes


_CONFLICT = "BT409"  # the SQLSTATE baton_append raises with the log's actual last seq
_APPEND_FUNCTION = """
CREATE OR REPLACE FUNCTION {schema}.baton_append(
    events {schema}.{event}[], run_id text, expected bigint)
RETURNS SETOF bigint LANGUAGE plpgsql AS $body$
DECLARE
    last bigint;
    taken bigint;
    counter regclass := pg_get_serial_sequence('{schema}.{table}', 'notification_id');
BEGIN
    PERFORM pg_advisory_xact_lock_shared({barrier}, 0);
    PERFORM pg_advisory_xact_lock({run}, hashtext(run_id));
    IF expected IS NOT NULL THEN
        -- A statement of its own, so it reads what the run lock's last holder committed.
        SELECT COALESCE(MAX(originator_version), 0) INTO last
            FROM {schema}.{table} WHERE originator_id = run_id;
        IF last <> expected THEN
            RAISE EXCEPTION USING ERRCODE = 'BT409', MESSAGE = last::text;
        END IF;
    END IF;
    -- The batch's notification ids, taken together so no other batch's fall among
    -- them, under a lock taken in a block that is then rolled back on purpose: that
    -- releases the lock at once, not at the commit, and so does whatever else ends the
    -- block (a cancel, a timeout). Neither the sequence nor `taken` is rolled back.
    BEGIN
        PERFORM pg_advisory_xact_lock({reserve}, 0);
        SELECT max(id) INTO taken FROM (SELECT nextval(counter) AS id
                                        FROM generate_series(1, cardinality(events))) AS n;
        RAISE EXCEPTION USING ERRCODE = 'BT000';
    EXCEPTION WHEN SQLSTATE 'BT000' THEN
        NULL;
    END;
    PERFORM pg_notify({channel}, '');
    RETURN QUERY INSERT INTO {schema}.{table}
            (notification_id, originator_id, originator_version, topic, state)
        SELECT taken - cardinality(events) + e.n, e.originator_id, e.originator_version,
               e.topic, e.state
        FROM unnest(events) WITH ORDINALITY
            AS e(originator_id, originator_version, topic, state, n)
        RETURNING notification_id;
END;
$body$
"""


def _int32(value: int) -> int:
    """An unsigned 32-bit value as the signed integer PostgreSQL's lock keys take."""
    return value - (1 << 32) if value >= 1 << 31 else value


class Address:
    """Where a PostgreSQL store is, parsed from its URL."""

    def __init__(self, url: str):
        parts = urlparse(url)
        shown = masked_url(url)
        missing = [name for name, value in (("user", parts.username),
                                            ("host", parts.hostname),
                                            ("database", parts.path.lstrip("/")))
                   if not value]
        if missing:
            raise BadStoreURLError(
                f"store URL {shown!r} names no {' and no '.join(missing)}; write "
                "postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
        try:
            self.port = parts.port or DEFAULT_PORT
        except ValueError:
            raise BadStoreURLError(f"store URL {shown!r}: the port must be a number from 1 "
                                   "to 65535") from None
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.host = parts.hostname or ""
        self.database = unquote(parts.path.lstrip("/"))
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"schema"})
        if unknown:
            raise BadStoreURLError(f"store URL {shown!r}: unknown option {unknown[0]!r}; "
                                   "the only one is ?schema=NAME")
        self.schema = query.get("schema", [""])[-1]
        if self.schema and not _SCHEMA_NAME.match(self.schema):
            raise BadStoreURLError(f"store URL {shown!r}: schema {self.schema!r} must be "
                                   "lower-case letters, digits and _ (at most 63)")
        self.shown = shown

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> psycopg.Connection[Any]:
        """One connection, made the way the pool will make them; StoreUnavailableError or
        BadStoreURLError naming the cause when it cannot be made."""
        try:
            return psycopg.connect(host=self.host, port=self.port, user=self.user,
                                   password=self.password, dbname=self.database,
                                   connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
        except psycopg.Error as error:
            raise self._explained(error) from None

    def _explained(self, error: BaseException) -> StoreUnavailableError:
        message = str(error)
        if "no password supplied" in message:
            return StoreUnavailableError(
                f"PostgreSQL at {self.where} asks user {self.user!r} for a password and no "
                "password was given: put one in ~/.pgpass (or the file PGPASSFILE names), "
                f"in PGPASSWORD, or in the URL (store {self.shown})")
        if "password authentication failed" in message:
            return StoreUnavailableError(
                f"PostgreSQL at {self.where} refused user {self.user!r}: wrong password "
                f"or no such user (store {self.shown})")
        if re.search(r'database ".*" does not exist', message):
            return StoreUnavailableError(
                f"PostgreSQL at {self.where} has no database {self.database!r}; create it "
                f"(createdb {self.database}) or name another (store {self.shown})")
        first = message.splitlines()[0].removeprefix("connection failed: ")
        cause = error.__cause__ if isinstance(error, PersistenceError) else error
        if faults.passes_psycopg(cause or error):  # down, restarting, or out of reach
            return StoreUnavailableError(
                f"cannot reach PostgreSQL at {self.where}: {first} (store {self.shown})",
                passing=True)
        return StoreUnavailableError(f"PostgreSQL at {self.where} refused: {first} "
                                     f"(store {self.shown})")


class PostgresRunsView(PostgresTrackingRecorder):
    """The index in a PostgreSQL database, beside the logs."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table = SQL("{}.{}").format(Identifier(self.datastore.schema),
                                    Identifier(TABLE))
        self.sql_create_statements += [
            SQL("CREATE TABLE IF NOT EXISTS {} (run_id text PRIMARY KEY, goal text, "
                "tasks bigint, requested_at double precision, position bigint, "
                "status text, events bigint, parent text, parent_assignment text)"
                ).format(table),
            SQL("CREATE INDEX IF NOT EXISTS {} ON {} (position)").format(
                Identifier(f"{TABLE}_position"), table),
        ]
        # A page's rows go in as arrays, one statement each, not one statement a row.
        self.insert_statement = SQL(
            f"INSERT INTO {{}} ({COLUMNS}) SELECT * FROM unnest(%s::text[], %s::text[], "
            "%s::bigint[], %s::double precision[], %s::bigint[], %s::text[], %s::bigint[], "
            "%s::text[], %s::text[])"
        ).format(table)
        self.update_statement = SQL(
            "UPDATE {} AS r SET status = COALESCE(c.ending, r.status), events = c.seq "
            "FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS c(run_id, ending, seq) "
            "WHERE r.run_id = c.run_id").format(table)
        self.select_statement = SQL(f"SELECT {COLUMNS} FROM {{}} ORDER BY position DESC"
                                    ).format(table)

    def record(self, added: Sequence[RunInfo], changed: Sequence[Changed],
               tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as curs:
            if added:
                curs.execute(self.insert_statement, as_columns(inserted(added)))
            if changed:
                curs.execute(self.update_statement, as_columns(changed))
            self._insert_tracking(curs, tracking)

    def listed(self) -> list[RunInfo]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self.select_statement)
            return [info_of(tuple(row.values())) for row in curs.fetchall()]


def open_backend(url: str) -> Backend:
    """The store at a postgresql:// URL, its tables created when missing."""
    address = Address(url)
    with address.connect() as first:
        # Stores opened at once by many processes (a cluster's coordinators) would race
        # to create the same tables; the lock lets one create them while the rest wait.
        first.execute("SELECT pg_advisory_lock(%s)", (CREATE_LOCK,))
        if address.schema:
            first.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                Identifier(address.schema)))
        return _opened(address)


def _opened(address: Address) -> Backend:
    factory = InfrastructureFactory.construct({
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": address.database,
        "POSTGRES_HOST": address.host,
        "POSTGRES_PORT": str(address.port),
        "POSTGRES_USER": address.user,
        "POSTGRES_PASSWORD": address.password,
        "POSTGRES_SCHEMA": address.schema,
        "POSTGRES_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT_S),
        "POSTGRES_POOL_SIZE": str(POOL_SIZE),
        "POSTGRES_MAX_OVERFLOW": str(POOL_OVERFLOW),
        "ORIGINATOR_ID_TYPE": "text",
        "APPLICATION_RECORDER_TOPIC": f"{__name__}:PostgresRunRecorder",
    })
    try:
        recorder = factory.application_recorder()
        snapshots = factory.aggregate_recorder("snapshots")
        columns = factory.aggregate_recorder("columns")
        index = cast(PostgresRunsView, factory.tracking_recorder(PostgresRunsView))
        heartbeats = PostgresHeartbeats(cast(PostgresFactory, factory).datastore)
    except PersistenceError as error:
        factory.close()
        raise address._explained(error) from None
    return Backend(log=recorder, snapshots=snapshots, columns=columns, index=index,
                   heartbeats=heartbeats, close=factory.close)
