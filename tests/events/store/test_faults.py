"""Which store errors pass (a writer waits them out) and which do not (one line, now)."""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from eventsourcing import persistence
from psycopg_pool import PoolTimeout

from baton import StoreFaultError, StoreUnavailableError
from baton.events.store import faults


def wrapped(cause: BaseException, kind: type[Exception]) -> BaseException:
    """The error as the eventsourcing library raises it: its own, the driver's behind."""
    try:
        raise kind(str(cause)) from cause
    except kind as error:
        return error


CASES = [
    ("server shutting down", psycopg.errors.AdminShutdown("terminating connection"), True),
    ("connection lost", psycopg.OperationalError("server closed the connection"), True),
    ("pool waited", PoolTimeout("couldn't get a connection after 5.00 sec"), True),
    ("deadlock broken", psycopg.errors.DeadlockDetected("deadlock detected"), True),
    ("too many clients", psycopg.errors.TooManyConnections("sorry, too many"), True),
    ("disk full", psycopg.errors.DiskFull("could not extend file"), False),
    ("no permission", psycopg.errors.InsufficientPrivilege("permission denied"), False),
    ("a client mistake", psycopg.ProgrammingError("the query has 2 placeholders"), False),
    ("sqlite busy", sqlite3.OperationalError("database is locked"), True),
    ("sqlite full", sqlite3.OperationalError("database or disk is full"), False),
    ("sqlite damaged", sqlite3.DatabaseError("database disk image is malformed"), False),
    ("library's pool", persistence.ConnectionUnavailableError("timed out"), True),
    ("server down at open", StoreUnavailableError("cannot reach", passing=True), True),
    ("wrong password", StoreUnavailableError("refused user"), False),
    ("locked at open", StoreFaultError("store x: database is locked", passing=True), True),
    ("not a store", ValueError("not a store error at all"), False),
]


@pytest.mark.parametrize(("error", "passing"), [(e, p) for _, e, p in CASES],
                         ids=[name for name, _, _ in CASES])
def test_an_error_passes_or_not_as_its_kind_says(error: BaseException, passing: bool) -> None:
    """Each error alone, and wrapped as the eventsourcing library raises it."""
    assert faults.passes(error) is passing
    if isinstance(error, psycopg.Error | sqlite3.Error):
        kind = (persistence.OperationalError if isinstance(
            error, psycopg.OperationalError | sqlite3.OperationalError)
            else persistence.ProgrammingError if isinstance(error, psycopg.ProgrammingError)
            else persistence.DatabaseError)
        assert faults.passes(wrapped(error, kind)) is passing


def test_a_fault_names_the_store_the_cause_and_what_to_check() -> None:
    """One line: the store, SQLite's words, and what to check when they say little."""
    fault = faults.fault(faults.cause_of(sqlite3.DatabaseError("file is not a database")),
                         "sqlite:///x.db")
    assert str(fault) == ("store sqlite:///x.db: file is not a database (the file is "
                          "damaged, or is not a store: name another with --store, or "
                          "restore it from a copy)")
