"""Store faults: which errors of a store pass by themselves and which do not.

A server restarting, a connection cut, a SQLite file locked by another writer: these
pass, and a writer that waits and tries again carries on. A full disk, a file that is
not a database, a database it may not write: these stay until a person acts, so waiting
only hides them. Either way the error becomes one StoreFaultError naming the store and the
cause, never the database driver's traceback.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from eventsourcing.persistence import InterfaceError, OperationalError, PersistenceError

from ..errors import StoreFaultError, StoreUnavailableError

# SQLSTATE classes and codes of PostgreSQL errors that pass: a connection lost (08),
# the server shutting down or starting (57P01-03), too many connections (53300), and a
# transaction the server gave up to break a deadlock or a serialization conflict (40).
_PASSING_STATES = ("08", "57P01", "57P02", "57P03", "53300", "40001", "40P01")
_SQLITE_PASSING = ("locked", "busy")


def is_store_error(error: BaseException) -> bool:
    """Did a store's database (or the library over it) raise this?"""
    return isinstance(error, PersistenceError | sqlite3.Error) or _is_psycopg(error)


def passes(error: BaseException) -> bool:
    """Is this a store error that goes away by itself, so that trying again later may
    succeed (a server restarting, a connection cut, a SQLite file busy)?"""
    if isinstance(error, StoreUnavailableError | StoreFaultError):
        return error.passing
    if not is_store_error(error):
        return False
    cause = error.__cause__ if isinstance(error, PersistenceError) else error
    if cause is not None and _is_psycopg(cause):
        return passes_psycopg(cause)
    if isinstance(cause, sqlite3.Error):
        return any(word in str(error).lower() for word in _SQLITE_PASSING)
    # The library's own errors, with no driver error behind them (its pool timing out).
    return isinstance(error, OperationalError | InterfaceError)


def passes_psycopg(error: BaseException) -> bool:
    """Is this PostgreSQL driver error one that passes? One with no SQLSTATE passes when
    the client lost or could not make its connection (the pool waited for one)."""
    state = getattr(error, "sqlstate", None)
    if state is not None:
        return bool(state.startswith(_PASSING_STATES))
    kinds = {kind.__name__ for kind in type(error).__mro__}
    return bool(kinds & {"OperationalError", "InterfaceError", "PoolTimeout"})


# What to check, after what SQLite says when it says little.
_HINTS = {
    "unable to open database file": "may this user write the file and its directory, and "
                                    "is the disk mounted read-write?",
    "readonly database": "may this user write the file and its directory, and is the disk "
                         "mounted read-write?",
    "file is not a database": "the file is damaged, or is not a store: name another with "
                              "--store, or restore it from a copy",
    "database disk image is malformed": "the file is damaged: restore it from a copy, or "
                                        "name another with --store",
}


@contextmanager
def ignored() -> Iterator[None]:
    """Carry on past a store's error, whatever it is: for writes that are a cache or a
    courtesy (a snapshot, a heartbeat), never for a run's log. Other errors go on."""
    try:
        yield
    except Exception as error:
        if not (is_store_error(error)
                or isinstance(error, StoreFaultError | StoreUnavailableError)):
            raise


def cause_of(error: BaseException) -> str:
    """The first line of what the database said, without the driver's prefixes, and
    what to check when SQLite's words say little."""
    text = str(error).strip() or type(error).__name__
    cause = text.splitlines()[0].removeprefix("connection failed: ")
    hint = next((h for words, h in _HINTS.items() if words in cause), None)
    return f"{cause} ({hint})" if hint else cause


def fault(cause: str, store: str, *, run_id: str | None = None,
          recorded_to: int | None = None, passing: bool = False) -> StoreFaultError:
    """The StoreFaultError for a store's error (`cause`, as `cause_of` gives it); for a run
    under way, what is recorded of it and how to continue it once the cause is fixed."""
    message = f"store {store}: {cause}"
    if run_id is not None:
        message += (f"; run {run_id} is recorded up to seq {recorded_to}; once the cause is "
                    f"fixed, `baton resume {run_id}` continues it")
    return StoreFaultError(message, store=store, cause=cause, passing=passing)


def _is_psycopg(error: BaseException) -> bool:
    # By module, so that a SQLite user never imports the PostgreSQL driver.
    return type(error).__module__.startswith("psycopg")  # and psycopg_pool
