"""The PostgreSQL store: the eventsourcing library's PostgreSQL recorders (psycopg 3 and
its pool), for a log shared by every node of a cluster and every person reading it.

``postgresql://USER:PASSWORD@HOST:PORT/DB[?schema=NAME]``. Tables (and the schema, when
one is named) are created on first use. A server that cannot be reached, a wrong
password or a missing database is one clear BadStoreURL or StoreUnavailable, with the
password masked, before anything is read or written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlparse

import psycopg
from eventsourcing.persistence import InfrastructureFactory, PersistenceError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder
from psycopg.rows import DictRow
from psycopg.sql import SQL, Identifier

from ..errors import BadStoreURL, StoreUnavailable
from .index import PostgresRunsView
from .recorder import EventStore, check_expected, masked_url

DEFAULT_PORT = 5432
CONNECT_TIMEOUT_S = 5
POOL_SIZE = 1  # connections a store keeps open: a coordinator appends from one thread
POOL_OVERFLOW = 4  # more, opened while readers and the writer overlap
CREATE_LOCK = 0x6261746F6E  # "baton": the advisory lock held while tables are created
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PostgresRunRecorder(PostgresApplicationRecorder):
    """The library's PostgreSQL recorder, checking the expected last seq inside the
    insert's transaction, after the table lock that orders every writer; and inserting
    in a plain transaction, without the library's pipeline, which stalls for good on a
    batch of several megabytes (a large plan's RunRequested)."""

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        if not stored_events:
            return []
        with (self.datastore.get_connection() as conn, conn.transaction(),
              conn.cursor() as curs):
            self._insert_stored_events(curs, stored_events, **kwargs)
            return self._fetch_ids_after_insert_events(curs, stored_events, **kwargs)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_seq_statement = SQL(
            "SELECT MAX(originator_version) AS last FROM {schema}.{table} "
            "WHERE originator_id = %s"
        ).format(schema=Identifier(self.datastore.schema),
                 table=Identifier(self.events_table_name))

    def _insert_stored_events(
        self, curs: psycopg.Cursor[DictRow], stored_events: Sequence[StoredEvent],
        **kwargs: Any
    ) -> None:
        self._lock_table(curs)
        if stored_events:
            curs.execute(self.last_seq_statement, (str(stored_events[0].originator_id),),
                         prepare=True)
            row = curs.fetchone()
            check_expected(stored_events, kwargs, (row or {}).get("last") or 0)
        self._notify_channel(curs)
        # The grandparent inserts; the parent's override would take the lock again.
        super(PostgresApplicationRecorder, self)._insert_stored_events(
            curs, stored_events, **kwargs)


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
            raise BadStoreURL(
                f"store URL {shown!r} names no {' and no '.join(missing)}; write "
                "postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
        try:
            self.port = parts.port or DEFAULT_PORT
        except ValueError:
            raise BadStoreURL(f"store URL {shown!r}: the port must be a number from 1 "
                              "to 65535") from None
        self.user = unquote(parts.username or "")
        self.password = unquote(parts.password or "")
        self.host = parts.hostname or ""
        self.database = unquote(parts.path.lstrip("/"))
        query = parse_qs(parts.query)
        unknown = sorted(set(query) - {"schema"})
        if unknown:
            raise BadStoreURL(f"store URL {shown!r}: unknown option {unknown[0]!r}; "
                              "the only one is ?schema=NAME")
        self.schema = query.get("schema", [""])[-1]
        if self.schema and not _SCHEMA_NAME.match(self.schema):
            raise BadStoreURL(f"store URL {shown!r}: schema {self.schema!r} must be "
                              "lower-case letters, digits and _ (at most 63)")
        self.shown = shown

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def connect(self) -> psycopg.Connection[Any]:
        """One connection, made the way the pool will make them; StoreUnavailable or
        BadStoreURL naming the cause when it cannot be made."""
        try:
            return psycopg.connect(host=self.host, port=self.port, user=self.user,
                                   password=self.password, dbname=self.database,
                                   connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
        except psycopg.Error as error:
            raise self._explained(str(error)) from None

    def _explained(self, message: str) -> StoreUnavailable:
        if "password authentication failed" in message or "no password supplied" in message:
            return StoreUnavailable(
                f"PostgreSQL at {self.where} refused user {self.user!r}: wrong password "
                f"or no such user (store {self.shown})")
        if re.search(r'database ".*" does not exist', message):
            return StoreUnavailable(
                f"PostgreSQL at {self.where} has no database {self.database!r}; create it "
                f"(createdb {self.database}) or name another (store {self.shown})")
        first = message.splitlines()[0].removeprefix("connection failed: ")
        return StoreUnavailable(
            f"cannot reach PostgreSQL at {self.where}: {first} (store {self.shown})")


def open_postgres(url: str) -> EventStore:
    """The store at a postgresql:// URL, its tables created when missing."""
    address = Address(url)
    with address.connect() as first:
        # Stores opened at once by many processes (a cluster's coordinators) would race
        # to create the same tables; the lock lets one create them while the rest wait.
        first.execute("SELECT pg_advisory_lock(%s)", (CREATE_LOCK,))
        if address.schema:
            first.execute(SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                Identifier(address.schema)))
        return _opened(url, address)


def _opened(url: str, address: Address) -> EventStore:
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
        index = cast(PostgresRunsView, factory.tracking_recorder(PostgresRunsView))
    except PersistenceError as error:
        factory.close()
        raise address._explained(str(error)) from None
    return EventStore(recorder, url, close=factory.close, snapshots=snapshots, index=index)
